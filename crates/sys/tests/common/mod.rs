//! Helpers for crcli-sys's kernel tests: run a test body in a child process inside a private
//! mount namespace of its own, and skip (or, in the VM, fail) when the kernel lacks a feature.
//!
//! How the child is made: the test binary re-executes itself with a filter that selects exactly
//! the calling test and an environment variable naming it; between fork and exec (where the
//! process is single-threaded, as `unshare(CLONE_NEWNS)` requires) it enters a new mount
//! namespace and makes `/` recursively private, so nothing the test mounts reaches the host.
//! The child then mounts a fresh tmpfs on `/tmp` as its scratch space; all of it vanishes with
//! the namespace when the child exits.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

use crcli_sys::features::{Feature, Features};
use rustix::mount::{mount_change, MountPropagationFlags};

/// Set in the re-executed child to the name of the test it must run.
const CHILD_ENV: &str = "CRCLI_SYS_TEST_CHILD";

/// Runs `body` in a child process in a new, private mount namespace, and fails the calling test
/// if the child's test fails or does not run.
///
/// `name` must be the calling test function's name (its libtest path in this binary).
pub fn in_private_mount_ns(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        mount_scratch_tmp();
        body();
        return;
    }
    if let Err(report) = run_child(name) {
        panic!("{report}");
    }
}

/// Whether this process is the re-executed child for test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

/// Re-executes this test binary for test `name` alone, in a new private mount namespace; `Ok`
/// only if the child ran exactly that test and it passed. The child's stderr is forwarded.
pub fn run_child(name: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating the test binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name);
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed: it makes two raw syscalls (unshare, mount) on data prepared before the
    // fork ("/" is short enough for rustix's stack buffer: no allocation), and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
            mount_change(
                "/",
                MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
            )?;
            Ok(())
        });
    }
    let out = cmd
        .output()
        .map_err(|e| format!("spawning the test child for {name}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!(
            "test child for {name} failed ({}):\n{stdout}",
            out.status
        ));
    }
    if !stdout.contains("test result: ok. 1 passed") {
        return Err(format!(
            "test child for {name} did not run exactly one test:\n{stdout}"
        ));
    }
    Ok(())
}

/// Mounts a new tmpfs on `/tmp` (inside the private namespace) so the test has a scratch area
/// that cannot collide with anything and disappears with the namespace.
fn mount_scratch_tmp() {
    rustix::mount::mount(
        "crcli-test",
        "/tmp",
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .expect("mounting a scratch tmpfs on /tmp");
}

/// Whether the test may run: true if the kernel has `feature`. Otherwise, in the VM
/// (`CRCLI_VM=1`) it fails the test; elsewhere it prints `SKIPPED <test>: <why>` to stderr and
/// returns false.
pub fn require(test: &str, feature: Feature) -> bool {
    let features = Features::current();
    if features.has(feature) {
        return true;
    }
    let why = format!(
        "needs {} (Linux {}), which kernel {} lacks",
        feature.name(),
        feature.since(),
        features.kernel_release()
    );
    if std::env::var("CRCLI_VM").as_deref() == Ok("1") {
        panic!("{test}: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Creates directory `path` and everything above it.
pub fn mkdir_p(path: &str) {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("creating {path}: {e}"));
}

/// Mounts a new tmpfs at `target` (which must exist).
pub fn mount_tmpfs(source: &str, target: &str) {
    rustix::mount::mount(
        source,
        target,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap_or_else(|e| panic!("mounting tmpfs on {target}: {e}"));
}

/// Bind-mounts `source` on `target`.
pub fn bind(source: &str, target: &str) {
    rustix::mount::mount_bind(source, target)
        .unwrap_or_else(|e| panic!("bind-mounting {source} on {target}: {e}"));
}
