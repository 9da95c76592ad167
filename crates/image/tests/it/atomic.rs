//! Atomic image creation: nothing at the target until commit, no temporary directory left after
//! a drop or a failure, and an existing target never replaced.

use std::os::unix::fs::PermissionsExt;

use super::sample::write_sample;
use crcli_image::*;

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn drop_without_commit_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    let mut w = Image::create(&target).unwrap();
    let tmp = w.temp_dir().to_owned();
    assert!(tmp.is_dir());
    assert_eq!(tmp.parent(), Some(dir.path()));
    assert_eq!(
        std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let mut pw = w.pages(PagesId(1)).unwrap();
    pw.add(0, &[1u8; 4096]).unwrap();
    pw.finish().unwrap();
    assert!(!target.exists(), "the target must not appear before commit");
    drop(w);
    assert!(!tmp.exists());
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn failed_commit_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    let mut w = Image::create(&target).unwrap();
    let tmp = w.temp_dir().to_owned();
    // A process whose cwd names a file that is not in the image.
    let src = tempfile::tempdir().unwrap();
    let sample = write_sample(&src.path().join("s"), 4096);
    let mut p = sample.processes[1].clone();
    p.cwd = FileId(999);
    p.root = FileId(999);
    p.fds.clear();
    w.add_process(&p).unwrap();
    let err = w.commit(Inventory::new(p.pid, vec![])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("processes.img record 0"), "{msg}");
    assert!(msg.contains("file 999"), "{msg}");
    assert!(!tmp.exists());
    assert!(!target.exists());
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn unfinished_page_stream_fails_commit() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    let mut w = Image::create(&target).unwrap();
    let mut pw = w.pages(PagesId(3)).unwrap();
    pw.add(0, &[1u8; 4096]).unwrap();
    drop(pw);
    assert!(w.pages(PagesId(3)).is_err(), "a stream id is used once");
    let err = w.commit(Inventory::new(0, vec![])).unwrap_err();
    assert!(
        err.to_string()
            .contains("page stream 3 was started but not finished"),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn existing_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    let err = Image::create(&target).err().expect("must refuse");
    assert!(matches!(err, ImageError::Exists { .. }), "{err}");
    assert_eq!(entries(&target), vec!["keep"]);
}

#[test]
fn an_empty_target_directory_is_replaced_by_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    std::fs::create_dir(&target).unwrap();
    let w = Image::create(&target).unwrap();
    let img = w.commit(Inventory::new(0, vec![])).unwrap();
    assert!(img.processes().is_empty());
    assert!(entries(&target).contains(&"inventory.img".to_string()));
    assert_eq!(entries(dir.path()), vec!["img"]);

    // If it stops being empty before the commit, nothing is replaced.
    let target = dir.path().join("img2");
    std::fs::create_dir(&target).unwrap();
    let w = Image::create(&target).unwrap();
    std::fs::write(target.join("late"), b"x").unwrap();
    let err = w.commit(Inventory::new(0, vec![])).unwrap_err();
    assert!(
        err.to_string().contains("renaming the temporary image"),
        "{err}"
    );
    assert_eq!(entries(&target), vec!["late"]);
    assert_eq!(entries(dir.path()), vec!["img", "img2"]);
}

#[test]
fn target_created_meanwhile_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    let w = Image::create(&target).unwrap();
    std::fs::create_dir(&target).unwrap(); // an empty directory: plain rename would replace it
    let err = w.commit(Inventory::new(0, vec![])).unwrap_err();
    assert!(
        err.to_string().contains("renaming the temporary image"),
        "{err}"
    );
    assert!(entries(&target).is_empty());
    assert_eq!(entries(dir.path()), vec!["img"]);
}

#[test]
fn committed_image_is_complete_and_has_no_temp_dir() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("img");
    write_sample(&target, 4096);
    assert_eq!(entries(dir.path()), vec!["img"]);
    assert_eq!(
        entries(&target),
        vec![
            "files.data",
            "files.img",
            "fs-1.data",
            "fs-1.img",
            "inventory.img",
            "mounts.img",
            "pagemap-1.img",
            "pagemap-2.img",
            "pages-1.data",
            "pages-2.data",
            "pipes.img",
            "processes.img",
        ]
    );
}
