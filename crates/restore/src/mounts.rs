//! Files on unmounted and anonymous mounts: the mounts are rebuilt in crcli (the parent) with the
//! new mount API, never attached anywhere, and the files are opened through the mount fd; the
//! child takes the open files over (see `child`). Nothing is created in the filesystem tree.
//!
//! Live mounts and devices are looked up in the mount namespace crcli restores in: run crcli
//! entered into the process's namespace (`nsenter -m`), or in a fresh copy of it (`unshare -m`:
//! the rebuilt mounts need no mountpoint), and the process comes back there with its files.
//!
//! Per mount entry of the image that a file of the process is on (DESIGN.md, "Rebuilding an
//! unmounted mount without a temporary mountpoint"):
//! 1. a mount fd: `BindOfLive` -> `open_tree(live mountpoint/sub-root, OPEN_TREE_CLONE)` (the
//!    sub-root may be a file); `Remount` -> `fsopen`/`fsconfig`/`fsmount` of the source, then a
//!    clone of the sub-root; `LostSuperblock` -> `fsopen`/`fsconfig`/`fsmount` of a fresh
//!    instance, filled from the image's `fs` entries through the mount fd, then a clone of the
//!    sub-root when the mount's root was not the filesystem root;
//! 2. `mount_setattr` clears `MOUNT_ATTR_RDONLY` when the dumped mount was writable (a clone
//!    copies its source's flags);
//! 3. every file is opened with `openat(mount fd, relative path)` (the mount's root itself
//!    through `/proc/self/fd/N`), checked (type; size and mtime of a regular file) and seeked.
//!    A FIFO is first opened read-write through the mount fd (never blocks) and refilled with
//!    its buffered bytes once per pipe, that helper kept until every fd of the mount is open. A
//!    file unlinked while open is recreated through the mount fd from its dumped content (mode
//!    and mtime restored): on a lost superblock (a fresh instance no one else sees) under its
//!    own name, then opened and unlinked again, so /proc shows the same "(deleted)" path; on a
//!    filesystem others see (a clone of a live mount, a remounted device) with `O_TMPFILE`, so
//!    it never appears in the tree;
//! 4. `mount_setattr` sets the dumped attributes (ro, nosuid, nodev, noexec, nosymfollow, atime
//!    mode). Files first, attributes second: every open the process had was allowed by the
//!    dumped attributes, and an fd open for writing can only exist on a mount that was writable,
//!    so this order never fails where the other might (a read-only clone refuses write opens);
//! 5. an unmounted mount's fd is closed (files opened through it stay on an unmounted mount,
//!    the state `umount2(MNT_DETACH)` leaves); an anonymous mount's fd is handed to the process
//!    at its number(s) (`kept_fds`).
//!
//! One mount fd serves every file of one mount entry, so fds that shared a mount share one
//! again and different entries give different mounts. On any error every fd made so far is
//! dropped: the clones and fresh instances, never attached, disappear with them.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crcli_image::{
    FileLocation, FsEntry, FsEntryKind, Image, MountEntry, MountId, MountKind, RebuildPlan,
};
use crcli_sys::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, mount_setattr,
    open_tree, FsMountFlags, FsOpenFlags, MountAttr, MountAttrFlags, MountSetattrFlags,
    OpenTreeFlags,
};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};

use crate::error::RestoreError;

/// Attributes crcli re-applies (the atime mode included).
const ATTRS: MountAttrFlags = MountAttrFlags::RDONLY
    .union(MountAttrFlags::NOSUID)
    .union(MountAttrFlags::NODEV)
    .union(MountAttrFlags::NOEXEC)
    .union(MountAttrFlags::_ATIME)
    .union(MountAttrFlags::NODIRATIME)
    .union(MountAttrFlags::NOSYMFOLLOW);

/// One file the parent opens through a rebuilt mount for the child.
#[derive(Debug, Clone)]
pub(crate) struct HeldOpen {
    /// The mount it is on.
    pub(crate) mount: MountId,
    /// Its path relative to the mount's root (empty: the root itself).
    pub(crate) rel: PathBuf,
    /// Open flags.
    pub(crate) flags: u32,
    /// Position to seek to.
    pub(crate) pos: Option<u64>,
    /// What the file was at dump time, to check it.
    pub(crate) loc: FileLocation,
    /// A regular file that only appends (may have grown).
    pub(crate) append: bool,
    /// Check size and mtime (regular files).
    pub(crate) strict: bool,
    /// This is the anonymous mount's own mount fd, not a file opened through it.
    pub(crate) mount_fd: bool,
    /// Names it in errors.
    pub(crate) what: String,
    /// A FIFO or an unlinked file: made or refilled through the mount fd.
    pub(crate) special: Special,
}

