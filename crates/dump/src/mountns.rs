//! The mount tree of the tree's own mount namespace (issue #7): when the root lives in a mount
//! namespace other than crcli's, every mount of that namespace is recorded
//! ([`crcli_image::MountNamespace`]) with how the restore makes it again:
//!
//! - a mount point the user named with `--external mnt[MOUNTPOINT]:KEY`: `External`;
//! - a copy of a mount of crcli's namespace (the namespace was made by `unshare(CLONE_NEWNS)`):
//!   a live mount of crcli's with the same superblock, the same mount point and a root at or
//!   above this one: `HostCopy`;
//! - `proc`, `sysfs`, `devpts`, `mqueue`, `cgroup2`: a fresh instance (`Fresh`);
//! - a `tmpfs` or `ramfs` no mount of crcli's shows: its content dies with the namespace, so
//!   the first mount of it is dumped (`Content`, an `fs-N` stream written by `fscontent`) and
//!   later mounts of the same superblock are binds of that one (`NsBind`);
//! - anything else is refused, naming the mount's id, mount point and filesystem type: another
//!   superblock that crcli's namespace also shows (a bind from outside, which `--external` must
//!   name), a shared peer group or master that crcli's namespace also has (propagation with
//!   the outside), a content filesystem mounted below the mount it is hidden under, a
//!   filesystem crcli cannot make again (a block device, FUSE, …).
//!
//! The content of a tmpfs is read through a clone of that one mount (`open_tree` with
//! `OPEN_TREE_CLONE`, no submounts) made by a crcli thread that joined the namespace
//! (`unshare(CLONE_FS)` + `setns`), so what submounts hide is read too and nothing of the
//! namespace is changed.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crcli_image::mountns::{MS_PRIVATE, MS_SHARED, MS_SLAVE, MS_UNBINDABLE};
use crcli_image::{
    FsContentId, ImagePath, MountId, MountNamespace, NsMount, NsMountSource, OsBytes,
};
use crcli_mountinfo::kernel::Namespace;
use crcli_mountinfo::{Mount, MountTable, SbFlags};
use crcli_sys::mount::{open_tree, OpenTreeFlags};

use crate::error::DumpError;
use crate::mounts::Mounts;

/// Filesystems made fresh at restore: their content is the kernel's, not data.
const FRESH: [&str; 5] = ["proc", "sysfs", "devpts", "mqueue", "cgroup2"];
/// Filesystems whose content is dumped when no mount of crcli's shows them.
const CONTENT: [&str; 2] = ["tmpfs", "ramfs"];
/// Mount ids given to namespace content in [`Mounts::lost`], above every image mount id.
const CONTENT_MOUNT_BASE: u32 = 0x8000_0000;

/// A `--external mnt[MOUNTPOINT]:KEY` of `crcli dump`: the mount at `mountpoint` (absolute in
/// the dumped namespace) is a bind from outside that the user names `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMount {
    /// The mount point in the dumped tree's namespace.
    pub mountpoint: PathBuf,
    /// The key the restore maps to a path (`--external mnt[KEY]:PATH`).
    pub key: String,
}

impl std::str::FromStr for ExternalMount {
    type Err = String;

    /// Parses `mnt[MOUNTPOINT]:KEY` (CRIU's form).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not of the form mnt[MOUNTPOINT]:KEY");
        let rest = s.strip_prefix("mnt[").ok_or_else(bad)?;
        let (mountpoint, key) = rest.split_once("]:").ok_or_else(bad)?;
        if !mountpoint.starts_with('/') || key.is_empty() || key.contains(['[', ']']) {
            return Err(bad());
        }
        Ok(ExternalMount {
            mountpoint: PathBuf::from(mountpoint),
            key: key.to_owned(),
        })
    }
}

fn unsupported(pid: i32, m: &Mount, why: &str) -> DumpError {
    DumpError::Unsupported {
        pid,
        what: format!(
            "mount {} at {} ({}) of its mount namespace: {why}",
            m.id.unwrap_or(u64::from(m.old_id)),
            m.mount_point.display(),
            m.fs_type
        ),
    }
}

