//! # crcli-restore: the restore engine
//!
//! Reads and validates an image, recreates the process, its files and its address space by
//! ptrace syscall injection, and lets it run. The entry point is [`restore`]; it returns a
//! [`Restored`] process, which the caller either leaves running ([`Restored::pid`]) or waits for
//! ([`Restored::wait`]).
//!
//! How (DESIGN.md, "Restore"; RESTORE-NOTES.md):
//! 1. The whole image is opened and checked first ([`crcli_image::Image::open`] checks the
//!    format; this crate checks that it can be restored here: one process (with any number of
//!    threads, the main thread first, every thread with the same extended-state layout),
//!    the machine's architecture and page size, the kernel features the dump relied on, files
//!    on attached mounts that still exist and are still the dumped files (type; size and mtime
//!    of regular files, except that a file opened `O_APPEND` may have grown; device numbers),
//!    sane addresses). Nothing is created before that.
//! 2. A child is made with `clone3(set_tid)` at the dumped PID where possible (a pid still held
//!    by the killed original's zombie is waited for, up to 2 s; [`Restored::pid_outcome`] says
//!    when the pid could not be kept), held until crcli has `PTRACE_SEIZE`d it with
//!    `PTRACE_O_EXITKILL`. It closes every fd it inherited from crcli, opens the process's
//!    files at their numbers with their flags, positions and close-on-exec bits (open file
//!    descriptions shared by several fds stay shared; pipes and FIFOs get their buffered bytes
//!    back; an unlinked file is recreated from its content under its old name, reopened and
//!    unlinked again, or made with `O_TMPFILE` if the name is taken), opens the files the
//!    tracer will map, sets cwd, root (chroot), umask, session or process-group leadership,
//!    personality and resource limits, reports on a pipe and stops itself with SIGSTOP.
//! 3. crcli checks the CPU's extended-state layout (XSAVE size and XCR0) against the image,
//!    then, as the tracer, rebuilds everything by injected syscalls (the `tracer` module):
//!    address space (a scratch page, vdso/vvar moved where the program had them, every
//!    mapping, pages streamed in with `process_vm_writev` or `/proc/PID/mem`, shared anonymous
//!    objects with all their views), `PR_SET_MM_MAP`, name, sigactions, sigaltstack, robust
//!    list, `clear_child_tid`, rseq, pending signals, flags and credentials; then the extended
//!    state, the registers (an interrupted syscall is restarted, see `tracer::final_regs`) and
//!    the signal mask with ptrace; and detaches.
//!
//!    Threads: once the address space is rebuilt and the main thread's own state set, each
//!    other thread is created at its dumped thread id by a `clone3` injected into the main
//!    thread (`CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
//!    CLONE_SYSVSEM`, `set_tid = [tid]`, no stack) with `PTRACE_O_TRACECLONE` set, so that it
//!    starts traced and stopped and never runs an instruction of its own before its registers
//!    are set. In a tree restored into a new PID namespace the injected call runs inside it:
//!    `set_tid = [ns_tid]` (the id in the tree's namespace), and crcli traces the thread by its
//!    id outside (the clone event's message); signals are re-queued to `ns_pid`/`ns_tid`. Then, by injection into that thread: its rseq registration, robust list,
//!    alternate signal stack, `set_tid_address(clear_child_tid)`, its own pending signals (a
//!    thread may queue a user signal only to itself) and its credentials; by ptrace: its
//!    xstate, registers (interrupted syscalls normalised per thread) and signal mask. All
//!    threads are detached at the end, the main thread last. A thread id that is taken (by
//!    another process, or by the dumped threads themselves when they still run) fails the
//!    restore with a message naming it.
//! 4. On any failure the child (with every thread it has) is killed and reaped, and nothing
//!    else was created (a recreated
//!    unlinked file is unlinked again at once).
//!
//! Trees (the `tree` module): an image with several processes, zombies, or a PID, UTS or IPC
//! namespace of its own is restored as a whole. crcli opens every shared open file description
//! once, makes the root (as PID 1 of a new PID namespace where the tree had its own), which
//! makes its children with `clone3(set_tid)` recursively (sessions and process groups first,
//! zombies as children that exit at once), every member places its fds and stops, and crcli,
//! tracing them all from their first instruction, rebuilds each one as above and lets them all
//! run. [`Restored`] is then the root.
//!
//! Files on unmounted and anonymous mounts (the `mounts` module): after validation and before
//! the child is made, crcli rebuilds each such mount without attaching it anywhere (a clone of
//! the live mount at the sub-root, a fresh mount of the device, or a fresh tmpfs filled from
//! the image's dumped content), opens the files through the mount fd, sets the mount's
//! attributes, and closes the mount fd (unmounted) or hands it to the process at its number
//! (anonymous). The child inherits the open files and places them like the others; cwd and
//! root on such mounts are set with `fchdir`. FIFOs and unlinked files on them are refused.
//!
//! Not restored yet (refused with a message naming what): FIFOs
//! and unlinked files on unmounted or anonymous mounts; mappings of deleted files; 32-bit TLS
//! descriptors; a capability bounding or ambient set other than crcli's. Not restored and not
//! in the image: interval and POSIX timers, scheduling policy and affinity, timer slack. A pipe
//! whose other end was in another process comes back with that end closed (a warning says so);
//! with `--shell-job` ([`RestoreOptions::shell_job`]) terminal fds 0–2 become crcli's own.
//!
//! ```no_run
//! use crcli_restore::{restore, RestoreOptions};
//! let restored = restore("/tmp/img".as_ref(), &RestoreOptions::default()).unwrap();
//! println!("restored pid {}", restored.pid());
//! let status = restored.wait().unwrap();
//! std::process::exit(status.code());
//! ```
#![forbid(unsafe_code)]

