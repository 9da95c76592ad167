//! Making a dumped mount namespace again ([`crcli_restore::build_namespace`]) on the real kernel:
//! `unshare --mount --propagation private` runs sh, which mounts a tmpfs with files, binds a
//! sub-directory of it read-only elsewhere, mounts proc, stacks a second tmpfs over part of the
//! first and shares two mounts in one peer group; `crcli dump` (the binary: `$CRCLI_BIN`, or
//! the one next to this test) dumps it and the namespace dies with the kill. The namespace made
//! from the image is then joined by a thread of this test, which checks every file, the
//! stacking, the attributes and the sharing — and crcli's own mount table is unchanged.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crcli_restore::{build_namespace, ExternalPath};

fn find_crcli() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("CRCLI_BIN") {
        return Some(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent();
    if dir.is_some_and(|d| d.ends_with("deps")) {
        dir = dir.and_then(Path::parent);
    }
    dir.map(|d| d.join("crcli")).filter(|b| b.is_file())
}

/// The crcli binary, or None after saying SKIPPED (a failure in the VM).
fn crcli(test: &str) -> Option<PathBuf> {
    let bin = find_crcli();
    if bin.is_none() {
        assert!(
            std::env::var_os("CRCLI_VM").is_none(),
            "{test}: the crcli binary is missing in the VM"
        );
        eprintln!("SKIPPED {test}: no crcli binary (cargo build -p crcli, or set CRCLI_BIN)");
    }
    bin
}

/// Runs `setup` in sh in a new private mount namespace, dumps the namespace's `sleep` with
/// `crcli dump` (which kills it) into `img`; returns the scratch directory.
fn dump_namespace(
    crcli: &Path,
    setup: &str,
    extra: &dyn Fn(&str) -> Vec<String>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let script = format!(
        "set -e; mkdir -p {d}/a {d}/b {d}/c {d}/s1 {d}/s2 {d}/host; {}; echo ready; exec sleep 1000",
        setup.replace("{d}", &d)
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--fork", "sh", "-c"])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn unshare");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready");
    assert_eq!(line.trim(), "ready", "setup failed: {script}");
    let root: i32 =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
            .expect("children of unshare")
            .trim()
            .parse()
            .expect("one child");
    let out = Command::new(crcli)
        .args(["dump", "-t", &root.to_string(), "-D"])
        .arg(dir.path().join("img"))
        .args(extra(&d))
        .output()
        .expect("run crcli dump");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "crcli dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Runs `f` in a thread that joined mount namespace `ns`.
fn inside<T: Send>(ns: &OwnedFd, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            crcli_sys::mntns::unshare_fs().expect("unshare(CLONE_FS)");
            crcli_sys::mntns::setns_mnt(ns.as_fd()).expect("setns into the new namespace");
            f()
        })
        .join()
        .expect("thread inside the namespace")
    })
}

fn own_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo")
}

#[test]
fn a_dumped_mount_namespace_is_made_again_mount_by_mount() {
    let Some(crcli) = crcli("a_dumped_mount_namespace_is_made_again_mount_by_mount") else {
        return;
    };
    let dir = dump_namespace(
        &crcli,
        "mount -t tmpfs -o size=2m,mode=0750 crcli-ns {d}/a; mkdir {d}/a/sub {d}/a/hidden; \
         echo hello > {d}/a/sub/f; echo under > {d}/a/hidden/g; \
         mount --bind {d}/a/sub {d}/b; mount -o remount,bind,ro,nosuid {d}/b; \
         mount -t proc proc {d}/c; \
         mount -t tmpfs crcli-over {d}/a/hidden; echo over > {d}/a/hidden/h; \
         mount -t tmpfs crcli-shared {d}/s1; mount --make-shared {d}/s1; \
         mount --bind {d}/s1 {d}/s2; echo peer > {d}/s1/p",
        &|_| Vec::new(),
    );
    let d = dir.path().to_path_buf();
    let before = own_mountinfo();
    let ns = build_namespace(&d.join("img"), &[]).expect("build the namespace");
    assert_eq!(
        own_mountinfo(),
        before,
        "crcli's namespace is unchanged by the build"
    );
    inside(&ns, || {
        let read =
            |p: &str| std::fs::read_to_string(d.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(read("a/sub/f"), "hello\n");
        assert_eq!(read("b/f"), "hello\n", "the bind shows the sub-directory");
        assert_eq!(read("a/hidden/h"), "over\n", "the overmount is on top");
        assert!(!d.join("a/hidden/g").exists(), "what it hides stays hidden");
        assert_eq!(read("s2/p"), "peer\n");
        // The root is a copy of crcli's: the scratch directory itself is there.
        assert!(d.join("img").is_dir());
        // Attributes.
        let st = rustix::fs::statvfs(d.join("b")).expect("statvfs b");
        assert!(
            st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY)
                && st.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID),
            "b is read-only and nosuid: {:?}",
            st.f_flag
        );
        let st = rustix::fs::statvfs(d.join("a")).expect("statvfs a");
        assert!(!st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
        let mode = std::fs::metadata(d.join("a")).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o7777
        });
        assert_eq!(mode.unwrap(), 0o750, "the tmpfs root keeps its mode");
        // The proc mounted in it shows this namespace's table: sharing and stacking.
        let info = std::fs::read_to_string(d.join("c/thread-self/mountinfo")).expect("mountinfo");
        let line = |mp: &str| -> Vec<&str> {
            info.lines()
                .filter(|l| l.split(' ').nth(4) == Some(mp))
                .collect()
        };
        let s1 = line(&format!("{}/s1", d.display()));
        let s2 = line(&format!("{}/s2", d.display()));
        let group = |l: &str| {
            l.split(' ')
                .find(|f| f.starts_with("shared:"))
                .map(str::to_owned)
        };
        assert_eq!(s1.len(), 1, "{info}");
        assert!(group(s1[0]).is_some(), "s1 is shared: {}", s1[0]);
        assert_eq!(group(s1[0]), group(s2[0]), "s1 and s2 are peers");
        assert_eq!(line(&format!("{}/a/hidden", d.display())).len(), 1);
        // Nothing else of crcli's namespace: only the dumped mounts.
        assert!(
            !info.lines().any(|l| l.contains("crcli-scratch")),
            "no scratch mount"
        );
        // Writes land in the new tmpfs.
        std::fs::write(d.join("a/new"), "x").expect("write into the new tmpfs");
    });
    assert!(
        !d.join("a/new").exists(),
        "the new tmpfs is not crcli's directory"
    );
    drop(ns);
    assert_eq!(own_mountinfo(), before);
}

