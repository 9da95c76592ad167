//! Mount namespace benchmark: wall time of `crcli_restore::build_namespace_with` (making a
//! dumped mount namespace again, issue #7) with each method the kernel has — the fallback
//! (`unshare`: a copy of every mount of crcli's namespace, built on, `pivot_root`ed out of and
//! detached) and Linux 7.0's `open_tree(OPEN_TREE_NAMESPACE)` (only the dumped mounts) — while
//! crcli's own namespace holds 0 and then `CRCLI_BENCH_EXTRA_MOUNTS` (default 200) extra mounts,
//! as on a container host.
//!
//! Run with `cargo bench -p crcli-e2e --bench mountns` (root; on Linux < 7.0 only the fallback
//! is measured), and in the 7.x VM with
//! `cargo xtask vm-test --guest-binary $CARGO_TARGET_DIR/release/deps/mountns-HASH` (the bench
//! executable `cargo bench --no-run` printed). Under TCG only the ratio between the methods
//! means anything.
//!
//! The bench re-runs itself in a private mount namespace (`unshare --mount --propagation
//! private`), so the extra mounts never reach the machine's. The dumped namespace: `sh` in its
//! own mount namespace (the extra mounts detached first) with a tmpfs holding files, a
//! read-only bind of part of it, a proc and two shared peers; it is dumped once with
//! `crcli_dump::dump`. Each run builds the namespace, checks it holds the dumped number of
//! mounts, and drops it; only the build is timed. Methods run interleaved. Also printed: how
//! many mounts the kernel made during one build (from the increasing unique mount ids).
//!
//! Environment: `CRCLI_BENCH_RUNS` (runs per method and case, default 30),
//! `CRCLI_BENCH_EXTRA_MOUNTS` (default 200).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crcli_restore::{build_namespace_with, NsBuildMethod};
use crcli_sys::mount::{
    fsconfig_create, fsmount, fsopen, move_mount, open_tree, FsMountFlags, FsOpenFlags,
    MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};

const CHILD: &str = "CRCLI_MNTNS_BENCH_CHILD";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The unique id of the next mount the kernel makes (a clone of `/`, dropped at once).
fn next_mount_id() -> Result<u64, String> {
    let clone = open_tree(
        rustix::fs::CWD,
        "/",
        OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC,
    )
    .map_err(|e| format!("clone /: {e}"))?;
    crcli_sys::statx::fstatx_mnt_id_unique(&clone)
        .map_err(|e| format!("statx: {e}"))?
        .ok_or_else(|| "no unique mount id".to_owned())
}

/// Mounts `n` empty tmpfs instances under `dir` (in this process's private namespace).
fn add_mounts(dir: &Path, n: usize) -> Result<(), String> {
    for i in 0..n {
        let at = dir.join(format!("m{i}"));
        std::fs::create_dir_all(&at).map_err(|e| format!("mkdir {}: {e}", at.display()))?;
        let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| e.to_string())?;
        fsconfig_create(&fs).map_err(|e| e.to_string())?;
        let m = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
            .map_err(|e| e.to_string())?;
        move_mount(
            &m,
            "",
            rustix::fs::CWD,
            &at,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| format!("mount at {}: {e}", at.display()))?;
    }
    Ok(())
}

fn own_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Dumps a small mount namespace (see the module documentation) into `img`; the number of
/// mounts in it.
fn dump_namespace(d: &Path, extra: &Path, img: &Path) -> Result<usize, String> {
    let d = d.display();
    let script = format!(
        "set -e; umount -l {extra} 2>/dev/null || true; mkdir -p {d}/a {d}/b {d}/c {d}/s1 {d}/s2; \
         mount -t tmpfs crcli-bench {d}/a; mkdir {d}/a/sub; echo x > {d}/a/sub/f; \
         mount --bind {d}/a/sub {d}/b; mount -o remount,bind,ro {d}/b; mount -t proc proc {d}/c; \
         mount -t tmpfs crcli-shared {d}/s1; mount --make-shared {d}/s1; mount --bind {d}/s1 {d}/s2; \
         echo ready; exec sleep 1000",
        extra = extra.display()
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--fork", "sh", "-c"])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn unshare: {e}"))?;
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
    let root = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let result = match (read, root) {
        (Ok(_), Some(root)) if line.trim() == "ready" => {
            crcli_dump::dump(root, img, &crcli_dump::DumpOptions::default())
                .map(|_| ())
                .map_err(|e| format!("dump: {e:#}"))
        }
        _ => Err(format!("the namespace's setup failed: {script}")),
    };
    if let Some(p) = root.and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let image = crcli_image::Image::open(img).map_err(|e| e.to_string())?;
    let n = image
        .inventory()
        .tree
        .mount_ns
        .as_ref()
        .map_or(0, |ns| ns.mounts.len());
    Ok(n)
}

