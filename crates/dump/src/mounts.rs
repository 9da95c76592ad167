//! Tying files to mounts: the target's mount table (crcli-mountinfo, listmount + statmount +
//! mountinfo merged) and the image's mount entries for the mounts its files live on.
//!
//! Attached mounts come from the target's namespace (`MountTable::of(Namespace::Pid)`: listmount
//! by namespace id + the target's mountinfo, mount points relative to the target's root), so a
//! target in a mount namespace of its own is dumped from crcli's namespace as well as from
//! inside its own. When the two differ, crcli's own table is read too, for files the target
//! opened before it entered its namespace: they are recorded with crcli's mount point and
//! reopened at that path where the restore runs. A file whose mount is in no table is
//! resolved with `crcli_mountinfo::resolve_fd` on crcli's own duplicate of the fd: an unmounted
//! mount (statmount `STATMOUNT_BY_FD`, Linux 7.0) or an anonymous one (`ENOENT` from it, or the
//! clone rule on older kernels) gets an entry with its kind, root, attributes and rebuild plan;
//! fds on one mount (same unique mount id) share one entry. An `O_PATH` fd at the root of an
//! anonymous mount is taken to be the mount fd itself (`open_tree`/`fsmount`) and listed in the
//! entry's `kept_fds`. For a lost superblock the fds that reach its content are kept, and
//! [`Mounts::dump_contents`] (module `fscontent`) writes what they reach into the image.
//! Anything else (the kernel cannot tell, a root that cannot be established) is left to the
//! caller, which refuses the file with a message naming the pid, the fd and the reason.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crcli_image::{
    FsContentId, ImagePath, MountEntry, MountId, MountKind, OsBytes, ProcessFd, RebuildPlan,
};
use crcli_mountinfo::kernel::Namespace;
use crcli_mountinfo::{FdFacts, Mount, MountTable, Rebuild, Resolution, SbFlags};

use crate::error::DumpError;

const MS_UNBINDABLE: u64 = 1 << 17;
const MS_PRIVATE: u64 = 1 << 18;
const MS_SLAVE: u64 = 1 << 19;
const MS_SHARED: u64 = 1 << 20;

/// The target's mounts and the image entries made so far.
#[derive(Debug)]
pub(crate) struct Mounts {
    table: MountTable,
    /// crcli's own namespace, when it differs from the target's (read on first need): a
    /// process that entered a new mount namespace may still hold fds on mounts of the old one.
    own: Option<Option<MountTable>>,
    same_namespace: bool,
    /// The id of the target's mount namespace and of crcli's (`NS_GET_MNTNS_ID`), for messages.
    target_ns: Option<u64>,
    own_ns: Option<u64>,
    entries: Vec<MountEntry>,
    by_old_id: HashMap<u32, MountId>,
    /// Unmounted and anonymous mounts made so far, by unique mount id.
    by_unique_id: HashMap<u64, MountId>,
    /// Lost superblocks: (mount, content id, the mount's root inside its filesystem).
    pub(crate) lost: Vec<(MountId, FsContentId, PathBuf)>,
    /// fds (crcli's own duplicates) that reach lost-superblock content: (mount, path of the
    /// file inside its filesystem, the fd).
    pub(crate) content_roots: Vec<(MountId, PathBuf, OwnedFd)>,
    pid: i32,
}

impl Mounts {
    /// Reads the mount table of the target's mount namespace.
    pub fn load(pid: i32) -> Result<Mounts, DumpError> {
        let table = MountTable::of(Namespace::Pid(pid)).map_err(|source| DumpError::Mounts {
            op: format!("read the mount table of pid {pid}"),
            source,
        })?;
        let ns_of = |p: &str| {
            std::fs::metadata(p)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        };
        let same_namespace = ns_of(&format!("/proc/{pid}/ns/mnt")) == ns_of("/proc/self/ns/mnt");
        let ns_id = |p: Option<i32>| {
            crcli_mountinfo::kernel::open_namespace(p)
                .ok()
                .and_then(|fd| crcli_mountinfo::kernel::namespace_id(&fd).ok())
        };
        Ok(Mounts {
            table,
            own: None,
            same_namespace,
            target_ns: ns_id(Some(pid)),
            own_ns: ns_id(None),
            entries: Vec::new(),
            by_old_id: HashMap::new(),
            by_unique_id: HashMap::new(),
            lost: Vec::new(),
            content_roots: Vec::new(),
            pid,
        })
    }

