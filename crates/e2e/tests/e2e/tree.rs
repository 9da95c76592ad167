//! Process trees through the real `crcli dump -t ROOT` / `crcli restore`, each verifying itself
//! after the restore:
//! - `pipeline`: a busybox sh pipeline `seq | tr 0-9 a-j | tr a-j 0-9 | while read …` with data
//!   in flight in every pipe; the last stage checks it reads 1, 2, 3, … with nothing lost or
//!   repeated;
//! - `forkserver` (progs/forkserver.c): a server with three workers, one leading its own process
//!   group with a helper child, and a zombie (exit status 42);
//! - `sharedfd` (progs/sharedfd.c): two processes writing in turn through one open file
//!   description (one shared offset);
//! - `forkserver` again as PID 1 of its own PID namespace with its own host name;
//! - `tree100` (progs/tree100.c, the trees benchmark's program): 100 processes in two levels,
//!   each checking its memory and its children's pids and exit statuses.
//!
//! Every cycle: spawn, wait for `ready`, let it run, dump (every member must be killed: the root
//! dies of SIGKILL, the others are gone), restore `-d`, trigger, and require `PASS` and exit
//! status 0 from the restored root. The programs' own checks are proven able to fail by their
//! corrupt switches (`selfcheck_*` here, without crcli).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crcli_e2e::{
    wait_exit, Crcli, E2eError, Exit, Linkage, Prog, Target, Workdir, EXIT_TIMEOUT, READY_TIMEOUT,
    RESULT_TIMEOUT,
};

/// How long a tree runs between `ready` and the dump.
const SETTLE: Duration = Duration::from_millis(300);

/// The pipeline (busybox sh). `$1` is the work directory, `$2` busybox. Every stage is a child
/// of the shell; the pipes between them stay full. The last stage checks each line is the next
/// number, every 1000 lines looks for `go`, and writes the result.
const PIPELINE_SCRIPT: &str = r#"
d=$1; bb=$2
"$bb" seq 1 2000000000 | "$bb" tr 0-9 a-j | "$bb" tr a-j 0-9 | {
  n=0; bad=
  while read l; do
    n=$((n+1))
    if [ "$l" != "$n" ]; then bad="line $n is $l"; break; fi
    if [ $n -eq 2000 ]; then echo $$ > "$d/ready"; fi
    if [ $((n % 1000)) -eq 0 ] && [ -e "$d/go" ]; then break; fi
  done
  if [ -n "$bad" ]; then echo "FAIL: $bad" > "$d/result"; exit 1; fi
  if [ -e "$d/corrupt" ]; then echo "FAIL: corrupt switch set ($n lines)" > "$d/result"; exit 1; fi
  echo PASS > "$d/result"
}
"#;

fn busybox() -> Result<std::path::PathBuf, E2eError> {
    crcli_e2e::which("busybox").ok_or_else(|| E2eError::ProgramMissing {
        program: "busybox".into(),
        hint: "not on PATH; install it with `apt-get install -y busybox-static`".into(),
    })
}

