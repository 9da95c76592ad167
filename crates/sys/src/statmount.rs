//! `statmount(2)`: everything the kernel knows about one mount, by its unique id or (Linux 7.0)
//! by an fd on it.
//!
//! The kernel writes a 512-byte fixed record followed by a string area into a caller buffer, and
//! sets `mask` to the parts it filled. [`statmount`] and [`statmount_by_fd`] size the buffer
//! themselves (4 KiB, doubled on `EOVERFLOW`, up to [`MAX_BUFFER`]) and decode the record into a
//! [`Statmount`] in which every part the kernel did not fill is `None`.
//! [`statmount_into`] + [`Statmount::parse`] are the raw two-step form, for callers that manage
//! the buffer themselves.
//!
//! ```
//! use crcli_sys::statmount::{statmount, StatmountMask};
//! use crcli_sys::listmount::{listmount_all, ListmountFlags, LSMT_ROOT};
//!
//! for id in listmount_all(LSMT_ROOT, None, ListmountFlags::empty())? {
//!     let sm = statmount(id, None, StatmountMask::MNT_POINT | StatmountMask::FS_TYPE)?;
//!     println!("{:?} {:?}", sm.mnt_point, sm.fs_type);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use bitflags::bitflags;
use rustix::io::Errno;

use crate::mount::{MountAttrFlags, MountPropagation};
use crate::raw::{syscall_result, SYS_STATMOUNT};

bitflags! {
    /// `STATMOUNT_*` request/result mask bits: which parts of [`Statmount`] to fill (request) or
    /// were filled (result). Unknown bits are kept, so a newer kernel's bits survive a round trip.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct StatmountMask: u64 {
        /// `STATMOUNT_SB_BASIC`: superblock device, magic and flags (Linux 6.8).
        const SB_BASIC = 0x1;
        /// `STATMOUNT_MNT_BASIC`: mount ids, attributes, propagation (Linux 6.8).
        const MNT_BASIC = 0x2;
        /// `STATMOUNT_PROPAGATE_FROM`: the dominating peer group id (Linux 6.8).
        const PROPAGATE_FROM = 0x4;
        /// `STATMOUNT_MNT_ROOT`: the mount's root, relative to its superblock's root (Linux 6.8).
        const MNT_ROOT = 0x8;
        /// `STATMOUNT_MNT_POINT`: where it is mounted, relative to the caller's root (Linux 6.8).
        const MNT_POINT = 0x10;
        /// `STATMOUNT_FS_TYPE`: the filesystem type name (Linux 6.8).
        const FS_TYPE = 0x20;
        /// `STATMOUNT_MNT_NS_ID`: the id of the mount namespace holding the mount (Linux 6.11).
        const MNT_NS_ID = 0x40;
        /// `STATMOUNT_MNT_OPTS`: the superblock options as one comma-separated string (Linux 6.11).
        const MNT_OPTS = 0x80;
        /// `STATMOUNT_FS_SUBTYPE`: the filesystem subtype, e.g. for FUSE (Linux 6.13).
        const FS_SUBTYPE = 0x100;
        /// `STATMOUNT_SB_SOURCE`: the source string of the superblock (Linux 6.13).
        const SB_SOURCE = 0x200;
        /// `STATMOUNT_OPT_ARRAY`: the filesystem options as an array (Linux 6.13).
        const OPT_ARRAY = 0x400;
        /// `STATMOUNT_OPT_SEC_ARRAY`: the security (LSM) options as an array (Linux 6.13).
        const OPT_SEC_ARRAY = 0x800;
        /// `STATMOUNT_SUPPORTED_MASK`: which of these bits the kernel supports (Linux 6.15).
        const SUPPORTED_MASK = 0x1000;
        /// `STATMOUNT_MNT_UIDMAP`: the uid mapping of an idmapped mount (Linux 6.15).
        const MNT_UIDMAP = 0x2000;
        /// `STATMOUNT_MNT_GIDMAP`: the gid mapping of an idmapped mount (Linux 6.15).
        const MNT_GIDMAP = 0x4000;
        /// Bits a future kernel may define.
        const _ = !0;
    }
}