mod child;
mod error;
pub mod mountns;
mod mounts;
mod plan;
mod threads;
mod tracer;
mod tree;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use crcli_image::{Image, KernelFeature, Process};
use crcli_sys::clone3::{self, PidOutcome, SpawnOptions};
use crcli_sys::features::{Feature, Features};
use crcli_sys::ptrace::{self, PtraceOptions, Tracee, WaitStatus};

pub use error::RestoreError;
pub use mountns::{build_namespace, build_namespace_with, ExternalPath, NsBuildMethod};

/// How to restore.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// `--shell-job`: the process's terminal fds (0, 1 and 2 on a tty) become crcli's own.
    pub shell_job: bool,
    /// `--external mnt[KEY]:PATH`: the paths that mounts dumped as binds from outside the
    /// tree's mount namespace (by key) are bound from.
    pub external_mounts: Vec<ExternalPath>,
    /// `--trust-image`: restore an image directory even when it, or a file in it, is owned by
    /// another user or writable by group or others ([`crcli_image::check_image_dir`]).
    pub trust_image: bool,
}

impl RestoreOptions {
    /// Options with these `--external mnt[KEY]:PATH` mappings.
    pub fn with_external_mounts(mut self, external_mounts: Vec<ExternalPath>) -> Self {
        self.external_mounts = external_mounts;
        self
    }

    /// Options with `--trust-image` set as given.
    pub fn with_trust_image(mut self, trust_image: bool) -> Self {
        self.trust_image = trust_image;
        self
    }

    /// Options with `--shell-job` set as given.
    pub fn with_shell_job(mut self, shell_job: bool) -> Self {
        self.shell_job = shell_job;
        self
    }
}

/// A restored process, running (detached from crcli's ptrace) and a child of the caller.
#[derive(Debug)]
#[must_use = "a restored process should be waited for or its pid reported"]
pub struct Restored {
    pid: i32,
    dumped_pid: u32,
    outcome: PidOutcome,
    /// The root is PID 1 of a new PID namespace (its dumped pid was in the tree's own).
    new_pid_ns: bool,
}

/// How a restored process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's view: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

impl Restored {
    /// The restored process's pid (in crcli's PID namespace).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pid the process had when it was dumped.
    pub fn dumped_pid(&self) -> u32 {
        self.dumped_pid
    }

    /// Whether it got its dumped pid back, and if not, why.
    pub fn pid_outcome(&self) -> PidOutcome {
        self.outcome
    }

    /// Whether it was restored as PID 1 of a new PID namespace (a tree dumped in a PID
    /// namespace of its own); [`Restored::pid`] is then its pid outside, in crcli's namespace.
    pub fn in_new_pid_namespace(&self) -> bool {
        self.new_pid_ns
    }

    /// Waits until the process ends and returns how.
    pub fn wait(self) -> Result<ExitStatus, RestoreError> {
        loop {
            let status = ptrace::waitpid(self.pid, false).map_err(RestoreError::errno(format!(
                "waiting for restored process {}",
                self.pid
            )))?;
            match status {
                Some(WaitStatus::Exited(code)) => return Ok(ExitStatus::Exited(code)),
                Some(WaitStatus::Signaled { signal, .. }) => {
                    return Ok(ExitStatus::Signaled(signal))
                }
                _ => continue,
            }
        }
    }
}

