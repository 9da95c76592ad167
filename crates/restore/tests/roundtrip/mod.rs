//! Real round trips: small C programs (`progs/`, compiled by build.rs into
//! `CRCLI_RESTORE_PROGS_DIR`) are started, dumped with `crcli dump`, restored with
//! `crcli restore`, and check themselves. They need the `crcli` binary (`$CRCLI_BIN`, or
//! `<target>/<profile>/crcli` next to this test's `deps` directory: `cargo build -p crcli`
//! first); without it they print SKIPPED (and fail inside the VM, `CRCLI_VM=1`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{ensure, ensure_eq, list_dir, rewrite_image};

/// Where build.rs put the compiled test programs.
const PROGS_DIR: &str = env!("CRCLI_RESTORE_PROGS_DIR");

/// How long a round trip waits for a step (the program ready, the restored process handed
/// over, its result). Every wait ends as soon as its condition holds, so this only bounds a
/// failure; it is generous because the CI VM emulates its CPUs (TCG, ~10x slower than the
/// host) on a loaded machine. Timing itself is never asserted here.
const PATIENCE: Duration = Duration::from_secs(60);

/// What a round trip needs: the `crcli` binary and the compiled programs.
struct Tools {
    crcli: PathBuf,
    bin_dir: PathBuf,
}

fn tools() -> Result<&'static Tools, String> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let crcli = find_crcli()?;
            let bin_dir = PathBuf::from(PROGS_DIR);
            for prog in [
                "fdtable",
                "fdtable-static",
                "chain",
                "shared",
                "rooted",
                "anoncwd",
                "nscheck",
                "twin",
                "family",
                "shmtree",
                "exitsig",
            ] {
                if !bin_dir.join(prog).is_file() {
                    return Err(format!(
                        "test program {} is missing",
                        bin_dir.join(prog).display()
                    ));
                }
            }
            Ok(Tools { crcli, bin_dir })
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn find_crcli() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("CRCLI_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut dir = exe.parent();
    if dir.is_some_and(|d| d.ends_with("deps")) {
        dir = dir.and_then(Path::parent);
    }
    let bin = dir.map(|d| d.join("crcli")).ok_or("no target directory")?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} does not exist (cargo build -p crcli first, or set CRCLI_BIN)",
            bin.display()
        ))
    }
}

/// Runs `body` if the tools exist; otherwise says SKIPPED (or fails in the VM).
fn with_tools(name: &str, body: impl FnOnce(&Tools) -> Result<(), String>) -> Result<(), String> {
    match tools() {
        Ok(t) => body(t),
        Err(why) if std::env::var_os("CRCLI_VM").is_some_and(|v| v == "1") => Err(why),
        Err(why) => {
            eprintln!("SKIPPED {name}: {why}");
            Ok(())
        }
    }
}

/// Starts `prog` with work directory `dir`; waits until it is ready and returns it and its pid.
fn start(t: &Tools, prog: &str, dir: &Path, args: &[&str]) -> Result<(Child, i32), String> {
    start_with(&[], &t.bin_dir.join(prog), dir, args)
}

/// [`start`], through a wrapper command (e.g. `setpriv ...`) that execs the program.
fn start_with(
    wrapper: &[&str],
    exe: &Path,
    dir: &Path,
    args: &[&str],
) -> Result<(Child, i32), String> {
    let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let child = cmd
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    // Killed and reaped if it never gets ready: nothing of a failed test may outlive it.
    let mut child = KillOnDrop(Some(child));
    let pid = wait_for_file(&dir.join("ready"), PATIENCE)?
        .trim()
        .parse::<i32>()
        .map_err(|e| e.to_string())?;
    Ok((child.0.take().ok_or("the program was already reaped")?, pid))
}

