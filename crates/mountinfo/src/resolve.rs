//! [`resolve_fd`]: which mount an fd crcli holds (e.g. from `pidfd_getfd`) lives on, and for a
//! mount no table shows, how it can be rebuilt.
//!
//! The answer ([`Resolution`]) is one of DESIGN.md's three kinds, or an honest "cannot tell":
//! - [`Resolution::Attached`]: the fd's mount is in one of the tables given (matched by unique
//!   id, or by old id for tables built from mountinfo alone), or — on a kernel with
//!   `STATMOUNT_BY_FD` — statmount by fd reports a mount point or a namespace id.
//! - [`Resolution::Unmounted`]: statmount by fd (Linux 7.0) answers without `MNT_POINT` and
//!   `MNT_NS_ID`: the mount was detached (`umount2(MNT_DETACH)`, or the last fd of an
//!   anonymous mount was closed). Its facts come from statmount.
//! - [`Resolution::Anonymous`]: a clone or fsmount that was never attached, proven either by
//!   statmount by fd answering `ENOENT` (Linux 7.0), or — on any kernel — by all of: the
//!   mount is in no table, statmount of its unique id in the caller's namespace says
//!   `ENOENT`, and `open_tree(fd, "", OPEN_TREE_CLONE | AT_EMPTY_PATH)` succeeds (since Linux
//!   6.15 the kernel lets a process clone a mount only if it is attached in its own namespace
//!   or anonymous and made from it; the clone is closed at once and changes nothing).
//!   Facts are inferred: `fstat`/`fstatfs`/`statx` of the fd, the superblock facts of a live
//!   mount with the same device, and the mount's root found by searching that live mount
//!   for the fd's relative path (only when the answer is unique: a directory, or a file with
//!   one link).
//! - [`Resolution::CannotTell`]: the kernel lacks `STATMOUNT_BY_FD` and nothing above
//!   proved the kind. Never a guess.
//! - [`Resolution::Internal`]: pipes, sockets, anon inodes, nsfs and pidfs files, and memfds
//!   (recognised by the mount of a memfd of our own), live on kernel-internal mounts that no
//!   table shows and no restore rebuilds as a mount.
//!
//! For unmounted and anonymous mounts a [`Rebuild`] plan says how to make the mount again:
//! a bind of a live mount at a sub-root, a fresh mount of a block device that still exists,
//! or a lost superblock whose data lives only through the process's fds.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crcli_sys::features::{Feature, Features};
use crcli_sys::mount::{open_tree, OpenTreeFlags};
use crcli_sys::statmount::{StatmountMask, StatmountTarget};
use crcli_sys::statx::{fstatx_mnt_id, fstatx_mnt_id_unique};
use rustix::fs::FileType;
use rustix::io::Errno;

use crate::error::Error;
use crate::kernel::{StatmountBuf, TABLE_MASK};
use crate::model::{Atime, DevId, Mount, MountAttrs, SbFlags};
use crate::table::MountTable;

/// Most directories [`resolve_fd`] visits in one live mount while looking for an anonymous
/// mount's root.
pub const ROOT_SEARCH_LIMIT: usize = 20_000;

/// What every kernel tells about an fd, whatever its mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdFacts {
    /// Unique id of the fd's mount (`statx` `STATX_MNT_ID_UNIQUE`, Linux 6.8).
    pub mnt_id: Option<u64>,
    /// Old id of the fd's mount (`statx` `STATX_MNT_ID`; fdinfo's `mnt_id`).
    pub old_mnt_id: Option<u32>,
    /// `st_dev` of the file.
    pub dev: DevId,
    /// `st_ino` of the file.
    pub ino: u64,
    /// `st_nlink` of the file.
    pub nlink: u64,
    /// The file is a directory.
    pub is_dir: bool,
    /// `statfs` `f_type` of the file's superblock.
    pub fs_magic: u64,
    /// The mount's attributes as `statfs` `f_flags` reports them (the kernel computes them from
    /// the mount's flags; `RDONLY` is also set when the superblock is read-only). Known for
    /// every kind of mount, anonymous ones included.
    pub attrs: MountAttrs,
    /// The mount's atime mode, from `statfs` `f_flags`.
    pub atime: Atime,
    /// `readlink(/proc/self/fd/N)`: the full path on an attached mount reachable from the
    /// caller's root, the path relative to the mount's root otherwise.
    pub path: PathBuf,
}

