//! A small "container" through the real `crcli dump -t ROOT` / `crcli restore` (issue #7): busybox
//! sh as PID 1 of its own PID, mount, UTS and IPC namespaces (`unshare`), with its own proc, two
//! tmpfs mounts holding files (one with a sub-directory and mode 0700), its own host name, a
//! running child job that counts into one tmpfs (both wait on a FIFO of that tmpfs), and two C
//! jobs from `progs/`: `threads` (8 threads) and `sigchld` (2 threads, SIGCHLD blocked and pending
//! from a child that exited, that child a zombie). Its mount namespace dies with it at the kill,
//! so crcli must bring the whole namespace back, tmpfs contents included, and every thread at its
//! id in the PID namespace (`Thread::ns_tid`) with the pending signal naming the child's pid in
//! the namespace.
//!
//! After the restore the job checks its files and the host name and writes what it saw; the shell
//! checks it is still PID 1, its job is alive at the same pid and went on counting, the files of
//! both tmpfs mounts, the host name, that the C jobs have 9 and 3 threads in the container's
//! /proc and that each passed its own checks (thread ids, `/proc/self/task`, the SIGCHLD's
//! pid and status, the zombie reaped), then writes PASS or FAIL. The test also requires the
//! restored shell to be in a new mount namespace and PID 1 of a new PID namespace, and crcli's
//! own mount table to be unchanged. The script's checks are proven able to fail by its corrupt
//! switch (`selfcheck_container`, without crcli).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crcli_e2e::{
    wait_exit, Crcli, E2eError, Exit, Target, Workdir, EXIT_TIMEOUT, READY_TIMEOUT, RESULT_TIMEOUT,
};

/// How long the container runs between `ready` and the dump.
const SETTLE: Duration = Duration::from_millis(300);

/// The container's init (busybox sh as PID 1). `$1` is the work directory, `$2` busybox.
const SCRIPT: &str = r#"
d=$1; bb=$2; progs=$3
fail() { echo "FAIL: $*" > "$d/result"; exit 1; }
"$bb" mount -t proc proc /proc || fail "mount proc"
"$bb" mount -t tmpfs -o size=1m crcli-c1 "$d/c1" || fail "mount c1"
"$bb" mount -t tmpfs -o size=1m,mode=0700 crcli-c2 "$d/c2" || fail "mount c2"
echo one > "$d/c1/a"; "$bb" mkdir "$d/c2/sub"; echo two > "$d/c2/sub/b"
"$bb" hostname crcli-container || fail "hostname"
# Waits without child processes: read with a timeout from a FIFO of the tmpfs that nobody
# writes.
"$bb" mkfifo "$d/c1/tick" || fail "mkfifo"
exec 3<>"$d/c1/tick"
tick() { read -t 0.02 x <&3; }
(
  n=0
  while :; do
    n=$((n+1)); echo $n > "$d/c1/count"
    if [ -e "$d/go" ]; then break; fi
    tick
  done
  seen="$(cat "$d/c1/a") $(cat "$d/c2/sub/b") $("$bb" hostname)"
  echo "$seen" > "$d/c1/job-saw"
  while [ ! -e "$d/c1/checked" ]; do tick; done
  exit 0
) &
job=$!
"$bb" mkdir -p "$d/th" "$d/sc" || fail "mkdir th sc"
"$progs/threads" "$d/th" &
th=$!
"$progs/sigchld" "$d/sc" &
sc=$!
while [ ! -e "$d/th/ready" ] || [ ! -e "$d/sc/ready" ]; do
  "$bb" kill -0 "$th" "$sc" 2>/dev/null || fail "a C job ended before it was ready"
  tick
