//! The dump of a tree in a mount namespace of its own (issue #7): a real namespace made by
//! `unshare --mount --propagation private` in which sh mounts a tmpfs with files, binds a
//! sub-directory of it elsewhere, mounts a fresh proc and a tmpfs over part of the first one,
//! then execs `sleep` (the root). The image must hold the namespace's whole mount tree with
//! how to make each mount again, and the tmpfs content — including what the overmount hides.
//! A bind from outside the namespace is refused unless named with `--external`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crcli_dump::{dump, dump_with_externals, DumpOptions, ExternalMount};
use crcli_image::{FsEntryKind, Image, NsMount, NsMountSource};

/// `unshare --mount --fork` running `setup` in sh, then `sleep`; both killed when dropped (the
/// `sleep` explicitly: busybox's unshare, the VM's, has no `--kill-child`).
struct Ns {
    child: Child,
    root: i32,
    dir: tempfile::TempDir,
}

impl Ns {
    fn spawn(setup: impl FnOnce(&str) -> String) -> Ns {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let script = format!(
            "set -e; mkdir -p {d}/a {d}/b {d}/c {d}/host; {}; echo ready; exec sleep 1000",
            setup(&d)
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--fork", "sh", "-c"])
            .arg(&script)
            .stdout(Stdio::piped())
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
        Ns { child, root, dir }
    }

    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.dir.path().display())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // The namespace's `sleep` (left running by dumps that leave it running) first.
        if let Some(root) = rustix::process::Pid::from_raw(self.root) {
            let _ = rustix::process::kill_process(root, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false)
}

fn mount_at<'a>(mounts: &'a [NsMount], path: &str) -> Vec<&'a NsMount> {
    mounts
        .iter()
        .filter(|m| m.mountpoint.as_bytes() == path.as_bytes())
        .collect()
}

const LEAVE_RUNNING: DumpOptions = DumpOptions {
    leave_running: true,
};