fn wait_for_file(path: &Path, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not appear within {timeout:?}",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dump(t: &Tools, pid: i32, img: &Path) -> Result<(), String> {
    let before = crate::common::process_table();
    let out = Command::new(&t.crcli)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(img)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "crcli dump failed: {} (processes before the dump: {before})",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// `crcli restore -D img` in the background (it waits for the restored process). It is killed
/// and reaped if the test fails before waiting for it, so that no crcli (and no restored
/// process) outlives a failed test and disturbs the next ones.
fn restore_bg(t: &Tools, img: &Path, dir: &Path) -> Result<KillOnDrop, String> {
    let err = std::fs::File::create(dir.join("restore.err")).map_err(|e| e.to_string())?;
    Command::new(&t.crcli)
        .args(["restore", "-D"])
        .arg(img)
        .stdin(Stdio::null())
        .stderr(err)
        .spawn()
        .map(|c| KillOnDrop(Some(c)))
        .map_err(|e| e.to_string())
}

fn finish(mut restorer: KillOnDrop, dir: &Path) -> Result<String, String> {
    std::fs::write(dir.join("go"), b"").map_err(|e| e.to_string())?;
    let result = wait_for_file(&dir.join("result"), PATIENCE)?;
    let status = restorer.wait_status()?;
    let err = std::fs::read_to_string(dir.join("restore.err")).unwrap_or_default();
    ensure(
        result.starts_with("PASS"),
        &format!("the restored program says {result:?} (crcli: {err})"),
    )?;
    ensure_eq(
        status.code(),
        Some(0),
        "crcli restore's exit code (the restored program's status)",
    )?;
    Ok(result)
}

/// Every kind of fd at its number, with flags, offsets, shared descriptions, pipe data and an
/// unlinked file, plus cwd, umask and a limit; and the PID kept.
pub fn fd_table(static_build: bool) -> Result<(), String> {
    let name = if static_build {
        "round_trip_fd_table_static"
    } else {
        "round_trip_fd_table"
    };
    with_tools(name, |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let prog = if static_build {
            "fdtable-static"
        } else {
            "fdtable"
        };
        let (mut child, pid) = start(t, prog, &dir, &[])?;
        let img = work.path().join("img");
        dump(t, pid, &img)?;
        let status = child.wait().map_err(|e| e.to_string())?;
        ensure_eq(status.code(), None, "the dumped process was killed")?;
        let mut restorer = restore_bg(t, &img, &dir)?;
        // Up to PATIENCE for the restore (a TCG VM is slow), until the pid is back or crcli ended.
        let proc_dir = format!("/proc/{pid}");
        let deadline = Instant::now() + PATIENCE;
        while !Path::new(&proc_dir).exists() && Instant::now() < deadline {
            if restorer.ended()? {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let err = std::fs::read_to_string(dir.join("restore.err")).unwrap_or_default();
        ensure(
            !err.contains("restored pid"),
            &format!("the pid was not kept: {err}"),
        )?;
        ensure(
            Path::new(&proc_dir).exists(),
            &format!(
                "a process has the dumped pid {pid} again (crcli: {err}; processes: {})",
                crate::common::process_table()
            ),
        )?;
        finish(restorer, &dir).map(|_| ())
    })
}

/// Five dump/restore cycles of one sleeping program: every sleep still lasts its period.
pub fn sleeps_still_sleep() -> Result<(), String> {
    with_tools("round_trip_sleeps_still_sleep", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let (mut child, mut pid) = start(t, "chain", &dir, &["20"])?;
        std::thread::sleep(Duration::from_millis(100));
        let mut restorer: Option<KillOnDrop> = None;
        for cycle in 0..5 {
            let img = work.path().join(format!("img{cycle}"));
            dump(t, pid, &img)?;
            match restorer.take() {
                None => {
                    child.wait().map_err(|e| e.to_string())?;
                }
                Some(mut r) => {
                    let st = r.wait_status()?;
                    ensure_eq(
                        st.code(),
                        Some(128 + 9),
                        "crcli restore reports its process killed by the dump",
                    )?;
                }
            }
            let mut r = restore_bg(t, &img, &dir)?;
            pid = wait_restored(&mut r, &dir, pid)?;
            std::thread::sleep(Duration::from_millis(150));
            restorer = Some(r);
        }
        let result = finish(restorer.take().expect("restorer"), &dir)?;
        eprintln!("  chain: {}", result.trim());
        Ok(())
    })
}

/// Waits (up to [`PATIENCE`]: a TCG VM is slow) until the restore started by `restorer` has handed the
/// process over: its pid (the dumped one, or the one crcli printed) exists, is crcli's child,
/// carries the program's name again and is no longer traced. Returns that pid; fails with crcli's output if crcli ended first.
fn wait_restored(restorer: &mut KillOnDrop, dir: &Path, dumped: i32) -> Result<i32, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pid = current_pid(dir, dumped)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        // Before crcli seizes it, the new child is an untraced copy of crcli: its name tells.
        let untraced = status
            .lines()
            .any(|l| l.split_whitespace().eq(["TracerPid:", "0"]));
        let renamed = status.lines().next().is_some_and(|l| {
            l.starts_with("Name:") && l.split_whitespace().nth(1) != Some("crcli")
        });
        // crcli's own child: not another process that happens to hold the pid.
        let ours = restorer.0.as_ref().is_some_and(|c| {
            status
                .lines()
                .any(|l| l.split_whitespace().eq(["PPid:", &c.id().to_string()]))
        });
        if untraced && renamed && ours {
            return Ok(pid);
        }
        if restorer.ended()? || Instant::now() > deadline {
            let err = std::fs::read_to_string(dir.join("restore.err")).unwrap_or_default();
            return Err(format!(
                "the restored process did not come up (crcli: {err}; processes: {})",
                crate::common::process_table()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The restored pid: the dumped one, or the one crcli printed when it could not keep it.
fn current_pid(dir: &Path, dumped: i32) -> Result<i32, String> {
    let err = std::fs::read_to_string(dir.join("restore.err")).unwrap_or_default();
    match err.split("as pid ").nth(1) {
        Some(rest) => rest
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(err.clone()),
        None => Ok(dumped),
    }
}

/// A restore that fails late (a page chunk damaged on disk, found only when the pages are
/// streamed into the new process) leaves nothing: no process, no recreated unlinked file.
pub fn failed_restore_leaves_nothing() -> Result<(), String> {
    with_tools("round_trip_failed_restore_leaves_nothing", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let (mut child, pid) = start(t, "fdtable", &dir, &[])?;
        let img = work.path().join("img");
        dump(t, pid, &img)?;
        child.wait().map_err(|e| e.to_string())?;
        let pages = std::fs::read_dir(&img)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("pages-"))
            })
            .ok_or("no pages file in the image")?;
        let mut bytes = std::fs::read(&pages).map_err(|e| e.to_string())?;
        let last = bytes.len() - 100;
        bytes[last] ^= 0xff;
        std::fs::write(&pages, bytes).map_err(|e| e.to_string())?;
        let before = list_dir(&dir)?;
        let mounts_before =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let out = Command::new(&t.crcli)
            .args(["restore", "-D"])
            .arg(&img)
            .output()
            .map_err(|e| e.to_string())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure(!out.status.success(), "crcli restore must fail")?;
        ensure(
            stderr.to_lowercase().contains("checksum") || stderr.contains("crc"),
            &format!("the error names the bad checksum: {stderr}"),
        )?;
        ensure_eq(
            list_dir(&dir)?,
            before,
            "files in the program's directory (the unlinked file must not reappear)",
        )?;
        ensure_eq(
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?,
            mounts_before,
            "the mount table",
        )?;
        std::thread::sleep(Duration::from_millis(50));
        ensure(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "no process has the dumped pid",
        )
    })
}