done
echo "$$ $job" > "$d/ready"
while [ ! -e "$d/go" ]; do tick; done
before=$(cat "$d/c1/count")
[ "$$" = 1 ] || fail "the shell is pid $$, not 1"
"$bb" kill -0 "$job" 2>/dev/null || fail "job $job is gone"
"$bb" grep -q container /proc/1/cmdline || fail "/proc is not the container's: its pid 1 is $("$bb" tr '\0' ' ' < /proc/1/cmdline)"
[ -e "/proc/$job" ] || fail "/proc shows no job $job"
n=$("$bb" ls "/proc/$th/task" | "$bb" wc -l); [ "$n" = 9 ] || fail "threads has $n threads, not 9"
n=$("$bb" ls "/proc/$sc/task" | "$bb" wc -l); [ "$n" = 3 ] || fail "sigchld has $n threads, not 3"
: > "$d/th/go"; : > "$d/sc/go"
wait "$th"; r=$?; [ "$r" = 0 ] || fail "threads ended with $r: $(cat "$d/th/result")"
wait "$sc"; r=$?; [ "$r" = 0 ] || fail "sigchld ended with $r: $(cat "$d/sc/result")"
[ "$(cat "$d/th/result")" = PASS ] || fail "threads says $(cat "$d/th/result")"
[ "$(cat "$d/sc/result")" = PASS ] || fail "sigchld says $(cat "$d/sc/result")"
: > "$d/c1/checked"
wait "$job" || fail "job $job ended badly"
after=$(cat "$d/c1/count")
[ "$after" -ge "$before" ] || fail "the job count went back from $before to $after"
[ "$(cat "$d/c1/job-saw")" = "one two crcli-container" ] || fail "the job saw $(cat "$d/c1/job-saw")"
[ "$(cat "$d/c1/a")" = one ] || fail "c1/a is $(cat "$d/c1/a")"
[ "$(cat "$d/c2/sub/b")" = two ] || fail "c2/sub/b is $(cat "$d/c2/sub/b")"
[ "$("$bb" stat -c %a "$d/c2")" = 700 ] || fail "c2 has mode $("$bb" stat -c %a "$d/c2")"
[ "$("$bb" hostname)" = crcli-container ] || fail "the host name is $("$bb" hostname)"
[ -e "$d/corrupt" ] && fail "corrupt switch set"
echo PASS > "$d/result"
"#;

fn busybox() -> Result<PathBuf, E2eError> {
    crcli_e2e::which("busybox").ok_or_else(|| E2eError::ProgramMissing {
        program: "busybox".into(),
        hint: "not on PATH; install it with `apt-get install -y busybox-static`".into(),
    })
}

fn unexpected(msg: String) -> E2eError {
    E2eError::Unexpected(msg)
}

