//! The mountinfo parser on hand-written lines with every quirk (insta snapshots), on malformed
//! lines (every one an error naming its line), on random input (never a panic), and against
//! the `procfs` crate's parse of this machine's real mountinfo.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crcli_mountinfo::parse::{parse_line, parse_mountinfo, unescape, OptionalField};
use crcli_mountinfo::{Mount, MountTable};
use procfs::FromRead;

const QUIRKS: &[u8] = include_bytes!("../fixtures/quirks.mountinfo");
const MALFORMED: &str = include_str!("../fixtures/malformed.txt");

#[test]
fn quirks_parse_snapshot() {
    let entries = parse_mountinfo(QUIRKS).expect("the quirks fixture parses");
    insta::assert_debug_snapshot!(entries);
}

#[test]
fn quirks_model_snapshot() {
    let table = MountTable::from_mountinfo(QUIRKS, Some(7)).expect("the quirks fixture parses");
    let mounts: Vec<&Mount> = table.mounts().iter().collect();
    insta::assert_debug_snapshot!(mounts);
}

#[test]
fn quirks_decoded_fields() {
    // The key points of the snapshot, asserted explicitly so a careless snapshot update
    // cannot hide a regression.
    let e = parse_mountinfo(QUIRKS).unwrap();
    assert_eq!(e[2].mount_point, Path::new("/mnt/a b\tc\nd\\e"));
    assert_eq!(e[3].root, Path::new("/sub dir"));
    assert_eq!(e[4].source, OsStr::new(""));
    assert_eq!(e[5].source, OsStr::new("none"));
    assert_eq!(
        e[6].optional,
        vec![
            OptionalField::Shared(2),
            OptionalField::Master(3),
            OptionalField::PropagateFrom(4),
            OptionalField::Unbindable
        ]
    );
    assert_eq!(
        e[7].optional,
        vec![
            OptionalField::Shared(5),
            OptionalField::Unknown("future:7".into()),
            OptionalField::Unknown("x-flag y".into())
        ]
    );
    assert_eq!(e[8].source, OsStr::new("/dev/disk one"));
    assert_eq!(e[9].fs_type, "fuse");
    assert_eq!(e[9].fs_subtype.as_deref(), Some("sshfs"));
    assert_eq!(e[10].super_options[1], OsStr::new("lowerdir=/l,ower"));
    assert_eq!(e[10].super_options[2], OsStr::new("upperdir=/u=p"));
    assert_eq!(e[10].super_options[3], OsStr::new("workdir=/w\\x"));
    assert_eq!(e[11].mount_point.as_os_str().as_bytes(), b"/mnt/\xffbytes");
    assert_eq!(e[12].mount_point, Path::new("/mnt/back\\slash\\x\\400\\12"));
    assert_eq!(e[14].mount_id, u32::MAX);
    assert_eq!(e[14].dev.major, 4095);
    assert_eq!(e[14].dev.minor, 1_048_575);
    assert_eq!(e[14].fs_type, "type with space");
    assert_eq!(e[14].fs_subtype.as_deref(), Some("sub.more"));
    // Line numbers are 1-based.
    assert_eq!(e[0].line, 1);
    assert_eq!(e[14].line, 15);
}

#[test]
fn malformed_lines_snapshot() {
    let errors: Vec<String> = MALFORMED
        .lines()
        .enumerate()
        .map(|(i, l)| match parse_line(l.as_bytes(), i + 1) {
            Ok(e) => panic!("line {} was accepted: {l:?} -> {e:?}", i + 1),
            Err(err) => err.to_string(),
        })
        .collect();
    insta::assert_debug_snapshot!(errors);
}

#[test]
fn malformed_line_is_named_in_a_file() {
    let mut text =
        b"27 1 254:0 / / rw - ext4 /dev/vda rw\n22 27 0:21 / /proc rw - proc proc rw\n".to_vec();
    text.extend_from_slice(b"23 27 0:22 / /sys rw sysfs sysfs rw\n");
    let err = parse_mountinfo(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parsing mountinfo line 3: no '-' separator after the optional fields"
    );
}

