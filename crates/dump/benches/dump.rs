//! Dump benchmark: wall time, throughput and peak RSS of a dump of (a) a process with 1 GiB of
//! dirty anonymous memory and (b) a small process, compared with CRIU when `criu-peer`
//! (/work/shared/tools/install-criu) is installed.
//!
//! `cargo bench -p crcli-dump --bench dump`. Environment:
//! - `CRCLI_BENCH_MIB` (default 1024): the dirty memory of the big target;
//! - `CRCLI_BENCH_DIR` (default the system temp dir): where images are written (use a tmpfs such
//!   as /dev/shm to leave the disk out);
//! - `CRCLI_BENCH_RUNS` (default 3): runs per case; the median, minimum and maximum are
//!   reported, crcli and CRIU runs alternate (so that load from elsewhere hits both alike), and
//!   the load average is printed before and after.
//!
//! Each dump runs in a fresh process (this binary re-executed with `CRCLI_BENCH_CHILD` set) that
//! does nothing but the dump and reports its own peak RSS (`VmHWM`), so the number is what a
//! `crcli dump` process needs. The targets are dumped with `leave_running` and reused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crcli_dump::{dump, DumpOptions};

fn main() {
    if let Ok(spec) = std::env::var("CRCLI_BENCH_CHILD") {
        child(&spec);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mib: u64 = std::env::var("CRCLI_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 16 } else { 1024 });
    let runs: usize = std::env::var("CRCLI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let base = std::env::var_os("CRCLI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("crcli-bench-")
        .tempdir_in(&base)
        .expect("work dir");
    let bin = build_target(work.path());
    let criu = which("criu-peer");
    println!(
        "images in {} ({} runs per case, crcli and CRIU interleaved; median [min-max])",
        base.display(),
        runs
    );
    println!("load average at start: {}", loadavg());
    if criu.is_none() {
        println!("criu-peer not installed (/work/shared/tools/install-criu): no CRIU comparison");
    }

    for (name, mode, env_mib) in [
        ("small process", "plain", None),
        ("dirty anonymous memory", "big", Some(mib)),
    ] {
        let target = Target::spawn(&bin, work.path(), mode, env_mib);
        let label = match env_mib {
            Some(m) => format!("{name} ({m} MiB)"),
            None => name.to_owned(),
        };
        let mut results = Vec::new();
        let mut criu_walls = Vec::new();
        let mut criu_failed = false;
        for i in 0..runs {
            let dir = work.path().join(format!("img-{mode}-{i}"));
            results.push(run_crcli(target.pid, &dir));
            std::fs::remove_dir_all(&dir).expect("remove image");
            if let (Some(criu), false) = (&criu, criu_failed) {
                let dir = work.path().join(format!("criu-{mode}-{i}"));
                match run_criu(criu, target.pid, &dir) {
                    Ok(w) => criu_walls.push(w),
                    Err(e) => {
                        println!("criu  {label}: dump failed: {e}");
                        criu_failed = true;
                    }
                }
                std::fs::remove_dir_all(&dir).expect("remove criu image");
            }
        }
        let walls: Vec<Duration> = results.iter().map(|r| r.wall).collect();
        let frozen: Vec<Duration> = results.iter().map(|r| r.frozen).collect();
        let wall = median(&walls);
        let bytes = results[0].bytes;
        let hwm = results.iter().map(|r| r.hwm_kib).max().unwrap_or(0);
        // Throughput only means something for the big target.
        let rate = |wall: Duration| match env_mib {
            Some(_) => format!(", {:.2} GB/s", bytes as f64 / wall.as_secs_f64() / 1e9),
            None => String::new(),
        };
        println!(
            "crcli {label}: {} ms wall, {:.1} ms frozen, {:.1} MiB saved{}, peak RSS {:.1} MiB",
            spread(&walls),
            median(&frozen).as_secs_f64() * 1e3,
            bytes as f64 / (1 << 20) as f64,
            rate(wall),
            hwm as f64 / 1024.0
        );
        if !criu_walls.is_empty() {
            println!(
                "criu  {label}: {} ms wall{}",
                spread(&criu_walls),
                rate(median(&criu_walls))
            );
        }
    }
    println!("load average at end: {}", loadavg());
}

/// The median of `v` (not empty).
fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// "median [min-max]" in milliseconds.
fn spread(v: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let min = v.iter().min().copied().unwrap_or_default();
    let max = v.iter().max().copied().unwrap_or_default();
    format!("{:.1} [{:.1}-{:.1}]", ms(median(v)), ms(min), ms(max))
}

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// One `criu-peer dump --leave-running` of `pid` into `dir`; its wall time.
fn run_criu(criu: &Path, pid: i32, dir: &Path) -> Result<Duration, String> {
    std::fs::create_dir(dir).expect("criu dir");
    let t0 = Instant::now();
    let status = Command::new(criu)
        .args([
            "dump",
            "--leave-running",
            "--shell-job",
            "-t",
            &pid.to_string(),
            "-D",
        ])
        .arg(dir)
        .arg("-o")
        .arg(dir.join("dump.log"))
        .status()
        .map_err(|e| format!("running criu: {e}"))?;
    let wall = t0.elapsed();
    if !status.success() {
        let log = std::fs::read_to_string(dir.join("dump.log")).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("Error")).collect();
        return Err(format!("{status}: {}", errors.join(" | ")));
    }
    Ok(wall)
}

struct Result1 {
    wall: Duration,
    frozen: Duration,
    bytes: u64,
    hwm_kib: u64,
}

/// Runs one dump in a fresh process; parses what it reports.
fn run_crcli(pid: i32, dir: &Path) -> Result1 {
    let t0 = Instant::now();
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .env("CRCLI_BENCH_CHILD", format!("{pid}:{}", dir.display()))
        .output()
        .expect("run the dump child");
    let wall = t0.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dump child failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut fields = text
        .split_whitespace()
        .map(|w| w.parse::<u64>().expect("number"));
    let (_inner, frozen_us, bytes, hwm_kib) = (
        fields.next().unwrap(),
        fields.next().unwrap(),
        fields.next().unwrap(),
        fields.next().unwrap(),
    );
    Result1 {
        wall,
        frozen: Duration::from_micros(frozen_us),
        bytes,
        hwm_kib,
    }
}

/// In the re-executed child: one dump, then "elapsed_us frozen_us bytes vmhwm_kib".
fn child(spec: &str) {
    let (pid, dir) = spec.split_once(':').expect("pid:dir");
    let s = dump(
        pid.parse().expect("pid"),
        Path::new(dir),
        &DumpOptions {
            leave_running: true,
        },
    )
    .expect("dump");
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("VmHWM");
    println!(
        "{} {} {} {hwm}",
        s.elapsed.as_micros(),
        s.frozen.as_micros(),
        s.page_bytes
    );
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The target program, compiled by build.rs.
fn build_target(_work: &Path) -> PathBuf {
    PathBuf::from(env!("CRCLI_DUMP_TARGET"))
}

/// A target process, killed when dropped.
struct Target {
    child: Child,
    pid: i32,
}

impl Target {
    fn spawn(bin: &Path, work: &Path, mode: &str, mib: Option<u64>) -> Target {
        let dir = work.join(format!("target-{mode}"));
        std::fs::create_dir(&dir).expect("target dir");
        // stdout to a file, not a pipe to this process: CRIU refuses a pipe whose other end is
        // outside the dumped tree.
        let log = dir.join("log");
        let mut cmd = Command::new(bin);
        cmd.arg(&dir)
            .arg(mode)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"));
        if let Some(m) = mib {
            cmd.env("TARGET_MIB", m.to_string());
        }
        let child = cmd.spawn().expect("spawn target");
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(p) = text.lines().find_map(|l| l.strip_prefix("ready ")) {
                break p.trim().parse().expect("pid");
            }
            assert!(
                Instant::now() < deadline,
                "the target never got ready: {text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Target { child, pid }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
