//! Raw syscall plumbing shared by the mount-side wrappers: syscall numbers that `libc` does not
//! name on every target, and the one place where a raw `syscall(2)` return value becomes a
//! `Result<_, rustix::io::Errno>`.

use rustix::io::Errno;

/// `open_tree` (Linux 5.2).
#[allow(dead_code)]
pub(crate) const SYS_OPEN_TREE: libc::c_long = 428;
/// `mount_setattr` (Linux 5.12).
pub(crate) const SYS_MOUNT_SETATTR: libc::c_long = 442;
/// `statmount` (Linux 6.8).
pub(crate) const SYS_STATMOUNT: libc::c_long = 457;
/// `listmount` (Linux 6.8).
pub(crate) const SYS_LISTMOUNT: libc::c_long = 458;

/// Decodes the return value of a raw `libc::syscall` (or `libc::ioctl`) call: `-1` means the
/// error is in `errno`, anything else is the kernel's non-negative result.
///
/// Must be called right after the call, before anything else can change `errno`.
pub(crate) fn syscall_result(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret == -1 {
        let raw = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        Err(Errno::from_raw_os_error(raw))
    } else {
        Ok(ret)
    }
}
