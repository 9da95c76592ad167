//! Dump and restore benchmark: wall time and peak RSS of `crcli dump` / `crcli restore -d`, and of
//! CRIU (`criu-peer`, installed by `/work/shared/tools/install-criu`) when it is installed.
//!
//! Run with `cargo bench -p crcli-e2e` (it builds nothing else: build the binary first with
//! `cargo build --release -p crcli`, or point `CRCLI_BIN` at one). Cases:
//! - `heap-1GiB`: the `heap` test program with 1 GiB of dirty anonymous memory (plus its small
//!   extras), dynamic;
//! - `counter`: the small `counter` program, dynamic.
//!
//! Work directories and images live on tmpfs (`/dev/shm`). Each run: spawn, wait for `ready`,
//! let it run 200 ms, dump (the original is killed), restore detached, trigger the program and
//! require `PASS` — a run only counts if the restored program verified itself.
//!
//! Peak RSS: each checkpoint tool runs under a small helper (this binary re-executed as
//! `__rusage`), which waits for it and reports `getrusage(RUSAGE_CHILDREN).ru_maxrss`; the helper
//! has no other children, so that is the tool's own peak RSS (the restored process is not counted:
//! the tool does not wait for it with `-d`).
//!
//! Runs alternate between the tools (crcli, CRIU, crcli, …) so that load from elsewhere on the
//! machine hits both alike; the median, minimum and maximum are printed, and the load average
//! before and after.
//!
//! Environment: `CRCLI_BENCH_RUNS` (runs per case, default 5 for the small case, 3 for 1 GiB),
//! `CRCLI_BENCH_CASES` (comma-separated subset of `heap-1GiB,counter`), `CRCLI_BENCH_TOOLS`
//! (subset of `crcli,criu`).
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod tools;

use crcli_e2e::{
    become_subreaper, last_number, wait_exit, E2eError, Exit, Linkage, Prog, Restored, Workdir,
    EXIT_TIMEOUT, READY_TIMEOUT, RESULT_TIMEOUT,
};
use tools::{median, ms, wanted, Tool};

/// One measured command: exit code, wall time, peak RSS in KiB.
#[derive(Clone, Copy, Debug)]
struct Measured {
    code: i32,
    wall: Duration,
    maxrss_kib: i64,
}

