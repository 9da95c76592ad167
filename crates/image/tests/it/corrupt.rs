//! Untrusted input: every truncation and every single-bit flip of every metadata file is
//! refused with an error naming the file; damaged data is caught by its chunk checksum; wrong
//! magic, absurd lengths and counts, paths with `..` or NUL, and newer versions get clear
//! errors. Nothing here may panic.

use std::path::{Path, PathBuf};

use super::sample::{p, scratch, try_write_sample, write_sample, Edit};
use crcli_image::codec::{FileTag, HEADER_LEN, MAX_RECORD_LEN};
use crcli_image::*;

fn copy_image(src: &Path, dst: &Path) {
    std::fs::create_dir(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

fn small_sample() -> (tempfile::TempDir, PathBuf) {
    let dir = scratch();
    let target = dir.path().join("img");
    write_sample(&target, 8192);
    (dir, target)
}

/// Rewrites the header and record checksums of a record file, as an attacker (or a buggy
/// editor) would after changing a payload, so the damage reaches the decoder.
fn fix_checksums(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let crc = crc32c::crc32c(&b[..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    let mut pos = HEADER_LEN as usize;
    while pos + 8 <= b.len() {
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap());
        if len == u32::MAX {
            let crc = crc32c::crc32c(&b[pos..pos + 12]);
            b[pos + 12..pos + 16].copy_from_slice(&crc.to_le_bytes());
            break;
        }
        let end = pos + 8 + len as usize;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b[pos..pos + 4]), &b[pos + 8..end]);
        b[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
    std::fs::write(path, b).unwrap();
}

fn metadata_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "img"))
        .collect();
    v.sort();
    v
}

