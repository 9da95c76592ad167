//! ptrace(2): seizing, stopping and resuming a process, reading and writing its registers,
//! signal state and memory words, and running syscalls inside it ("syscall injection").
//!
//! The main type is [`Tracee`], a process this thread has attached to with
//! [`Tracee::seize`] (`PTRACE_SEIZE`, Linux 3.4). All requests go through it:
//!
//! - stop / resume: [`Tracee::interrupt`] + [`Tracee::wait_stop`] (or both at once with
//!   [`Tracee::interrupt_and_wait`]), [`Tracee::cont`], [`Tracee::singlestep`],
//!   [`Tracee::detach`];
//! - registers: [`Tracee::get_regs`] / [`Tracee::set_regs`] ([`UserRegs`], the kernel's
//!   `struct user_regs_struct`, including `fs_base`/`gs_base`), the raw regsets
//!   [`Tracee::get_regset`] / [`Tracee::set_regset`] and the extended FPU/SSE/AVX state
//!   [`Tracee::get_xstate`] / [`Tracee::set_xstate`] (`NT_X86_XSTATE`);
//! - signals: [`Tracee::get_sigmask`] / [`Tracee::set_sigmask`], the queued signals without
//!   dequeuing them ([`Tracee::peek_siginfo`]);
//! - rseq: [`Tracee::get_rseq_configuration`] (Linux 5.13);
//! - memory words: [`Tracee::peek_data`] / [`Tracee::poke_data`] (use
//!   [`crate::process_vm`] for bulk memory);
//! - syscall injection: [`Tracee::inject_syscall`] runs one syscall in the stopped tracee.
//! - killed tracees: [`reap_all`] reaps a set of them (any threads) in whatever order the kernel
//!   reports them.
//!
//! # Syscall injection
//!
//! An injected syscall needs an address in the tracee that holds the `syscall` instruction
//! (`0f 05`), ideally followed by a trap (`int3`, `cc`) — the *syscall site*. There are two ways
//! to get one:
//!
//! - [`Tracee::borrow_code`] overwrites the first bytes of an executable word of the tracee with
//!   `syscall; int3` and puts the original bytes back when the returned [`CodeBorrow`] is
//!   released or dropped (also on error paths). This is how a *live* process (a dump target,
//!   which must be left untouched) is driven. The usual pattern is to inject one `mmap` of a
//!   scratch page through the borrowed site, write `syscall; int3` into the scratch page, switch
//!   the site to it with [`Tracee::set_syscall_site`], release the borrow at once, do the real
//!   work, and finally `munmap` the scratch page (the trap after the last syscall comes before
//!   any fetch from the unmapped page).
//! - [`Tracee::set_syscall_site`] names an address the caller already knows holds
//!   `syscall` (for example a scratch page it mapped, or, in a child that stopped itself inside
//!   a syscall, `rip - 2`).
//!
//! [`Tracee::inject_syscall`] then saves the registers and the signal mask, blocks every signal
//! (so that no handler runs and no queued signal is consumed while the syscall runs), sets
//! `rip` to the site, `rax` to the number, `orig_rax` to -1 (so the kernel's syscall-restart
//! logic never rewrites the injected registers) and the six arguments (`rdi rsi rdx r10 r8 r9`),
//! single-steps over the `syscall` instruction, reads `rax`, and puts the saved registers and
//! mask back — whether the syscall worked or not. The saved registers include a syscall
//! interrupted by the stop (`rax = -ERESTART*`, `orig_rax = nr`): it is restarted as usual when
//! the tracee resumes.
//!
//! # Threads
//!
//! ptrace attaches a tracee to the *thread* that seized it: every request must come from that
//! thread. [`Tracee`] is therefore neither `Send` nor `Sync`.
//!
//! ptrace works on threads (tasks), not processes: each thread of a multi-threaded tracee is
//! seized, stopped, read and resumed on its own, through a [`Tracee`] of its thread id. An
//! injected `clone`/`clone3` with [`PtraceOptions::TRACECLONE`] set ([`Tracee::set_options`])
//! stops at `PTRACE_EVENT_CLONE`, which [`Tracee::inject_syscall`] steps over; the new thread
//! starts traced, in a stop of its own (wait for it with [`Tracee::wait_stop`] on a
//! [`Tracee::assume_attached`] handle of its id), and can be injected into in turn (the
//! syscall site is shared by every thread of one address space).
//!
//! # Example
//!
//! ```no_run
//! use crcli_sys::ptrace::{PtraceOptions, Tracee};
//! # fn main() -> Result<(), crcli_sys::ptrace::PtraceError> {
//! let pid = 1234;
//! let tracee = Tracee::seize(pid, PtraceOptions::empty())?;
//! tracee.interrupt_and_wait()?;
//! let regs = tracee.get_regs()?;
//! println!("stopped at rip {:#x}", regs.rip);
//! let code = 0x400000; // an address in an executable mapping of the tracee
//! let borrow = tracee.borrow_code(code)?;
//! let ret = tracee.inject_syscall(libc::SYS_getpid, [0; 6])?;
//! assert_eq!(ret, i64::from(pid));
//! borrow.release()?;
//! tracee.detach(0)?;
//! # Ok(())
//! # }
//! ```

use std::cell::Cell;
use std::marker::PhantomData;

pub use rustix::io::Errno;

