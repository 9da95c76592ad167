//! Building [`MountTable`]s from the running kernel: from `/proc/PID/mountinfo`, from
//! listmount+statmount, or both merged ([`MountTable::of`]).
//!
//! - [`MountTable::read_mountinfo`] parses `/proc/PID/mountinfo` (every kernel). Mount points
//!   are relative to that process's root; mounts outside it are not shown.
//! - [`MountTable::from_listmount`] uses listmount (Linux 6.8; another namespace by id since
//!   6.11) then one statmount per mount. A mount listed but gone before its statmount is left
//!   out. Mount points are relative to the caller's root (for another namespace: to its root).
//! - [`MountTable::of`] uses both, merged (see [`MountTable::merge`]); it falls back to
//!   mountinfo alone when the kernel has no listmount/statmount (`ENOSYS`).
//!
//! ```no_run
//! use crcli_mountinfo::{MountTable, kernel::Namespace};
//! let table = MountTable::of(Namespace::Current)?;
//! for m in table.mounts() {
//!     println!("{:?} {} {:?}", m.id, m.fs_type, m.mount_point);
//! }
//! # Ok::<(), crcli_mountinfo::Error>(())
//! ```

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crcli_sys::listmount::{Listmount, ListmountFlags, LSMT_ROOT};
use crcli_sys::mount::{MountAttrFlags, MountPropagation};
use crcli_sys::statmount::{
    statmount_into, Statmount, StatmountError, StatmountMask, StatmountTarget, INITIAL_BUFFER,
    MAX_BUFFER,
};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::Error;
use crate::model::{Atime, DevId, Mount, MountAttrs, Origin, Propagation, SbFlags};
use crate::parse::unescape;
use crate::table::MountTable;

/// Which mount namespace to build a table of.
#[derive(Debug, Clone, Copy)]
pub enum Namespace<'fd> {
    /// The caller's own.
    Current,
    /// The namespace of process `pid` (its mountinfo is read too).
    Pid(i32),
    /// A mount namespace fd (`/proc/PID/ns/mnt` opened, or any nsfs fd of a mount namespace).
    Fd(BorrowedFd<'fd>),
}

/// What [`MountTable::from_listmount`] asks statmount for.
pub const TABLE_MASK: StatmountMask = StatmountMask::SB_BASIC
    .union(StatmountMask::MNT_BASIC)
    .union(StatmountMask::PROPAGATE_FROM)
    .union(StatmountMask::MNT_ROOT)
    .union(StatmountMask::MNT_POINT)
    .union(StatmountMask::FS_TYPE)
    .union(StatmountMask::MNT_NS_ID)
    .union(StatmountMask::MNT_OPTS)
    .union(StatmountMask::FS_SUBTYPE)
    .union(StatmountMask::SB_SOURCE);

/// The 64-bit id of a mount namespace fd (`NS_GET_MNTNS_ID`, Linux 6.8).
pub fn namespace_id(ns_fd: impl AsFd) -> Result<u64, Error> {
    crcli_sys::nsfs::ns_get_mntns_id(ns_fd).map_err(|source| Error::NamespaceId { source })
}

/// Opens `/proc/PID/ns/mnt` (`None`: the caller's).
pub fn open_namespace(pid: Option<i32>) -> Result<OwnedFd, Error> {
    let path = proc_path(pid, "ns/mnt");
    rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|source| Error::OpenNamespace { path, source })
}

fn proc_path(pid: Option<i32>, file: &str) -> PathBuf {
    match pid {
        Some(p) => PathBuf::from(format!("/proc/{p}/{file}")),
        None => PathBuf::from(format!("/proc/self/{file}")),
    }
}

fn split_options(opts: &str) -> Vec<OsString> {
    opts.as_bytes()
        .split(|&b| b == b',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            use std::os::unix::ffi::OsStringExt;
            OsString::from_vec(unescape(s))
        })
        .collect()
}

