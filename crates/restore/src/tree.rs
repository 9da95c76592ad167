//! Restoring a process tree (an image with several processes, zombies or namespaces of its
//! own). DESIGN.md, "Trees and namespaces"; CRIU's approach.
//!
//! 1. Every member is checked and planned like a single process ([`plan::plan`]); the tree's
//!    links are checked (one root, every parent a member, sessions and process groups that can
//!    be made). Nothing is created before that.
//! 2. A mount namespace of its own is built ([`crate::mountns`]) and crcli's main thread
//!    joins it for steps 2 and 3 (files open there; the root is born there). crcli opens every
//!    open file description of the tree **once**, in itself: files, both ends
//!    of each pipe with its buffered data, FIFOs refilled once; files on unmounted and anonymous
//!    mounts through their rebuilt mounts. An fd shared by several processes (inherited across
//!    fork, or passed) is one [`crcli_image::FileEntry`], so it becomes one description again
//!    and its offset stays shared.
//!    Shared anonymous objects that several members map (one `MAP_SHARED|MAP_ANONYMOUS`
//!    region mapped before a fork, as preforking servers have) are made by crcli first, before
//!    it joins the mount namespace: each one is a shmem object held by an fd (through crcli's
//!    own `/proc/self/map_files`, [`crcli_sys::shmem`]), filled with its content from the
//!    image; every process inherits the fds, and each member's tracer maps its views from them
//!    (`mmap(MAP_SHARED, fd, offset)`) in step 5: one object again, named `/dev/zero (deleted)`
//!    at the same offsets in `/proc/PID/maps`, whatever order the tracer threads take. An
//!    object only one member maps is made in it by the tracer, as for a single process.
//! 3. crcli makes the root with `clone3` (at its pid, or as PID 1 of a new PID namespace with
//!    `CLONE_NEWPID`; a new UTS namespace with the dumped names; a new IPC namespace if the tree
//!    had its own) and `PTRACE_SEIZE`s it before it runs, with `PTRACE_O_TRACEFORK`: every
//!    process it makes is traced by crcli from its first instruction, and all die with crcli
//!    (`PTRACE_O_EXITKILL`).
//! 4. Each member, still running crcli's code, makes itself a session leader (`setsid`) or a
//!    process-group leader (`setpgid`) first, then makes its children with `clone3(set_tid)` in
//!    pid order (each does the same, recursively), each with its recorded exit signal (`clone3`
//!    `exit_signal`: a child made with another signal than `SIGCHLD` is a "clone" child again),
//!    zombies as children that exit at once with the recorded status, a death by signal by that
//!    very signal (real-time ones too), and are left unreaped (their parent ignores a zombie's
//!    exit signal other than `SIGCHLD` meanwhile, so that none is left pending); it then places
//!    its fds at their numbers from the shared descriptions, sets cwd, root, umask,
//!    personality and limits, reports on a pipe
//!    and stops with `SIGSTOP`; crcli discards that stop and detaches, and the member waits in
//!    `read(2)` on a "gate" pipe whose write end only crcli holds (if crcli dies, the read ends
//!    and the member exits).
//! 5. When every member waits there and every zombie has exited, up to [`TRACER_THREADS`]
//!    crcli threads take the members over (`PTRACE_SEIZE` with `PTRACE_O_EXITKILL`, then an
//!    interrupt that must find the member in that `read`), move members that joined another
//!    member's process group into it (an injected `setpgid`), and rebuild each one as the
//!    tracer does for a single process ([`tracer::rebuild`]): every injected syscall waits for
//!    its tracee to run, and the threads overlap those waits (100 members: about 0.6 s instead
//!    of 2.3 s on one thread, on the 2-CPU development machine). Only when every member is
//!    rebuilt do they all run.
//!
//! On any failure every process made so far is killed and reaped, every thread of it, in the
//! order the kernel reports them ([`ptrace::reap_all`]): nothing is left behind. The message
//! names the process (its dumped pid) and the step.
//!
//! In a new PID namespace every thread is made at its id inside it
//! ([`crcli_image::Thread::ns_tid`]: `clone3` with `set_tid`), and pending signals are queued
//! again with the ids they carried, which are the namespace's.
//!
//! Limits: files on the same unmounted or anonymous mount in different processes get one
//! rebuilt mount per process; a zombie killed by a signal loses its core-dump bit (dumping core
//! for real could write a core file where the system's `core_pattern` says); a zombie with
//! `SIGKILL` or `SIGSTOP` as its exit signal is refused; the root is made with `SIGCHLD` as its
//! exit signal (its parent is crcli); shared anonymous objects that several members map are
//! charged to crcli's memory cgroup (crcli writes their content); a process whose session
//! is neither its own nor its parent's, or whose process group is led from outside the tree
//! (other than the root's inherited one), is refused. The caller must have no other children
//! during the restore (crcli waits for any child or tracee).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use crcli_image::{FileKind, Image, NamespaceKind, PagesId, PipeEnd, PipeId, Process, VmaBacking};
use crcli_sys::clone3::{self, NewNamespaces, PidOutcome, SpawnOptions};
use crcli_sys::fdtable;
use crcli_sys::ptrace::{self, PtraceOptions, Tracee, WaitStatus};
use rustix::fs::{Mode, OFlags};

use crate::child;
use crate::error::RestoreError;
use crate::plan::{self, Open, Plan, SessionRole};
use crate::{tracer, RestoreOptions, Restored};

/// Whether the image needs the tree restore: several processes, zombies, or namespaces of its
/// own.
pub(crate) fn is_tree(image: &Image) -> bool {
    let inv = image.inventory();
    inv.contents.pids.len() != 1
        || !inv.tree.zombies.is_empty()
        || inv.tree.namespaces.own_pid_ns
        || inv.tree.namespaces.uts.is_some()
        || own_ipc_ns(image)
        || crate::mountns::to_build(image).is_some()
}

fn own_ipc_ns(image: &Image) -> bool {
    image
        .inventory()
        .tree
        .namespaces
        .ids
        .iter()
        .any(|n| n.kind == NamespaceKind::Ipc && !n.dumpers)
}

fn unsupported(msg: impl Into<String>) -> RestoreError {
    RestoreError::Unsupported(msg.into())
}

fn invalid(msg: impl Into<String>) -> RestoreError {
    RestoreError::Invalid(msg.into())
}

/// A child of a member, in creation order.
#[derive(Debug, Clone, Copy)]
enum Kid {
    Live(usize),
    Zombie(usize),
}

/// One live process of the tree.
struct Member<'a> {
    p: &'a Process,
    plan: Plan,
    /// Its pid in the namespace it is made in (`ns_pid`).
    want: i32,
    kids: Vec<Kid>,
    /// What it does first: `setsid`, `setpgid(0, 0)`, or nothing (inherits its parent's).
    role: SessionRole,
    /// The process group (numbered in its PID namespace) it joins once every process exists.
    join: Option<i32>,
    /// (fd number, index in [`TreePlan::opens`], close-on-exec).
    slots: Vec<(i32, usize, bool)>,
}

/// One zombie of the tree.
struct ZombiePlan {
    pid: u32,
    want: i32,
    role: SessionRole,
    join: Option<i32>,
    status: u32,
    /// The signal its parent got when it exited (`clone3` exit signal).
    exit_signal: i32,
}