#[test]
fn unescape_round_trips_every_byte() {
    // Escape every byte value the way the kernel's seq_escape does for the characters it
    // escapes, plus arbitrary other bytes written as octal: decoding gives the bytes back.
    let all: Vec<u8> = (0..=255u8).collect();
    let escaped: Vec<u8> = all
        .iter()
        .flat_map(|b| format!("\\{b:03o}").into_bytes())
        .collect();
    assert_eq!(unescape(&escaped), all);
}

#[test]
fn random_input_never_panics() {
    // A deterministic pseudo-random walk over bytes that matter to the format.
    let alphabet = b"0123456789 :-\\\n/abcsharedmaster:propagate_fromunbindable,";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut line = Vec::new();
        let len = (state % 80) as usize;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            line.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        let _ = parse_mountinfo(&line);
        state = state.wrapping_add(1);
    }
}

/// Decodes the octal escapes procfs leaves in place, so both parses can be compared.
fn procfs_path(p: &Path) -> Vec<u8> {
    unescape(p.as_os_str().as_bytes())
}

#[test]
fn agrees_with_procfs_on_this_machine() {
    let text = std::fs::read("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    assert_procfs_agrees(&text);
}

/// Parses `text` with this crate and with `procfs` and checks that they agree field by
/// field, decoding on procfs's side the octal escapes it leaves in place. procfs cannot read a
/// file with a line that is not UTF-8 (the kernel writes such bytes of a path as they are):
/// those lines are compared without procfs; returns how many there were.
pub fn assert_procfs_agrees(text: &[u8]) -> usize {
    assert!(parse_mountinfo(text).is_ok(), "the whole file parses");
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let utf8: Vec<&[u8]> = lines
        .iter()
        .copied()
        .filter(|l| std::str::from_utf8(l).is_ok())
        .collect();
    let skipped = lines.len() - utf8.len();
    let text = &utf8.join(&b'\n')[..];
    let ours = parse_mountinfo(text).expect("this machine's mountinfo parses");
    let theirs = procfs::process::MountInfos::from_read(std::io::Cursor::new(text))
        .expect("procfs parses this machine's mountinfo");
    let theirs: Vec<_> = theirs.into_iter().collect();
    assert_eq!(ours.len(), theirs.len());
    assert!(!ours.is_empty());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.mount_id, u32::try_from(b.mnt_id).unwrap());
        assert_eq!(a.parent_id, u32::try_from(b.pid).unwrap());
        assert_eq!(format!("{}", a.dev), b.majmin);
        // procfs does not decode octal escapes in paths: decode them on its side.
        assert_eq!(
            a.root.as_os_str().as_bytes(),
            procfs_path(Path::new(&b.root))
        );
        assert_eq!(
            a.mount_point.as_os_str().as_bytes(),
            procfs_path(&b.mount_point)
        );
        let full_type = match &a.fs_subtype {
            Some(s) => format!("{}.{s}", a.fs_type),
            None => a.fs_type.clone(),
        };
        assert_eq!(full_type.as_bytes(), unescape(b.fs_type.as_bytes()));
        let source = b.mount_source.clone().unwrap_or_default();
        if source.is_empty() {
            assert!(a.source.is_empty() || a.source == "none", "{a:?}");
        } else {
            assert_eq!(a.source.as_bytes(), unescape(source.as_bytes()));
        }
        let opts: Vec<String> = b.mount_options.keys().cloned().collect();
        for o in &a.mount_options {
            assert!(opts.contains(o), "{o} missing from procfs's {opts:?}");
        }
        assert_eq!(a.mount_options.len(), b.mount_options.len());
        assert_eq!(a.super_options.len(), b.super_options.len());
        for o in &a.super_options {
            let key = o.to_str().unwrap().split('=').next().unwrap();
            assert!(
                b.super_options.contains_key(key),
                "{key} missing from procfs"
            );
        }
        let tags: usize = b.opt_fields.len();
        assert_eq!(a.optional.len(), tags);
    }
    skipped
}