/// `PTRACE_GET_RSEQ_CONFIGURATION` (Linux 5.13); not in every libc.
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_long = 0x420f;
/// `PTRACE_SETSIGMASK`.
const PTRACE_SETSIGMASK: libc::c_long = 0x420b;
/// `PTRACE_GETSIGMASK`.
const PTRACE_GETSIGMASK: libc::c_long = 0x420a;
/// `PTRACE_PEEKSIGINFO`.
const PTRACE_PEEKSIGINFO: libc::c_long = 0x4209;
/// `PTRACE_PEEKSIGINFO_SHARED`: read the process-wide (shared) queue instead of the thread's.
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// `PTRACE_SETOPTIONS`.
const PTRACE_SETOPTIONS: libc::c_long = 0x4200;
/// `PTRACE_GETEVENTMSG`.
const PTRACE_GETEVENTMSG: libc::c_long = 0x4201;
/// `PTRACE_EVENT_FORK`: the tracee forked (with [`PtraceOptions::TRACEFORK`]).
pub const PTRACE_EVENT_FORK: i32 = 1;
/// `PTRACE_EVENT_VFORK`: the tracee vforked (with [`PtraceOptions::TRACEVFORK`]).
pub const PTRACE_EVENT_VFORK: i32 = 2;
/// `PTRACE_EVENT_CLONE`: the tracee cloned (with [`PtraceOptions::TRACECLONE`]); the new
/// task's id is the event message ([`Tracee::get_event_msg`]).
pub const PTRACE_EVENT_CLONE: i32 = 3;
/// `PTRACE_EVENT_STOP`: the event of a `PTRACE_INTERRUPT` stop or a group-stop of a seized
/// tracee.
pub const PTRACE_EVENT_STOP: i32 = 128;
/// `NT_PRSTATUS`: the general-purpose registers regset.
pub const NT_PRSTATUS: u32 = 1;
/// `NT_PRFPREG`: the legacy FXSAVE area regset.
pub const NT_PRFPREG: u32 = 2;
/// `NT_X86_XSTATE`: the XSAVE area regset (x87, SSE, AVX, AVX-512, … as the CPU has them).
pub const NT_X86_XSTATE: u32 = 0x202;
/// The size of one `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;
/// The largest XSAVE area this module reads (the CPU's real size is usually 1–11 KiB).
const XSTATE_MAX: usize = 64 * 1024;

/// The bytes [`Tracee::borrow_code`] writes: `syscall` (`0f 05`) followed by `int3` (`cc`).
pub const SYSCALL_INT3: [u8; 3] = [0x0f, 0x05, 0xcc];

bitflags::bitflags! {
    /// `PTRACE_O_*` options given to `PTRACE_SEIZE`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PtraceOptions: u32 {
        /// `PTRACE_O_TRACESYSGOOD`: syscall stops report `SIGTRAP | 0x80`.
        const TRACESYSGOOD = 0x1;
        /// `PTRACE_O_TRACEFORK`.
        const TRACEFORK = 0x2;
        /// `PTRACE_O_TRACEVFORK`.
        const TRACEVFORK = 0x4;
        /// `PTRACE_O_TRACECLONE`.
        const TRACECLONE = 0x8;
        /// `PTRACE_O_TRACEEXEC`.
        const TRACEEXEC = 0x10;
        /// `PTRACE_O_TRACEVFORKDONE`.
        const TRACEVFORKDONE = 0x20;
        /// `PTRACE_O_TRACEEXIT`.
        const TRACEEXIT = 0x40;
        /// `PTRACE_O_TRACESECCOMP`.
        const TRACESECCOMP = 0x80;
        /// `PTRACE_O_EXITKILL`: the tracee gets SIGKILL if the tracer exits. Use it for a
        /// process being restored, never for a live dump target.
        const EXITKILL = 0x10_0000;
        /// `PTRACE_O_SUSPEND_SECCOMP`.
        const SUSPEND_SECCOMP = 0x20_0000;
    }
}

/// An error of a ptrace request, a wait, or a syscall injection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PtraceError {
    /// A ptrace request failed.
    #[error("ptrace {op} of pid {pid}")]
    Request {
        /// The request, e.g. "PTRACE_SEIZE".
        op: &'static str,
        /// The tracee.
        pid: i32,
        /// The kernel's answer.
        #[source]
        source: Errno,
    },
    /// waitpid failed.
    #[error("waitpid for pid {pid}")]
    Wait {
        /// The tracee.
        pid: i32,
        /// The kernel's answer.
        #[source]
        source: Errno,
    },
    /// The tracee exited or was killed while crcli waited for it to stop.
    #[error("pid {pid} is gone ({status}) while waiting for {op}")]
    Gone {
        /// The tracee.
        pid: i32,
        /// What was expected.
        op: &'static str,
        /// How it ended.
        status: WaitStatus,
    },
    /// The tracee stopped in a way crcli did not expect.
    #[error("pid {pid} stopped unexpectedly ({status}) while waiting for {op}")]
    UnexpectedStop {
        /// The tracee.
        pid: i32,
        /// What was expected.
        op: &'static str,
        /// The stop seen.
        status: WaitStatus,
    },
    /// [`Tracee::inject_syscall`] was called with no syscall site.
    #[error("inject syscall {nr} into pid {pid}: no syscall site (borrow_code or set_syscall_site first)")]
    NoSyscallSite {
        /// The tracee.
        pid: i32,
        /// The syscall number.
        nr: i64,
    },
    /// Tasks sent SIGKILL were still not gone when [`reap_all`] gave up waiting.
    #[error("reaping killed tasks: {pids:?} still not gone after {waited:?}")]
    NotReaped {
        /// The tasks (thread ids) not reaped.
        pids: Vec<i32>,
        /// How long [`reap_all`] waited.
        waited: std::time::Duration,
    },
    /// An injected syscall returned an error (from [`Tracee::inject_syscall_checked`]).
    #[error("injected syscall {nr} in pid {pid} failed")]
    Injected {
        /// The tracee.
        pid: i32,
        /// The syscall number.
        nr: i64,
        /// The error the syscall returned.
        #[source]
        source: Errno,
    },
    /// The code bytes a [`CodeBorrow`] replaced could not be put back.
    #[error("restore the code bytes at {addr:#x} of pid {pid}")]
    RestoreCode {
        /// The tracee.
        pid: i32,
        /// The borrowed address.
        addr: u64,
        /// The kernel's answer.
        #[source]
        source: Errno,
    },
}