/// One open file description of the tree, opened once by crcli.
enum GlobalOpen {
    /// Opened as member `member`'s plan says (`opens[open]`).
    Plan { member: usize, open: usize },
    /// One end of an anonymous pipe.
    Pipe {
        pipe: PipeId,
        end: PipeEnd,
        flags: u32,
    },
    /// A FIFO (its buffer is refilled once per FIFO).
    Fifo {
        pipe: PipeId,
        path: PathBuf,
        flags: u32,
    },
}

/// The whole tree, checked and planned.
struct TreePlan<'a> {
    members: Vec<Member<'a>>,
    zombies: Vec<ZombiePlan>,
    opens: Vec<GlobalOpen>,
    root: usize,
    /// The lowest fd number above every fd of every member.
    high: i32,
    ns: NewNamespaces,
    uts: Option<(Vec<u8>, Vec<u8>)>,
}

/// What crcli opened for the tree; every process inherits it.
struct Opened {
    /// Per [`TreePlan::opens`].
    fds: Vec<OwnedFd>,
    /// Per member: its files on rebuilt mounts (indexes of its plan's `held`).
    held: Vec<Vec<OwnedFd>>,
    /// Per anonymous pipe: both ends, kept until every process has its fds.
    _pipes: BTreeMap<PipeId, (OwnedFd, OwnedFd)>,
    /// Per FIFO: a read-write open keeping the refilled buffer alive until then.
    _fifo_helpers: BTreeMap<PipeId, OwnedFd>,
    /// Shared anonymous objects mapped by several members ([`make_shared_objects`]); each
    /// member keeps its copies until its tracer has mapped them and closed its helper fds.
    shm: BTreeMap<PagesId, OwnedFd>,
}

/// The shared anonymous objects that several members map (by their content's page stream),
/// with their size; checks that every view of one object agrees on its size.
fn shared_between_members(image: &Image) -> Result<BTreeMap<PagesId, u64>, RestoreError> {
    // Object -> (size, how many processes map it).
    let mut seen: BTreeMap<PagesId, (u64, usize)> = BTreeMap::new();
    for p in image.processes() {
        let mut here = BTreeSet::new();
        for vma in &p.vmas {
            if let VmaBacking::SharedAnonymous { content, size, .. } = &vma.backing {
                let e = seen.entry(*content).or_insert((*size, 0));
                if e.0 != *size {
                    return Err(invalid(format!(
                        "shared anonymous object {content}: process {} sees {size} bytes, another process {} bytes",
                        p.pid, e.0
                    )));
                }
                if here.insert(*content) {
                    e.1 += 1;
                }
            }
        }
    }
    Ok(seen
        .into_iter()
        .filter(|(_, (_, n))| *n > 1)
        .map(|(id, (size, _))| (id, size))
        .collect())
}

/// Makes each shared anonymous object of `objects` in crcli, as an fd
/// ([`crcli_sys::shmem::shared_anonymous_object`], through crcli's own `/proc`: before crcli
/// enters the tree's mount namespace), and writes its content from the image into it. The
/// members inherit the fds and map them: one object again, whatever the order in which the
/// tracer threads rebuild them.
fn make_shared_objects(
    image: &Image,
    objects: &BTreeMap<PagesId, u64>,
) -> Result<BTreeMap<PagesId, OwnedFd>, RestoreError> {
    use std::os::unix::fs::FileExt;
    let mut out = BTreeMap::new();
    for (&id, &size) in objects {
        let fd = crcli_sys::shmem::shared_anonymous_object(size).map_err(RestoreError::errno(
            format!("creating shared anonymous object {id} ({size} bytes)"),
        ))?;
        let file = std::fs::File::from(fd);
        let mut reader = image.pages(id)?.read_ahead()?;
        while let Some((chunk, data)) = reader.next_chunk()? {
            if chunk
                .addr
                .checked_add(chunk.len as u64)
                .is_none_or(|end| end > size)
            {
                return Err(invalid(format!(
                    "page stream {id} has content at offset {:#x}, past the end of its {size}-byte object",
                    chunk.addr
                )));
            }
            file.write_all_at(data, chunk.addr)
                .map_err(RestoreError::sys(format!(
                    "writing the content of shared anonymous object {id} at offset {:#x}",
                    chunk.addr
                )))?;
        }
        out.insert(id, OwnedFd::from(file));
    }
    Ok(out)
}

/// Moves `fd` to a number >= `high` (close-on-exec).
fn lift(fd: OwnedFd, high: i32, what: &str) -> Result<OwnedFd, RestoreError> {
    if fd.as_raw_fd() >= high {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, high).map_err(RestoreError::errno(format!(
        "moving {what} above fd {high}"
    )))
}