/// An image that someone other than the restoring user (root here) or root could have written
/// is refused before anything is made: a directory or file writable by group or others, a file
/// owned by another user, a symlink among its files. `--trust-image` restores it all the same.
pub fn untrusted_image() -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    with_tools("round_trip_untrusted_image", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let (mut child, pid) = start(t, "fdtable", &dir, &[])?;
        let img = work.path().join("img");
        dump(t, pid, &img)?;
        child.wait().map_err(|e| e.to_string())?;
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())
        };
        let inventory = img.join("inventory.img");
        let refused = |what: &str, expect: &str| -> Result<(), String> {
            let out = Command::new(&t.crcli)
                .args(["restore", "-D"])
                .arg(&img)
                .output()
                .map_err(|e| e.to_string())?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure(
                !out.status.success(),
                &format!("{what}: crcli restore must fail"),
            )?;
            ensure(
                stderr.contains(expect) && stderr.contains("--trust-image"),
                &format!("{what}: the error says {expect:?} and names --trust-image: {stderr}"),
            )?;
            ensure(
                !Path::new(&format!("/proc/{pid}")).exists(),
                &format!("{what}: no process has the dumped pid"),
            )
        };
        chmod(&img, 0o777)?;
        refused(
            "a world-writable image directory",
            "is writable by group or others (mode 0777)",
        )?;
        chmod(&img, 0o755)?;
        chmod(&inventory, 0o664)?;
        refused(
            "a group-writable inventory",
            "is writable by group or others (mode 0664)",
        )?;
        chmod(&inventory, 0o644)?;
        std::os::unix::fs::chown(&inventory, Some(65534), None).map_err(|e| e.to_string())?;
        refused("an inventory of uid 65534", "is owned by uid 65534")?;
        std::os::unix::fs::chown(&inventory, Some(0), None).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink("/etc/passwd", img.join("x.img")).map_err(|e| e.to_string())?;
        refused("a symlink in the image", "x.img is not a regular file")?;
        std::fs::remove_file(img.join("x.img")).map_err(|e| e.to_string())?;

        chmod(&img, 0o777)?;
        let err = std::fs::File::create(dir.join("restore.err")).map_err(|e| e.to_string())?;
        let restorer = Command::new(&t.crcli)
            .args(["restore", "--trust-image", "-D"])
            .arg(&img)
            .stdin(Stdio::null())
            .stderr(err)
            .spawn()
            .map(|c| KillOnDrop(Some(c)))
            .map_err(|e| e.to_string())?;
        finish(restorer, &dir).map(|_| ())
    })
}