/// What, beyond an `openat`, a held open needs.
#[derive(Debug, Clone, Default)]
pub(crate) enum Special {
    /// A plain open of an existing file.
    #[default]
    None,
    /// A FIFO: its buffer is refilled (once per pipe) before the open.
    Fifo {
        /// The pipe's id in the image (fds of one FIFO share it).
        pipe: crcli_image::PipeId,
        /// Its capacity.
        capacity: u32,
        /// The bytes it held.
        buffered: Vec<u8>,
    },
    /// A file unlinked while open: recreated through the mount fd, opened, unlinked again.
    Unlinked {
        /// Permission bits.
        mode: u32,
        /// Its size.
        size: u64,
        /// Its data regions (offset, bytes).
        data: Vec<(u64, Vec<u8>)>,
        /// The mount is a fresh instance only crcli sees (a lost superblock): the file is
        /// created under its own name (so /proc shows the same "(deleted)" path) and unlinked;
        /// on a filesystem others see it is made with `O_TMPFILE`, never visible in the tree.
        by_name: bool,
    },
}

fn invalid(msg: String) -> RestoreError {
    RestoreError::Invalid(msg)
}

fn unsupported(msg: String) -> RestoreError {
    RestoreError::Unsupported(msg)
}

fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Attached => "attached",
        MountKind::Unmounted => "unmounted",
        MountKind::Anonymous => "anonymous",
    }
}

fn dev_of(e: &MountEntry) -> u64 {
    rustix::fs::makedev(e.dev_major, e.dev_minor)
}

/// Checks, before anything is created, that mount `e` can be rebuilt here: its plan is
/// complete and what it refers to (the live mount, the device, the dumped content) exists.
pub(crate) fn check(e: &MountEntry, image: &Image) -> Result<(), RestoreError> {
    let name = format!("{} mount {} ({})", kind_name(e.kind), e.id, e.fs_type);
    if e.kind == MountKind::Attached {
        return Err(invalid(format!(
            "{name}: an attached mount has no rebuild plan"
        )));
    }
    if MountAttrFlags::from_bits_retain(e.attributes).contains(MountAttrFlags::IDMAP) {
        return Err(unsupported(format!(
            "{name}: idmapped mounts cannot be rebuilt yet"
        )));
    }
    match &e.rebuild {
        None => Err(invalid(format!("{name} has no rebuild plan"))),
        Some(RebuildPlan::BindOfLive {
            live_mountpoint,
            subroot,
            ..
        }) => {
            let live = Path::new(live_mountpoint.as_path());
            let meta = std::fs::metadata(live).map_err(|err| RestoreError::FileMismatch {
                path: live.to_path_buf(),
                problem: format!("the live mount {name} was a bind of is gone: {err}"),
            })?;
            if meta.dev() != dev_of(e) && !crate::mountns::remade(image, live) {
                return Err(RestoreError::FileMismatch {
                    path: live.to_path_buf(),
                    problem: format!(
                        "not the filesystem {name} was a bind of (device {:#x}, was {:#x})",
                        meta.dev(),
                        dev_of(e)
                    ),
                });
            }
            let at = join(live, subroot.as_path());
            std::fs::symlink_metadata(&at).map_err(|err| RestoreError::FileMismatch {
                path: at.clone(),
                problem: format!("the root of {name} is gone: {err}"),
            })?;
            Ok(())
        }
        Some(RebuildPlan::Remount { source, .. }) => {
            let src = Path::new(std::ffi::OsStr::from_bytes(source.as_bytes()));
            let meta = std::fs::metadata(src).map_err(|err| RestoreError::FileMismatch {
                path: src.to_path_buf(),
                problem: format!("the device of {name} is gone: {err}"),
            })?;
            if !meta.file_type().is_block_device() || meta.rdev() != dev_of(e) {
                return Err(RestoreError::FileMismatch {
                    path: src.to_path_buf(),
                    problem: format!("not the block device of {name}"),
                });
            }
            Ok(())
        }
        Some(RebuildPlan::LostSuperblock { content, .. }) => {
            let c = image.fs_content(*content).ok_or_else(|| {
                invalid(format!("{name}: its content {content} is not in the image"))
            })?;
            let bytes: u64 = c
                .entries
                .iter()
                .map(|e| match &e.kind {
                    FsEntryKind::Regular { extents, .. } => {
                        extents.iter().map(|x| u64::from(x.len)).sum()
                    }
                    _ => 0,
                })
                .sum();
            tracing::debug!(
                mount = %e.id,
                entries = c.entries.len(),
                bytes,
                "lost superblock content checked"
            );
            Ok(())
        }
    }
}