impl Mount {
    /// Builds the model of one mount from a statmount record asked with (at least)
    /// [`TABLE_MASK`]. The record must have `MNT_BASIC`, `SB_BASIC`, `MNT_ROOT` and `FS_TYPE`;
    /// `MNT_POINT` too unless `allow_unmounted` (then a missing mount point reads as empty).
    pub fn from_statmount(sm: Statmount, allow_unmounted: bool) -> Result<Mount, &'static str> {
        let mnt = sm.mnt.ok_or("MNT_BASIC")?;
        let sb = sm.sb.ok_or("SB_BASIC")?;
        let root = sm.mnt_root.ok_or("MNT_ROOT")?;
        let mount_point = match (sm.mnt_point, allow_unmounted) {
            (Some(p), _) => p,
            (None, true) => PathBuf::new(),
            (None, false) => return Err("MNT_POINT"),
        };
        let fs_type = sm.fs_type.ok_or("FS_TYPE")?;
        let a = mnt.attr;
        let mut attrs = MountAttrs::empty();
        for (from, to) in [
            (MountAttrFlags::RDONLY, MountAttrs::RDONLY),
            (MountAttrFlags::NOSUID, MountAttrs::NOSUID),
            (MountAttrFlags::NODEV, MountAttrs::NODEV),
            (MountAttrFlags::NOEXEC, MountAttrs::NOEXEC),
            (MountAttrFlags::NODIRATIME, MountAttrs::NODIRATIME),
            (MountAttrFlags::IDMAP, MountAttrs::IDMAP),
            (MountAttrFlags::NOSYMFOLLOW, MountAttrs::NOSYMFOLLOW),
        ] {
            if a.contains(from) {
                attrs |= to;
            }
        }
        let atime = match a.bits() & MountAttrFlags::_ATIME.bits() {
            x if x == MountAttrFlags::NOATIME.bits() => Atime::NoAtime,
            x if x == MountAttrFlags::STRICTATIME.bits() => Atime::StrictAtime,
            _ => Atime::Relatime,
        };
        let p = mnt.propagation;
        let master = p.contains(MountPropagation::SLAVE).then_some(mnt.master);
        let propagation = Propagation {
            shared: p
                .contains(MountPropagation::SHARED)
                .then_some(mnt.peer_group),
            master,
            propagate_from: sm
                .propagate_from
                .filter(|&d| d != 0 && master.is_some() && Some(d) != master),
            unbindable: p.contains(MountPropagation::UNBINDABLE),
        };
        let source = sm
            .sb_source
            .filter(|s| !s.is_empty() && s.as_bytes() != b"none");
        Ok(Mount {
            id: Some(mnt.mnt_id),
            old_id: mnt.mnt_id_old,
            parent_id: Some(mnt.parent_id),
            parent_old_id: mnt.parent_id_old,
            dev: DevId {
                major: sb.dev_major,
                minor: sb.dev_minor,
            },
            sb_magic: Some(sb.magic),
            root,
            mount_point,
            fs_type,
            fs_subtype: sm.fs_subtype.filter(|s| !s.is_empty()),
            source,
            sb_flags: SbFlags::from_bits_truncate(sb.flags.bits()),
            fs_options: sm
                .mnt_opts
                .as_deref()
                .map(split_options)
                .unwrap_or_default(),
            attrs,
            atime,
            other_mount_options: Vec::new(),
            propagation,
            unknown_tags: Vec::new(),
            ns_id: sm.mnt_ns_id,
            origin: Origin::Statmount,
        })
    }
}

/// Fewest mounts per thread worth a thread of its own in [`MountTable::from_listmount`].
const PARALLEL_MIN: usize = 2048;

