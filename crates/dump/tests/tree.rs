//! The dump of process trees against real trees: a small C program (tests/progs/tree.c,
//! compiled by build.rs) forks a known tree — a child leading its own process group with a
//! grandchild, a child in the root's group, a zombie, one open file description inherited by
//! every member, a pipe between two members with data in flight — and every live member counts.
//! The tests dump it and check the image, that every member keeps running (or was killed), and
//! that a refused dump leaves the whole tree running untouched. The PID, UTS, IPC and network
//! namespace cases run the tree under unshare(1).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crcli_dump::{dump, DumpOptions};
use crcli_image::{FileKind, Image, PipeEnd, VmaBacking};

fn tree_binary() -> &'static Path {
    Path::new(env!("CRCLI_DUMP_TREE"))
}

/// A running tree; every member is killed when dropped.
struct Tree {
    child: Child,
    /// The pids the root printed, as crcli sees them: R A B G Z (family) or R C (outgroup).
    pids: Vec<i32>,
    dir: tempfile::TempDir,
}

const LEAVE_RUNNING: DumpOptions = DumpOptions {
    leave_running: true,
};

impl Tree {
    fn spawn(mode: &str) -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(tree_binary())
            .arg(dir.path())
            .arg(mode)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn tree");
        let pids = read_ready(&mut child);
        assert_eq!(pids[0], child.id() as i32);
        Tree { child, pids, dir }
    }

    /// The tree (MODE) under `unshare ARGS --fork`: its root is PID 1 of a new PID namespace
    /// (when ARGS has --pid); `pre` runs in sh (busybox's in the VM) first. The pids are
    /// translated to crcli's view.
    fn spawn_unshared(args: &[&str], pre: &str, mode: &str) -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = format!(
            "set -e; {pre}; exec {} {} {mode}",
            tree_binary().display(),
            dir.path().display()
        );
        let mut child = Command::new("unshare")
            .args(args)
            .args(["--fork", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let inner = read_ready(&mut child);
        // unshare --fork: the root is unshare's only child.
        let root: i32 =
            std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
                .expect("children of unshare")
                .trim()
                .parse()
                .expect("one child");
        let mut pids = vec![root];
        // The other members by their pid in the namespace (NSpid's last).
        for want in &inner[1..] {
            pids.push(host_pid_of(root, *want));
        }
        Tree { child, pids, dir }
    }

    fn count_lines(&self, name: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join(format!("count-{name}")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Waits until each named member appended more lines: it runs.
    fn assert_counting(&self, names: &[&str]) {
        for name in names {
            let before = self.count_lines(name);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.count_lines(name) < before + 3 {
                assert!(
                    Instant::now() < deadline,
                    "member {name} stopped counting at {before}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn image_dir(&self) -> PathBuf {
        self.dir.path().join("img")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for &pid in self.pids.iter().rev() {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_ready(child: &mut Child) -> Vec<i32> {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready line");
    let rest = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("tree said {line:?}"));
    rest.split_whitespace()
        .map(|w| w.parse().expect("pid"))
        .collect()
}

fn status_field(pid: i32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in the status of pid {pid}"))
}

/// The pid, in crcli's namespace, of the descendant of `root` whose innermost pid is `inner`.
fn host_pid_of(root: i32, inner: i32) -> i32 {
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let nspid = status_field(pid, "NSpid");
        if nspid.split_whitespace().last() == Some(&inner.to_string()) {
            return pid;
        }
        for tid in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
            let tid = tid.expect("task").file_name();
            let children = std::fs::read_to_string(format!(
                "/proc/{pid}/task/{}/children",
                tid.to_string_lossy()
            ))
            .unwrap_or_default();
            queue.extend(
                children
                    .split_whitespace()
                    .map(|w| w.parse::<i32>().unwrap()),
            );
        }
    }
    panic!("no descendant of {root} has pid {inner} in its namespace")
}

fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn untraced(pids: &[i32]) {
    for &pid in pids {
        assert_eq!(
            status_field(pid, "TracerPid"),
            "0",
            "pid {pid} is still traced"
        );
    }
}

/// Checks the image of a family tree whose members are `pids` = R A B G Z.
fn check_family_image(image: &Image, pids: &[i32]) {
    let [r, a, b, g, z] = [0, 1, 2, 3, 4].map(|i| pids[i] as u32);
    let order: Vec<u32> = image.processes().iter().map(|p| p.pid).collect();
    // Parents before children: R, then its children by pid, then A's.
    assert_eq!(order, vec![r, a, b, g], "{order:?}");
    assert_eq!(image.inventory().root_pid, r);
    let p = |pid| image.process(pid).unwrap();
    assert_eq!(p(r).ppid, 0);
    assert_eq!((p(a).ppid, p(b).ppid, p(g).ppid), (r, r, a));
    // A leads its own group, G is in it; B is in R's group, which is the test's.
    assert_eq!((p(a).pgid, p(g).pgid), (a, a));
    assert_eq!(p(b).pgid, p(r).pgid);
    assert_ne!(p(r).pgid, r);
    for m in [a, b, g] {
        assert_eq!(p(m).sid, p(r).sid);
    }
    // What each member told about itself through the injected code.
    for m in image.processes() {
        assert_eq!(m.dumpable, 1, "pid {}", m.pid);
        assert!(!m.child_subreaper, "pid {}", m.pid);
        let th = &m.threads[0];
        assert_ne!(
            th.clear_child_tid, 0,
            "pid {}: glibc sets clear_child_tid",
            m.pid
        );
        assert_eq!(
            th.sigaltstack.flags,
            libc::SS_DISABLE as u32,
            "pid {}",
            m.pid
        );
        assert!(m.mm.brk >= m.mm.start_brk, "pid {}", m.pid);
        if let Some(heap) = m.vmas.iter().find(|v| v.backing == VmaBacking::Heap) {
            assert_eq!(
                heap.end,
                m.mm.brk.next_multiple_of(4096),
                "pid {}: brk",
                m.pid
            );
        }
        let handled = m.sigactions.iter().filter(|a| a.handler > 1).count();
        assert_eq!(handled, 0, "pid {}: no handlers", m.pid);
        assert_eq!(m.sigactions.len(), 64);
    }
    // The zombie.
    let zombies = &image.inventory().tree.zombies;
    assert_eq!(zombies.len(), 1, "{zombies:?}");
    assert_eq!(zombies[0].pid, z);
    assert_eq!(zombies[0].ppid, r);
    assert_eq!(zombies[0].exit_status, 7 << 8);
    assert_eq!(zombies[0].exit_signal, libc::SIGCHLD as u32);
    assert_eq!(zombies[0].pgid, p(r).pgid);
    // fd 3: one open file description, shared by all four, at offset 3.
    let fd = |pid, n| p(pid).fds.iter().find(|f| f.fd == n).map(|f| f.file);
    let shared = fd(r, 3).expect("R has fd 3");
    for m in [a, b, g] {
        assert_eq!(fd(m, 3), Some(shared), "fd 3 of pid {m}");
    }
    let entry = image.file(shared).unwrap();
    assert_eq!(entry.pos, 3);
    assert!(matches!(entry.kind, FileKind::Regular(_)), "{entry:?}");
    // The pipe: R's read end, A's and G's write end, one pipe, "from-A" buffered once.
    let pipe_of = |id| match image.file(id).unwrap().kind {
        FileKind::Pipe { pipe, end } => (pipe, end),
        ref k => panic!("not a pipe: {k:?}"),
    };
    let (rp, rend) = pipe_of(fd(r, 4).expect("R has fd 4"));
    let (ap, aend) = pipe_of(fd(a, 5).expect("A has fd 5"));
    assert_eq!(rp, ap);
    assert_eq!((rend, aend), (PipeEnd::Read, PipeEnd::Write));
    assert_eq!(fd(g, 5), fd(a, 5), "G inherited A's write end");
    assert_eq!(fd(b, 4), None);
    assert_eq!(image.pipe(rp).unwrap().buffered, b"from-A");
    // The FIFO: R's fd 6 and B's fd 7 are two open file descriptions of one FIFO: two entries,
    // one pipe, "fifo-data" buffered once.
    let fifo_of = |id| match image.file(id).unwrap().kind {
        FileKind::Fifo { pipe, .. } => pipe,
        ref k => panic!("not a FIFO: {k:?}"),
    };
    let (r6, b7) = (fd(r, 6).expect("R has fd 6"), fd(b, 7).expect("B has fd 7"));
    assert_ne!(r6, b7, "two opens are two descriptions");
    assert_eq!(fifo_of(r6), fifo_of(b7));
    assert_eq!(image.pipe(fifo_of(r6)).unwrap().buffered, b"fifo-data");
    assert_eq!(fd(a, 6), Some(r6), "A inherited R's FIFO description");
    // Not in a namespace of its own.
    let ns = &image.inventory().tree.namespaces;
    assert!(!ns.own_pid_ns);
    assert!(ns.uts.is_none());
    for m in image.processes() {
        assert_eq!(m.ns_pid, m.pid);
    }
}

#[test]
fn a_tree_is_dumped_with_its_links_and_every_member_runs_on() {
    let t = Tree::spawn("family");
    let summary = dump(t.pids[0], &t.image_dir(), &LEAVE_RUNNING).expect("dump");
    assert_eq!((summary.processes, summary.zombies), (4, 1));
    t.assert_counting(&["R", "A", "B", "G"]);
    untraced(&t.pids[..4]);
    assert_eq!(state(t.pids[4]), Some('Z'), "Z is still a zombie");
    let image = Image::open(t.image_dir()).expect("open image");
    check_family_image(&image, &t.pids);
}

#[test]
fn a_default_dump_kills_every_member() {
    let mut t = Tree::spawn("family");
    dump(t.pids[0], &t.image_dir(), &DumpOptions::default()).expect("dump");
    Image::open(t.image_dir()).expect("open image");
    let _ = t.child.wait();
    for &pid in &t.pids[1..4] {
        let deadline = Instant::now() + Duration::from_secs(10);
        // Killed: gone, or a zombie until its new parent reaps it.
        while !matches!(state(pid), None | Some('Z')) {
            assert!(Instant::now() < deadline, "pid {pid} is still alive");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let before = t.count_lines("A");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(t.count_lines("A"), before, "A still counts");
}

#[test]
fn a_refused_member_leaves_the_whole_tree_running_untouched() {
    let t = Tree::spawn("socket");
    let g = t.pids[3];
    assert_refused_socket_leaves_tree_untouched(&t, g);
}

/// The root is refused (a socket) while the tracing thread goes on with the later members
/// (injecting into them): every member runs on untouched all the same, and the error is the
/// root's, the first in member order.
#[test]
fn a_refused_root_leaves_the_members_traced_meanwhile_untouched() {
    let t = Tree::spawn("rootsocket");
    let r = t.pids[0];
    assert_refused_socket_leaves_tree_untouched(&t, r);
}

/// Dumps family-shaped tree `t` from its root, which must be refused for member `refused`'s
/// socket (fd 9), and checks the refusal left no image and the whole tree running untouched:
/// every live member counting, untraced, with the memory map it had; the zombie still one.
fn assert_refused_socket_leaves_tree_untouched(t: &Tree, refused: i32) {
    let maps: Vec<String> = t.pids[..4]
        .iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/maps")).unwrap())
        .collect();
    let err = dump(t.pids[0], &t.image_dir(), &DumpOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pid {refused} fd 9: socket is not supported")
    );
    assert!(!t.image_dir().exists(), "a failed dump left an image");
    t.assert_counting(&["R", "A", "B", "G"]);
    untraced(&t.pids[..4]);
    for (p, m) in t.pids[..4].iter().zip(&maps) {
        assert_eq!(
            &std::fs::read_to_string(format!("/proc/{p}/maps")).unwrap(),
            m,
            "the memory of pid {p} changed"
        );
    }
    assert_eq!(state(t.pids[4]), Some('Z'));
}

#[test]
fn a_process_group_led_from_outside_the_tree_is_refused() {
    let t = Tree::spawn("outgroup");
    let c = t.pids[1];
    let err = dump(t.pids[0], &t.image_dir(), &DumpOptions::default()).unwrap_err();
    let pgid = status_field(c, "NSpgid");
    assert_eq!(
        err.to_string(),
        format!(
            "pid {c}: a process group ({pgid}) whose leader is outside the tree is not supported"
        )
    );
    t.assert_counting(&["R", "C"]);
    untraced(&t.pids);
    assert!(!t.image_dir().exists());
}

#[test]
fn a_root_that_is_pid_1_of_its_own_pid_namespace_keeps_its_namespace_pids_and_names() {
    let t = Tree::spawn_unshared(
        &["--pid", "--uts"],
        "echo crcli-tree >/proc/sys/kernel/hostname; \
         echo crcli-domain >/proc/sys/kernel/domainname",
        "family",
    );
    dump(t.pids[0], &t.image_dir(), &LEAVE_RUNNING).expect("dump");
    t.assert_counting(&["R", "A", "B", "G"]);
    let image = Image::open(t.image_dir()).expect("open image");
    let ns = &image.inventory().tree.namespaces;
    assert!(ns.own_pid_ns);
    let uts = ns.uts.as_ref().expect("UTS names");
    assert_eq!(uts.hostname.as_bytes(), b"crcli-tree");
    assert_eq!(uts.domainname.as_bytes(), b"crcli-domain");
    let root = image.process(t.pids[0] as u32).unwrap();
    assert_eq!(root.ns_pid, 1);
    for p in image.processes() {
        let nspid = status_field(p.pid as i32, "NSpid");
        assert_eq!(
            nspid.split_whitespace().last(),
            Some(&*p.ns_pid.to_string())
        );
    }
    let z = &image.inventory().tree.zombies[0];
    assert_eq!(z.pid, t.pids[4] as u32);
    assert_ne!(z.ns_pid, z.pid);
    for kind in ["pid", "uts"] {
        let id = ns
            .ids
            .iter()
            .find(|i| i.kind.proc_name() == kind)
            .expect("namespace id");
        assert!(!id.dumpers, "{kind} namespace marked as crcli's");
    }
    assert!(ns
        .ids
        .iter()
        .any(|i| i.kind.proc_name() == "net" && i.dumpers));
}

/// A default dump (the tree killed after it) of a tree whose root is PID 1 of its own PID
/// namespace and, like A, runs two more threads: every thread of every member is killed and
/// reaped, and the dump returns. Reaping in a fixed order could block forever here: the last
/// thread of the namespace's init waits in the kernel until crcli has reaped every other task
/// of the namespace, its sibling threads too. The race is lost often but not always, so the
/// whole round runs five times; a dump that hangs fails the test after two minutes.
#[test]
fn a_default_dump_of_a_pid_1_root_with_threads_reaps_every_thread_and_returns() {
    for round in 0..5 {
        let mut t = Tree::spawn_unshared(&["--pid"], "true", "threads");
        let (root, img) = (t.pids[0], t.image_dir());
        let threads_of = |pid: i32| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        assert_eq!(threads_of(root), 3, "round {round}: R runs three threads");
        assert_eq!(
            threads_of(t.pids[1]),
            3,
            "round {round}: A runs three threads"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(dump(root, &img, &DumpOptions::default()).map(|s| s.processes));
        });
        let processes = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(done) => done.expect("dump"),
            Err(_) => {
                // The dump thread still traces the tree: dropping `t` would wait for it too.
                std::mem::forget(t);
                panic!(
                    "round {round}: the dump did not return within two minutes (killing the tree)"
                );
            }
        };
        assert_eq!(processes, 4, "round {round}");
        let image = Image::open(t.image_dir()).expect("open image");
        for (pid, ns_pid) in [(root, 1), (t.pids[1], 2)] {
            let p = image.process(pid as u32).expect("member in the image");
            assert_eq!(p.ns_pid, ns_pid, "round {round}");
            let mut ns_tids: Vec<u32> = p.threads.iter().map(|th| th.ns_tid).collect();
            assert_eq!(ns_tids[0], ns_pid, "round {round}: the main thread first");
            ns_tids.sort_unstable();
            ns_tids.dedup();
            assert_eq!(
                ns_tids.len(),
                3,
                "round {round}: three threads of pid {pid}"
            );
        }
        // unshare(1) ends when its child, the namespace's init, is gone.
        let deadline = Instant::now() + Duration::from_secs(60);
        while t.child.try_wait().expect("wait for unshare").is_none() {
            assert!(
                Instant::now() < deadline,
                "round {round}: unshare still waits"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for &pid in &t.pids {
            assert_eq!(state(pid), None, "round {round}: pid {pid} is left");
        }
    }
}

#[test]
fn an_ipc_namespace_with_system_v_objects_is_refused() {
    let t = Tree::spawn_unshared(&["--ipc"], "true", "sysv");
    let err = dump(t.pids[0], &t.image_dir(), &DumpOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("pid {}: an IPC namespace (ipc:[", t.pids[0]))
            && msg.contains("holding System V objects (1 shared memory segments, 0 message queues, 0 semaphore sets)"),
        "{msg}"
    );
    t.assert_counting(&["R", "A", "B", "G"]);
    untraced(&t.pids[..4]);
    // An empty IPC namespace of its own is fine.
    let t = Tree::spawn_unshared(&["--ipc"], "true", "family");
    dump(t.pids[0], &t.image_dir(), &LEAVE_RUNNING).expect("dump");
    let image = Image::open(t.image_dir()).expect("open image");
    let ipc = image
        .inventory()
        .tree
        .namespaces
        .ids
        .iter()
        .find(|i| i.kind.proc_name() == "ipc")
        .copied()
        .expect("ipc id");
    assert!(!ipc.dumpers);
}

#[test]
fn a_network_namespace_of_its_own_is_refused() {
    let t = Tree::spawn_unshared(&["--net"], "true", "family");
    let err = dump(t.pids[0], &t.image_dir(), &DumpOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "pid {}: a network namespace other than crcli's (net:[",
            t.pids[0]
        )),
        "{msg}"
    );
    t.assert_counting(&["R", "A", "B", "G"]);
    untraced(&t.pids[..4]);
}
