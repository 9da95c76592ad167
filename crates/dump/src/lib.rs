//! # crcli-dump: the dump engine
//!
//! Freezes a process tree with ptrace (module `tree`: the root and every descendant), collects
//! every piece of each member's state (memory, registers, signals, files and the mounts they
//! live on) and the tree's own (parents, sessions, process groups, zombies with their exit
//! status, the PID and UTS namespaces), and writes an image with crcli-image. Then it kills the
//! tree (the default) or lets it run on ([`DumpOptions::leave_running`]).
//!
//! The entry point is [`dump`]:
//!
//! ```no_run
//! use crcli_dump::{dump, DumpOptions};
//! # fn main() -> Result<(), crcli_dump::DumpError> {
//! let summary = dump(1234, std::path::Path::new("/tmp/img"), &DumpOptions { leave_running: true })?;
//! println!("{} pages, {} bytes in {:?}", summary.pages, summary.page_bytes, summary.elapsed);
//! # Ok(())
//! # }
//! ```
//!
//! ## What is captured
//!
//! - Memory: every mapping (`/proc/PID/maps` + smaps flags) and the pages that must be saved
//!   (see [`memory`](crate#memory)): anonymous private pages present or swapped, pages of private
//!   file mappings that are no longer the file's, the content of shared anonymous objects
//!   (once per object, also when several members map it).
//!   Pages are streamed into the image in bounded batches: crcli's memory stays small.
//! - Every thread (the main thread first; each one seized with `PTRACE_SEIZE` and stopped with
//!   `PTRACE_INTERRUPT`, `/proc/PID/task` read again until no new thread appears; a thread that
//!   exits meanwhile is left out): its id, general registers (with `fs_base`/`gs_base`: its
//!   TLS), the XSAVE area (`NT_X86_XSTATE`; its size and XCR0 are recorded for the restore to
//!   check), its signal mask, the signals pending for it (raw `siginfo_t`, not consumed), its
//!   rseq registration, its robust futex list (`get_robust_list(tid)`), and, by syscalls
//!   injected into that very thread (one after the other, through one scratch page of the
//!   shared address space), its `clear_child_tid` and alternate signal stack. The signals
//!   pending for the whole process are recorded once.
//! - The process: sigactions (by injected `rt_sigaction`), cwd, root, umask, rlimits,
//!   personality, credentials, dumpable / no_new_privs / child_subreaper / securebits, the mm
//!   fields of `PR_SET_MM_MAP` (stat fields 26–28 and 45–51, `brk(0)`, auxv, the exe).
//! - Files: regular files, directories, `O_PATH` fds, devices, pipes and FIFOs (with the bytes
//!   buffered in them), files unlinked while open (with their content); every file is tied to
//!   its mount (crcli-mountinfo). An open file description shared by several fds, in one member
//!   or several (inherited across fork), is one image entry (found with `kcmp`); so is a pipe
//!   whose ends are in different members, its buffered data read once.
//! - The tree: members in parent-before-child order, the root's `ppid` 0; zombies (exit status
//!   from `/proc/PID/stat` field 52); each member's pid and each thread's id in the tree's PID
//!   namespace when the root is PID 1 of its own (`NSpid`); each member's and zombie's exit
//!   signal (stat field 38); the UTS names when the tree has its
//!   own UTS namespace; the identity of the root's namespaces.
//!
//! ## The registers of an interrupted syscall (contract with the restore)
//!
//! When the freeze interrupts a syscall, the registers are recorded exactly as the kernel shows
//! them: `orig_rax` holds the syscall number and `rax` a `-ERESTART*` code (-512
//! `ERESTARTSYS`, -513 `ERESTARTNOINTR`, -514 `ERESTARTNOHAND`, -516
//! `ERESTART_RESTARTBLOCK`), with `rip` just after the `syscall` instruction. The restore
//! normalises them (RESTORE-NOTES.md): for -512/-513/-514 `rax = orig_rax, rip -= 2`; for -516
//! the syscall is `restart_syscall` or `-EINTR`; in every case `orig_rax = -1` before resuming.
//!
//! ## Failure
//!
//! On any failure the target is resumed untouched (borrowed code bytes, registers and signal
//! masks are put back, the scratch page is unmapped, ptrace detaches from every thread), no
//! image is left (the
//! image is written into a temporary directory renamed into place only when complete), and the
//! error says what failed. What crcli does not support yet (sockets, eventfd, epoll, timerfd,
//! signalfd, inotify, memfd, System V shared memory, sessions or process groups led from
//! outside the tree (but the root's own), user / network / cgroup / time namespaces other than
//! crcli's, an IPC namespace of the tree's own holding System V objects, files on a mount
//! the kernel cannot identify — an unmounted mount without `STATMOUNT_BY_FD`, Linux 7.0 — …)
//! fails the dump the same way, with a message naming the pid, the fd and the type. Files on
//! unmounted and anonymous mounts the kernel identifies are dumped with their mount's rebuild
//! plan (module `mounts`), and a lost superblock's reachable content with them (`fscontent`).
#![forbid(unsafe_code)]

