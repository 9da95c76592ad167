//! The real thing: `crcli dump` and `crcli restore` on each test program, dynamic and static.
//!
//! Every cycle: spawn the program in a work directory, wait for `ready`, let it run a little,
//! `crcli dump -t PID -D <dir>/img`, check crcli killed the original (SIGKILL), restore, trigger
//! the program, and require `PASS` and exit status 0 from the restored process. Variants: restore
//! in the foreground (crcli exits with the program's status), `--leave-running`, two cycles in a
//! row, and a restore of a `--leave-running` image after the original has finished.

use std::time::Duration;

use crcli_e2e::{
    wait_exit, Crcli, E2eError, Exit, Linkage, Process, Prog, Restored, Target, Workdir,
    EXIT_TIMEOUT, READY_TIMEOUT, RESULT_TIMEOUT,
};

/// How long the program runs between `ready` and the dump, so that it is caught mid-flight.
const SETTLE: Duration = Duration::from_millis(300);

/// Which cycle to run.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// dump, restore -d, verify.
    Detached,
    /// dump, restore in the foreground, verify; crcli exits 0 with the program.
    Foreground,
    /// dump, restore -d, dump the restored process, restore -d again, verify.
    Twice,
    /// dump --leave-running; the original keeps running and passes.
    LeaveRunning,
    /// dump --leave-running; the original passes; then the image is restored and passes too.
    LeaveRunningThenRestore,
}

fn start(prog: &Prog) -> Result<(Workdir, Target, Crcli), E2eError> {
    let crcli = Crcli::locate()?;
    let wd = Workdir::new(prog.name())?;
    let mut target = prog.spawn(&wd)?;
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    std::thread::sleep(SETTLE);
    Ok((wd, target, crcli))
}

/// Requires `p` to end within the timeout with `want` (or with an unknown status if it is not our
/// child, which the message says).
fn expect_exit(p: &mut dyn Process, want: Exit, what: &str, wd: &Workdir) -> Result<(), E2eError> {
    let pid = p.pid();
    let exit = wait_exit(p, EXIT_TIMEOUT)?;
    if exit == Exit::Unknown {
        eprintln!("note: {what} (pid {pid}) is gone but not our child; its status is unknown");
        return Ok(());
    }
    if exit != want {
        return Err(E2eError::Unexpected(format!(
            "{what} (pid {pid}) ended with {exit}, want {want}{}",
            wd.details()
        )));
    }
    Ok(())
}

fn expect_image(wd: &Workdir, img: &std::path::Path) -> Result<(), E2eError> {
    let entries = std::fs::read_dir(img).map(|d| d.count()).unwrap_or(0);
    if entries == 0 {
        return Err(E2eError::Unexpected(format!(
            "crcli dump succeeded but {} is missing or empty{}",
            img.display(),
            wd.details()
        )));
    }
    Ok(())
}

fn expect_pass(
    wd: &Workdir,
    prog: &Prog,
    process: Option<&mut dyn Process>,
) -> Result<(), E2eError> {
    wd.trigger(prog.trigger())?;
    let result = match process {
        Some(p) => {
            let result = wd.wait_result(RESULT_TIMEOUT, Some(&mut *p))?;
            if result == "PASS" {
                expect_exit(p, Exit::Code(0), prog.name(), wd)?;
            }
            result
        }
        None => wd.wait_result(RESULT_TIMEOUT, None)?,
    };
    if result != "PASS" {
        return Err(E2eError::Unexpected(format!(
            "{} reported {result:?}{}",
            prog.name(),
            wd.details()
        )));
    }
    Ok(())
}

/// dump (killing the original) and restore -d; returns the restored process.
fn dump_kill_restore(
    crcli: &Crcli,
    wd: &Workdir,
    victim: &mut dyn Process,
    img: &std::path::Path,
) -> Result<Restored, E2eError> {
    let pid = victim.pid();
    crcli.dump_to(wd, pid, img, &[])?.expect_success("dump")?;
    expect_image(wd, img)?;
    expect_exit(victim, Exit::Signal(9), "the dumped original", wd)?;
    let (restored, _) = crcli.restore_detached_from(wd, img)?;
    eprintln!(
        "restored pid {} (original {pid}{})",
        restored.pid(),
        if restored.pid() == pid {
            ", kept"
        } else {
            ", NOT kept"
        }
    );
    Ok(restored)
}