fn join(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

fn errno(step: String) -> impl FnOnce(rustix::io::Errno) -> RestoreError {
    RestoreError::errno(step)
}

/// Rebuilds the mounts `held` refers to and opens every held file through them. Returns one
/// fd per entry of `held`, in order. On error everything made so far is closed.
pub(crate) fn open_held(image: &Image, held: &[HeldOpen]) -> Result<Vec<OwnedFd>, RestoreError> {
    let mut by_mount: BTreeMap<MountId, Vec<usize>> = BTreeMap::new();
    for (i, h) in held.iter().enumerate() {
        by_mount.entry(h.mount).or_default().push(i);
    }
    let mut out: Vec<Option<OwnedFd>> = held.iter().map(|_| None).collect();
    for (mount, indices) in by_mount {
        let e = image
            .mount(mount)
            .ok_or_else(|| invalid(format!("mount {mount} is not in the image")))?;
        let mfd = make_mount(e, image)?;
        let want = MountAttrFlags::from_bits_retain(e.attributes) & ATTRS;
        if !want.contains(MountAttrFlags::RDONLY) {
            set_attrs(&mfd, MountAttrFlags::empty(), MountAttrFlags::RDONLY)
                .map_err(errno(format!("making the rebuilt mount {mount} writable")))?;
        }
        // FIFO helpers (reader-writer opens) keep each refilled buffer alive until every fd
        // of the mount is open.
        let mut fifo_helpers: Vec<(crcli_image::PipeId, OwnedFd)> = Vec::new();
        for i in indices {
            let h = &held[i];
            let fd = if h.mount_fd {
                rustix::io::fcntl_dupfd_cloexec(&mfd, 0)
                    .map_err(errno(format!("duplicating the mount fd for {}", h.what)))?
            } else {
                match &h.special {
                    Special::None => open_one(&mfd, h)?,
                    Special::Fifo {
                        pipe,
                        capacity,
                        buffered,
                    } => open_fifo(&mfd, h, *pipe, *capacity, buffered, &mut fifo_helpers)?,
                    Special::Unlinked {
                        mode,
                        size,
                        data,
                        by_name,
                    } => open_unlinked(&mfd, h, *mode, *size, data, *by_name)?,
                }
            };
            out[i] = Some(fd);
        }
        drop(fifo_helpers);
        let atime = want & MountAttrFlags::_ATIME;
        let set = (want - MountAttrFlags::_ATIME) | atime;
        let clr = ATTRS - (want - MountAttrFlags::_ATIME);
        set_attrs(&mfd, set, clr | MountAttrFlags::_ATIME).map_err(errno(format!(
            "setting the attributes {:#x} of the rebuilt mount {mount}",
            want.bits()
        )))?;
        tracing::debug!(mount = %mount, kind = kind_name(e.kind), "mount rebuilt");
        // Unmounted: closing the mount fd leaves the files on an unmounted mount. Anonymous:
        // the process's own copies (`mount_fd` entries) keep it.
        drop(mfd);
    }
    Ok(out
        .into_iter()
        .map(|f| f.expect("every held open belongs to one mount"))
        .collect())
}

fn set_attrs(
    mfd: &OwnedFd,
    set: MountAttrFlags,
    clr: MountAttrFlags,
) -> Result<(), rustix::io::Errno> {
    mount_setattr(
        mfd,
        "",
        MountSetattrFlags::AT_EMPTY_PATH,
        &MountAttr {
            attr_set: set,
            attr_clr: clr,
            ..MountAttr::default()
        },
    )
}

/// Opens one file through the mount fd and checks it is the dumped file.
fn open_one(mfd: &OwnedFd, h: &HeldOpen) -> Result<OwnedFd, RestoreError> {
    let flags = OFlags::from_bits_retain(h.flags) | OFlags::CLOEXEC;
    let fd = if h.rel.as_os_str().is_empty() {
        let me = format!("/proc/self/fd/{}", mfd.as_raw_fd());
        rustix::fs::open(me.as_str(), flags, Mode::empty())
    } else {
        rustix::fs::openat(mfd, &h.rel, flags, Mode::empty())
    }
    .map_err(errno(format!(
        "opening {} ({}) through its rebuilt mount",
        h.what,
        h.rel.display()
    )))?;
    let st = rustix::fs::fstat(&fd).map_err(errno(format!("fstat {}", h.what)))?;
    let mismatch = |problem: String| RestoreError::FileMismatch {
        path: h.rel.clone(),
        problem: format!("{}: {problem}", h.what),
    };
    if st.st_mode & libc::S_IFMT != h.loc.mode & libc::S_IFMT {
        return Err(mismatch(format!(
            "file type changed since the dump (mode {:o}, was {:o})",
            st.st_mode, h.loc.mode
        )));
    }
    if h.strict {
        let size = st.st_size as u64;
        if h.append && size < h.loc.size {
            return Err(mismatch(format!(
                "shrank since the dump ({size} bytes, was {})",
                h.loc.size
            )));
        }
        if !h.append
            && (size != h.loc.size
                || st.st_mtime != h.loc.mtime.secs
                || st.st_mtime_nsec as u32 != h.loc.mtime.nsecs)
        {
            return Err(mismatch(format!(
                "changed since the dump (size {size}, mtime {}.{:09}; was {}, {}.{:09})",
                st.st_mtime, st.st_mtime_nsec, h.loc.size, h.loc.mtime.secs, h.loc.mtime.nsecs
            )));
        }
    }
    if let Some(pos) = h.pos {
        rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(pos))
            .map_err(errno(format!("seeking {} to {pos}", h.what)))?;
    }
    Ok(fd)
}

