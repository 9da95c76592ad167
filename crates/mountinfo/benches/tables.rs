//! Benchmark: building a `MountTable` of 1,000 and 10,000 mounts by each path (mountinfo;
//! listmount+statmount; both merged), beside util-linux `findmnt --list` on the same table.
//!
//! Run as root: `cargo bench -p crcli-mountinfo --bench tables`. The binary re-executes itself
//! in a new, recursively private mount namespace (`unshare --mount --propagation private`),
//! mounts a tmpfs on /tmp there and bind-mounts one directory N times, so nothing reaches the
//! host's mount table; the namespace dies with the child. `/proc/sys/fs/mount-max` (a global
//! sysctl) is raised only if it is too small, and restored afterwards.
//!
//! Each figure is the median (and minimum) of several runs, in milliseconds, with the cost
//! per mount in microseconds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crcli_mountinfo::kernel::Namespace;
use crcli_mountinfo::MountTable;

const CHILD_VAR: &str = "CRCLI_MI_BENCH_CHILD";
const SIZES: [usize; 4] = [1_000, 2_500, 5_000, 10_000];
const RUNS: usize = 15;

fn main() {
    if std::env::var_os(CHILD_VAR).is_none() {
        let exe = std::env::current_exe().expect("current_exe");
        let status = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(exe)
            .env(CHILD_VAR, "1")
            .status()
            .expect("run unshare (util-linux); the benchmark needs root");
        std::process::exit(status.code().unwrap_or(1));
    }
    child();
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed()
}

fn findmnt() {
    let st = Command::new("findmnt")
        .arg("--list")
        .stdout(Stdio::null())
        .status()
        .expect("run findmnt (util-linux)");
    assert!(st.success(), "findmnt --list failed");
}

fn child() {
    let base = Path::new("/tmp");
    rustix::mount::mount(
        "bench",
        base,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .expect("mount a tmpfs on /tmp in the private namespace");
    let src = base.join("src");
    std::fs::create_dir(&src).unwrap();

    let max_path = "/proc/sys/fs/mount-max";
    let old_max: usize = std::fs::read_to_string(max_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(usize::MAX);
    let have = MountTable::read_mountinfo(None).unwrap().len();
    let need = have + SIZES[SIZES.len() - 1] + 100;
    let raised = old_max < need;
    if raised {
        std::fs::write(max_path, need.to_string()).expect("raise fs.mount-max");
    }

    println!(
        "kernel {}, {} CPUs, findmnt: {}",
        rustix::system::uname().release().to_string_lossy(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        String::from_utf8_lossy(
            &Command::new("findmnt")
                .arg("--version")
                .output()
                .unwrap()
                .stdout
        )
        .trim()
    );
    println!(
        "load average at the start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    println!("| mounts | mountinfo ms (min) | µs/mount | listmount+statmount ms (min) | µs/mount | merged ms (min) | findmnt --list ms (min) | µs/mount |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");

    let mut made = 0;
    for &n in &SIZES {
        while made < n {
            let d = base.join(format!("m{made}"));
            std::fs::create_dir(&d).unwrap();
            rustix::mount::mount_bind(&src, &d).expect("bind mount");
            made += 1;
        }
        let total = MountTable::read_mountinfo(None).unwrap().len();
        assert!(total >= n);
        // Interleaved, so that load from elsewhere on the machine hits every method alike.
        let mut runs: [Vec<Duration>; 4] = Default::default();
        for _ in 0..RUNS {
            runs[0].push(time(|| MountTable::read_mountinfo(None).unwrap()));
            runs[1].push(time(|| MountTable::from_listmount(None).unwrap()));
            runs[2].push(time(|| MountTable::of(Namespace::Current).unwrap()));
            runs[3].push(time(findmnt));
        }
        let [mi, sm, both, fm] = runs.map(|mut r| {
            r.sort();
            (r[RUNS / 2], r[0])
        });
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let per = |d: Duration| d.as_secs_f64() * 1e6 / total as f64;
        println!(
            "| {total} | {:.2} ({:.2}) | {:.2} | {:.2} ({:.2}) | {:.2} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2} |",
            ms(mi.0), ms(mi.1), per(mi.0),
            ms(sm.0), ms(sm.1), per(sm.0),
            ms(both.0), ms(both.1),
            ms(fm.0), ms(fm.1), per(fm.0),
        );
    }

    println!();
    println!(
        "load average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if raised {
        std::fs::write(max_path, old_max.to_string()).expect("restore fs.mount-max");
    }
}
