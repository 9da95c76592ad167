//! The error type of the dump engine.

use crcli_sys::ptrace::PtraceError;

/// Why a dump failed. Whatever the variant, the target was left running, untouched (see
/// [`crate::dump`]), unless the error says otherwise ([`DumpError::AfterDump`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// The target is not a process crcli can dump.
    #[error("pid {pid}: {reason}")]
    BadTarget {
        /// The target.
        pid: i32,
        /// Why (no such process, a kernel thread, crcli itself, …).
        reason: String,
    },
    /// The target has something crcli does not support yet (threads, child processes, a
    /// mapping of a kind not handled, …).
    #[error("pid {pid}: {what} is not supported")]
    Unsupported {
        /// The target.
        pid: i32,
        /// What, e.g. "a multi-threaded process (3 threads)".
        what: String,
    },
    /// The target has POSIX timers (`timer_create`, listed in `/proc/PID/timers`), which the
    /// image cannot hold yet: refused rather than dropped.
    #[error("pid {pid}: POSIX timers (timer_create) are not supported ({count} found)")]
    PosixTimers {
        /// The target.
        pid: i32,
        /// How many timers `/proc/PID/timers` lists.
        count: usize,
    },
    /// An fd of a type crcli does not support yet.
    #[error("pid {pid} fd {fd}: {kind} is not supported")]
    UnsupportedFd {
        /// The target.
        pid: i32,
        /// The fd number.
        fd: i32,
        /// Its type, e.g. "socket", "eventfd", "epoll".
        kind: String,
    },
    /// The image directory cannot be used.
    #[error("image directory {dir}: {reason}")]
    ImageDir {
        /// The directory given.
        dir: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("{op}")]
    Io {
        /// What was done, e.g. "read /proc/42/maps".
        op: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A syscall failed.
    #[error("{op}")]
    Sys {
        /// What was done, e.g. "pidfd_getfd fd 3 of pid 42".
        op: String,
        /// The kernel's answer.
        #[source]
        source: rustix::io::Errno,
    },
    /// A ptrace request, a wait or an injected syscall failed.
    #[error("{op}")]
    Ptrace {
        /// What was done, e.g. "freeze pid 42".
        op: String,
        /// The cause.
        #[source]
        source: PtraceError,
    },
    /// A /proc file did not have the expected form.
    #[error("parse {what}: {detail}")]
    Parse {
        /// The file, e.g. "/proc/42/stat".
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// Reading the mount table failed.
    #[error("{op}")]
    Mounts {
        /// What was done.
        op: String,
        /// The cause.
        #[source]
        source: crcli_mountinfo::Error,
    },
    /// Writing the image failed.
    #[error("write the image: {op}")]
    Image {
        /// What was written.
        op: String,
        /// The cause.
        #[source]
        source: crcli_image::ImageError,
    },
    /// The image was written, but the target could not be killed or resumed afterwards.
    #[error("the image of pid {pid} is complete, but {op} failed")]
    AfterDump {
        /// The target.
        pid: i32,
        /// "killing it" or "resuming it".
        op: &'static str,
        /// The cause.
        #[source]
        source: PtraceError,
    },
}

impl DumpError {
    /// A closure for `map_err` that wraps a ptrace error with what was being done.
    pub(crate) fn ptrace(op: impl Into<String>) -> impl FnOnce(PtraceError) -> DumpError {
        let op = op.into();
        move |source| DumpError::Ptrace { op, source }
    }

    /// A closure for `map_err` that wraps an errno with what was being done.
    pub(crate) fn sys(op: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> DumpError {
        let op = op.into();
        move |source| DumpError::Sys { op, source }
    }

    /// A closure for `map_err` that wraps an io error with what was being done.
    pub(crate) fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> DumpError {
        let op = op.into();
        move |source| DumpError::Io { op, source }
    }
}
