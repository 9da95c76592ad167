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

use crcli_restore::{build_namespace, build_namespace_with, ExternalPath, NsBuildMethod};

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

/// Runs `script` in sh under `unshare --mount <namespaces> --propagation private --fork` (the
/// script says `ready` and execs `sleep 1000`), dumps that sh with `crcli dump -t PID -D img
/// <extra>` once it is ready, then kills unshare and that sh (left running if the dump failed;
/// busybox's unshare, the VM's, has no `--kill-child`). Panics naming the script if the setup
/// fails, with crcli's stderr if the dump fails.
fn dump_unshared(crcli: &Path, namespaces: &[&str], script: &str, img: &Path, extra: &[String]) {
    let mut child = Command::new("unshare")
        .arg("--mount")
        .args(namespaces)
        .args(["--propagation", "private", "--fork", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn unshare");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready");
    let root: Option<i32> =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
            .ok()
            .and_then(|s| s.trim().parse().ok());
    let out = root.filter(|_| line.trim() == "ready").map(|root| {
        Command::new(crcli)
            .args(["dump", "-t", &root.to_string(), "-D"])
            .arg(img)
            .args(extra)
            .output()
            .expect("run crcli dump")
    });
    if let Some(root) = root {
        // A pid we started; it may be gone already (the dump killed it).
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(root).expect("a positive pid"),
            rustix::process::Signal::KILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    let out = out.unwrap_or_else(|| panic!("setup failed: {script}"));
    assert!(
        out.status.success(),
        "crcli dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    dump_unshared(crcli, &[], &script, &dir.path().join("img"), &extra(&d));
    dir
}

/// `crcli restore -d -D img <extra>`: the pid of the restored root it prints.
fn restore_detached(crcli: &Path, img: &Path, extra: &[&str]) -> i32 {
    let out = Command::new(crcli)
        .args(["restore", "-d", "-D"])
        .arg(img)
        .args(extra)
        .output()
        .expect("run crcli restore");
    assert!(
        out.status.success(),
        "crcli restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("restored pid")
}

/// Runs `check` on the restored tree whose root is `pid`, kills the root whatever the outcome,
/// then fails with the check's error.
fn check_then_kill(pid: i32, check: impl FnOnce() -> Result<(), String>) {
    let result = check();
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    result.unwrap();
}

/// The namespace build methods to check: the one this kernel uses, and the fallback too where
/// it is not the fallback (both must make the same namespace).
fn build_methods() -> Vec<NsBuildMethod> {
    let mut methods = vec![NsBuildMethod::current()];
    if methods[0] != NsBuildMethod::Unshare {
        methods.push(NsBuildMethod::Unshare);
    }
    methods
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
    let _one_at_a_time = one_at_a_time();
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
    // The method this kernel uses, and the fallback too where it is not the fallback: both
    // must make the same namespace.
    for method in build_methods() {
        eprintln!("building with {}", method.name());
        check_built_namespace(&d, method);
    }
}

fn check_built_namespace(d: &Path, method: NsBuildMethod) {
    let before = own_mountinfo();
    let ns = build_namespace_with(&d.join("img"), &[], method).expect("build the namespace");
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
        // Only the dumped mounts are visible from the new root (the copy of crcli's tree
        // the fallback built on is gone).
        assert_eq!(
            info.lines().count(),
            dumped_mounts(&d.join("img")),
            "{}:\n{info}",
            method.name()
        );
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
    let _one_at_a_time = one_at_a_time();
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
    let _one_at_a_time = one_at_a_time();
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
    let before = own_mountinfo();
    let img = dir.path().join("img");
    dump_unshared(&crcli, &["--pid"], &script, &img, &[]);
    let pid = restore_detached(&crcli, &img, &[]);
    check_then_kill(pid, || {
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
    });
}

/// The tests of this file make mounts, and one of them counts the mounts the kernel makes while
/// it builds a namespace (`open_tree_namespace_builds_without_copying_crclis_mounts`): they run
/// one at a time, so that no other test's mounts are counted.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed holding it poisons it; the others still run.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many mounts the image's mount namespace holds.
fn dumped_mounts(img: &Path) -> usize {
    crcli_image::Image::open(img)
        .expect("open the image")
        .inventory()
        .tree
        .mount_ns
        .as_ref()
        .expect("a mount namespace")
        .mounts
        .len()
}

/// The unique id the kernel gives the next mount (it gives them in increasing order, one per
/// mount made anywhere): the id of a fresh clone of `/`, dropped at once.
fn next_mount_id() -> u64 {
    let clone = crcli_sys::mount::open_tree(
        rustix::fs::CWD,
        "/",
        crcli_sys::mount::OpenTreeFlags::CLONE | crcli_sys::mount::OpenTreeFlags::CLOEXEC,
    )
    .expect("clone /");
    crcli_sys::statx::fstatx_mnt_id_unique(&clone)
        .expect("statx of the clone")
        .expect("a unique mount id")
}

/// Linux 7.0's OPEN_TREE_NAMESPACE makes the namespace without copying crcli's mounts: the
/// mount ids used by the build (the kernel numbers every new mount) are about the dumped
/// mounts only, where the fallback copies every mount of crcli's namespace first. In the VM
/// (7.x) the new path must be taken; on an older kernel the fallback's count is checked (which
/// shows the count tells the two apart) and the test says SKIPPED.
#[test]
fn open_tree_namespace_builds_without_copying_crclis_mounts() {
    let _one_at_a_time = one_at_a_time();
    let test = "open_tree_namespace_builds_without_copying_crclis_mounts";
    let Some(crcli) = crcli(test) else {
        return;
    };
    let dir = dump_namespace(
        &crcli,
        "mount -t tmpfs crcli-ns {d}/a; mkdir {d}/a/sub; mount --bind {d}/a/sub {d}/b; \
         mount -t tmpfs crcli-over {d}/c",
        &|_| Vec::new(),
    );
    let img = dir.path().join("img");
    let dumped = dumped_mounts(&img) as u64;
    let own = own_mountinfo().lines().count() as u64;
    let method = NsBuildMethod::current();
    let first = next_mount_id();
    let ns = build_namespace(&img, &[]).expect("build the namespace");
    let made = next_mount_id() - first - 1;
    eprintln!(
        "{test}: {} made {made} mounts for {dumped} dumped ones; crcli's namespace has {own}",
        method.name()
    );
    inside(&ns, || {
        let info = std::fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
        assert_eq!(info.lines().count() as u64, dumped, "{info}");
    });
    match method {
        NsBuildMethod::OpenTreeNamespace => {
            // The dumped mounts, the namespace's copy of the root mount and of the one mount
            // under crcli's root; a little slack for mounts made elsewhere meanwhile (not by
            // the other tests of this file: `one_at_a_time`).
            assert!(
                made <= dumped + 2 + 3,
                "{made} mounts made for {dumped} dumped ones"
            );
        }
        _ => {
            assert!(
                made >= own + dumped,
                "the fallback copies crcli's {own} mounts: {made} made"
            );
            assert!(
                std::env::var_os("CRCLI_VM").is_none(),
                "{test}: the OPEN_TREE_NAMESPACE path was not taken in the VM (the kernel lacks \
                 it, or the root mount of this namespace is shared)"
            );
            eprintln!(
                "SKIPPED {test}: OPEN_TREE_NAMESPACE (Linux 7.0) is not used here (the kernel \
                 lacks it, or the namespace's root mount is shared); the fallback was checked"
            );
        }
    }
}

/// The propagation of mount point `mp` in a mountinfo text: `(peer group, master group,
/// unbindable)`, with group ids as found (0 when absent).
fn propagation_of(info: &str, mp: &str) -> (u64, u64, bool) {
    let line = info
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(mp))
        .unwrap_or_else(|| panic!("no mount at {mp}:\n{info}"));
    let mut out = (0, 0, false);
    for f in line.split(' ').skip(6).take_while(|f| *f != "-") {
        if let Some(g) = f.strip_prefix("shared:") {
            out.0 = g.parse().expect("group id");
        } else if let Some(g) = f.strip_prefix("master:") {
            out.1 = g.parse().expect("group id");
        } else if f == "unbindable" {
            out.2 = true;
        }
    }
    out
}

/// The propagation structure of mount points `mps`, group ids replaced by the first of `mps`
/// in that group (`-` none, `?` a group none of `mps` is in): comparable across namespaces.
fn structure(info: &str, d: &Path, mps: &[&str]) -> Vec<String> {
    let props: Vec<(u64, u64, bool)> = mps
        .iter()
        .map(|mp| propagation_of(info, &format!("{}/{mp}", d.display())))
        .collect();
    let name = |g: u64| -> String {
        if g == 0 {
            return "-".to_owned();
        }
        props
            .iter()
            .position(|p| p.0 == g)
            .map_or_else(|| "?".to_owned(), |i| mps[i].to_owned())
    };
    mps.iter()
        .zip(&props)
        .map(|(mp, p)| {
            format!(
                "{mp}: shared {} master {}{}",
                name(p.0),
                name(p.1),
                if p.2 { " unbindable" } else { "" }
            )
        })
        .collect()
}

/// Mounts a fresh tmpfs at `at` holding file `name` (from a thread inside a namespace).
fn mount_marker(at: &Path, name: &str) {
    use crcli_sys::mount::*;
    std::fs::create_dir_all(at).unwrap_or_else(|e| panic!("mkdir {}: {e}", at.display()));
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).expect("fsopen tmpfs");
    fsconfig_create(&fs).expect("fsconfig create");
    let mnt =
        fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).expect("fsmount");
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        at,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .unwrap_or_else(|e| panic!("mount a tmpfs at {}: {e}", at.display()));
    std::fs::write(at.join(name), name).expect("write the marker");
}

/// Shared peer groups with several members (one of them a bind of a sub-directory), a slave of a shared mount, a shared-and-slave mount with a peer, a private and an
/// unbindable mount are dumped and made again: the same peer-group partition and master
/// relations (group ids differ: the structure is compared), and propagation works in the new
/// namespace: a mount under a shared mount shows on its peers and slaves, one under a slave
/// does not go back to its master.
#[test]
fn shared_slave_private_and_unbindable_mounts_propagate_as_dumped() {
    let _one_at_a_time = one_at_a_time();
    let test = "shared_slave_private_and_unbindable_mounts_propagate_as_dumped";
    let Some(crcli) = crcli(test) else {
        return;
    };
    let dir = dump_namespace(
        &crcli,
        "mkdir -p {d}/w {d}/s3 {d}/sl {d}/ss {d}/ss2 {d}/pr {d}/ub; \
         mount -t tmpfs crcli-prop {d}/w; mkdir {d}/w/sub; echo data > {d}/w/sub/f; \
         mount --make-shared {d}/w; mount --bind {d}/w {d}/s1; \
         mount --bind {d}/w/sub {d}/s2; mount --bind {d}/w {d}/s3; umount {d}/w; \
         mount --bind {d}/s1 {d}/sl; mount --make-slave {d}/sl; \
         mount --bind {d}/s1 {d}/ss; mount --make-slave {d}/ss; mount --make-shared {d}/ss; \
         mount --bind {d}/ss {d}/ss2; \
         mount -t tmpfs crcli-priv {d}/pr; \
         mount -t tmpfs crcli-unb {d}/ub; mount --make-unbindable {d}/ub; \
         cat /proc/self/mountinfo > {d}/dumped.mountinfo",
        &|_| Vec::new(),
    );
    let d = dir.path().to_path_buf();
    let mps = ["s1", "s2", "s3", "sl", "ss", "ss2", "pr", "ub"];
    let dumped = std::fs::read_to_string(d.join("dumped.mountinfo")).expect("dumped mountinfo");
    let want = structure(&dumped, &d, &mps);
    // The setup made what the test is about.
    assert_eq!(
        want,
        [
            "s1: shared s1 master -",
            "s2: shared s1 master -",
            "s3: shared s1 master -",
            "sl: shared - master s1",
            "ss: shared ss master s1",
            "ss2: shared ss master s1",
            "pr: shared - master -",
            "ub: shared - master - unbindable",
        ],
        "{dumped}"
    );
    for method in build_methods() {
        eprintln!("{test}: building with {}", method.name());
        let ns = build_namespace_with(&d.join("img"), &[], method)
            .unwrap_or_else(|e| panic!("build with {}: {e}", method.name()));
        inside(&ns, || {
            let info = std::fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
            assert_eq!(
                structure(&info, &d, &mps),
                want,
                "{}:\n{info}",
                method.name()
            );
            assert_eq!(
                std::fs::read_to_string(d.join("s2/f")).expect("s2/f"),
                "data\n"
            );
            // Down from the shared group: to every peer, the slave, the shared slaves.
            mount_marker(&d.join("s3/sub/m"), "m");
            for seen in ["s1/sub/m", "s2/m", "sl/sub/m", "ss/sub/m", "ss2/sub/m"] {
                assert!(d.join(seen).join("m").exists(), "{seen}: {}", method.name());
            }
            // A slave's own mount stays with it.
            mount_marker(&d.join("sl/sub/n"), "n");
            for unseen in ["s1/sub/n", "s2/n", "ss/sub/n"] {
                assert!(!d.join(unseen).join("n").exists(), "{unseen}");
            }
            // Within the shared-slave group, not back to its master.
            mount_marker(&d.join("ss/sub/o"), "o");
            assert!(d.join("ss2/sub/o/o").exists(), "ss2 is a peer of ss");
            for unseen in ["s1/sub/o", "sl/sub/o"] {
                assert!(!d.join(unseen).join("o").exists(), "{unseen}");
            }
            // A private mount's mounts go nowhere; the unbindable one cannot be bound.
            mount_marker(&d.join("pr/p"), "p");
            assert!(!d.join("s1/p").exists() && !d.join("ub/p").exists());
            let clone = crcli_sys::mount::open_tree(
                rustix::fs::CWD,
                d.join("ub"),
                crcli_sys::mount::OpenTreeFlags::CLONE | crcli_sys::mount::OpenTreeFlags::CLOEXEC,
            );
            assert_eq!(
                clone.err(),
                Some(rustix::io::Errno::INVAL),
                "ub is unbindable"
            );
        });
    }
}

/// A tree in its own PID, IPC and mount namespaces with an `mqueue` mounted in the namespace,
/// dumped and restored by the crcli binary: the restored mqueue mount is an instance of the
/// tree's new IPC namespace, not crcli's: a queue made by a process that joined the tree's IPC
/// namespace (through a second mqueue mount it makes there) shows in it, and not in an
/// instance of crcli's IPC namespace.
#[test]
fn an_mqueue_mount_of_the_namespace_shows_the_trees_own_ipc_namespace() {
    let _one_at_a_time = one_at_a_time();
    let test = "an_mqueue_mount_of_the_namespace_shows_the_trees_own_ipc_namespace";
    let Some(crcli) = crcli(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let script = format!(
        "set -e; mkdir -p {d}/mq {d}/mq2 {d}/host; mount -t proc proc /proc; \
         mount -t mqueue crcli-mq {d}/mq; echo ready; exec sleep 1000"
    );
    let img = dir.path().join("img");
    dump_unshared(&crcli, &["--pid", "--ipc"], &script, &img, &[]);
    let pid = restore_detached(&crcli, &img, &[]);
    check_then_kill(pid, || {
        let ns = |p: &str| std::fs::read_link(p).map_err(|e| format!("{p}: {e}"));
        if ns(&format!("/proc/{pid}/ns/ipc"))? == ns("/proc/self/ns/ipc")? {
            return Err("the restored process is in crcli's IPC namespace".into());
        }
        // In the tree's IPC and mount namespaces: a queue made through a fresh mqueue
        // instance of that IPC namespace shows in the restored mount.
        let out = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "-i", "sh", "-c"])
            .arg(format!(
                "mount -t mqueue none {d}/mq2 && touch {d}/mq2/crcli-q && ls {d}/mq"
            ))
            .output()
            .map_err(|e| format!("nsenter: {e}"))?;
        let listed = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !listed.lines().any(|l| l == "crcli-q") {
            return Err(format!(
                "the restored mqueue does not show the tree's queue: {listed:?} {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // An instance of crcli's IPC namespace does not have it.
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!("mount -t mqueue none {d}/host && ls {d}/host"))
            .output()
            .map_err(|e| format!("unshare: {e}"))?;
        let listed = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || listed.lines().any(|l| l == "crcli-q") {
            return Err(format!(
                "crcli's IPC namespace: {listed:?} {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
}

/// A container the way runc and podman make one: its own PID and mount namespaces, a proc at
/// `/proc` with `/proc/sys` and `/proc/sysrq-trigger` bound read-only on themselves, `/dev/null`
/// bound over `/proc/kcore` (a bind from outside: `--external`) and a read-only tmpfs over
/// `/proc/fs` (masked paths). Dumped and restored by the crcli binary: the proc shows the tree's new PID namespace, and every mount on
/// it is there again, on that new proc, with its attributes.
#[test]
fn mounts_on_the_proc_of_a_podman_like_container_are_made_again_on_its_new_proc() {
    let _one_at_a_time = one_at_a_time();
    let test = "mounts_on_the_proc_of_a_podman_like_container_are_made_again_on_its_new_proc";
    let Some(crcli) = crcli(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The paths runc masks or binds read-only where this kernel has them (not every kernel has
    // /proc/kcore or /proc/sysrq-trigger), else files every proc has.
    let pick = |paths: &[&'static str]| {
        *paths
            .iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or(&paths[paths.len() - 1])
    };
    let ro_file = pick(&["/proc/sysrq-trigger", "/proc/uptime"]);
    let masked = pick(&["/proc/kcore", "/proc/timer_list", "/proc/version"]);
    let script = format!(
        "set -e; mount -t proc proc /proc; \
         mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys; \
         mount --bind {ro_file} {ro_file}; mount -o remount,bind,ro {ro_file}; \
         mount --bind /dev/null {masked}; mount -t tmpfs -o ro crcli-mask /proc/fs; \
         echo ready; exec sleep 1000"
    );
    let img = dir.path().join("img");
    let external = ["--external".to_owned(), format!("mnt[{masked}]:null")];
    dump_unshared(&crcli, &["--pid"], &script, &img, &external);
    let pid = restore_detached(&crcli, &img, &["--external", "mnt[null]:/dev/null"]);
    check_then_kill(pid, || {
        let info =
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).map_err(|e| e.to_string())?;
        // (id, parent, dev, root, options, fs type) of the top mount at `mp`.
        let at = |mp: &str| -> Result<Vec<String>, String> {
            let l = info
                .lines()
                .rfind(|l| l.split(' ').nth(4) == Some(mp))
                .ok_or_else(|| format!("no mount at {mp}:\n{info}"))?;
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-").ok_or("no -")?;
            Ok([f[0], f[1], f[2], f[3], f[5], f[dash + 1]]
                .iter()
                .map(|s| s.to_string())
                .collect())
        };
        let proc_ = at("/proc")?;
        for (mp, root) in [("/proc/sys", "/sys"), (ro_file, &ro_file[5..])] {
            let m = at(mp)?;
            if m[1] != proc_[0] || m[2] != proc_[2] || m[3] != root || !m[4].starts_with("ro") {
                return Err(format!(
                    "{mp} is not a read-only bind of the new proc: {m:?} (proc {proc_:?})\n{info}"
                ));
            }
        }
        let kcore = at(masked)?;
        if kcore[1] != proc_[0] || kcore[3] != "/null" || kcore[5] != "devtmpfs" {
            return Err(format!("{masked} is not /dev/null: {kcore:?}\n{info}"));
        }
        let fs = at("/proc/fs")?;
        if fs[1] != proc_[0] || fs[5] != "tmpfs" || !fs[4].starts_with("ro") {
            return Err(format!("/proc/fs is not a read-only tmpfs: {fs:?}\n{info}"));
        }
        let kcore = std::fs::read(format!("/proc/{pid}/root{masked}"))
            .map_err(|e| format!("read {masked}: {e}"))?;
        if !kcore.is_empty() {
            return Err(format!("{masked} is not masked"));
        }
        // The proc is the tree's: its pid 1 is the restored root.
        let cmdline = std::fs::read(format!("/proc/{pid}/root/proc/1/cmdline"))
            .map_err(|e| format!("its proc's pid 1: {e}"))?;
        if cmdline != b"sleep\x001000\x00" {
            return Err(format!(
                "pid 1 of its proc is {:?}",
                String::from_utf8_lossy(&cmdline)
            ));
        }
        Ok(())
    });
}