fn image_path(what: &str, b: &[u8]) -> Result<ImagePath, DumpError> {
    ImagePath::new(b.to_vec()).map_err(|e| DumpError::Parse {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

/// Mount `m` (whose root is `root`) as a bind of the `earlier` mount of its filesystem (its
/// id and root): at the sub-root that `m` shows of it.
fn bind_of(
    pid: i32,
    m: &Mount,
    root: &[u8],
    earlier: &(u64, PathBuf),
) -> Result<NsMountSource, DumpError> {
    let (of, of_root) = earlier;
    let Some(sub) = below(root, of_root.as_os_str().as_bytes()) else {
        return Err(unsupported(
            pid,
            m,
            "a bind of a part of its filesystem that an earlier mount does not show",
        ));
    };
    Ok(NsMountSource::NsBind {
        of: *of,
        subroot: image_path("a sub-root", sub)?,
    })
}

/// `path` relative to `base` (both absolute; `""` when equal), if it lies at or below it.
fn below<'a>(path: &'a [u8], base: &[u8]) -> Option<&'a [u8]> {
    if base == b"/" {
        return Some(path.strip_prefix(b"/").unwrap_or(path));
    }
    let rest = path.strip_prefix(base)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix(b"/")
    }
}

/// The namespace's mounts, parents before children, siblings (and stacked mounts) by id,
/// i.e. in mount order.
fn ordered(table: &MountTable) -> Vec<&Mount> {
    let mut children: HashMap<u64, Vec<&Mount>> = HashMap::new();
    let ids: HashSet<u64> = table.mounts().iter().filter_map(|m| m.id).collect();
    let mut roots = Vec::new();
    for m in table.mounts() {
        match m.parent_id {
            Some(p) if ids.contains(&p) && Some(p) != m.id => {
                children.entry(p).or_default().push(m);
            }
            _ => roots.push(m),
        }
    }
    for v in children.values_mut() {
        v.sort_by_key(|m| m.id);
    }
    roots.sort_by_key(|m| m.id);
    let mut out = Vec::new();
    let mut stack: Vec<&Mount> = roots.into_iter().rev().collect();
    while let Some(m) = stack.pop() {
        out.push(m);
        if let Some(c) = m.id.and_then(|id| children.get(&id)) {
            stack.extend(c.iter().rev());
        }
    }
    out
}

fn propagation_bits(m: &Mount) -> u64 {
    let p = &m.propagation;
    let mut bits = 0;
    if p.shared.is_some() {
        bits |= MS_SHARED;
    }
    if p.master.is_some() {
        bits |= MS_SLAVE;
    }
    if p.is_private() {
        bits |= MS_PRIVATE;
    }
    if p.unbindable {
        bits |= MS_UNBINDABLE;
    }
    bits
}

fn super_options(m: &Mount) -> String {
    let mut s = String::from(if m.sb_flags.contains(SbFlags::RDONLY) {
        "ro"
    } else {
        "rw"
    });
    for o in &m.fs_options {
        s.push(',');
        s.push_str(&o.to_string_lossy());
    }
    s
}