/// Starts the container (`unshare --pid --mount --uts --ipc --fork`, / made private); returns
/// unshare and the container's init (unshare's only child).
fn spawn(wd: &Workdir) -> Result<(Target, i32), E2eError> {
    let bb = busybox()?;
    let unshare = crcli_e2e::which("unshare").ok_or_else(|| E2eError::ProgramMissing {
        program: "unshare".into(),
        hint: "not on PATH (util-linux)".into(),
    })?;
    for d in ["c1", "c2"] {
        std::fs::create_dir_all(wd.file(d)).map_err(|e| unexpected(format!("mkdir {d}: {e}")))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(wd.file("log"))
        .map_err(|e| unexpected(format!("opening the log: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| unexpected(format!("duplicating the log fd: {e}")))?;
    let child = Command::new(&unshare)
        .args([
            "--pid",
            "--mount",
            "--uts",
            "--ipc",
            "--propagation",
            "private",
            "--fork",
        ])
        .arg(&bb)
        .args(["sh", "-c", SCRIPT, "container"])
        .arg(wd.path())
        .arg(&bb)
        .arg(crcli_e2e::progs_dir())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| unexpected(format!("spawning unshare: {e}")))?;
    let t = Target::from_child(child);
    let start = Instant::now();
    let root = loop {
        let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", t.pid()))
            .unwrap_or_default();
        if let Some(r) = kids.split_whitespace().next().and_then(|w| w.parse().ok()) {
            break r;
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(unexpected(format!(
                "unshare (pid {}) made no child{}",
                t.pid(),
                wd.details()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok((t, root))
}

fn ns_link(pid: i32, kind: &str) -> Result<PathBuf, E2eError> {
    std::fs::read_link(format!("/proc/{pid}/{kind}"))
        .map_err(|e| unexpected(format!("reading /proc/{pid}/{kind}: {e}")))
}

#[test]
fn container_with_own_namespaces_tmpfs_mounts_and_a_job() -> Result<(), E2eError> {
    let crcli = Crcli::locate()?;
    crcli_e2e::become_subreaper()?;
    let wd = Workdir::new("container")?;
    let own_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| unexpected(format!("mountinfo: {e}")))?;
    let (mut unshare, root) = spawn(&wd)?;
    wd.wait_ready(&mut unshare, READY_TIMEOUT)?;
    std::thread::sleep(SETTLE);
    crcli.dump(&wd, root, &[])?.expect_success("dump")?;
    // unshare saw its child killed; the namespaces died with the container.
    wait_exit(&mut unshare, EXIT_TIMEOUT)?;
    let start = Instant::now();
    while Path::new(&format!("/proc/{root}")).exists() {
        if start.elapsed() > EXIT_TIMEOUT {
            return Err(unexpected(format!("the dumped init {root} is still there")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (mut restored, _) = crcli.restore_detached_from(&wd, &wd.img())?;
    let pid = restored.pid();
    if ns_link(pid, "ns/mnt")? == ns_link(std::process::id() as i32, "ns/mnt")? {
        return Err(unexpected(format!(
            "the restored init {pid} is in the test's mount namespace"
        )));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| unexpected(format!("status of {pid}: {e}")))?;
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .unwrap_or_default()
        .to_owned();
    if nspid.split_whitespace().last() != Some("1") {
        return Err(unexpected(format!(
            "the restored init {pid} is not PID 1 of a PID namespace (NSpid {nspid})"
        )));
    }
    wd.trigger(crcli_e2e::Trigger::GoFile)?;
    let result = wd.wait_result(RESULT_TIMEOUT, restored.as_process())?;
    if result != "PASS" {
        return Err(unexpected(format!(
            "the container reported {result:?}{}",
            wd.details()
        )));
    }
    let exit = wait_exit(&mut restored, EXIT_TIMEOUT)?;
    if exit != Exit::Code(0) && exit != Exit::Unknown {
        return Err(unexpected(format!(
            "the restored init ended with {exit}{}",
            wd.details()
        )));
    }
    let after = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| unexpected(format!("mountinfo: {e}")))?;
    if after != own_mounts {
        return Err(unexpected(
            "the test's mount table changed across the dump and restore".into(),
        ));
    }
    for d in ["c1", "c2"] {
        let left: Vec<_> = std::fs::read_dir(wd.file(d))
            .map_err(|e| unexpected(format!("listing {d}: {e}")))?
            .collect();
        if !left.is_empty() {
            return Err(unexpected(format!(
                "the container's tmpfs content leaked into the host directory {d}"
            )));
        }
    }
    Ok(())
}

/// The script alone, without crcli: clean it must PASS, with the corrupt switch it must FAIL.
#[test]
fn selfcheck_container() -> Result<(), E2eError> {
    for corrupt in [false, true] {
        let wd = Workdir::new("container-selfcheck")?;
        if corrupt {
            wd.set_corrupt("container")?;
        }
        let (mut unshare, _) = spawn(&wd)?;
        wd.wait_ready(&mut unshare, READY_TIMEOUT)?;
        wd.trigger(crcli_e2e::Trigger::GoFile)?;
        let result = wd.wait_result(RESULT_TIMEOUT, None)?;
        let _ = wait_exit(&mut unshare, EXIT_TIMEOUT)?;
        match (corrupt, result.as_str()) {
            (false, "PASS") => {}
            (true, r) if r.contains("corrupt switch set") => {}
            (_, r) => {
                return Err(unexpected(format!(
                    "container (corrupt: {corrupt}) reported {r:?}{}",
                    wd.details()
                )))
            }
        }
    }
    Ok(())
}