mod error;
mod files;
mod freeze;
mod fscontent;
mod inject;
mod memory;
mod mountns;
mod mounts;
mod procfs;
mod tree;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crcli_image::process::{NSIG, RLIM_NLIMITS};
use crcli_image::{
    Creds, Fd, ImagePath, Inventory, KernelFeature, MmInfo, OsBytes, PagesId, PendingSignals,
    Process, Rlimit, RobustList, Rseq, Sched, SigAction, SigAltStack, Thread, UserRegs, XState,
};
use crcli_sys::ptrace::{SigQueue, Tracee};
use rustix::fs::OFlags;

pub use error::DumpError;
pub use mountns::ExternalMount;

/// How to dump.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Let the target run on after the dump (CRIU's `--leave-running`) instead of killing it.
    pub leave_running: bool,
}

/// What a dump wrote and how long it took.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Summary {
    /// The root of the dumped tree.
    pub pid: i32,
    /// Live processes dumped (the root and its descendants).
    pub processes: usize,
    /// Zombies recorded.
    pub zombies: usize,
    /// Memory mappings recorded.
    pub vmas: usize,
    /// Pages of memory content saved (private pages and shared anonymous objects).
    pub pages: u64,
    /// Bytes of memory content saved.
    pub page_bytes: u64,
    /// fds recorded.
    pub fds: usize,
    /// How long the target was frozen.
    pub frozen: Duration,
    /// Total wall time of the dump.
    pub elapsed: Duration,
    /// Whether the target was left running (else it was killed).
    pub left_running: bool,
}

/// Dumps process `pid` into the image directory `dir`, which must not exist yet (its parent
/// must) or be an empty directory (replaced by the image; put back if the dump fails).
///
/// Dumps the tree rooted at `pid`: the process, its children, theirs, and so on, zombies
/// included; each process may have any number of threads. Every thread of every member is
/// frozen with `PTRACE_SEIZE` + `PTRACE_INTERRUPT` (the tree is walked again until it is
/// stable), their state is collected and written, then they are all killed, or resumed with
/// [`DumpOptions::leave_running`]. On failure every member is resumed untouched and no image is
/// left behind.
pub fn dump(pid: i32, dir: &Path, options: &DumpOptions) -> Result<Summary, DumpError> {
    dump_with_externals(pid, dir, options, &[])
}

/// [`dump`], naming mounts of the tree's own mount namespace that are binds from outside it
/// (`--external mnt[MOUNTPOINT]:KEY`): they are recorded by key, for the restore to bind the
/// path the user maps that key to. Without such a name, a bind from outside is refused.
pub fn dump_with_externals(
    pid: i32,
    dir: &Path,
    options: &DumpOptions,
    externals: &[ExternalMount],
) -> Result<Summary, DumpError> {
    let started = Instant::now();
    let proc = procfs::Proc::new(pid);
    freeze::check_target(&proc)?;
    // CRIU's users pass an existing, empty directory: the image takes its place, and it is put
    // back if the dump fails.
    check_image_dir(dir)?;
    let replaced = take_empty_dir(dir)?;
    let result = dump_frozen(&proc, dir, options, externals, started);
    if replaced && result.is_err() && !dir.exists() {
        if let Err(e) = std::fs::create_dir(dir) {
            tracing::warn!(
                "could not recreate the empty directory {}: {e}",
                dir.display()
            );
        }
    }
    result
}

/// Refuses, before the target is touched, an image directory that cannot be created.
fn check_image_dir(dir: &Path) -> Result<(), DumpError> {
    let bad = |reason: &str| DumpError::ImageDir {
        dir: dir.display().to_string(),
        reason: reason.to_owned(),
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            if std::fs::read_dir(dir)
                .map(|mut e| e.next().is_some())
                .unwrap_or(true)
            {
                return Err(bad("exists and is not empty"));
            }
        }
        Ok(_) => return Err(bad("exists and is not a directory")),
        Err(_) => {
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if !parent.is_dir() {
                return Err(bad("its parent directory does not exist"));
            }
        }
    }
    Ok(())
}

