//! End-to-end tests of the `crcli` binary on real programs: shared helpers.
//!
//! The test programs (C sources in `progs/`, documented in `progs/README.md`) are compiled by
//! `build.rs` into [`progs_dir()`], each dynamic (`<name>`) and static (`<name>-static`). Every
//! program follows one protocol: `argv` gives a work directory; the program writes `ready` there
//! when its state is built, runs until the test creates `go` (or writes `go\n` into the FIFO `fifo`,
//! see [`Trigger`]), verifies itself and writes `result` (`PASS` or `FAIL: why`).
//!
//! The helpers here drive one checkpoint/restore cycle:
//! - [`Prog`]: a program to run (a C test program, or a busybox/python3 script) and how to trigger it;
//! - [`Workdir`]: a temporary work directory (kept, with its path printed, if the test panics);
//! - [`Target`]: a spawned program, killed and reaped on drop so no process is left behind;
//! - [`Restored`]: a process restored by `crcli restore -d`, same guarantee;
//! - [`crcli()`]: where the `crcli` binary is, and [`Crcli`]: running it with a timeout.
//!
//! ```no_run
//! use crcli_e2e::{Crcli, Linkage, Prog, Workdir, READY_TIMEOUT, RESULT_TIMEOUT};
//! # fn main() -> Result<(), crcli_e2e::E2eError> {
//! let prog = Prog::c("counter", Linkage::Dynamic);
//! let wd = Workdir::new("counter")?;
//! let mut target = prog.spawn(&wd)?;
//! wd.wait_ready(&mut target, READY_TIMEOUT)?;
//! let crcli = Crcli::locate()?;
//! crcli.dump(&wd, target.pid(), &[])?.expect_success("dump")?;
//! let mut restored = crcli.restore_detached(&wd)?;
//! wd.trigger(prog.trigger())?;
//! assert_eq!(wd.wait_result(RESULT_TIMEOUT, restored.as_process())?, "PASS");
//! # Ok(()) }
//! ```
//!
//! Restored processes: [`Crcli::restore_detached`] makes the calling process a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`, process-wide, once), so that a process restored by `crcli restore -d`
//! becomes the test's child when crcli exits and its exit status can be read with `waitpid`.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

/// How long a program may take to write `ready` (a 1 GiB heap takes a few seconds in debug runs).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a program may take from the trigger to its `result` (the sleeper needs ~1 s).
pub const RESULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `crcli` command may run before the test kills it and fails.
pub const CRCLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process that should be gone may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(10);

/// Errors of the end-to-end helpers. `Debug` prints the same text as `Display`, so a test that
/// returns `Result<(), E2eError>` fails with a readable message.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    /// The `crcli` binary was not found.
    #[error("locating the crcli binary: {0}")]
    CrcliNotFound(String),
    /// A helper program (busybox, python3) is missing.
    #[error("locating {program}: {hint}")]
    ProgramMissing {
        /// The program that was looked for.
        program: String,
        /// What to do about it.
        hint: String,
    },
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation, with its file or program.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("{what}: timed out after {secs:.1} s{details}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The timeout in seconds.
        secs: f64,
        /// The program's log and other context (starts with a newline, or empty).
        details: String,
    },
    /// A program or a crcli command did something unexpected.
    #[error("{0}")]
    Unexpected(String),
}

impl fmt::Debug for E2eError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> E2eError {
    let what = what.into();
    move |source| E2eError::Io { what, source }
}

/// The directory that holds the compiled test programs (`$OUT_DIR/progs` of this crate's build).
pub fn progs_dir() -> &'static Path {
    Path::new(env!("CRCLI_PROGS_DIR"))
}

/// True inside the test VM (`CRCLI_VM=1`), where nothing that targets the VM may be skipped.
pub fn in_vm() -> bool {
    std::env::var_os("CRCLI_VM").is_some_and(|v| v == "1")
}

