//! `crcli show`: the binary run on an image written with crcli-image's API; the summary and the
//! JSON view are compared with insta snapshots; damaged or missing images give a clear error
//! and a failing exit status.

use std::path::Path;
use std::process::Command;

use crcli_image::process::*;
use crcli_image::*;

fn p(s: &str) -> ImagePath {
    ImagePath::try_from(s).unwrap()
}

fn write_image(target: &Path) {
    write_image_named(target, b"holder\xff", "7.2.13-test");
}

/// The sample image, with the second process's name and the kernel release given.
fn write_image_named(target: &Path, comm: &[u8], release: &str) {
    let mut w = Image::create(target).unwrap();
    let mut pw = w.pages(PagesId(1)).unwrap();
    pw.add(0x7f00_0000_0000, &vec![0xcc; 3 * 4096]).unwrap();
    pw.add(0x7f00_0001_0000, &vec![0x11; 4096]).unwrap();
    pw.finish().unwrap();
    let mut fw = w.fs_content(FsContentId(1)).unwrap();
    let root = FsEntry {
        path: p(""),
        kind: FsEntryKind::Directory,
        mode: 0o755,
        uid: 0,
        gid: 0,
        atime: Timestamp {
            secs: 1_763_800_000,
            nsecs: 5,
        },
        mtime: Timestamp {
            secs: 1_763_800_000,
            nsecs: 6,
        },
        xattrs: vec![],
        ino: 1,
    };
    fw.add(&root).unwrap();
    let extents = fw.add_data(0, b"only here\n").unwrap();
    fw.add(&FsEntry {
        path: p("data"),
        kind: FsEntryKind::Regular { size: 10, extents },
        mode: 0o644,
        ino: 2,
        ..root.clone()
    })
    .unwrap();
    fw.finish().unwrap();
    let attached = MountEntry {
        id: MountId(1),
        kind: MountKind::Attached,
        unique_id: 0x8000_0001,
        old_id: 30,
        parent_unique_id: 0,
        parent: None,
        mnt_ns_id: Some(0x4000_0000_0001),
        root: p("/"),
        mountpoint: Some(p("/src")),
        fs_type: "tmpfs".into(),
        fs_subtype: None,
        source: Some(OsBytes::try_from("tmpfs").unwrap()),
        super_options: "rw".into(),
        dev_major: 0,
        dev_minor: 60,
        attributes: 0,
        propagation: 0x40000,
        peer_group: 0,
        master: 0,
        propagate_from: 0,
        rebuild: None,
        kept_fds: vec![],
    };
    w.add_mount(&attached).unwrap();
    w.add_mount(&MountEntry {
        id: MountId(2),
        kind: MountKind::Unmounted,
        unique_id: 0x8000_0002,
        old_id: 31,
        mnt_ns_id: None,
        root: p("/sub"),
        mountpoint: None,
        attributes: 1,
        rebuild: Some(RebuildPlan::BindOfLive {
            live_mount_id: 0x8000_0001,
            live_mountpoint: p("/src"),
            subroot: p("sub"),
        }),
        ..attached.clone()
    })
    .unwrap();
    w.add_mount(&MountEntry {
        id: MountId(3),
        kind: MountKind::Anonymous,
        unique_id: 0x8000_0003,
        old_id: 32,
        mnt_ns_id: None,
        mountpoint: None,
        dev_minor: 61,
        rebuild: Some(RebuildPlan::LostSuperblock {
            fs_type: "tmpfs".into(),
            options: "size=64k".into(),
            content: FsContentId(1),
            subroot: p(""),
        }),
        kept_fds: vec![ProcessFd { pid: 42, fd: 3 }],
        ..attached.clone()
    })
    .unwrap();
    w.add_pipe(&PipeEntry {
        id: PipeId(1),
        capacity: 65536,
        buffered: b"hi".to_vec(),
    })
    .unwrap();
    let loc = |mount: u32, path: &str, ino: u64| FileLocation {
        mount: MountId(mount),
        path: p(path),
        dev: 60,
        ino,
        mode: 0o100644,
        size: 10,
        mtime: Timestamp {
            secs: 1_763_800_000,
            nsecs: 0,
        },
    };
    let files = [
        FileKind::Directory(loc(1, "", 1)),
        FileKind::Regular(loc(2, "file", 3)),
        FileKind::Regular(loc(3, "data", 2)),
        FileKind::Path(loc(3, "", 1)),
        FileKind::Pipe {
            pipe: PipeId(1),
            end: PipeEnd::Write,
        },
    ];
    for (i, kind) in files.into_iter().enumerate() {
        w.add_file(&FileEntry {
            id: FileId(i as u32 + 1),
            flags: 0o2,
            pos: 5 * i as u64,
            kind,
        })
        .unwrap();
    }
    let thread = Thread {
        tid: 42,
        ns_tid: 42,
        comm: OsBytes::try_from("holder").unwrap(),
        regs: UserRegs {
            rip: 0x401000,
            rsp: 0x7ffc_0000_0000,
            ..UserRegs::default()
        },
        xstate: XState {
            size: 8,
            features: 7,
            data: vec![1, 2, 3, 4, 5, 6, 7, 8],
        },
        sigmask: 0,
        pending: PendingSignals::default(),
        sigaltstack: SigAltStack {
            sp: 0,
            flags: 2,
            size: 0,
        },
        rseq: Some(Rseq {
            ptr: 0x7f00_0000_0100,
            len: 32,
            sig: 0x5305_3053,
        }),
        robust_list: RobustList::default(),
        clear_child_tid: 0,
        tls: vec![],
        sched: None,
    };
    w.add_process(&Process {
        pid: 42,
        ppid: 0,
        pgid: 42,
        sid: 42,
        ns_pid: 42,
        comm: OsBytes::new(comm.to_vec()).unwrap(),
        threads: vec![thread],
        shared_pending: PendingSignals::default(),
        sigactions: vec![SigAction::default(); NSIG],
        creds: Creds::default(),
        cwd: FileId(1),
        root: FileId(1),
        umask: 0o22,
        rlimits: vec![
            Rlimit {
                cur: 1024,
                max: 4096
            };
            RLIM_NLIMITS
        ],
        personality: 0,
        dumpable: 1,
        no_new_privs: false,
        child_subreaper: false,
        exit_signal: 17,
        mm: MmInfo::default(),
        vmas: vec![Vma {
            start: 0x7f00_0000_0000,
            end: 0x7f00_0002_0000,
            prot: PROT_READ | PROT_WRITE,
            map_flags: 0x22,
            madvise: 0,
            backing: VmaBacking::Anonymous,
        }],
        pages: Some(PagesId(1)),
        fds: (0..5)
            .map(|i| Fd {
                fd: i,
                file: FileId(i + 1),
                cloexec: i > 2,
            })
            .collect(),
        itimers: Default::default(),
    })
    .unwrap();
    let mut inv = Inventory::new(
        42,
        vec![KernelFeature::Statmount, KernelFeature::StatmountByFd],
    );
    inv.crcli_version = "0.1.0".into();
    inv.dump_time = Timestamp {
        secs: 1_763_800_000,
        nsecs: 7,
    };
    inv.kernel_release = release.into();
    inv.arch = "x86_64".into();
    w.commit(inv).unwrap();
}