/// Opens a FIFO through the mount fd: the first open of a pipe refills its buffer through a
/// reader-writer helper (kept in `helpers`), then the fd is opened with its own flags (without
/// blocking: the helper is both ends).
fn open_fifo(
    mfd: &OwnedFd,
    h: &HeldOpen,
    pipe: crcli_image::PipeId,
    capacity: u32,
    buffered: &[u8],
    helpers: &mut Vec<(crcli_image::PipeId, OwnedFd)>,
) -> Result<OwnedFd, RestoreError> {
    let step = |what: &str| errno(format!("{what} FIFO {} ({})", h.what, h.rel.display()));
    let rw = OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if !helpers.iter().any(|(p, _)| *p == pipe) {
        let helper = rustix::fs::openat(mfd, &h.rel, rw, Mode::empty()).map_err(step("opening"))?;
        let st = rustix::fs::fstat(&helper).map_err(step("fstat"))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return Err(RestoreError::FileMismatch {
                path: h.rel.clone(),
                problem: format!("{}: not a FIFO any more (mode {:o})", h.what, st.st_mode),
            });
        }
        if capacity as usize > 65536 {
            rustix::pipe::fcntl_setpipe_size(&helper, capacity as usize)
                .map_err(step("setting the size of"))?;
        }
        let mut done = 0;
        while done < buffered.len() {
            done += rustix::io::write(&helper, &buffered[done..]).map_err(step("refilling"))?;
        }
        helpers.push((pipe, helper));
    }
    let flags = OFlags::from_bits_retain(h.flags);
    let fd = rustix::fs::openat(
        mfd,
        &h.rel,
        flags | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(step("opening"))?;
    rustix::fs::fcntl_setfl(&fd, flags).map_err(step("setting the flags of"))?;
    Ok(fd)
}

