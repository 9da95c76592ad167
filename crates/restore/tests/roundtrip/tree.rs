//! Tree restores with namespaces and zombies, on real processes: a program (`progs/nscheck.c`)
//! is dumped by `crcli dump`, its image gets a tree added (a zombie child, a PID namespace of
//! its own, a UTS namespace with other names, an IPC namespace of its own), and `crcli restore` must bring back exactly
//! that: the program checks its pid and parent pid as it sees them, its host and domain name,
//! and reaps the zombie with the recorded status from the recorded process group.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crcli_image::{NamespaceId, NamespaceKind, Namespaces, UtsNames, Zombie};

use super::{dump, finish, restore_bg, start, with_tools, KillOnDrop, Tools, PATIENCE};
use crate::common::{
    ensure, ensure_eq, free_pid, list_dir, no_children_left, process_table, rewrite_image_with,
};

/// Field `n` (1-based, as in proc(5)) of this test process's `/proc/self/stat` (the process
/// group is 5, the session 6; they may be 0 in the VM, which rustix's getters refuse).
fn own_stat_field(n: usize) -> Result<i64, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    let rest = stat.rsplit_once(')').ok_or("bad /proc/self/stat")?.1;
    rest.split_whitespace()
        .nth(n - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("no field {n} in /proc/self/stat"))
}

/// The one process of a single-process image.
fn the_process(img: &Path) -> Result<crcli_image::Process, String> {
    let image = crcli_image::Image::open(img).map_err(|e| crate::common::error_chain(&e))?;
    let p = image.processes().first().ok_or("no process in the image")?;
    Ok(p.clone())
}

fn os(s: &str) -> crcli_image::OsBytes {
    crcli_image::OsBytes::new(s.as_bytes().to_vec()).expect("a short name")
}

fn zombie(pid: u32, ns_pid: u32, parent: &crcli_image::Process, status: u32) -> Zombie {
    Zombie {
        pid,
        ns_pid,
        ppid: parent.pid,
        // Its own process group, in its parent's session.
        pgid: pid,
        sid: parent.sid,
        comm: os("zombie"),
        exit_status: status,
        exit_signal: libc::SIGCHLD as u32,
    }
}

/// A program of `progs/` started in `<work>/w` and dumped by `crcli dump` into `<work>/img`
/// (the dump killed it; it is reaped).
struct Dumped {
    /// The program's directory, `<work>/w`.
    dir: PathBuf,
    /// The image, `<work>/img`.
    img: PathBuf,
    /// The dumped program's pid.
    pid: i32,
}

/// Starts `prog` in scratch directory `work` and dumps it (see [`Dumped`]); the program is
/// killed and reaped if the dump fails.
fn start_and_dump(t: &Tools, prog: &str, work: &Path) -> Result<Dumped, String> {
    let dir = work.join("w");
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    let (child, pid) = start(t, prog, &dir, &[])?;
    let mut child = KillOnDrop(Some(child));
    let img = work.join("img");
    dump(t, pid, &img)?;
    child.wait()?;
    Ok(Dumped { dir, img, pid })
}

/// Restores `img` (the program in `dir` checks itself) and checks that the root kept its
/// dumped pid `pid`.
fn restore_keeping_root_pid(t: &Tools, img: &Path, dir: &Path, pid: i32) -> Result<(), String> {
    let restorer = restore_bg(t, img, dir)?;
    let result = finish(restorer, dir)?;
    ensure(
        result.contains(&format!("root {pid} ")),
        &format!("the root kept its pid: {result}"),
    )
}

/// `crcli restore -D img`, which must fail: its stderr.
fn restore_must_fail(t: &Tools, img: &Path) -> Result<String, String> {
    let out = Command::new(&t.crcli)
        .args(["restore", "-D"])
        .arg(img)
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure(!out.status.success(), "crcli restore must fail")?;
    Ok(stderr)
}

