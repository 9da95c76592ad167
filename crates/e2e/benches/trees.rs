//! Trees benchmark: wall time of `crcli dump` and `crcli restore -d` of a tree of 100 small
//! processes (`progs/tree100.c`: the root, 9 groups, 10 leaves each), beside CRIU (`criu-peer`,
//! installed by `/work/shared/tools/install-criu`) on the same tree when it is installed.
//!
//! Run with `cargo bench -p crcli-e2e --bench trees` (it builds nothing else: build the binary
//! first with `cargo build --release -p crcli`, or point `CRCLI_BIN` at one). Cases: `tree100`
//! (dynamic) and `tree100-static`.
//!
//! Work directories and images live on tmpfs (`/dev/shm`). Each run: spawn, wait for `ready` (all
//! 100 processes started), let it run 200 ms, check the tree has 100 processes, dump (the
//! original root must die of SIGKILL, and every other member be gone), restore detached, trigger
//! the program and require `PASS` — a run only counts if the restored tree verified itself
//! (every process its memory, every parent its children's pids and exit statuses). Wall time is
//! measured around each tool's process (spawn to exit).
//!
//! Environment: `CRCLI_BENCH_RUNS` (runs per case and tool, default 10), `CRCLI_BENCH_CASES`
//! (subset of `tree100,tree100-static`), `CRCLI_BENCH_TOOLS` (subset of `crcli,criu`). Tools run
//! interleaved (one run of each in turn), so that load changes hit both alike.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crcli_e2e::{
    become_subreaper, last_number, wait_exit, E2eError, Exit, Linkage, Prog, Restored, Workdir,
    EXIT_TIMEOUT, READY_TIMEOUT, RESULT_TIMEOUT,
};

/// A checkpoint tool: how to dump and restore.
struct Tool {
    name: &'static str,
    bin: PathBuf,
    dump_extra: &'static [&'static str],
    restore_extra: &'static [&'static str],
}

/// Runs `bin args` with output into the work directory; returns the exit code and wall time.
fn timed(wd: &Workdir, bin: &Path, args: &[OsString]) -> Result<(i32, Duration), String> {
    let out = std::fs::File::create(wd.file("tool.out")).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(wd.file("tool.err")).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let status = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    Ok((status.code().unwrap_or(-1), start.elapsed()))
}

fn tool_output(wd: &Workdir) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        std::fs::read_to_string(wd.file("tool.out")).unwrap_or_default(),
        std::fs::read_to_string(wd.file("tool.err")).unwrap_or_default()
    )
}

/// One run: dump and restore wall times, whether the pid was kept.
struct Run {
    dump: Duration,
    restore: Duration,
    pid_kept: bool,
}

fn one_run(tool: &Tool, prog: &Prog) -> Result<Run, String> {
    let e = |e: E2eError| e.to_string();
    let wd =
        Workdir::new_in(Path::new("/dev/shm"), &format!("bench-trees-{}", tool.name)).map_err(e)?;
    let mut target = prog.spawn(&wd).map_err(e)?;
    wd.wait_ready(&mut target, READY_TIMEOUT).map_err(e)?;
    std::thread::sleep(Duration::from_millis(200));
    let members = members(target.pid());
    if members.len() != 100 {
        return Err(format!(
            "the tree has {} processes, want 100",
            members.len()
        ));
    }
    let img = wd.img();
    std::fs::create_dir_all(&img).map_err(|err| format!("mkdir {}: {err}", img.display()))?;
    let pid = target.pid();

    let mut args: Vec<OsString> = vec![
        "dump".into(),
        "-t".into(),
        pid.to_string().into(),
        "-D".into(),
        img.clone().into(),
    ];
    args.extend(tool.dump_extra.iter().map(OsString::from));
    let (code, dump) = timed(&wd, &tool.bin, &args)?;
    if code != 0 {
        return Err(format!(
            "{} dump failed ({code}): {}",
            tool.name,
            tool_output(&wd)
        ));
    }
    match wait_exit(&mut target, EXIT_TIMEOUT).map_err(e)? {
        Exit::Signal(9) => {}
        other => {
            return Err(format!(
                "the dumped original ended with {other}, want SIGKILL"
            ))
        }
    }

    // The other members were killed too; their pids must be free for the restore (the orphans
    // of a killed parent are this process's children: it is a subreaper).
    become_subreaper().map_err(e)?;
    wait_gone(&members)?;
    let mut args: Vec<OsString> = vec!["restore".into(), "-D".into(), img.into()];
    args.extend(tool.restore_extra.iter().map(OsString::from));
    let (code, restore) = timed(&wd, &tool.bin, &args)?;
    if code != 0 {
        return Err(format!(
            "{} restore failed ({code}): {}",
            tool.name,
            tool_output(&wd)
        ));
    }
    // crcli prints the pid; CRIU -d prints nothing, but restores at the same pid.
    let out = std::fs::read_to_string(wd.file("tool.out")).unwrap_or_default();
    let restored_pid = last_number(&out).unwrap_or(pid);
    let mut restored = Restored::new(restored_pid);
    wd.trigger(prog.trigger()).map_err(e)?;
    let result = wd
        .wait_result(RESULT_TIMEOUT, restored.as_process())
        .map_err(e)?;
    if result != "PASS" {
        return Err(format!(
            "the restored program reported {result:?}{}",
            wd.details()
        ));
    }
    let _ = wait_exit(&mut restored, EXIT_TIMEOUT);
    Ok(Run {
        dump,
        restore,
        pid_kept: restored_pid == pid,
    })
}