fn crcli(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crcli"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn show_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    write_image(&img);
    let (ok, out, err) = crcli(&["show".as_ref(), img.as_os_str()]);
    assert!(ok, "{err}");
    insta::assert_snapshot!(out.replace(&img.display().to_string(), "[DIR]"));
}

/// Names and strings in an image are the image writer's: `show` must not let them drive the
/// terminal (an ESC sequence that sets the title or clears the screen is printed as `\x1b`).
#[test]
fn show_escapes_control_characters_from_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    write_image_named(&img, b"evil\x1b]0;owned\x07\r", "7.2\x1b[2J\u{9b}1m");
    let (ok, out, err) = crcli(&["show".as_ref(), img.as_os_str()]);
    assert!(ok, "{err}");
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(out.contains(r#""evil\x1b]0;owned\x07\x0d""#), "{out}");
    assert!(
        out.contains("Linux 7.2\\x1b[2J\\xc2\\x9b1m x86_64"),
        "{out}"
    );
}

#[test]
fn show_json_prints_everything() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    write_image(&img);
    let (ok, out, err) = crcli(&["show".as_ref(), "--json".as_ref(), img.as_os_str()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["processes"][0]["comm"], "holder\\xff");
    assert_eq!(v["mounts"].as_array().unwrap().len(), 3);
    insta::assert_snapshot!(out);
}

#[test]
fn show_verify_reads_all_data() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    write_image(&img);
    let (ok, out, err) = crcli(&["show".as_ref(), "--verify".as_ref(), img.as_os_str()]);
    assert!(ok, "{err}");
    assert!(
        out.ends_with("verified: 16.0 KiB of data, every checksum matches\n"),
        "{out}"
    );
    let data = img.join("pages-1.data");
    let mut b = std::fs::read(&data).unwrap();
    b[20] ^= 1;
    std::fs::write(&data, b).unwrap();
    let (ok, _, _) = crcli(&["show".as_ref(), img.as_os_str()]);
    assert!(ok, "without --verify only metadata is read");
    let (ok, out, err) = crcli(&["show".as_ref(), "--verify".as_ref(), img.as_os_str()]);
    assert!(!ok);
    assert!(out.is_empty());
    assert!(
        err.contains("verifying the data of image")
            && err.contains("pages-1.data")
            && err.contains("checksum mismatch"),
        "{err}"
    );
}

#[test]
fn show_refuses_damaged_and_missing_images() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let (ok, _, err) = crcli(&["show".as_ref(), img.as_os_str()]);
    assert!(!ok);
    assert!(
        err.contains("reading image") && err.contains("inventory.img"),
        "{err}"
    );

    write_image(&img);
    let files = img.join("files.img");
    let mut b = std::fs::read(&files).unwrap();
    let n = b.len();
    b[n / 2] ^= 1;
    std::fs::write(&files, b).unwrap();
    let (ok, out, err) = crcli(&["show".as_ref(), "--json".as_ref(), img.as_os_str()]);
    assert!(!ok);
    assert!(out.is_empty(), "no partial output: {out}");
    assert!(
        err.contains("files.img record") && err.contains("checksum mismatch"),
        "{err}"
    );
}
