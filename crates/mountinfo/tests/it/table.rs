//! MountTable queries on a hand-written table: children, parent chain, the mount at a path
//! (overmounts hide what is under them), the mounts of one superblock.

use std::ffi::OsStr;
use std::path::Path;

use crcli_mountinfo::{DevId, MountTable};

const TREE: &[u8] = include_bytes!("../fixtures/tree.mountinfo");

fn table() -> MountTable {
    MountTable::from_mountinfo(TREE, None).expect("tree fixture parses")
}

fn src_at(t: &MountTable, p: &str) -> Option<String> {
    t.mount_at(Path::new(p)).map(|m| {
        m.source
            .as_deref()
            .unwrap_or(OsStr::new("-"))
            .to_string_lossy()
            .into_owned()
    })
}

#[test]
fn mount_at_follows_the_path_walk() {
    let t = table();
    assert_eq!(src_at(&t, "/").as_deref(), Some("/dev/sda1"));
    assert_eq!(src_at(&t, "/etc/passwd").as_deref(), Some("/dev/sda1"));
    assert_eq!(src_at(&t, "/proc").as_deref(), Some("proc"));
    assert_eq!(src_at(&t, "/proc/self/fd").as_deref(), Some("proc"));
    // "/procfs" is not under "/proc": components, not string prefixes.
    assert_eq!(src_at(&t, "/procfs").as_deref(), Some("/dev/sda1"));
    // The upper tmpfs covers /mnt; the hidden mount under the lower one is unreachable.
    assert_eq!(src_at(&t, "/mnt").as_deref(), Some("upper"));
    assert_eq!(src_at(&t, "/mnt/hidden/x").as_deref(), Some("upper"));
    assert_eq!(src_at(&t, "/mnt/deep/f").as_deref(), Some("deep"));
    assert_eq!(
        src_at(&t, "/mnt/deep/bind-of-lower/y").as_deref(),
        Some("lower")
    );
    assert_eq!(src_at(&t, "/srv/a b/c").as_deref(), Some("odd"));
    assert_eq!(src_at(&t, "/srv/a").as_deref(), Some("/dev/sda1"));
    // The orphan (parent not in the table) is a second root; paths under it reach it.
    assert_eq!(src_at(&t, "/detached-root/z").as_deref(), Some("orphan"));
    assert_eq!(t.mount_at(Path::new("relative")), None);
    assert_eq!(
        MountTable::from_mountinfo(b"", None)
            .unwrap()
            .mount_at(Path::new("/")),
        None
    );
}

#[test]
fn children_parents_and_superblocks() {
    let t = table();
    let root = t.by_old_id(20).unwrap();
    let kids: Vec<u32> = t.children(root).iter().map(|m| m.old_id).collect();
    assert_eq!(kids, [21, 30, 35]);
    let lower = t.by_old_id(30).unwrap();
    let kids: Vec<u32> = t.children(lower).iter().map(|m| m.old_id).collect();
    assert_eq!(kids, [31, 32]);
    let bind = t.by_old_id(34).unwrap();
    let chain: Vec<u32> = t.parent_chain(bind).iter().map(|m| m.old_id).collect();
    assert_eq!(chain, [33, 32, 30, 20]);
    assert_eq!(t.parent(root), None);
    let roots: Vec<u32> = t.roots().iter().map(|m| m.old_id).collect();
    assert_eq!(roots, [20, 40]);
    let sb: Vec<u32> = t
        .superblock_mounts(DevId {
            major: 0,
            minor: 30,
        })
        .iter()
        .map(|m| m.old_id)
        .collect();
    assert_eq!(sb, [30, 34]);
    assert_eq!(bind.root, Path::new("/x"));
    assert!(t.by_unique_id(1).is_none());
}

#[test]
fn differences_name_the_field() {
    let a = table();
    let text = String::from_utf8(TREE.to_vec()).unwrap();
    let ro = text.replace("/mnt/deep rw", "/mnt/deep ro");
    let b = MountTable::from_mountinfo(ro.as_bytes(), None).unwrap();
    let d = a.differences(&b);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(matches!(
        &d[0],
        crcli_mountinfo::Difference::Field {
            old_id: 33,
            field: "attrs",
            ..
        }
    ));
    let all_but_last: Vec<&str> = text.lines().filter(|l| !l.starts_with("40 ")).collect();
    let fewer = MountTable::from_mountinfo(all_but_last.join("\n").as_bytes(), None).unwrap();
    assert_eq!(
        a.differences(&fewer),
        [crcli_mountinfo::Difference::OnlyLeft(40)]
    );
    assert_eq!(
        fewer.differences(&a),
        [crcli_mountinfo::Difference::OnlyRight(40)]
    );
}

#[test]
fn merge_keeps_tags_and_mounts_only_one_side_saw() {
    use crcli_mountinfo::Origin;
    let text = String::from_utf8(TREE.to_vec()).unwrap();
    // The "statmount" side lacks mount 40; the mountinfo side has a future tag on 21.
    let left: Vec<&str> = text.lines().filter(|l| !l.starts_with("40 ")).collect();
    let left = MountTable::from_mountinfo(left.join("\n").as_bytes(), Some(9)).unwrap();
    let right = text.replace("/proc rw,nosuid -", "/proc rw,nosuid future:3 -");
    let right = MountTable::from_mountinfo(right.as_bytes(), None).unwrap();
    let merged = MountTable::merge(left.clone(), right.clone());
    assert_eq!(merged.len(), 9);
    assert_eq!(merged.ns_id(), Some(9));
    assert_eq!(merged.by_old_id(21).unwrap().unknown_tags, ["future:3"]);
    assert_eq!(merged.by_old_id(21).unwrap().origin, Origin::Both);
    assert_eq!(merged.by_old_id(40).unwrap().origin, Origin::MountInfo);
    assert_eq!(merged.mounts().last().unwrap().old_id, 40);
    assert_eq!(merged.origin(), Origin::Both);
    // Without a mount only mountinfo saw, the indexes are reused and still answer.
    let both = MountTable::merge(right.clone(), right);
    assert_eq!(both.len(), 9);
    let upper = both.mount_at(Path::new("/mnt/hidden")).unwrap();
    assert_eq!(upper.old_id, 32);
    assert_eq!(both.parent(upper).unwrap().old_id, 30);
}