    /// Goes on with another process of the same mount namespace (the pid named in errors and
    /// in `kept_fds`).
    pub fn set_pid(&mut self, pid: i32) {
        self.pid = pid;
    }

    /// The mount tables known: the target's namespace first, then crcli's if it was read.
    pub fn tables(&self) -> Vec<&MountTable> {
        let mut out = vec![&self.table];
        if let Some(Some(own)) = &self.own {
            out.push(own);
        }
        out
    }

    /// Whether the target lives in a mount namespace other than crcli's.
    pub fn other_namespace(&self) -> bool {
        !self.same_namespace
    }

    /// Names the target's mount namespace and crcli's, for messages: "mount namespace 5 of the
    /// process (crcli runs in 3)".
    pub fn namespaces(&self) -> String {
        let id = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        format!(
            "mount namespace {} of the process (crcli runs in {})",
            id(self.target_ns),
            id(self.own_ns)
        )
    }

    /// The mount entries made so far, in id order.
    pub fn entries(&self) -> &[MountEntry] {
        &self.entries
    }

    /// The image mount of a file (crcli's own duplicate `fd`, fd number `fd_no` of the target,
    /// negative for cwd, root, exe and mappings) on mount `old_id` (fdinfo's `mnt_id`) seen at
    /// `path` (as /proc's links show it: absolute on an attached mount, relative to the
    /// mount's root on an unmounted or anonymous one), and the file's path relative to that
    /// mount's root. `None` when the mount cannot be placed (the kernel cannot tell what it is,
    /// another namespace, a path outside the mount): the caller says why.
    pub fn locate(
        &mut self,
        fd: BorrowedFd<'_>,
        old_id: u32,
        path: &[u8],
        fd_no: i32,
    ) -> Result<Option<(MountId, ImagePath)>, DumpError> {
        if self.own.is_none() && !self.same_namespace && self.table.by_old_id(old_id).is_none() {
            self.own = Some(MountTable::of(Namespace::Current).ok());
        }
        let in_own = || {
            self.own
                .as_ref()
                .and_then(|t| t.as_ref())
                .and_then(|t| t.by_old_id(old_id))
        };
        // A mount of crcli's namespace that the target's lacks: the target entered a namespace
        // of its own and kept an fd opened before. It is recorded with crcli's mount point and
        // reopened at that path where the restore runs (the same file when that namespace is a
        // copy of crcli's, on that namespace's mount).
        let Some(mount) = self.table.by_old_id(old_id).or_else(in_own) else {
            return self.locate_detached(fd, path, fd_no);
        };
        let Some(rel) = relative_to(path, mount.mount_point.as_os_str().as_bytes()) else {
            return Ok(None);
        };
        let rel = ImagePath::new(rel.to_vec()).map_err(|e| DumpError::Parse {
            what: format!("path {:?}", String::from_utf8_lossy(path)),
            detail: e.to_string(),
        })?;
        if let Some(id) = self.by_old_id.get(&old_id) {
            return Ok(Some((*id, rel)));
        }
        let id = MountId(self.entries.len() as u32 + 1);
        let entry = entry_of(id, mount)?;
        self.entries.push(entry);
        self.by_old_id.insert(old_id, id);
        Ok(Some((id, rel)))
    }
}