impl StatmountMask {
    /// Every bit this crate knows how to decode.
    pub const KNOWN: StatmountMask = StatmountMask::from_bits_retain(0x7fff);
}

bitflags! {
    /// `SB_*` superblock flags as reported in [`SbBasic::flags`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct SbFlags: u32 {
        /// `SB_RDONLY`: the superblock is read-only.
        const RDONLY = 1;
        /// `SB_SYNCHRONOUS`: writes are synced at once.
        const SYNCHRONOUS = 1 << 4;
        /// `SB_DIRSYNC`: directory modifications are synchronous.
        const DIRSYNC = 1 << 7;
        /// `SB_LAZYTIME`: timestamps are updated lazily.
        const LAZYTIME = 1 << 25;
        /// Other bits the kernel may report.
        const _ = !0;
    }
}

/// `STATMOUNT_BY_FD`: the statmount flag (Linux 7.0) that takes the mount from `mnt_fd` instead
/// of `mnt_id`.
pub const STATMOUNT_BY_FD: u32 = 0x1;

/// Size of the fixed part of `struct statmount`; the string area starts here.
pub const STATMOUNT_FIXED_SIZE: usize = 512;

/// First buffer size tried by [`statmount`] and [`statmount_by_fd`].
pub const INITIAL_BUFFER: usize = 4096;

/// Largest buffer [`statmount`] and [`statmount_by_fd`] grow to before giving up with
/// [`StatmountError::TooLarge`].
pub const MAX_BUFFER: usize = 16 << 20;

/// `MNT_ID_REQ_SIZE_VER0`: `struct mnt_id_req` without `mnt_ns_id`.
pub(crate) const MNT_ID_REQ_SIZE_VER0: u32 = 24;
/// `MNT_ID_REQ_SIZE_VER1`: `struct mnt_id_req` with `mnt_ns_id` (Linux 6.11).
pub(crate) const MNT_ID_REQ_SIZE_VER1: u32 = 32;

/// `struct mnt_id_req`, shared by statmount and listmount.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MntIdReq {
    pub(crate) size: u32,
    /// `mnt_ns_fd` (listmount) or `mnt_fd` (statmount with `STATMOUNT_BY_FD`).
    pub(crate) fd: u32,
    pub(crate) mnt_id: u64,
    pub(crate) param: u64,
    pub(crate) mnt_ns_id: u64,
}

impl MntIdReq {
    /// A request for `mnt_id` in the namespace `mnt_ns_id` (0: the caller's), with the smallest
    /// size that carries it, so that kernels older than 6.11 accept it when no namespace is given.
    pub(crate) fn new(mnt_id: u64, mnt_ns_id: u64, param: u64) -> Self {
        MntIdReq {
            size: if mnt_ns_id == 0 {
                MNT_ID_REQ_SIZE_VER0
            } else {
                MNT_ID_REQ_SIZE_VER1
            },
            fd: 0,
            mnt_id,
            param,
            mnt_ns_id,
        }
    }
}

/// Which mount a statmount call is about.
#[derive(Debug, Clone, Copy)]
pub enum StatmountTarget<'fd> {
    /// A mount by its 64-bit unique id, in the caller's mount namespace (`mnt_ns_id: None`) or
    /// in the namespace with that id.
    Id {
        /// Unique mount id (from listmount, statx `STATX_MNT_ID_UNIQUE` or statmount).
        mnt_id: u64,
        /// Mount namespace id (`NS_GET_MNTNS_ID`), `None` for the caller's namespace.
        mnt_ns_id: Option<u64>,
    },
    /// The mount an fd (any fd, including `O_PATH`) is on: `STATMOUNT_BY_FD`, Linux 7.0.
    Fd(BorrowedFd<'fd>),
}

