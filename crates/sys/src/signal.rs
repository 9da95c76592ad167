//! Signal dispositions and self-inflicted deaths of a child made by [`crate::clone3::spawn`]
//! during a restore: ignoring a signal (`SIG_IGN`), and dying by any signal, real-time ones
//! included (which rustix's `Signal` cannot name).
use rustix::io::Errno;

fn last_errno() -> Errno {
    Errno::from_raw_os_error(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

/// `signal(sig, SIG_IGN)`: the calling process discards signal `sig` (1 to 64, not `SIGKILL`
/// or `SIGSTOP`) from now on, and any instance of it already pending. See `man 2 signal`.
pub fn ignore_signal(sig: i32) -> Result<(), Errno> {
    // SAFETY: signal(2) with SIG_IGN installs no handler, so no code of ours can run from it;
    // it takes no pointers.
    let ret = unsafe { libc::signal(sig, libc::SIG_IGN) };
    if ret == libc::SIG_ERR {
        return Err(last_errno());
    }
    Ok(())
}

/// Whether the default action of signal `sig` (1 to 64) ends the process: every signal but
/// the stop signals (`SIGSTOP`, `SIGTSTP`, `SIGTTIN`, `SIGTTOU`) and those ignored by default
/// (`SIGCHLD`, `SIGCONT`, `SIGURG`, `SIGWINCH`). See `man 7 signal`.
pub fn default_action_terminates(sig: i32) -> bool {
    (1..=64).contains(&sig)
        && ![
            libc::SIGSTOP,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGCHLD,
            libc::SIGCONT,
            libc::SIGURG,
            libc::SIGWINCH,
        ]
        .contains(&sig)
}

/// Ends the calling process by signal `sig` (1 to 64, one whose default action terminates, see
/// [`default_action_terminates`]): gives it its default action, unblocks it in the calling
/// thread and sends it to the process, so that the process's exit status is "killed by `sig`"
/// (for real-time signals too). Returns only if that failed. Uses raw syscalls only (safe
/// in a forked child of a multi-threaded process).
///
/// A signal whose default action dumps core (`SIGQUIT`, `SIGSEGV`, ...) may write a core file
/// as the system's `core_pattern` says; the caller should set `RLIMIT_CORE` to 0 first (a
/// `core_pattern` that pipes to a program ignores that limit).
pub fn die_by_signal(sig: i32) -> Errno {
    if !default_action_terminates(sig) {
        return Errno::INVAL;
    }
    // SAFETY: SIG_DFL installs no handler and takes no pointers.
    if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
        return last_errno();
    }
    let set: u64 = 1u64 << (sig - 1);
    // SAFETY: rt_sigprocmask reads the 8-byte kernel sigset at `&set`, which lives across the
    // call, and writes nothing (oldset NULL).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_UNBLOCK,
            &set as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if ret < 0 {
        return last_errno();
    }
    // SAFETY: kill(2) takes no pointers; the signal is delivered before the call returns to
    // user space (it is unblocked, its action is the default one, it targets this process).
    let ret = unsafe { libc::syscall(libc::SYS_kill, libc::getpid(), sig) };
    if ret < 0 {
        return last_errno();
    }
    Errno::AGAIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_ignored_signals_do_not_terminate() {
        assert!(default_action_terminates(libc::SIGTERM));
        assert!(default_action_terminates(libc::SIGKILL));
        assert!(default_action_terminates(40));
        assert!(default_action_terminates(64));
        assert!(!default_action_terminates(libc::SIGTSTP));
        assert!(!default_action_terminates(libc::SIGCHLD));
        assert!(!default_action_terminates(0));
        assert!(!default_action_terminates(65));
        assert_eq!(die_by_signal(libc::SIGCHLD), Errno::INVAL);
    }

    /// A forked child (raw syscalls only) dies by a real-time signal it had blocked and
    /// ignored; the status says that signal, without the core-dump bit.
    #[test]
    fn a_child_dies_by_a_blocked_real_time_signal() {
        let sig = 40;
        // SAFETY: the child makes raw syscalls only (signal, rt_sigprocmask, kill, _exit), so
        // no lock held by another thread of this multi-threaded test process matters.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let all: u64 = !0;
            // SAFETY: as above; `all` lives across the call.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigprocmask,
                    libc::SIG_BLOCK,
                    &all as *const u64,
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
            let _ = ignore_signal(sig);
            let _ = die_by_signal(sig);
            // SAFETY: _exit takes no pointers and never returns.
            unsafe { libc::_exit(3) };
        }
        let mut status = 0;
        // SAFETY: waits for the child made above; `status` outlives the call.
        let got = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(got, pid);
        assert_eq!(status & 0x7f, sig, "status {status:#x}");
        assert_eq!(status & 0x80, 0, "no core dump");
    }
}