/// The result of waitpid for one process, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// It exited with this status (`WIFEXITED`).
    Exited(i32),
    /// A signal killed it (`WIFSIGNALED`).
    Signaled {
        /// The signal.
        signal: i32,
        /// Whether it dumped core.
        core: bool,
    },
    /// It is in a ptrace stop (`WIFSTOPPED`).
    Stopped {
        /// `WSTOPSIG`: the signal of a signal-delivery-stop; `SIGTRAP` for an interrupt stop
        /// or a single step; the stopping signal of a group-stop.
        signal: i32,
        /// `status >> 16`: 0 for a signal-delivery-stop, [`PTRACE_EVENT_STOP`] for an interrupt
        /// stop or a group-stop of a seized tracee, another `PTRACE_EVENT_*` for an event.
        event: i32,
    },
    /// It was continued by SIGCONT (`WIFCONTINUED`).
    Continued,
}

impl WaitStatus {
    /// Decodes a raw waitpid status.
    pub fn from_raw(status: i32) -> WaitStatus {
        if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled {
                signal: libc::WTERMSIG(status),
                core: libc::WCOREDUMP(status),
            }
        } else if libc::WIFSTOPPED(status) {
            WaitStatus::Stopped {
                signal: libc::WSTOPSIG(status),
                event: (status >> 16) & 0xffff,
            }
        } else {
            WaitStatus::Continued
        }
    }

    /// Whether the process is gone (exited or killed).
    pub fn is_gone(&self) -> bool {
        matches!(self, WaitStatus::Exited(_) | WaitStatus::Signaled { .. })
    }
}

impl std::fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitStatus::Exited(code) => write!(f, "exited with status {code}"),
            WaitStatus::Signaled { signal, core } => {
                write!(f, "killed by signal {signal}")?;
                if *core {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
            WaitStatus::Stopped { signal, event } => {
                write!(f, "stopped by signal {signal}, event {event}")
            }
            WaitStatus::Continued => write!(f, "continued"),
        }
    }
}

/// `waitpid(pid, &status, __WALL | (nohang ? WNOHANG : 0))`, retried on EINTR.
///
/// `__WALL` makes it see every kind of child and tracee. Returns `None` when `nohang` is set and
/// nothing happened yet.
pub fn waitpid(pid: i32, nohang: bool) -> Result<Option<WaitStatus>, Errno> {
    let flags = libc::__WALL | if nohang { libc::WNOHANG } else { 0 };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable c_int that outlives the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret < 0 {
            let errno = Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            );
            if errno == Errno::INTR {
                continue;
            }
            return Err(errno);
        }
        if ret == 0 {
            return Ok(None);
        }
        return Ok(Some(WaitStatus::from_raw(status)));
    }
}

/// The raw result `ret` of syscall `nr` injected into `pid` (by [`Tracee::inject_syscall`] or
/// by code run with [`Tracee::run_code`]): a negative one (-4095..=-1) is turned into
/// [`PtraceError::Injected`].
pub fn injected_result(pid: i32, nr: i64, ret: i64) -> Result<u64, PtraceError> {
    if (-4095..0).contains(&ret) {
        return Err(PtraceError::Injected {
            pid,
            nr,
            source: Errno::from_raw_os_error(-ret as i32),
        });
    }
    Ok(ret as u64)
}