/// Removes `dir` if it is an empty directory (true), leaves anything else to
/// `Image::create`, which refuses an existing path.
fn take_empty_dir(dir: &Path) -> Result<bool, DumpError> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => false,
    };
    if empty {
        std::fs::remove_dir(dir).map_err(DumpError::io(format!(
            "replace the empty directory {}",
            dir.display()
        )))?;
    }
    Ok(empty)
}

fn dump_frozen(
    proc: &procfs::Proc,
    dir: &Path,
    options: &DumpOptions,
    externals: &[ExternalMount],
    started: Instant,
) -> Result<Summary, DumpError> {
    let pid = proc.pid;
    let mut frozen = Some(tree::freeze(proc)?);
    let frozen_at = Instant::now();
    if let Some(t) = &frozen {
        tracing::info!(
            "tree of pid {pid} frozen: {} processes, {} zombies",
            t.members.len(),
            t.zombies.len()
        );
    }
    let result = collect_and_write(
        &mut frozen,
        dir,
        options.leave_running,
        externals,
        frozen_at,
    );
    let mut summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            // Dropping `frozen` (if still held) resumes every member.
            if frozen.take().is_some() {
                tracing::info!("tree of pid {pid} resumed after a failed dump");
            }
            return Err(e);
        }
    };
    if let Some(t) = frozen.take() {
        if options.leave_running {
            t.resume().map_err(|(pid, source)| DumpError::AfterDump {
                pid,
                op: "resuming it",
                source,
            })?;
        } else {
            t.kill().map_err(|(pid, source)| DumpError::AfterDump {
                pid,
                op: "killing it",
                source,
            })?;
        }
        summary.frozen = frozen_at.elapsed();
    }
    summary.elapsed = started.elapsed();
    summary.left_running = options.leave_running;
    Ok(summary)
}

fn image_err(op: impl Into<String>) -> impl FnOnce(crcli_image::ImageError) -> DumpError {
    let op = op.into();
    move |source| DumpError::Image { op, source }
}

