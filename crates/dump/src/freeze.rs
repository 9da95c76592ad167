//! Freezing one process: checks that it is a single-threaded process, seizes it with ptrace and
//! stops it (`crate::tree` freezes a whole tree with it, one process at a time). [`Frozen`] resumes it (detaches) when dropped, so every error path
//! leaves the target running; [`Frozen::kill`] and [`Frozen::resume`] end a successful dump.

use crcli_sys::ptrace::{PtraceOptions, Tracee, WaitStatus};

use crate::error::DumpError;
use crate::procfs::Proc;

/// Checks what can be checked before touching the target: it exists, is not crcli itself, is
/// not a kernel thread, has one thread.
pub(crate) fn check_target(proc: &Proc) -> Result<(), DumpError> {
    let pid = proc.pid;
    if pid <= 0 {
        return Err(DumpError::BadTarget {
            pid,
            reason: "not a valid pid".to_owned(),
        });
    }
    if !proc.path("").exists() {
        return Err(DumpError::BadTarget {
            pid,
            reason: "no such process".to_owned(),
        });
    }
    if pid == std::process::id() as i32 {
        return Err(DumpError::BadTarget {
            pid,
            reason: "crcli cannot dump itself".to_owned(),
        });
    }
    let stat = proc.stat()?;
    if stat.state == 'Z' || stat.state == 'X' {
        return Err(DumpError::BadTarget {
            pid,
            reason: "the process is a zombie".to_owned(),
        });
    }
    if proc.read("maps")?.is_empty() {
        return Err(DumpError::BadTarget {
            pid,
            reason: "a kernel thread (it has no memory) cannot be dumped".to_owned(),
        });
    }
    check_shape(proc)
}

/// Refuses a multi-threaded process. (Children are the tree's business: `crate::tree`.)
fn check_shape(proc: &Proc) -> Result<(), DumpError> {
    let pid = proc.pid;
    let tasks = proc.tasks()?;
    if tasks.len() != 1 {
        return Err(DumpError::Unsupported {
            pid,
            what: format!("a multi-threaded process ({} threads)", tasks.len()),
        });
    }
    Ok(())
}

/// A seized, stopped target. Dropping it detaches, so the target runs on.
#[derive(Debug)]
pub(crate) struct Frozen {
    tracee: Option<Tracee>,
    /// The stop the target is in after the freeze (an interrupt stop, or a group-stop if it was
    /// stopped by a signal already).
    pub stop: WaitStatus,
}

impl Frozen {
    /// Seizes and stops the target, then checks again that it has one thread (one could have
    /// appeared between [`check_target`] and the seize).
    pub fn freeze(proc: &Proc) -> Result<Frozen, DumpError> {
        let pid = proc.pid;
        let tracee = Tracee::seize(pid, PtraceOptions::empty())
            .map_err(DumpError::ptrace(format!("seize pid {pid}")))?;
        // From here on, dropping `frozen` detaches.
        let mut frozen = Frozen {
            tracee: Some(tracee),
            stop: WaitStatus::Continued,
        };
        frozen.stop = frozen
            .tracee()
            .interrupt_and_wait()
            .map_err(DumpError::ptrace(format!("stop pid {pid}")))?;
        check_shape(proc)?;
        Ok(frozen)
    }

    /// The tracee.
    pub fn tracee(&self) -> &Tracee {
        self.tracee
            .as_ref()
            .expect("Frozen holds its tracee until consumed")
    }

    /// Kills the target (SIGKILL) and waits until it is gone.
    pub fn kill(mut self) -> Result<(), PtraceError> {
        let tracee = self
            .tracee
            .take()
            .expect("Frozen holds its tracee until consumed");
        let pid = tracee.pid();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).ok_or(PtraceError::Request {
                op: "kill",
                pid,
                source: rustix::io::Errno::SRCH,
            })?,
            rustix::process::Signal::KILL,
        )
        .map_err(|source| PtraceError::Request {
            op: "kill (SIGKILL)",
            pid,
            source,
        })?;
        // The tracer is told when the tracee dies; reap that notification.
        loop {
            match crcli_sys::ptrace::waitpid(pid, false) {
                Ok(Some(status)) if status.is_gone() => return Ok(()),
                Ok(_) => continue,
                // Not our child and already reaped as a tracee: gone.
                Err(rustix::io::Errno::CHILD) => return Ok(()),
                Err(source) => return Err(PtraceError::Wait { pid, source }),
            }
        }
    }

    /// Detaches: the target runs on where it stopped.
    pub fn resume(mut self) -> Result<(), PtraceError> {
        let tracee = self
            .tracee
            .take()
            .expect("Frozen holds its tracee until consumed");
        tracee.detach(0)
    }
}

use crcli_sys::ptrace::PtraceError;

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(tracee) = self.tracee.take() {
            let pid = tracee.pid();
            if let Err(err) = tracee.detach(0) {
                tracing::warn!("could not resume pid {pid} after a failed dump: {err}");
            }
        }
    }
}