/// Two pids free now (for copies of a dumped process).
fn two_free_pids() -> Result<(i32, i32), String> {
    let b = free_pid()?;
    let c = (b + 1..b + 1000)
        .find(|n| !Path::new(&format!("/proc/{n}")).exists())
        .ok_or("no second free pid")?;
    Ok((b, c))
}

/// Gives process `p` the extended CPU state of "another CPU" (a layout this one refuses).
fn foreign_xstate(p: &mut crcli_image::Process) {
    p.threads[0].xstate.size = 512;
    p.threads[0].xstate.features = 0x3;
    p.threads[0].xstate.data = vec![0; 512];
}

/// After a failed restore: no process has any of the tree's `pids`, and no member wrote a
/// result into `dir` (`who`: what must not have run on).
fn nothing_of_the_tree_left(pids: &[i32], dir: &Path, who: &str) -> Result<(), String> {
    std::thread::sleep(Duration::from_millis(100));
    for pid in pids {
        ensure(
            !Path::new(&format!("/proc/{pid}")).exists(),
            &format!(
                "no process has pid {pid} of the tree (processes: {})",
                process_table()
            ),
        )?;
    }
    // (list_dir gives whole paths: the file names are compared.)
    let ran_on = list_dir(dir)?.into_iter().filter(|n| {
        Path::new(n)
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with("result"))
    });
    ensure_eq(
        ran_on.collect::<Vec<_>>(),
        Vec::<String>::new(),
        &format!("results written: no {who} ran on"),
    )?;
    no_children_left()
}

/// The program as PID 1 of a new PID namespace, with its own host and domain name and a
/// zombie child (pid 2 there) that exited with status 7 in a process group of its own.
pub fn pid_namespace() -> Result<(), String> {
    with_tools("round_trip_tree_pid_namespace", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid: _ } = start_and_dump(t, "nscheck", work.path())?;
        let tree_img = work.path().join("tree");
        let zpid = free_pid()? as u32;
        let p = the_process(&img)?;
        rewrite_image_with(
            &img,
            &tree_img,
            |p| {
                p.ns_pid = 1;
                p.threads[0].ns_tid = 1;
            },
            |inv| {
                let mut ids = inv.tree.namespaces.ids.clone();
                // The tree had an IPC namespace of its own (with no SysV objects).
                ids.retain(|id| id.kind != NamespaceKind::Ipc);
                ids.push(NamespaceId {
                    kind: NamespaceKind::Ipc,
                    dev: 0,
                    ino: 1,
                    dumpers: false,
                });
                inv.tree.namespaces = Namespaces {
                    own_pid_ns: true,
                    uts: Some(UtsNames {
                        hostname: os("crcli-tree"),
                        domainname: os("crcli-domain"),
                    }),
                    ids,
                };
                inv.tree.zombies = vec![zombie(zpid, 2, &p, 7 << 8)];
            },
        )?;
        let restorer = restore_bg(t, &tree_img, &dir)?;
        // Inside its namespaces the program is 1, its parent (crcli, outside) is 0, the
        // zombie is 2 in group 2, and the IPC namespace is a new one.
        let our_ipc = std::fs::read_link("/proc/self/ns/ipc").map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("expect"),
            format!(
                "1 0 crcli-tree crcli-domain 2 {} 2 {}\n",
                7 << 8,
                our_ipc.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let result = finish(restorer, &dir)?;
        ensure(result.contains("host crcli-tree"), &result)?;
        // The host's names were not touched.
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| e.to_string())?;
        ensure(
            host.trim() != "crcli-tree",
            "the host name of the machine is unchanged",
        )
    })
}