/// A live (attached) mount a rebuild plan refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMount {
    /// Unique id, when the table had it.
    pub id: Option<u64>,
    /// Old id.
    pub old_id: u32,
    /// Mount point, relative to the root of the table's reader.
    pub mount_point: PathBuf,
    /// The mount's root inside its file system.
    pub root: PathBuf,
    /// Namespace the table was of.
    pub ns_id: Option<u64>,
}

impl LiveMount {
    fn of(m: &Mount, table: &MountTable) -> LiveMount {
        LiveMount {
            id: m.id,
            old_id: m.old_id,
            mount_point: m.mount_point.clone(),
            root: m.root.clone(),
            ns_id: m.ns_id.or(table.ns_id()),
        }
    }
}

/// How an unmounted or anonymous mount can be made again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebuild {
    /// Clone `live` at `sub_root` (relative to the live mount's root, empty for its root):
    /// `open_tree(live.mount_point/sub_root, OPEN_TREE_CLONE)`.
    BindOfLive {
        /// The live mount of the same superblock whose root is above the mount's root.
        live: LiveMount,
        /// The mount's root relative to the live mount's root.
        sub_root: PathBuf,
    },
    /// A block-device file system whose device node still exists with the same device
    /// number: mount it afresh (fsopen/fsconfig/fsmount) and clone `sub_root`.
    Remount {
        /// The device node.
        source: OsString,
        /// File system type.
        fs_type: String,
        /// Superblock flags.
        sb_flags: SbFlags,
        /// File system options.
        options: Vec<OsString>,
        /// The mount's root inside the file system, relative.
        sub_root: PathBuf,
    },
    /// No live mount and no device: the data exists only through the process's fds; restore
    /// it into a fresh instance.
    LostSuperblock {
        /// File system type, when known (from statmount, or a well-known magic).
        fs_type: Option<String>,
        /// File system options, when known.
        options: Vec<OsString>,
    },
    /// A live mount of the same superblock exists, but the mount's root could not be
    /// established with certainty (anonymous mount on a file with several links, a deleted
    /// file, or more than [`ROOT_SEARCH_LIMIT`] directories to search).
    RootUnknown {
        /// The live mount of the same superblock.
        live: LiveMount,
    },
}

/// How a mount was proven anonymous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnonymousEvidence {
    /// `statmount(STATMOUNT_BY_FD)` answered `ENOENT` (Linux 7.0).
    StatmountByFdEnoent,
    /// Not in any table, not in the caller's namespace, and `open_tree(OPEN_TREE_CLONE)` of it
    /// succeeded (works on Linux 6.15+ without `STATMOUNT_BY_FD`).
    CloneAllowed,
}

/// What [`resolve_fd`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resolution {
    /// The mount is attached.
    Attached {
        /// The mount, from the table it was found in (or from statmount by fd).
        mount: Mount,
        /// Facts about the fd.
        fd: FdFacts,
    },
    /// The mount was detached; facts from statmount by fd (no mount point, no namespace).
    Unmounted {
        /// The mount (its `mount_point` is empty, `ns_id` is `None`).
        mount: Mount,
        /// Facts about the fd.
        fd: FdFacts,
        /// How to make it again.
        rebuild: Rebuild,
    },
    /// A mount that was never attached.
    Anonymous {
        /// Facts about the fd.
        fd: FdFacts,
        /// An attached mount of the same superblock, if any (source, type and options of the
        /// superblock are its; per-mount attributes are not).
        same_superblock: Option<Mount>,
        /// The mount's root inside its file system, when established with certainty.
        root: Option<PathBuf>,
        /// How it was proven anonymous.
        evidence: AnonymousEvidence,
        /// How to make it again.
        rebuild: Rebuild,
    },
    /// The kernel lacks `missing`, and nothing else proved what the mount is.
    CannotTell {
        /// The kernel feature that would tell.
        missing: Feature,
        /// Facts about the fd.
        fd: FdFacts,
    },
    /// A kernel-internal mount (pipe, socket, anon inode, nsfs, pidfs, memfd).
    Internal {
        /// Facts about the fd.
        fd: FdFacts,
    },
}

const PIPEFS_MAGIC: u64 = 0x5049_5045;
const SOCKFS_MAGIC: u64 = 0x534f_434b;
const ANON_INODE_FS_MAGIC: u64 = 0x0904_1934;
const NSFS_MAGIC: u64 = 0x6e73_6673;
const PIDFS_MAGIC: u64 = 0x5049_4446;
const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