/// Options for `fsconfig` of a fresh instance: the superblock options without the flags
/// `fsconfig` does not take as strings.
fn fs_options(m: &Mount) -> String {
    m.fs_options
        .iter()
        .map(|o| o.to_string_lossy().into_owned())
        .filter(|o| !matches!(o.as_str(), "ro" | "rw" | "seclabel"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Records the mount tree of the mount namespace of `pid` (the root of the dumped tree),
/// which is not crcli's, adding the content of its tmpfs mounts to `mounts` (written later by
/// [`Mounts::dump_contents`]). Refuses what the restore cannot make again (module docs).
pub(crate) fn capture(
    pid: i32,
    mounts: &mut Mounts,
    externals: &[ExternalMount],
) -> Result<MountNamespace, DumpError> {
    let table = MountTable::of(Namespace::Pid(pid)).map_err(|source| DumpError::Mounts {
        op: format!("read the mount table of pid {pid}"),
        source,
    })?;
    let own = MountTable::of(Namespace::Current).map_err(|source| DumpError::Mounts {
        op: "read crcli's own mount table".to_owned(),
        source,
    })?;
    let own_groups: HashSet<u64> = own
        .mounts()
        .iter()
        .filter_map(|m| m.propagation.shared)
        .collect();
    let ns_groups: HashSet<u64> = table
        .mounts()
        .iter()
        .filter_map(|m| m.propagation.shared)
        .collect();
    let mut used_externals = HashSet::new();
    let mut out = Vec::new();
    // Superblocks of content already recorded: (dev) -> (mount id, its root).
    let mut content_of: HashMap<(u32, u32), (u64, PathBuf)> = HashMap::new();
    let mut to_read: Vec<(u64, PathBuf, FsContentId)> = Vec::new();
    // Fresh instances already recorded, the same way.
    let mut fresh_of: HashMap<(u32, u32), (u64, PathBuf)> = HashMap::new();
    let order = ordered(&table);
    for (i, m) in order.iter().enumerate() {
        let Some(id) = m.id else {
            return Err(unsupported(
                pid,
                m,
                "the kernel gave no unique mount id (listmount)",
            ));
        };
        let parent = if i == 0 { 0 } else { m.parent_id.unwrap_or(0) };
        if i > 0 && parent == 0 {
            return Err(unsupported(pid, m, "a second root mount"));
        }
        if let Some(g) = m.propagation.shared.filter(|g| own_groups.contains(g)) {
            return Err(unsupported(
                pid,
                m,
                &format!("shared with crcli's mount namespace (peer group {g}); make it private"),
            ));
        }
        if let Some(g) = m.propagation.master.filter(|g| !ns_groups.contains(g)) {
            return Err(unsupported(
                pid,
                m,
                &format!(
                    "a slave of peer group {g}, which is outside its mount namespace; make it private"
                ),
            ));
        }
        let mp = m.mount_point.as_os_str().as_bytes();
        let root = m.root.as_os_str().as_bytes();
        let same_sb = own.superblock_mounts(m.dev);
        let source_kind = if let Some(e) = externals.iter().find(|e| e.mountpoint == m.mount_point)
        {
            used_externals.insert(e.mountpoint.clone());
            NsMountSource::External { key: e.key.clone() }
        } else if let Some((live, sub)) = same_sb.iter().find_map(|l| {
            (l.mount_point == m.mount_point)
                .then(|| below(root, l.root.as_os_str().as_bytes()).map(|s| (l, s)))
                .flatten()
        }) {
            NsMountSource::HostCopy {
                host_mountpoint: image_path(
                    "a mount point",
                    live.mount_point.as_os_str().as_bytes(),
                )?,
                subroot: image_path("a sub-root", sub)?,
            }
        } else if FRESH.contains(&m.fs_type.as_str()) {
            // A second mount of one instance (`/proc/sys` bound on itself read-only, as
            // container runtimes do) is a bind of the first; a first mount must show the root.
            let dev = (m.dev.major, m.dev.minor);
            if let Some(earlier) = fresh_of.get(&dev) {
                bind_of(pid, m, root, earlier)?
            } else if root != b"/" {
                return Err(unsupported(
                    pid,
                    m,
                    "a bind of a part of a filesystem no earlier mount of the namespace shows whole",
                ));
            } else {
                fresh_of.insert(dev, (id, m.root.clone()));
                NsMountSource::Fresh {
                    options: fs_options(m),
                }
            }
        } else if let Some(live) = same_sb.first() {
            return Err(unsupported(
                pid,
                m,
                &format!(
                    "a bind from outside the namespace (the filesystem of {} in crcli's); name it \
                     with --external mnt[{}]:KEY",
                    live.mount_point.display(),
                    m.mount_point.display()
                ),
            ));
        } else if CONTENT.contains(&m.fs_type.as_str()) {
            let dev = (m.dev.major, m.dev.minor);
            if let Some(earlier) = content_of.get(&dev) {
                bind_of(pid, m, root, earlier)?
            } else {
                let content = FsContentId(mounts.lost.len() as u32 + to_read.len() as u32 + 1);
                content_of.insert(dev, (id, m.root.clone()));
                to_read.push((id, m.mount_point.clone(), content));
                NsMountSource::Content {
                    options: fs_options(m),
                    content,
                }
            }
        } else {
            return Err(unsupported(
                pid,
                m,
                "crcli cannot make this filesystem again (no live mount of it in crcli's \
                 namespace; name it with --external if it is a bind from outside)",
            ));
        };
        out.push(NsMount {
            id,
            parent,
            mountpoint: image_path("a mount point", mp)?,
            root: image_path("a mount root", root)?,
            fs_type: m.fs_type.clone(),
            source: m
                .source
                .as_ref()
                .map(|s| OsBytes::new(s.as_bytes().to_vec()))
                .transpose()
                .map_err(|e| DumpError::Parse {
                    what: "a mount source".to_owned(),
                    detail: e.to_string(),
                })?,
            super_options: super_options(m),
            attributes: m.attrs.bits() | m.atime.mount_attr(),
            propagation: propagation_bits(m),
            peer_group: m.propagation.shared.unwrap_or(0),
            master: m.propagation.master.unwrap_or(0),
            source_kind,
        });
    }
    if let Some(e) = externals
        .iter()
        .find(|e| !used_externals.contains(&e.mountpoint))
    {
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "no mount at {} in its mount namespace (named by --external mnt[{}]:{})",
                e.mountpoint.display(),
                e.mountpoint.display(),
                e.key
            ),
        });
    }
    if !to_read.is_empty() {
        let parents: HashSet<u64> = out.iter().map(|m| m.parent).collect();
        let clones = clone_mounts(pid, &to_read, &parents)?;
        for ((id, _, content), clone) in to_read.iter().zip(clones) {
            let mount = MountId(CONTENT_MOUNT_BASE + content.0);
            mounts.lost.push((mount, *content, PathBuf::from("/")));
            mounts
                .content_roots
                .push((mount, PathBuf::from("/"), clone));
            tracing::debug!("mount {id} of the namespace: content {}", content.0);
        }
    }
    let ns_id = crcli_mountinfo::kernel::open_namespace(Some(pid))
        .ok()
        .and_then(|fd| crcli_mountinfo::kernel::namespace_id(&fd).ok())
        .unwrap_or(0);
    Ok(MountNamespace { ns_id, mounts: out })
}