fn log_file(wd: &Workdir) -> Result<(std::fs::File, std::fs::File), E2eError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(wd.file("log"))
        .map_err(|e| E2eError::Unexpected(format!("opening the log: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| E2eError::Unexpected(format!("duplicating the log fd: {e}")))?;
    Ok((log, log2))
}

/// Spawns `program ARGS` with stdin `/dev/null` and stdout/stderr in `<dir>/log`.
fn spawn(wd: &Workdir, program: &Path, args: &[&OsStr]) -> Result<Target, E2eError> {
    let (log, log2) = log_file(wd)?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| E2eError::Unexpected(format!("spawning {}: {e}", program.display())))?;
    Ok(Target::from_child(child))
}

/// A tree to checkpoint.
enum Tree {
    Pipeline,
    C(&'static str, Linkage),
    /// `forkserver` as PID 1 of a new PID namespace with its own UTS namespace and host name.
    ForkserverNs(Linkage),
}

impl Tree {
    fn name(&self) -> String {
        match self {
            Tree::Pipeline => "pipeline".into(),
            Tree::C(n, l) => format!("{n}{}", suffix(*l)),
            Tree::ForkserverNs(l) => format!("forkserver-ns{}", suffix(*l)),
        }
    }

    /// Starts it; returns the process to wait for (the spawned one) and the root's pid.
    fn spawn(&self, wd: &Workdir) -> Result<(Target, i32), E2eError> {
        match self {
            Tree::Pipeline => {
                let bb = busybox()?;
                let t = spawn(
                    wd,
                    &bb,
                    &[
                        "sh".as_ref(),
                        "-c".as_ref(),
                        PIPELINE_SCRIPT.as_ref(),
                        "pipeline".as_ref(),
                        wd.path().as_os_str(),
                        bb.as_os_str(),
                    ],
                )?;
                let pid = t.pid();
                Ok((t, pid))
            }
            Tree::C(name, linkage) => {
                let t = Prog::c(name, *linkage).spawn(wd)?;
                let pid = t.pid();
                Ok((t, pid))
            }
            Tree::ForkserverNs(linkage) => {
                let prog = Prog::c("forkserver", *linkage);
                let unshare =
                    crcli_e2e::which("unshare").ok_or_else(|| E2eError::ProgramMissing {
                        program: "unshare".into(),
                        hint: "not on PATH (util-linux or busybox)".into(),
                    })?;
                let script = format!(
                    "echo crcli-tree-host > /proc/sys/kernel/hostname && exec {} {} crcli-tree-host",
                    prog.program().display(),
                    wd.path().display()
                );
                let t = spawn(
                    wd,
                    &unshare,
                    &[
                        "--pid".as_ref(),
                        "--uts".as_ref(),
                        "--fork".as_ref(),
                        "sh".as_ref(),
                        "-c".as_ref(),
                        script.as_ref(),
                    ],
                )?;
                // The root is unshare's only child.
                let start = Instant::now();
                let root = loop {
                    let kids = crcli_e2e::children(t.pid());
                    if let Some(&r) = kids.first() {
                        break r;
                    }
                    if start.elapsed() > READY_TIMEOUT {
                        return Err(E2eError::Unexpected(format!(
                            "unshare (pid {}) made no child{}",
                            t.pid(),
                            wd.details()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                Ok((t, root))
            }
        }
    }
}

fn suffix(l: Linkage) -> &'static str {
    match l {
        Linkage::Dynamic => "",
        Linkage::Static => "-static",
    }
}

/// Waits until none of `pids` is a live process (gone, or a zombie nobody reaps yet); reaps
/// those that are this test's children (the subreaper inherits the killed tree's orphans),
/// so that their pids are free for the restore.
fn wait_gone(pids: &[i32], wd: &Workdir) -> Result<(), E2eError> {
    let start = Instant::now();
    for &pid in pids {
        loop {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
            }
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            if start.elapsed() > EXIT_TIMEOUT {
                return Err(E2eError::Unexpected(format!(
                    "pid {pid} of the dumped tree is still there after the dump{}",
                    wd.details()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// dump, check every member was killed, restore -d, trigger, PASS and exit 0.
fn cycle(tree: Tree) -> Result<(), E2eError> {
    let crcli = Crcli::locate()?;
    crcli_e2e::become_subreaper()?;
    let wd = Workdir::new(&tree.name())?;
    let (mut spawned, root) = tree.spawn(&wd)?;
    wd.wait_ready(&mut spawned, READY_TIMEOUT)?;
    std::thread::sleep(SETTLE);
    let before = crcli_e2e::tree_members(root);
    assert!(
        before.len() >= 2,
        "{}: the tree has only {before:?}",
        tree.name()
    );
    crcli.dump(&wd, root, &[])?.expect_success("dump")?;
    if root == spawned.pid() {
        let exit = wait_exit(&mut spawned, EXIT_TIMEOUT)?;
        if exit != Exit::Signal(9) {
            return Err(E2eError::Unexpected(format!(
                "the dumped root (pid {root}) ended with {exit}, want SIGKILL{}",
                wd.details()
            )));
        }
    } else {
        // unshare saw its child killed.
        wait_exit(&mut spawned, EXIT_TIMEOUT)?;
    }
    wait_gone(&before, &wd)?;
    let (mut restored, _) = crcli.restore_detached_from(&wd, &wd.img())?;
    eprintln!(
        "{}: restored root pid {} (original {root}), members before: {before:?}",
        tree.name(),
        restored.pid()
    );
    if !matches!(tree, Tree::ForkserverNs(_)) {
        assert_eq!(restored.pid(), root, "the root keeps its pid");
        let mut after = crcli_e2e::tree_members(root);
        after.sort_unstable();
        let mut want = before.clone();
        want.sort_unstable();
        assert_eq!(after, want, "the restored tree has the same pids");
    }
    wd.trigger(crcli_e2e::Trigger::GoFile)?;
    let result = wd.wait_result(RESULT_TIMEOUT, restored.as_process())?;
    if result != "PASS" {
        return Err(E2eError::Unexpected(format!(
            "{} reported {result:?}{}",
            tree.name(),
            wd.details()
        )));
    }
    let exit = wait_exit(&mut restored, EXIT_TIMEOUT)?;
    if exit != Exit::Code(0) && exit != Exit::Unknown {
        return Err(E2eError::Unexpected(format!(
            "the restored root ended with {exit}{}",
            wd.details()
        )));
    }
    Ok(())
}

#[test]
fn tree_pipeline_with_data_in_flight() -> Result<(), E2eError> {
    cycle(Tree::Pipeline)
}

#[test]
fn tree_forkserver_with_workers_zombie_and_group() -> Result<(), E2eError> {
    cycle(Tree::C("forkserver", Linkage::Dynamic))
}

#[test]
fn tree_forkserver_static() -> Result<(), E2eError> {
    cycle(Tree::C("forkserver", Linkage::Static))
}

#[test]
fn tree_sharedfd_one_open_file_description() -> Result<(), E2eError> {
    cycle(Tree::C("sharedfd", Linkage::Dynamic))
}

#[test]
fn tree_sharedfd_static() -> Result<(), E2eError> {
    cycle(Tree::C("sharedfd", Linkage::Static))
}

#[test]
fn tree_of_100_processes() -> Result<(), E2eError> {
    cycle(Tree::C("tree100", Linkage::Dynamic))
}

#[test]
fn tree_forkserver_as_pid_1_of_its_own_pid_namespace() -> Result<(), E2eError> {
    cycle(Tree::ForkserverNs(Linkage::Dynamic))
}

/// Runs a tree once without crcli: ready, a short run, go, result and exit status.
fn run_alone(tree: &Tree, corrupt: Option<&str>) -> Result<(String, Exit), E2eError> {
    let wd = Workdir::new(&tree.name())?;
    if let Some(what) = corrupt {
        wd.set_corrupt(what)?;
    }
    let (mut t, _) = tree.spawn(&wd)?;
    wd.wait_ready(&mut t, READY_TIMEOUT)?;
    std::thread::sleep(Duration::from_millis(100));
    wd.trigger(crcli_e2e::Trigger::GoFile)?;
    let result = wd.wait_result(RESULT_TIMEOUT, Some(&mut t))?;
    let exit = wait_exit(&mut t, EXIT_TIMEOUT)?;
    Ok((result, exit))
}

/// Left alone a tree passes and exits 0; each corrupt switch makes it fail naming the problem.
fn selfcheck(tree: Tree, switches: &[(&str, &str)]) -> Result<(), E2eError> {
    let (result, exit) = run_alone(&tree, None)?;
    assert_eq!(result, "PASS", "{} left alone must pass", tree.name());
    if !matches!(tree, Tree::ForkserverNs(_)) {
        assert_eq!(
            exit,
            Exit::Code(0),
            "{} passed but ended with {exit}",
            tree.name()
        );
    }
    for (what, expect) in switches {
        let (result, exit) = run_alone(&tree, Some(what))?;
        assert!(
            result.starts_with("FAIL: ") && result.contains(expect),
            "{} with `{what}` corrupted must fail mentioning {expect:?}; got {result:?}",
            tree.name()
        );
        if !matches!(tree, Tree::ForkserverNs(_)) {
            assert_eq!(
                exit,
                Exit::Code(1),
                "{} failed but ended with {exit}",
                tree.name()
            );
        }
    }
    Ok(())
}

#[test]
fn selfcheck_tree_pipeline() -> Result<(), E2eError> {
    selfcheck(Tree::Pipeline, &[("any", "corrupt switch set")])
}

#[test]
fn selfcheck_tree_forkserver() -> Result<(), E2eError> {
    selfcheck(
        Tree::C("forkserver", Linkage::Dynamic),
        &[
            ("answer", "worker 1 answered"),
            ("sum", "worker 0 served"),
            ("zombie", "the zombie"),
        ],
    )
}

#[test]
fn selfcheck_tree_forkserver_hostname() -> Result<(), E2eError> {
    selfcheck(
        Tree::ForkserverNs(Linkage::Dynamic),
        &[("hostname", "the host name is")],
    )
}

#[test]
fn selfcheck_tree_100() -> Result<(), E2eError> {
    selfcheck(
        Tree::C("tree100", Linkage::Dynamic),
        &[("pattern", "child 3 (pid")],
    )
}

#[test]
fn selfcheck_tree_sharedfd() -> Result<(), E2eError> {
    selfcheck(
        Tree::C("sharedfd", Linkage::Dynamic),
        &[
            ("offset", "record"),
            ("exit", "the child ended with status"),
        ],
    )
}