impl std::fmt::Display for StatmountTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatmountTarget::Id {
                mnt_id,
                mnt_ns_id: None,
            } => write!(f, "mount {mnt_id:#x}"),
            StatmountTarget::Id {
                mnt_id,
                mnt_ns_id: Some(ns),
            } => write!(f, "mount {mnt_id:#x} in mount namespace {ns:#x}"),
            StatmountTarget::Fd(fd) => write!(f, "the mount of fd {}", fd.as_raw_fd()),
        }
    }
}

/// Errors of [`statmount`], [`statmount_by_fd`] and [`Statmount::parse`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatmountError {
    /// The syscall failed. Notable errnos: `ENOENT` no such mount (or, by fd, an anonymous mount
    /// whose mount fd is still open), `EINVAL` a flag or field this kernel does not know (e.g.
    /// `STATMOUNT_BY_FD` before 7.0), `EBADF` a bad fd, `EPERM` a mount outside the caller's
    /// reach, `ENOSYS` a kernel before 6.8.
    #[error("statmount of {target} failed")]
    Syscall {
        /// What was asked about, for the message.
        target: String,
        /// The kernel's answer.
        #[source]
        source: Errno,
    },
    /// The record did not fit even in [`MAX_BUFFER`] bytes.
    #[error("statmount of {target} needs more than {limit} bytes of buffer")]
    TooLarge {
        /// What was asked about, for the message.
        target: String,
        /// The largest buffer tried.
        limit: usize,
    },
    /// The kernel's record is not what this crate expects (a string offset out of bounds, …).
    #[error("statmount returned a malformed record: {what}")]
    Malformed {
        /// What is wrong.
        what: String,
    },
}

impl StatmountError {
    /// The kernel's errno, when the syscall itself failed.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            StatmountError::Syscall { source, .. } => Some(*source),
            _ => None,
        }
    }
}

/// Superblock facts (`STATMOUNT_SB_BASIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbBasic {
    /// Device major number (`st_dev` of files on this superblock).
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Filesystem magic (`statfs` `f_type`).
    pub magic: u64,
    /// `SB_*` flags.
    pub flags: SbFlags,
}

/// Mount facts (`STATMOUNT_MNT_BASIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MntBasic {
    /// Unique 64-bit mount id.
    pub mnt_id: u64,
    /// Unique id of the parent mount (the mount itself for a namespace root or a detached mount).
    pub parent_id: u64,
    /// The old, reusable mount id (first field of `/proc/PID/mountinfo`, `mnt_id` of fdinfo).
    pub mnt_id_old: u32,
    /// The old id of the parent mount.
    pub parent_id_old: u32,
    /// `MOUNT_ATTR_*` attributes of the mount.
    pub attr: MountAttrFlags,
    /// `MS_SHARED` / `MS_SLAVE` / `MS_PRIVATE` / `MS_UNBINDABLE`.
    pub propagation: MountPropagation,
    /// Peer group id, 0 when the mount is not shared.
    pub peer_group: u64,
    /// Peer group id of the master, 0 when the mount is not a slave.
    pub master: u64,
}