fn os_bytes(what: &str, bytes: &[u8]) -> Result<OsBytes, DumpError> {
    OsBytes::new(bytes.to_vec()).map_err(|e| DumpError::Parse {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

/// Collects the state of every member of the frozen tree and writes the image. With
/// `release_early` (leave-running), the tree is resumed as soon as everything has been read from
/// it, before the image is committed (and synced); a failure after that point leaves it running
/// untouched all the same.
fn collect_and_write(
    frozen: &mut Option<tree::FrozenTree>,
    dir: &Path,
    release_early: bool,
    externals: &[ExternalMount],
    frozen_at: Instant,
) -> Result<Summary, DumpError> {
    let t = frozen.as_ref().expect("the tree is frozen");
    let root = t.root().pid;
    let procs: Vec<procfs::Proc> = t.members.iter().map(|m| m.proc.clone()).collect();

    let mut image =
        crcli_image::Image::create(dir).map_err(image_err(format!("create {}", dir.display())))?;
    let Collected {
        facts,
        mut files,
        processes,
        count,
        mount_ns,
    } = collect_members(t, &procs, &mut image, externals)?;
    // Everything has been read from the tree.
    let mut frozen_for = Duration::ZERO;
    if release_early {
        if let Some(t) = frozen.take() {
            t.resume()
                .map_err(|(pid, e)| DumpError::ptrace(format!("resume pid {pid}"))(e))?;
            frozen_for = frozen_at.elapsed();
            tracing::debug!("tree of pid {root} resumed; writing the image");
        }
    }

    for f in &files.entries {
        image
            .add_file(f)
            .map_err(image_err(format!("file entry {}", f.id)))?;
    }
    for p in &files.pipes {
        image
            .add_pipe(p)
            .map_err(image_err(format!("pipe entry {}", p.id)))?;
    }
    files.mounts.dump_contents(&mut image)?;
    for m in files.mounts.entries() {
        image
            .add_mount(m)
            .map_err(image_err(format!("mount entry {}", m.id)))?;
    }
    for process in &processes {
        image
            .add_process(process)
            .map_err(image_err(format!("process entry of pid {}", process.pid)))?;
    }
    let mut inventory = Inventory::new(root as u32, features_used(files.mounts.entries()));
    let zombies = facts.tree.zombies.len();
    inventory.tree = facts.tree;
    inventory.tree.mount_ns = mount_ns;
    tracing::debug!("tree of pid {root}: entries written, committing the image");
    image.commit(inventory).map_err(image_err("commit"))?;
    tracing::info!("tree of pid {root}: image written to {}", dir.display());

    Ok(Summary {
        pid: root,
        processes: processes.len(),
        zombies,
        vmas: processes.iter().map(|p| p.vmas.len()).sum(),
        pages: count.pages,
        page_bytes: count.bytes,
        fds: processes.iter().map(|p| p.fds.len()).sum(),
        frozen: frozen_for,
        elapsed: Duration::ZERO,
        left_running: false,
    })
}

/// What [`collect_members`] gathered from the frozen tree, ready to be written.
struct Collected<'p> {
    facts: tree::Facts,
    files: files::Files<'p>,
    processes: Vec<Process>,
    count: memory::PageCount,
    mount_ns: Option<crcli_image::MountNamespace>,
}

/// What the tracing thread reads from one member: everything that needs ptrace (the injected
/// queries and every thread's registers, masks and pending signals).
struct Traced {
    injected: inject::Injected,
    threads: Vec<Thread>,
    /// The signals pending for the whole process (raw `siginfo_t`).
    shared_queued: Vec<Vec<u8>>,
}

/// What `/proc` and `prlimit` tell of one member that the injection does not change, read by
/// the reader thread of [`collect_members`].
struct ProcReads {
    stat: procfs::Stat,
    status: procfs::Status,
    exe_link: Vec<u8>,
    rlimits: Vec<Rlimit>,
    comm: OsBytes,
    personality: u32,
    auxv: Vec<u64>,
}

/// Reads [`ProcReads`] of one member.
fn read_member(proc: &procfs::Proc) -> Result<ProcReads, DumpError> {
    let pid = proc.pid;
    let mut rlimits = Vec::with_capacity(RLIM_NLIMITS);
    for res in 0..RLIM_NLIMITS as u32 {
        let l = crcli_sys::task::prlimit_get(pid, res)
            .map_err(DumpError::sys(format!("prlimit {res} of pid {pid}")))?;
        rlimits.push(Rlimit {
            cur: l.cur,
            max: l.max,
        });
    }
    Ok(ProcReads {
        stat: proc.stat()?,
        status: proc.status()?,
        exe_link: proc.readlink("exe")?,
        rlimits,
        comm: os_bytes("comm", &proc.comm()?)?,
        personality: proc.personality()?,
        auxv: proc.auxv()?,
    })
}

/// Collects every member of the frozen tree on three threads that overlap:
/// - the calling thread (the one that seized every thread of the tree: ptrace answers only it)
///   asks each member in turn what needs ptrace ([`trace_member`]) and hands it on;
/// - a reader thread reads what `/proc` tells of each member that the injection does not
///   change ([`read_member`]), then the tree's facts (`tree::facts`);
/// - a collector thread takes the members in the same order from both and reads the rest
///   (files, memory layout, smaps, pages), writing pages into `image` as it goes.
///
/// Pages `process_vm_readv` cannot read are read through `/proc/PID/mem` by the tracing thread,
/// on the collector's request ([`memory::MemRequest`]). A failure anywhere stops the others;
/// the tree stays frozen (the caller resumes it) and the error is the one a dump on one thread
/// would have met first: the facts', else the first in member order.
fn collect_members<'p>(
    t: &tree::FrozenTree,
    procs: &'p [procfs::Proc],
    image: &mut crcli_image::ImageWriter,
    externals: &[ExternalMount],
) -> Result<Collected<'p>, DumpError> {
    let root = t.root().pid;
    let zombies: &[procfs::Proc] = &t.zombies;
    std::thread::scope(|scope| {
        // Unbounded: the tracing and reader threads never wait for the collector.
        let (traced_tx, traced_rx) = mpsc::channel::<Traced>();
        let (reads_tx, reads_rx) = mpsc::channel::<Result<ProcReads, DumpError>>();
        let (mem_tx, mem_rx) = mpsc::channel::<memory::MemRequest>();
        let reader = std::thread::Builder::new()
            .name("crcli-read".into())
            .spawn_scoped(scope, move || {
                for proc in procs {
                    let reads = read_member(proc);
                    let failed = reads.is_err();
                    // The collector stopped (it failed): nothing more to read for it.
                    if reads_tx.send(reads).is_err() || failed {
                        break;
                    }
                }
                drop(reads_tx);
                // Also after a failure: the facts' error comes first.
                tree::facts(procs, zombies)
            })
            .map_err(DumpError::io("start the reader thread".to_owned()))?;
        let collector = std::thread::Builder::new()
            .name("crcli-collect".into())
            .spawn_scoped(scope, move || {
                collect_traced(procs, &traced_rx, &reads_rx, &mem_tx, image, externals)
            })
            .map_err(DumpError::io("start the collector thread".to_owned()))?;
        let mut traced_result = Ok(());
        for m in &t.members {
            // Requests come from members already handed on: serve them between members.
            while let Ok(req) = mem_rx.try_recv() {
                req.serve();
            }
            match trace_member(&m.proc, &m.frozen) {
                Ok(traced) => {
                    // The collector stopped (it failed): its error is the one to report.
                    if traced_tx.send(traced).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    traced_result = Err(e);
                    break;
                }
            }
        }
        drop(traced_tx);
        // Until the collector is done (it holds the only sender).
        for req in mem_rx.iter() {
            req.serve();
        }
        let collected = collector
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let facts = reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        // The order of a dump on one thread: the facts, then member by member (the collector
        // only ever fails at a member before the one the tracing thread failed at, or at the
        // same one with what the reader read of it, read first).
        let facts = facts?;
        let collected = collected?;
        traced_result?;
        let Some((files, mut processes, count, mount_ns)) = collected else {
            unreachable!("the collector stops early only after the tracing thread failed");
        };
        for process in &mut processes {
            process.ns_pid = facts.ns_pids[&(process.pid as i32)];
            for th in &mut process.threads {
                if !facts.tree.namespaces.own_pid_ns {
                    th.ns_tid = th.tid;
                } else if th.tid == process.pid {
                    th.ns_tid = process.ns_pid;
                }
            }
        }
        tracing::debug!("tree of pid {root}: every member collected");
        Ok(Collected {
            facts,
            files,
            processes,
            count,
            mount_ns,
        })
    })
}

