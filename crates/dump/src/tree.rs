//! Process trees: walking the tree from its root, freezing every member, and the tree-wide facts
//! (zombies, sessions and process groups, namespaces).
//!
//! The freeze is a layer over the per-process freeze of `crate::freeze`: members are frozen top
//! down (a frozen process cannot fork, so once a parent is frozen its children list only
//! shrinks, by a child's death, which turns it into a zombie its frozen parent cannot reap), and
//! the walk is repeated until a pass finds exactly the members of the previous one. Zombies are
//! not frozen (they cannot run). [`FrozenTree`] resumes every member when dropped, so any error
//! leaves the whole tree running untouched.
//!
//! Refused, naming the process and what it has: a member whose session or process group is led
//! from outside the tree (except the root's own, inherited from the shell that started it); a
//! member in another namespace than the root; a root in a user, network, cgroup or time
//! namespace other than crcli's; a root in a PID namespace other than crcli's of which it is not
//! PID 1; an IPC namespace of its own holding System V objects.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::AsFd;

use crcli_image::{NamespaceId, NamespaceKind, Namespaces, OsBytes, Tree, UtsNames, Zombie};

use crate::error::DumpError;
use crate::freeze::{self, Frozen};
use crate::procfs::{Proc, Stat};

/// How many walks may find a changed tree before the dump gives up.
const MAX_WALKS: usize = 16;

/// The kinds of namespace crcli looks at, with their `/proc/PID/ns/` names.
const KINDS: [NamespaceKind; 8] = [
    NamespaceKind::Pid,
    NamespaceKind::Mnt,
    NamespaceKind::Net,
    NamespaceKind::Uts,
    NamespaceKind::Ipc,
    NamespaceKind::User,
    NamespaceKind::Cgroup,
    NamespaceKind::Time,
];

/// A live member of the tree, frozen.
pub(crate) struct Member {
    pub proc: Proc,
    pub frozen: Frozen,
}

/// A frozen tree: its live members, parents before children (the root first), and its zombies.
/// Dropping it resumes every live member.
pub(crate) struct FrozenTree {
    pub members: Vec<Member>,
    pub zombies: Vec<Proc>,
}

impl FrozenTree {
    /// The root.
    pub fn root(&self) -> &Proc {
        &self.members[0].proc
    }