/// A decoded statmount record. Every `Option` is `None` exactly when the kernel did not set the
/// corresponding bit in [`Statmount::mask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statmount {
    /// Total size of the record the kernel wrote (fixed part + strings).
    pub size: u32,
    /// What the kernel filled (may include bits this crate does not decode).
    pub mask: StatmountMask,
    /// `STATMOUNT_SB_BASIC`.
    pub sb: Option<SbBasic>,
    /// `STATMOUNT_MNT_BASIC`.
    pub mnt: Option<MntBasic>,
    /// `STATMOUNT_PROPAGATE_FROM`: the nearest dominating peer group, `Some(0)` if there is none.
    pub propagate_from: Option<u64>,
    /// `STATMOUNT_MNT_ROOT`: the mount's root inside its filesystem, exact bytes.
    pub mnt_root: Option<PathBuf>,
    /// `STATMOUNT_MNT_POINT`: the mount point relative to the caller's root, exact bytes.
    /// Absent for unmounted mounts.
    pub mnt_point: Option<PathBuf>,
    /// `STATMOUNT_FS_TYPE`.
    pub fs_type: Option<String>,
    /// `STATMOUNT_MNT_NS_ID`. Absent for unmounted mounts.
    pub mnt_ns_id: Option<u64>,
    /// `STATMOUNT_MNT_OPTS`: superblock options (without ro/rw/sync/dirsync/lazytime), decoded
    /// lossily as UTF-8.
    pub mnt_opts: Option<String>,
    /// `STATMOUNT_FS_SUBTYPE`.
    pub fs_subtype: Option<String>,
    /// `STATMOUNT_SB_SOURCE`: the source (device path, "tmpfs", "none", …), exact bytes.
    pub sb_source: Option<OsString>,
    /// `STATMOUNT_OPT_ARRAY`: filesystem options, one per element, decoded lossily as UTF-8.
    pub opt_array: Option<Vec<String>>,
    /// `STATMOUNT_OPT_SEC_ARRAY`: security options, one per element, decoded lossily as UTF-8.
    pub opt_sec_array: Option<Vec<String>>,
    /// `STATMOUNT_SUPPORTED_MASK`: the bits this kernel can fill.
    pub supported_mask: Option<StatmountMask>,
    /// `STATMOUNT_MNT_UIDMAP`: uid map extents as the kernel prints them ("first lower count"),
    /// relative to the caller's user namespace. Empty for a mount that is not idmapped.
    pub mnt_uidmap: Option<Vec<String>>,
    /// `STATMOUNT_MNT_GIDMAP`: gid map extents, as for `mnt_uidmap`.
    pub mnt_gidmap: Option<Vec<String>>,
}

fn rd_u32(buf: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_ne_bytes(b)
}

fn rd_u64(buf: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    u64::from_ne_bytes(b)
}

fn malformed(what: impl Into<String>) -> StatmountError {
    StatmountError::Malformed { what: what.into() }
}

impl Statmount {
    /// Decodes a record written by the kernel (the buffer passed to [`statmount_into`]).
    ///
    /// Only bits set in the record's `mask` are decoded; string offsets are checked against the
    /// record's `size`.
    pub fn parse(buf: &[u8]) -> Result<Statmount, StatmountError> {
        if buf.len() < STATMOUNT_FIXED_SIZE {
            return Err(malformed(format!(
                "buffer of {} bytes is shorter than the fixed record",
                buf.len()
            )));
        }
        let size = rd_u32(buf, 0);
        let size_us = size as usize;
        if size_us < STATMOUNT_FIXED_SIZE || size_us > buf.len() {
            return Err(malformed(format!(
                "record size {size} outside {STATMOUNT_FIXED_SIZE}..={}",
                buf.len()
            )));
        }
        let rec = &buf[..size_us];
        let strings = &rec[STATMOUNT_FIXED_SIZE..];
        let mask = StatmountMask::from_bits_retain(rd_u64(rec, 8));

        let string_at = |field: &str, field_off: usize| -> Result<&[u8], StatmountError> {
            let start = rd_u32(rec, field_off) as usize;
            let tail = strings.get(start..).ok_or_else(|| {
                malformed(format!("{field} offset {start} beyond the string area"))
            })?;
            let end = tail
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| malformed(format!("{field} is not NUL-terminated")))?;
            Ok(&tail[..end])
        };
        let list_at = |field: &str, num_off: usize, str_off: usize| {
            let num = rd_u32(rec, num_off) as usize;
            let mut pos = rd_u32(rec, str_off) as usize;
            // Every element takes at least its NUL, which bounds `num` by the string area.
            if num > strings.len() {
                return Err(malformed(format!("{field} claims {num} elements")));
            }
            let mut out = Vec::with_capacity(num);
            for i in 0..num {
                let tail = strings.get(pos..).ok_or_else(|| {
                    malformed(format!("{field} element {i} beyond the string area"))
                })?;
                let end = tail.iter().position(|&b| b == 0).ok_or_else(|| {
                    malformed(format!("{field} element {i} is not NUL-terminated"))
                })?;
                out.push(String::from_utf8_lossy(&tail[..end]).into_owned());
                pos += end + 1;
            }
            Ok(out)
        };
        let has = |bit: StatmountMask| mask.contains(bit);
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let path = |b: &[u8]| PathBuf::from(OsString::from_vec(b.to_vec()));