/// Helper mode: `__rusage OUT ERR PROGRAM ARGS...` runs the program with stdout/stderr into the
/// files, waits, and prints `code wall_ns maxrss_kib`.
fn rusage_helper(args: &[OsString]) -> ExitCode {
    let [out, err, program, rest @ ..] = args else {
        eprintln!("usage: __rusage OUT ERR PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    let files = std::fs::File::create(out).and_then(|o| Ok((o, std::fs::File::create(err)?)));
    let (out, err) = match files {
        Ok(f) => f,
        Err(e) => {
            eprintln!("__rusage: creating the output files: {e}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status();
    let wall = start.elapsed();
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            eprintln!("__rusage: running {program:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let usage = match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("__rusage: getrusage: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{} {} {}",
        status.code().unwrap_or(-1),
        wall.as_nanos(),
        usage.max_rss()
    );
    ExitCode::SUCCESS
}

/// Runs `program args` under the helper; output files go into the work directory.
fn measure(wd: &Workdir, program: &Path, args: &[OsString]) -> Result<Measured, String> {
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(me)
        .arg("__rusage")
        .arg(wd.file("tool.out"))
        .arg(wd.file("tool.err"))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running the rusage helper: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<i128> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    match fields[..] {
        [code, wall_ns, rss] => Ok(Measured {
            code: code as i32,
            wall: Duration::from_nanos(wall_ns as u64),
            maxrss_kib: rss as i64,
        }),
        _ => Err(format!(
            "rusage helper said {text:?} / {:?}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// One run's numbers.
struct Run {
    dump: Measured,
    restore: Measured,
    image_bytes: u64,
    pid_kept: bool,
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn one_run(tool: &Tool, prog: &Prog) -> Result<Run, String> {
    let e = |e: E2eError| e.to_string();
    let wd = Workdir::new_in(Path::new("/dev/shm"), &format!("bench-{}", tool.name)).map_err(e)?;
    let mut target = prog.spawn(&wd).map_err(e)?;
    wd.wait_ready(&mut target, READY_TIMEOUT).map_err(e)?;
    std::thread::sleep(Duration::from_millis(200));
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
    let dump = measure(&wd, &tool.bin, &args)?;
    if dump.code != 0 {
        return Err(format!(
            "{} dump failed ({}): {}",
            tool.name,
            dump.code,
            tools::output(&wd)
        ));
    }
    let image_bytes = dir_bytes(&img);
    match wait_exit(&mut target, EXIT_TIMEOUT).map_err(e)? {
        Exit::Signal(9) => {}
        other => {
            return Err(format!(
                "the dumped original ended with {other}, want SIGKILL"
            ))
        }
    }

    become_subreaper().map_err(e)?;
    let mut args: Vec<OsString> = vec!["restore".into(), "-D".into(), img.into()];
    args.extend(tool.restore_extra.iter().map(OsString::from));
    let restore = measure(&wd, &tool.bin, &args)?;
    if restore.code != 0 {
        return Err(format!(
            "{} restore failed ({}): {}",
            tool.name,
            restore.code,
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
        image_bytes,
        pid_kept: restored_pid == pid,
    })
}

/// "median [min-max]" of milliseconds.
fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.1} [{min:.1}-{max:.1}]", median(v.to_vec()))
}

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "__rusage") {
        return rusage_helper(&args[1..]);
    }
    let tools = match tools::find() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let runs_env = std::env::var("CRCLI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let cases = [
        (
            "heap-1GiB",
            Prog::c("heap", Linkage::Dynamic).arg("1024"),
            runs_env.unwrap_or(3),
            true,
        ),
        (
            "counter",
            Prog::c("counter", Linkage::Dynamic),
            runs_env.unwrap_or(5),
            false,
        ),
    ];

    println!("load average at start: {}", loadavg());
    println!("| tool | case | runs | dump ms median [min-max] | restore ms median [min-max] | dump GB/s (median) | peak RSS dump / restore MiB | image MiB | pid kept |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for (case, prog, runs, big) in &cases {
        if !wanted("CRCLI_BENCH_CASES", case) {
            continue;
        }
        // Runs alternate between the tools, so that load from elsewhere hits them alike.
        let mut results: Vec<Vec<Run>> = tools.iter().map(|_| Vec::new()).collect();
        let mut gave_up = vec![false; tools.len()];
        for i in 0..*runs {
            for (t, tool) in tools.iter().enumerate() {
                if gave_up[t] {
                    continue;
                }
                match one_run(tool, prog) {
                    Ok(r) => results[t].push(r),
                    Err(err) => {
                        eprintln!("{} {case} run {i}: {err}", tool.name);
                        failed = true;
                        gave_up[t] = true;
                    }
                }
            }
        }
        for (tool, results) in tools.iter().zip(&results) {
            if results.is_empty() {
                println!("| {} | {case} | 0 | failed | failed | | | | |", tool.name);
                continue;
            }
            let dump: Vec<f64> = results.iter().map(|r| ms(r.dump.wall)).collect();
            let restore: Vec<f64> = results.iter().map(|r| ms(r.restore.wall)).collect();
            let dmed = median(dump.clone());
            let rss_d = results.iter().map(|r| r.dump.maxrss_kib).max().unwrap_or(0);
            let rss_r = results
                .iter()
                .map(|r| r.restore.maxrss_kib)
                .max()
                .unwrap_or(0);
            let img = results.iter().map(|r| r.image_bytes).max().unwrap_or(0);
            let gbps = if *big {
                format!("{:.2}", (1u64 << 30) as f64 / 1e9 / (dmed / 1e3))
            } else {
                "-".into()
            };
            let kept = results.iter().filter(|r| r.pid_kept).count();
            println!(
                "| {} | {case} | {} | {} | {} | {gbps} | {:.1} / {:.1} | {:.1} | {kept}/{} |",
                tool.name,
                results.len(),
                spread(&dump),
                spread(&restore),
                rss_d as f64 / 1024.0,
                rss_r as f64 / 1024.0,
                img as f64 / (1u64 << 20) as f64,
                results.len()
            );
        }
    }
    println!("load average at end: {}", loadavg());
    if failed {
        eprintln!("some runs failed (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