/// Checks and plans the tree. Creates nothing.
fn plan_tree<'a>(image: &'a Image, opts: &RestoreOptions) -> Result<TreePlan<'a>, RestoreError> {
    let inv = image.inventory();
    let tree = &inv.tree;
    for id in &tree.namespaces.ids {
        if !id.dumpers && matches!(id.kind, NamespaceKind::User | NamespaceKind::Net) {
            return Err(unsupported(format!(
                "the tree had a {} namespace of its own ({}:[{}]); it cannot be restored yet",
                id.kind.proc_name(),
                id.kind.proc_name(),
                id.ino
            )));
        }
    }
    let own_pid_ns = tree.namespaces.own_pid_ns;
    let mut members: Vec<Member<'a>> = Vec::new();
    let mut index: BTreeMap<u32, usize> = BTreeMap::new();
    for &pid in &inv.contents.pids {
        let p = image.process(pid).ok_or_else(|| {
            invalid(format!(
                "the inventory names process {pid}, which is not in the image"
            ))
        })?;
        let mut plan = plan::plan(image, p, opts)?;
        plan.session = SessionRole::Member;
        let want = if own_pid_ns { p.ns_pid } else { p.pid };
        let want = i32::try_from(want)
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| invalid(format!("process {pid}: pid {want} out of range")))?;
        if index.insert(pid, members.len()).is_some() {
            return Err(invalid(format!("process {pid} appears twice")));
        }
        members.push(Member {
            p,
            plan,
            want,
            kids: Vec::new(),
            role: SessionRole::Member,
            join: None,
            slots: Vec::new(),
        });
    }
    let roots: Vec<usize> = members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.p.pid == inv.root_pid)
        .map(|(i, _)| i)
        .collect();
    let root = match roots.as_slice() {
        [r] => *r,
        _ => {
            return Err(invalid(format!(
                "the root process {} is not in the image",
                inv.root_pid
            )))
        }
    };
    if own_pid_ns && members[root].want != 1 {
        return Err(invalid(format!(
            "the root {} has pid {} in its own PID namespace, not 1",
            inv.root_pid, members[root].want
        )));
    }
    // ns pid of every process (members and zombies), for process-group numbers.
    let mut ns_of: BTreeMap<u32, i32> = members.iter().map(|m| (m.p.pid, m.want)).collect();
    let mut seen_ns: BTreeSet<i32> = members.iter().map(|m| m.want).collect();
    if seen_ns.len() != members.len() {
        return Err(invalid("two processes share one pid in the PID namespace"));
    }
    let mut zombies = Vec::new();
    let mut zombie_parent = Vec::new();
    for z in &tree.zombies {
        let want = if own_pid_ns { z.ns_pid } else { z.pid };
        let want = i32::try_from(want)
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| invalid(format!("zombie {}: pid {want} out of range", z.pid)))?;
        let parent = *index.get(&z.ppid).ok_or_else(|| {
            invalid(format!(
                "zombie {}: its parent {} is not a live process of the image",
                z.pid, z.ppid
            ))
        })?;
        if ns_of.insert(z.pid, want).is_some() || !seen_ns.insert(want) {
            return Err(invalid(format!("zombie {}: its pid is used twice", z.pid)));
        }
        let sig = z.exit_status & 0x7f;
        if sig != 0 && (sig == 0x7f || sig > 64) {
            return Err(invalid(format!(
                "zombie {}: exit status {:#x} is neither an exit nor a death by signal",
                z.pid, z.exit_status
            )));
        }
        if sig != 0 && !crcli_sys::signal::default_action_terminates(sig as i32) {
            return Err(invalid(format!(
                "zombie {}: killed by signal {sig}, which does not end a process",
                z.pid
            )));
        }
        // At most 64: the image's validation checked it.
        let exit_signal = z.exit_signal as i32;
        if exit_signal == libc::SIGKILL || exit_signal == libc::SIGSTOP {
            // Its parent ignores the exit signal while the zombie is remade; these cannot be.
            return Err(unsupported(format!(
                "zombie {}: exit signal {exit_signal} (SIGKILL or SIGSTOP) cannot be remade",
                z.pid
            )));
        }
        zombies.push(ZombiePlan {
            pid: z.pid,
            want,
            role: SessionRole::Member,
            join: None,
            status: z.exit_status,
            exit_signal,
        });
        zombie_parent.push(parent);
    }
    // Parent links: every member but the root has a member as its parent, and reaches the
    // root.
    let mut parent: Vec<Option<usize>> = vec![None; members.len()];
    for (i, m) in members.iter().enumerate() {
        if i == root {
            continue;
        }
        let pi = *index.get(&m.p.ppid).ok_or_else(|| {
            invalid(format!(
                "process {}: its parent {} is not in the image",
                m.p.pid, m.p.ppid
            ))
        })?;
        parent[i] = Some(pi);
    }
    for i in 0..members.len() {
        let (mut at, mut steps) = (i, 0);
        while let Some(pi) = parent[at] {
            at = pi;
            steps += 1;
            if steps > members.len() {
                return Err(invalid(format!(
                    "process {}: its parent links form a loop",
                    members[i].p.pid
                )));
            }
        }
    }
    let mut kids: Vec<Vec<(i32, Kid)>> = vec![Vec::new(); members.len()];
    for (i, pi) in parent.iter().enumerate() {
        if let Some(pi) = pi {
            kids[*pi].push((members[i].want, Kid::Live(i)));
        }
    }
    for (z, &pi) in zombie_parent.iter().enumerate() {
        kids[pi].push((zombies[z].want, Kid::Zombie(z)));
    }
    for (i, mut k) in kids.into_iter().enumerate() {
        k.sort_by_key(|(want, _)| *want);
        members[i].kids = k.into_iter().map(|(_, k)| k).collect();
    }

    // Sessions and process groups. A process's group when it is made is its own (leaders) or
    // its parent's at that time; `None` is crcli's own, outside the tree (the root's inherited
    // session and group, as for a shell job).
    let shell_job = opts.shell_job;
    let mut initial_pgid: Vec<Option<u32>> = vec![None; members.len()];
    let order = preorder(&members, root);
    for &i in &order {
        let p = members[i].p;
        let is_root = i == root;
        let parent_sid = parent[i].map(|pi| members[pi].p.sid);
        let role = if p.sid == p.pid && !(is_root && shell_job) {
            SessionRole::SessionLeader
        } else if p.pgid == p.pid && !(is_root && shell_job) {
            SessionRole::GroupLeader
        } else {
            SessionRole::Member
        };
        if role != SessionRole::SessionLeader {
            if let Some(psid) = parent_sid {
                if p.sid != psid {
                    return Err(unsupported(format!(
                        "process {} is in session {}, neither its own nor its parent's ({psid})",
                        p.pid, p.sid
                    )));
                }
            }
        }
        initial_pgid[i] = match role {
            SessionRole::Member => parent[i].and_then(|pi| initial_pgid[pi]),
            _ => Some(p.pid),
        };
        members[i].role = role;
        members[i].join =
            group_to_join(p.pid, p.pgid, initial_pgid[i], members[root].p.pgid, &ns_of)?;
    }
    for (z, zp) in zombies.iter_mut().enumerate() {
        let e = &tree.zombies[z];
        let pi = zombie_parent[z];
        zp.role = if e.sid == e.pid {
            SessionRole::SessionLeader
        } else if e.pgid == e.pid {
            SessionRole::GroupLeader
        } else {
            SessionRole::Member
        };
        if zp.role != SessionRole::SessionLeader && e.sid != members[pi].p.sid {
            return Err(unsupported(format!(
                "zombie {} is in session {}, neither its own nor its parent's ({})",
                e.pid, e.sid, members[pi].p.sid
            )));
        }
        let initial = match zp.role {
            SessionRole::Member => initial_pgid[pi],
            _ => Some(e.pid),
        };
        zp.join = group_to_join(e.pid, e.pgid, initial, members[root].p.pgid, &ns_of)?;
    }

    // Open file descriptions: one per FileEntry, whichever processes hold it.
    let mut opens = Vec::new();
    let mut open_of: BTreeMap<crcli_image::FileId, usize> = BTreeMap::new();
    let mut high = 3;
    for (mi, m) in members.iter_mut().enumerate() {
        high = high.max(m.plan.high_fd);
        if m.plan.slots.len() != m.p.fds.len() {
            return Err(invalid(format!(
                "process {}: planned {} fds for {}",
                m.p.pid,
                m.plan.slots.len(),
                m.p.fds.len()
            )));
        }
        for (fd, slot) in m.p.fds.iter().zip(&m.plan.slots) {
            let g = match open_of.get(&fd.file) {
                Some(&g) => g,
                None => {
                    let file = image
                        .file(fd.file)
                        .ok_or_else(|| invalid(format!("file {} is not in the image", fd.file)))?;
                    let open = match (&m.plan.opens[slot.open], &file.kind) {
                        (Open::Pipe { end, flags, .. }, FileKind::Pipe { pipe, .. }) => {
                            GlobalOpen::Pipe {
                                pipe: *pipe,
                                end: *end,
                                flags: *flags,
                            }
                        }
                        (Open::Fifo { path, flags, .. }, FileKind::Fifo { pipe, .. }) => {
                            GlobalOpen::Fifo {
                                pipe: *pipe,
                                path: path.clone(),
                                flags: *flags,
                            }
                        }
                        _ => GlobalOpen::Plan {
                            member: mi,
                            open: slot.open,
                        },
                    };
                    opens.push(open);
                    open_of.insert(fd.file, opens.len() - 1);
                    opens.len() - 1
                }
            };
            m.slots.push((slot.fd, g, slot.cloexec));
        }
    }

    let mut ns = NewNamespaces::empty();
    if own_pid_ns {
        ns |= NewNamespaces::PID;
    }
    let uts = tree.namespaces.uts.as_ref().map(|u| {
        ns |= NewNamespaces::UTS;
        (
            u.hostname.as_bytes().to_vec(),
            u.domainname.as_bytes().to_vec(),
        )
    });
    if own_ipc_ns(image) {
        ns |= NewNamespaces::IPC;
    }
    Ok(TreePlan {
        members,
        zombies,
        opens,
        root,
        high,
        ns,
        uts,
    })
}