/// Clones each mount `(id, mount point)` alone (no submounts) from a crcli thread that joined
/// the mount namespace of `pid`; refuses a mount hidden under another. An unbindable mount
/// cannot be cloned: with no mount on it (not in `parents`) it is read through itself.
fn clone_mounts(
    pid: i32,
    list: &[(u64, PathBuf, FsContentId)],
    parents: &HashSet<u64>,
) -> Result<Vec<OwnedFd>, DumpError> {
    let path = format!("/proc/{pid}/ns/mnt");
    let ns = std::fs::File::open(&path).map_err(DumpError::io(format!("open {path}")))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            crcli_sys::mntns::unshare_fs().map_err(DumpError::sys("unshare(CLONE_FS)"))?;
            crcli_sys::mntns::setns_mnt(ns.as_fd())
                .map_err(DumpError::sys(format!("setns into {path}")))?;
            let mut out = Vec::with_capacity(list.len());
            for (id, mp, _) in list {
                out.push(clone_one(pid, *id, mp, !parents.contains(id))?);
            }
            Ok(out)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(DumpError::BadTarget {
                pid,
                reason: "reading its mount namespace failed".to_owned(),
            })
        })
    })
}

fn clone_one(pid: i32, id: u64, mp: &Path, alone: bool) -> Result<OwnedFd, DumpError> {
    let cwd = rustix::fs::CWD;
    let top = open_tree(
        cwd,
        mp,
        OpenTreeFlags::CLOEXEC | OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(DumpError::sys(format!(
        "open mount {id} at {} in the mount namespace of pid {pid}",
        mp.display()
    )))?;
    let top_id = crcli_sys::statx::fstatx_mnt_id_unique(&top).map_err(DumpError::sys(format!(
        "statx mount {id} at {}",
        mp.display()
    )))?;
    if top_id != Some(id) {
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "mount {id} at {} of its mount namespace: a tmpfs hidden under another mount \
                 (its content cannot be read)",
                mp.display()
            ),
        });
    }
    match open_tree(
        cwd,
        mp,
        OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC | OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        // Unbindable (EINVAL): nothing on it hides anything, so the mount itself will do.
        Err(rustix::io::Errno::INVAL) if alone => return Ok(top),
        Err(rustix::io::Errno::INVAL) => {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "mount {id} at {} of its mount namespace: a tmpfs that cannot be cloned \
                     (unbindable) with mounts on it (its content cannot be read alone)",
                    mp.display()
                ),
            })
        }
        r => r,
    }
    .map_err(DumpError::sys(format!(
        "clone mount {id} at {} in the mount namespace of pid {pid}",
        mp.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_options_parse() {
        let e: ExternalMount = "mnt[/data/ext]:ext1".parse().unwrap();
        assert_eq!(e.mountpoint, PathBuf::from("/data/ext"));
        assert_eq!(e.key, "ext1");
        for bad in [
            "mnt[data]:k",
            "mnt[/x]:",
            "dev[/x]:k",
            "mnt[/x]k",
            "mnt[/x]:a]b",
        ] {
            assert!(bad.parse::<ExternalMount>().is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_below_a_base() {
        assert_eq!(below(b"/a/b", b"/"), Some(&b"a/b"[..]));
        assert_eq!(below(b"/a/b", b"/a"), Some(&b"b"[..]));
        assert_eq!(below(b"/a", b"/a"), Some(&b""[..]));
        assert_eq!(below(b"/ab", b"/a"), None);
    }
}