/// How long [`reap_all`] callers wait for tasks sent SIGKILL: far longer than a killed task
/// takes to exit even in an emulated VM, short of forever (a task stuck in an uninterruptible
/// sleep).
pub const KILL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Reaps every task in `tids`: crcli's tracees (any thread of any process) or children that
/// were sent SIGKILL. Each is waited for with [`waitpid`]`(tid, WNOHANG)` in turn, in whatever
/// order they become ready, until each has reported its exit or answers `ECHILD` (reaped
/// already, or not crcli's to wait for); between rounds without progress it sleeps (1 ms, up
/// to 20 ms).
///
/// Waiting for them one after the other in a fixed order can block forever: a thread group
/// leader's exit is reported only after every other thread of its group is reaped, and the
/// last thread of a PID namespace's init waits (`zap_pid_ns_processes`) until every other task
/// of the namespace, its sibling threads included, is reaped — by their tracer, crcli. Other
/// children of the calling process are never waited for. Gives up after `patience` with
/// [`PtraceError::NotReaped`] naming the tasks left.
pub fn reap_all(tids: &[i32], patience: std::time::Duration) -> Result<(), PtraceError> {
    let start = std::time::Instant::now();
    let mut left: Vec<i32> = tids.to_vec();
    left.sort_unstable();
    left.dedup();
    let mut nap = std::time::Duration::from_millis(1);
    while !left.is_empty() {
        let mut progress = false;
        let mut i = 0;
        while i < left.len() {
            let tid = left[i];
            match waitpid(tid, true) {
                Ok(Some(status)) if status.is_gone() => {
                    left.swap_remove(i);
                    progress = true;
                    continue;
                }
                // A stop reported before the kill took effect: consumed, the kill goes on.
                Ok(Some(_)) => progress = true,
                Ok(None) => {}
                Err(Errno::CHILD) => {
                    left.swap_remove(i);
                    progress = true;
                    continue;
                }
                Err(source) => return Err(PtraceError::Wait { pid: tid, source }),
            }
            i += 1;
        }
        if left.is_empty() {
            break;
        }
        if progress {
            nap = std::time::Duration::from_millis(1);
            continue;
        }
        let waited = start.elapsed();
        if waited >= patience {
            left.sort_unstable();
            return Err(PtraceError::NotReaped { pids: left, waited });
        }
        std::thread::sleep(nap.min(patience - waited));
        nap = (nap * 2).min(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// The general-purpose registers: the kernel's `struct user_regs_struct` (x86_64), as read by
/// `PTRACE_GETREGS` and written by `PTRACE_SETREGS`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// The syscall number the tracee is in, or -1 (`u64::MAX`) when it is not in a syscall.
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// The rseq registration of a thread, from `PTRACE_GET_RSEQ_CONFIGURATION` (Linux 5.13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RseqConfiguration {
    /// The address of the registered `struct rseq` (0 when none is registered).
    pub rseq_abi_pointer: u64,
    /// The size given to rseq(2).
    pub rseq_abi_size: u32,
    /// The signature given to rseq(2).
    pub signature: u32,
    /// The flags given to rseq(2).
    pub flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct RawRseqConfiguration {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// One queued signal as the kernel reports it: the raw 128-byte `siginfo_t` (in the kernel's
/// layout, fit to be given back to `rt_tgsigqueueinfo`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigInfo(pub [u8; SIGINFO_SIZE]);

impl SigInfo {
    /// `si_signo`.
    pub fn signo(&self) -> i32 {
        i32::from_ne_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
    /// `si_errno`.
    pub fn errno(&self) -> i32 {
        i32::from_ne_bytes([self.0[4], self.0[5], self.0[6], self.0[7]])
    }
    /// `si_code`.
    pub fn code(&self) -> i32 {
        i32::from_ne_bytes([self.0[8], self.0[9], self.0[10], self.0[11]])
    }
}

impl std::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigInfo")
            .field("signo", &self.signo())
            .field("errno", &self.errno())
            .field("code", &self.code())
            .finish_non_exhaustive()
    }
}

/// Which signal queue [`Tracee::peek_siginfo`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigQueue {
    /// The thread's own queue (`tgkill`, faults, …).
    Thread,
    /// The process-wide queue (`kill`, …): `PTRACE_PEEKSIGINFO_SHARED`.
    Shared,
}

fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// A raw `ptrace(request, pid, addr, data)` through syscall(2) (not the glibc wrapper, whose
/// PEEK* requests have a different calling convention).
///
/// # Safety
/// `addr` and `data` must be valid for what `request` does with them.
unsafe fn raw_ptrace(request: libc::c_long, pid: i32, addr: u64, data: u64) -> Result<i64, Errno> {
    // SAFETY: forwarded to the caller: `addr` and `data` are what `request` expects.
    let ret = unsafe { libc::syscall(libc::SYS_ptrace, request, pid as libc::c_long, addr, data) };
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

/// A process this thread traces, attached with `PTRACE_SEIZE`.
///
/// Dropping a `Tracee` does *not* detach: a tracee must be stopped to be detached cleanly, and
/// only the caller knows whether it is; call [`Tracee::detach`] (or kill it). If the tracing
/// thread exits, the kernel detaches (or, with [`PtraceOptions::EXITKILL`], kills) the tracee.
#[derive(Debug)]
pub struct Tracee {
    pid: i32,
    site: Cell<Option<u64>>,
    /// The registers [`Tracee::inject_syscall_unsaved`] starts from (its last result).
    template: Cell<Option<UserRegs>>,
    /// The id (in the tracer's PID namespace) of the task the last injected fork/vfork/clone
    /// made, from `PTRACE_GETEVENTMSG` at its event stop.
    new_task: Cell<Option<i32>>,
    /// ptrace requests must come from the thread that seized: neither Send nor Sync.
    _not_send: PhantomData<*const ()>,
}

impl Tracee {
    /// `ptrace(PTRACE_SEIZE, pid, 0, options)` (Linux 3.4): attach to `pid` without stopping
    /// it. See ptrace(2).
    pub fn seize(pid: i32, options: PtraceOptions) -> Result<Tracee, PtraceError> {
        // SAFETY: PTRACE_SEIZE reads no memory; `data` is the options word.
        unsafe {
            raw_ptrace(
                libc::PTRACE_SEIZE as libc::c_long,
                pid,
                0,
                u64::from(options.bits()),
            )
        }
        .map_err(|source| PtraceError::Request {
            op: "PTRACE_SEIZE",
            pid,
            source,
        })?;
        Ok(Tracee::assume_attached(pid))
    }

    /// A handle for a process this thread already traces (e.g. one that called
    /// `PTRACE_TRACEME`). Nothing is checked: requests fail with ESRCH if it is not traced by
    /// this thread.
    pub fn assume_attached(pid: i32) -> Tracee {
        Tracee {
            pid,
            site: Cell::new(None),
            template: Cell::new(None),
            new_task: Cell::new(None),
            _not_send: PhantomData,
        }
    }

    /// The tracee's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn err(&self, op: &'static str) -> impl FnOnce(Errno) -> PtraceError {
        let pid = self.pid;
        move |source| PtraceError::Request { op, pid, source }
    }

    /// `ptrace(PTRACE_INTERRUPT, pid, 0, 0)`: ask a seized tracee to stop; wait for the stop
    /// with [`Tracee::wait_stop`].
    pub fn interrupt(&self) -> Result<(), PtraceError> {
        // SAFETY: PTRACE_INTERRUPT uses neither addr nor data.
        unsafe { raw_ptrace(libc::PTRACE_INTERRUPT as libc::c_long, self.pid, 0, 0) }
            .map_err(self.err("PTRACE_INTERRUPT"))?;
        Ok(())
    }

    /// Waits (waitpid with `__WALL`) for the tracee's next state change and returns it;
    /// fails with [`PtraceError::Gone`] if the tracee exited or was killed.
    pub fn wait_stop(&self) -> Result<WaitStatus, PtraceError> {
        let status = waitpid(self.pid, false)
            .map_err(|source| PtraceError::Wait {
                pid: self.pid,
                source,
            })?
            .unwrap_or(WaitStatus::Continued);
        if status.is_gone() {
            return Err(PtraceError::Gone {
                pid: self.pid,
                op: "a ptrace stop",
                status,
            });
        }
        Ok(status)
    }

    /// Interrupts the tracee and waits until it is in a stop of kind
    /// [`PTRACE_EVENT_STOP`] (an interrupt stop, or a group-stop if it was stopped by a
    /// signal). A signal that arrives first (a signal-delivery-stop) is delivered to it as if
    /// nothing had happened (its handler runs), and the wait goes on, as CRIU does. Returns the
    /// stop seen.
    ///
    /// Call it on a tracee that is running (or sleeping in a syscall, or group-stopped but not
    /// yet reported): a tracee already in a ptrace stop that was waited for reports no new
    /// stop, and this would wait forever.
    pub fn interrupt_and_wait(&self) -> Result<WaitStatus, PtraceError> {
        self.interrupt()?;
        loop {
            let status = self.wait_stop()?;
            match status {
                WaitStatus::Stopped {
                    event: PTRACE_EVENT_STOP,
                    ..
                } => return Ok(status),
                WaitStatus::Stopped { signal, event: 0 } => {
                    // A signal-delivery-stop: give the signal back and keep waiting; the
                    // pending interrupt stops the tracee right after.
                    self.cont(signal)?;
                }
                WaitStatus::Stopped { .. } => {
                    // Another event stop (only with trace options): resume without a signal.
                    self.cont(0)?;
                }
                WaitStatus::Continued => continue,
                _ => {
                    return Err(PtraceError::UnexpectedStop {
                        pid: self.pid,
                        op: "an interrupt stop",
                        status,
                    })
                }
            }
        }
    }

    /// `ptrace(PTRACE_CONT, pid, 0, sig)`: resume the stopped tracee, delivering `sig` (0 for
    /// none).
    pub fn cont(&self, sig: i32) -> Result<(), PtraceError> {
        // SAFETY: PTRACE_CONT uses data as a signal number only.
        unsafe { raw_ptrace(libc::PTRACE_CONT as libc::c_long, self.pid, 0, sig as u64) }
            .map_err(self.err("PTRACE_CONT"))?;
        Ok(())
    }

    /// `ptrace(PTRACE_SINGLESTEP, pid, 0, sig)`: run one instruction.
    pub fn singlestep(&self, sig: i32) -> Result<(), PtraceError> {
        // SAFETY: PTRACE_SINGLESTEP uses data as a signal number only.
        unsafe {
            raw_ptrace(
                libc::PTRACE_SINGLESTEP as libc::c_long,
                self.pid,
                0,
                sig as u64,
            )
        }
        .map_err(self.err("PTRACE_SINGLESTEP"))?;
        Ok(())
    }

    /// `ptrace(PTRACE_DETACH, pid, 0, sig)`: detach from the stopped tracee, which then runs on
    /// (delivering `sig`, 0 for none). Consumes the handle.
    pub fn detach(self, sig: i32) -> Result<(), PtraceError> {
        // SAFETY: PTRACE_DETACH uses data as a signal number only.
        unsafe { raw_ptrace(libc::PTRACE_DETACH as libc::c_long, self.pid, 0, sig as u64) }
            .map_err(self.err("PTRACE_DETACH"))?;
        Ok(())
    }

    /// `ptrace(PTRACE_SETOPTIONS, pid, 0, options)`: replaces the tracee's ptrace options
    /// (for example to add [`PtraceOptions::TRACECLONE`] before making it clone threads).
    pub fn set_options(&self, options: PtraceOptions) -> Result<(), PtraceError> {
        // SAFETY: PTRACE_SETOPTIONS reads no memory; `data` is the options word.
        unsafe { raw_ptrace(PTRACE_SETOPTIONS, self.pid, 0, u64::from(options.bits())) }
            .map_err(self.err("PTRACE_SETOPTIONS"))?;
        Ok(())
    }

    /// `ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg)`: the message of the last `PTRACE_EVENT_*`
    /// stop (the new task's id after [`PTRACE_EVENT_CLONE`]).
    pub fn get_event_msg(&self) -> Result<u64, PtraceError> {
        let mut msg: u64 = 0;
        // SAFETY: `msg` is 8 writable bytes (an unsigned long) outliving the call.
        unsafe { raw_ptrace(PTRACE_GETEVENTMSG, self.pid, 0, &mut msg as *mut u64 as u64) }
            .map_err(self.err("PTRACE_GETEVENTMSG"))?;
        Ok(msg)
    }

    /// The id, in the tracer's PID namespace, of the task that the last injected
    /// fork/vfork/clone/clone3 made (with the matching trace option set), taken from
    /// `PTRACE_GETEVENTMSG` at its event stop; `None` if none was seen. The injected syscall's
    /// own result is the id in the tracee's namespace, which differs when the tracee lives in
    /// another PID namespace.
    pub fn last_new_task(&self) -> Option<i32> {
        self.new_task.get()
    }

    /// `ptrace(PTRACE_GETREGS, pid, 0, &regs)`.
    pub fn get_regs(&self) -> Result<UserRegs, PtraceError> {
        let mut regs = UserRegs::default();
        // SAFETY: `regs` is a writable user_regs_struct (same repr(C) layout) that outlives the
        // call.
        unsafe {
            raw_ptrace(
                libc::PTRACE_GETREGS as libc::c_long,
                self.pid,
                0,
                &mut regs as *mut UserRegs as u64,
            )
        }
        .map_err(self.err("PTRACE_GETREGS"))?;
        Ok(regs)
    }

    /// `ptrace(PTRACE_SETREGS, pid, 0, &regs)`. The kernel checks segment selectors and
    /// flags and refuses bad values with EIO.
    pub fn set_regs(&self, regs: &UserRegs) -> Result<(), PtraceError> {
        // SAFETY: `regs` is a readable user_regs_struct (same repr(C) layout) that outlives the
        // call; the kernel only reads it.
        unsafe {
            raw_ptrace(
                libc::PTRACE_SETREGS as libc::c_long,
                self.pid,
                0,
                regs as *const UserRegs as u64,
            )
        }
        .map_err(self.err("PTRACE_SETREGS"))?;
        Ok(())
    }

    /// `ptrace(PTRACE_GETREGSET, pid, nt, &iov)`: reads the register set `nt` (e.g.
    /// [`NT_X86_XSTATE`]) into `buf` and returns how many bytes the kernel filled.
    pub fn get_regset(&self, nt: u32, buf: &mut [u8]) -> Result<usize, PtraceError> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: `iov` describes `buf`, writable for `buf.len()` bytes; both outlive the call;
        // the kernel writes at most iov_len bytes and updates iov_len.
        unsafe {
            raw_ptrace(
                libc::PTRACE_GETREGSET as libc::c_long,
                self.pid,
                u64::from(nt),
                &mut iov as *mut libc::iovec as u64,
            )
        }
        .map_err(self.err("PTRACE_GETREGSET"))?;
        Ok(iov.iov_len)
    }

    /// `ptrace(PTRACE_SETREGSET, pid, nt, &iov)`: writes the register set `nt` from `buf`.
    pub fn set_regset(&self, nt: u32, buf: &[u8]) -> Result<(), PtraceError> {
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `iov` describes `buf`, readable for `buf.len()` bytes; both outlive the call;
        // with SETREGSET the kernel only reads the buffer.
        unsafe {
            raw_ptrace(
                libc::PTRACE_SETREGSET as libc::c_long,
                self.pid,
                u64::from(nt),
                &mut iov as *mut libc::iovec as u64,
            )
        }
        .map_err(self.err("PTRACE_SETREGSET"))?;
        Ok(())
    }

    /// The extended register state (the XSAVE area: x87, SSE, AVX, …) via
    /// `PTRACE_GETREGSET NT_X86_XSTATE`, exactly as long as the kernel reports (its layout
    /// depends on the CPU: record it and compare at restore).
    pub fn get_xstate(&self) -> Result<Vec<u8>, PtraceError> {
        let mut buf = vec![0u8; XSTATE_MAX];
        let len = self.get_regset(NT_X86_XSTATE, &mut buf)?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Writes the extended register state back (`PTRACE_SETREGSET NT_X86_XSTATE`).
    pub fn set_xstate(&self, xstate: &[u8]) -> Result<(), PtraceError> {
        self.set_regset(NT_X86_XSTATE, xstate)
    }

    /// `ptrace(PTRACE_GETSIGMASK, pid, 8, &mask)` (Linux 3.11): the blocked-signal mask, bit
    /// `n - 1` for signal `n`.
    pub fn get_sigmask(&self) -> Result<u64, PtraceError> {
        let mut mask: u64 = 0;
        // SAFETY: `mask` is 8 writable bytes (the size passed as addr) outliving the call.
        unsafe { raw_ptrace(PTRACE_GETSIGMASK, self.pid, 8, &mut mask as *mut u64 as u64) }
            .map_err(self.err("PTRACE_GETSIGMASK"))?;
        Ok(mask)
    }

    /// `ptrace(PTRACE_SETSIGMASK, pid, 8, &mask)` (Linux 3.11). The kernel silently keeps
    /// SIGKILL and SIGSTOP unblocked.
    pub fn set_sigmask(&self, mask: u64) -> Result<(), PtraceError> {
        // SAFETY: `mask` is 8 readable bytes (the size passed as addr) outliving the call.
        unsafe { raw_ptrace(PTRACE_SETSIGMASK, self.pid, 8, &mask as *const u64 as u64) }
            .map_err(self.err("PTRACE_SETSIGMASK"))?;
        Ok(())
    }

    /// `ptrace(PTRACE_PEEKSIGINFO, …)` (Linux 3.10): every signal queued for the tracee in
    /// `queue`, oldest first, without dequeuing any.
    pub fn peek_siginfo(&self, queue: SigQueue) -> Result<Vec<SigInfo>, PtraceError> {
        const BATCH: usize = 32;
        let mut out = Vec::new();
        loop {
            let mut buf = [[0u8; SIGINFO_SIZE]; BATCH];
            let args = PeekSiginfoArgs {
                off: out.len() as u64,
                flags: if queue == SigQueue::Shared {
                    PTRACE_PEEKSIGINFO_SHARED
                } else {
                    0
                },
                nr: BATCH as i32,
            };
            // SAFETY: `args` is a readable ptrace_peeksiginfo_args and `buf` has room for
            // `args.nr` siginfo_t (128 bytes each); both outlive the call.
            let n = unsafe {
                raw_ptrace(
                    PTRACE_PEEKSIGINFO,
                    self.pid,
                    &args as *const PeekSiginfoArgs as u64,
                    buf.as_mut_ptr() as u64,
                )
            }
            .map_err(self.err("PTRACE_PEEKSIGINFO"))? as usize;
            out.extend(buf[..n.min(BATCH)].iter().map(|raw| SigInfo(*raw)));
            if n < BATCH {
                return Ok(out);
            }
        }
    }

    /// `ptrace(PTRACE_GET_RSEQ_CONFIGURATION, …)` (Linux 5.13): the thread's rseq
    /// registration.
    pub fn get_rseq_configuration(&self) -> Result<RseqConfiguration, PtraceError> {
        let mut raw = RawRseqConfiguration::default();
        // SAFETY: `raw` is a writable struct ptrace_rseq_configuration of the size passed as
        // addr, outliving the call.
        unsafe {
            raw_ptrace(
                PTRACE_GET_RSEQ_CONFIGURATION,
                self.pid,
                std::mem::size_of::<RawRseqConfiguration>() as u64,
                &mut raw as *mut RawRseqConfiguration as u64,
            )
        }
        .map_err(self.err("PTRACE_GET_RSEQ_CONFIGURATION"))?;
        Ok(RseqConfiguration {
            rseq_abi_pointer: raw.rseq_abi_pointer,
            rseq_abi_size: raw.rseq_abi_size,
            signature: raw.signature,
            flags: raw.flags,
        })
    }

    /// `ptrace(PTRACE_PEEKDATA, pid, addr, &word)`: one 8-byte word of the tracee's memory
    /// (any mapping, also non-readable ones).
    pub fn peek_data(&self, addr: u64) -> Result<u64, PtraceError> {
        let mut word: u64 = 0;
        // SAFETY: with the raw syscall, PEEKDATA stores the word at `data`: 8 writable bytes
        // outliving the call. `addr` is a tracee address the kernel checks.
        unsafe {
            raw_ptrace(
                libc::PTRACE_PEEKDATA as libc::c_long,
                self.pid,
                addr,
                &mut word as *mut u64 as u64,
            )
        }
        .map_err(self.err("PTRACE_PEEKDATA"))?;
        Ok(word)
    }

    /// `ptrace(PTRACE_POKEDATA, pid, addr, word)`: write one 8-byte word of the tracee's memory
    /// (also into read-only mappings: a private file page becomes a private copy).
    pub fn poke_data(&self, addr: u64, word: u64) -> Result<(), PtraceError> {
        // SAFETY: POKEDATA passes the word by value; `addr` is a tracee address the kernel
        // checks; nothing of ours is accessed.
        unsafe { raw_ptrace(libc::PTRACE_POKEDATA as libc::c_long, self.pid, addr, word) }
            .map_err(self.err("PTRACE_POKEDATA"))?;
        Ok(())
    }

    /// Names the address holding `syscall` (`0f 05`) that [`Tracee::inject_syscall`] uses,
    /// or clears it with `None`.
    pub fn set_syscall_site(&self, addr: Option<u64>) {
        self.site.set(addr);
    }

    /// The current syscall site, if any.
    pub fn syscall_site(&self) -> Option<u64> {
        self.site.get()
    }

    /// Borrows the 8-byte word at `addr` (which must lie in an executable mapping of the
    /// stopped tracee): saves it, writes [`SYSCALL_INT3`] over its first bytes, and makes it
    /// the syscall site. The word is put back and the site cleared by
    /// [`CodeBorrow::release`], or by dropping the borrow (errors then ignored). The tracee must
    /// stay stopped until then.
    pub fn borrow_code(&self, addr: u64) -> Result<CodeBorrow<'_>, PtraceError> {
        let saved = self.peek_data(addr)?;
        let mut bytes = saved.to_ne_bytes();
        bytes[..SYSCALL_INT3.len()].copy_from_slice(&SYSCALL_INT3);
        self.poke_data(addr, u64::from_ne_bytes(bytes))?;
        let previous_site = self.site.replace(Some(addr));
        Ok(CodeBorrow {
            tracee: self,
            addr,
            saved,
            previous_site,
            released: false,
        })
    }

    /// Runs syscall `nr` with `args` in the stopped tracee at the syscall site and returns the
    /// raw result (`rax`: a negative errno on failure). Registers and signal mask are saved
    /// before and put back after, on success and on failure; see the module docs.
    pub fn inject_syscall(&self, nr: i64, args: [u64; 6]) -> Result<i64, PtraceError> {
        let site = self.site_for(nr)?;
        let saved_regs = self.get_regs()?;
        let saved_mask = self.get_sigmask()?;
        let result = self.run_syscall(site, nr, args, &saved_regs);
        // Put everything back whatever happened; report the first error.
        let restore_regs = self.set_regs(&saved_regs);
        let restore_mask = self.set_sigmask(saved_mask);
        let ret = result?;
        restore_regs?;
        restore_mask?;
        Ok(ret)
    }

    /// [`Tracee::inject_syscall`], with a negative result (-4095..=-1) turned into
    /// [`PtraceError::Injected`].
    pub fn inject_syscall_checked(&self, nr: i64, args: [u64; 6]) -> Result<u64, PtraceError> {
        let ret = self.inject_syscall(nr, args)?;
        self.checked(nr, ret)
    }

    /// The syscall site, or [`PtraceError::NoSyscallSite`] for injecting syscall `nr`.
    fn site_for(&self, nr: i64) -> Result<u64, PtraceError> {
        self.site
            .get()
            .ok_or(PtraceError::NoSyscallSite { pid: self.pid, nr })
    }

    /// [`injected_result`] for this tracee.
    fn checked(&self, nr: i64, ret: i64) -> Result<u64, PtraceError> {
        injected_result(self.pid, nr, ret)
    }

    /// Runs code already written into the stopped tracee, from `entry` until an `int3` that
    /// leaves `rip` at `end` (the address after it), with every signal blocked and `orig_rax =
    /// -1` (no syscall restart), and returns the registers at that trap. Registers and signal
    /// mask are saved before and put back after, on success and on failure. One resume for
    /// many syscalls: the code may make any number of them (it must not touch the stack).
    pub fn run_code(&self, entry: u64, end: u64) -> Result<UserRegs, PtraceError> {
        let saved_regs = self.get_regs()?;
        let saved_mask = self.get_sigmask()?;
        let result = (|| {
            self.set_sigmask(!0)?;
            let mut regs = saved_regs;
            regs.rip = entry;
            regs.orig_rax = u64::MAX;
            self.set_regs(&regs)?;
            for _ in 0..16 {
                self.cont(0)?;
                let status = self.wait_stop()?;
                let now = self.get_regs()?;
                match status {
                    WaitStatus::Stopped {
                        signal: libc::SIGTRAP,
                        event: 0,
                    } if now.rip == end => return Ok(now),
                    // A pending interrupt or group-stop before the code ran: resume again.
                    WaitStatus::Stopped {
                        event: PTRACE_EVENT_STOP,
                        ..
                    } if now.rip == entry => continue,
                    _ => {
                        return Err(PtraceError::UnexpectedStop {
                            pid: self.pid,
                            op: "the injected code to reach its int3",
                            status,
                        })
                    }
                }
            }
            Err(PtraceError::UnexpectedStop {
                pid: self.pid,
                op: "the injected code to run (too many stops)",
                status: WaitStatus::Stopped {
                    signal: 0,
                    event: PTRACE_EVENT_STOP,
                },
            })
        })();
        let restore_regs = self.set_regs(&saved_regs);
        let restore_mask = self.set_sigmask(saved_mask);
        let regs = result?;
        restore_regs?;
        restore_mask?;
        Ok(regs)
    }

    /// [`Tracee::inject_syscall_checked`] for a tracee whose signal mask already blocks every
    /// signal (the caller set it with [`Tracee::set_sigmask`] and sets the final mask itself):
    /// the mask is neither read nor changed, three ptrace requests fewer per call. Registers
    /// are saved and put back as there.
    pub fn inject_syscall_blocked(&self, nr: i64, args: [u64; 6]) -> Result<u64, PtraceError> {
        let site = self.site_for(nr)?;
        let saved_regs = self.get_regs()?;
        let result = self.run_syscall_blocked(site, nr, args, &saved_regs);
        let restore_regs = self.set_regs(&saved_regs);
        let ret = result?.rax as i64;
        restore_regs?;
        self.checked(nr, ret)
    }

    fn run_syscall(
        &self,
        site: u64,
        nr: i64,
        args: [u64; 6],
        saved: &UserRegs,
    ) -> Result<i64, PtraceError> {
        self.set_sigmask(!0)?;
        Ok(self.run_syscall_blocked(site, nr, args, saved)?.rax as i64)
    }

    /// [`Tracee::inject_syscall_blocked`] that does not even save and put back the registers:
    /// for a tracee whose every signal is blocked and whose registers the caller sets itself
    /// before it runs again (a process being rebuilt). The tracee is left with its registers
    /// as the syscall returned; the next call starts from them. Four ptrace requests per call
    /// instead of nine.
    pub fn inject_syscall_unsaved(&self, nr: i64, args: [u64; 6]) -> Result<u64, PtraceError> {
        let site = self.site_for(nr)?;
        let base = match self.template.get() {
            Some(regs) => regs,
            None => self.get_regs()?,
        };
        let now = self.run_syscall_blocked(site, nr, args, &base)?;
        self.template.set(Some(now));
        let ret = now.rax as i64;
        self.checked(nr, ret)
    }

    /// [`Tracee::run_syscall`] once every signal is blocked; returns the registers after the
    /// syscall (its result in `rax`).
    fn run_syscall_blocked(
        &self,
        site: u64,
        nr: i64,
        args: [u64; 6],
        saved: &UserRegs,
    ) -> Result<UserRegs, PtraceError> {
        let mut regs = *saved;
        regs.rip = site;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        self.set_regs(&regs)?;
        self.new_task.set(None);
        // A few non-step stops (a pending interrupt or group-stop) may come before the step
        // itself; step again from where the tracee is.
        for _ in 0..16 {
            self.singlestep(0)?;
            let status = self.wait_stop()?;
            let now = self.get_regs()?;
            match status {
                WaitStatus::Stopped {
                    signal: libc::SIGTRAP,
                    event: 0,
                } if now.rip == site + 2 => {
                    return Ok(now);
                }
                WaitStatus::Stopped {
                    event: PTRACE_EVENT_STOP,
                    ..
                } if now.rip == site => continue,
                // An injected fork/vfork/clone with the matching trace option stops at the
                // event first (the new task is auto-attached and starts in a ptrace stop of
                // its own); stepping on completes the syscall in the injecting task.
                // Its id in the tracer's PID namespace is the event message, read now (the
                // next stop replaces it): see [`Tracee::last_new_task`].
                WaitStatus::Stopped {
                    signal: libc::SIGTRAP,
                    event: PTRACE_EVENT_FORK | PTRACE_EVENT_VFORK | PTRACE_EVENT_CLONE,
                } => {
                    let id = i32::try_from(self.get_event_msg()?).unwrap_or(0);
                    self.new_task.set(Some(id));
                    continue;
                }
                _ => {
                    return Err(PtraceError::UnexpectedStop {
                        pid: self.pid,
                        op: "the injected syscall to return",
                        status,
                    })
                }
            }
        }
        Err(PtraceError::UnexpectedStop {
            pid: self.pid,
            op: "the injected syscall to run (too many stops)",
            status: WaitStatus::Stopped {
                signal: 0,
                event: PTRACE_EVENT_STOP,
            },
        })
    }
}

/// An executable word of a tracee temporarily replaced by `syscall; int3`; see
/// [`Tracee::borrow_code`]. The original word goes back on [`CodeBorrow::release`] or drop.
#[derive(Debug)]
pub struct CodeBorrow<'a> {
    tracee: &'a Tracee,
    addr: u64,
    saved: u64,
    previous_site: Option<u64>,
    released: bool,
}

impl CodeBorrow<'_> {
    /// The borrowed address (the syscall site while the borrow lasts).
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The original word that goes back.
    pub fn saved_word(&self) -> u64 {
        self.saved
    }

    /// Puts the original word back and restores the previous syscall site (unless the caller
    /// switched the site elsewhere meanwhile, which is kept).
    pub fn release(mut self) -> Result<(), PtraceError> {
        self.put_back()
    }

    fn put_back(&mut self) -> Result<(), PtraceError> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        if self.tracee.site.get() == Some(self.addr) {
            self.tracee.site.set(self.previous_site);
        }
        self.tracee
            .poke_data(self.addr, self.saved)
            .map_err(|err| match err {
                PtraceError::Request { source, .. } => PtraceError::RestoreCode {
                    pid: self.tracee.pid,
                    addr: self.addr,
                    source,
                },
                other => other,
            })
    }
}

impl Drop for CodeBorrow<'_> {
    fn drop(&mut self) {
        let _ = self.put_back();
    }
}