/// statmount of each id, in order; ids that vanished are skipped.
fn describe(ids: &[u64], ns_id: Option<u64>) -> Result<Vec<Mount>, Error> {
    let mut buf = StatmountBuf::new();
    let mut mounts = Vec::with_capacity(ids.len());
    for &id in ids {
        let sm = match buf.get(
            StatmountTarget::Id {
                mnt_id: id,
                mnt_ns_id: ns_id,
            },
            TABLE_MASK,
        ) {
            Ok(sm) => sm,
            Err(e) if e.errno() == Some(Errno::NOENT) => continue,
            Err(source) => return Err(Error::Statmount { mnt_id: id, source }),
        };
        let m = Mount::from_statmount(sm, false).map_err(|missing| Error::StatmountIncomplete {
            mnt_id: id,
            missing,
        })?;
        mounts.push(m);
    }
    Ok(mounts)
}

/// A reusable statmount buffer, grown on `EOVERFLOW` up to [`MAX_BUFFER`].
pub(crate) struct StatmountBuf(Vec<u8>);

impl StatmountBuf {
    pub(crate) fn new() -> Self {
        StatmountBuf(vec![0; INITIAL_BUFFER])
    }

    pub(crate) fn get(
        &mut self,
        target: StatmountTarget<'_>,
        mask: StatmountMask,
    ) -> Result<Statmount, StatmountError> {
        loop {
            match statmount_into(target, mask, &mut self.0) {
                Ok(()) => return Statmount::parse(&self.0),
                Err(Errno::OVERFLOW) if self.0.len() < MAX_BUFFER => {
                    let len = (self.0.len() * 2).min(MAX_BUFFER);
                    self.0.resize(len, 0);
                }
                Err(Errno::OVERFLOW) => {
                    return Err(StatmountError::TooLarge {
                        target: target.to_string(),
                        limit: self.0.len(),
                    })
                }
                Err(source) => {
                    return Err(StatmountError::Syscall {
                        target: target.to_string(),
                        source,
                    })
                }
            }
        }
    }
}

