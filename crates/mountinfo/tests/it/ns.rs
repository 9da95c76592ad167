//! Helper: run a test body in a child process inside a fresh, recursively private mount
//! namespace, so the mounts it makes disturb nothing else.
//!
//! The test binary re-executes itself through `unshare --mount --propagation private`
//! (util-linux, or busybox in the VM; a forked child would inherit the harness's threads, and `unshare(CLONE_NEWNS)`
//! fails in a multi-threaded process), with a filter selecting exactly the one test and
//! `CRCLI_MI_NS_CHILD` naming it. In the child, the body runs; in the parent, the child's exit
//! status is the test's result.

use std::process::Command;

const CHILD_VAR: &str = "CRCLI_MI_NS_CHILD";

/// Runs `body` in a private mount namespace. `name` is the test's path inside the test binary
/// (`module::test_name`).
pub fn in_private_mount_ns(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_VAR).as_deref() == Ok(name) {
        // Inside the namespace. `unshare` made / recursively private already; do it again
        // in case the `unshare` found (util-linux or busybox) did not, before any mount.
        rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::PRIVATE
                | rustix::mount::MountPropagationFlags::REC,
        )
        .expect("make / recursively private in the new namespace");
        // A tmpfs over /tmp gives the test a scratch area whose contents vanish with the
        // namespace.
        rustix::mount::mount(
            "crcli-test",
            "/tmp",
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .expect("mount a scratch tmpfs on /tmp in the private namespace");
        body();
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .output()
        .expect("run unshare (util-linux or busybox)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "child for {name} failed: {}\n{stdout}",
        out.status
    );
    // The filter must have run exactly our test, or the child proved nothing.
    assert!(
        stdout.contains("1 passed"),
        "child for {name} did not run the test:\n{stdout}"
    );
}

/// Declares a test whose body runs in a private mount namespace.
macro_rules! ns_test {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            let path = concat!(module_path!(), "::", stringify!($name));
            // Strip the test binary's crate name.
            let name = path.split_once("::").map_or(path, |(_, rest)| rest);
            $crate::ns::in_private_mount_ns(name, || $body);
        }
    };
}
pub(crate) use ns_test;