/// The children of every thread of `pid`.
fn children(pid: i32) -> Vec<i32> {
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

/// `root` and all its descendants.
fn members(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let kids = children(out[i]);
        out.extend(kids);
        i += 1;
    }
    out
}

/// Waits until none of `pids` exists any more, reaping those that are this process's children.
fn wait_gone(pids: &[i32]) -> Result<(), String> {
    let start = Instant::now();
    for &pid in pids {
        while Path::new(&format!("/proc/{pid}")).exists() {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
            }
            if start.elapsed() > EXIT_TIMEOUT {
                return Err(format!("pid {pid} of the dumped tree is still there"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    let wanted = |var: &str, name: &str| {
        std::env::var(var).map_or(true, |v| v.split(',').any(|x| x.trim() == name))
    };
    let mut tools = Vec::new();
    if wanted("CRCLI_BENCH_TOOLS", "crcli") {
        match crcli_e2e::crcli() {
            Ok(bin) => tools.push(Tool {
                name: "crcli",
                bin,
                dump_extra: &[],
                restore_extra: &["-d"],
            }),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if wanted("CRCLI_BENCH_TOOLS", "criu") {
        match crcli_e2e::which("criu-peer") {
            Some(bin) => tools.push(Tool {
                name: "criu",
                bin,
                dump_extra: &["--shell-job"],
                restore_extra: &["-d", "--shell-job"],
            }),
            None => eprintln!(
                "SKIPPED criu: criu-peer is not installed (run `bash /work/shared/tools/install-criu`)"
            ),
        }
    }
    let runs = std::env::var("CRCLI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(10);
    let cases = [
        ("tree100", Prog::c("tree100", Linkage::Dynamic)),
        ("tree100-static", Prog::c("tree100", Linkage::Static)),
    ];

    println!("| tool | case | runs | dump ms (median, min, max) | restore ms (median, min, max) | pid kept |");
    println!("|---|---|---|---|---|---|");
    let mut failed = false;
    for (case, prog) in &cases {
        if !wanted("CRCLI_BENCH_CASES", case) {
            continue;
        }
        let mut results: Vec<Vec<Run>> = tools.iter().map(|_| Vec::new()).collect();
        for i in 0..runs {
            for (tool, out) in tools.iter().zip(results.iter_mut()) {
                match one_run(tool, prog) {
                    Ok(r) => out.push(r),
                    Err(err) => {
                        eprintln!("{} {case} run {i}: {err}", tool.name);
                        failed = true;
                    }
                }
            }
        }
        for (tool, rs) in tools.iter().zip(&results) {
            if rs.is_empty() {
                println!("| {} | {case} | 0 | failed | failed | |", tool.name);
                continue;
            }
            let stats = |v: Vec<f64>| {
                let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                let max = v.iter().copied().fold(0.0, f64::max);
                format!("{:.1}, {min:.1}, {max:.1}", median(v))
            };
            let kept = rs.iter().filter(|r| r.pid_kept).count();
            println!(
                "| {} | {case} | {} | {} | {} | {kept}/{} |",
                tool.name,
                rs.len(),
                stats(rs.iter().map(|r| ms(r.dump)).collect()),
                stats(rs.iter().map(|r| ms(r.restore)).collect()),
                rs.len()
            );
        }
    }
    if failed {
        eprintln!("some runs failed (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