/// The program at its own pid with a zombie child (at a pid that was free) killed by SIGTERM,
/// in the program's process group; crcli is its parent.
pub fn zombie_child() -> Result<(), String> {
    with_tools("round_trip_tree_zombie", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid } = start_and_dump(t, "nscheck", work.path())?;
        let tree_img = work.path().join("tree");
        let zpid = free_pid()? as u32;
        let p = the_process(&img)?;
        rewrite_image_with(
            &img,
            &tree_img,
            |_| {},
            |inv| {
                let mut z = zombie(zpid, zpid, &p, libc::SIGTERM as u32);
                z.pgid = p.pgid;
                inv.tree.zombies = vec![z];
            },
        )?;
        let restorer = restore_bg(t, &tree_img, &dir)?;
        let crcli = restorer.0.as_ref().ok_or("no crcli")?.id();
        // crcli and so the restored root (and the zombie, in its group) are in the test's
        // process group (0 in the VM, whose init runs the tests).
        let pgid = own_stat_field(5)?;
        std::fs::write(
            dir.join("expect"),
            format!("{pid} {crcli} - - {zpid} {} {pgid} -\n", libc::SIGTERM),
        )
        .map_err(|e| e.to_string())?;
        finish(restorer, &dir).map(|_| ())
    })
}

/// A tree whose zombie cannot get its pid (this test process holds it): the restore fails
/// naming the zombie, and no process of the tree is left.
pub fn failure_leaves_nothing() -> Result<(), String> {
    with_tools("round_trip_tree_failure_leaves_nothing", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid } = start_and_dump(t, "nscheck", work.path())?;
        let tree_img = work.path().join("tree");
        let ours = std::process::id();
        let p = the_process(&img)?;
        rewrite_image_with(
            &img,
            &tree_img,
            |_| {},
            |inv| {
                inv.tree.zombies = vec![zombie(ours, ours, &p, 0)];
            },
        )?;
        let before = list_dir(&dir)?;
        let stderr = restore_must_fail(t, &tree_img)?;
        ensure(
            stderr.contains(&format!("process {ours}"))
                || stderr.contains(&format!("child {ours}")),
            &format!("the error names the zombie: {stderr}"),
        )?;
        ensure_eq(list_dir(&dir)?, before, "files in the program's directory")?;
        std::thread::sleep(Duration::from_millis(100));
        ensure(
            !Path::new(&format!("/proc/{pid}")).exists(),
            &format!(
                "no process has the dumped pid (processes: {})",
                process_table()
            ),
        )?;
        no_children_left()
    })
}

/// A copy of process `p` at pid `pid` (a member of a tree made of copies of one process).
fn copy_of(p: &crcli_image::Process, pid: u32, ppid: u32, pgid: u32) -> crcli_image::Process {
    let mut c = p.clone();
    c.pid = pid;
    c.ns_pid = pid;
    c.ppid = ppid;
    c.pgid = pgid;
    c.threads[0].tid = pid;
    c.threads[0].ns_tid = pid;
    c
}

/// A tree of three copies of one dumped process (`progs/twin.c`): the root R, its child B
/// leading its own process group, and its child C in B's group (joined once every process
/// exists). All three share R's open file description of `data`: after the restore each reads
/// one byte through it and gets a different one; pids, parents, groups and sessions are as the
/// image says. They also share a pipe holding three bytes, one for each.
pub fn three_copies() -> Result<(), String> {
    with_tools("round_trip_tree_three_copies", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid: r } = start_and_dump(t, "twin", work.path())?;
        let (b, c) = two_free_pids()?;
        let tree_img = work.path().join("tree");
        crate::common::rewrite_image_tree(
            &img,
            &tree_img,
            |ps| {
                let root = ps[0].clone();
                ps.push(copy_of(&root, b as u32, root.pid, b as u32));
                ps.push(copy_of(&root, c as u32, root.pid, b as u32));
            },
            |_| {},
        )?;
        let restorer = restore_bg(t, &tree_img, &dir)?;
        std::fs::write(dir.join("go"), b"").map_err(|e| e.to_string())?;
        let mut restorer = restorer;
        let status = restorer.wait_status()?;
        let err = std::fs::read_to_string(dir.join("restore.err")).unwrap_or_default();
        ensure_eq(
            status.code(),
            Some(0),
            &format!("crcli restore's exit code ({err})"),
        )?;
        let read = |pid: i32| -> Result<Vec<String>, String> {
            let text = std::fs::read_to_string(dir.join(format!("result-{pid}")))
                .map_err(|e| format!("process {pid} wrote no result: {e}"))?;
            Ok(text.split_whitespace().map(String::from).collect())
        };
        let (rr, rb, rc) = (read(r)?, read(b)?, read(c)?);
        let sid = own_stat_field(6)?.to_string();
        ensure_eq(
            [&rb[1], &rc[1]],
            [&r.to_string(), &r.to_string()],
            "the children's parent is the restored root",
        )?;
        ensure_eq(&rb[2], &b.to_string(), "B leads its own process group")?;
        ensure_eq(&rc[2], &b.to_string(), "C is in B's process group")?;
        ensure_eq(
            [&rr[3], &rb[3], &rc[3]],
            [&sid, &sid, &sid],
            "every member is in the test's session (the root's inherited one)",
        )?;
        let mut bytes = vec![rr[4].clone(), rb[4].clone(), rc[4].clone()];
        bytes.sort();
        ensure_eq(
            bytes,
            vec!["0".to_string(), "1".to_string(), "2".to_string()],
            "the three reads through one shared description got bytes 0, 1 and 2",
        )?;
        let mut piped = vec![rr[5].clone(), rb[5].clone(), rc[5].clone()];
        piped.sort();
        ensure_eq(
            piped,
            vec!["x".to_string(), "y".to_string(), "z".to_string()],
            "the three reads from one pipe got its three buffered bytes",
        )
    })
}