#[test]
fn the_whole_mount_tree_of_its_namespace_is_dumped_with_tmpfs_content() {
    let ns = Ns::spawn(|d| {
        format!(
            "mount -t tmpfs -o size=2m,mode=0750 crcli-ns {d}/a; mkdir {d}/a/sub {d}/a/hidden; \
             echo hello > {d}/a/sub/f; echo under > {d}/a/hidden/g; \
             mount --bind {d}/a/sub {d}/b; mount -t proc proc {d}/c; \
             mount -t tmpfs crcli-over {d}/a/hidden; echo over > {d}/a/hidden/h"
        )
    });
    let img_dir = ns.dir.path().join("img");
    dump(ns.root, &img_dir, &LEAVE_RUNNING).expect("dump");
    assert!(running(ns.root), "the tree runs on after --leave-running");
    let img = Image::open(&img_dir).expect("open image");
    let mns = img
        .inventory()
        .tree
        .mount_ns
        .as_ref()
        .expect("the mount namespace is in the image");
    let mounts = &mns.mounts;
    assert_eq!(mounts[0].parent, 0, "the root mount comes first");
    assert!(mounts[1..].iter().all(|m| m.parent != 0));
    // Parents before children.
    for (i, m) in mounts.iter().enumerate().skip(1) {
        assert!(
            mounts[..i].iter().any(|p| p.id == m.parent),
            "mount {} listed before its parent",
            m.id
        );
    }

    let a = mount_at(mounts, &ns.path("a"));
    assert_eq!(a.len(), 1);
    let NsMountSource::Content { content, options } = &a[0].source_kind else {
        panic!(
            "the tmpfs is dumped with its content: {:?}",
            a[0].source_kind
        );
    };
    assert!(options.contains("mode=750"), "options {options}");
    assert_eq!(a[0].fs_type, "tmpfs");
    let fs = img
        .fs_content(*content)
        .expect("the content is in the image");
    let data = img.fs_data(*content).expect("fs data");
    let read = |path: &str| -> Vec<u8> {
        let e = fs
            .entries
            .iter()
            .find(|e| e.path.as_bytes() == path.as_bytes())
            .unwrap_or_else(|| panic!("{path} is in the content"));
        let FsEntryKind::Regular { size, extents } = &e.kind else {
            panic!("{path} is a regular file");
        };
        let mut out = vec![0u8; *size as usize];
        for x in extents {
            let mut buf = vec![0u8; x.len as usize];
            data.read_extent(x, &mut buf, 0).expect("read extent");
            out[x.offset as usize..][..buf.len()].copy_from_slice(&buf);
        }
        out
    };
    assert_eq!(read("sub/f"), b"hello\n");
    // What the overmount hides is dumped too: the content is read through a clone of that one
    // mount.
    assert_eq!(read("hidden/g"), b"under\n");
    assert!(!fs.entries.iter().any(|e| e.path.as_bytes() == b"hidden/h"));

    let b = mount_at(mounts, &ns.path("b"));
    assert_eq!(b.len(), 1);
    assert_eq!(
        b[0].source_kind,
        NsMountSource::NsBind {
            of: a[0].id,
            subroot: crcli_image::ImagePath::new(b"sub".to_vec()).unwrap()
        }
    );
    assert_eq!(b[0].root.as_bytes(), b"/sub");

    let c = mount_at(mounts, &ns.path("c"));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].fs_type, "proc");
    assert!(matches!(c[0].source_kind, NsMountSource::Fresh { .. }));

    let over = mount_at(mounts, &ns.path("a/hidden"));
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].parent, a[0].id, "the overmount sits on the tmpfs");
    let NsMountSource::Content { content: oc, .. } = &over[0].source_kind else {
        panic!("the second tmpfs has content of its own");
    };
    assert_ne!(oc, content);
    let ofs = img.fs_content(*oc).expect("second content");
    assert!(ofs.entries.iter().any(|e| e.path.as_bytes() == b"h"));

    // The root mount is the copy of crcli's own root.
    assert!(
        matches!(&mounts[0].source_kind, NsMountSource::HostCopy { host_mountpoint, .. } if host_mountpoint.as_bytes() == b"/"),
        "root: {:?}",
        mounts[0]
    );
    // Every mount is private (unshare --propagation private).
    assert!(mounts.iter().all(|m| m.peer_group == 0 && m.master == 0));
}

#[test]
fn a_bind_from_outside_is_refused_unless_named_with_external() {
    let ns = Ns::spawn(|d| format!("mount --bind {d}/host {d}/c"));
    let img_dir = ns.dir.path().join("img");
    let err = dump(ns.root, &img_dir, &LEAVE_RUNNING)
        .expect_err("a bind from outside must be named")
        .to_string();
    assert!(
        err.contains(&ns.path("c")) && err.contains("--external"),
        "message: {err}"
    );
    assert!(!img_dir.exists(), "no image is left behind");
    assert!(running(ns.root), "the refused tree runs on");

    let ext: ExternalMount = format!("mnt[{}]:data", ns.path("c")).parse().unwrap();
    dump_with_externals(ns.root, &img_dir, &LEAVE_RUNNING, &[ext]).expect("dump with --external");
    let img = Image::open(&img_dir).expect("open image");
    let mns = img.inventory().tree.mount_ns.as_ref().expect("mount ns");
    let c = mount_at(&mns.mounts, &ns.path("c"));
    assert_eq!(
        c[0].source_kind,
        NsMountSource::External {
            key: "data".to_owned()
        }
    );
}

#[test]
fn an_external_name_for_no_mount_is_refused() {
    let ns = Ns::spawn(|_| "true".to_owned());
    let img_dir = ns.dir.path().join("img");
    let ext: ExternalMount = "mnt[/no/such/mount]:k".parse().unwrap();
    let err = dump_with_externals(ns.root, &img_dir, &LEAVE_RUNNING, &[ext])
        .expect_err("a name for no mount")
        .to_string();
    assert!(err.contains("/no/such/mount"), "message: {err}");
    assert!(!Path::new(&img_dir).exists());
}