/// One timed build; checks the namespace holds `dumped` mounts (through its nsfs fd).
fn build_once(img: &Path, method: NsBuildMethod, dumped: usize) -> Result<Duration, String> {
    let t = Instant::now();
    let ns =
        build_namespace_with(img, &[], method).map_err(|e| format!("{}: {e}", method.name()))?;
    let took = t.elapsed();
    let info =
        crcli_sys::nsfs::ns_mnt_get_info(&ns).map_err(|e| format!("NS_MNT_GET_INFO: {e}"))?;
    // The dumped mounts, and the one under the root that a namespace may have (the namespace's
    // own root mount, when crcli's has one under its `/`).
    let n = info.nr_mounts as usize;
    if n != dumped && n != dumped + 1 {
        return Err(format!(
            "{}: the namespace holds {n} mounts, want {dumped} (+ 1)",
            method.name()
        ));
    }
    drop(ns);
    Ok(took)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn measure(img: &Path, dumped: usize, extra: usize, runs: usize) -> Result<(), String> {
    let mut methods = vec![NsBuildMethod::Unshare];
    if NsBuildMethod::current() == NsBuildMethod::OpenTreeNamespace {
        methods.push(NsBuildMethod::OpenTreeNamespace);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); methods.len()];
    for &m in &methods {
        build_once(img, m, dumped)?; // warm-up
        let first = next_mount_id()?;
        build_once(img, m, dumped)?;
        let made = next_mount_id()? - first - 1;
        println!(
            "mountns: extra={extra} own_mounts={} method={} mounts_made_per_build={made}",
            own_mounts(),
            m.name()
        );
    }
    for _ in 0..runs {
        for (k, &m) in methods.iter().enumerate() {
            times[k].push(build_once(img, m, dumped)?);
        }
    }
    for (k, m) in methods.iter().enumerate() {
        let t = &mut times[k];
        t.sort();
        println!(
            "| {} | {extra} | {} | {} | {:.3} | {:.3} | {:.3} |",
            m.name(),
            own_mounts(),
            t.len(),
            ms(t[t.len() / 2]),
            ms(t[0]),
            ms(t[t.len() - 1])
        );
    }
    Ok(())
}

fn child() -> Result<(), String> {
    // A private copy of the namespace this bench was started in: nothing propagates out.
    crcli_sys::mount::mount_setattr(
        rustix::fs::CWD,
        "/",
        crcli_sys::mount::MountSetattrFlags::AT_RECURSIVE,
        &crcli_sys::mount::MountAttr {
            propagation: crcli_sys::mount::MountPropagation::PRIVATE,
            ..Default::default()
        },
    )
    .map_err(|e| format!("make / private: {e}"))?;
    let runs = env_num("CRCLI_BENCH_RUNS", 30);
    let extra = env_num("CRCLI_BENCH_EXTRA_MOUNTS", 200);
    let base = std::env::var_os("CRCLI_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(&base).map_err(|e| format!("tempdir: {e}"))?;
    // The extra mounts hang below one tmpfs, so that the dumped namespace detaches them at once.
    let holder = dir.path().join("extra");
    std::fs::create_dir_all(&holder).map_err(|e| e.to_string())?;
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| e.to_string())?;
    fsconfig_create(&fs).map_err(|e| e.to_string())?;
    let m = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| e.to_string())?;
    move_mount(
        &m,
        "",
        rustix::fs::CWD,
        &holder,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| format!("mount the holder: {e}"))?;
    let img = dir.path().join("img");
    let dumped = dump_namespace(dir.path(), &holder, &img)?;
    println!(
        "mountns: kernel {}, {dumped} dumped mounts, {runs} runs per method and case; ms per build",
        rustix::system::uname().release().to_string_lossy()
    );
    println!("| method | extra mounts | crcli's mounts | runs | median ms | min | max |");
    println!("|---|---|---|---|---|---|---|");
    measure(&img, dumped, 0, runs)?;
    add_mounts(&holder, extra)?;
    measure(&img, dumped, extra, runs)?;
    Ok(())
}

fn main() -> ExitCode {
    // fds inherited from whatever started the bench would be inherited by the dumped process,
    // on mounts its namespace does not have (a dump refuses those). Nothing in this process
    // owns an fd above 2 yet.
    let _ = crcli_sys::fdtable::close_range(3, u32::MAX);
    if std::env::var_os(CHILD).is_some() {
        return match child() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mountns bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED mountns bench: needs root (mount namespaces)");
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(exe)
        .env(CHILD, "1")
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("mountns bench: the measuring child failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mountns bench: spawn unshare: {e}");
            ExitCode::FAILURE
        }
    }
}