        Ok(Statmount {
            size,
            mask,
            sb: has(StatmountMask::SB_BASIC).then(|| SbBasic {
                dev_major: rd_u32(rec, 16),
                dev_minor: rd_u32(rec, 20),
                magic: rd_u64(rec, 24),
                flags: SbFlags::from_bits_retain(rd_u32(rec, 32)),
            }),
            mnt: has(StatmountMask::MNT_BASIC).then(|| MntBasic {
                mnt_id: rd_u64(rec, 40),
                parent_id: rd_u64(rec, 48),
                mnt_id_old: rd_u32(rec, 56),
                parent_id_old: rd_u32(rec, 60),
                attr: MountAttrFlags::from_bits_retain(rd_u64(rec, 64)),
                propagation: MountPropagation::from_bits_retain(rd_u64(rec, 72)),
                peer_group: rd_u64(rec, 80),
                master: rd_u64(rec, 88),
            }),
            propagate_from: has(StatmountMask::PROPAGATE_FROM).then(|| rd_u64(rec, 96)),
            mnt_root: has(StatmountMask::MNT_ROOT)
                .then(|| string_at("mnt_root", 104).map(path))
                .transpose()?,
            mnt_point: has(StatmountMask::MNT_POINT)
                .then(|| string_at("mnt_point", 108).map(path))
                .transpose()?,
            fs_type: has(StatmountMask::FS_TYPE)
                .then(|| string_at("fs_type", 36).map(lossy))
                .transpose()?,
            mnt_ns_id: has(StatmountMask::MNT_NS_ID).then(|| rd_u64(rec, 112)),
            mnt_opts: has(StatmountMask::MNT_OPTS)
                .then(|| string_at("mnt_opts", 4).map(lossy))
                .transpose()?,
            fs_subtype: has(StatmountMask::FS_SUBTYPE)
                .then(|| string_at("fs_subtype", 120).map(lossy))
                .transpose()?,
            sb_source: has(StatmountMask::SB_SOURCE)
                .then(|| string_at("sb_source", 124).map(|b| OsString::from_vec(b.to_vec())))
                .transpose()?,
            opt_array: has(StatmountMask::OPT_ARRAY)
                .then(|| list_at("opt_array", 128, 132))
                .transpose()?,
            opt_sec_array: has(StatmountMask::OPT_SEC_ARRAY)
                .then(|| list_at("opt_sec_array", 136, 140))
                .transpose()?,
            supported_mask: has(StatmountMask::SUPPORTED_MASK)
                .then(|| StatmountMask::from_bits_retain(rd_u64(rec, 144))),
            mnt_uidmap: has(StatmountMask::MNT_UIDMAP)
                .then(|| list_at("mnt_uidmap", 152, 156))
                .transpose()?,
            mnt_gidmap: has(StatmountMask::MNT_GIDMAP)
                .then(|| list_at("mnt_gidmap", 160, 164))
                .transpose()?,
        })
    }
}

