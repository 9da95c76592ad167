//! Mount ids through `statx(2)`: the 64-bit unique id (`STATX_MNT_ID_UNIQUE`, Linux 6.8) that
//! statmount and listmount use, and the old reusable id (`STATX_MNT_ID`, Linux 5.8) that
//! `/proc/PID/mountinfo` and fdinfo show.
//!
//! Both share the one `stx_mnt_id` field, so each needs its own call. A kernel that does not
//! know the requested bit leaves it out of `stx_mask`: these functions then return `Ok(None)`.
//!
//! ```
//! use crcli_sys::statx::{statx_mnt_id_unique, statx_mnt_id};
//! use rustix::fs::{AtFlags, CWD};
//! let unique = statx_mnt_id_unique(CWD, "/", AtFlags::empty())?;
//! let old = statx_mnt_id(CWD, "/", AtFlags::empty())?;
//! println!("/ is mount {unique:?} (old id {old:?})");
//! # Ok::<(), rustix::io::Errno>(())
//! ```

use std::os::fd::AsFd;

use rustix::fs::{AtFlags, StatxFlags};
use rustix::io::Errno;
use rustix::path::Arg;

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8): ask for the 64-bit unique mount id.
pub const STATX_MNT_ID_UNIQUE: StatxFlags = StatxFlags::from_bits_retain(0x4000);

/// `STATX_MNT_ID` (Linux 5.8): ask for the old, reusable mount id.
pub const STATX_MNT_ID: StatxFlags = StatxFlags::MNT_ID;

fn mnt_id_with<P: Arg>(
    dirfd: impl AsFd,
    path: P,
    flags: AtFlags,
    want: StatxFlags,
) -> Result<Option<u64>, Errno> {
    let stx = rustix::fs::statx(dirfd, path, flags, want)?;
    Ok((stx.stx_mask & want.bits() != 0).then_some(stx.stx_mnt_id))
}

/// `statx(dirfd, path, flags, STATX_MNT_ID_UNIQUE, &stx)` → `stx.stx_mnt_id`: the unique id of
/// the mount `path` is on. Linux 6.8; `Ok(None)` on older kernels.
///
/// <https://man7.org/linux/man-pages/man2/statx.2.html>. Errors are statx's: `ENOENT`,
/// `EACCES`, `EBADF`, `ENOTDIR`, … Pass `AtFlags::EMPTY_PATH` and `""` for the mount `dirfd`
/// itself is on (or use [`fstatx_mnt_id_unique`]).
pub fn statx_mnt_id_unique<P: Arg>(
    dirfd: impl AsFd,
    path: P,
    flags: AtFlags,
) -> Result<Option<u64>, Errno> {
    mnt_id_with(dirfd, path, flags, STATX_MNT_ID_UNIQUE)
}

/// `statx(dirfd, path, flags, STATX_MNT_ID, &stx)` → `stx.stx_mnt_id`: the old, reusable id of
/// the mount `path` is on (as in mountinfo and fdinfo). Linux 5.8; `Ok(None)` on older kernels.
///
/// <https://man7.org/linux/man-pages/man2/statx.2.html>.
pub fn statx_mnt_id<P: Arg>(
    dirfd: impl AsFd,
    path: P,
    flags: AtFlags,
) -> Result<Option<u64>, Errno> {
    mnt_id_with(dirfd, path, flags, STATX_MNT_ID)
}

/// The unique id of the mount `fd` is on (`statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID_UNIQUE)`);
/// works for `O_PATH` fds and fds on unmounted or anonymous mounts. Linux 6.8.
pub fn fstatx_mnt_id_unique(fd: impl AsFd) -> Result<Option<u64>, Errno> {
    statx_mnt_id_unique(fd, "", AtFlags::EMPTY_PATH)
}

/// The old, reusable id of the mount `fd` is on (`statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID)`).
/// Linux 5.8.
pub fn fstatx_mnt_id(fd: impl AsFd) -> Result<Option<u64>, Errno> {
    statx_mnt_id(fd, "", AtFlags::EMPTY_PATH)
}
