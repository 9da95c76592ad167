//! `Statmount::parse` on arbitrary bytes: it must answer Ok or a clear error, never panic, and
//! whatever it decodes must lie inside the record the kernel claims to have written.

use crcli_sys::statmount::{Statmount, StatmountMask, STATMOUNT_FIXED_SIZE};
use proptest::prelude::*;

/// A record with a plausible header: size within the buffer, any mask, any offsets and counts.
fn record() -> impl Strategy<Value = Vec<u8>> {
    (
        STATMOUNT_FIXED_SIZE..STATMOUNT_FIXED_SIZE + 512,
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), STATMOUNT_FIXED_SIZE + 512),
        proptest::collection::vec((0usize..42, 0u32..1024), 0..12),
    )
        .prop_map(|(size, mask, mut buf, fields)| {
            buf[0..4].copy_from_slice(&(size as u32).to_ne_bytes());
            buf[8..16].copy_from_slice(&mask.to_ne_bytes());
            // Small values in some u32 slots, so offsets and counts often point inside.
            for (slot, value) in fields {
                let off = slot * 4;
                buf[off..off + 4].copy_from_slice(&value.to_ne_bytes());
            }
            buf[0..4].copy_from_slice(&(size as u32).to_ne_bytes());
            buf
        })
}

proptest! {
    #[test]
    fn parse_never_panics_on_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Statmount::parse(&buf);
    }

    #[test]
    fn parse_stays_inside_the_record(buf in record()) {
        if let Ok(sm) = Statmount::parse(&buf) {
            let size = sm.size as usize;
            prop_assert!((STATMOUNT_FIXED_SIZE..=buf.len()).contains(&size));
            let strings = size - STATMOUNT_FIXED_SIZE;
            for p in [&sm.mnt_root, &sm.mnt_point].into_iter().flatten() {
                prop_assert!(p.as_os_str().len() < strings);
            }
            prop_assert_eq!(sm.mnt_root.is_some(), sm.mask.contains(StatmountMask::MNT_ROOT));
            prop_assert_eq!(sm.mnt.is_some(), sm.mask.contains(StatmountMask::MNT_BASIC));
            prop_assert_eq!(sm.opt_array.is_some(), sm.mask.contains(StatmountMask::OPT_ARRAY));
            if let Some(a) = &sm.opt_array {
                prop_assert!(a.len() <= strings);
            }
        }
    }
}