/// Format 2 did not record the ids of a member's other threads inside the tree's own PID
/// namespace (they load as their `tid`, see `crcli_image::v2`): such a tree is refused, as the
/// format-2 restore did.
fn check_old_thread_ids(image: &Image) -> Result<(), RestoreError> {
    if !image.inventory().tree.namespaces.own_pid_ns || image.format_version() >= 3 {
        return Ok(());
    }
    match image.processes().iter().find(|p| p.threads.len() > 1) {
        Some(p) => Err(unsupported(format!(
            "process {} has {} threads; a format-{} image of a tree in a PID namespace of its own does not record their ids inside it (dump again with this crcli)",
            p.pid,
            p.threads.len(),
            image.format_version()
        ))),
        None => Ok(()),
    }
}

/// The members in creation order (a parent before its children, children by pid).
fn preorder(members: &[Member<'_>], root: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(members.len());
    let mut stack = vec![root];
    while let Some(i) = stack.pop() {
        out.push(i);
        for k in members[i].kids.iter().rev() {
            if let Kid::Live(c) = k {
                stack.push(*c);
            }
        }
    }
    out
}

/// The process group (numbered in the tree's PID namespace) that process `pid`, whose group is
/// `initial` when it is made, must join to be in group `pgid`; refuses a group that cannot be
/// made.
fn group_to_join(
    pid: u32,
    pgid: u32,
    initial: Option<u32>,
    root_pgid: u32,
    ns_of: &BTreeMap<u32, i32>,
) -> Result<Option<i32>, RestoreError> {
    if initial == Some(pgid) {
        return Ok(None);
    }
    match ns_of.get(&pgid) {
        Some(&ns) => Ok(Some(ns)),
        None if initial.is_none() && pgid == root_pgid => Ok(None),
        None => Err(unsupported(format!(
            "process {pid} is in process group {pgid}, whose leader is not in the tree"
        ))),
    }
}

/// Opens every description of the tree in crcli, each at a number >= `high`.
fn open_all(image: &Image, t: &TreePlan<'_>) -> Result<Opened, RestoreError> {
    let high = t.high;
    let mut held = Vec::with_capacity(t.members.len());
    for m in &t.members {
        let fds = crate::mounts::open_held(image, &m.plan.held)?;
        let mut lifted = Vec::with_capacity(fds.len());
        for fd in fds {
            lifted.push(lift(fd, high, "a file on a rebuilt mount")?);
        }
        held.push(lifted);
    }
    let needs_stdio = t
        .opens
        .iter()
        .any(|o| matches!(o, GlobalOpen::Plan { member, open } if matches!(t.members[*member].plan.opens[*open], Open::Inherit { .. })));
    let mut inherited = Vec::new();
    if needs_stdio {
        for (n, fd) in [
            (0, rustix::stdio::stdin()),
            (1, rustix::stdio::stdout()),
            (2, rustix::stdio::stderr()),
        ] {
            if let Ok(dup) = rustix::io::fcntl_dupfd_cloexec(fd, high) {
                inherited.push((n, dup));
            }
        }
    }
    let mut pipes: BTreeMap<PipeId, (OwnedFd, OwnedFd)> = BTreeMap::new();
    let mut fifo_helpers: BTreeMap<PipeId, OwnedFd> = BTreeMap::new();
    let mut fds = Vec::with_capacity(t.opens.len());
    for open in &t.opens {
        let fd = match open {
            GlobalOpen::Plan { member, open } => {
                let m = &t.members[*member];
                child::open_one(
                    &m.plan.opens[*open],
                    high,
                    &mut [],
                    &mut Vec::new(),
                    &m.plan,
                    &inherited,
                    &held[*member],
                )
                .map_err(|e| {
                    RestoreError::ChildSetup(format!("opening a file of process {}: {e}", m.p.pid))
                })?
            }
            GlobalOpen::Pipe { pipe, end, flags } => {
                if !pipes.contains_key(pipe) {
                    let entry = image
                        .pipe(*pipe)
                        .ok_or_else(|| invalid(format!("pipe {pipe} is not in the image")))?;
                    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                        .map_err(RestoreError::errno(format!("creating pipe {pipe}")))?;
                    if entry.capacity as usize > 65536 {
                        rustix::pipe::fcntl_setpipe_size(&w, entry.capacity as usize).map_err(
                            RestoreError::errno(format!("setting the size of pipe {pipe}")),
                        )?;
                    }
                    child::write_all(w.as_fd(), &entry.buffered, "refilling a pipe")
                        .map_err(|e| RestoreError::ChildSetup(format!("pipe {pipe}: {e}")))?;
                    pipes.insert(*pipe, (lift(r, high, "a pipe")?, lift(w, high, "a pipe")?));
                }
                let (r, w) = &pipes[pipe];
                let end_fd = match end {
                    PipeEnd::Read => r,
                    PipeEnd::Write => w,
                };
                let fd = rustix::io::fcntl_dupfd_cloexec(end_fd, high).map_err(
                    RestoreError::errno(format!("duplicating an end of pipe {pipe}")),
                )?;
                let status = OFlags::from_bits_retain(*flags) & (OFlags::NONBLOCK | OFlags::DIRECT);
                rustix::fs::fcntl_setfl(&fd, status).map_err(RestoreError::errno(format!(
                    "setting the flags of pipe {pipe}"
                )))?;
                fd
            }
            GlobalOpen::Fifo { pipe, path, flags } => {
                if !fifo_helpers.contains_key(pipe) {
                    let entry = image
                        .pipe(*pipe)
                        .ok_or_else(|| invalid(format!("pipe {pipe} is not in the image")))?;
                    // A reader-writer open never blocks and keeps the buffer alive.
                    let helper =
                        rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                            .map_err(RestoreError::errno(format!(
                                "opening FIFO {}",
                                path.display()
                            )))?;
                    if entry.capacity as usize > 65536 {
                        rustix::pipe::fcntl_setpipe_size(&helper, entry.capacity as usize)
                            .map_err(RestoreError::errno(format!(
                                "setting the size of FIFO {}",
                                path.display()
                            )))?;
                    }
                    child::write_all(helper.as_fd(), &entry.buffered, "refilling a FIFO").map_err(
                        |e| RestoreError::ChildSetup(format!("FIFO {}: {e}", path.display())),
                    )?;
                    fifo_helpers.insert(*pipe, lift(helper, high, "a FIFO")?);
                }
                let fd = rustix::fs::open(
                    path,
                    OFlags::from_bits_retain(*flags) | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(RestoreError::errno(format!(
                    "opening FIFO {}",
                    path.display()
                )))?;
                rustix::fs::fcntl_setfl(&fd, OFlags::from_bits_retain(*flags)).map_err(
                    RestoreError::errno(format!("setting the flags of FIFO {}", path.display())),
                )?;
                lift(fd, high, "a FIFO")?
            }
        };
        fds.push(fd);
    }
    Ok(Opened {
        fds,
        held,
        _pipes: pipes,
        _fifo_helpers: fifo_helpers,
        shm: BTreeMap::new(),
    })
}

/// Raises crcli's own soft limit on open files to the hard limit when the tree needs fd numbers
/// above it (the members set their own limits later).
fn raise_nofile(need: u64) {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if lim.current.is_some_and(|cur| cur < need) {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The processes' side: runs in each new process, in a forked copy of crcli.

/// What every process of the tree shares: the plan, crcli's opened files and the report pipe.
struct Shared<'a, 'b> {
    t: &'a TreePlan<'b>,
    opened: &'a Opened,
    report: BorrowedFd<'a>,
    /// The read end of the gate: a member that is ready waits in `read(2)` on it until its
    /// tracer takes it over; only crcli has the write end, so a dead crcli means end of file.
    gate: BorrowedFd<'a>,
}

/// Sends one report line (one write, so that lines of several processes never interleave).
fn report(s: &Shared<'_, '_>, line: &str) {
    let _ = rustix::io::retry_on_intr(|| rustix::io::write(s.report, line.as_bytes()));
}

/// This process's pid in crcli's PID namespace (`/proc` is crcli's).
fn host_pid() -> i32 {
    rustix::fs::readlink("/proc/self", Vec::new())
        .ok()
        .and_then(|l| l.to_str().ok().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn errstr(e: rustix::io::Errno) -> String {
    std::io::Error::from(e).to_string()
}

fn take_role(role: SessionRole) -> Result<(), String> {
    match role {
        SessionRole::SessionLeader => rustix::process::setsid()
            .map(|_| ())
            .map_err(|e| format!("creating its session (setsid): {}", errstr(e))),
        SessionRole::GroupLeader => rustix::process::setpgid(None, None)
            .map_err(|e| format!("creating its process group (setpgid): {}", errstr(e))),
        SessionRole::Member => Ok(()),
    }
}

fn check_pid(want: i32) -> Result<(), String> {
    let got = rustix::process::getpid().as_raw_nonzero().get();
    if got != want {
        return Err(format!("it got pid {got}, not {want}"));
    }
    Ok(())
}

/// The body of a member: see the module docs, step 4. Returns only on failure (exit code).
fn member_main(s: &Shared<'_, '_>, i: usize) -> i32 {
    let m = &s.t.members[i];
    report(s, &format!("NEW {} {}\n", m.p.pid, host_pid()));
    match member_setup(s, i) {
        Ok(aux) => {
            let mut line = format!("OK {}", m.p.pid);
            for fd in aux {
                line.push_str(&format!(" {fd}"));
            }
            line.push('\n');
            report(s, &line);
            // The report pipe goes too: nothing of crcli may stay in the restored process.
            let _ = fdtable::close_range(s.report.as_raw_fd() as u32, s.report.as_raw_fd() as u32);
            // Tell crcli (this stop), then wait in read(2) on the gate until a tracer takes
            // this process over and replaces all of it.
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::STOP,
            );
            let mut byte = [0u8];
            loop {
                match rustix::io::read(s.gate, &mut byte) {
                    Err(rustix::io::Errno::INTR) => continue,
                    _ => return 126, // crcli is gone: nothing will take this process over
                }
            }
        }
        Err(msg) => {
            report(s, &format!("ERR {} {}\n", m.p.pid, msg.replace('\n', " ")));
            2
        }
    }
}

fn member_setup(s: &Shared<'_, '_>, i: usize) -> Result<Vec<i32>, String> {
    let t = s.t;
    let m = &t.members[i];
    check_pid(m.want)?;
    take_role(m.role)?;
    if i == t.root {
        if let Some((host, domain)) = &t.uts {
            rustix::system::sethostname(host)
                .map_err(|e| format!("setting the host name: {}", errstr(e)))?;
            rustix::system::setdomainname(domain)
                .map_err(|e| format!("setting the domain name: {}", errstr(e)))?;
        }
    }
    // SIGCHLD must not be ignored, or zombies would be reaped at once.
    fdtable::default_signal_action(libc::SIGCHLD)
        .map_err(|e| format!("resetting SIGCHLD: {}", errstr(e)))?;
    // A zombie's exit signal other than SIGCHLD (which it sends as it is remade) must not end
    // or disturb this process: it is ignored (discarded) until the tracer sets the dumped
    // dispositions.
    for kid in &m.kids {
        if let Kid::Zombie(z) = kid {
            let sig = t.zombies[*z].exit_signal;
            if sig != 0 && sig != libc::SIGCHLD {
                crcli_sys::signal::ignore_signal(sig)
                    .map_err(|e| format!("ignoring signal {sig}: {}", errstr(e)))?;
            }
        }
    }
    // Children, in pid order, each with its exit signal; zombies exit at once and are left
    // unreaped.
    let mut zombie_pids = Vec::new();
    for kid in &m.kids {
        let (want, what, exit_signal) = match kid {
            Kid::Live(c) => (
                t.members[*c].want,
                t.members[*c].p.pid,
                t.members[*c].p.exit_signal as i32,
            ),
            Kid::Zombie(z) => (
                t.zombies[*z].want,
                t.zombies[*z].pid,
                t.zombies[*z].exit_signal,
            ),
        };
        let kid = *kid;
        let spawned = clone3::spawn_with_exit_signal(
            &SpawnOptions {
                set_tid: Some(want),
                hold: false,
            },
            exit_signal,
            move || match kid {
                Kid::Live(c) => member_main(s, c),
                Kid::Zombie(z) => zombie_main(s, z),
            },
        )
        .map_err(|e| format!("making child {what}: {e}"))?;
        if spawned.pid_outcome() != PidOutcome::Kept {
            return Err(format!(
                "making child {what} at pid {want}: {}",
                spawned.pid_outcome()
            ));
        }
        if let Kid::Zombie(_) = kid {
            zombie_pids.push(spawned.pid());
        }
    }
    for z in zombie_pids {
        let pid = rustix::process::Pid::from_raw(z).ok_or("a zombie without a pid")?;
        rustix::io::retry_on_intr(|| {
            rustix::process::waitid(
                rustix::process::WaitId::Pid(pid),
                // __WALL: a child with another exit signal than SIGCHLD is a "clone" child.
                rustix::process::WaitIdOptions::EXITED
                    | rustix::process::WaitIdOptions::NOWAIT
                    | rustix::process::WaitIdOptions::from_bits_retain(libc::__WALL as u32),
            )
        })
        .map_err(|e| format!("waiting for zombie {z} to exit: {}", errstr(e)))?;
    }
    // Its own fds, from the shared descriptions.
    for &(fd, g, cloexec) in &m.slots {
        let dup = rustix::io::dup(&s.opened.fds[g])
            .map_err(|e| format!("duplicating for fd {fd}: {}", errstr(e)))?;
        fdtable::dup3_to(dup, fd, cloexec)
            .map_err(|e| format!("placing fd {fd}: {}", errstr(e)))?;
    }
    let aux = child::finish(&m.plan, &s.opened.held[i])?;
    // crcli's opens are not this process's: close them (the placed copies stay).
    for fd in s.opened.fds.iter().chain(s.opened.held.iter().flatten()) {
        let n = fd.as_raw_fd() as u32;
        let _ = fdtable::close_range(n, n);
    }
    Ok(aux)
}

/// The body of a zombie: take its session role, join its group, and end as it ended.
fn zombie_main(s: &Shared<'_, '_>, z: usize) -> i32 {
    let zp = &s.t.zombies[z];
    report(s, &format!("NEW {} {}\n", zp.pid, host_pid()));
    let setup = (|| -> Result<(), String> {
        check_pid(zp.want)?;
        take_role(zp.role)?;
        if let Some(g) = zp.join {
            rustix::process::setpgid(None, rustix::process::Pid::from_raw(g))
                .map_err(|e| format!("joining process group {g}: {}", errstr(e)))?;
        }
        Ok(())
    })();
    if let Err(msg) = setup {
        report(s, &format!("ERR {} {}\n", zp.pid, msg.replace('\n', " ")));
        // An exit the tree does not expect (crcli tells it from the zombie's by the report).
        return 2;
    }
    let sig = (zp.status & 0x7f) as i32;
    if sig == 0 {
        clone3::exit_now(((zp.status >> 8) & 0xff) as i32);
    }
    // Die by the signal: no core file, the default action.
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
    // Real-time signals too; unblocked, with their default action.
    let e = crcli_sys::signal::die_by_signal(sig);
    report(
        s,
        &format!(
            "ERR {} could not die by signal {sig}: {}\n",
            zp.pid,
            errstr(e)
        ),
    );
    2
}

// ---------------------------------------------------------------------------------------------
// crcli's side.

/// A report line from a process.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    New { pid: u32, host: i32 },
    Ok { pid: u32, aux: Vec<i32> },
    Err { pid: u32, msg: String },
}

fn parse_line(line: &str) -> Option<Line> {
    let mut words = line.splitn(3, ' ');
    let kind = words.next()?;
    let pid: u32 = words.next()?.trim().parse().ok()?;
    let rest = words.next().unwrap_or("").trim();
    match kind {
        "NEW" => Some(Line::New {
            pid,
            host: rest.parse().ok()?,
        }),
        "OK" => Some(Line::Ok {
            pid,
            aux: rest
                .split_whitespace()
                .map(|w| w.parse().ok())
                .collect::<Option<Vec<i32>>>()?,
        }),
        "ERR" => Some(Line::Err {
            pid,
            msg: rest.to_string(),
        }),
        _ => None,
    }
}

/// Reads whatever the processes have reported so far (the pipe is non-blocking).
fn drain(rd: &OwnedFd, buf: &mut Vec<u8>, out: &mut Vec<Line>) -> Result<(), RestoreError> {
    let mut chunk = [0u8; 4096];
    loop {
        match rustix::io::read(rd, &mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(RestoreError::errno("reading the processes' reports")(e)),
        }
    }
    while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buf.drain(..=nl).collect();
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        out.push(parse_line(&text).ok_or_else(|| {
            RestoreError::ChildSetup(format!("garbled report from a new process: {text:?}"))
        })?);
    }
    Ok(())
}

/// Waits for any child or tracee of crcli (`waitpid(-1, __WALL)`).
fn wait_any() -> Result<(i32, WaitStatus), RestoreError> {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::from_bits_retain(
            libc::__WALL as u32,
        )) {
            Ok(Some((pid, status))) => {
                return Ok((
                    pid.as_raw_nonzero().get(),
                    WaitStatus::from_raw(status.as_raw()),
                ))
            }
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(RestoreError::errno("waiting for the new processes")(e)),
        }
    }
}

/// What crcli knows of the new processes while they set themselves up.
#[derive(Default)]
struct Progress {
    /// host pid -> dumped pid.
    host_to_pid: BTreeMap<i32, u32>,
    /// dumped pid -> host pid, of members stopped at the end of their setup.
    stopped: BTreeMap<u32, i32>,
    /// dumped pid -> aux fds (their OK report).
    ok: BTreeMap<u32, Vec<i32>>,
    /// Zombies that have exited.
    exited_zombies: BTreeSet<u32>,
    /// Every host pid seen (to kill on failure).
    seen: BTreeSet<i32>,
}

/// Kills every process made so far and reaps them all (crcli's children and tracees).
fn kill_all(progress: &Progress, root_host: i32) {
    let kill = |pid: i32| {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    };
    kill(root_host);
    for &pid in progress.seen.iter().chain(progress.host_to_pid.keys()) {
        kill(pid);
    }
    // Anything still reporting in (made while we were killing) is killed too.
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::from_bits_retain(
            libc::__WALL as u32,
        )) {
            Ok(Some((pid, status))) => {
                if !WaitStatus::from_raw(status.as_raw()).is_gone() {
                    kill(pid.as_raw_nonzero().get());
                }
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break, // ECHILD: nothing left
        }
    }
}