/// A real tree dumped by `crcli dump`: a session leader with a file description and a pipe
/// (with data in flight) shared with a child that leads its own process group, a second child
/// in its sibling's group, and a zombie. After the restore every process checks itself and the
/// root checks the rest (`progs/family.c`).
pub fn family() -> Result<(), String> {
    with_tools("round_trip_tree_family", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid } = start_and_dump(t, "family", work.path())?;
        restore_keeping_root_pid(t, &img, &dir, pid)
    })
}

/// The same tree (`progs/family.c`) as PID 1 of its own PID namespace, with its own UTS and IPC
/// namespaces (started by `unshare --pid --uts --ipc --fork`): dumped by `crcli dump`, restored
/// as PID 1 of a new PID namespace with every pid the same inside it (1 to 4), and checked
/// by every member as above.
pub fn family_in_pid_namespace() -> Result<(), String> {
    with_tools("round_trip_tree_family_in_pid_namespace", |t| {
        let Some(unshare) = ["/usr/bin/unshare", "/bin/unshare"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
        else {
            return Err("unshare (util-linux) is not installed".into());
        };
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let launcher = Command::new(unshare)
            .args(["--pid", "--uts", "--ipc", "--fork"])
            .arg(t.bin_dir.join("family"))
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting unshare: {e}"))?;
        let mut launcher = KillOnDrop(Some(launcher));
        let inner = super::wait_for_file(&dir.join("ready"), super::PATIENCE)?;
        ensure_eq(inner.trim(), "1", "the program's pid in its namespace")?;
        let upid = launcher.0.as_ref().ok_or("no launcher")?.id();
        let children = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
            .map_err(|e| e.to_string())?;
        let root: i32 = children
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or("unshare has no child")?;
        let img = work.path().join("img");
        let killed = dump(t, root, &img);
        if killed.is_err() {
            // The tree outlives a failed dump: end it through its PID 1.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(root).ok_or("pid")?,
                rustix::process::Signal::KILL,
            );
        }
        killed?;
        launcher.wait()?;
        let restorer = restore_bg(t, &img, &dir)?;
        let result = finish(restorer, &dir)?;
        ensure(
            result.contains("root 1 A 2 B 3 Z 4 T 5 6"),
            &format!("every pid and thread id is the same inside the new namespace: {result}"),
        )?;
        let err = std::fs::read_to_string(dir.join("restore.err")).unwrap_or_default();
        ensure(
            err.contains("PID 1 of a new PID namespace"),
            &format!("crcli says where the root went: {err}"),
        )
    })
}

