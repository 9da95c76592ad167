//! crcli refusing what it cannot do: a clear message, a non-zero exit status, no panic, and the
//! target left running untouched.

use std::time::Duration;

use crcli_e2e::{Crcli, CrcliRun, E2eError, Exit, Linkage, Process, Prog, Workdir, READY_TIMEOUT};

fn expect_clean_failure(run: &CrcliRun, what: &str) {
    assert!(
        matches!(run.exit, Exit::Code(c) if c != 0),
        "{what}: crcli must fail with an exit status, got {} (`{}`)\n{}",
        run.exit,
        run.command,
        run.stderr
    );
    assert!(
        !run.stderr.trim().is_empty(),
        "{what}: crcli failed without saying why (`{}`)",
        run.command
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{what}: crcli panicked:\n{}",
        run.stderr
    );
}

/// State letter of /proc/PID/stat.
fn state(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r[..1].to_string()))
        .unwrap_or_else(|| "?".into())
}

#[test]
fn dump_of_a_missing_pid_fails_cleanly() -> Result<(), E2eError> {
    let crcli = Crcli::locate()?;
    let wd = Workdir::new("missing-pid")?;
    // Pids above pid_max (4194304 at most) cannot exist.
    let run = crcli.dump(&wd, 99_999_999, &[])?;
    expect_clean_failure(&run, "dump of a pid that does not exist");
    Ok(())
}

#[test]
fn restore_of_a_missing_image_fails_cleanly() -> Result<(), E2eError> {
    let crcli = Crcli::locate()?;
    let wd = Workdir::new("missing-image")?;
    let img = wd.img();
    let run = crcli.run(
        &wd,
        &[
            "restore".as_ref(),
            "-D".as_ref(),
            img.as_os_str(),
            "-d".as_ref(),
        ],
    )?;
    expect_clean_failure(&run, "restore of a missing image");
    Ok(())
}

/// A damaged image is refused before anything is created (the image is validated first).
#[test]
fn restore_of_a_damaged_image_fails_cleanly() -> Result<(), E2eError> {
    let prog = Prog::c("counter", Linkage::Static);
    let crcli = Crcli::locate()?;
    let wd = Workdir::new("damaged-image")?;
    let mut target = prog.spawn(&wd)?;
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    crcli.dump(&wd, target.pid(), &[])?.expect_success("dump")?;
    // Flip one byte in the middle of every image file.
    for entry in std::fs::read_dir(wd.img()).map_err(|e| E2eError::Unexpected(e.to_string()))? {
        let path = entry
            .map_err(|e| E2eError::Unexpected(e.to_string()))?
            .path();
        let mut bytes = std::fs::read(&path).map_err(|e| E2eError::Unexpected(e.to_string()))?;
        let middle = bytes.len() / 2;
        if let Some(b) = bytes.get_mut(middle) {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes).map_err(|e| E2eError::Unexpected(e.to_string()))?;
    }
    let img = wd.img();
    let run = crcli.run(
        &wd,
        &[
            "restore".as_ref(),
            "-D".as_ref(),
            img.as_os_str(),
            "-d".as_ref(),
        ],
    )?;
    expect_clean_failure(&run, "restore of a damaged image");
    std::thread::sleep(Duration::from_millis(200));
    let count_before = std::fs::metadata(wd.file("count"))
        .map(|m| m.len())
        .unwrap_or(0);
    std::thread::sleep(Duration::from_millis(200));
    let count_after = std::fs::metadata(wd.file("count"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(
        count_before, count_after,
        "something restored from the damaged image is counting"
    );
    Ok(())
}

/// The processes running `program` (by `/proc/PID/exe`) with their stdout in `dir` (other
/// tests may run the same program at the same time, in other work directories).
fn processes_running(program: &std::path::Path, dir: &std::path::Path) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if std::fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe == program)
            && std::fs::read_link(entry.path().join("fd/1")).is_ok_and(|out| out.starts_with(dir))
        {
            out.push(pid);
        }
    }
    out
}

/// Restoring a multi-threaded image while the dumped threads still run (`--leave-running`):
/// their thread ids are taken, so the restore fails naming the taken id, and leaves no process
/// behind; the original runs on and passes.
#[test]
fn restore_of_threads_whose_ids_are_taken_fails_cleanly() -> Result<(), E2eError> {
    let prog = Prog::c("threads", Linkage::Dynamic);
    let crcli = Crcli::locate()?;
    let wd = Workdir::new("threads-taken")?;
    let mut target = prog.spawn(&wd)?;
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    crcli
        .dump(&wd, target.pid(), &["--leave-running"])?
        .expect_success("dump --leave-running")?;
    let img = wd.img();
    let run = crcli.run(
        &wd,
        &[
            "restore".as_ref(),
            "-D".as_ref(),
            img.as_os_str(),
            "-d".as_ref(),
        ],
    )?;
    expect_clean_failure(&run, "restore of threads whose ids are taken");
    assert!(
        run.stderr.contains("is taken by another process or thread"),
        "the error must name the taken thread id:\n{}",
        run.stderr
    );
    assert_eq!(
        processes_running(prog.program(), wd.path()),
        vec![target.pid()],
        "only the original may run the program after the failed restore"
    );
    assert_eq!(target.try_exit()?, None, "the original must keep running");
    wd.trigger(prog.trigger())?;
    let result = wd.wait_result(crcli_e2e::RESULT_TIMEOUT, Some(&mut target))?;
    assert_eq!(result, "PASS", "the original after the failed restore");
    Ok(())
}