/// Runs the event loop until every member has finished its setup (and waits on the gate,
/// untraced) and every zombie has exited.
fn await_tree(
    t: &TreePlan<'_>,
    report_rd: &OwnedFd,
    progress: &mut Progress,
) -> Result<(), RestoreError> {
    let zombie_pids: BTreeSet<u32> = t.zombies.iter().map(|z| z.pid).collect();
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    let name = |progress: &Progress, host: i32| match progress.host_to_pid.get(&host) {
        Some(pid) => format!("process {pid}"),
        None => format!("a new process (pid {host} here)"),
    };
    while progress.stopped.len() < t.members.len()
        || progress.exited_zombies.len() < t.zombies.len()
    {
        let (host, status) = wait_any()?;
        progress.seen.insert(host);
        drain(report_rd, &mut buf, &mut lines)?;
        for line in lines.drain(..) {
            match line {
                Line::New { pid, host } => {
                    progress.host_to_pid.insert(host, pid);
                }
                Line::Ok { pid, aux } => {
                    progress.ok.insert(pid, aux);
                }
                Line::Err { pid, msg } => {
                    return Err(RestoreError::ChildSetup(format!("process {pid}: {msg}")));
                }
            }
        }
        let tracee = Tracee::assume_attached(host);
        let who = name(progress, host);
        let resume = |sig: i32| {
            tracee
                .cont(sig)
                .map_err(RestoreError::ptrace(format!("resuming {who}")))
        };
        match status {
            WaitStatus::Stopped {
                signal: libc::SIGSTOP,
                event: 0,
            } => match progress.host_to_pid.get(&host) {
                // The end of a member's setup: let it go on (the stop is discarded) into its
                // wait on the gate, untraced, for a tracer thread to take it over.
                Some(&pid) if !zombie_pids.contains(&pid) => {
                    Tracee::assume_attached(host)
                        .detach(0)
                        .map_err(RestoreError::ptrace(format!(
                            "handing process {pid} over to a tracer thread"
                        )))?;
                    progress.stopped.insert(pid, host);
                }
                _ => resume(libc::SIGSTOP)?,
            },
            WaitStatus::Stopped { signal, event: 0 } => resume(signal)?,
            // Fork events, the first stop of an auto-attached child, group-stops.
            WaitStatus::Stopped { .. } => resume(0)?,
            WaitStatus::Continued => {}
            WaitStatus::Exited(_) | WaitStatus::Signaled { .. } => {
                match progress.host_to_pid.get(&host) {
                    Some(pid) if zombie_pids.contains(pid) => {
                        progress.exited_zombies.insert(*pid);
                    }
                    _ => {
                        return Err(RestoreError::ChildSetup(format!(
                            "{who} ended while setting itself up ({status})"
                        )))
                    }
                }
            }
        }
    }
    // Every OK line was written before its process stopped.
    drain(report_rd, &mut buf, &mut lines)?;
    for line in lines.drain(..) {
        if let Line::Ok { pid, aux } = line {
            progress.ok.insert(pid, aux);
        }
    }
    Ok(())
}