/// Recreates a file that was unlinked while open, through the mount fd: its data written, the
/// fd opened with its flags and position, and the name removed again (or never made:
/// `O_TMPFILE`). Missing parent directories of a lost superblock's file are made (mode 0755:
/// their metadata is unknown).
fn open_unlinked(
    mfd: &OwnedFd,
    h: &HeldOpen,
    mode: u32,
    size: u64,
    data: &[(u64, Vec<u8>)],
    by_name: bool,
) -> Result<OwnedFd, RestoreError> {
    let step = |what: &str| {
        errno(format!(
            "{what} the unlinked file {} ({}) through its rebuilt mount",
            h.what,
            h.rel.display()
        ))
    };
    let mode = Mode::from_bits_truncate(mode & 0o7777);
    let parent = h.rel.parent().unwrap_or(Path::new(""));
    let parent_rel: &Path = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let rw = if by_name {
        let mut dir = PathBuf::new();
        for c in parent.components() {
            dir.push(c);
            match rustix::fs::mkdirat(mfd, &dir, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(step("making the directory of")(e)),
            }
        }
        rustix::fs::openat(
            mfd,
            &h.rel,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            mode,
        )
        .map_err(step("creating"))?
    } else {
        rustix::fs::openat(
            mfd,
            parent_rel,
            OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
            mode,
        )
        .map_err(step("creating (O_TMPFILE)"))?
    };
    let written = (|| {
        for (off, bytes) in data {
            let mut done = 0;
            while done < bytes.len() {
                done += rustix::io::pwrite(&rw, &bytes[done..], off + done as u64)?;
            }
        }
        rustix::fs::ftruncate(&rw, size)?;
        // The umask may have narrowed the mode; the writes moved the mtime.
        rustix::fs::fchmod(&rw, mode)?;
        let mtime = ts(h.loc.mtime);
        rustix::fs::futimens(
            &rw,
            &Timestamps {
                last_access: Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                last_modification: mtime,
            },
        )
    })();
    let opened = written.and_then(|()| {
        let flags =
            OFlags::from_bits_retain(h.flags) & !(OFlags::CREATE | OFlags::EXCL | OFlags::TRUNC);
        let me = format!("/proc/self/fd/{}", rw.as_raw_fd());
        rustix::fs::open(me.as_str(), flags | OFlags::CLOEXEC, Mode::empty())
    });
    if by_name {
        // Unlinked again whatever happened: the name never outlives this call.
        rustix::fs::unlinkat(mfd, &h.rel, AtFlags::empty()).map_err(step("unlinking"))?;
    }
    let fd = opened.map_err(step("writing and opening"))?;
    if let Some(pos) = h.pos {
        rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(pos)).map_err(step("seeking"))?;
    }
    Ok(fd)
}

/// The mount fd of a rebuilt mount (unattached, its root at the mount's root).
fn make_mount(e: &MountEntry, image: &Image) -> Result<OwnedFd, RestoreError> {
    let id = e.id;
    let clone = OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC;
    match &e.rebuild {
        Some(RebuildPlan::BindOfLive {
            live_mountpoint,
            subroot,
            ..
        }) => {
            let at = join(Path::new(live_mountpoint.as_path()), subroot.as_path());
            let fd = open_tree(
                rustix::fs::CWD,
                &at,
                clone | OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(errno(format!(
                "cloning {} for mount {id} (open_tree OPEN_TREE_CLONE)",
                at.display()
            )))?;
            let st = rustix::fs::fstat(&fd).map_err(errno(format!("fstat the clone of {id}")))?;
            if st.st_dev != dev_of(e)
                && !crate::mountns::remade(image, Path::new(live_mountpoint.as_path()))
            {
                return Err(RestoreError::FileMismatch {
                    path: at,
                    problem: format!(
                        "the clone for mount {id} is on device {:#x}, not {:#x}",
                        st.st_dev,
                        dev_of(e)
                    ),
                });
            }
            Ok(fd)
        }
        Some(RebuildPlan::Remount {
            source,
            fs_type,
            options,
            subroot,
        }) => {
            let fs = fsopen(fs_type.as_str(), FsOpenFlags::FSOPEN_CLOEXEC)
                .map_err(errno(format!("fsopen {fs_type} for mount {id}")))?;
            fsconfig_set_string(&fs, "source", source.as_bytes())
                .map_err(errno(format!("fsconfig source for mount {id}")))?;
            configure(&fs, options, id)?;
            let m = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
                .map_err(errno(format!("fsmount {fs_type} for mount {id}")))?;
            sub_root(m, subroot.as_path(), id)
        }
        Some(RebuildPlan::LostSuperblock {
            fs_type,
            options,
            content,
            subroot,
        }) => {
            let fs = fsopen(fs_type.as_str(), FsOpenFlags::FSOPEN_CLOEXEC)
                .map_err(errno(format!("fsopen {fs_type} for mount {id}")))?;
            configure(&fs, options, id)?;
            let m = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
                .map_err(errno(format!("fsmount {fs_type} for mount {id}")))?;
            let c = image
                .fs_content(*content)
                .ok_or_else(|| invalid(format!("content {content} is not in the image")))?;
            fill(&m, image, *content, &c.entries, false)?;
            sub_root(m, subroot.as_path(), id)
        }
        None => Err(invalid(format!("mount {id} has no rebuild plan"))),
    }
}

/// Passes `options` ("a=b,c") to `fsconfig`, then creates the superblock.
pub(crate) fn configure(fs: &OwnedFd, options: &str, id: MountId) -> Result<(), RestoreError> {
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some((k, v)) => fsconfig_set_string(fs, k, v),
            None => fsconfig_set_flag(fs, opt),
        }
        .map_err(errno(format!("fsconfig {opt} for mount {id}")))?;
    }
    fsconfig_create(fs).map_err(errno(format!(
        "creating the filesystem for mount {id} (options {options:?})"
    )))
}

