//! Freezing one process: seizes every one of its threads with ptrace and stops them (re-reading `/proc/PID/task` until no new thread
//! appears). [`Frozen`] resumes them all (detaches) when dropped, so every error path leaves the
//! target running; [`Frozen::resume`] ends a successful dump, or `crate::tree` kills the
//! target and reaps its threads ([`Frozen::into_tids`]).

use crcli_sys::ptrace::{PtraceOptions, Tracee, WaitStatus};

use crate::error::DumpError;
use crate::procfs::Proc;

/// Checks what can be checked before touching the target: it exists, is not crcli itself, is
/// not a kernel thread. (Children are the tree's business: `crate::tree` freezes a whole tree
/// with [`Frozen::freeze`], one process at a time.)
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
    Ok(())
}

/// A seized, stopped target: every one of its threads. Dropping it detaches them all, so the
/// target runs on.
#[derive(Debug)]
pub(crate) struct Frozen {
    /// The main thread first, then the others in the order they were seized.
    threads: Vec<Tracee>,
    /// The stop the main thread is in after the freeze (an interrupt stop, or a group-stop if
    /// it was stopped by a signal already).
    pub stop: WaitStatus,
}

/// How many times the thread list is read again before the freeze gives up on a process that
/// keeps making threads faster than they can be stopped.
const MAX_RESCANS: usize = 1000;

impl Frozen {
    /// Seizes and stops the target's main thread, then every other thread, reading
    /// `/proc/PID/task` again until no new thread appears (a stopped thread makes no new one;
    /// a thread that exits meanwhile is left out).
    pub fn freeze(proc: &Proc) -> Result<Frozen, DumpError> {
        let pid = proc.pid;
        let tracee = Tracee::seize(pid, PtraceOptions::empty())
            .map_err(DumpError::ptrace(format!("seize pid {pid}")))?;
        // From here on, dropping `frozen` detaches every seized thread.
        let mut frozen = Frozen {
            threads: vec![tracee],
            stop: WaitStatus::Continued,
        };
        frozen.stop = frozen
            .tracee()
            .interrupt_and_wait()
            .map_err(DumpError::ptrace(format!("stop pid {pid}")))?;
        for _ in 0..MAX_RESCANS {
            let tasks = proc.tasks()?;
            let new: Vec<i32> = tasks
                .into_iter()
                .filter(|tid| !frozen.threads.iter().any(|t| t.pid() == *tid))
                .collect();
            if new.is_empty() {
                return Ok(frozen);
            }
            for tid in new {
                frozen.seize_thread(pid, tid)?;
            }
        }
        Err(DumpError::Unsupported {
            pid,
            what: format!(
                "a process that keeps creating threads ({} stopped, still more after {MAX_RESCANS} scans)",
                frozen.threads.len()
            ),
        })
    }

    /// Seizes and stops thread `tid`; a thread that is gone by then is left out.
    fn seize_thread(&mut self, pid: i32, tid: i32) -> Result<(), DumpError> {
        let tracee = match Tracee::seize(tid, PtraceOptions::empty()) {
            Ok(t) => t,
            // It exited between the scan and the seize.
            Err(PtraceError::Request {
                source: rustix::io::Errno::SRCH,
                ..
            }) => return Ok(()),
            // An exiting thread (already a zombie, not yet released) answers EPERM: it is gone
            // all the same.
            Err(_) if thread_is_gone(pid, tid) => return Ok(()),
            Err(e) => {
                return Err(DumpError::ptrace(format!(
                    "seize thread {tid} of pid {pid}"
                ))(e))
            }
        };
        match tracee.interrupt_and_wait() {
            Ok(_) => {
                self.threads.push(tracee);
                Ok(())
            }
            // It exited before it stopped: it is gone (and no longer traced).
            Err(PtraceError::Gone { .. }) => Ok(()),
            Err(e) => {
                // Still running: let it go before reporting.
                let _ = tracee.detach(0);
                Err(DumpError::ptrace(format!("stop thread {tid} of pid {pid}"))(e))
            }
        }
    }

    /// The main thread's tracee.
    pub fn tracee(&self) -> &Tracee {
        self.threads
            .first()
            .expect("Frozen holds its tracees until consumed")
    }

    /// Every stopped thread, the main thread first.
    pub fn threads(&self) -> &[Tracee] {
        &self.threads
    }

    /// Gives up every thread without detaching it, the main thread first: the caller kills
    /// them and reaps them all ([`crcli_sys::ptrace::reap_all`]).
    pub fn into_tids(mut self) -> Vec<i32> {
        std::mem::take(&mut self.threads)
            .iter()
            .map(Tracee::pid)
            .collect()
    }

    /// Detaches every thread: the target runs on where it stopped.
    pub fn resume(mut self) -> Result<(), PtraceError> {
        let threads = std::mem::take(&mut self.threads);
        let mut first_err = None;
        for t in threads {
            if let Err(e) = t.detach(0) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

use crcli_sys::ptrace::PtraceError;

impl Drop for Frozen {
    fn drop(&mut self) {
        for tracee in std::mem::take(&mut self.threads) {
            let tid = tracee.pid();
            if let Err(err) = tracee.detach(0) {
                tracing::warn!("could not resume thread {tid} after a failed dump: {err}");
            }
        }
    }
}

/// Whether thread `tid` of `pid` has exited (its /proc entry is gone, or it is a zombie or dead).
fn thread_is_gone(pid: i32, tid: i32) -> bool {
    match Proc::new(pid).task(tid).stat() {
        Ok(stat) => matches!(stat.state, 'Z' | 'X' | 'x'),
        Err(_) => true,
    }
}