/// Spawns `program args... <workdir>` with the usual stdio (stdin null, output to the log).
fn spawn_raw(
    wd: &Workdir,
    program: &std::path::Path,
    args: &[&str],
) -> Result<crcli_e2e::Target, E2eError> {
    let log =
        std::fs::File::create(wd.file("log")).map_err(|e| E2eError::Unexpected(e.to_string()))?;
    let child = std::process::Command::new(program)
        .args(args)
        .arg(wd.path())
        .stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| E2eError::Unexpected(e.to_string()))?,
        )
        .stderr(log)
        .spawn()
        .map_err(|e| E2eError::Unexpected(format!("spawning {}: {e}", program.display())))?;
    Ok(crcli_e2e::Target::from_child(child))
}

/// A process tree with a member crcli cannot dump (a child in a network namespace of its own) is
/// refused, naming that member and its namespace, and both keep running.
#[test]
fn dump_of_a_tree_with_a_member_in_another_network_namespace_is_refused() -> Result<(), E2eError> {
    let crcli = Crcli::locate()?;
    let wd = Workdir::new("tree")?;
    let mut target = spawn_raw(
        &wd,
        std::path::Path::new("/bin/sh"),
        &[
            "-c",
            "unshare --net sleep 600 & echo $! > \"$1/child\"; echo ready > \"$1/ready\"; wait",
            "sh",
        ],
    )?;
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    let child: i32 = std::fs::read_to_string(wd.file("child"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| E2eError::Unexpected("the shell did not record its child".into()))?;
    let _child_guard = crcli_e2e::Restored::new(child);
    // unshare execs sleep once the namespace is made.
    let start = std::time::Instant::now();
    while std::fs::read_to_string(format!("/proc/{child}/comm"))
        .map_or(true, |c| c.trim() != "sleep")
    {
        assert!(start.elapsed() < READY_TIMEOUT, "unshare did not run sleep");
        std::thread::sleep(Duration::from_millis(10));
    }
    let run = crcli.dump(&wd, target.pid(), &[])?;
    expect_clean_failure(
        &run,
        "dump of a tree with a member in another network namespace",
    );
    assert!(
        run.stderr
            .contains(&format!("pid {child}: a net namespace")),
        "the refusal must name the member and its namespace: {}",
        run.stderr
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        target.try_exit()?,
        None,
        "the refused target must keep running"
    );
    for pid in [target.pid(), child] {
        let st = state(pid);
        assert!(
            st == "S" || st == "R",
            "pid {pid} is in state {st} after the refused dump"
        );
    }
    Ok(())
}

/// An fd crcli does not support yet (a socket) fails the dump with a message naming the fd, its
/// type and the pid; the target keeps running.
#[test]
fn dump_with_a_socket_names_the_fd() -> Result<(), E2eError> {
    if crcli_e2e::in_vm() {
        crcli_e2e::skip("dump_with_a_socket_names_the_fd", "no python3 in the guest");
        return Ok(());
    }
    let python = Prog::python3().expect("python3 is needed on the host");
    let crcli = Crcli::locate()?;
    let wd = Workdir::new("socket")?;
    let mut target = spawn_raw(
        &wd,
        python.program(),
        &[
            "-c",
            "import os, socket, sys, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
             os.dup2(s.fileno(), 7)\n\
             s.close()\n\
             open(sys.argv[1] + '/ready', 'w').close()\n\
             time.sleep(600)\n",
        ],
    )?;
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    let run = crcli.dump(&wd, target.pid(), &[])?;
    expect_clean_failure(&run, "dump of a process with a socket");
    let msg = run.stderr.to_lowercase();
    let pid = target.pid().to_string();
    assert!(
        msg.contains("socket") && msg.contains('7') && msg.contains(&pid),
        "the message must name the fd (7), its type (socket) and the pid ({pid}):\n{}",
        run.stderr
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        target.try_exit()?,
        None,
        "the refused target must keep running"
    );
    let st = state(target.pid());
    assert!(
        st == "S" || st == "R",
        "the refused target is in state {st}"
    );
    Ok(())
}
