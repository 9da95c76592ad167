//! nsfs ioctls on mount-namespace fds (`/proc/PID/ns/mnt`, or the fd `open_tree` returns with
//! `OPEN_TREE_NAMESPACE`): the namespace's 64-bit id, which statmount and listmount accept as
//! `mnt_ns_id`, and its mount count.
//!
//! ```
//! let ns = std::fs::File::open("/proc/self/ns/mnt")?;
//! let id = crcli_sys::nsfs::ns_get_mntns_id(&ns)?;
//! println!("my mount namespace is {id:#x}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

use crate::raw::syscall_result;

/// `NSIO`, the nsfs ioctl type.
const NSIO: u32 = 0xb7;

/// `_IOR(type, nr, size)` on x86_64 (and the other "generic ioctl" architectures).
const fn ior(ty: u32, nr: u32, size: usize) -> libc::c_ulong {
    const IOC_READ: u32 = 2;
    ((IOC_READ << 30) | ((size as u32) << 16) | (ty << 8) | nr) as libc::c_ulong
}

/// `NS_GET_MNTNS_ID = _IOR(0xb7, 5, __u64)`.
pub const NS_GET_MNTNS_ID: libc::c_ulong = ior(NSIO, 5, 8);
/// `NS_MNT_GET_INFO = _IOR(0xb7, 10, struct mnt_ns_info)`.
pub const NS_MNT_GET_INFO: libc::c_ulong = ior(NSIO, 10, MNT_NS_INFO_SIZE);
/// `NS_MNT_GET_NEXT = _IOR(0xb7, 11, struct mnt_ns_info)`.
pub const NS_MNT_GET_NEXT: libc::c_ulong = ior(NSIO, 11, MNT_NS_INFO_SIZE);
/// `NS_MNT_GET_PREV = _IOR(0xb7, 12, struct mnt_ns_info)`.
pub const NS_MNT_GET_PREV: libc::c_ulong = ior(NSIO, 12, MNT_NS_INFO_SIZE);

const MNT_NS_INFO_SIZE: usize = 16;

/// `struct mnt_ns_info`, as filled by [`ns_mnt_get_info`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MntNsInfo {
    /// Number of mounts in the namespace.
    pub nr_mounts: u32,
    /// The namespace's 64-bit id (as from [`ns_get_mntns_id`]).
    pub mnt_ns_id: u64,
}

#[repr(C)]
#[derive(Default)]
struct RawMntNsInfo {
    size: u32,
    nr_mounts: u32,
    mnt_ns_id: u64,
}

/// `ioctl(ns_fd, NS_GET_MNTNS_ID, &id)`: the 64-bit id of a mount namespace. Linux 6.11.
///
/// See kernel commit "nsfs: add NS_GET_MNTNS_ID" and `ioctl_nsfs(2)`
/// (<https://man7.org/linux/man-pages/man2/ioctl_nsfs.2.html>). Errors: `ENOTTY` the fd is not
/// an nsfs fd or the kernel predates the ioctl, `EINVAL` not a mount namespace.
pub fn ns_get_mntns_id(ns_fd: impl AsFd) -> Result<u64, Errno> {
    let mut id: u64 = 0;
    // SAFETY: NS_GET_MNTNS_ID writes exactly one u64 through the pointer, which points to a
    // live, writable u64 that outlives the call.
    let ret = unsafe {
        libc::ioctl(
            ns_fd.as_fd().as_raw_fd(),
            NS_GET_MNTNS_ID as _,
            &mut id as *mut u64,
        )
    };
    syscall_result(ret as libc::c_long)?;
    Ok(id)
}

fn mnt_ns_ioctl(ns_fd: impl AsFd, req: libc::c_ulong) -> Result<(libc::c_long, MntNsInfo), Errno> {
    let mut info = RawMntNsInfo {
        size: MNT_NS_INFO_SIZE as u32,
        ..RawMntNsInfo::default()
    };
    // SAFETY: these ioctls write at most `sizeof(struct mnt_ns_info)` (16) bytes through the
    // pointer, which points to a live, writable 16-byte `RawMntNsInfo` that outlives the call.
    let ret = unsafe {
        libc::ioctl(
            ns_fd.as_fd().as_raw_fd(),
            req as _,
            &mut info as *mut RawMntNsInfo,
        )
    };
    let ret = syscall_result(ret as libc::c_long)?;
    Ok((
        ret,
        MntNsInfo {
            nr_mounts: info.nr_mounts,
            mnt_ns_id: info.mnt_ns_id,
        },
    ))
}

/// `ioctl(ns_fd, NS_MNT_GET_INFO, &info)`: id and mount count of a mount namespace. Linux 6.12.
///
/// Seen: on 6.18 `nr_mounts` equals the number of ids listmount returns; on 7.2 it is one more
/// (it counts the empty root mount that listmount and mountinfo hide).
///
/// Errors: `ENOTTY` not an nsfs fd or kernel too old, `EINVAL` not a mount namespace.
pub fn ns_mnt_get_info(ns_fd: impl AsFd) -> Result<MntNsInfo, Errno> {
    mnt_ns_ioctl(ns_fd, NS_MNT_GET_INFO).map(|(_, info)| info)
}

fn mnt_ns_step(ns_fd: impl AsFd, req: libc::c_ulong) -> Result<(OwnedFd, MntNsInfo), Errno> {
    let (fd, info) = mnt_ns_ioctl(ns_fd, req)?;
    let fd = i32::try_from(fd).map_err(|_| Errno::INVAL)?;
    // SAFETY: on success NS_MNT_GET_NEXT/PREV return a new fd that this process owns and that
    // nothing else refers to.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, info))
}

/// `ioctl(ns_fd, NS_MNT_GET_NEXT, &info)`: an fd on the next mount namespace (by id) that the
/// caller may see, and its info. Linux 6.12. `ENOENT` after the last one.
pub fn ns_mnt_get_next(ns_fd: impl AsFd) -> Result<(OwnedFd, MntNsInfo), Errno> {
    mnt_ns_step(ns_fd, NS_MNT_GET_NEXT)
}

/// `ioctl(ns_fd, NS_MNT_GET_PREV, &info)`: as [`ns_mnt_get_next`], the previous one.
/// Linux 6.12. `ENOENT` before the first one.
pub fn ns_mnt_get_prev(ns_fd: impl AsFd) -> Result<(OwnedFd, MntNsInfo), Errno> {
    mnt_ns_step(ns_fd, NS_MNT_GET_PREV)
}