impl Mounts {
    /// [`Mounts::locate`] for a mount in no table: unmounted or anonymous.
    fn locate_detached(
        &mut self,
        fd: BorrowedFd<'_>,
        path: &[u8],
        fd_no: i32,
    ) -> Result<Option<(MountId, ImagePath)>, DumpError> {
        let pid = self.pid;
        let Some(rel_bytes) = path.strip_prefix(b"/") else {
            return Ok(None);
        };
        let rel = image_path(
            &format!("path {:?}", String::from_utf8_lossy(path)),
            rel_bytes,
        )?;
        let unique = crcli_sys::statx::fstatx_mnt_id_unique(fd).map_err(DumpError::sys(
            format!("statx the mount id of fd {fd_no} of pid {pid}"),
        ))?;
        let id = match unique.and_then(|u| self.by_unique_id.get(&u).copied()) {
            Some(id) => id,
            None => {
                let tables = self.tables();
                let resolution = crcli_mountinfo::resolve_fd(fd, &tables).map_err(|source| {
                    DumpError::Mounts {
                        op: format!("resolve the mount of fd {fd_no} of pid {pid}"),
                        source,
                    }
                })?;
                let Some(id) = self.detached_entry(resolution, fd_no)? else {
                    return Ok(None);
                };
                if let Some(u) = unique {
                    self.by_unique_id.insert(u, id);
                }
                id
            }
        };
        let entry = &mut self.entries[id.0 as usize - 1];
        if entry.kind == MountKind::Anonymous && fd_no >= 0 && rel_bytes.is_empty() {
            let o_path = rustix::fs::fcntl_getfl(fd)
                .map_err(DumpError::sys(format!("F_GETFL fd {fd_no} of pid {pid}")))?
                .contains(rustix::fs::OFlags::PATH);
            if o_path {
                entry.kept_fds.push(ProcessFd {
                    pid: pid as u32,
                    fd: fd_no as u32,
                });
            }
        }
        // A file unlinked while open is not in the tree: its content goes with its file entry
        // (files.rs), and the restore recreates and unlinks it through the mount fd.
        let unlinked = rustix::fs::fstat(fd).is_ok_and(|st| st.st_nlink == 0)
            && rustix::fs::fcntl_getfl(fd).is_ok_and(|f| !f.contains(rustix::fs::OFlags::PATH));
        if let Some((_, _, root)) = self
            .lost
            .iter()
            .find(|(m, _, _)| *m == id)
            .filter(|_| !unlinked)
        {
            let in_fs = if rel_bytes.is_empty() {
                root.clone()
            } else {
                root.join(Path::new(std::ffi::OsStr::from_bytes(rel_bytes)))
            };
            let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)
                .map_err(DumpError::sys(format!("dup fd {fd_no} of pid {pid}")))?;
            self.content_roots.push((id, in_fs, dup));
        }
        Ok(Some((id, rel)))
    }

    /// Makes the entry of an unmounted or anonymous mount; `None` for any other answer.
    fn detached_entry(
        &mut self,
        resolution: Resolution,
        fd_no: i32,
    ) -> Result<Option<MountId>, DumpError> {
        let pid = self.pid;
        let id = MountId(self.entries.len() as u32 + 1);
        let (mut entry, rebuild, root) = match resolution {
            Resolution::Unmounted { mount, rebuild, .. } => {
                let mut e = entry_of(id, &mount)?;
                e.kind = MountKind::Unmounted;
                e.mountpoint = None;
                e.mnt_ns_id = None;
                e.parent_unique_id = 0;
                (e, rebuild, mount.root.clone())
            }
            Resolution::Anonymous {
                fd,
                same_superblock,
                root,
                rebuild,
                ..
            } => {
                let root = root.unwrap_or_else(|| PathBuf::from("/"));
                let e = anonymous_entry(id, &fd, same_superblock.as_ref(), &root, &rebuild)?;
                (e, rebuild, root)
            }
            _ => return Ok(None),
        };
        let rel_root = |p: &Path| -> Result<ImagePath, DumpError> {
            let b = p.as_os_str().as_bytes();
            image_path("a mount root", b.strip_prefix(b"/").unwrap_or(b))
        };
        entry.rebuild = Some(match rebuild {
            Rebuild::BindOfLive { live, sub_root } => RebuildPlan::BindOfLive {
                live_mount_id: live.id.unwrap_or(0),
                live_mountpoint: image_path(
                    "a live mount point",
                    live.mount_point.as_os_str().as_bytes(),
                )?,
                subroot: image_path("a sub-root", sub_root.as_os_str().as_bytes())?,
            },
            Rebuild::Remount {
                source,
                fs_type,
                sb_flags,
                options,
                sub_root,
            } => {
                let mut opts: Vec<String> = options
                    .iter()
                    .map(|o| o.to_string_lossy().into_owned())
                    .collect();
                if sb_flags.contains(SbFlags::RDONLY) {
                    opts.insert(0, "ro".to_owned());
                }
                RebuildPlan::Remount {
                    source: OsBytes::new(source.as_bytes().to_vec()).map_err(|e| {
                        DumpError::Parse {
                            what: "a mount source".to_owned(),
                            detail: e.to_string(),
                        }
                    })?,
                    fs_type,
                    options: opts.join(","),
                    subroot: image_path("a sub-root", sub_root.as_os_str().as_bytes())?,
                }
            }
            Rebuild::LostSuperblock { fs_type, options } => {
                let Some(fs_type) = fs_type else {
                    return Err(DumpError::UnsupportedFd {
                        pid,
                        fd: fd_no,
                        kind: format!(
                            "a file on a {} mount of a filesystem that has no live mount and whose type is unknown",
                            kind_name(entry.kind)
                        ),
                    });
                };
                let mut opts: Vec<String> = options
                    .iter()
                    .map(|o| o.to_string_lossy().into_owned())
                    .collect();
                if opts.is_empty() {
                    // An anonymous fsmount: statmount cannot answer; the size and inode limit
                    // of a tmpfs show in statfs.
                    opts = self.statfs_options(&fs_type, fd_no);
                }
                let content = FsContentId(self.lost.len() as u32 + 1);
                self.lost.push((id, content, root.clone()));
                RebuildPlan::LostSuperblock {
                    fs_type,
                    options: opts.join(","),
                    content,
                    subroot: rel_root(&root)?,
                }
            }
            Rebuild::RootUnknown { live } => {
                return Err(DumpError::UnsupportedFd {
                    pid,
                    fd: fd_no,
                    kind: format!(
                        "a file on an anonymous mount of the superblock of live mount {} whose root cannot be established (a file with several links, a deleted file, or too large a tree to search)",
                        live.mount_point.display()
                    ),
                });
            }
        });
        if entry.fs_type.is_empty() {
            if let Some(RebuildPlan::LostSuperblock { fs_type, .. }) = &entry.rebuild {
                entry.fs_type = fs_type.clone();
            }
        }
        self.entries.push(entry);
        Ok(Some(id))
    }

    /// `size=` and `nr_inodes=` of a tmpfs from `statfs` of the target's fd.
    fn statfs_options(&self, fs_type: &str, fd_no: i32) -> Vec<String> {
        if fs_type != "tmpfs" || fd_no < 0 {
            return Vec::new();
        }
        let Ok(sfs) = rustix::fs::statfs(format!("/proc/{}/fd/{fd_no}", self.pid).as_str()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if sfs.f_blocks > 0 {
            out.push(format!("size={}", sfs.f_blocks * sfs.f_bsize as u64));
        }
        if sfs.f_files > 0 {
            out.push(format!("nr_inodes={}", sfs.f_files));
        }
        out
    }
}

fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Attached => "attached",
        MountKind::Unmounted => "unmounted",
        MountKind::Anonymous => "anonymous",
    }
}

/// The entry of an anonymous mount: facts from the fd, superblock facts from a live mount of
/// the same superblock when there is one.
fn anonymous_entry(
    id: MountId,
    fd: &FdFacts,
    same_superblock: Option<&Mount>,
    root: &Path,
    rebuild: &Rebuild,
) -> Result<MountEntry, DumpError> {
    let mut e = match same_superblock {
        Some(m) => entry_of(id, m)?,
        None => MountEntry {
            id,
            kind: MountKind::Anonymous,
            unique_id: 0,
            old_id: 0,
            parent_unique_id: 0,
            parent: None,
            mnt_ns_id: None,
            root: image_path("a mount root", b"/")?,
            mountpoint: None,
            fs_type: match rebuild {
                Rebuild::LostSuperblock {
                    fs_type: Some(t), ..
                } => t.clone(),
                _ => String::new(),
            },
            fs_subtype: None,
            source: None,
            super_options: "rw".to_owned(),
            dev_major: fd.dev.major,
            dev_minor: fd.dev.minor,
            attributes: 0,
            propagation: MS_PRIVATE,
            peer_group: 0,
            master: 0,
            propagate_from: 0,
            rebuild: None,
            kept_fds: Vec::new(),
        },
    };
    e.kind = MountKind::Anonymous;
    e.unique_id = fd.mnt_id.unwrap_or(0);
    e.old_id = fd.old_mnt_id.unwrap_or(0);
    e.parent_unique_id = 0;
    e.mnt_ns_id = None;
    e.mountpoint = None;
    e.root = image_path("a mount root", root.as_os_str().as_bytes())?;
    e.attributes = fd.attrs.bits() | fd.atime.mount_attr();
    e.propagation = MS_PRIVATE;
    e.peer_group = 0;
    e.master = 0;
    e.propagate_from = 0;
    Ok(e)
}