    /// Resumes every member (detaches); the first error is returned after trying them all.
    pub fn resume(self) -> Result<(), (i32, crcli_sys::ptrace::PtraceError)> {
        let mut first = None;
        for m in self.members {
            let pid = m.proc.pid;
            if let Err(e) = m.frozen.resume() {
                first.get_or_insert((pid, e));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Kills every member (SIGKILL) and waits until every thread of each is gone and reaped;
    /// the error names the root. Zombies are left to the reaper their parent's death gives
    /// them.
    pub fn kill(self) -> Result<(), (i32, crcli_sys::ptrace::PtraceError)> {
        let root = self.members[0].proc.pid;
        let mut first = None;
        // SIGKILL to every member first, so they die together.
        for m in &self.members {
            let pid = m.proc.pid;
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                if let Err(source) = rustix::process::kill_process(p, rustix::process::Signal::KILL)
                {
                    first.get_or_insert((
                        pid,
                        crcli_sys::ptrace::PtraceError::Request {
                            op: "kill (SIGKILL)",
                            pid,
                            source,
                        },
                    ));
                }
            }
        }
        // Then every thread of every member (crcli traces them all) is reaped in the order the
        // kernel reports them: a leader's exit comes after its other threads', and the last
        // thread of a PID namespace's init waits until crcli has reaped every other task of
        // the namespace, its sibling threads included, so no fixed order is safe.
        let tids: Vec<i32> = self
            .members
            .into_iter()
            .flat_map(|m| m.frozen.into_tids())
            .collect();
        if let Err(e) = crcli_sys::ptrace::reap_all(&tids, crcli_sys::ptrace::KILL_PATIENCE) {
            first.get_or_insert((root, e));
        }
        first.map_or(Ok(()), Err)
    }
}

fn is_zombie(stat: &Stat) -> bool {
    stat.state == 'Z' || stat.state == 'X'
}

/// Walks the tree from `root` and freezes every live member (see the module documentation).
// The walk may `continue` between the lookup and the insert: no entry API.
#[allow(clippy::map_entry)]
pub(crate) fn freeze(root: &Proc) -> Result<FrozenTree, DumpError> {
    let root_pid = root.pid;
    let mut frozen: HashMap<i32, Frozen> = HashMap::new();
    let mut previous: Option<(Vec<i32>, Vec<i32>)> = None;
    for _ in 0..MAX_WALKS {
        let mut order = Vec::new();
        let mut zombies = Vec::new();
        let mut queue = VecDeque::from([root_pid]);
        let mut visited = HashSet::new();
        while let Some(pid) = queue.pop_front() {
            if !visited.insert(pid) {
                continue;
            }
            let proc = Proc::new(pid);
            if !frozen.contains_key(&pid) {
                let stat = match proc.stat() {
                    Ok(s) => s,
                    // A child that died and was reaped meanwhile (its parent was not frozen
                    // yet, or reaps automatically): no longer a member.
                    Err(_) if pid != root_pid => continue,
                    Err(e) => return Err(e),
                };
                if is_zombie(&stat) {
                    if pid == root_pid {
                        return Err(DumpError::BadTarget {
                            pid,
                            reason: "the process is a zombie".to_owned(),
                        });
                    }
                    zombies.push(pid);
                    continue;
                }
                freeze::check_target(&proc)?;
                match Frozen::freeze(&proc) {
                    Ok(f) => {
                        frozen.insert(pid, f);
                    }
                    Err(e) if pid != root_pid => {
                        // It may have exited between the stat and the seize.
                        match proc.stat() {
                            Ok(s) if is_zombie(&s) => {
                                zombies.push(pid);
                                continue;
                            }
                            Err(_) => continue,
                            Ok(_) => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            order.push(pid);
            let mut children = proc.children()?;
            children.sort_unstable();
            queue.extend(children);
        }
        // A frozen process cannot leave the tree (only SIGKILL ends it, and its parent,
        // frozen, cannot reap it); one that did was killed from outside.
        if let Some(gone) = frozen.keys().find(|p| !order.contains(p)) {
            return Err(DumpError::BadTarget {
                pid: *gone,
                reason: "left the tree while it was being frozen".to_owned(),
            });
        }
        zombies.sort_unstable();
        let walk = (order, zombies);
        if previous.as_ref() == Some(&walk) {
            let (order, zombies) = walk;
            let members = order
                .into_iter()
                .map(|pid| Member {
                    proc: Proc::new(pid),
                    frozen: frozen
                        .remove(&pid)
                        .expect("every member of the walk is frozen"),
                })
                .collect();
            return Ok(FrozenTree {
                members,
                zombies: zombies.into_iter().map(Proc::new).collect(),
            });
        }
        previous = Some(walk);
    }
    Err(DumpError::Unsupported {
        pid: root_pid,
        what: format!("a tree that kept changing over {MAX_WALKS} walks while it was frozen"),
    })
}

/// The identity of namespace `kind` of `pid` (`None` for `self` means crcli's own); `None`
/// when the kernel has no such namespace.
fn ns_id(pid: Option<i32>, name: &str) -> Option<(u64, u64)> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/ns/{name}"),
        None => format!("/proc/self/ns/{name}"),
    };
    std::fs::metadata(path).ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    })
}

/// What the dump records about the tree as a whole, and how pids map into the tree's PID
/// namespace.
pub(crate) struct Facts {
    /// The image's tree record.
    pub tree: Tree,
    /// Each live member's pid in the tree's PID namespace.
    pub ns_pids: HashMap<i32, u32>,
}

/// Checks sessions, process groups and namespaces of the frozen tree, its live `members` (the
/// root first) and its zombies, `zombie_procs` (refusing what crcli does not support, naming the process and
/// what it has), and collects the zombies.
pub(crate) fn facts(members: &[Proc], zombie_procs: &[Proc]) -> Result<Facts, DumpError> {
    let root = members[0].pid;
    let root_stat = members[0].stat()?;
    let root_status = members[0].status()?;
    let mut all: HashSet<u32> = members.iter().map(|m| m.pid as u32).collect();
    all.extend(zombie_procs.iter().map(|z| z.pid as u32));

    // Namespaces: the root's against crcli's, every member's against the root's.
    let mut ids = Vec::new();
    let mut root_ns = HashMap::new();
    for kind in KINDS {
        let name = kind.proc_name();
        let Some(id) = ns_id(Some(root), name) else {
            continue;
        };
        root_ns.insert(kind, id);
        ids.push(NamespaceId {
            kind,
            dev: id.0,
            ino: id.1,
            dumpers: ns_id(None, name) == Some(id),
        });
    }
    let own = |kind| {
        ids.iter()
            .any(|i: &NamespaceId| i.kind == kind && !i.dumpers)
    };
    for (kind, what) in [
        (NamespaceKind::User, "a user namespace other than crcli's"),
        (NamespaceKind::Net, "a network namespace other than crcli's"),
        (
            NamespaceKind::Cgroup,
            "a cgroup namespace other than crcli's",
        ),
        (NamespaceKind::Time, "a time namespace other than crcli's"),
    ] {
        if own(kind) {
            let ino = root_ns[&kind].1;
            return Err(DumpError::Unsupported {
                pid: root,
                what: format!("{what} ({}:[{ino}])", kind.proc_name()),
            });
        }
    }
    for m in &members[1..] {
        let pid = m.pid;
        for kind in KINDS {
            let name = kind.proc_name();
            let id = ns_id(Some(pid), name);
            if id != root_ns.get(&kind).copied() {
                return Err(DumpError::Unsupported {
                    pid,
                    what: format!(
                        "a {name} namespace ({name}:[{}]) other than the root's (pid {root})",
                        id.map_or(0, |i| i.1)
                    ),
                });
            }
        }
    }
    for m in members {
        let pid = m.pid;
        if ns_id(Some(pid), "pid_for_children") != ns_id(Some(pid), "pid") {
            return Err(DumpError::Unsupported {
                pid,
                what: "a new PID namespace for its children (unshare(CLONE_NEWPID))".to_owned(),
            });
        }
    }

    // PID namespace: crcli's, or one of which the root is PID 1.
    let own_pid_ns = own(NamespaceKind::Pid);
    let depth = root_status.nspid.len();
    if own_pid_ns && (root_status.nspid.last() != Some(&1) || depth < 2) {
        return Err(DumpError::Unsupported {
            pid: root,
            what: format!(
                "a process in a PID namespace (pid:[{}]) of which it is not PID 1 (NSpid {:?})",
                root_ns[&NamespaceKind::Pid].1,
                root_status.nspid
            ),
        });
    }
    let ns_pid_of = |proc: &Proc, nspid: &[u32]| -> Result<u32, DumpError> {
        if !own_pid_ns {
            return Ok(proc.pid as u32);
        }
        if nspid.len() != depth {
            return Err(DumpError::Unsupported {
                pid: proc.pid,
                what: format!(
                    "a process in another PID namespace than the root's (NSpid {nspid:?})"
                ),
            });
        }
        Ok(*nspid.last().expect("depth >= 2"))
    };
    let mut ns_pids = HashMap::new();
    for m in members {
        let status = m.status()?;
        ns_pids.insert(m.pid, ns_pid_of(m, &status.nspid)?);
    }

    // Sessions and process groups: led by a member, or the root's own.
    let check_links = |pid: i32, stat: &Stat| -> Result<(), DumpError> {
        for (what, id, root_id) in [
            ("session", stat.session, root_stat.session),
            ("process group", stat.pgrp, root_stat.pgrp),
        ] {
            if !all.contains(&id) && id != root_id {
                return Err(DumpError::Unsupported {
                    pid,
                    what: format!("a {what} ({id}) whose leader is outside the tree"),
                });
            }
        }
        Ok(())
    };
    for m in members {
        check_links(m.pid, &m.stat()?)?;
    }

    let mut zombies = Vec::new();
    for z in zombie_procs {
        let pid = z.pid;
        let stat = z.stat()?;
        let status = z.status()?;
        check_links(pid, &stat)?;
        if status.threads > 1 {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "a process whose main thread exited while {} other threads run",
                    status.threads - 1
                ),
            });
        }
        zombies.push(Zombie {
            pid: pid as u32,
            ns_pid: ns_pid_of(z, &status.nspid)?,
            ppid: stat.ppid,
            pgid: stat.pgrp,
            sid: stat.session,
            comm: os_bytes(&z.comm()?)?,
            exit_status: stat.exit_code,
            exit_signal: stat.exit_signal,
        });
    }

    let uts = if own(NamespaceKind::Uts) {
        let (host, domain) = in_namespace(root, NamespaceKind::Uts, || {
            let u = rustix::system::uname();
            Ok((
                u.nodename().to_bytes().to_vec(),
                u.domainname().to_bytes().to_vec(),
            ))
        })?;
        Some(UtsNames {
            hostname: os_bytes(&host)?,
            domainname: os_bytes(&domain)?,
        })
    } else {
        None
    };
    if own(NamespaceKind::Ipc) {
        let counts = in_namespace(root, NamespaceKind::Ipc, || {
            let mut counts = Vec::new();
            for name in ["shm", "msg", "sem"] {
                let path = format!("/proc/sysvipc/{name}");
                let text = std::fs::read_to_string(&path).map_err(DumpError::io(format!(
                    "read {path} in the IPC namespace of pid {root}"
                )))?;
                // A header line, then one line per object.
                counts.push(
                    text.lines()
                        .skip(1)
                        .filter(|l| !l.trim().is_empty())
                        .count(),
                );
            }
            Ok(counts)
        })?;
        if counts.iter().any(|&n| n > 0) {
            return Err(DumpError::Unsupported {
                pid: root,
                what: format!(
                    "an IPC namespace (ipc:[{}]) holding System V objects ({} shared memory \
                     segments, {} message queues, {} semaphore sets)",
                    root_ns[&NamespaceKind::Ipc].1,
                    counts[0],
                    counts[1],
                    counts[2]
                ),
            });
        }
    }

    Ok(Facts {
        tree: Tree {
            namespaces: Namespaces {
                own_pid_ns,
                uts,
                ids,
            },
            zombies,
            mount_ns: None,
        },
        ns_pids,
    })
}