/// What the collector thread gathered: files, processes (`ns_pid` and `ns_tid` still to be
/// set from the tree's facts), page counts, the tree's own mount namespace.
type Gathered<'p> = (
    files::Files<'p>,
    Vec<Process>,
    memory::PageCount,
    Option<crcli_image::MountNamespace>,
);

/// The collector thread of [`collect_members`]: each member as the reader and tracing threads
/// hand it on, then the tree's own mount namespace. `None` when the tracing thread stopped (it
/// failed) before handing on every member.
fn collect_traced<'p>(
    procs: &'p [procfs::Proc],
    traced_rx: &mpsc::Receiver<Traced>,
    reads_rx: &mpsc::Receiver<Result<ProcReads, DumpError>>,
    tracer: &mpsc::Sender<memory::MemRequest>,
    image: &mut crcli_image::ImageWriter,
    externals: &[ExternalMount],
) -> Result<Option<Gathered<'p>>, DumpError> {
    let root = procs[0].pid;
    let mut files = files::Files::new(&procs[0])?;
    let mut count = memory::PageCount::default();
    let mut next_pages = 1u32;
    let mut processes = Vec::with_capacity(procs.len());
    // Shared anonymous memory objects by inode: saved once, by the first member that maps them.
    let mut shared_objects = memory::SeenObjects::new();
    for (i, proc) in procs.iter().enumerate() {
        // What the reader read comes first (it was read first on one thread).
        let reads = reads_rx.recv().unwrap_or_else(|_| {
            unreachable!("the reader sends every member until the collector stops, or its error")
        })?;
        let Ok(traced) = traced_rx.recv() else {
            return Ok(None);
        };
        refuse_posix_timers(proc.pid)?;
        if i > 0 {
            files.switch_to(proc)?;
        }
        let mut process = collect_process(
            proc,
            traced,
            reads,
            &mut files,
            image,
            tracer,
            &mut next_pages,
            &mut count,
            &mut shared_objects,
        )?;
        if proc.pid == root {
            // The root's parent is not in the image.
            process.ppid = 0;
        }
        processes.push(process);
    }

    // The tree's own mount namespace, with the content of its tmpfs mounts.
    let mount_ns = if files.mounts.other_namespace() {
        Some(mountns::capture(root, &mut files.mounts, externals)?)
    } else if let Some(e) = externals.first() {
        return Err(DumpError::Unsupported {
            pid: root,
            what: format!(
                "--external mnt[{}]:{} for a process in crcli's own mount namespace",
                e.mountpoint.display(),
                e.key
            ),
        });
    } else {
        None
    };
    Ok(Some((files, processes, count, mount_ns)))
}