fn inspect(what: &'static str) -> impl FnOnce(Errno) -> Error {
    move |source| Error::Inspect { what, source }
}

/// `ST_*` bits of `statfs` `f_flags` to mount attributes and atime mode.
fn statfs_attrs(f: u64) -> (MountAttrs, Atime) {
    const ST_RDONLY: u64 = 1;
    const ST_NOSUID: u64 = 2;
    const ST_NODEV: u64 = 4;
    const ST_NOEXEC: u64 = 8;
    const ST_NOATIME: u64 = 1024;
    const ST_NODIRATIME: u64 = 2048;
    const ST_RELATIME: u64 = 4096;
    const ST_NOSYMFOLLOW: u64 = 8192;
    let mut attrs = MountAttrs::empty();
    for (bit, attr) in [
        (ST_RDONLY, MountAttrs::RDONLY),
        (ST_NOSUID, MountAttrs::NOSUID),
        (ST_NODEV, MountAttrs::NODEV),
        (ST_NOEXEC, MountAttrs::NOEXEC),
        (ST_NODIRATIME, MountAttrs::NODIRATIME),
        (ST_NOSYMFOLLOW, MountAttrs::NOSYMFOLLOW),
    ] {
        if f & bit != 0 {
            attrs |= attr;
        }
    }
    let atime = if f & ST_NOATIME != 0 {
        Atime::NoAtime
    } else if f & ST_RELATIME != 0 {
        Atime::Relatime
    } else {
        Atime::StrictAtime
    };
    (attrs, atime)
}

/// Gathers the facts every kernel gives about `fd`.
pub fn fd_facts(fd: BorrowedFd<'_>) -> Result<FdFacts, Error> {
    let st = rustix::fs::fstat(fd).map_err(inspect("fstat"))?;
    let sfs = rustix::fs::fstatfs(fd).map_err(inspect("fstatfs"))?;
    let mnt_id = fstatx_mnt_id_unique(fd).map_err(inspect("statx STATX_MNT_ID_UNIQUE"))?;
    let old_mnt_id = fstatx_mnt_id(fd)
        .map_err(inspect("statx STATX_MNT_ID"))?
        .and_then(|id| u32::try_from(id).ok());
    let (attrs, atime) = statfs_attrs(sfs.f_flags as u64);
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let path = std::fs::read_link(&link).map_err(|source| Error::Read {
        path: link.into(),
        source,
    })?;
    Ok(FdFacts {
        mnt_id,
        old_mnt_id,
        dev: DevId::from_dev(st.st_dev),
        ino: st.st_ino,
        nlink: st.st_nlink,
        is_dir: FileType::from_raw_mode(st.st_mode) == FileType::Directory,
        fs_magic: sfs.f_type as u64,
        attrs,
        atime,
        path,
    })
}

/// Resolves the mount `fd` lives on against `tables` (the mount tables of the namespaces the
/// caller can see, the fd owner's first). See the module doc for what each answer means and
/// how it is established.
pub fn resolve_fd(fd: impl AsFd, tables: &[&MountTable]) -> Result<Resolution, Error> {
    let fd = fd.as_fd();
    let facts = fd_facts(fd)?;
    if let Some((m, _)) = find_attached(&facts, tables) {
        return Ok(Resolution::Attached {
            mount: m.clone(),
            fd: facts,
        });
    }
    if matches!(
        facts.fs_magic,
        PIPEFS_MAGIC | SOCKFS_MAGIC | ANON_INODE_FS_MAGIC | NSFS_MAGIC | PIDFS_MAGIC
    ) || (facts.mnt_id.is_some() && facts.mnt_id == shm_mount_id())
    {
        return Ok(Resolution::Internal { fd: facts });
    }
    if Features::current().has(Feature::StatmountByFd) {
        let mut buf = StatmountBuf::new();
        match buf.get(StatmountTarget::Fd(fd), TABLE_MASK) {
            Ok(sm) => {
                let attached = sm.mask.contains(StatmountMask::MNT_POINT)
                    || sm.mask.contains(StatmountMask::MNT_NS_ID);
                let mount = Mount::from_statmount(sm, true).map_err(|missing| {
                    Error::StatmountIncomplete {
                        mnt_id: facts.mnt_id.unwrap_or(0),
                        missing,
                    }
                })?;
                if attached {
                    return Ok(Resolution::Attached { mount, fd: facts });
                }
                let rebuild = plan(&mount.root, mount.dev, Some(&mount), &facts, tables);
                return Ok(Resolution::Unmounted {
                    mount,
                    fd: facts,
                    rebuild,
                });
            }
            Err(e) if e.errno() == Some(Errno::NOENT) => {
                return Ok(anonymous(
                    facts,
                    tables,
                    AnonymousEvidence::StatmountByFdEnoent,
                ));
            }
            Err(source) => {
                return Err(Error::Statmount {
                    mnt_id: facts.mnt_id.unwrap_or(0),
                    source,
                })
            }
        }
    }
    if proven_anonymous_by_clone(fd, &facts) {
        return Ok(anonymous(facts, tables, AnonymousEvidence::CloneAllowed));
    }
    Ok(Resolution::CannotTell {
        missing: Feature::StatmountByFd,
        fd: facts,
    })
}