/// Moves a stopped member into process group `pgid` by an injected `setpgid(0, pgid)`.
fn inject_setpgid(t: &Tracee, pid: u32, pgid: i32) -> Result<(), RestoreError> {
    let regs = t.get_regs().map_err(RestoreError::ptrace(format!(
        "reading the registers of process {pid}"
    )))?;
    let word = t
        .peek_data(regs.rip - 2)
        .map_err(RestoreError::ptrace(format!(
            "reading the code of process {pid}"
        )))?;
    if word.to_le_bytes()[..2] != [0x0f, 0x05] {
        return Err(invalid(format!(
            "process {pid} did not stop after a syscall (rip {:#x})",
            regs.rip
        )));
    }
    t.set_syscall_site(Some(regs.rip - 2));
    let r = t.inject_syscall_checked(libc::SYS_setpgid, [0, pgid as u64, 0, 0, 0, 0]);
    t.set_syscall_site(None);
    r.map_err(RestoreError::ptrace(format!(
        "moving process {pid} into process group {pgid}"
    )))?;
    Ok(())
}

/// crcli is a child subreaper (`PR_SET_CHILD_SUBREAPER`) while this lives; the previous
/// setting comes back on drop. (Not inherited by the members: forks do not inherit it.)
struct Subreaper {
    was: bool,
}