/// A process with other credentials comes back with them, not with crcli's. `crcli dump`
/// cannot dump a process of another user on a machine that withholds CAP_SYS_RESOURCE (this
/// one), so a root program is dumped and its image rewritten: gid 100 and supplementary
/// groups 5 and 7, or (`as_nobody`) uid and gid 65534 with no groups and no capabilities.
pub fn other_creds(as_nobody: bool) -> Result<(), String> {
    let name = if as_nobody {
        "round_trip_as_nobody"
    } else {
        "round_trip_other_groups"
    };
    with_tools(name, |t| {
        use std::os::unix::fs::PermissionsExt;
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        // Let the restored program keep writing its files whoever it is.
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
                .map_err(|e| e.to_string())
        };
        mode(work.path(), 0o755)?;
        mode(&dir, 0o777)?;
        let (child, pid) = start(t, "chain", &dir, &["20"])?;
        let mut child = KillOnDrop(Some(child));
        let img = work.path().join("img");
        dump(t, pid, &img)?;
        child.wait()?;
        let img2 = work.path().join("img2");
        rewrite_image(&img, &img2, |p| {
            if as_nobody {
                p.creds.uids = [65534; 4];
                p.creds.gids = [65534; 4];
                p.creds.groups = Vec::new();
                p.creds.cap_eff = 0;
                p.creds.cap_prm = 0;
                p.creds.cap_inh = 0;
            } else {
                p.creds.gids = [100; 4];
                p.creds.groups = vec![5, 7];
            }
        })?;
        let mut restorer = restore_bg(t, &img2, &dir)?;
        let pid = wait_restored(&mut restorer, &dir, pid)?;
        // Let it run a few turns.
        std::thread::sleep(Duration::from_millis(200));
        let want = if as_nobody {
            "65534 65534 65534 65534 | 65534 65534 65534 65534 |  | 0000000000000000 | 0000000000000000 | 0000000000000000"
        } else {
            "0 0 0 0 | 100 100 100 100 | 5 7 |"
        };
        let got = status_creds(pid)?;
        ensure(
            got.starts_with(want),
            &format!("credentials after restore: {got:?}, want {want:?}..."),
        )?;
        finish(restorer, &dir).map(|_| ())
    })
}