/// `path` relative to `mount_point` (no leading `/`), if it lies under it.
fn relative_to<'a>(path: &'a [u8], mount_point: &[u8]) -> Option<&'a [u8]> {
    if mount_point == b"/" {
        return path.strip_prefix(b"/");
    }
    let rest = path.strip_prefix(mount_point)?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix(b"/")
}

fn image_path(what: &str, bytes: &[u8]) -> Result<ImagePath, DumpError> {
    ImagePath::new(bytes.to_vec()).map_err(|e| DumpError::Parse {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

fn entry_of(id: MountId, m: &Mount) -> Result<MountEntry, DumpError> {
    let what = format!("mount {}", m.old_id);
    let mut super_options = String::from(if m.sb_flags.contains(SbFlags::RDONLY) {
        "ro"
    } else {
        "rw"
    });
    for (name, flag) in [
        ("sync", SbFlags::SYNCHRONOUS),
        ("dirsync", SbFlags::DIRSYNC),
        ("lazytime", SbFlags::LAZYTIME),
    ] {
        if m.sb_flags.contains(flag) {
            super_options.push(',');
            super_options.push_str(name);
        }
    }
    for o in &m.fs_options {
        super_options.push(',');
        super_options.push_str(&o.to_string_lossy());
    }
    let p = &m.propagation;
    let mut propagation = 0;
    if p.shared.is_some() {
        propagation |= MS_SHARED;
    }
    if p.master.is_some() {
        propagation |= MS_SLAVE;
    }
    if p.is_private() {
        propagation |= MS_PRIVATE;
    }
    if p.unbindable {
        propagation |= MS_UNBINDABLE;
    }
    Ok(MountEntry {
        id,
        kind: MountKind::Attached,
        unique_id: m.id.unwrap_or(0),
        old_id: m.old_id,
        parent_unique_id: m.parent_id.unwrap_or(0),
        parent: None,
        mnt_ns_id: m.ns_id,
        root: image_path(&what, m.root.as_os_str().as_bytes())?,
        mountpoint: Some(image_path(&what, m.mount_point.as_os_str().as_bytes())?),
        fs_type: m.fs_type.clone(),
        fs_subtype: m.fs_subtype.clone(),
        source: match &m.source {
            Some(s) => Some(
                OsBytes::new(s.as_bytes().to_vec()).map_err(|e| DumpError::Parse {
                    what: what.clone(),
                    detail: e.to_string(),
                })?,
            ),
            None => None,
        },
        super_options,
        dev_major: m.dev.major,
        dev_minor: m.dev.minor,
        attributes: m.attrs.bits() | m.atime.mount_attr(),
        propagation,
        peer_group: p.shared.unwrap_or(0),
        master: p.master.unwrap_or(0),
        propagate_from: p.propagate_from.unwrap_or(0),
        rebuild: None,
        kept_fds: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::relative_to;

    #[test]
    fn paths_relative_to_mount_points() {
        assert_eq!(relative_to(b"/a/b", b"/"), Some(&b"a/b"[..]));
        assert_eq!(relative_to(b"/", b"/"), Some(&b""[..]));
        assert_eq!(relative_to(b"/tmp/x/f", b"/tmp/x"), Some(&b"f"[..]));
        assert_eq!(relative_to(b"/tmp/x", b"/tmp/x"), Some(&b""[..]));
        assert_eq!(relative_to(b"/tmp/xy/f", b"/tmp/x"), None);
        assert_eq!(relative_to(b"/usr", b"/tmp"), None);
    }
}