fn open_err(dir: &Path) -> String {
    match Image::open(dir) {
        Ok(_) => panic!("a damaged image at {} was accepted", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_truncation_of_every_file_is_refused() {
    let (d, img) = small_sample();
    let work = d.path().join("work");
    copy_image(&img, &work);
    let all: Vec<PathBuf> = std::fs::read_dir(&img)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for orig in all {
        let name = orig.file_name().unwrap().to_owned();
        let bytes = std::fs::read(&orig).unwrap();
        let target = work.join(&name);
        // Data files: every cut that removes data (cutting nothing but trailing zeros of an
        // unused tail cannot happen: data files hold exactly what the extents use).
        for len in 0..bytes.len() {
            std::fs::write(&target, &bytes[..len]).unwrap();
            let msg = open_err(&work);
            assert!(
                msg.contains(&*name.to_string_lossy()),
                "truncating {name:?} to {len} bytes: error does not name the file: {msg}"
            );
        }
        std::fs::write(&target, &bytes).unwrap();
        Image::open(&work).unwrap();
    }
}

#[test]
fn every_bit_flip_in_metadata_is_refused() {
    let (d, img) = small_sample();
    let work = d.path().join("work");
    copy_image(&img, &work);
    for orig in metadata_files(&img) {
        let name = orig.file_name().unwrap().to_owned();
        let bytes = std::fs::read(&orig).unwrap();
        let target = work.join(&name);
        for pos in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[pos] ^= bit;
                std::fs::write(&target, &b).unwrap();
                let msg = open_err(&work);
                assert!(
                    msg.contains(&*name.to_string_lossy()) || msg.starts_with("image "),
                    "flipping bit {bit:#x} at byte {pos} of {name:?}: {msg}"
                );
            }
        }
        std::fs::write(&target, &bytes).unwrap();
    }
    Image::open(&work).unwrap();
}

#[test]
fn flipped_page_data_is_caught_by_its_chunk_checksum() {
    let (_d, img) = small_sample();
    let data = img.join("pages-1.data");
    let mut b = std::fs::read(&data).unwrap();
    b[HEADER_LEN as usize + 4096 + 17] ^= 0x04;
    std::fs::write(&data, &b).unwrap();
    let image = Image::open(&img).unwrap(); // metadata is intact
    let mut r = image.pages(PagesId(1)).unwrap();
    let mut buf = vec![0u8; MAX_CHUNK_LEN as usize];
    let err = r.next_chunk(&mut buf).unwrap_err().to_string();
    assert!(err.contains("pages-1.data"), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn verify_data_checks_every_data_byte() {
    for name in ["pages-1.data", "pages-2.data", "fs-1.data", "files.data"] {
        let (_d, img) = small_sample();
        let clean = Image::open(&img).unwrap().verify_data().unwrap();
        assert_eq!(clean, 8192 + 8192 + 23 + 5000 + 16);
        let data = img.join(name);
        let mut b = std::fs::read(&data).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0x40;
        std::fs::write(&data, &b).unwrap();
        let image = Image::open(&img).unwrap();
        let err = image.verify_data().unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains("checksum mismatch"),
            "{name}: {err}"
        );
    }
}

#[test]
fn flipped_fs_and_file_data_are_caught() {
    let (_d, img) = small_sample();
    for name in ["fs-1.data", "files.data"] {
        let data = img.join(name);
        let mut b = std::fs::read(&data).unwrap();
        b[HEADER_LEN as usize + 3] ^= 0x20;
        std::fs::write(&data, &b).unwrap();
    }
    let image = Image::open(&img).unwrap();
    let mut buf = vec![0u8; MAX_CHUNK_LEN as usize];
    let FsEntryKind::Regular { extents, .. } = &image.fs_contents()[0].entries[2].kind else {
        panic!("entry 2 is the regular file")
    };
    let err = image
        .fs_data(FsContentId(1))
        .unwrap()
        .read_extent(&extents[0], &mut buf, 2);
    assert!(err.unwrap_err().to_string().contains("fs-1.data"));
    let FileKind::Unlinked { extents, .. } = &image.files()[11].kind else {
        panic!("file 11 is the unlinked one")
    };
    let err = image
        .files_data()
        .unwrap()
        .read_extent(&extents[0], &mut buf, 11);
    assert!(err.unwrap_err().to_string().contains("checksum mismatch"));
}

#[test]
fn wrong_magic_names_the_file() {
    let (_d, img) = small_sample();
    std::fs::copy(img.join("files.img"), img.join("mounts.img")).unwrap();
    let err = Image::open(&img).unwrap_err();
    assert!(matches!(err, ImageError::BadMagic { .. }));
    let msg = err.to_string();
    assert!(msg.contains("mounts.img: not a crcli mounts file"), "{msg}");

    std::fs::write(img.join("mounts.img"), b"hello world, not an image at all").unwrap();
    assert!(open_err(&img).contains("not a crcli mounts file"));
    std::fs::write(img.join("mounts.img"), b"").unwrap();
    assert!(open_err(&img).contains("not a crcli mounts file"));
}

#[test]
fn missing_file_is_named() {
    let (_d, img) = small_sample();
    std::fs::remove_file(img.join("pipes.img")).unwrap();
    let msg = open_err(&img);
    assert!(
        msg.starts_with("opening ") && msg.contains("pipes.img"),
        "{msg}"
    );
    std::fs::remove_file(img.join("pages-2.data")).unwrap();
}

#[test]
fn fifos_and_devices_in_an_image_are_refused_without_blocking() {
    let (_d, img) = small_sample();
    let fifo = img.join("processes.img");
    let saved = std::fs::read(&fifo).unwrap();
    std::fs::remove_file(&fifo).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let msg = open_err(&img);
    assert!(
        msg.contains("processes.img record 0: not a regular file"),
        "{msg}"
    );
    std::fs::remove_file(&fifo).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &fifo).unwrap();
    let msg = open_err(&img);
    assert!(
        msg.contains("processes.img record 0: not a regular file"),
        "{msg}"
    );
    std::fs::remove_file(&fifo).unwrap();
    std::fs::write(&fifo, saved).unwrap();
    Image::open(&img).unwrap();
    let data = img.join("pages-1.data");
    std::fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &data).unwrap();
    assert!(open_err(&img).contains("pages-1.data"));
}