#[test]
fn an_external_bind_needs_its_path_and_is_bound_from_it() {
    let Some(crcli) = crcli("an_external_bind_needs_its_path_and_is_bound_from_it") else {
        return;
    };
    let dir = dump_namespace(&crcli, "mount --bind {d}/host {d}/c", &|d| {
        vec!["--external".to_owned(), format!("mnt[{d}/c]:data")]
    });
    let d = dir.path().to_path_buf();
    let before = own_mountinfo();
    let err = build_namespace(&d.join("img"), &[])
        .expect_err("an external key without a path")
        .to_string();
    assert!(err.contains("--external mnt[data]:PATH"), "message: {err}");
    assert_eq!(own_mountinfo(), before, "a refused build changes nothing");

    let probe = tempfile::tempdir().expect("tempdir");
    std::fs::write(probe.path().join("x"), "outside\n").expect("write probe");
    let ext = ExternalPath {
        key: "data".to_owned(),
        path: probe.path().to_path_buf(),
    };
    let ns = build_namespace(&d.join("img"), &[ext]).expect("build with the external path");
    assert_eq!(own_mountinfo(), before);
    inside(&ns, || {
        assert_eq!(
            std::fs::read_to_string(d.join("c/x")).expect("the external bind"),
            "outside\n"
        );
    });
}

/// A tree in its own PID and mount namespaces (`sleep` as PID 1, holding a file of a tmpfs
/// mounted in the namespace, with the namespace's own proc) dumped by `crcli dump`, killed (the
/// namespace dies) and restored by `crcli restore -d`: the restored process is in a new mount
/// namespace holding the tmpfs with its content, its fd reads the file, and crcli's own mount
/// table is unchanged.
#[test]
fn a_tree_in_its_own_mount_namespace_is_restored_into_a_new_one() {
    let test = "a_tree_in_its_own_mount_namespace_is_restored_into_a_new_one";
    let Some(crcli) = crcli(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let script = format!(
        "set -e; mkdir -p {d}/a; mount -t proc proc /proc; mount -t tmpfs crcli-tree {d}/a; \
         echo hello > {d}/a/f; exec 3<{d}/a/f; echo ready; exec sleep 1000"
    );
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--propagation",
            "private",
            "--fork",
            "sh",
            "-c",
        ])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn unshare");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready");
    assert_eq!(line.trim(), "ready", "setup failed: {script}");
    let root: i32 =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
            .expect("children of unshare")
            .trim()
            .parse()
            .expect("one child");
    let before = own_mountinfo();
    let img = dir.path().join("img");
    let out = Command::new(&crcli)
        .args(["dump", "-t", &root.to_string(), "-D"])
        .arg(&img)
        .output()
        .expect("run crcli dump");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "crcli dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&crcli)
        .args(["restore", "-d", "-D"])
        .arg(&img)
        .output()
        .expect("run crcli restore");
    assert!(
        out.status.success(),
        "crcli restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("restored pid");
    let check = || -> Result<(), String> {
        let ns = |p: &str| std::fs::read_link(p).map_err(|e| format!("{p}: {e}"));
        if ns(&format!("/proc/{pid}/ns/mnt"))? == ns("/proc/self/ns/mnt")? {
            return Err("the restored process is in crcli's mount namespace".into());
        }
        let fd3 =
            std::fs::read_to_string(format!("/proc/{pid}/fd/3")).map_err(|e| e.to_string())?;
        if fd3 != "hello\n" {
            return Err(format!("fd 3 reads {fd3:?}"));
        }
        let f = std::fs::read_to_string(format!("/proc/{pid}/root{d}/a/f"))
            .map_err(|e| format!("the tmpfs in its namespace: {e}"))?;
        if f != "hello\n" {
            return Err(format!("{d}/a/f reads {f:?}"));
        }
        let info =
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).map_err(|e| e.to_string())?;
        if !info
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&format!("{d}/a")[..]) && l.contains(" tmpfs "))
        {
            return Err(format!("no tmpfs at {d}/a in its namespace:\n{info}"));
        }
        if own_mountinfo() != before {
            return Err("crcli's mount table changed".into());
        }
        Ok(())
    };
    let result = check();
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    result.unwrap();
}