/// A started program that is killed and reaped if the test ends early.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn wait(&mut self) -> Result<(), String> {
        if let Some(mut c) = self.0.take() {
            c.wait().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Waits for the child and returns its status (once).
    fn wait_status(&mut self) -> Result<std::process::ExitStatus, String> {
        let mut c = self.0.take().ok_or("the child was already waited for")?;
        c.wait().map_err(|e| e.to_string())
    }

    /// Whether the child has ended (it stays held, to be waited for or killed).
    fn ended(&mut self) -> Result<bool, String> {
        match self.0.as_mut() {
            Some(c) => Ok(c.try_wait().map_err(|e| e.to_string())?.is_some()),
            None => Ok(true),
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The Uid, Gid, Groups and Cap* lines of /proc/PID/status, joined.
fn status_creds(pid: i32) -> Result<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let keep = [
        "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:",
    ];
    Ok(text
        .lines()
        .filter(|l| keep.iter().any(|k| l.starts_with(k)))
        .map(|l| {
            l.split_once(':')
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" | "))
}

/// Shared anonymous memory: one object seen through three mappings with different protections
/// and a single-mapping object, through two dump/restore cycles.
pub fn shared_anonymous() -> Result<(), String> {
    with_tools("round_trip_shared_anonymous", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let (child, mut pid) = start(t, "shared", &dir, &[])?;
        let mut child = KillOnDrop(Some(child));
        let img = work.path().join("img1");
        dump(t, pid, &img)?;
        child.wait()?;
        let mut first = restore_bg(t, &img, &dir)?;
        pid = wait_restored(&mut first, &dir, pid)?;
        std::thread::sleep(Duration::from_millis(150));
        let img = work.path().join("img2");
        dump(t, pid, &img)?;
        let st = first.wait_status()?;
        ensure_eq(
            st.code(),
            Some(128 + 9),
            "the first restore's process was killed by the second dump",
        )?;
        let mut second = restore_bg(t, &img, &dir)?;
        wait_restored(&mut second, &dir, pid)?;
        std::thread::sleep(Duration::from_millis(150));
        finish(second, &dir).map(|_| ())
    })
}

/// A process inside a chroot, working in a sub-directory: root and cwd come back.
pub fn chroot() -> Result<(), String> {
    with_tools("round_trip_chroot", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let (child, pid) = start(t, "rooted", &dir, &[])?;
        let mut child = KillOnDrop(Some(child));
        let img = work.path().join("img");
        dump(t, pid, &img)?;
        child.wait()?;
        let mut restorer = restore_bg(t, &img, &dir)?;
        wait_restored(&mut restorer, &dir, pid)?;
        std::thread::sleep(Duration::from_millis(150));
        finish(restorer, &dir).map(|_| ())
    })
}

/// A process whose cwd, a directory fd, a file fd and the mount fd are on an anonymous tmpfs
/// (`fsmount`, never attached: a lost superblock): the content is dumped through the process's
/// fds and restored into a fresh tmpfs kept at the mount fd's number; the cwd is set with
/// `fchdir`. Works without STATMOUNT_BY_FD (the mount is proven anonymous by the clone rule).
pub fn anonymous_cwd() -> Result<(), String> {
    with_tools("round_trip_anonymous_cwd", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let (child, pid) = start(t, "anoncwd", &dir, &[])?;
        let mut child = KillOnDrop(Some(child));
        let img = work.path().join("img");
        let mounts_before =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        dump(t, pid, &img)?;
        child.wait()?;
        let mut restorer = restore_bg(t, &img, &dir)?;
        wait_restored(&mut restorer, &dir, pid)?;
        std::thread::sleep(Duration::from_millis(150));
        finish(restorer, &dir)?;
        let mounts_after =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        ensure_eq(
            mounts_after,
            mounts_before,
            "the mount table after the round trip",
        )
    })
}

