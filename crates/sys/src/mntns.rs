//! Moving the calling thread between mount namespaces: `unshare(CLONE_FS)` (a thread's own root
//! and working directory, which `setns(CLONE_NEWNS)` requires of a thread that shares them),
//! `unshare(CLONE_NEWNS)` for the calling thread, `setns` into a mount namespace, and
//! `pivot_root`. rustix marks `unshare` unsafe because `CLONE_FILES` could invalidate borrowed
//! fds; these wrappers pass only flags that cannot.
//!
//! ```no_run
//! # fn main() -> Result<(), rustix::io::Errno> {
//! std::thread::spawn(|| -> Result<(), rustix::io::Errno> {
//!     crcli_sys::mntns::unshare_fs()?;
//!     let ns = std::fs::File::open("/proc/1/ns/mnt").map_err(|_| rustix::io::Errno::IO)?;
//!     crcli_sys::mntns::setns_mnt(&ns)?;
//!     Ok(())
//! })
//! .join()
//! .unwrap()?;
//! # Ok(())
//! # }
//! ```

use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::path::Arg;

use crate::raw::syscall_result;

/// `unshare(CLONE_FS)` (Linux 2.6.16): the calling thread gets its own copy of root, working
/// directory and umask, so that it may `setns` into a mount namespace while other threads of
/// the process stay where they are.
///
/// <https://man7.org/linux/man-pages/man2/unshare.2.html>.
pub fn unshare_fs() -> Result<(), Errno> {
    // SAFETY: CLONE_FS unshares only the filesystem information (root, cwd, umask); it touches
    // no memory and no fd of this process, so no Rust invariant can be broken.
    let ret = unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_FS as libc::c_long) };
    syscall_result(ret).map(|_| ())
}

/// `unshare(CLONE_NEWNS)` (Linux 2.4.19): the calling thread moves into a new mount namespace,
/// a copy of its current one (the kernel unshares `CLONE_FS` with it). Needs `CAP_SYS_ADMIN`.
///
/// <https://man7.org/linux/man-pages/man2/unshare.2.html>. Errors: `EPERM` no capability,
/// `EINVAL` (with `CLONE_NEWUSER`, not passed here) a multi-threaded caller.
pub fn unshare_mount_ns() -> Result<(), Errno> {
    // SAFETY: CLONE_NEWNS (and the implied CLONE_FS) changes only the thread's view of the
    // mount table and its root/cwd; no memory or fd of the process is touched.
    let ret = unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS as libc::c_long) };
    syscall_result(ret).map(|_| ())
}

/// `setns(fd, CLONE_NEWNS)` (Linux 3.8 for mount namespaces): the calling thread joins the
/// mount namespace of nsfs file `ns`; its root and working directory become that namespace's
/// root. Needs `CAP_SYS_ADMIN` and a thread that does not share its filesystem information
/// ([`unshare_fs`] first in a multi-threaded process).
///
/// <https://man7.org/linux/man-pages/man2/setns.2.html>. Errors: `EINVAL` not a mount
/// namespace, or filesystem information shared with another thread; `EPERM` no capability.
pub fn setns_mnt(ns: impl AsFd) -> Result<(), Errno> {
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Mount),
    )
}

/// `pivot_root(new_root, put_old)` (Linux 2.3.41): makes `new_root` (a mount point) the root
/// mount of the caller's mount namespace and moves the old root to `put_old`; with `"."` for
/// both (after `chdir(new_root)`) the old root stays stacked under the new one, to be detached
/// with `umount2(".", MNT_DETACH)`. Every process of the namespace whose root or working
/// directory was the old root is moved to the new one.
///
/// <https://man7.org/linux/man-pages/man2/pivot_root.2.html>. Errors: `EINVAL` `new_root` is
/// not a mount point, or the old root is a shared mount; `EBUSY`; `EPERM`.
pub fn pivot_root<P: Arg, Q: Arg>(new_root: P, put_old: Q) -> Result<(), Errno> {
    new_root.into_with_c_str(|new_root| {
        put_old.into_with_c_str(|put_old| {
            // SAFETY: both paths are NUL-terminated strings that live until the call returns;
            // the kernel keeps no reference to them.
            let ret =
                unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
            syscall_result(ret).map(|_| ())
        })
    })
}

/// `fchdir(fd)` then `chroot(".")`: makes the directory of `dir` the calling thread's root
/// (and working directory). Needs `CAP_SYS_CHROOT`.
///
/// <https://man7.org/linux/man-pages/man2/chroot.2.html>.
pub fn chroot_to(dir: impl AsFd) -> Result<(), Errno> {
    rustix::process::fchdir(dir.as_fd())?;
    rustix::process::chroot(".")
}