/// How a C test program is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linkage {
    /// Dynamically linked against glibc (which registers rseq).
    Dynamic,
    /// `-static`.
    Static,
}

/// How the test tells a program to verify itself after the restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Create `<dir>/go`.
    GoFile,
    /// Write `go\n` into the FIFO `<dir>/fifo` (the program is blocked reading it).
    Fifo,
}

/// A program to checkpoint: the command line around the work directory, and its trigger.
#[derive(Clone, Debug)]
pub struct Prog {
    name: String,
    program: PathBuf,
    before_dir: Vec<OsString>,
    after_dir: Vec<OsString>,
    trigger: Trigger,
    make_fifo: bool,
}

/// The busybox program: a counter loop in `busybox sh` made only of builtins (no fork, so it stays
/// a single process), appending to `count` through fd 4 (O_APPEND) and waiting with `read -t` on
/// the FIFO `fifo` (fd 3); it then checks the file holds 0..N-1 and N is its counter.
pub const BUSYBOX_SCRIPT: &str = r#"
d=$1
exec 3<>"$d/fifo" 4>>"$d/count"
n=0
while :; do
  echo $n >&4
  n=$((n+1))
  if [ $n -eq 3 ]; then echo $$ > "$d/ready"; fi
  if [ $n -gt 3 ] && [ -e "$d/go" ]; then break; fi
  read -t 0.01 x <&3
done
exec 4>&-
j=0
while read line; do
  if [ "$line" != "$j" ]; then echo "FAIL: line $j of the count file is $line" > "$d/result"; exit 1; fi
  j=$((j+1))
done < "$d/count"
if [ $j -ne $n ]; then echo "FAIL: the count file has $j lines, the counter is $n" > "$d/result"; exit 1; fi
echo PASS > "$d/result"
"#;

