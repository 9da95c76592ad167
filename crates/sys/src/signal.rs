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

/// The kernel's `struct sigaction` (x86_64) for `rt_sigaction`: no handler code of ours, so
/// no restorer and an empty mask.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// `rt_sigaction(sig, {handler}, NULL, 8)` as a raw syscall: glibc's `signal` refuses the
/// signals it keeps for itself (32 and 33), which a restored process may still have used.
fn set_action(sig: i32, handler: usize) -> Result<(), Errno> {
    let act = KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: the kernel reads the struct at `&act`, which lives across the call, and writes
    // nothing (oldact NULL); `handler` is SIG_IGN or SIG_DFL, never code to run.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        )
    };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// `signal(sig, SIG_IGN)`: the calling process discards signal `sig` (1 to 64, not `SIGKILL`
/// or `SIGSTOP`) from now on, and any instance of it already pending. See `man 2 signal`.
pub fn ignore_signal(sig: i32) -> Result<(), Errno> {
    set_action(sig, libc::SIG_IGN)
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
    // SIGKILL's action is always the default and it cannot be blocked (the kernel refuses
    // any rt_sigaction of it, SIG_DFL too).
    if sig != libc::SIGKILL {
        if let Err(e) = set_action(sig, libc::SIG_DFL) {
            return e;
        }
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

    /// A forked child (raw syscalls only) dies by a signal it had blocked and ignored: a
    /// real-time one, one glibc keeps for itself (33), and SIGKILL (whose action cannot be
    /// set); the status says that signal, without the core-dump bit.
    #[test]
    fn a_child_dies_by_a_blocked_signal() {
        for sig in [40, 33, libc::SIGKILL] {
            dies_by(sig);
        }
    }

    fn dies_by(sig: i32) {
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
