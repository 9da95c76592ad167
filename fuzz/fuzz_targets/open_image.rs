//! Replaces one file of a small valid image with fuzzer bytes, then opens the image and reads
//! every page and data extent. Exercises the whole reader: framing, decoding, cross-entry
//! validation, pagemap checks and data checksums.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crcli_image::*;
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 10] = [
    "inventory.img",
    "processes.img",
    "files.img",
    "files.data",
    "pipes.img",
    "mounts.img",
    "fs-1.img",
    "fs-1.data",
    "pagemap-1.img",
    "pages-1.data",
];

fn p(s: &str) -> ImagePath {
    ImagePath::try_from(s).unwrap()
}

/// Builds a small valid image once; returns its directory.
fn base() -> &'static PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("crcli-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let target = root.join("base");
        let mut w = Image::create(&target).unwrap();
        let mut pw = w.pages(PagesId(1)).unwrap();
        pw.add(0x10000, &[3u8; 8192]).unwrap();
        pw.finish().unwrap();
        let mut fw = w.fs_content(FsContentId(1)).unwrap();
        let root_entry = FsEntry {
            path: p(""),
            kind: FsEntryKind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            atime: Timestamp::default(),
            mtime: Timestamp::default(),
            xattrs: vec![],
            ino: 1,
        };
        fw.add(&root_entry).unwrap();
        let extents = fw.add_data(0, b"content").unwrap();
        fw.add(&FsEntry {
            path: p("f"),
            kind: FsEntryKind::Regular { size: 7, extents },
            ..root_entry.clone()
        })
        .unwrap();
        fw.finish().unwrap();
        let m = MountEntry {
            id: MountId(1),
            kind: MountKind::Unmounted,
            unique_id: 1 << 31,
            old_id: 30,
            parent_unique_id: 0,
            parent: None,
            mnt_ns_id: None,
            root: p("/"),
            mountpoint: None,
            fs_type: "tmpfs".into(),
            fs_subtype: None,
            source: None,
            super_options: "rw".into(),
            dev_major: 0,
            dev_minor: 50,
            attributes: 1,
            propagation: 0,
            peer_group: 0,
            master: 0,
            propagate_from: 0,
            rebuild: Some(RebuildPlan::LostSuperblock {
                fs_type: "tmpfs".into(),
                options: String::new(),
                content: FsContentId(1),
                subroot: p(""),
            }),
            kept_fds: vec![],
        };
        w.add_mount(&m).unwrap();
        w.add_pipe(&PipeEntry { id: PipeId(1), capacity: 4096, buffered: b"x".to_vec() }).unwrap();
        let un = w.add_unlinked_data(0, b"gone").unwrap();
        let loc = FileLocation {
            mount: MountId(1),
            path: p("f"),
            dev: 50,
            ino: 2,
            mode: 0o100644,
            size: 7,
            mtime: Timestamp::default(),
        };
        w.add_file(&FileEntry { id: FileId(1), flags: 0, pos: 0, kind: FileKind::Directory(FileLocation { path: p(""), ..loc.clone() }) }).unwrap();
        w.add_file(&FileEntry { id: FileId(2), flags: 2, pos: 3, kind: FileKind::Unlinked { location: loc, extents: un } }).unwrap();
        w.add_file(&FileEntry { id: FileId(3), flags: 0, pos: 0, kind: FileKind::Pipe { pipe: PipeId(1), end: PipeEnd::Read } }).unwrap();
        let proc_ = Process {
            pid: 1,
            ppid: 0,
            pgid: 1,
            sid: 1,
            ns_pid: 1,
            comm: OsBytes::try_from("init").unwrap(),
            threads: vec![Thread {
                tid: 1,
                comm: OsBytes::try_from("init").unwrap(),
                regs: UserRegs::default(),
                xstate: XState { size: 4, features: 3, data: vec![1, 2, 3, 4] },
                sigmask: 0,
                pending: PendingSignals::default(),
                sigaltstack: SigAltStack::default(),
                rseq: None,
                robust_list: RobustList::default(),
                clear_child_tid: 0,
                tls: vec![],
            }],
            shared_pending: PendingSignals::default(),
            sigactions: vec![SigAction::default(); 64],
            creds: Creds::default(),
            cwd: FileId(1),
            root: FileId(1),
            umask: 0o22,
            rlimits: vec![Rlimit::default(); 16],
            personality: 0,
            dumpable: 1,
            no_new_privs: false,
            child_subreaper: false,
            exit_signal: 17,
            mm: MmInfo::default(),
            vmas: vec![Vma {
                start: 0x10000,
                end: 0x12000,
                prot: 3,
                map_flags: 2,
                madvise: 0,
                backing: VmaBacking::Anonymous,
            }],
            pages: Some(PagesId(1)),
            fds: vec![
                Fd { fd: 0, file: FileId(3), cloexec: false },
                Fd { fd: 3, file: FileId(2), cloexec: true },
            ],
        };
        w.add_process(&proc_).unwrap();
        w.commit(Inventory::new(1, vec![KernelFeature::Statmount])).unwrap();
        target
    })
}

fn read_everything(img: &Image) {
    let mut buf = vec![0u8; MAX_CHUNK_LEN as usize];
    for s in img.page_streams() {
        if let Ok(mut r) = img.pages(s.id) {
            while let Ok(Some(_)) = r.next_chunk(&mut buf) {}
        }
    }
    for c in img.fs_contents() {
        let Ok(d) = img.fs_data(c.id) else { continue };
        for (i, e) in c.entries.iter().enumerate() {
            if let FsEntryKind::Regular { extents, .. } = &e.kind {
                for x in extents {
                    let _ = d.read_extent(x, &mut buf, i as u64);
                }
            }
        }
    }
    if let Ok(d) = img.files_data() {
        for (i, f) in img.files().iter().enumerate() {
            if let FileKind::Unlinked { extents, .. } = &f.kind {
                for x in extents {
                    let _ = d.read_extent(x, &mut buf, i as u64);
                }
            }
        }
    }
    let _ = img.to_json();
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let base = base();
    let work: &Path = &base.with_file_name("work");
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir(work).unwrap();
    for name in FILES {
        std::fs::copy(base.join(name), work.join(name)).unwrap();
    }
    let name = FILES[which as usize % FILES.len()];
    std::fs::write(work.join(name), rest).unwrap();
    if let Ok(img) = Image::open(work) {
        read_everything(&img);
    }
});