#[test]
fn absurd_record_length_is_refused_before_reading() {
    let (_d, img) = small_sample();
    let path = img.join("processes.img");
    let mut b = std::fs::read(&path).unwrap();
    let h = HEADER_LEN as usize;
    b[h..h + 4].copy_from_slice(&(MAX_RECORD_LEN + 1).to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    let msg = open_err(&img);
    assert!(msg.contains("processes.img record 0"), "{msg}");
    assert!(msg.contains("exceeds the limit"), "{msg}");
    b[h..h + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    assert!(open_err(&img).contains("exceeds the limit"));
}

#[test]
fn absurd_counts_inside_a_record_are_refused() {
    // A pipe record claiming a buffer of 2^63 bytes: postcard varint of the length, no data.
    let mut payload = vec![1u8, 0x80, 0x80, 0x04]; // id 1, capacity 65536
    payload.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    let err = codec::decode_records::<PipeEntry>(
        &frame(FileTag::Pipes, &[payload]),
        Path::new("pipes.img"),
        FileTag::Pipes,
        10,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("decoding pipes.img record 0"), "{err}");

    // A trailer claiming more records than the file holds, and one claiming fewer.
    let ok = codec::encode_records(
        FileTag::Pipes,
        &[PipeEntry {
            id: PipeId(1),
            capacity: 1,
            buffered: vec![],
        }],
    )
    .unwrap();
    for claimed in [0u64, 2, u64::MAX] {
        let mut b = ok.clone();
        let n = b.len();
        b[n - 12..n - 4].copy_from_slice(&claimed.to_le_bytes());
        let crc = crc32c::crc32c(&b[n - 16..n - 4]);
        b[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let err = codec::decode_records::<PipeEntry>(&b, Path::new("x"), FileTag::Pipes, 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("trailer says {claimed} records")),
            "{err}"
        );
    }
    // More records than allowed.
    let many = codec::encode_records(
        FileTag::Pipes,
        &vec![
            PipeEntry {
                id: PipeId(1),
                capacity: 1,
                buffered: vec![]
            };
            5
        ],
    )
    .unwrap();
    let err =
        codec::decode_records::<PipeEntry>(&many, Path::new("x"), FileTag::Pipes, 4).unwrap_err();
    assert!(err.to_string().contains("more than 4 records"), "{err}");
    // Bytes after the trailer.
    let mut b = ok.clone();
    b.push(0);
    let err =
        codec::decode_records::<PipeEntry>(&b, Path::new("x"), FileTag::Pipes, 4).unwrap_err();
    assert!(err.to_string().contains("bytes after the trailer"), "{err}");
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[test]
fn many_tiny_list_elements_hit_a_limit_not_the_allocator() {
    // An FsEntry whose 16 MiB payload is 8 million empty xattrs (2 bytes each, 48 in memory).
    let n = (16 << 20) / 2 - 64;
    let mut p = vec![0u8; 9]; // path "", Directory, mode, uid, gid, atime, mtime
    varint(n as u64, &mut p);
    p.resize(p.len() + 2 * n, 0);
    p.push(0); // ino
    let err = codec::decode_payload::<FsEntry>(FORMAT_VERSION, &p).unwrap_err();
    assert_eq!(
        err,
        format!("a list of {n} elements exceeds the limit of 65536")
    );

    // A regular file with 4 million empty extents (4 bytes each, 32 in memory): under every
    // per-list cap, stopped by the per-record budget.
    let n = (16 << 20) / 4 - 64;
    let mut p = vec![0u8, 1, 0]; // path "", Regular, size 0
    varint(n as u64, &mut p);
    p.resize(p.len() + 4 * n, 0);
    p.extend([0u8; 10]);
    let err = codec::decode_payload::<FsEntry>(FORMAT_VERSION, &p).unwrap_err();
    assert_eq!(
        err,
        "its lists would take more memory than the decoding limit"
    );

    // Nested lists share the budget: 200 threads, each with 65 536 empty queued siginfos (one
    // byte each, 24 in memory: 300 MiB if trusted), every list under its own cap.
    let mut v: Vec<u8> = vec![];
    // pid ppid pgid sid ns_pid comm("") then threads count
    v.extend([1u8, 0, 1, 1, 1, 0]);
    let threads = 200usize;
    varint(threads as u64, &mut v);
    for _ in 0..threads {
        v.extend([1u8, 1, 0]); // tid, ns_tid, comm ""
        v.extend([0u8; 27]); // regs
        v.extend([0u8, 0, 0]); // xstate size, features, data ""
        v.push(0); // sigmask
        v.push(0); // pending.mask
        varint(65536, &mut v);
        v.resize(v.len() + 65536, 0); // 65 536 empty blobs
        v.extend([0u8; 3 + 1 + 2 + 1 + 1]); // sigaltstack, rseq None, robust, cctid, tls []
        v.push(0); // sched None
    }
    assert!(v.len() < MAX_RECORD_LEN as usize);
    let err = codec::decode_payload::<Process>(FORMAT_VERSION, &v).unwrap_err();
    assert_eq!(
        err,
        "its lists would take more memory than the decoding limit"
    );
}

#[test]
fn many_records_with_big_lists_hit_the_image_wide_limit() {
    // Each process decodes into 30 MiB (20 threads x 65 536 empty queued siginfos, one byte
    // each on disk): under the per-record budget, but 20 of them exceed the image-wide one.
    let src = scratch();
    let sample = write_sample(&src.path().join("s"), 4096);
    let dir = scratch();
    let mut w = Image::create(dir.path().join("img")).unwrap();
    let mut p = sample.processes[1].clone();
    let mut t = p.threads[0].clone();
    t.pending.queued = vec![vec![]; 65536];
    p.threads = vec![t; 20];
    for i in 0..20u32 {
        p.pid = 1000 + i;
        w.add_process(&p).unwrap();
    }
    let err = w
        .commit(Inventory::new(1000, vec![]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("decoding ") && err.contains("processes.img record 17: "),
        "{err}"
    );
    assert!(err.contains("more memory than the decoding limit"), "{err}");
}

/// Frames raw payloads as a record file with correct checksums.
fn frame(tag: FileTag, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = codec::encode_header(tag, FORMAT_VERSION).to_vec();
    for pl in payloads {
        let lb = (pl.len() as u32).to_le_bytes();
        out.extend_from_slice(&lb);
        out.extend_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&lb), pl).to_le_bytes());
        out.extend_from_slice(pl);
    }
    let mut t = [0u8; 12];
    t[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    t[4..].copy_from_slice(&(payloads.len() as u64).to_le_bytes());
    out.extend_from_slice(&t);
    out.extend_from_slice(&crc32c::crc32c(&t).to_le_bytes());
    out
}

/// Writes an image whose file 2 has path `XXsafeXX`, then replaces those bytes in files.img.
fn image_with_path_bytes(replace: &[u8; 8]) -> (tempfile::TempDir, PathBuf) {
    let dir = scratch();
    let src = dir.path().join("s");
    let w = write_sample(&src, 4096);
    let target = dir.path().join("img");
    let mut iw = Image::create(&target).unwrap();
    for m in &w.mounts {
        let mut m = m.clone();
        m.kept_fds.clear();
        m.rebuild = match m.kind {
            MountKind::Attached => None,
            _ => Some(RebuildPlan::Remount {
                source: OsBytes::try_from("/dev/sda").unwrap(),
                fs_type: "ext4".into(),
                options: String::new(),
                subroot: p(""),
            }),
        };
        iw.add_mount(&m).unwrap();
    }
    iw.add_file(&FileEntry {
        id: FileId(2),
        flags: 0,
        pos: 0,
        kind: FileKind::Regular(FileLocation {
            mount: MountId(2),
            path: p("dir/XXsafeXX/f"),
            dev: 1,
            ino: 2,
            mode: 0o100644,
            size: 0,
            mtime: Timestamp::default(),
        }),
    })
    .unwrap();
    iw.commit(Inventory::new(0, vec![])).unwrap();
    let path = target.join("files.img");
    let mut b = std::fs::read(&path).unwrap();
    let at = b.windows(8).position(|w| w == b"XXsafeXX").unwrap();
    b[at..at + 8].copy_from_slice(replace);
    std::fs::write(&path, b).unwrap();
    fix_checksums(&path);
    (dir, target)
}

#[test]
fn paths_with_dotdot_or_nul_are_refused() {
    let (_d, img) = image_with_path_bytes(b"XX/../XX");
    let msg = open_err(&img);
    assert!(msg.starts_with("decoding "), "{msg}");
    assert!(msg.contains("files.img record 0"), "{msg}");
    assert!(msg.contains("contains a `..` component"), "{msg}");

    let (_d, img) = image_with_path_bytes(b"XX\0safeX");
    let msg = open_err(&img);
    assert!(
        msg.contains("files.img record 0") && msg.contains("NUL"),
        "{msg}"
    );

    let (_d, img) = image_with_path_bytes(b"XXsafeYY");
    Image::open(&img).unwrap();
}

fn set_version(path: &Path, v: u32) {
    let mut b = std::fs::read(path).unwrap();
    b[8..12].copy_from_slice(&v.to_le_bytes());
    let crc = crc32c::crc32c(&b[..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

#[test]
fn newer_and_unknown_versions_are_refused_by_name() {
    let (_d, img) = small_sample();
    set_version(&img.join("inventory.img"), 5);
    assert_eq!(
        open_err(&img),
        format!(
            "image {} has format version 5, this crcli reads versions 1 to 4",
            img.display()
        )
    );
    set_version(&img.join("inventory.img"), 0);
    assert!(open_err(&img).contains("has format version 0, this crcli reads versions 1 to 4"));
    set_version(&img.join("inventory.img"), 4);
    Image::open(&img).unwrap();
    set_version(&img.join("pagemap-2.img"), 5);
    assert_eq!(
        open_err(&img),
        format!(
            "image {} has format version 5, this crcli reads versions 1 to 4",
            img.join("pagemap-2.img").display()
        )
    );
}

#[test]
fn invalid_entries_are_refused_with_file_and_record() {
    let cases: Vec<(Edit<'_>, &str)> = vec![
        (
            &|p, _, _| {
                p[1].sigactions.pop();
            },
            "processes.img record 1: 63 sigactions, not 64",
        ),
        (
            &|p, _, _| p[0].rlimits.push(Rlimit::default()),
            "processes.img record 0: a list of 17 elements exceeds the limit of 16",
        ),
        (
            &|p, _, _| p[1].ppid = 999,
            "processes.img record 1: process 102: its parent 999 is not a live process",
        ),
        (
            &|p, _, _| p[1].ns_pid = 1,
            "processes.img record 1: process 102 has pid 1 in the tree's PID namespace",
        ),
        (
            &|p, _, _| p[0].threads[1].ns_tid = 1,
            "processes.img record 0: process 100: thread 101 has id 1 in the tree's PID namespace",
        ),
        (
            &|p, _, _| p[1].threads[0].ns_tid = 5,
            "processes.img record 1: process 102: thread 102 has id 5 in the tree's PID namespace",
        ),
        (
            &|p, _, _| p[1].pgid = 555,
            "processes.img record 1: process 102: its process group 555 is neither",
        ),
        (
            &|p, _, _| p[0].vmas.swap(0, 1),
            "processes.img record 0: mapping 0x400000-0x402000 is out of order",
        ),
        (
            &|p, _, _| p[0].vmas[0].end = 0x400800,
            "mapping 0x400000-0x400800 is empty or not page aligned",
        ),
        (
            &|p, _, _| p[0].fds[3].fd = 2,
            "processes.img record 0: fd 2 is out of order or duplicated",
        ),
        (
            &|p, _, _| {
                let t = p[0].threads[1].clone();
                p[1].threads.push(t);
            },
            "processes.img record 1: thread id 101 appears twice",
        ),
        (
            &|p, _, _| p[1].threads.clear(),
            "process 102 has no threads",
        ),
        (
            &|p, _, _| p[0].threads[0].xstate.size = 65,
            "xstate size 65 does not match",
        ),
        (
            &|p, _, _| p[0].threads[0].pending.queued.push(vec![0; 7]),
            "a queued siginfo has 7 bytes",
        ),
        (
            &|p, _, _| p[0].pages = Some(PagesId(9)),
            "page stream 9 is not in the image",
        ),
        (
            &|p, _, _| {
                p[0].vmas[0].backing = VmaBacking::File {
                    file: FileId(70),
                    offset: 0,
                }
            },
            "a mapping refers to file 70",
        ),
        (
            &|_, f, _| f[3].id = FileId(1),
            "files.img record 3: file 1 is defined twice",
        ),
        (
            &|_, f, _| {
                if let FileKind::Regular(l) = &mut f[1].kind {
                    l.mount = MountId(77)
                }
            },
            "files.img record 1: file 2 is on mount 77, which is not in the image",
        ),
        (
            &|_, f, _| {
                if let FileKind::Regular(l) = &mut f[1].kind {
                    l.path = p("/abs")
                }
            },
            "has an absolute path",
        ),
        (
            &|_, f, _| {
                if let FileKind::Regular(l) = &mut f[1].kind {
                    l.mtime.nsecs = 1_000_000_000
                }
            },
            "mtime has 1000000000 nanoseconds",
        ),
        (
            &|_, f, _| {
                f[9].kind = FileKind::Pipe {
                    pipe: PipeId(5),
                    end: PipeEnd::Read,
                }
            },
            "files.img record 9: pipe 5 is not in the image",
        ),
        (
            &|_, f, _| {
                if let FileKind::Unlinked { extents, .. } = &mut f[11].kind {
                    extents[0].data_offset = 1 << 40
                }
            },
            "files.img record 11: extent at 0x1000 points at bytes",
        ),
        (
            &|_, f, _| {
                if let FileKind::Unlinked { location, .. } = &mut f[11].kind {
                    location.size = 10
                }
            },
            "lies beyond the file size 10",
        ),
        (
            &|_, _, m| m[0].rebuild = m[2].rebuild.clone(),
            "mounts.img record 0: attached mount 1 has a rebuild plan",
        ),
        (
            &|_, _, m| m[2].mountpoint = Some(p("/x")),
            "mounts.img record 2: Unmounted mount 3 has a mountpoint",
        ),
        (
            &|_, _, m| m[2].rebuild = None,
            "Unmounted mount 3 has no rebuild plan",
        ),
        (
            &|_, _, m| m[1].parent = Some(MountId(40)),
            "mount 2: parent mount 40 is not in the image",
        ),
        (
            &|_, _, m| m[4].kept_fds[0].fd = 5000,
            "keeps fd 5000 of process 100, which does not exist",
        ),
        (
            &|_, _, m| m[3].kept_fds = m[4].kept_fds.clone(),
            "mount 4 keeps mount fds but is not anonymous",
        ),
        (
            &|_, _, m| {
                if let Some(RebuildPlan::LostSuperblock { content, .. }) = &mut m[4].rebuild {
                    *content = FsContentId(3)
                }
            },
            "mount 5: filesystem content 3 is not in the image",
        ),
    ];
    for (i, (edit, want)) in cases.into_iter().enumerate() {
        let dir = scratch();
        let target = dir.path().join("img");
        let err = match try_write_sample(&target, 4096, edit) {
            Ok(_) => panic!("case {i}: accepted, expected {want:?}"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with("checking ") || err.starts_with("decoding "),
            "case {i}: {err}"
        );
        assert!(err.contains(want), "case {i}: expected {want:?} in {err:?}");
        assert!(!target.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "case {i}: temp dir left"
        );
    }
}

/// Rewrites the inventory of the sample image after `edit`, checksums fixed.
fn edited_inventory(edit: impl Fn(&mut Inventory)) -> (tempfile::TempDir, PathBuf) {
    let (d, img) = small_sample();
    let mut inv = Image::open(&img).unwrap().inventory().clone();
    edit(&mut inv);
    let bytes = codec::encode_records(FileTag::Inventory, &[inv]).unwrap();
    std::fs::write(img.join("inventory.img"), bytes).unwrap();
    (d, img)
}

#[test]
fn invalid_tree_facts_are_refused() {
    type InvEdit<'a> = &'a dyn Fn(&mut Inventory);
    let cases: Vec<(InvEdit<'_>, &str)> = vec![
        (
            &|i| i.tree.zombies[0].ppid = 103,
            "zombie 103: its parent 103 is not a live process",
        ),
        (
            &|i| i.tree.zombies[0].pid = 102,
            "zombie 102 is defined twice or is also a live process",
        ),
        (
            &|i| i.tree.zombies[0].ns_pid = 2,
            "pid 2 of the tree's PID namespace is used twice",
        ),
        (
            &|i| i.tree.zombies[0].exit_status = 0x7f,
            "zombie 103: 0x7f is not an exit status",
        ),
        (
            &|i| i.tree.zombies[0].exit_status = (3 << 8) | 9,
            "zombie 103: 0x309 is not an exit status",
        ),
        (
            &|i| i.tree.zombies[0].sid = 4242,
            "zombie 103: its process group 103 or session 4242 is neither",
        ),
        (
            &|i| i.tree.namespaces.own_pid_ns = false,
            "process 100 has pid 1 in the tree's PID namespace (own namespace: false)",
        ),
        (
            &|i| {
                if let Some(u) = &mut i.tree.namespaces.uts {
                    u.hostname = OsBytes::new(vec![b'h'; 65]).unwrap();
                }
            },
            "the host name is longer than 64 bytes",
        ),
        (
            &|i| {
                let id = i.tree.namespaces.ids[0];
                i.tree.namespaces.ids.push(id);
            },
            "namespace Pid is listed twice",
        ),
    ];
    for (n, (edit, want)) in cases.into_iter().enumerate() {
        let (_d, img) = edited_inventory(edit);
        let err = open_err(&img);
        assert!(err.contains(want), "case {n}: expected {want:?} in {err:?}");
    }
    // Killed by a signal (with a core dump) and exited with a code are both exit statuses.
    for status in [9, 0x80 | 11, 255 << 8, 0] {
        let (_d, img) = edited_inventory(|i| i.tree.zombies[0].exit_status = status);
        Image::open(&img).unwrap();
    }
}