/// Kills and reaps the child unless disarmed: a failed restore leaves no process behind.
struct ChildGuard {
    pid: i32,
    /// Its other threads created so far (traced by crcli: each is reaped on its own).
    threads: Vec<i32>,
    armed: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Every thread it has, also one whose creation failed half-way.
        let mut threads = self.threads.clone();
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) {
            for tid in dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            {
                if tid != self.pid && !threads.contains(&tid) {
                    threads.push(tid);
                }
            }
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        // All reaped together, in the order the kernel reports them (the main thread's exit
        // comes last; as PID 1 of a namespace its last thread waits for the others' reaping).
        threads.push(self.pid);
        if let Err(e) = ptrace::reap_all(&threads, ptrace::KILL_PATIENCE) {
            tracing::warn!("after a failed restore: {e}");
        }
    }
}

fn sys_feature(f: KernelFeature) -> Option<Feature> {
    Some(match f {
        KernelFeature::Statmount => Feature::Statmount,
        KernelFeature::Listmount => Feature::Listmount,
        KernelFeature::OpenTreeNamespace => Feature::OpenTreeNamespace,
        KernelFeature::NewMountApi => Feature::NewMountApi,
        KernelFeature::MountSetattr => Feature::MountSetattr,
        KernelFeature::StatxMntIdUnique => Feature::StatxMntIdUnique,
        KernelFeature::PidfdGetfd => Feature::PidfdGetfd,
        // Needed to tell what a mount is at dump time, never to rebuild one: an image dumped
        // on 7.0 restores on any kernel with the new mount API.
        KernelFeature::StatmountByFd => return None,
        _ => return None,
    })
}

/// Checks what the inventory says against this machine, for one process.
fn check_inventory(image: &Image) -> Result<(), RestoreError> {
    let inv = image.inventory();
    check_machine(image)?;
    if inv.contents.pids.len() != 1 {
        return Err(RestoreError::Unsupported(format!(
            "the image holds {} processes; only single processes can be restored yet",
            inv.contents.pids.len()
        )));
    }
    Ok(())
}

/// Checks the architecture, page size and kernel features the image needs against this machine.
fn check_machine(image: &Image) -> Result<(), RestoreError> {
    let inv = image.inventory();
    if inv.arch != std::env::consts::ARCH {
        return Err(RestoreError::Unsupported(format!(
            "the image is for {}, this machine is {}",
            inv.arch,
            std::env::consts::ARCH
        )));
    }
    let page_size = rustix::param::page_size() as u32;
    if inv.page_size != page_size {
        return Err(RestoreError::Unsupported(format!(
            "the image has {}-byte pages, this machine {page_size}",
            inv.page_size
        )));
    }
    let features = Features::current();
    for f in &inv.features {
        if let Some(sf) = sys_feature(*f) {
            if !features.has(sf) {
                return Err(RestoreError::Unsupported(format!(
                    "the dump relied on kernel feature {} ({f:?}), which this kernel ({}) lacks",
                    sf.name(),
                    features.kernel_release()
                )));
            }
        }
    }
    Ok(())
}