/// The python3 program: appends `N\n` to `count` (line-buffered file object kept open) every
/// 5 ms, measuring each `time.sleep` with `time.monotonic_ns`; then checks the file holds 0..N-1
/// and no sleep was short.
pub const PYTHON_SCRIPT: &str = r#"
import os, sys, time
d = sys.argv[1]
def atomic(name, text):
    with open(os.path.join(d, name + ".tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(d, name + ".tmp"), os.path.join(d, name))
f = open(os.path.join(d, "count"), "a", buffering=1)
n = short = 0
while True:
    f.write("%d\n" % n)
    n += 1
    if n == 3:
        atomic("ready", "%d\n" % os.getpid())
    if n > 3 and os.path.exists(os.path.join(d, "go")):
        break
    t0 = time.monotonic_ns()
    time.sleep(0.005)
    if time.monotonic_ns() - t0 < 5000000:
        short += 1
f.close()
with open(os.path.join(d, "count")) as g:
    lines = g.read().split("\n")[:-1]
why = None
if lines != [str(i) for i in range(n)]:
    why = "the count file does not hold 0..%d (it has %d lines)" % (n - 1, len(lines))
elif short:
    why = "%d sleeps were short" % short
atomic("result", "PASS\n" if why is None else "FAIL: %s\n" % why)
sys.exit(0 if why is None else 1)
"#;

/// The python3 threads program: 4 `threading` threads, two counting under a `Lock` into a shared
/// counter and their own counts, two waiting on a `Condition` the main thread notifies every
/// 10 ms; each records its `threading.get_native_id()` and a thread-local value. After `go` it
/// requires progress of every thread in 300 ms, then each thread checks its native id and its
/// thread-local value, and the main thread checks the shared counter equals the sum of the
/// counts (nothing lost).
pub const PYTHON_THREADS_SCRIPT: &str = r#"
import os, sys, threading, time
d = sys.argv[1]
def atomic(name, text):
    with open(os.path.join(d, name + ".tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(d, name + ".tmp"), os.path.join(d, name))
lock = threading.Lock()
cond = threading.Condition(lock)
local = threading.local()
state = {"shared": 0, "gen": 0, "stop": False}
counts = [0] * 4
tids = [0] * 4
fails = []
def worker(i):
    local.value = "thread-%d" % i
    tids[i] = threading.get_native_id()
    seen = 0
    while True:
        with lock:
            if state["stop"]:
                break
            if i < 2:
                state["shared"] += 1
                counts[i] += 1
            else:
                while state["gen"] == seen and not state["stop"]:
                    cond.wait()
                seen = state["gen"]
                counts[i] += 1
        if i < 2:
            time.sleep(0.001)
    if threading.get_native_id() != tids[i]:
        fails.append("thread %d: native id %d, was %d" % (i, threading.get_native_id(), tids[i]))
    if local.value != "thread-%d" % i:
        fails.append("thread %d: thread-local value %r" % (i, local.value))
threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
while 0 in tids:
    time.sleep(0.001)
atomic("ready", "%d\n" % os.getpid())
def tick():
    with lock:
        state["gen"] += 1
        cond.notify_all()
    time.sleep(0.01)
while not os.path.exists(os.path.join(d, "go")):
    tick()
with lock:
    before = list(counts)
for _ in range(30):
    tick()
with lock:
    for i in range(4):
        if counts[i] <= before[i]:
            fails.append("thread %d made no progress after go" % i)
    state["stop"] = True
    cond.notify_all()
for t in threads:
    t.join()
if state["shared"] != counts[0] + counts[1]:
    fails.append("shared counter %d, the counters counted %d" % (state["shared"], counts[0] + counts[1]))
atomic("result", "PASS\n" if not fails else "FAIL: %s\n" % fails[0])
sys.exit(0 if not fails else 1)
"#;

impl Prog {
    /// A C test program from `progs/` (`counter`, `heap`, `signals`, `fpu`, `sleeper`, `pipe`,
    /// `deleted`). The `pipe` program is triggered through its FIFO, the others by the go file.
    pub fn c(name: &str, linkage: Linkage) -> Prog {
        let file = match linkage {
            Linkage::Dynamic => name.to_string(),
            Linkage::Static => format!("{name}-static"),
        };
        Prog {
            program: progs_dir().join(&file),
            name: file,
            before_dir: Vec::new(),
            after_dir: Vec::new(),
            trigger: if name == "pipe" {
                Trigger::Fifo
            } else {
                Trigger::GoFile
            },
            make_fifo: false,
        }
    }

    /// The busybox counter ([`BUSYBOX_SCRIPT`]) run by `busybox sh -c`. `busybox` is looked up on
    /// `PATH`; if it is missing the error says how to install it.
    pub fn busybox() -> Result<Prog, E2eError> {
        let busybox = which("busybox").ok_or_else(|| E2eError::ProgramMissing {
            program: "busybox".into(),
            hint: "not on PATH; install it with `apt-get install -y busybox-static`".into(),
        })?;
        Ok(Prog {
            name: "busybox-sh".into(),
            program: busybox,
            before_dir: ["sh", "-c", BUSYBOX_SCRIPT, "busybox-counter"]
                .iter()
                .map(OsString::from)
                .collect(),
            after_dir: Vec::new(),
            trigger: Trigger::GoFile,
            make_fifo: true,
        })
    }

    /// The python3 counter ([`PYTHON_SCRIPT`]): `/usr/bin/python3` if it exists, else `python3`
    /// on `PATH`; `None` if there is none.
    pub fn python3() -> Option<Prog> {
        let python = Some(PathBuf::from("/usr/bin/python3"))
            .filter(|p| p.exists())
            .or_else(|| which("python3"))?;
        Some(Prog {
            name: "python3".into(),
            program: python,
            before_dir: ["-c", PYTHON_SCRIPT].iter().map(OsString::from).collect(),
            after_dir: Vec::new(),
            trigger: Trigger::GoFile,
            make_fifo: false,
        })
    }

    /// The python3 threads program ([`PYTHON_THREADS_SCRIPT`]); `None` without python3.
    pub fn python3_threads() -> Option<Prog> {
        let mut prog = Prog::python3()?;
        prog.name = "python3-threads".into();
        prog.before_dir = ["-c", PYTHON_THREADS_SCRIPT]
            .iter()
            .map(OsString::from)
            .collect();
        Some(prog)
    }

    /// Appends an argument after the work directory (e.g. the heap size in MiB).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Prog {
        self.after_dir.push(arg.into());
        self
    }

    /// The program's name (`counter`, `heap-static`, `busybox-sh`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The executable that is run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// How to trigger its verification.
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// Starts the program in `wd`: stdin `/dev/null`, stdout and stderr appended to `<dir>/log`.
    pub fn spawn(&self, wd: &Workdir) -> Result<Target, E2eError> {
        if self.make_fifo {
            rustix::fs::mkfifoat(rustix::fs::CWD, wd.file("fifo"), 0o600.into())
                .map_err(|e| io_err(format!("mkfifo {}", wd.file("fifo").display()))(e.into()))?;
        }
        let log = wd.open_log()?;
        let log2 = log.try_clone().map_err(io_err("duplicating the log fd"))?;
        let child = Command::new(&self.program)
            .args(&self.before_dir)
            .arg(wd.path())
            .args(&self.after_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io_err(format!("spawning {}", self.program.display())))?;
        Ok(Target {
            pid: child.id() as i32,
            child: Some(child),
            exited: None,
        })
    }
}

/// Looks a program up on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Something whose exit can be waited for: a [`Target`] or a [`Restored`] process.
pub trait Process {
    /// Its pid.
    fn pid(&self) -> i32;
    /// Returns its exit status if it has exited (reaping it), `None` if it still runs.
    fn try_exit(&mut self) -> Result<Option<Exit>, E2eError>;
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// It is gone but was not our child, so its status is unknown.
    Unknown,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Unknown => write!(f, "gone (status unknown: not our child)"),
        }
    }
}

/// Waits up to `timeout` for `p` to exit.
pub fn wait_exit(p: &mut dyn Process, timeout: Duration) -> Result<Exit, E2eError> {
    let start = Instant::now();
    loop {
        if let Some(exit) = p.try_exit()? {
            return Ok(exit);
        }
        if start.elapsed() > timeout {
            return Err(E2eError::Timeout {
                what: format!("waiting for pid {} to exit", p.pid()),
                secs: timeout.as_secs_f64(),
                details: String::new(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// A program spawned by the test. Dropping it kills (SIGKILL) and reaps it if it still runs.
#[derive(Debug)]
pub struct Target {
    pid: i32,
    child: Option<Child>,
    /// How it ended, once seen (later calls of `try_exit` report it again).
    exited: Option<Exit>,
}

impl Target {
    /// Takes charge of a process the test spawned itself (killed and reaped on drop).
    pub fn from_child(child: Child) -> Target {
        Target {
            pid: child.id() as i32,
            child: Some(child),
            exited: None,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Process for Target {
    fn pid(&self) -> i32 {
        self.pid
    }
    fn try_exit(&mut self) -> Result<Option<Exit>, E2eError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(Some(self.exited.unwrap_or(Exit::Unknown)));
        };
        let status = child
            .try_wait()
            .map_err(io_err(format!("waiting for pid {}", self.pid)))?;
        Ok(status.map(|s| {
            self.child = None;
            let exit = exit_of(s);
            self.exited = Some(exit);
            exit
        }))
    }
}

fn exit_of(s: ExitStatus) -> Exit {
    match (s.code(), s.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(sig)) => Exit::Signal(sig),
        _ => Exit::Unknown,
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process restored by `crcli restore -d` (or another process the test did not spawn itself).
/// Dropping it kills it (SIGKILL) if it still runs and reaps it if it is our child.
#[derive(Debug)]
pub struct Restored {
    pid: i32,
    gone: bool,
}

impl Restored {
    /// Wraps a pid the test must clean up.
    pub fn new(pid: i32) -> Restored {
        Restored { pid, gone: false }
    }
    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
    /// As a `&mut dyn Process`, for [`Workdir::wait_result`].
    pub fn as_process(&mut self) -> Option<&mut dyn Process> {
        Some(self)
    }
    /// Marks it as gone without waiting (it was killed by a later dump and reaped elsewhere).
    pub fn forget(&mut self) {
        self.gone = true;
    }
}

impl Process for Restored {
    fn pid(&self) -> i32 {
        self.pid
    }
    fn try_exit(&mut self) -> Result<Option<Exit>, E2eError> {
        if self.gone {
            return Ok(Some(Exit::Unknown));
        }
        let pid = Pid::from_raw(self.pid)
            .ok_or_else(|| E2eError::Unexpected(format!("bad pid {}", self.pid)))?;
        match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(Some((_, st))) => {
                if let Some(code) = st.exit_status() {
                    self.gone = true;
                    Ok(Some(Exit::Code(code)))
                } else if let Some(sig) = st.terminating_signal() {
                    self.gone = true;
                    Ok(Some(Exit::Signal(sig)))
                } else {
                    Ok(None)
                }
            }
            Ok(None) => Ok(None),
            Err(rustix::io::Errno::CHILD) => {
                // Not our child (no subreaper, or crcli still its parent): poll for existence.
                if Path::new(&format!("/proc/{}", self.pid)).exists() && !is_zombie(self.pid) {
                    Ok(None)
                } else {
                    self.gone = true;
                    Ok(Some(Exit::Unknown))
                }
            }
            Err(e) => Err(io_err(format!("waitpid({})", self.pid))(e.into())),
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

impl Drop for Restored {
    fn drop(&mut self) {
        if self.gone {
            return;
        }
        if let Some(pid) = Pid::from_raw(self.pid) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            let start = Instant::now();
            while start.elapsed() < EXIT_TIMEOUT {
                match self.try_exit() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) => std::thread::sleep(POLL),
                }
            }
        }
    }
}

/// A temporary work directory for one program run. Removed on drop, except when the thread is
/// panicking (a failing test): then it is kept and its path printed.
pub struct Workdir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Workdir {
    /// A new directory under the system temporary directory, named after `label`.
    pub fn new(label: &str) -> Result<Workdir, E2eError> {
        Self::new_in(&std::env::temp_dir(), label)
    }

    /// A new directory under `parent` (e.g. `/dev/shm` for images on tmpfs).
    pub fn new_in(parent: &Path, label: &str) -> Result<Workdir, E2eError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("crcli-e2e-{label}-"))
            .tempdir_in(parent)
            .map_err(io_err(format!(
                "creating a work directory in {}",
                parent.display()
            )))?;
        Ok(Workdir {
            path: dir.path().to_path_buf(),
            dir: Some(dir),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<dir>/<name>`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The default image directory, `<dir>/img`.
    pub fn img(&self) -> PathBuf {
        self.file("img")
    }

    fn open_log(&self) -> Result<File, E2eError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file("log"))
            .map_err(io_err(format!("opening {}", self.file("log").display())))
    }

    /// The program's log so far (empty if none).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.file("log")).unwrap_or_default()
    }

    /// Context for error messages: the work directory and the program's log.
    pub fn details(&self) -> String {
        let mut s = format!(
            "\n--- work directory {}\n--- program log:\n{}",
            self.path.display(),
            self.log()
        );
        for out in ["crcli.out", "crcli.err"] {
            if let Ok(text) = std::fs::read_to_string(self.file(out)) {
                if !text.is_empty() {
                    s.push_str(&format!("--- last crcli {out}:\n{text}"));
                }
            }
        }
        s
    }

    /// Asks the program to damage `what` before verifying (see `progs/README.md`).
    pub fn set_corrupt(&self, what: &str) -> Result<(), E2eError> {
        std::fs::write(self.file("corrupt"), format!("{what}\n"))
            .map_err(io_err("writing the corrupt file"))
    }

    /// Waits until the program has written `ready`; fails early, with its log, if it exits.
    pub fn wait_ready(&self, target: &mut dyn Process, timeout: Duration) -> Result<(), E2eError> {
        let start = Instant::now();
        loop {
            if self.file("ready").exists() {
                return Ok(());
            }
            if let Some(exit) = target.try_exit()? {
                return Err(E2eError::Unexpected(format!(
                    "pid {} ended ({exit}) before it was ready{}",
                    target.pid(),
                    self.details()
                )));
            }
            if start.elapsed() > timeout {
                return Err(E2eError::Timeout {
                    what: format!("waiting for pid {} to be ready", target.pid()),
                    secs: timeout.as_secs_f64(),
                    details: self.details(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Triggers the program's verification: creates `go`, or writes `go\n` into the FIFO (opened
    /// non-blocking, so a FIFO without a reader fails at once instead of hanging).
    pub fn trigger(&self, trigger: Trigger) -> Result<(), E2eError> {
        match trigger {
            Trigger::GoFile => {
                std::fs::write(self.file("go"), "go\n").map_err(io_err("creating the go file"))
            }
            Trigger::Fifo => {
                let mut fifo = OpenOptions::new()
                    .write(true)
                    .custom_flags_nonblock()
                    .open(self.file("fifo"))
                    .map_err(io_err(format!(
                        "opening {} for writing (is the restored reader there?)",
                        self.file("fifo").display()
                    )))?;
                fifo.write_all(b"go\n")
                    .map_err(io_err("writing go into the FIFO"))
            }
        }
    }

    /// Removes `result` (before restoring an image of a program that already finished once).
    pub fn clear_result(&self) -> Result<(), E2eError> {
        match std::fs::remove_file(self.file("result")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err("removing the result file")(e))
            }
            _ => Ok(()),
        }
    }

    /// Waits for a complete `result` (one line ending in a newline) and returns it without the
    /// newline. If `process` is given and it exits without a result, fails at once with its log.
    pub fn wait_result(
        &self,
        timeout: Duration,
        mut process: Option<&mut dyn Process>,
    ) -> Result<String, E2eError> {
        let start = Instant::now();
        let mut exited: Option<(Exit, Instant)> = None;
        loop {
            if let Ok(text) = std::fs::read_to_string(self.file("result")) {
                if let Some(line) = text.strip_suffix('\n') {
                    return Ok(line.to_string());
                }
            }
            if exited.is_none() {
                if let Some(p) = process.as_deref_mut() {
                    if let Some(exit) = p.try_exit()? {
                        exited = Some((exit, Instant::now()));
                    }
                }
            }
            // Give a process that just exited a moment for its result file to become visible.
            if let Some((exit, when)) = exited {
                if when.elapsed() > Duration::from_millis(500) {
                    return Err(E2eError::Unexpected(format!(
                        "the program ended ({exit}) without writing a result{}",
                        self.details()
                    )));
                }
            }
            if start.elapsed() > timeout {
                return Err(E2eError::Timeout {
                    what: "waiting for the program's result".into(),
                    secs: timeout.as_secs_f64(),
                    details: self.details(),
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("crcli-e2e: kept the work directory {}", kept.display());
            }
        }
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
    }
}

/// Where the `crcli` binary is: `$CRCLI_BIN` if set, else `<target>/<profile>/crcli` derived from
/// the running executable (`<target>/<profile>/deps/<test>-<hash>` for tests and benches).
pub fn crcli() -> Result<PathBuf, E2eError> {
    if let Some(bin) = std::env::var_os("CRCLI_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(E2eError::CrcliNotFound(format!(
                "CRCLI_BIN={} is not a file",
                bin.display()
            )))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| E2eError::CrcliNotFound(format!("current_exe: {e}")))?;
    let mut dir = exe.parent();
    if dir.is_some_and(|d| d.ends_with("deps")) {
        dir = dir.and_then(Path::parent);
    }
    let candidate = dir.map(|d| d.join("crcli"));
    match candidate {
        Some(c) if c.is_file() => Ok(c),
        Some(c) => Err(E2eError::CrcliNotFound(format!(
            "{} does not exist; build it first (`cargo build -p crcli`, same profile) or set CRCLI_BIN",
            c.display()
        ))),
        None => Err(E2eError::CrcliNotFound(format!(
            "cannot derive the target directory from {}",
            exe.display()
        ))),
    }
}

/// One finished `crcli` command.
#[derive(Debug)]
pub struct CrcliRun {
    /// The command line (for messages).
    pub command: String,
    /// How crcli ended.
    pub exit: Exit,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub wall: Duration,
}

impl CrcliRun {
    /// Ok if crcli exited 0; else an error that shows its output.
    pub fn expect_success(self, what: &str) -> Result<CrcliRun, E2eError> {
        if self.exit == Exit::Code(0) {
            Ok(self)
        } else {
            Err(E2eError::Unexpected(format!(
                "crcli {what} failed ({}): {}\n--- stdout:\n{}--- stderr:\n{}",
                self.exit, self.command, self.stdout, self.stderr
            )))
        }
    }
}

/// Runs the `crcli` binary. Its stdout and stderr go to `<dir>/crcli.out` and `<dir>/crcli.err`
/// of the work directory (files, not pipes: a restored process that inherited a pipe by mistake
/// could otherwise hang the test).
#[derive(Clone, Debug)]
pub struct Crcli {
    bin: PathBuf,
    timeout: Duration,
}

impl Crcli {
    /// Finds the binary with [`crcli()`].
    pub fn locate() -> Result<Crcli, E2eError> {
        Ok(Crcli {
            bin: crcli()?,
            timeout: CRCLI_TIMEOUT,
        })
    }

    /// The binary's path.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Starts `crcli ARGS` with stdin null and output into the work directory.
    pub fn spawn(&self, wd: &Workdir, args: &[&OsStr]) -> Result<Child, E2eError> {
        let out = File::create(wd.file("crcli.out")).map_err(io_err("creating crcli.out"))?;
        let err = File::create(wd.file("crcli.err")).map_err(io_err("creating crcli.err"))?;
        Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err(format!("spawning {}", self.bin.display())))
    }

    /// Runs `crcli ARGS` to completion (killing it after the timeout).
    pub fn run(&self, wd: &Workdir, args: &[&OsStr]) -> Result<CrcliRun, E2eError> {
        let command = std::iter::once(self.bin.as_os_str())
            .chain(args.iter().copied())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let start = Instant::now();
        let child = self.spawn(wd, args)?;
        let pid = child.id() as i32;
        let mut t = Target {
            pid,
            child: Some(child),
            exited: None,
        };
        let exit = match wait_exit(&mut t, self.timeout) {
            Ok(exit) => exit,
            Err(_) => {
                drop(t);
                return Err(E2eError::Timeout {
                    what: format!("running `{command}`"),
                    secs: self.timeout.as_secs_f64(),
                    details: wd.details(),
                });
            }
        };
        let wall = start.elapsed();
        Ok(CrcliRun {
            command,
            exit,
            stdout: std::fs::read_to_string(wd.file("crcli.out")).unwrap_or_default(),
            stderr: std::fs::read_to_string(wd.file("crcli.err")).unwrap_or_default(),
            wall,
        })
    }

    /// `crcli dump -t PID -D <dir>/img EXTRA...`.
    pub fn dump(&self, wd: &Workdir, pid: i32, extra: &[&str]) -> Result<CrcliRun, E2eError> {
        self.dump_to(wd, pid, &wd.img(), extra)
    }

    /// `crcli dump -t PID -D IMG EXTRA...`.
    pub fn dump_to(
        &self,
        wd: &Workdir,
        pid: i32,
        img: &Path,
        extra: &[&str],
    ) -> Result<CrcliRun, E2eError> {
        let pid = pid.to_string();
        let mut args: Vec<&OsStr> = vec![
            "dump".as_ref(),
            "-t".as_ref(),
            pid.as_ref(),
            "-D".as_ref(),
            img.as_os_str(),
        ];
        args.extend(extra.iter().map(|s| OsStr::new(*s)));
        self.run(wd, &args)
    }

    /// `crcli restore -D <dir>/img -d`; returns the restored process (its pid is the last number
    /// crcli prints on stdout).
    pub fn restore_detached(&self, wd: &Workdir) -> Result<Restored, E2eError> {
        self.restore_detached_from(wd, &wd.img()).map(|(r, _)| r)
    }

    /// `crcli restore -D IMG -d`; returns the restored process and the crcli run.
    pub fn restore_detached_from(
        &self,
        wd: &Workdir,
        img: &Path,
    ) -> Result<(Restored, CrcliRun), E2eError> {
        become_subreaper()?;
        let run = self
            .run(
                wd,
                &[
                    "restore".as_ref(),
                    "-D".as_ref(),
                    img.as_os_str(),
                    "-d".as_ref(),
                ],
            )?
            .expect_success("restore -d")?;
        let pid = last_number(&run.stdout).ok_or_else(|| {
            E2eError::Unexpected(format!(
                "crcli restore -d printed no pid on stdout: {:?}",
                run.stdout
            ))
        })?;
        Ok((Restored::new(pid), run))
    }

    /// Starts `crcli restore -D <dir>/img` in the foreground (crcli waits for the restored
    /// process and exits with its status); returns crcli as a [`Target`].
    pub fn restore_foreground(&self, wd: &Workdir) -> Result<Target, E2eError> {
        let img = wd.img();
        let child = self.spawn(wd, &["restore".as_ref(), "-D".as_ref(), img.as_os_str()])?;
        Ok(Target {
            pid: child.id() as i32,
            child: Some(child),
            exited: None,
        })
    }
}

/// The last whitespace-separated token of `s` that is a positive integer (surrounding punctuation
/// such as `pid=1234.` or `(1234)` is ignored; digits inside paths are not numbers).
pub fn last_number(s: &str) -> Option<i32> {
    s.split_whitespace()
        .rev()
        .map(|t| t.rsplit('=').next().unwrap_or(t))
        .map(|t| t.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter_map(|t| t.parse::<i32>().ok())
        .find(|&n| n > 0)
}

/// The children of every thread of `pid` (`/proc/PID/task/*/children`); empty when `pid` is
/// gone.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let text = std::fs::read_to_string(format!(
                "/proc/{pid}/task/{}/children",
                t.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            out.extend(
                text.split_whitespace()
                    .filter_map(|w| w.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// `root` and all its descendants, parents before their children.
pub fn tree_members(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let kids = children(out[i]);
        out.extend(kids);
        i += 1;
    }
    out
}

/// Makes this process a child subreaper, once, so orphans (restored processes) become its
/// children and can be reaped with their exit status.
pub fn become_subreaper() -> Result<(), E2eError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| io_err("prctl(PR_SET_CHILD_SUBREAPER)")(e.into()));
    });
    result
}

/// Prints the skip line the project uses (`SKIPPED <test>: <why>` on stderr).
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

#[cfg(test)]
mod tests {
    use super::last_number;

    #[test]
    fn last_number_finds_the_pid() {
        assert_eq!(last_number("1234\n"), Some(1234));
        assert_eq!(
            last_number("restored pid 1234 from /tmp/x-99/img\n"),
            Some(1234)
        );
        assert_eq!(last_number("pid=77."), Some(77));
        assert_eq!(last_number("(4321)"), Some(4321));
        assert_eq!(last_number("no pid here /tmp/a1"), None);
        assert_eq!(last_number(""), None);
    }
}
