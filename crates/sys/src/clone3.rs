//! `clone3(2)` with `set_tid`: create a child process, at a chosen PID where possible, that runs a
//! Rust closure and never returns into the caller's code.
//!
//! The restore engine needs a fresh process at the PID the dumped process had. `clone3` (Linux 5.3)
//! with `set_tid` (Linux 5.5) asks the kernel for that exact PID; when it cannot be had (the PID is
//! in use, the caller lacks `CAP_SYS_ADMIN` over the PID namespace, the kernel is too old) the child
//! is created with any PID and [`Spawned::pid_outcome`] says why the wish was not granted.
//!
//! The child is a copy of the caller made without `CLONE_VM` (a fork). Forking is only sound in a
//! single-threaded process: in a multi-threaded one, locks held by other threads (the allocator's,
//! stdio's) stay locked forever in the child. [`spawn`] therefore checks that `/proc/self/task` has
//! exactly one entry and refuses otherwise ([`Clone3Error::MultiThreaded`]). (A Rust test harness
//! runs tests on worker threads: such tests must re-exec a single-threaded helper.)
//!
//! The child can be *held*: it then blocks, before running the closure, until the parent calls
//! [`Spawned::release`], so that the parent can `PTRACE_SEIZE` it (with `PTRACE_O_EXITKILL`) before
//! it runs a single line of the closure. Dropping a held [`Spawned`] without releasing it makes
//! the child exit without running the closure; so does the death of the parent.
//!
//! For a *traced* process, [`thread_clone_args`] encodes the `struct clone_args` of a `clone3`
//! to inject into it that creates one of its threads at a chosen thread id ([`THREAD_FLAGS`]).
//!
//! ```no_run
//! use crcli_sys::clone3::{spawn, SpawnOptions};
//! let child = spawn(&SpawnOptions { set_tid: Some(4242), hold: false }, || 7).unwrap();
//! println!("child {} ({:?})", child.pid(), child.pid_outcome());
//! ```
use std::fmt;
use std::os::fd::OwnedFd;

/// What became of the PID the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PidOutcome {
    /// No particular PID was asked for.
    NotRequested,
    /// The child has the requested PID.
    Kept,
    /// The PID is used by another process or thread (`EEXIST`).
    InUse,
    /// The caller may not choose PIDs in its PID namespace (`EPERM`: needs `CAP_SYS_ADMIN`, or
    /// `CAP_CHECKPOINT_RESTORE`, over the namespace's owning user namespace).
    NotPermitted,
    /// The PID is outside the namespace's valid range (`EINVAL`, e.g. above `pid_max`).
    OutOfRange,
    /// The kernel has no `clone3` (`ENOSYS`) or no `set_tid` in it (`E2BIG`).
    Unsupported,
}

impl fmt::Display for PidOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PidOutcome::NotRequested => "no PID requested",
            PidOutcome::Kept => "PID kept",
            PidOutcome::InUse => "the PID is in use (EEXIST)",
            PidOutcome::NotPermitted => "not permitted to choose the PID (EPERM)",
            PidOutcome::OutOfRange => "the PID is out of range (EINVAL)",
            PidOutcome::Unsupported => "the kernel cannot set the PID (no clone3 with set_tid)",
        })
    }
}