/// The unique id of the kernel's internal tmpfs mount that holds every memfd (and SysV shared
/// memory), learnt once from a memfd of our own.
fn shm_mount_id() -> Option<u64> {
    static ID: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        let fd = rustix::fs::memfd_create("crcli-probe", rustix::fs::MemfdFlags::CLOEXEC).ok()?;
        fstatx_mnt_id_unique(&fd).ok().flatten()
    })
}

fn find_attached<'t>(
    facts: &FdFacts,
    tables: &[&'t MountTable],
) -> Option<(&'t Mount, &'t MountTable)> {
    for t in tables {
        let by_unique = facts.mnt_id.and_then(|id| t.by_unique_id(id));
        // Old ids are unique among existing mounts, and a mount keeps its id while anything
        // (this fd) holds it: a match in a table of live mounts is the same mount.
        let by_old = facts
            .old_mnt_id
            .and_then(|id| t.by_old_id(id))
            .filter(|m| m.id.is_none() || m.id == facts.mnt_id);
        if let Some(m) = by_unique.or(by_old) {
            return Some((m, t));
        }
    }
    None
}

/// The mount is in no table; prove it anonymous without STATMOUNT_BY_FD: it is not attached
/// in the caller's namespace (statmount by id: ENOENT), and the kernel lets the caller clone
/// it, which since 6.15 it allows only for mounts attached in the caller's namespace or
/// anonymous mounts made from it (and nsfs/pidfs files, excluded before).
fn proven_anonymous_by_clone(fd: BorrowedFd<'_>, facts: &FdFacts) -> bool {
    let Some(id) = facts.mnt_id else {
        return false;
    };
    let mut buf = StatmountBuf::new();
    match buf.get(
        StatmountTarget::Id {
            mnt_id: id,
            mnt_ns_id: None,
        },
        StatmountMask::MNT_BASIC,
    ) {
        Err(e) if e.errno() == Some(Errno::NOENT) => {}
        _ => return false,
    }
    // The clone is an unattached copy; dropping it frees it.
    open_tree(
        fd,
        "",
        OpenTreeFlags::CLONE | OpenTreeFlags::AT_EMPTY_PATH | OpenTreeFlags::CLOEXEC,
    )
    .is_ok()
}

fn anonymous(facts: FdFacts, tables: &[&MountTable], evidence: AnonymousEvidence) -> Resolution {
    let live = live_of_superblock(facts.dev, tables);
    let same_superblock = live.first().map(|(m, _)| (*m).clone());
    let root = live.iter().find_map(|(m, t)| find_root(&facts, m, t));
    let rebuild = match (&root, live.first()) {
        (Some(root), _) => plan(root, facts.dev, same_superblock.as_ref(), &facts, tables),
        (None, Some((m, t))) => Rebuild::RootUnknown {
            live: LiveMount::of(m, t),
        },
        (None, None) => plan(Path::new("/"), facts.dev, None, &facts, tables),
    };
    Resolution::Anonymous {
        fd: facts,
        same_superblock,
        root,
        evidence,
        rebuild,
    }
}

/// Attached mounts of the superblock `dev` that can be cloned (not unbindable), in the
/// caller's own namespace first.
fn live_of_superblock<'t>(
    dev: DevId,
    tables: &[&'t MountTable],
) -> Vec<(&'t Mount, &'t MountTable)> {
    let mut out = Vec::new();
    for t in tables {
        for m in t.superblock_mounts(dev) {
            if !m.propagation.unbindable && !m.mount_point.as_os_str().is_empty() {
                out.push((m, *t));
            }
        }
    }
    out
}