/// A multi-threaded process whose last thread id is taken when it is restored (held by another
/// process made with `clone3(set_tid)`): the restore creates the first threads, then fails
/// naming the taken id, and leaves nothing behind (the process and the threads it had made are
/// gone). Once the id is free again, the same image restores and every thread keeps its id.
pub fn threads_taken_tid() -> Result<(), String> {
    with_tools("round_trip_threads_taken_tid", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let (mut child, pid) = start(t, "threaded", &dir, &[])?;
        let tids: Vec<i32> = std::fs::read_to_string(dir.join("tids"))
            .map_err(|e| e.to_string())?
            .lines()
            .map(|l| l.trim().parse::<i32>().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        ensure_eq(tids.len(), 4, "ids of the main thread and 3 others")?;
        let img = work.path().join("img");
        dump(t, pid, &img)?;
        child.wait().map_err(|e| e.to_string())?;
        let last = tids[3];
        // Wait until the dumped threads are gone, then take the last id.
        let deadline = Instant::now() + PATIENCE;
        while tids
            .iter()
            .any(|id| Path::new(&format!("/proc/{id}")).exists())
        {
            ensure(
                Instant::now() < deadline,
                "the dumped threads never went away",
            )?;
            std::thread::sleep(Duration::from_millis(10));
        }
        let holder = crcli_sys::clone3::spawn(
            &crcli_sys::clone3::SpawnOptions {
                set_tid: Some(last),
                hold: true,
            },
            || 0,
        )
        .map_err(|e| e.to_string())?;
        let holder_pid = holder.pid();
        let taken = holder.pid_outcome() == crcli_sys::clone3::PidOutcome::Kept;
        let out = Command::new(&t.crcli)
            .args(["restore", "-D"])
            .arg(&img)
            .output()
            .map_err(|e| e.to_string());
        // Let the holder go (it exits without running anything) and reap it.
        drop(holder);
        let _ = crate::common::wait_exit(holder_pid);
        ensure(
            taken,
            &format!("thread id {last} could be taken for the test"),
        )?;
        let out = out?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure(!out.status.success(), "crcli restore must fail")?;
        ensure(
            stderr.contains(&format!("thread id {last} is taken")),
            &format!("the error names the taken thread id {last}: {stderr}"),
        )?;
        for id in &tids[..3] {
            ensure(
                !Path::new(&format!("/proc/{id}")).exists(),
                &format!("nothing of the failed restore is left (task {id} exists)"),
            )?;
        }
        crate::common::no_children_left()?;

        // The id is free again: the image restores, with every thread id kept.
        let restorer = restore_bg(t, &img, &dir)?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut now: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            now.sort_unstable();
            let mut want = tids.clone();
            want.sort_unstable();
            if now == want {
                break;
            }
            ensure(
                Instant::now() < deadline,
                &format!("the restored process has tasks {now:?}, want {want:?}"),
            )?;
            std::thread::sleep(Duration::from_millis(10));
        }
        finish(restorer, &dir).map(|_| ())
    })
}

pub mod tree;

/// A process with armed interval timers (`itimer.c`): the dump records them (REAL 1 s interval,
/// at most 2 s left; VIRTUAL 50 s interval, at most 100 s and a tick left; PROF disarmed) and the restored process finds them
/// armed again and keeps receiving SIGALRM. The same image with its timers cleared (as an older
/// crcli would have restored it) makes the program report the loss: its check can fail.
pub fn interval_timers() -> Result<(), String> {
    with_tools("round_trip_interval_timers", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let (child, pid) = start(t, "itimer", &dir, &[])?;
        let mut child = KillOnDrop(Some(child));
        let img = work.path().join("img");
        dump(t, pid, &img)?;
        child.wait()?;

        let image = crcli_image::Image::open(&img).map_err(|e| e.to_string())?;
        let timers = image.processes()[0].itimers;
        ensure_eq(
            timers.real.interval_us,
            1_000_000,
            "dumped ITIMER_REAL interval",
        )?;
        ensure(
            timers.real.value_us > 0 && timers.real.value_us <= 2_000_000,
            &format!("dumped ITIMER_REAL value {} us", timers.real.value_us),
        )?;
        ensure_eq(
            timers.virt.interval_us,
            50_000_000,
            "dumped ITIMER_VIRTUAL interval",
        )?;
        ensure(
            // CPU-time timers are rounded up to the scheduler tick (at most 10 ms with HZ=100).
            timers.virt.value_us > 0 && timers.virt.value_us <= 100_010_000,
            &format!("dumped ITIMER_VIRTUAL value {} us", timers.virt.value_us),
        )?;
        ensure_eq(
            timers.prof,
            crcli_image::ITimer::default(),
            "dumped ITIMER_PROF",
        )?;

        // Negative: without its timers the restored program notices.
        let cleared = work.path().join("cleared");
        rewrite_image(&img, &cleared, |p| p.itimers = Default::default())?;
        let mut restorer = restore_bg(t, &cleared, &dir)?;
        wait_restored(&mut restorer, &dir, pid)?;
        std::fs::write(dir.join("go"), b"").map_err(|e| e.to_string())?;
        let result = wait_for_file(&dir.join("result"), PATIENCE)?;
        let status = restorer.wait_status()?;
        ensure_eq(
            result.trim(),
            "FAIL: ITIMER_REAL is not armed",
            "the program restored without its timers",
        )?;
        ensure_eq(
            status.code(),
            Some(1),
            "its exit code, as crcli restore reports it",
        )?;
        for f in ["go", "result"] {
            std::fs::remove_file(dir.join(f)).map_err(|e| e.to_string())?;
        }

        let mut restorer = restore_bg(t, &img, &dir)?;
        wait_restored(&mut restorer, &dir, pid)?;
        finish(restorer, &dir).map(|_| ())
    })
}