/// What needs ptrace, from the thread that seized `frozen`: the injected queries (first: the
/// scratch page they need is gone before the collector reads the memory layout), every
/// thread's state, the signals pending for the whole process.
fn trace_member(proc: &procfs::Proc, frozen: &freeze::Frozen) -> Result<Traced, DumpError> {
    let pid = proc.pid;
    let maps_before = proc.maps()?;
    let tracee = frozen.tracee();
    let others = &frozen.threads()[1..];
    let injected = inject::ask(tracee, others, &maps_before)?;
    let mut threads = Vec::with_capacity(1 + others.len());
    threads.push(collect_thread(proc, tracee, &injected.main)?);
    for (t, answers) in others.iter().zip(&injected.others) {
        threads.push(collect_thread(proc, t, answers)?);
    }
    let shared_queued = tracee
        .peek_siginfo(SigQueue::Shared)
        .map_err(DumpError::ptrace(format!(
            "read the signals pending for pid {pid}"
        )))?
        .into_iter()
        .map(|s| s.0.to_vec())
        .collect();
    tracing::debug!(
        "pid {pid}: registers, signals and injected queries of {} thread(s) done",
        threads.len()
    );
    Ok(Traced {
        injected,
        threads,
        shared_queued,
    })
}

/// Collects the state of one frozen process, `traced` being what the tracing thread read from
/// it: its files go to `files` (shared with the other members), its memory into new page
/// streams of `image` numbered from `next_pages`.
#[allow(clippy::too_many_arguments)]
fn collect_process(
    proc: &procfs::Proc,
    traced: Traced,
    reads: ProcReads,
    files: &mut files::Files<'_>,
    image: &mut crcli_image::ImageWriter,
    tracer: &mpsc::Sender<memory::MemRequest>,
    next_pages: &mut u32,
    count: &mut memory::PageCount,
    shared_objects: &mut memory::SeenObjects,
) -> Result<Process, DumpError> {
    let pid = proc.pid;
    let Traced {
        injected,
        threads,
        shared_queued,
    } = traced;
    let ProcReads {
        stat,
        status,
        exe_link,
        rlimits,
        comm,
        personality,
        auxv,
    } = reads;

    let fds = files.dump_fds(image)?;
    let cwd = files.proc_entry(
        "cwd",
        OFlags::PATH | OFlags::DIRECTORY,
        (libc::O_RDONLY | libc::O_DIRECTORY) as u32,
        true,
    )?;
    let root = files.proc_entry(
        "root",
        OFlags::PATH | OFlags::DIRECTORY,
        (libc::O_RDONLY | libc::O_DIRECTORY) as u32,
        true,
    )?;
    // The exe is recorded by path in any case; as a file entry when crcli can locate it.
    let exe_file = match files.proc_entry("exe", OFlags::PATH, libc::O_RDONLY as u32, false) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!("pid {pid}: the executable is recorded by path only: {e}");
            None
        }
    };

    let maps = proc.maps()?;
    let private_pages = PagesId(*next_pages);
    let mut layout = memory::layout(proc, &maps, files, private_pages.0 + 1)?;
    *next_pages = layout
        .shared
        .iter()
        .map(|o| o.id.0)
        .max()
        .unwrap_or(private_pages.0)
        + 1;
    // One object mapped by several members is saved once, by the first.
    memory::share_across_members(pid, &mut layout, shared_objects)?;
    tracing::debug!("pid {pid}: files and memory layout done");

    let mut pages_writer = image
        .pages(private_pages)
        .map_err(image_err("start the page stream"))?;
    let (c, vmflags) = memory::dump_private(proc, &layout.private, &mut pages_writer, tracer)?;
    memory::apply_vmflags(&mut layout.vmas, &vmflags);
    pages_writer
        .finish()
        .map_err(image_err("finish the page stream"))?;
    count.pages += c.pages;
    count.bytes += c.bytes;
    tracing::debug!("pid {pid}: {} private pages written", c.pages);
    for obj in &layout.shared {
        let mut w = image
            .pages(obj.id)
            .map_err(image_err("start a shared memory page stream"))?;
        let c = memory::dump_shared(pid, obj, &mut w)?;
        w.finish()
            .map_err(image_err("finish a shared memory page stream"))?;
        count.pages += c.pages;
        count.bytes += c.bytes;
    }

    let process = Process {
        pid: pid as u32,
        ppid: stat.ppid,
        pgid: stat.pgrp,
        sid: stat.session,
        ns_pid: pid as u32,
        comm,
        threads,
        shared_pending: PendingSignals {
            mask: status.shd_pnd,
            queued: shared_queued,
        },
        sigactions: injected
            .sigactions
            .iter()
            .map(|a| SigAction {
                handler: a.handler,
                flags: a.flags,
                restorer: a.restorer,
                mask: a.mask,
            })
            .collect(),
        creds: Creds {
            uids: status.uids,
            gids: status.gids,
            groups: status.groups.clone(),
            cap_inh: status.cap_inh,
            cap_prm: status.cap_prm,
            cap_eff: status.cap_eff,
            cap_bnd: status.cap_bnd,
            cap_amb: status.cap_amb,
            securebits: injected.securebits,
        },
        cwd,
        root,
        umask: status.umask,
        rlimits,
        personality,
        dumpable: injected.dumpable,
        no_new_privs: status.no_new_privs,
        child_subreaper: injected.child_subreaper,
        exit_signal: stat.exit_signal,
        mm: MmInfo {
            start_code: stat.start_code,
            end_code: stat.end_code,
            start_data: stat.start_data,
            end_data: stat.end_data,
            start_brk: stat.start_brk,
            brk: injected.brk,
            start_stack: stat.start_stack,
            arg_start: stat.arg_start,
            arg_end: stat.arg_end,
            env_start: stat.env_start,
            env_end: stat.env_end,
            auxv,
            exe_path: ImagePath::new(
                exe_link
                    .strip_suffix(b" (deleted)")
                    .unwrap_or(&exe_link)
                    .to_vec(),
            )
            .map_err(|e| DumpError::Parse {
                what: format!("/proc/{pid}/exe"),
                detail: e.to_string(),
            })?,
            exe_file,
        },
        vmas: layout.vmas,
        pages: Some(private_pages),
        fds: fds
            .iter()
            .map(|f| Fd {
                fd: f.fd as u32,
                file: f.file,
                cloexec: f.cloexec,
            })
            .collect(),
        itimers: injected.itimers,
    };
    debug_assert_eq!(process.sigactions.len(), NSIG);
    Ok(process)
}