/// The three-copy tree, where the last copy's extended CPU state comes from "another CPU": the
/// refusal comes when every process exists and the tracer threads are rebuilding them; all
/// three must be killed and reaped, none left running.
pub fn rebuild_failure_leaves_nothing() -> Result<(), String> {
    with_tools("round_trip_tree_rebuild_failure_leaves_nothing", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid: r } = start_and_dump(t, "twin", work.path())?;
        let (b, c) = two_free_pids()?;
        let tree_img = work.path().join("tree");
        crate::common::rewrite_image_tree(
            &img,
            &tree_img,
            |ps| {
                let root = ps[0].clone();
                ps.push(copy_of(&root, b as u32, root.pid, root.pgid));
                let mut bad = copy_of(&root, c as u32, root.pid, root.pgid);
                foreign_xstate(&mut bad);
                ps.push(bad);
            },
            |_| {},
        )?;
        let stderr = restore_must_fail(t, &tree_img)?;
        ensure(
            stderr.contains("extended-state layout"),
            &format!("the error names the cause: {stderr}"),
        )?;
        ensure(
            stderr.contains(&format!("restoring process {c} of the tree")),
            &format!("the error names the process: {stderr}"),
        )?;
        nothing_of_the_tree_left(&[r, b, c], &dir, "copy")
    })
}

/// The family tree (`progs/family.c`, whose root runs three threads), where B's extended CPU
/// state comes from "another CPU": B's rebuild fails while another tracer thread rebuilds the
/// root and its threads. Every thread of every member must be killed and reaped and crcli
/// must end (reaping the root's main thread before its other threads would wait forever);
/// nothing may be left.
pub fn rebuild_failure_with_threads_leaves_nothing() -> Result<(), String> {
    with_tools("round_trip_tree_rebuild_failure_with_threads", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid: _ } = start_and_dump(t, "family", work.path())?;
        let bad_img = work.path().join("bad");
        let mut pids = Vec::new();
        let mut b = 0;
        crate::common::rewrite_image_tree(
            &img,
            &bad_img,
            |ps| {
                pids = ps.iter().map(|p| p.pid as i32).collect();
                let bad = ps.last_mut().expect("members");
                b = bad.pid as i32;
                foreign_xstate(bad);
            },
            |_| {},
        )?;
        ensure_eq(pids.len(), 3, "live members in the image")?;
        let mut restorer = restore_bg(t, &bad_img, &dir)?;
        let deadline = Instant::now() + PATIENCE;
        while !restorer.ended()? {
            if Instant::now() > deadline {
                return Err(format!(
                    "crcli restore did not end within {PATIENCE:?} (processes: {})",
                    process_table()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = restorer.wait_status()?;
        let stderr = std::fs::read_to_string(dir.join("restore.err")).unwrap_or_default();
        ensure(!status.success(), "crcli restore must fail")?;
        ensure(
            stderr.contains("extended-state layout")
                && stderr.contains(&format!("restoring process {b} of the tree")),
            &format!("the error names the cause and the process: {stderr}"),
        )?;
        nothing_of_the_tree_left(&pids, &dir, "member")
    })
}

/// Shared anonymous memory across a real tree (`progs/shmtree.c`, a preforking server's
/// layout): one object mapped by the root and three children, one of which moved part of it
/// (its view starts at offset 4096) and one unmapped half of it, plus an object only one child
/// maps. Dumped by `crcli dump` (the object's content saved once) and restored: every process
/// sees the content from before the dump and the others' writes, and `/proc/self/maps` names
/// every view as before.
pub fn shared_memory() -> Result<(), String> {
    with_tools("round_trip_tree_shared_memory", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid } = start_and_dump(t, "shmtree", work.path())?;
        // The object four processes map is saved once, and all of them refer to it.
        let image = crcli_image::Image::open(&img).map_err(|e| crate::common::error_chain(&e))?;
        let mut objects: Vec<std::collections::BTreeSet<crcli_image::PagesId>> = Vec::new();
        for p in image.processes() {
            objects.push(
                p.vmas
                    .iter()
                    .filter_map(|v| match &v.backing {
                        crcli_image::VmaBacking::SharedAnonymous { content, .. } => Some(*content),
                        _ => None,
                    })
                    .collect(),
            );
        }
        ensure_eq(objects.len(), 4, "processes in the image")?;
        let common: Vec<_> = objects[0]
            .iter()
            .filter(|c| objects.iter().all(|o| o.contains(c)))
            .collect();
        ensure_eq(common.len(), 1, "objects every process maps")?;
        restore_keeping_root_pid(t, &img, &dir, pid)
    })
}