/// `path` relative to `base` when `base` is a component-wise prefix of it.
fn under(path: &Path, base: &Path) -> Option<PathBuf> {
    path.strip_prefix(base).ok().map(Path::to_path_buf)
}

fn plan(
    root: &Path,
    dev: DevId,
    known: Option<&Mount>,
    facts: &FdFacts,
    tables: &[&MountTable],
) -> Rebuild {
    for (m, t) in live_of_superblock(dev, tables) {
        if let Some(sub_root) = under(root, &m.root) {
            return Rebuild::BindOfLive {
                live: LiveMount::of(m, t),
                sub_root,
            };
        }
    }
    let sub_root = root
        .strip_prefix("/")
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if let Some(k) = known {
        if let Some(source) = &k.source {
            // The source names a node of the mounter's namespace (the fd owner's, the first
            // table's); the caller's own view is tried too.
            let is_device = |p: &Path| {
                std::fs::metadata(p)
                    .map(|md| md.file_type().is_block_device() && DevId::from_dev(md.rdev()) == dev)
                    .unwrap_or(false)
            };
            let source_path = Path::new(source);
            let is_same_device = source_path.is_absolute()
                && (tables
                    .first()
                    .is_some_and(|t| is_device(&t.reach(source_path)))
                    || is_device(source_path));
            if is_same_device {
                return Rebuild::Remount {
                    source: source.clone(),
                    fs_type: k.fs_type.clone(),
                    sb_flags: k.sb_flags,
                    options: k.fs_options.clone(),
                    sub_root,
                };
            }
        }
    }
    let fs_type = known.map(|k| k.fs_type.clone()).or(match facts.fs_magic {
        TMPFS_MAGIC => Some("tmpfs".to_owned()),
        RAMFS_MAGIC => Some("ramfs".to_owned()),
        _ => None,
    });
    Rebuild::LostSuperblock {
        fs_type,
        options: known.map(|k| k.fs_options.clone()).unwrap_or_default(),
    }
}

/// Finds the root (inside its file system) of the mount `facts` describes by searching the
/// live mount `live` of the same superblock for a directory `D` such that `D/<fd path>` is
/// the fd's file. Only answers when the answer is unique: the fd's file is a directory or has
/// one link, and its path is not a deleted one. The live mount is reached through its table's
/// access root ([`MountTable::reach`]), so a table of another namespace works too.
fn find_root(facts: &FdFacts, live: &Mount, table: &MountTable) -> Option<PathBuf> {
    if !facts.is_dir && facts.nlink != 1 {
        return None;
    }
    let rel = facts.path.strip_prefix("/").ok()?.to_path_buf();
    if facts.path.as_os_str().as_bytes().ends_with(b" (deleted)")
        || rel.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let on_live = |p: &Path| {
        crcli_sys::statx::statx_mnt_id(rustix::fs::CWD, p, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .flatten()
            .is_some_and(|id| id == u64::from(live.old_id))
    };
    // The candidate must be the fd's inode reached without leaving the live mount (a bind of
    // the same superblock mounted inside it could show the inode at a second path).
    let matches = |d: &Path| {
        let p = d.join(&rel);
        std::fs::symlink_metadata(&p)
            .is_ok_and(|md| DevId::from_dev(md.dev()) == facts.dev && md.ino() == facts.ino)
            && on_live(&p)
    };
    // The live mount may be of another namespace: walk it through the table's access root.
    let start = table.reach(&live.mount_point);
    let mut queue = VecDeque::from([start.clone()]);
    let mut visited = 0;
    while let Some(d) = queue.pop_front() {
        visited += 1;
        if visited > ROOT_SEARCH_LIMIT {
            return None;
        }
        if matches(&d) {
            let below = d.strip_prefix(&start).ok()?;
            if below.as_os_str().is_empty() {
                return Some(live.root.clone());
            }
            return Some(live.root.join(below));
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            // Stay on this superblock and do not enter other mounts on top of it.
            if md.is_dir() && DevId::from_dev(md.dev()) == facts.dev {
                let p = e.path();
                if on_live(&p) {
                    queue.push_back(p);
                }
            }
        }
    }
    None
}