/// The kernel features this dump relied on: what every dump uses, plus, for files on mounts no
/// table shows, `STATMOUNT_BY_FD` where the kernel answered through it and the new mount API
/// that rebuilding such a mount needs.
fn features_used(mounts: &[crcli_image::MountEntry]) -> Vec<KernelFeature> {
    let mut used = vec![
        KernelFeature::PidfdGetfd,
        KernelFeature::PtraceGetRseqConfiguration,
        KernelFeature::StatxMntIdUnique,
    ];
    let detached = mounts
        .iter()
        .any(|m| m.kind != crcli_image::MountKind::Attached);
    if detached {
        // resolve_fd asks statmount by fd first wherever the kernel has it.
        if crcli_sys::features::Features::current().has(crcli_sys::features::Feature::StatmountByFd)
        {
            used.push(KernelFeature::StatmountByFd);
        }
        used.push(KernelFeature::NewMountApi);
        used.push(KernelFeature::MountSetattr);
    }
    used
}

/// XCR0 as ptrace reports it: `PTRACE_GETREGSET NT_X86_XSTATE` puts the XCR0 value in the
/// first word of the FXSAVE area's software-reserved bytes (offset 464,
/// `USER_XSTATE_XCR0_WORD`, the layout gdb reads). Falls back to the XSAVE header's XSTATE_BV.
fn xstate_features(xstate: &[u8]) -> u64 {
    let word = |at: usize| u64::from_ne_bytes(xstate[at..at + 8].try_into().expect("8 bytes"));
    if xstate.len() >= 472 && word(464) != 0 {
        word(464)
    } else if xstate.len() >= 520 {
        word(512)
    } else {
        0
    }
}