fn cycle(prog: Prog, mode: Mode) -> Result<(), E2eError> {
    let (wd, mut target, crcli) = start(&prog)?;
    match mode {
        Mode::Detached => {
            let mut restored = dump_kill_restore(&crcli, &wd, &mut target, &wd.img())?;
            expect_pass(&wd, &prog, Some(&mut restored))
        }
        Mode::Foreground => {
            crcli.dump(&wd, target.pid(), &[])?.expect_success("dump")?;
            expect_exit(&mut target, Exit::Signal(9), "the dumped original", &wd)?;
            let mut fg = crcli.restore_foreground(&wd)?;
            // The go file is polled, so it may exist before the restored program runs again.
            std::thread::sleep(SETTLE);
            if let Some(exit) = fg.try_exit()? {
                return Err(E2eError::Unexpected(format!(
                    "crcli restore (foreground) ended ({exit}) before the program finished{}",
                    wd.details()
                )));
            }
            expect_pass(&wd, &prog, None)?;
            expect_exit(&mut fg, Exit::Code(0), "crcli restore (foreground)", &wd)
        }
        Mode::Twice => {
            let mut first = dump_kill_restore(&crcli, &wd, &mut target, &wd.img())?;
            std::thread::sleep(SETTLE);
            let mut second = dump_kill_restore(&crcli, &wd, &mut first, &wd.file("img2"))?;
            expect_pass(&wd, &prog, Some(&mut second))
        }
        Mode::LeaveRunning | Mode::LeaveRunningThenRestore => {
            crcli
                .dump(&wd, target.pid(), &["--leave-running"])?
                .expect_success("dump --leave-running")?;
            expect_image(&wd, &wd.img())?;
            // The log's size at dump time: a restore checks that the files it reopens have not
            // changed size (as CRIU does), so the "then restore" variant puts the log back.
            let log_meta = std::fs::metadata(wd.file("log")).ok();
            let log_len = log_meta.as_ref().map_or(0, |m| m.len());
            let log_mtime = log_meta.and_then(|m| m.modified().ok());
            std::thread::sleep(SETTLE);
            if let Some(exit) = target.try_exit()? {
                return Err(E2eError::Unexpected(format!(
                    "the original ended ({exit}) after dump --leave-running{}",
                    wd.details()
                )));
            }
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", target.pid())).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, r)| &r[..1]).unwrap_or("?");
            if state == "T" || state == "t" {
                return Err(E2eError::Unexpected(format!(
                    "the original is still stopped (state {state}) after dump --leave-running"
                )));
            }
            expect_pass(&wd, &prog, Some(&mut target))?;
            if let Mode::LeaveRunningThenRestore = mode {
                // Put the file system back as it was at dump time (the original has run on and
                // appended to its log): keep its log aside, cut the log to its dumped size and
                // give it back its dump-time mtime.
                let log = std::fs::read(wd.file("log")).unwrap_or_default();
                let dumped = log.get(..log_len as usize).unwrap_or(&log).to_vec();
                let restore_fs = std::fs::write(wd.file("log.original"), &log)
                    .and_then(|()| std::fs::write(wd.file("log"), dumped))
                    .and_then(|()| match log_mtime {
                        Some(t) => std::fs::File::options()
                            .write(true)
                            .open(wd.file("log"))?
                            .set_modified(t),
                        None => Ok(()),
                    });
                restore_fs.map_err(|e| {
                    E2eError::Unexpected(format!("putting the log back to its dumped size: {e}"))
                })?;
                wd.clear_result()?;
                let (mut restored, _) = crcli.restore_detached_from(&wd, &wd.img())?;
                // `go` already exists: the restored program verifies at its next poll.
                expect_pass(&wd, &prog, Some(&mut restored))?;
            }
            Ok(())
        }
    }
}

macro_rules! cycle_tests {
    ($($test:ident: $prog:expr, $mode:ident;)*) => {$(
        #[test]
                fn $test() -> Result<(), E2eError> {
            cycle($prog, Mode::$mode)
        }
    )*};
}

fn c(name: &str) -> Prog {
    Prog::c(name, Linkage::Dynamic)
}
fn s(name: &str) -> Prog {
    Prog::c(name, Linkage::Static)
}