/// `statmount(&req, buf, bufsize, flags)`: one raw call into a caller buffer.
///
/// Linux 6.8 (by id; `mnt_ns_id` since 6.11); `STATMOUNT_BY_FD` since Linux 7.0. No man page
/// yet; see kernel commit 46eae99ef733 ("add statmount(2) syscall") and
/// `Documentation/filesystems` / `include/uapi/linux/mount.h`.
///
/// Fills `buf` with a `struct statmount` record; decode it with [`Statmount::parse`]. Errors:
/// `EOVERFLOW` the record does not fit in `buf`, `ENOENT` no such mount (or an anonymous mount
/// whose mount fd is open, by fd), `EINVAL` unknown flags/fields, `EBADF` bad fd, `ENOSYS`
/// kernel before 6.8.
pub fn statmount_into(
    target: StatmountTarget<'_>,
    mask: StatmountMask,
    buf: &mut [u8],
) -> Result<(), Errno> {
    let (req, flags) = match target {
        StatmountTarget::Id { mnt_id, mnt_ns_id } => (
            MntIdReq::new(mnt_id, mnt_ns_id.unwrap_or(0), mask.bits()),
            0u32,
        ),
        StatmountTarget::Fd(fd) => (
            MntIdReq {
                size: MNT_ID_REQ_SIZE_VER1,
                fd: fd.as_raw_fd() as u32,
                mnt_id: 0,
                param: mask.bits(),
                mnt_ns_id: 0,
            },
            STATMOUNT_BY_FD,
        ),
    };
    statmount_raw(&req, buf, flags)
}

/// The one place statmount is called.
pub(crate) fn statmount_raw(req: &MntIdReq, buf: &mut [u8], flags: u32) -> Result<(), Errno> {
    // SAFETY: `req` points to a live, initialised `struct mnt_id_req` whose `size` field is at
    // most its real size (32 bytes); `buf` is a live, writable slice of exactly `buf.len()`
    // bytes, which the kernel writes at most; both outlive the call, and the kernel keeps no
    // reference to either after it returns.
    let ret = unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            req as *const MntIdReq,
            buf.as_mut_ptr(),
            buf.len(),
            flags as libc::c_ulong,
        )
    };
    syscall_result(ret).map(|_| ())
}

fn statmount_grow(
    target: StatmountTarget<'_>,
    mask: StatmountMask,
) -> Result<Statmount, StatmountError> {
    let mut buf = vec![0u8; INITIAL_BUFFER];
    loop {
        match statmount_into(target, mask, &mut buf) {
            Ok(()) => return Statmount::parse(&buf),
            Err(Errno::OVERFLOW) if buf.len() < MAX_BUFFER => {
                let len = (buf.len() * 2).min(MAX_BUFFER);
                buf = vec![0u8; len];
            }
            Err(Errno::OVERFLOW) => {
                return Err(StatmountError::TooLarge {
                    target: target.to_string(),
                    limit: buf.len(),
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

/// `statmount({.mnt_id, .mnt_ns_id, .param = mask}, buf, size, 0)`: the facts in `mask` about
/// the mount with unique id `mnt_id`, in the caller's namespace (`mnt_ns_id: None`) or in the
/// namespace with that id (Linux 6.11). Linux 6.8.
///
/// Grows the buffer as needed (see the module doc). Read [`Statmount::mask`]: a kernel fills only
/// what it knows, and some facts do not exist for some mounts.
///
/// Seen on 6.18: an id below the unique-id range (e.g. 1, or an old mountinfo id) gives
/// `EINVAL`; an id in the range that no mount has (any more) gives `ENOENT`, as does the id of
/// a mount that was detached or never attached (statmount by id sees only attached mounts).
pub fn statmount(
    mnt_id: u64,
    mnt_ns_id: Option<u64>,
    mask: StatmountMask,
) -> Result<Statmount, StatmountError> {
    statmount_grow(StatmountTarget::Id { mnt_id, mnt_ns_id }, mask)
}

/// `statmount({.mnt_fd = fd, .param = mask}, buf, size, STATMOUNT_BY_FD)`: the facts in `mask`
/// about the mount `fd` is on, whether that mount is attached or unmounted. Linux 7.0.
///
/// For an unmounted mount the kernel leaves out `MNT_POINT` and `MNT_NS_ID`; for an anonymous
/// mount whose mount fd is still open it answers `ENOENT`. On kernels before 7.0 this fails with
/// `EINVAL` (see [`crate::features::Features`]). `fd` may be an `O_PATH` fd.
pub fn statmount_by_fd(fd: impl AsFd, mask: StatmountMask) -> Result<Statmount, StatmountError> {
    statmount_grow(StatmountTarget::Fd(fd.as_fd()), mask)
}