impl Subreaper {
    fn become_one() -> Subreaper {
        let was = matches!(rustix::process::child_subreaper(), Ok(Some(_)));
        if !was {
            let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
        }
        Subreaper { was }
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        if !self.was {
            let _ = rustix::process::set_child_subreaper(None);
        }
    }
}

/// How many threads trace and rebuild members at once.
const TRACER_THREADS: usize = 8;

/// On a tracer thread: seizes member `m` (waiting on the gate, untraced), stops it there, moves
/// it into its process group, and rebuilds it. Every pid this thread traces is added to
/// `seized` (also on failure: the caller kills and reaps them).
fn take_over_and_rebuild(
    image: &Image,
    m: &Member<'_>,
    progress: &Progress,
    gate_fd: i32,
    seized: &mut Vec<i32>,
) -> Result<(Tracee, Vec<Tracee>), RestoreError> {
    let pid = m.p.pid;
    let host = *progress.stopped.get(&pid).ok_or_else(|| {
        RestoreError::ChildSetup(format!("process {pid} never finished its setup"))
    })?;
    let aux = progress.ok.get(&pid).ok_or_else(|| {
        RestoreError::ChildSetup(format!("process {pid} stopped without reporting"))
    })?;
    let tracee = Tracee::seize(host, PtraceOptions::EXITKILL).map_err(RestoreError::ptrace(
        format!("seizing process {pid} (pid {host} here)"),
    ))?;
    seized.push(host);
    // It goes from its stop to its read(2) on the gate: take it there (and nowhere else).
    let mut parked = false;
    for _ in 0..5000 {
        tracee
            .interrupt_and_wait()
            .map_err(RestoreError::ptrace(format!("stopping process {pid}")))?;
        let regs = tracee.get_regs().map_err(RestoreError::ptrace(format!(
            "reading the registers of process {pid}"
        )))?;
        if regs.orig_rax == libc::SYS_read as u64 && regs.rdi == gate_fd as u64 {
            parked = true;
            break;
        }
        tracee
            .cont(0)
            .map_err(RestoreError::ptrace(format!("resuming process {pid}")))?;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if !parked {
        return Err(RestoreError::ChildSetup(format!(
            "process {pid} did not reach its wait for the tracer"
        )));
    }
    if let Some(g) = m.join {
        inject_setpgid(&tracee, pid, g)?;
    }
    tracer::check_xstate(&tracee, m.p)?;
    let mut threads = Vec::new();
    let rebuilt = tracer::rebuild(&tracee, image, m.p, &m.plan, aux, &mut threads);
    seized.extend(threads.iter().map(|t| t.pid()));
    rebuilt?;
    Ok((tracee, threads))
}

/// Restores the tree of `image`: see the module docs.
pub(crate) fn restore(image: &Image, opts: &RestoreOptions) -> Result<Restored, RestoreError> {
    crate::check_machine(image)?;
    check_old_thread_ids(image)?;
    // A mount namespace of its own is built first and crcli's main thread joins it until the
    // root is made: the tree's files are checked and opened there, and the root is born there.
    // It is reachable only through crcli's fd until then and dies with the tree, so a failure
    // at any later step leaves nothing behind.
    let to_build = crate::mountns::check_for_tree(image, &opts.external_mounts)?;
    // Shared anonymous objects of several members: made (and filled) by crcli first, through
    // its own /proc. Only fds: dropped on any failure.
    let shm = make_shared_objects(image, &shared_between_members(image)?)?;
    let (own_mount_ns, entered) = match to_build {
        Some(ns) => {
            let ns_fd = crate::mountns::build(image, ns, &opts.external_mounts)?;
            let entered = crate::mountns::Entered::enter(&ns_fd)?;
            (Some((ns, ns_fd)), Some(entered))
        }
        None => (None, None),
    };
    let mut t = plan_tree(image, opts)?;
    tracing::debug!(
        members = t.members.len(),
        zombies = t.zombies.len(),
        descriptions = t.opens.len(),
        "tree checked"
    );
    let root_pid = t.members[t.root].p.pid;

    // Validation is over: from here on, everything created is undone on failure.
    // Members orphaned by a failure come to crcli (not to init, which may reap them late), so
    // that crcli reaps every one of them before it returns.
    let _subreaper = Subreaper::become_one();
    raise_nofile(t.high as u64 + 4 * t.opens.len() as u64 + 64);
    let started = std::time::Instant::now();
    let mut opened = open_all(image, &t)?;
    let mut shared_fds = BTreeMap::new();
    for (id, fd) in shm {
        let fd = lift(fd, t.high, "a shared anonymous object")?;
        shared_fds.insert(id, fd.as_raw_fd());
        opened.shm.insert(id, fd);
    }
    // Every member inherits them all; its tracer maps the ones the member maps.
    for m in &mut t.members {
        m.plan.shared_fds.clone_from(&shared_fds);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shared descriptions opened"
    );
    let (report_rd, report_wr) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )
    .map_err(RestoreError::errno("creating the report pipe"))?;
    // Reports are single writes; a blocking write end keeps them whole.
    rustix::fs::fcntl_setfl(&report_wr, OFlags::empty())
        .map_err(RestoreError::errno("setting up the report pipe"))?;
    let report_wr = lift(report_wr, t.high, "the report pipe")?;
    let (gate_rd, gate_wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(RestoreError::errno("creating the gate pipe"))?;
    let gate_rd = lift(gate_rd, t.high, "the gate pipe")?;
    let gate_wr = lift(gate_wr, t.high, "the gate pipe")?;
    if !t.ns.contains(NewNamespaces::PID) {
        for m in &t.members {
            crate::wait_while_dying(m.want);
        }
        for z in &t.zombies {
            crate::wait_while_dying(z.want);
        }
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "old pids free"
    );
    let root_want = t.members[t.root].want;
    let mut spawned = {
        let shared = Shared {
            t: &t,
            opened: &opened,
            report: report_wr.as_fd(),
            gate: gate_rd.as_fd(),
        };
        let root = t.root;
        clone3::spawn_in(
            t.ns,
            &SpawnOptions {
                set_tid: (!t.ns.contains(NewNamespaces::PID)).then_some(root_want),
                hold: true,
            },
            move || root_main(&shared, root),
        )?
    };
    drop(report_wr);
    drop(entered);
    let root_host = spawned.pid();
    let mut progress = Progress::default();
    let result = (|| -> Result<(), RestoreError> {
        if spawned.pid_outcome() != PidOutcome::Kept
            && spawned.pid_outcome() != PidOutcome::NotRequested
        {
            return Err(RestoreError::ChildSetup(format!(
                "process {root_pid}: making it at pid {root_want}: {}",
                spawned.pid_outcome()
            )));
        }
        // Handles for every tracee are made from pids below (`assume_attached`).
        Tracee::seize(
            root_host,
            PtraceOptions::EXITKILL
                | PtraceOptions::TRACEFORK
                | PtraceOptions::TRACEVFORK
                | PtraceOptions::TRACECLONE,
        )
        .map_err(RestoreError::ptrace(format!(
            "seizing the new root process {root_host}"
        )))?;
        progress.seen.insert(root_host);
        spawned.release()?;
        await_tree(&t, &report_rd, &mut progress)?;
        // Every member exists: the namespace's proc and mqueue instances become the new PID
        // and IPC namespaces'.
        if let Some((ns, ns_fd)) = &own_mount_ns {
            crate::mountns::own_procs(
                ns,
                ns_fd,
                root_host,
                t.ns.contains(NewNamespaces::PID),
                t.ns.contains(NewNamespaces::IPC),
            )?;
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "every process made and stopped"
        );
        Ok(())
    })();
    // Every process has its fds: crcli's copies go.
    drop(opened);
    if let Err(e) = result {
        drop(gate_wr);
        kill_all(&progress, root_host);
        return Err(e);
    }
    // Rebuild the members on several tracer threads at once (each injected syscall waits for
    // the tracee to run: the threads overlap those waits), then let them all run together.
    let order = preorder(&t.members, t.root);
    let workers = order.len().clamp(1, TRACER_THREADS);
    let gate_fd = gate_rd.as_raw_fd();
    let failure: std::sync::Mutex<Option<RestoreError>> = std::sync::Mutex::new(None);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let barrier = std::sync::Barrier::new(workers);
    std::thread::scope(|scope| {
        for w in 0..workers {
            let (t, progress, order) = (&t, &progress, &order);
            let (failure, failed, barrier) = (&failure, &failed, &barrier);
            scope.spawn(move || {
                let fail = |e: RestoreError| {
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    let mut first = failure.lock().unwrap_or_else(|p| p.into_inner());
                    if first.is_none() {
                        *first = Some(e);
                    }
                };
                let mut mine: Vec<(Tracee, Vec<Tracee>)> = Vec::new();
                let mut seized: Vec<i32> = Vec::new();
                for &i in order.iter().skip(w).step_by(workers) {
                    if failed.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let m = &t.members[i];
                    match take_over_and_rebuild(image, m, progress, gate_fd, &mut seized) {
                        Ok(done) => mine.push(done),
                        Err(e) => {
                            fail(RestoreError::Member {
                                pid: m.p.pid,
                                source: Box::new(e),
                            });
                            break;
                        }
                    }
                }
                barrier.wait();
                if failed.load(std::sync::atomic::Ordering::SeqCst) {
                    // Kill and reap what this thread traces (only it can wait for them).
                    for &pid in &seized {
                        if let Some(p) = rustix::process::Pid::from_raw(pid) {
                            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                        }
                    }
                    // In the order the kernel reports them: a process's main thread (first
                    // in `seized`) is reported only after its other threads are reaped.
                    if let Err(e) = ptrace::reap_all(&seized, ptrace::KILL_PATIENCE) {
                        tracing::warn!("after a failed restore: {e}");
                    }
                    return;
                }
                // Let them run: in each process the other threads before the main one.
                for (tracee, threads) in mine {
                    let host = tracee.pid();
                    for th in threads {
                        let tid = th.pid();
                        if let Err(e) = th.detach(0) {
                            fail(RestoreError::ptrace(format!(
                                "detaching from thread {tid} of restored process {host}"
                            ))(e));
                        }
                    }
                    if let Err(e) = tracee.detach(0) {
                        fail(RestoreError::ptrace(format!(
                            "detaching from restored process {host}"
                        ))(e));
                    }
                }
            });
        }
    });
    drop(gate_wr);
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        kill_all(&progress, root_host);
        return Err(e);
    }
    tracing::info!(
        pid = root_host,
        members = t.members.len(),
        zombies = t.zombies.len(),
        "tree restored"
    );
    Ok(Restored {
        pid: root_host,
        dumped_pid: root_pid,
        outcome: if t.ns.contains(NewNamespaces::PID) {
            PidOutcome::NotRequested
        } else {
            PidOutcome::Kept
        },
        new_pid_ns: t.ns.contains(NewNamespaces::PID),
    })
}