impl MountTable {
    /// Reads and parses `/proc/PID/mountinfo` (`None`: the caller's). The namespace id is
    /// filled in when `NS_GET_MNTNS_ID` works.
    pub fn read_mountinfo(pid: Option<i32>) -> Result<MountTable, Error> {
        let ns_id = open_namespace(pid)
            .ok()
            .and_then(|fd| namespace_id(&fd).ok());
        let path = proc_path(pid, "mountinfo");
        let text = read_all(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        MountTable::from_mountinfo(&text, ns_id).map_err(|source| Error::Parse { path, source })
    }

    /// Lists the mounts of a namespace with listmount and describes each with statmount.
    /// `ns_id: None` is the caller's namespace. Mounts that vanish between the two calls
    /// (statmount `ENOENT`) are left out. Large tables are described by several threads
    /// (at most one per CPU, each for a contiguous run of ids), the order kept.
    pub fn from_listmount(ns_id: Option<u64>) -> Result<MountTable, Error> {
        let ids = Listmount::new(LSMT_ROOT, ns_id, ListmountFlags::empty())
            .collect::<Result<Vec<u64>, Errno>>()
            .map_err(|source| Error::Listmount { ns_id, source })?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(ids.len() / PARALLEL_MIN + 1)
            .max(1);
        let chunk = ids.len().div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<Mount>, Error>> = if threads == 1 {
            vec![describe(&ids, ns_id)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = ids
                    .chunks(chunk)
                    .map(|part| s.spawn(move || describe(part, ns_id)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        let mut mounts = Vec::with_capacity(ids.len());
        for part in parts {
            mounts.extend(part?);
        }
        let ns_id = ns_id.or_else(|| mounts.first().and_then(|m: &Mount| m.ns_id));
        Ok(MountTable::from_mounts(mounts, ns_id, Origin::Statmount))
    }

    /// The table of a namespace from every source the kernel offers, merged: listmount +
    /// statmount and, where a process of the namespace is known (`Pid`, `Current`, or found by
    /// scanning /proc for an fd), its mountinfo. Without listmount/statmount (`ENOSYS`) the
    /// table comes from mountinfo alone. When that process is in another namespace than the
    /// caller, the table's access root is `/proc/PID/root` ([`MountTable::reach`]).
    pub fn of(ns: Namespace<'_>) -> Result<MountTable, Error> {
        let (ns_id, pid) = match ns {
            Namespace::Current => (None, None),
            Namespace::Pid(pid) => {
                let fd = open_namespace(Some(pid))?;
                (namespace_id(&fd).ok(), Some(pid))
            }
            Namespace::Fd(fd) => {
                let id = namespace_id(fd).ok();
                (id, find_process_in(fd))
            }
        };
        let have_pid = pid.is_some() || matches!(ns, Namespace::Current);
        // mountinfo is read on a second thread while statmount runs.
        let (from_kernel, mi) = std::thread::scope(|s| {
            let mi = have_pid.then(|| s.spawn(|| MountTable::read_mountinfo(pid)));
            let from_kernel = match ns_id {
                // The caller's own namespace needs no id (kernels 6.8-6.10 take none).
                Some(id) if Some(id) != own_namespace_id() => MountTable::from_listmount(Some(id)),
                _ => MountTable::from_listmount(None),
            };
            let mi = mi.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            (from_kernel, mi)
        });
        // A namespace other than the caller's is reached through the root of a process in it.
        let access_root = pid
            .filter(|&p| !same_namespace_as_caller(p))
            .map(|p| std::path::PathBuf::from(format!("/proc/{p}/root")));
        let table = match (from_kernel, mi) {
            (Ok(sm), Some(mi)) => Ok(MountTable::merge(sm, mi?)),
            (Ok(sm), None) => Ok(sm),
            (
                Err(Error::Listmount {
                    source: Errno::NOSYS,
                    ..
                }),
                Some(mi),
            ) => mi,
            (
                Err(Error::Listmount {
                    source: Errno::NOSYS,
                    ..
                }),
                None,
            ) => Err(Error::NoSourceForNamespace),
            (Err(e), _) => Err(e),
        };
        table.map(|t| t.with_access_root(access_root))
    }
}

/// Whether process `pid` is in the caller's mount namespace (same nsfs inode).
fn same_namespace_as_caller(pid: i32) -> bool {
    let ino = |p: String| {
        rustix::fs::stat(p.as_str())
            .ok()
            .map(|st| (st.st_dev, st.st_ino))
    };
    let theirs = ino(format!("/proc/{pid}/ns/mnt"));
    theirs.is_some() && theirs == ino("/proc/self/ns/mnt".to_owned())
}

/// Reads a whole /proc file in large chunks (a seq_file answers each read as far as the
/// buffer goes, so fewer, larger reads cost less).
fn read_all(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    const CHUNK: usize = 1 << 20;
    let mut f = std::fs::File::open(path)?;
    let mut text = Vec::new();
    loop {
        let len = text.len();
        text.resize(len + CHUNK, 0);
        let n = f.read(&mut text[len..])?;
        text.truncate(len + n);
        if n == 0 {
            return Ok(text);
        }
    }
}

fn own_namespace_id() -> Option<u64> {
    open_namespace(None)
        .ok()
        .and_then(|fd| namespace_id(&fd).ok())
}

/// A process whose mount namespace is the one `ns_fd` refers to (same nsfs inode) and whose
/// root is `/`, if any.
fn find_process_in(ns_fd: BorrowedFd<'_>) -> Option<i32> {
    let want = rustix::fs::fstat(ns_fd).ok()?;
    let dir = std::fs::read_dir("/proc").ok()?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let path = format!("/proc/{pid}/ns/mnt");
        let Ok(st) = rustix::fs::stat(path.as_str()) else {
            continue;
        };
        // Its mountinfo must show paths from the namespace's root, as statmount does.
        let rooted = std::fs::read_link(format!("/proc/{pid}/root"))
            .is_ok_and(|r| r == std::path::Path::new("/"));
        if st.st_ino == want.st_ino && st.st_dev == want.st_dev && rooted {
            return Some(pid);
        }
    }
    None
}
