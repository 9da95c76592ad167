//! Property tests: every entry type round-trips through the binary codec and through the JSON
//! view, and no input — random bytes or a damaged valid encoding — makes a decoder panic.

use std::path::Path;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode_records, encode_records, FileTag};
use crate::*;

fn round_trip<T>(tag: FileTag, v: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + crate::codec::Record + PartialEq + std::fmt::Debug + Clone,
{
    let bytes = encode_records(tag, std::slice::from_ref(v)).unwrap();
    let back: Vec<T> = decode_records(&bytes, Path::new("mem"), tag, 10).unwrap();
    prop_assert_eq!(&back[..], std::slice::from_ref(v));
    let json = serde_json::to_string(v).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    prop_assert_eq!(&back, v);
    Ok(())
}

/// Decodes damaged bytes: an error or a value, never a panic.
fn damage<T>(tag: FileTag, v: &T, pos: usize, byte: u8, cut: usize) -> Result<(), TestCaseError>
where
    T: Serialize + crate::codec::Record + Clone,
{
    let mut bytes = encode_records(tag, &[v.clone(), v.clone()]).unwrap();
    let pos = pos % bytes.len();
    bytes[pos] = byte;
    let _ = decode_records::<T>(&bytes, Path::new("mem"), tag, 10);
    let cut = cut % bytes.len();
    let _ = decode_records::<T>(&bytes[..cut], Path::new("mem"), tag, 10);
    // The payload alone, without framing, with the same damage (what a checksum collision
    // would let through).
    let mut payload = postcard::to_stdvec(v).unwrap();
    if !payload.is_empty() {
        let p = pos % payload.len();
        payload[p] = byte;
    }
    let _ = crate::codec::decode_payload::<T>(FORMAT_VERSION, &payload);
    let _ =
        crate::codec::decode_payload::<T>(FORMAT_VERSION, &payload[..cut % (payload.len() + 1)]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn inventory_round_trips(v: Inventory) { round_trip(FileTag::Inventory, &v)?; }
    #[test]
    fn process_round_trips(v: Process) { round_trip(FileTag::Processes, &v)?; }
    #[test]
    fn thread_round_trips(v: Thread) { round_trip(FileTag::Processes, &v)?; }
    #[test]
    fn vma_round_trips(v: Vma) { round_trip(FileTag::Processes, &v)?; }
    #[test]
    fn file_round_trips(v: FileEntry) { round_trip(FileTag::Files, &v)?; }
    #[test]
    fn pipe_round_trips(v: PipeEntry) { round_trip(FileTag::Pipes, &v)?; }
    #[test]
    fn mount_round_trips(v: MountEntry) { round_trip(FileTag::Mounts, &v)?; }
    #[test]
    fn fs_entry_round_trips(v: FsEntry) { round_trip(FileTag::FsContent, &v)?; }
    #[test]
    fn extent_round_trips(v: Extent) { round_trip(FileTag::Pagemap, &v)?; }
    #[test]
    fn tree_round_trips(v: Tree) { round_trip(FileTag::Inventory, &v)?; }

    #[test]
    fn damaged_processes_never_panic(v: Process, pos: usize, byte: u8, cut: usize) {
        damage(FileTag::Processes, &v, pos, byte, cut)?;
    }
    #[test]
    fn damaged_files_never_panic(v: FileEntry, pos: usize, byte: u8, cut: usize) {
        damage(FileTag::Files, &v, pos, byte, cut)?;
    }
    #[test]
    fn damaged_mounts_never_panic(v: MountEntry, pos: usize, byte: u8, cut: usize) {
        damage(FileTag::Mounts, &v, pos, byte, cut)?;
    }
    #[test]
    fn damaged_fs_entries_never_panic(v: FsEntry, pos: usize, byte: u8, cut: usize) {
        damage(FileTag::FsContent, &v, pos, byte, cut)?;
    }
    #[test]
    fn damaged_inventory_never_panics(v: Inventory, pos: usize, byte: u8, cut: usize) {
        damage(FileTag::Inventory, &v, pos, byte, cut)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_records::<Process>(&bytes, Path::new("mem"), FileTag::Processes, 10);
        let _ = crate::codec::decode_payload::<Process>(FORMAT_VERSION, &bytes);
        let _ = crate::codec::decode_payload::<MountEntry>(FORMAT_VERSION, &bytes);
        let _ = crate::codec::decode_payload::<FsEntry>(FORMAT_VERSION, &bytes);
        let _ = crate::codec::decode_payload::<FileEntry>(FORMAT_VERSION, &bytes);
        let _ = crate::codec::decode_payload::<Inventory>(FORMAT_VERSION, &bytes);
        // Format 1 decodes through the v1 types.
        let _ = crate::codec::decode_payload::<Process>(1, &bytes);
        let _ = crate::codec::decode_payload::<Inventory>(1, &bytes);
        // Format 2 decodes processes through the v2 types.
        let _ = crate::codec::decode_payload::<Process>(2, &bytes);
    }

    #[test]
    fn escaped_bytes_round_trip(b in proptest::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(crate::bytes::unescape(&crate::bytes::escape(&b)).unwrap(), b);
    }
}