/// The root's body: it alone closes what it inherited from crcli, then it is a member.
fn root_main(s: &Shared<'_, '_>, root: usize) -> i32 {
    let mut keep: Vec<i32> = s
        .opened
        .fds
        .iter()
        .chain(s.opened.held.iter().flatten())
        .chain(s.opened.shm.values())
        .map(|fd| fd.as_raw_fd())
        .collect();
    keep.push(s.report.as_raw_fd());
    keep.push(s.gate.as_raw_fd());
    keep.sort_unstable();
    let mut from: u32 = 0;
    for k in &keep {
        let k = *k as u32;
        if k > from && fdtable::close_range(from, k - 1).is_err() {
            return 2;
        }
        from = k + 1;
    }
    if fdtable::close_range(from, u32::MAX).is_err() {
        return 2;
    }
    member_main(s, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_parse_and_garbage_is_refused() {
        assert_eq!(
            parse_line("NEW 42 1234"),
            Some(Line::New {
                pid: 42,
                host: 1234
            })
        );
        assert_eq!(
            parse_line("OK 42 100 101"),
            Some(Line::Ok {
                pid: 42,
                aux: vec![100, 101]
            })
        );
        assert_eq!(
            parse_line("OK 42"),
            Some(Line::Ok {
                pid: 42,
                aux: vec![]
            })
        );
        assert_eq!(
            parse_line("ERR 7 opening /x: No such file"),
            Some(Line::Err {
                pid: 7,
                msg: "opening /x: No such file".into()
            })
        );
        assert_eq!(parse_line("OK x"), None);
        assert_eq!(parse_line("OK 1 2 x"), None);
        assert_eq!(parse_line("HELLO 1"), None);
    }

    #[test]
    fn groups_are_joined_only_when_not_inherited() {
        let ns: BTreeMap<u32, i32> = [(10, 1), (11, 2), (12, 3)].into_iter().collect();
        // Inherited from the parent: nothing to do.
        assert_eq!(group_to_join(12, 10, Some(10), 5, &ns).unwrap(), None);
        // Another member's group: joined, numbered in the tree's namespace.
        assert_eq!(group_to_join(12, 11, Some(10), 5, &ns).unwrap(), Some(2));
        // crcli's (the root's inherited) group.
        assert_eq!(group_to_join(12, 5, None, 5, &ns).unwrap(), None);
        // A group led by a process outside the tree.
        let err = group_to_join(12, 99, Some(10), 5, &ns).unwrap_err();
        assert!(err.to_string().contains("process group 99"), "{err}");
    }
}