/// Exit signals and a zombie killed by a real-time signal (`progs/exitsig.c`): a child made
/// with SIGUSR1 as its exit signal comes back with it (the root gets SIGUSR1 when it exits), a
/// zombie made with SIGUSR2 is a "clone" child again and remaking it leaves no SIGUSR2 pending
/// in the root, and a zombie killed by SIGRTMIN+3 is reaped with that signal.
pub fn exit_signals() -> Result<(), String> {
    with_tools("round_trip_tree_exit_signals", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid } = start_and_dump(t, "exitsig", work.path())?;
        let image = crcli_image::Image::open(&img).map_err(|e| crate::common::error_chain(&e))?;
        let live: Vec<u32> = image
            .processes()
            .iter()
            .filter(|p| p.pid != pid as u32)
            .map(|p| p.exit_signal)
            .collect();
        ensure_eq(
            live,
            vec![libc::SIGUSR1 as u32],
            "the live child's exit signal",
        )?;
        let mut zombies: Vec<(u32, u32)> = image
            .inventory()
            .tree
            .zombies
            .iter()
            .map(|z| (z.exit_signal, z.exit_status))
            .collect();
        zombies.sort_unstable();
        ensure_eq(
            zombies,
            vec![
                (libc::SIGUSR2 as u32, 6 << 8),
                (libc::SIGCHLD as u32, (libc::SIGRTMIN() + 3) as u32),
            ],
            "the zombies' exit signals and statuses",
        )?;
        restore_keeping_root_pid(t, &img, &dir, pid)
    })
}

/// Zombies that cannot be made again are refused before anything is created: one "killed" by
/// a signal that ends no process (SIGTSTP stops, SIGCHLD is ignored), and one whose exit signal
/// is SIGKILL (its parent cannot ignore it while the zombie is remade).
pub fn impossible_zombies_are_refused() -> Result<(), String> {
    with_tools("round_trip_tree_impossible_zombies_are_refused", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Dumped { dir, img, pid } = start_and_dump(t, "nscheck", work.path())?;
        let p = the_process(&img)?;
        let zpid = free_pid()? as u32;
        let cases = [
            (
                libc::SIGTSTP as u32,
                libc::SIGCHLD as u32,
                "which does not end a process",
            ),
            (
                libc::SIGCHLD as u32,
                libc::SIGCHLD as u32,
                "which does not end a process",
            ),
            (0, libc::SIGKILL as u32, "cannot be remade"),
        ];
        for (i, (status, exit_signal, says)) in cases.into_iter().enumerate() {
            let tree_img = work.path().join(format!("tree{i}"));
            rewrite_image_with(
                &img,
                &tree_img,
                |_| {},
                |inv| {
                    let mut z = zombie(zpid, zpid, &p, status);
                    z.exit_signal = exit_signal;
                    inv.tree.zombies = vec![z];
                },
            )?;
            let before = list_dir(&dir)?;
            let stderr = restore_must_fail(t, &tree_img)?;
            ensure(
                stderr.contains(&format!("zombie {zpid}")) && stderr.contains(says),
                &format!("case {i}: the error names the zombie and why: {stderr}"),
            )?;
            ensure_eq(list_dir(&dir)?, before, "files in the program's directory")?;
            ensure(
                !Path::new(&format!("/proc/{pid}")).exists()
                    && !Path::new(&format!("/proc/{zpid}")).exists(),
                &format!(
                    "case {i}: nothing was made (processes: {})",
                    process_table()
                ),
            )?;
        }
        no_children_left()
    })
}
