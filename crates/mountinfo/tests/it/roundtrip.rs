//! Property tests of the parser: any line written the way the kernel writes it (octal escapes
//! for space, tab, newline and backslash in paths, plus `,` in options) parses back to exactly
//! what was written, and no input whatsoever makes it panic.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crcli_mountinfo::parse::{parse_line, parse_mountinfo, MountInfoEntry, OptionalField};
use crcli_mountinfo::DevId;
use proptest::prelude::*;

fn escape(bytes: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in bytes {
        if b" \t\n\\".contains(&b) || extra.contains(&b) {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

fn bytes(min: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, min..24)
}

fn optional() -> impl Strategy<Value = OptionalField> {
    prop_oneof![
        any::<u64>().prop_map(OptionalField::Shared),
        any::<u64>().prop_map(OptionalField::Master),
        any::<u64>().prop_map(OptionalField::PropagateFrom),
        Just(OptionalField::Unbindable),
        "[a-z][a-z0-9_:]{0,12}"
            .prop_filter("known tags are decoded", |s| {
                !(s == "unbindable"
                    || s.starts_with("shared:")
                    || s.starts_with("master:")
                    || s.starts_with("propagate_from:"))
            })
            .prop_map(OptionalField::Unknown),
    ]
}

prop_compose! {
    fn entry()(
        mount_id in any::<u32>(),
        parent_id in any::<u32>(),
        major in 0u32..4096,
        minor in 0u32..(1 << 20),
        root in bytes(1),
        mount_point in bytes(1),
        mount_options in prop::collection::vec("[a-z]{1,10}", 1..5),
        optional in prop::collection::vec(optional(), 0..5),
        fs_type in "[a-z0-9_]{1,10}",
        fs_subtype in proptest::option::of("[a-z0-9_.]{1,10}"),
        source in prop::collection::vec(1u8..=255, 0..24),
        super_options in prop::collection::vec(bytes(1), 0..5),
    ) -> MountInfoEntry {
        MountInfoEntry {
            line: 1,
            mount_id,
            parent_id,
            dev: DevId { major, minor },
            root: PathBuf::from(OsString::from_vec(root)),
            mount_point: PathBuf::from(OsString::from_vec(mount_point)),
            mount_options,
            optional,
            fs_type,
            fs_subtype,
            source: OsString::from_vec(source),
            super_options: super_options.into_iter().map(OsString::from_vec).collect(),
        }
    }
}

fn write(e: &MountInfoEntry) -> Vec<u8> {
    let mut l = format!(
        "{} {} {}:{} ",
        e.mount_id, e.parent_id, e.dev.major, e.dev.minor
    )
    .into_bytes();
    l.extend(escape(e.root.as_os_str().as_bytes(), b""));
    l.push(b' ');
    l.extend(escape(e.mount_point.as_os_str().as_bytes(), b""));
    l.push(b' ');
    l.extend(e.mount_options.join(",").as_bytes());
    for o in &e.optional {
        let t = match o {
            OptionalField::Shared(n) => format!("shared:{n}"),
            OptionalField::Master(n) => format!("master:{n}"),
            OptionalField::PropagateFrom(n) => format!("propagate_from:{n}"),
            OptionalField::Unbindable => "unbindable".to_owned(),
            OptionalField::Unknown(t) => t.clone(),
        };
        l.push(b' ');
        l.extend(t.as_bytes());
    }
    l.extend(b" - ");
    let mut ty = e.fs_type.clone();
    if let Some(s) = &e.fs_subtype {
        ty = format!("{ty}.{s}");
    }
    l.extend(escape(ty.as_bytes(), b""));
    l.push(b' ');
    l.extend(escape(e.source.as_bytes(), b""));
    l.push(b' ');
    let opts: Vec<Vec<u8>> = e
        .super_options
        .iter()
        .map(|o| escape(o.as_bytes(), b","))
        .collect();
    l.extend(opts.join(&b","[..]));
    l
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn kernel_written_lines_round_trip(e in entry()) {
        let line = write(&e);
        let parsed = parse_line(&line, 1).unwrap();
        prop_assert_eq!(parsed, e);
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_mountinfo(&text);
    }

    #[test]
    fn errors_name_the_bad_line(good in 0usize..5, e in entry()) {
        let mut text = Vec::new();
        for _ in 0..good {
            text.extend(write(&e));
            text.push(b'\n');
        }
        text.extend(b"this is not mountinfo\n");
        let err = parse_mountinfo(&text).unwrap_err();
        let expected = format!("parsing mountinfo line {}:", good + 1);
        prop_assert!(err.to_string().starts_with(&expected), "{}", err);
    }
}
