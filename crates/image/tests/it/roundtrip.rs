//! A whole image written and read back through the public API: every entry equal, every byte
//! of page, file and filesystem data equal, and the JSON view lossless.

use super::sample::{page_fill, write_sample};
use crcli_image::*;

#[test]
fn sample_image_reads_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    let w = write_sample(&target, 5 << 20);
    assert_eq!(
        w.image.dir(),
        target,
        "commit returns the image at its final name"
    );
    // Read it again from disk, independently of the writer's own check.
    let img = Image::open(&target).unwrap();
    assert_eq!(img.format_version(), FORMAT_VERSION);
    assert_eq!(img.processes(), &w.processes[..]);
    assert_eq!(img.files(), &w.files[..]);
    assert_eq!(img.pipes(), &w.pipes[..]);
    assert_eq!(img.mounts(), &w.mounts[..]);
    assert_eq!(img.fs_contents().len(), 1);
    assert_eq!(img.fs_contents()[0].entries, w.fs);
    let inv = img.inventory();
    assert_eq!(inv.contents.pids, vec![100, 102]);
    assert_eq!(inv.contents.files, w.files.len() as u32);
    assert_eq!(inv.contents.pages, vec![PagesId(1), PagesId(2)]);
    assert_eq!(inv.contents.page_bytes, (5 << 20) + 8192);
    assert_eq!(img.process(102).unwrap().ppid, 100);
    assert!(img.process(7).is_none());
    assert_eq!(img.file(FileId(2)).unwrap().pos, 5);
    assert_eq!(img.mount(MountId(3)).unwrap().kind, MountKind::Unmounted);
    assert_eq!(img.pipe(PipeId(1)).unwrap().buffered, b"in the pipe");
    assert!(img.fs_content(FsContentId(1)).is_some());
}

#[test]
fn page_data_reads_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    let len = 7 << 20;
    let w = write_sample(&target, len);
    let mut r = w.image.pages(PagesId(1)).unwrap();
    let mut buf = vec![0u8; MAX_CHUNK_LEN as usize];
    let mut total = 0u64;
    let mut last_end = 0;
    while let Some(c) = r.next_chunk(&mut buf).unwrap() {
        assert!(c.addr >= last_end);
        assert!(c.len <= MAX_CHUNK_LEN as usize);
        for (i, b) in buf[..c.len].iter().enumerate() {
            assert_eq!(
                *b,
                page_fill(1, c.addr + i as u64),
                "byte at {:#x}",
                c.addr + i as u64
            );
        }
        last_end = c.addr + c.len as u64;
        total += c.len as u64;
    }
    assert_eq!(total, len);
    assert_eq!(w.image.page_streams()[0].bytes, len);
    assert!(w.image.pages(PagesId(9)).is_err());
}

#[test]
fn file_and_fs_data_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_sample(&dir.path().join("img"), 4096);
    let img = &w.image;
    let Some(FileKind::Unlinked { extents, location }) = img
        .files()
        .iter()
        .map(|f| &f.kind)
        .find(|k| matches!(k, FileKind::Unlinked { .. }))
    else {
        panic!("no unlinked file in the sample")
    };
    assert_eq!(location.size, 4096 + 16);
    let data = img.files_data().unwrap();
    let mut buf = vec![0u8; MAX_CHUNK_LEN as usize];
    assert_eq!(extents.len(), 1);
    assert_eq!(extents[0].offset, 4096);
    data.read_extent(&extents[0], &mut buf, 0).unwrap();
    assert_eq!(&buf[..16], b"deleted but open");

    let fs = img.fs_content(FsContentId(1)).unwrap();
    let fsdata = img.fs_data(FsContentId(1)).unwrap();
    let e = fs
        .entries
        .iter()
        .find(|e| e.path.as_bytes() == b"dir/data.bin")
        .unwrap();
    let FsEntryKind::Regular { size, ref extents } = e.kind else {
        panic!("data.bin is not regular")
    };
    assert_eq!(size, (1 << 20) + 5000 + 4096);
    assert_eq!(extents.len(), 2);
    fsdata.read_extent(&extents[0], &mut buf, 0).unwrap();
    assert_eq!(&buf[..extents[0].len as usize], b"hello, lost superblock\n");
    fsdata.read_extent(&extents[1], &mut buf, 0).unwrap();
    assert_eq!(extents[1].offset, 1 << 20);
    assert!(buf[..5000].iter().all(|&b| b == 7));
    assert!(img.fs_data(FsContentId(2)).is_err());
}

#[test]
fn json_view_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_sample(&dir.path().join("img"), 4096);
    let json = w.image.to_json();
    let back: Vec<Process> = serde_json::from_value(json["processes"].clone()).unwrap();
    assert_eq!(back, w.processes);
    let back: Vec<FileEntry> = serde_json::from_value(json["files"].clone()).unwrap();
    assert_eq!(back, w.files);
    let back: Vec<MountEntry> = serde_json::from_value(json["mounts"].clone()).unwrap();
    assert_eq!(back, w.mounts);
    let back: Vec<PipeEntry> = serde_json::from_value(json["pipes"].clone()).unwrap();
    assert_eq!(back, w.pipes);
    let back: Vec<FsContent> = serde_json::from_value(json["fs_contents"].clone()).unwrap();
    assert_eq!(back[0].entries, w.fs);
    let back: Inventory = serde_json::from_value(json["inventory"].clone()).unwrap();
    assert_eq!(&back, w.image.inventory());
    // Non-UTF-8-safe and binary fields have readable forms.
    assert_eq!(json["processes"][0]["comm"], "sample\u{2603}");
    assert_eq!(json["pipes"][0]["buffered"], "696e207468652070697065");
}