/// A thread running `SCHED_BATCH` with nice 5, pinned to CPU 0 (`sched.c`), next to a main
/// thread with its defaults: the dump records both threads' settings and the restored threads
/// check their own. The same image without the settings makes the program report it (its check
/// can fail), and one whose thread was bound to a CPU this machine does not offer is refused,
/// naming the thread and the CPU.
pub fn scheduling() -> Result<(), String> {
    with_tools("round_trip_scheduling", |t| {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = work.path().join("w");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let (child, pid) = start(t, "sched", &dir, &[])?;
        let mut child = KillOnDrop(Some(child));
        let img = work.path().join("img");
        dump(t, pid, &img)?;
        child.wait()?;

        let image = crcli_image::Image::open(&img).map_err(|e| e.to_string())?;
        let p = &image.processes()[0];
        ensure_eq(p.threads.len(), 2, "dumped threads")?;
        let worker = p.threads[1]
            .sched
            .clone()
            .ok_or("no scheduling settings dumped")?;
        ensure_eq(
            worker.policy,
            libc::SCHED_BATCH as u32,
            "dumped worker policy",
        )?;
        ensure_eq(worker.nice, 5, "dumped worker nice value")?;
        ensure_eq(worker.affinity.clone(), vec![1], "dumped worker affinity")?;
        let main = p.threads[0]
            .sched
            .clone()
            .ok_or("no scheduling settings dumped")?;
        ensure_eq(
            main.affinity,
            vec![],
            "dumped main thread affinity (not restricted)",
        )?;
        let worker_tid = p.threads[1].tid;

        // Negative: without the worker's settings the restored program notices.
        let cleared = work.path().join("cleared");
        rewrite_image(&img, &cleared, |p| p.threads[1].sched = None)?;
        let mut restorer = restore_bg(t, &cleared, &dir)?;
        wait_restored(&mut restorer, &dir, pid)?;
        std::fs::write(dir.join("go"), b"").map_err(|e| e.to_string())?;
        let result = wait_for_file(&dir.join("result"), PATIENCE)?;
        let status = restorer.wait_status()?;
        ensure(
            result.starts_with(&format!("FAIL: thread {worker_tid}: policy 0 nice 0")),
            &format!("the program restored without its settings says {result:?}"),
        )?;
        ensure_eq(
            status.code(),
            Some(1),
            "its exit code, as crcli restore reports it",
        )?;
        for f in ["go", "result"] {
            std::fs::remove_file(dir.join(f)).map_err(|e| e.to_string())?;
        }

        // A CPU this machine does not have: refused by name.
        let far = work.path().join("far");
        rewrite_image(&img, &far, |p| {
            if let Some(s) = &mut p.threads[1].sched {
                s.affinity = vec![0; 16];
                s.affinity[15] = 1 << 40;
            }
        })?;
        let out = Command::new(&t.crcli)
            .args(["restore", "-D"])
            .arg(&far)
            .output()
            .map_err(|e| e.to_string())?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure(
            !out.status.success(),
            "restoring onto a missing CPU succeeded",
        )?;
        ensure(
            err.contains(&format!(
                "thread {worker_tid} of process {pid} was bound to CPU 1000, which is not available here"
            )),
            &format!("crcli restore's error: {err}"),
        )?;
        ensure(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the refused restore left its process behind",
        )?;

        let mut restorer = restore_bg(t, &img, &dir)?;
        wait_restored(&mut restorer, &dir, pid)?;
        finish(restorer, &dir).map(|_| ())
    })
}
