//! What the threads and trees benchmarks share: each spawns a test program, dumps it with each
//! checkpoint tool (crcli, and CRIU's `criu-peer` when installed), restores it detached and
//! requires the restored program to verify itself (`PASS`); wall time is measured around each
//! tool's process. Tools run interleaved (one run of each in turn), so that load changes hit
//! both alike.
//!
//! Environment: `CRCLI_BENCH_RUNS` (runs per case and tool, default 10), `CRCLI_BENCH_CASES`
//! (a subset of the bench's cases), `CRCLI_BENCH_TOOLS` (subset of `crcli,criu`).

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::tools::{self, median, ms, wanted, Tool};
use crcli_e2e::{
    become_subreaper, last_number, wait_exit, E2eError, Exit, Prog, Restored, Workdir,
    EXIT_TIMEOUT, READY_TIMEOUT, RESULT_TIMEOUT,
};

/// One benchmark: its name (for work directories), its cases, and the check of a started
/// program.
pub struct Bench {
    /// Short name, e.g. `threads`.
    pub name: &'static str,
    /// The cases: a name and the program.
    pub cases: Vec<(&'static str, Prog)>,
    /// Checks the started program (given its pid) has the expected shape; returns the pids,
    /// besides the root, that must be gone after the dump killed it.
    pub check_started: fn(i32) -> Result<Vec<i32>, String>,
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

/// One run: dump and restore wall times, whether the pid was kept.
struct Run {
    dump: Duration,
    restore: Duration,
    pid_kept: bool,
}

fn one_run(bench: &Bench, tool: &Tool, prog: &Prog) -> Result<Run, String> {
    let e = |e: E2eError| e.to_string();
    let wd = Workdir::new_in(
        Path::new("/dev/shm"),
        &format!("bench-{}-{}", bench.name, tool.name),
    )
    .map_err(e)?;
    let mut target = prog.spawn(&wd).map_err(e)?;
    wd.wait_ready(&mut target, READY_TIMEOUT).map_err(e)?;
    std::thread::sleep(Duration::from_millis(200));
    let others = (bench.check_started)(target.pid())?;
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
            tools::output(&wd)
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

    // The other processes were killed too; their pids must be free for the restore (the orphans
    // of a killed parent are this process's children: it is a subreaper).
    wait_gone(&others)?;
    become_subreaper().map_err(e)?;
    let mut args: Vec<OsString> = vec!["restore".into(), "-D".into(), img.into()];
    args.extend(tool.restore_extra.iter().map(OsString::from));
    let (code, restore) = timed(&wd, &tool.bin, &args)?;
    if code != 0 {
        return Err(format!(
            "{} restore failed ({code}): {}",
            tool.name,
            tools::output(&wd)
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

/// Runs every case of `bench` with every tool found, interleaved, and prints a Markdown table.
pub fn run(bench: &Bench) -> ExitCode {
    let tools = match tools::find() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runs = std::env::var("CRCLI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(10);
    println!("| tool | case | runs | dump ms (median, min, max) | restore ms (median, min, max) | pid kept |");
    println!("|---|---|---|---|---|---|");
    let mut failed = false;
    for (case, prog) in &bench.cases {
        if !wanted("CRCLI_BENCH_CASES", case) {
            continue;
        }
        let mut results: Vec<Vec<Run>> = tools.iter().map(|_| Vec::new()).collect();
        for i in 0..runs {
            for (tool, out) in tools.iter().zip(results.iter_mut()) {
                match one_run(bench, tool, prog) {
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