fn os_bytes(b: &[u8]) -> Result<OsBytes, DumpError> {
    OsBytes::new(b.to_vec()).map_err(|e| DumpError::Parse {
        what: "a name".to_owned(),
        detail: e.to_string(),
    })
}

/// Runs `f` in a new thread of crcli that joined namespace `kind` of `pid` first (setns moves
/// only the calling thread into a UTS or IPC namespace, so crcli's other threads stay put).
fn in_namespace<T: Send>(
    pid: i32,
    kind: NamespaceKind,
    f: impl FnOnce() -> Result<T, DumpError> + Send,
) -> Result<T, DumpError> {
    let name = kind.proc_name();
    let path = format!("/proc/{pid}/ns/{name}");
    let ns = std::fs::File::open(&path).map_err(DumpError::io(format!("open {path}")))?;
    let ty = match kind {
        NamespaceKind::Uts => rustix::thread::LinkNameSpaceType::HostNameAndNISDomainName,
        NamespaceKind::Ipc => rustix::thread::LinkNameSpaceType::InterProcessCommunication,
        _ => unreachable!("only UTS and IPC namespaces are joined"),
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::move_into_link_name_space(ns.as_fd(), Some(ty))
                .map_err(DumpError::sys(format!("setns into {path}")))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(DumpError::BadTarget {
                pid,
                reason: format!("reading its {name} namespace failed"),
            })
        })
    })
}
