//! pidfds: `pidfd_open` (an fd on a process) and `pidfd_getfd` (a duplicate of one of its fds in
//! this process), both from rustix.
//!
//! ```
//! use crcli_sys::pidfd::{pidfd_open, pidfd_getfd, PidfdFlags};
//! let pidfd = pidfd_open(rustix::process::getpid(), PidfdFlags::empty())?;
//! let my_stdin = pidfd_getfd(&pidfd, 0)?;
//! # Ok::<(), rustix::io::Errno>(())
//! ```

use std::os::fd::{AsFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::process::Pid;

pub use rustix::process::PidfdFlags;

/// `pidfd_open(pid, flags)`: an fd referring to process `pid`. Linux 5.3.
///
/// <https://man7.org/linux/man-pages/man2/pidfd_open.2.html>. Errors: `ESRCH` no such process,
/// `EINVAL` bad flags (or, without `PIDFD_THREAD`, `pid` not a thread-group leader).
pub fn pidfd_open(pid: Pid, flags: PidfdFlags) -> Result<OwnedFd, Errno> {
    rustix::process::pidfd_open(pid, flags)
}

/// `pidfd_getfd(pidfd, targetfd, 0)`: this process's own duplicate (close-on-exec) of fd
/// `targetfd` of the process `pidfd` refers to. Linux 5.6.
///
/// <https://man7.org/linux/man-pages/man2/pidfd_getfd.2.html>. Needs ptrace access
/// (`PTRACE_MODE_ATTACH_REALCREDS`). Errors: `EBADF` no such fd in the target, `EPERM` no
/// ptrace access, `ESRCH` the process is gone.
pub fn pidfd_getfd(pidfd: impl AsFd, targetfd: RawFd) -> Result<OwnedFd, Errno> {
    rustix::process::pidfd_getfd(pidfd, targetfd, rustix::process::PidfdGetfdFlags::empty())
}