/// Restores the process in image directory `dir`. On success the process runs (detached from
/// crcli's ptrace) as a child of the caller; on failure nothing is left behind.
///
/// The caller must be single-threaded (the child is forked; see [`crcli_sys::clone3`]).
/// For a tree it must also have no other children or tracees while this runs: crcli waits for
/// any of them (`waitpid(-1)`), and reaps them all after a failure.
pub fn restore(dir: &Path, opts: &RestoreOptions) -> Result<Restored, RestoreError> {
    if !opts.trust_image {
        crcli_image::check_image_dir(dir, rustix::process::geteuid().as_raw())?;
    }
    let image = Image::open(dir)?;
    if tree::is_tree(&image) {
        return tree::restore(&image, opts);
    }
    check_inventory(&image)?;
    let pid = image.inventory().contents.pids[0];
    let p: &Process = image.process(pid).ok_or_else(|| {
        RestoreError::Invalid(format!(
            "the inventory names process {pid}, which is not in the image"
        ))
    })?;
    let plan = plan::plan(&image, p, opts)?;
    tracing::debug!(
        pid,
        fds = plan.slots.len(),
        vmas = p.vmas.len(),
        "image checked"
    );

    // Validation is over: from here on, everything created is undone on failure.
    // Files on unmounted and anonymous mounts: rebuild the mounts (never attached anywhere)
    // and open the files through them; the child takes them over. Dropping them undoes it all.
    let held = mounts::open_held(&image, &plan.held)?;
    let (report_rd, report_wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(RestoreError::errno("creating the report pipe"))?;
    let set_tid = i32::try_from(pid).ok().filter(|&p| p > 0);
    if let Some(pid) = set_tid {
        wait_while_dying(pid);
    }
    let mut spawned = clone3::spawn(
        &SpawnOptions {
            set_tid,
            hold: true,
        },
        {
            let plan = &plan;
            let held = &held;
            move || child::run(plan, report_wr, held)
        },
    )?;
    let child_pid = spawned.pid();
    let mut guard = ChildGuard {
        pid: child_pid,
        threads: Vec::new(),
        armed: true,
    };
    if spawned.pid_outcome() != PidOutcome::Kept {
        tracing::warn!(
            dumped = pid,
            restored = child_pid,
            "pid not kept: {}",
            spawned.pid_outcome()
        );
    }

    let tracee = Tracee::seize(child_pid, PtraceOptions::EXITKILL).map_err(
        RestoreError::ptrace(format!("seizing the new process {child_pid}")),
    )?;
    spawned.release()?;
    // Wait for the stop first (the child may die or get a signal instead), then read the
    // report, which the child wrote and closed before stopping or exiting.
    let stopped = wait_for_self_stop(&tracee);
    let aux_fds = read_report(report_rd)?;
    stopped?;
    // The child holds its own copies now.
    drop(held);
    tracer::check_xstate(&tracee, p)?;
    let mut threads = Vec::new();
    let rebuilt = tracer::rebuild(&tracee, &image, p, &plan, &aux_fds, &mut threads);
    guard.threads = threads.iter().map(|t| t.pid()).collect();
    rebuilt?;
    // Let every thread run: the others first, the main thread last.
    for t in threads {
        let tid = t.pid();
        t.detach(0).map_err(RestoreError::ptrace(format!(
            "detaching from thread {tid} of restored process {child_pid}"
        )))?;
    }
    tracee.detach(0).map_err(RestoreError::ptrace(format!(
        "detaching from restored process {child_pid}"
    )))?;
    guard.armed = false;
    tracing::info!(pid = child_pid, "restored");
    Ok(Restored {
        pid: child_pid,
        dumped_pid: pid,
        outcome: spawned.pid_outcome(),
        new_pid_ns: false,
    })
}

/// The dumped process was usually killed just before: if its pid is still held by a zombie or a
/// dying process, give its parent a moment (up to 2 s) to reap it, so that the pid can be kept.
fn wait_while_dying(pid: i32) {
    let stat = format!("/proc/{pid}/stat");
    for _ in 0..200 {
        let Ok(text) = std::fs::read_to_string(&stat) else {
            return; // gone (or never there)
        };
        // The state is the first field after the parenthesised name.
        let state = text
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if !matches!(state, Some("Z" | "X" | "x")) {
            return; // a live process: the pid cannot be kept
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn read_report(rd: OwnedFd) -> Result<Vec<i32>, RestoreError> {
    let mut file = std::fs::File::from(rd);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(RestoreError::sys("reading the new process's report"))?;
    child::decode_report(&bytes).map_err(RestoreError::ChildSetup)
}

fn wait_for_self_stop(t: &Tracee) -> Result<(), RestoreError> {
    loop {
        let status = t
            .wait_stop()
            .map_err(RestoreError::ptrace("waiting for the new process to stop"))?;
        match status {
            WaitStatus::Stopped {
                signal: libc::SIGSTOP,
                event: 0,
            } => return Ok(()),
            WaitStatus::Stopped { signal, event: 0 } => {
                // Another signal (e.g. SIGABRT from a failure in the child): deliver it.
                tracing::debug!(signal, "the new process got a signal before stopping");
                t.cont(signal)
                    .map_err(RestoreError::ptrace("resuming the new process"))?;
            }
            WaitStatus::Stopped { .. } | WaitStatus::Continued => {
                t.cont(0)
                    .map_err(RestoreError::ptrace("resuming the new process"))?;
            }
            other => {
                return Err(RestoreError::ChildSetup(format!(
                    "the new process ended unexpectedly ({other})"
                )));
            }
        }
    }
}