/// A clone of `sub` under the fresh mount `m` (or `m` itself for the whole filesystem).
fn sub_root(m: OwnedFd, sub: &Path, id: MountId) -> Result<OwnedFd, RestoreError> {
    if sub.as_os_str().is_empty() {
        return Ok(m);
    }
    open_tree(
        &m,
        sub,
        OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC | OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(errno(format!(
        "cloning the sub-root {} for mount {id}",
        sub.display()
    )))
}

fn ts(t: crcli_image::Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: i64::from(t.nsecs),
    }
}

/// The most inode numbers [`fill`] uses up with placeholders to reach one dumped number.
pub(crate) const MAX_INO_GAP: u64 = 4096;

/// Recreates the dumped content in the fresh filesystem behind mount fd `m` (its root).
/// Directory times are set last, after their entries were made.
///
/// With `keep_inos` (a fresh tmpfs, which numbers inodes one after the other, given `entries`
/// in ascending inode order: `crate::mountns`), each entry gets its dumped inode number where
/// the numbers left free in between can be used up by short-lived placeholder files (at most
/// [`MAX_INO_GAP`] per gap; beyond that the numbers simply differ).
pub(crate) fn fill(
    m: &OwnedFd,
    image: &Image,
    content: crcli_image::FsContentId,
    entries: &[FsEntry],
    keep_inos: bool,
) -> Result<(), RestoreError> {
    let data = image.fs_data(content)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut dirs = Vec::new();
    let mut last_ino = if keep_inos {
        rustix::fs::fstat(m)
            .map_err(errno("fstat a rebuilt filesystem's root".to_owned()))?
            .st_ino
    } else {
        0
    };
    for (i, e) in entries.iter().enumerate() {
        if keep_inos
            && e.ino > last_ino + 1
            && e.ino - last_ino - 1 <= MAX_INO_GAP
            && !e.path.as_bytes().is_empty()
            && !matches!(e.kind, FsEntryKind::HardLink { .. })
        {
            for _ in last_ino + 1..e.ino {
                let name = ".crcli-inode-placeholder";
                let f = rustix::fs::openat(
                    m,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(errno(
                    "create an inode placeholder in a rebuilt filesystem".to_owned(),
                ))?;
                drop(f);
                rustix::fs::unlinkat(m, name, AtFlags::empty()).map_err(errno(
                    "remove an inode placeholder in a rebuilt filesystem".to_owned(),
                ))?;
            }
        }
        let path = Path::new(e.path.as_path());
        let shown = e.path.to_string();
        let rel: &Path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let step = |what: &str| errno(format!("{what} {shown:?} in a rebuilt filesystem"));
        let mode = Mode::from_bits_truncate(e.mode);
        match &e.kind {
            FsEntryKind::Directory => {
                if !path.as_os_str().is_empty() {
                    rustix::fs::mkdirat(m, rel, Mode::from_bits_truncate(0o700))
                        .map_err(step("mkdir"))?;
                }
            }
            FsEntryKind::Regular { size, extents } => {
                let f = rustix::fs::openat(
                    m,
                    rel,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(step("create"))?;
                for (n, x) in extents.iter().enumerate() {
                    data.read_extent(x, &mut buf, n as u64)?;
                    let mut done = 0usize;
                    let len = x.len as usize;
                    while done < len {
                        let w = rustix::io::pwrite(&f, &buf[done..len], x.offset + done as u64)
                            .map_err(step("write"))?;
                        done += w;
                    }
                }
                rustix::fs::ftruncate(&f, *size).map_err(step("truncate"))?;
                set_xattrs(f.as_fd(), e, &shown)?;
            }
            FsEntryKind::Symlink { target } => {
                rustix::fs::symlinkat(target.as_bytes(), m, rel).map_err(step("symlink"))?;
            }
            FsEntryKind::HardLink { target } => {
                rustix::fs::linkat(m, target.as_path(), m, rel, AtFlags::empty())
                    .map_err(step("link"))?;
                continue;
            }
            FsEntryKind::Fifo => {
                rustix::fs::mknodat(m, rel, rustix::fs::FileType::Fifo, mode, 0)
                    .map_err(step("mkfifo"))?;
            }
            FsEntryKind::CharDevice { rdev } => {
                rustix::fs::mknodat(m, rel, rustix::fs::FileType::CharacterDevice, mode, *rdev)
                    .map_err(step("mknod"))?;
            }
            FsEntryKind::BlockDevice { rdev } => {
                rustix::fs::mknodat(m, rel, rustix::fs::FileType::BlockDevice, mode, *rdev)
                    .map_err(step("mknod"))?;
            }
            FsEntryKind::Socket => {
                rustix::fs::mknodat(m, rel, rustix::fs::FileType::Socket, mode, 0)
                    .map_err(step("mknod"))?;
            }
        }
        if keep_inos {
            let rel_now: &Path = if e.path.as_bytes().is_empty() {
                Path::new(".")
            } else {
                Path::new(e.path.as_path())
            };
            if let Ok(st) = rustix::fs::statat(m, rel_now, AtFlags::SYMLINK_NOFOLLOW) {
                last_ino = last_ino.max(st.st_ino);
            }
        }
        if e.ino == 0 {
            // Metadata unknown at dump (a directory no fd reached): the fresh one's stays.
            continue;
        }
        let is_link = matches!(e.kind, FsEntryKind::Symlink { .. });
        let nofollow = if is_link {
            AtFlags::SYMLINK_NOFOLLOW
        } else {
            AtFlags::empty()
        };
        if matches!(e.kind, FsEntryKind::Directory) {
            let d = rustix::fs::openat(
                m,
                rel,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(step("open"))?;
            set_xattrs(d.as_fd(), e, &shown)?;
        }
        rustix::fs::chownat(
            m,
            rel,
            Some(rustix::fs::Uid::from_raw(e.uid)),
            Some(rustix::fs::Gid::from_raw(e.gid)),
            nofollow,
        )
        .map_err(step("chown"))?;
        if !is_link {
            rustix::fs::chmodat(m, rel, mode, AtFlags::empty()).map_err(step("chmod"))?;
        }
        let times = Timestamps {
            last_access: ts(e.atime),
            last_modification: ts(e.mtime),
        };
        if matches!(e.kind, FsEntryKind::Directory) {
            dirs.push((i, times));
        } else {
            rustix::fs::utimensat(m, rel, &times, nofollow).map_err(step("set the times of"))?;
        }
    }
    for (i, times) in dirs.into_iter().rev() {
        let e = &entries[i];
        let rel = if e.path.as_bytes().is_empty() {
            PathBuf::from(".")
        } else {
            PathBuf::from(e.path.as_path())
        };
        rustix::fs::utimensat(m, &rel, &times, AtFlags::empty()).map_err(errno(format!(
            "set the times of {:?} in a rebuilt filesystem",
            e.path.to_string()
        )))?;
    }
    Ok(())
}

fn set_xattrs(fd: BorrowedFd<'_>, e: &FsEntry, shown: &str) -> Result<(), RestoreError> {
    for x in &e.xattrs {
        let name = std::ffi::CString::new(x.name.as_bytes())
            .map_err(|_| invalid(format!("{shown:?}: an xattr name with a NUL byte")))?;
        rustix::fs::fsetxattr(
            fd,
            name.as_c_str(),
            &x.value,
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(errno(format!(
            "setting xattr {} of {shown:?} in a rebuilt filesystem",
            String::from_utf8_lossy(x.name.as_bytes())
        )))?;
    }
    Ok(())
}