cycle_tests! {
    counter: c("counter"), Detached;
    counter_static: s("counter"), Detached;
    heap: c("heap"), Detached;
    heap_static: s("heap"), Detached;
    signals: c("signals"), Detached;
    signals_static: s("signals"), Detached;
    fpu: c("fpu"), Detached;
    fpu_static: s("fpu"), Detached;
    sleeper: c("sleeper"), Detached;
    sleeper_static: s("sleeper"), Detached;
    pipe: c("pipe"), Detached;
    pipe_static: s("pipe"), Detached;
    deleted: c("deleted"), Detached;
    deleted_static: s("deleted"), Detached;

    counter_foreground: c("counter"), Foreground;
    counter_static_foreground: s("counter"), Foreground;
    sleeper_foreground: c("sleeper"), Foreground;

    counter_twice: c("counter"), Twice;
    counter_static_twice: s("counter"), Twice;
    fpu_twice: c("fpu"), Twice;
    heap_twice: c("heap"), Twice;
    signals_static_twice: s("signals"), Twice;

    counter_leave_running: c("counter"), LeaveRunning;
    counter_static_leave_running: s("counter"), LeaveRunning;
    pipe_leave_running: c("pipe"), LeaveRunning;
    pipe_static_leave_running: s("pipe"), LeaveRunning;
    heap_leave_running_then_restore: c("heap"), LeaveRunningThenRestore;
    heap_static_leave_running_then_restore: s("heap"), LeaveRunningThenRestore;
    signals_leave_running_then_restore: c("signals"), LeaveRunningThenRestore;
    fpu_static_leave_running_then_restore: s("fpu"), LeaveRunningThenRestore;

    // 8 threads (progs/threads.c): every thread checks its tid, TLS, FP state, mask and
    // sigaltstack after the restore; the shared counter must lose nothing.
    threads: c("threads"), Detached;
    threads_static: s("threads"), Detached;
    threads_foreground: c("threads"), Foreground;
    threads_twice: c("threads"), Twice;
    threads_static_twice: s("threads"), Twice;
    threads_leave_running: c("threads"), LeaveRunning;
    threads_static_leave_running_then_restore: s("threads"), LeaveRunningThenRestore;
}

/// Without -d crcli exits with the restored program's status: 1 when its check fails.
#[test]
fn foreground_exit_status_follows_the_program() -> Result<(), E2eError> {
    let prog = c("counter");
    let (wd, mut target, crcli) = start(&prog)?;
    crcli.dump(&wd, target.pid(), &[])?.expect_success("dump")?;
    expect_exit(&mut target, Exit::Signal(9), "the dumped original", &wd)?;
    wd.set_corrupt("memory")?;
    let mut fg = crcli.restore_foreground(&wd)?;
    std::thread::sleep(SETTLE);
    wd.trigger(prog.trigger())?;
    let result = wd.wait_result(RESULT_TIMEOUT, None)?;
    assert!(
        result.starts_with("FAIL: "),
        "corrupted counter must fail: {result:?}"
    );
    expect_exit(&mut fg, Exit::Code(1), "crcli restore (foreground)", &wd)
}

/// `busybox sh -c` with a builtin-only loop.
#[test]
fn busybox_sh() -> Result<(), E2eError> {
    cycle(Prog::busybox()?, Mode::Detached)
}

/// A python3 loop (host only: the VM guest has no python3).
#[test]
fn python3() -> Result<(), E2eError> {
    if crcli_e2e::in_vm() {
        crcli_e2e::skip("python3", "no python3 in the guest");
        return Ok(());
    }
    let prog = Prog::python3().expect("python3 is needed on the host (apt-get install -y python3)");
    cycle(prog, Mode::Detached)
}

/// A python3 program with 4 `threading` threads (a Lock, a Condition, thread-locals), host only.
#[test]
fn python3_threads() -> Result<(), E2eError> {
    if crcli_e2e::in_vm() {
        crcli_e2e::skip("python3_threads", "no python3 in the guest");
        return Ok(());
    }
    let prog = Prog::python3_threads()
        .expect("python3 is needed on the host (apt-get install -y python3)");
    cycle(prog, Mode::Detached)
}
