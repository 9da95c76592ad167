//! Golden images: images written by each released format version, committed under
//! `tests/fixtures/format-N/`, must keep decoding, to the same content, in every later release.
//!
//! Each fixture is the sample image of `sample.rs` (64 KiB of pages). Regenerate the fixture of
//! the *current* format version only, and only when that version is new (never rewrite an older
//! one: that would defeat the test):
//!
//! ```text
//! CRCLI_REGENERATE_GOLDEN=1 cargo test -p crcli-image --test tests golden
//! cargo insta review   # or INSTA_UPDATE=always, for the new version's snapshot
//! ```

use std::path::{Path, PathBuf};

use super::sample::{page_fill, write_sample};
use crcli_image::*;

const GOLDEN_PAGES: u64 = 64 << 10;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn regenerate_current() {
    let dir = fixtures().join(format!("format-{FORMAT_VERSION}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(fixtures()).unwrap();
    write_sample(&dir, GOLDEN_PAGES);
    eprintln!("regenerated {}", dir.display());
}

/// Opens a golden image and checks every byte of its data as well as its metadata.
fn check(version: u32) {
    let dir = fixtures().join(format!("format-{version}"));
    assert!(dir.is_dir(), "golden image {} is missing", dir.display());
    let img = Image::open(&dir).unwrap_or_else(|e| panic!("golden image format {version}: {e}"));
    assert_eq!(img.format_version(), version);
    insta::assert_snapshot!(format!("golden_format_{version}"), img.to_json_pretty());

    let mut buf = vec![0u8; MAX_CHUNK_LEN as usize];
    let mut r = img.pages(PagesId(1)).unwrap();
    let mut total = 0;
    while let Some(c) = r.next_chunk(&mut buf).unwrap() {
        for (i, b) in buf[..c.len].iter().enumerate() {
            assert_eq!(*b, page_fill(1, c.addr + i as u64));
        }
        total += c.len as u64;
    }
    assert_eq!(total, GOLDEN_PAGES);
    let mut r = img.pages(PagesId(2)).unwrap();
    let c = r.next_chunk(&mut buf).unwrap().unwrap();
    assert!(buf[..c.len].iter().all(|&b| b == 0x5a));

    let fs = img.fs_data(FsContentId(1)).unwrap();
    let e = &img.fs_content(FsContentId(1)).unwrap().entries[2];
    let FsEntryKind::Regular { extents, .. } = &e.kind else {
        panic!("entry 2 is regular")
    };
    fs.read_extent(&extents[0], &mut buf, 2).unwrap();
    assert_eq!(&buf[..extents[0].len as usize], b"hello, lost superblock\n");
    let FileKind::Unlinked { extents, .. } = &img.files()[11].kind else {
        panic!("file 11 is unlinked")
    };
    img.files_data()
        .unwrap()
        .read_extent(&extents[0], &mut buf, 11)
        .unwrap();
    assert_eq!(&buf[..16], b"deleted but open");
}

#[test]
fn golden_images_of_every_format_version_decode() {
    if std::env::var_os("CRCLI_REGENERATE_GOLDEN").is_some() {
        regenerate_current();
    }
    for version in MIN_FORMAT_VERSION..=FORMAT_VERSION {
        check(version);
    }
}

/// Format 2 recorded no thread ids in the tree's PID namespace: a format-2 thread converts to its
/// process's `ns_pid` for the main thread and to its `tid` for the others (the format-2 restore
/// refused multi-threaded members of a tree in its own PID namespace); the rest decodes exactly
/// as the same sample written in format 3 (but for its interval timers and scheduling settings,
/// which format 2 did not record: none armed, none recorded).
#[test]
fn format_2_threads_get_their_ids_in_the_tree_pid_namespace() {
    let v2 = Image::open(fixtures().join("format-2")).unwrap();
    assert!(v2.inventory().tree.namespaces.own_pid_ns);
    let ids: Vec<(u32, u32, u32)> = v2
        .processes()
        .iter()
        .flat_map(|p| p.threads.iter().map(move |t| (p.pid, t.tid, t.ns_tid)))
        .collect();
    assert_eq!(ids, [(100, 100, 1), (100, 101, 101), (102, 102, 2)]);

    let v3 = Image::open(fixtures().join("format-3")).unwrap();
    let mut p3 = v3.processes().to_vec();
    assert_eq!(p3[0].threads[1].ns_tid, 4);
    p3[0].threads[1].ns_tid = 101;
    // Format 3 added the interval timers and the threads' scheduling settings: format 2
    // converts to no timer armed and no settings recorded.
    assert_ne!(p3[0].itimers, ITimers::default());
    assert!(p3[0].threads[0].sched.is_some());
    for p in &mut p3 {
        p.itimers = ITimers::default();
        for t in &mut p.threads {
            t.sched = None;
        }
    }
    assert_eq!(v2.processes(), &p3[..]);
}

/// Format 1 had no PID namespaces: every thread's id in the tree's namespace is its `tid`.
#[test]
fn format_1_threads_keep_their_ids() {
    let v1 = Image::open(fixtures().join("format-1")).unwrap();
    assert!(!v1.inventory().tree.namespaces.own_pid_ns);
    for p in v1.processes() {
        assert_eq!(p.ns_pid, p.pid);
        assert_eq!(p.itimers, ITimers::default());
        assert!(p.threads.iter().all(|t| t.sched.is_none()));
        for t in &p.threads {
            assert_eq!(t.ns_tid, t.tid);
        }
    }
    assert_eq!(v1.processes()[0].threads.len(), 2);
}