/// Errors of [`spawn`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Clone3Error {
    /// The caller has more than one thread: forking it would not be sound.
    #[error("clone3: refusing to fork a multi-threaded process ({threads} threads)")]
    MultiThreaded {
        /// How many entries /proc/self/task had.
        threads: usize,
    },
    /// Counting the caller's threads failed.
    #[error("clone3: reading /proc/self/task")]
    CountThreads(#[source] std::io::Error),
    /// Creating the hold pipe failed.
    #[error("clone3: creating the hold pipe")]
    Pipe(#[source] rustix::io::Errno),
    /// The kernel refused to create the child.
    #[error("clone3: creating the child")]
    Clone(#[source] rustix::io::Errno),
    /// Releasing a held child failed (it has probably died).
    #[error("clone3: releasing held child {pid}")]
    Release {
        /// The child.
        pid: i32,
        /// The cause.
        #[source]
        source: rustix::io::Errno,
    },
}

/// How [`spawn`] creates the child.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpawnOptions {
    /// The PID the child should get, in the caller's PID namespace; `None` for any.
    pub set_tid: Option<i32>,
    /// Hold the child before the closure until [`Spawned::release`].
    pub hold: bool,
}

/// A child created by [`spawn`]. The caller reaps it (`waitpid`); dropping this does not kill it.
#[derive(Debug)]
pub struct Spawned {
    pid: i32,
    outcome: PidOutcome,
    gate: Option<OwnedFd>,
}

impl Spawned {
    /// The child's PID in the caller's PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the child got the requested PID, and if not, why.
    pub fn pid_outcome(&self) -> PidOutcome {
        self.outcome
    }

    /// Whether the child is still held before its closure.
    pub fn is_held(&self) -> bool {
        self.gate.is_some()
    }

    /// Lets a held child run its closure. Does nothing for a child that is not held.
    pub fn release(&mut self) -> Result<(), Clone3Error> {
        if let Some(gate) = self.gate.take() {
            let n = rustix::io::retry_on_intr(|| rustix::io::write(&gate, &[1u8])).map_err(
                |source| Clone3Error::Release {
                    pid: self.pid,
                    source,
                },
            )?;
            if n != 1 {
                return Err(Clone3Error::Release {
                    pid: self.pid,
                    source: rustix::io::Errno::PIPE,
                });
            }
        }
        Ok(())
    }
}

/// `struct clone_args` of `<linux/sched.h>`, up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The `clone3` flags of a new thread in an existing process, as pthread_create uses them
/// without the tid-reporting ones: `CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
/// CLONE_THREAD | CLONE_SYSVSEM`.
pub const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// The size of the `struct clone_args` that [`thread_clone_args`] encodes
/// (`CLONE_ARGS_SIZE_VER1`, the first with `set_tid`).
pub const THREAD_CLONE_ARGS_SIZE: usize = CLONE_ARGS_SIZE_VER1;

/// Encodes, for a syscall injected into *another* process (a tracee), the `struct clone_args`
/// of a `clone3(args, THREAD_CLONE_ARGS_SIZE)` that creates a thread of that process at thread
/// id `*set_tid_at` (a `pid_t` the caller has written into the tracee at address `set_tid_at`):
/// [`THREAD_FLAGS`], no exit signal, no stack (the new thread runs on the caller's stack
/// pointer: it must not run before its registers are set, e.g. because it starts in a ptrace
/// stop), `set_tid_size` 1. Little-endian, as x86_64 lays the struct out.
pub fn thread_clone_args(set_tid_at: u64) -> [u8; THREAD_CLONE_ARGS_SIZE] {
    let args = CloneArgs {
        flags: THREAD_FLAGS,
        set_tid: set_tid_at,
        set_tid_size: 1,
        ..Default::default()
    };
    let words = [
        args.flags,
        args.pidfd,
        args.child_tid,
        args.parent_tid,
        args.exit_signal,
        args.stack,
        args.stack_size,
        args.tls,
        args.set_tid,
        args.set_tid_size,
    ];
    let mut out = [0u8; THREAD_CLONE_ARGS_SIZE];
    for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// `CLONE_ARGS_SIZE_VER1`: the first size with `set_tid`.
const CLONE_ARGS_SIZE_VER1: usize = 80;
/// `CLONE_ARGS_SIZE_VER0`.
const CLONE_ARGS_SIZE_VER0: usize = 64;

/// `clone3(&args, size)` without `CLONE_VM` (a fork), with the namespace flags `ns` and the
/// signal the child sends its parent when it exits: `Ok(0)` in the child, `Ok(pid)` in the
/// parent.
fn raw_clone3(
    ns: NewNamespaces,
    set_tid: Option<i32>,
    exit_signal: u64,
) -> Result<i32, rustix::io::Errno> {
    let tid: libc::pid_t = set_tid.unwrap_or(0);
    let mut args = CloneArgs {
        flags: ns.bits(),
        exit_signal,
        ..Default::default()
    };
    let size = if set_tid.is_some() {
        args.set_tid = &tid as *const libc::pid_t as u64;
        args.set_tid_size = 1;
        CLONE_ARGS_SIZE_VER1
    } else {
        CLONE_ARGS_SIZE_VER0
    };
    // SAFETY: `args` is a valid `struct clone_args` of at least `size` bytes and `tid` (pointed
    // to by `args.set_tid`) outlives the call. Without CLONE_VM and with a zero stack the child
    // continues on a copy of this stack, like fork(2); the caller ensured the process is
    // single-threaded, so the child's copy of every lock is free.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, size) };
    if ret < 0 {
        Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    } else {
        Ok(ret as i32)
    }
}

/// `fork()`, for kernels without `clone3`.
fn raw_fork() -> Result<i32, rustix::io::Errno> {
    // SAFETY: the caller ensured the process is single-threaded, so fork(2) is sound: the child
    // is a faithful copy with no lock held by a vanished thread.
    let ret = unsafe { libc::fork() };
    if ret < 0 {
        Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    } else {
        Ok(ret)
    }
}

/// Number of threads of the calling process (entries of `/proc/self/task`).
pub fn thread_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Creates a child with `clone3(2)` (with `set_tid` if `opts.set_tid` is set, Linux 5.5; falling
/// back to any PID, then to `fork(2)` where `clone3` is missing) that runs `child` and exits with
/// the code it returns (127 if it panics). The closure runs only in the child; this function
/// returns only in the parent. See `man 2 clone3`.
///
/// Refuses to run in a multi-threaded process ([`Clone3Error::MultiThreaded`]).
pub fn spawn<F>(opts: &SpawnOptions, child: F) -> Result<Spawned, Clone3Error>
where
    F: FnOnce() -> i32,
{
    spawn_in(NewNamespaces::empty(), opts, child)
}

bitflags::bitflags! {
    /// The namespaces a child made by [`spawn_in`] gets of its own (`CLONE_NEW*` flags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct NewNamespaces: u64 {
        /// `CLONE_NEWPID` (Linux 2.6.24): the child is PID 1 of a new PID namespace.
        const PID = libc::CLONE_NEWPID as u64;
        /// `CLONE_NEWUTS` (Linux 2.6.19): a new UTS namespace (host and domain name).
        const UTS = libc::CLONE_NEWUTS as u64;
        /// `CLONE_NEWIPC` (Linux 2.6.19): a new IPC namespace (SysV objects, POSIX queues).
        const IPC = libc::CLONE_NEWIPC as u64;
    }
}

/// [`spawn`], with the child in new namespaces `ns` (needs `CAP_SYS_ADMIN`). With
/// [`NewNamespaces::PID`] the child is PID 1 of its new PID namespace and `opts.set_tid` must be
/// `None`; [`Spawned::pid`] is its PID in the caller's namespace. With namespaces there is no
/// fallback: an error of the kernel is returned as [`Clone3Error::Clone`].
pub fn spawn_in<F>(ns: NewNamespaces, opts: &SpawnOptions, child: F) -> Result<Spawned, Clone3Error>
where
    F: FnOnce() -> i32,
{
    spawn_full(ns, opts, libc::SIGCHLD, child)
}

/// [`spawn`], with `exit_signal` as the signal the child sends its parent when it exits
/// (`clone_args.exit_signal`: 0 for none, else 1 to 64; `SIGCHLD` is what [`spawn`] uses). A
/// child with another exit signal is a "clone" child: its parent waits for it with `__WALL` or
/// `__WCLONE`. Without `clone3` there is no fallback for an exit signal other than `SIGCHLD`;
/// an exit signal out of range is refused with [`Clone3Error::Clone`] (`EINVAL`).
pub fn spawn_with_exit_signal<F>(
    opts: &SpawnOptions,
    exit_signal: i32,
    child: F,
) -> Result<Spawned, Clone3Error>
where
    F: FnOnce() -> i32,
{
    if !(0..=64).contains(&exit_signal) {
        return Err(Clone3Error::Clone(rustix::io::Errno::INVAL));
    }
    spawn_full(NewNamespaces::empty(), opts, exit_signal, child)
}

fn spawn_full<F>(
    ns: NewNamespaces,
    opts: &SpawnOptions,
    exit_signal: i32,
    child: F,
) -> Result<Spawned, Clone3Error>
where
    F: FnOnce() -> i32,
{
    if ns.contains(NewNamespaces::PID) && opts.set_tid.is_some() {
        return Err(Clone3Error::Clone(rustix::io::Errno::INVAL));
    }
    let exit_signal_raw = exit_signal as u64;
    let threads = thread_count().map_err(Clone3Error::CountThreads)?;
    if threads != 1 {
        return Err(Clone3Error::MultiThreaded { threads });
    }
    let gate = if opts.hold {
        Some(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(Clone3Error::Pipe)?)
    } else {
        None
    };

    let mut outcome = PidOutcome::NotRequested;
    let mut result = Err(rustix::io::Errno::NOSYS);
    if let Some(pid) = opts.set_tid {
        result = raw_clone3(ns, Some(pid), exit_signal_raw);
        outcome = match result {
            Ok(_) => PidOutcome::Kept,
            Err(rustix::io::Errno::EXIST) => PidOutcome::InUse,
            Err(rustix::io::Errno::PERM) => PidOutcome::NotPermitted,
            Err(rustix::io::Errno::INVAL) => PidOutcome::OutOfRange,
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::TOOBIG) => {
                PidOutcome::Unsupported
            }
            Err(e) => return Err(Clone3Error::Clone(e)),
        };
    }
    if result.is_err() {
        result = raw_clone3(ns, None, exit_signal_raw);
    }
    if result == Err(rustix::io::Errno::NOSYS) && ns.is_empty() && exit_signal == libc::SIGCHLD {
        result = raw_fork();
    }
    let pid = result.map_err(Clone3Error::Clone)?;
    if pid == 0 {
        // The child. Never returns.
        let code = match gate {
            Some((read_end, write_end)) => {
                drop(write_end);
                let mut byte = [0u8];
                match rustix::io::retry_on_intr(|| rustix::io::read(&read_end, &mut byte)) {
                    Ok(1) => {
                        drop(read_end);
                        run_child(child)
                    }
                    // The parent dropped the handle or died: do not run the closure.
                    _ => 126,
                }
            }
            None => run_child(child),
        };
        exit_now(code);
    }
    let gate = gate.map(|(read_end, write_end)| {
        drop(read_end);
        write_end
    });
    Ok(Spawned { pid, outcome, gate })
}

fn run_child<F: FnOnce() -> i32>(child: F) -> i32 {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(127)
}

/// `_exit(code)`: leave the child at once, without running the parent's atexit handlers or
/// flushing stdio buffers that belong to the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test harness runs every test on a worker thread, so this process has at least two
    // threads: spawn must refuse. (The positive cases run in a single-threaded helper process,
    // in crates/restore/tests.)
    #[test]
    fn refuses_in_a_multi_threaded_process() {
        let threads = thread_count().unwrap();
        assert!(threads >= 2, "the test harness should have a worker thread");
        let err = spawn(&SpawnOptions::default(), || 0).unwrap_err();
        assert!(
            matches!(err, Clone3Error::MultiThreaded { threads: n } if n >= 2),
            "{err}"
        );
        assert!(err.to_string().contains("multi-threaded"), "{err}");
    }

    #[test]
    fn thread_clone_args_follow_the_kernel_layout() {
        let raw = thread_clone_args(0x1234_5000);
        let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        // flags at 0, exit_signal at 32, stack at 40, set_tid at 64, set_tid_size at 72.
        assert_eq!(word(0), 0x50f00);
        assert_eq!((word(4), word(5), word(6)), (0, 0, 0));
        assert_eq!((word(8), word(9)), (0x1234_5000, 1));
        assert_eq!(raw.len(), 80);
    }

    #[test]
    fn outcome_messages_name_the_cause() {
        assert!(PidOutcome::InUse.to_string().contains("EEXIST"));
        assert!(PidOutcome::NotPermitted.to_string().contains("EPERM"));
    }
}