/// Collects the state of one stopped thread (`tracee`, the main thread or another) of `proc`:
/// registers, XSAVE area, signal mask, its own pending signals, rseq, robust list, and what
/// it told by injection (`answers`).
fn collect_thread(
    proc: &procfs::Proc,
    tracee: &Tracee,
    answers: &inject::ThreadAnswers,
) -> Result<Thread, DumpError> {
    let tid = tracee.pid();
    let who = if tid == proc.pid {
        format!("pid {tid}")
    } else {
        format!("thread {tid} of pid {}", proc.pid)
    };
    let task = proc.task(tid);
    let status = task.status()?;
    let r = tracee
        .get_regs()
        .map_err(DumpError::ptrace(format!("read the registers of {who}")))?;
    let xstate = tracee
        .get_xstate()
        .map_err(DumpError::ptrace(format!("read the FPU state of {who}")))?;
    let sigmask = tracee
        .get_sigmask()
        .map_err(DumpError::ptrace(format!("read the signal mask of {who}")))?;
    let pending = tracee
        .peek_siginfo(SigQueue::Thread)
        .map_err(DumpError::ptrace(format!(
            "read the signals pending for {who}"
        )))?;
    let rseq = match tracee.get_rseq_configuration() {
        Ok(c) if c.rseq_abi_pointer != 0 => Some(Rseq {
            ptr: c.rseq_abi_pointer,
            len: c.rseq_abi_size,
            sig: c.signature,
        }),
        Ok(_) => None,
        Err(e) => {
            return Err(DumpError::ptrace(format!(
                "read the rseq registration of {who}"
            ))(e))
        }
    };
    let (head, len) = crcli_sys::task::get_robust_list(tid)
        .map_err(DumpError::sys(format!("get_robust_list of {who}")))?;
    let (ss_sp, ss_flags, ss_size) = answers.sigaltstack;
    Ok(Thread {
        tid: tid as u32,
        // The innermost NSpid; the caller makes it `tid` when the tree shares crcli's namespace.
        ns_tid: status.nspid.last().copied().unwrap_or(tid as u32),
        comm: os_bytes("comm", &task.comm()?)?,
        regs: UserRegs {
            r15: r.r15,
            r14: r.r14,
            r13: r.r13,
            r12: r.r12,
            rbp: r.rbp,
            rbx: r.rbx,
            r11: r.r11,
            r10: r.r10,
            r9: r.r9,
            r8: r.r8,
            rax: r.rax,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            orig_rax: r.orig_rax,
            rip: r.rip,
            cs: r.cs,
            eflags: r.eflags,
            rsp: r.rsp,
            ss: r.ss,
            fs_base: r.fs_base,
            gs_base: r.gs_base,
            ds: r.ds,
            es: r.es,
            fs: r.fs,
            gs: r.gs,
        },
        xstate: XState {
            size: xstate.len() as u32,
            features: xstate_features(&xstate),
            data: xstate,
        },
        sigmask,
        pending: PendingSignals {
            mask: status.sig_pnd,
            queued: pending.into_iter().map(|s| s.0.to_vec()).collect(),
        },
        sigaltstack: SigAltStack {
            sp: ss_sp,
            flags: ss_flags,
            size: ss_size,
        },
        rseq,
        robust_list: RobustList { head, len },
        clear_child_tid: answers.clear_child_tid,
        tls: Vec::new(),
        sched: Some(read_sched(tid, &who)?),
    })
}

/// Refuses a process that has POSIX timers (`/proc/PID/timers` lists one `ID:` line per
/// timer): the image cannot hold them yet, and dropping them would be a silent loss.
fn refuse_posix_timers(pid: i32) -> Result<(), DumpError> {
    let path = format!("/proc/{pid}/timers");
    let text = std::fs::read(&path).map_err(DumpError::io(format!("read {path}")))?;
    let count = text
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"ID:"))
        .count();
    if count > 0 {
        return Err(DumpError::PosixTimers { pid, count });
    }
    Ok(())
}

/// The scheduling settings of thread `tid`, asked from crcli (`who` names it in errors).
fn read_sched(tid: i32, who: &str) -> Result<Sched, DumpError> {
    let attr = crcli_sys::sched::sched_getattr(tid)
        .map_err(DumpError::sys(format!("sched_getattr of {who}")))?;
    let id = rustix::process::Pid::from_raw(tid);
    let nice = rustix::process::getpriority_process(id)
        .map_err(DumpError::sys(format!("getpriority of {who}")))?;
    let set = rustix::thread::sched_getaffinity(id)
        .map_err(DumpError::sys(format!("sched_getaffinity of {who}")))?;
    let ours = rustix::thread::sched_getaffinity(None)
        .map_err(DumpError::sys("sched_getaffinity of crcli itself"))?;
    let max = rustix::thread::CpuSet::MAX_CPU;
    let mut affinity = Vec::new();
    // Restricted only if some CPU crcli may use is not one of the thread's: an unpinned thread
    // is recorded as such (empty), so that it is not refused on a machine with fewer CPUs.
    if (0..max).any(|cpu| ours.is_set(cpu) && !set.is_set(cpu)) {
        affinity = vec![0u64; max.div_ceil(64)];
        for cpu in (0..max).filter(|&cpu| set.is_set(cpu)) {
            affinity[cpu / 64] |= 1 << (cpu % 64);
        }
        while affinity.last() == Some(&0) {
            affinity.pop();
        }
    }
    Ok(Sched {
        policy: attr.policy,
        flags: attr.flags,
        priority: attr.priority,
        nice,
        deadline: [attr.runtime, attr.deadline, attr.period],
        affinity,
    })
}
