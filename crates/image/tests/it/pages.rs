//! Page streams: the writer's rules, chunking, and the reader's checks.

use crcli_image::*;

fn stream(pages: &[(u64, usize, u8)]) -> (tempfile::TempDir, Image) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    let mut w = Image::create(&target).unwrap();
    let mut pw = w.pages(PagesId(7)).unwrap();
    for &(addr, len, fill) in pages {
        pw.add(addr, &vec![fill; len]).unwrap();
    }
    pw.finish().unwrap();
    let img = w.commit(Inventory::new(0, vec![])).unwrap();
    (dir, img)
}

#[test]
fn runs_are_split_into_checksummed_chunks() {
    let big = (MAX_CHUNK_LEN as usize) * 2 + 3 * 4096;
    let (_d, img) = stream(&[
        (0x1000, 4096, 1),
        (0x10_0000, big, 2),
        (0x7fff_f000_0000, 8192, 3),
    ]);
    let mut r = img.pages(PagesId(7)).unwrap();
    let mut got = vec![];
    while let Some(e) = r.next_extent().unwrap() {
        got.push((e.offset, e.len));
    }
    let m = u64::from(MAX_CHUNK_LEN);
    assert_eq!(
        got,
        vec![
            (0x1000, 4096),
            (0x10_0000, MAX_CHUNK_LEN),
            (0x10_0000 + m, MAX_CHUNK_LEN),
            (0x10_0000 + 2 * m, 3 * 4096),
            (0x7fff_f000_0000, 8192),
        ]
    );
    assert_eq!(img.page_streams()[0].extents, 5);
    assert_eq!(img.page_streams()[0].bytes, (4096 + big + 8192) as u64);
}

#[test]
fn writer_refuses_misaligned_overlapping_and_empty_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Image::create(dir.path().join("img")).unwrap();
    let mut pw = w.pages(PagesId(1)).unwrap();
    for (addr, len) in [(0x1001, 4096), (0x1000, 100), (0x1000, 0)] {
        let err = pw.add(addr, &vec![0; len]).unwrap_err();
        assert!(err.to_string().contains("multiples of 4096"), "{err}");
    }
    pw.add(0x10000, &[0; 8192]).unwrap();
    let err = pw.add(0x11000, &[0; 4096]).unwrap_err();
    assert!(
        err.to_string()
            .contains("below the end of the previous run"),
        "{err}"
    );
    let err = pw.add(0x8000, &[0; 4096]).unwrap_err();
    assert!(
        err.to_string()
            .contains("below the end of the previous run"),
        "{err}"
    );
    let err = pw.add(u64::MAX - 4095, &[0; 8192]).unwrap_err();
    assert!(
        err.to_string()
            .contains("past the end of the address space"),
        "{err}"
    );
    pw.add(0x12000, &[0; 4096]).unwrap();
    assert_eq!(pw.bytes(), 12288);
}

#[test]
fn reader_refuses_a_small_buffer() {
    let (_d, img) = stream(&[(0, 8192, 9)]);
    let mut r = img.pages(PagesId(7)).unwrap();
    let mut small = [0u8; 4096];
    let err = r.next_chunk(&mut small).unwrap_err();
    assert!(err.to_string().contains("into a buffer of 4096"), "{err}");
}

#[test]
fn empty_stream_is_fine() {
    let (_d, img) = stream(&[]);
    let mut r = img.pages(PagesId(7)).unwrap();
    let mut buf = vec![0; 4096];
    assert!(r.next_chunk(&mut buf).unwrap().is_none());
    assert!(r.next_chunk(&mut buf).unwrap().is_none());
}
