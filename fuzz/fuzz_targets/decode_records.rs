//! Feeds arbitrary bytes to the decoders of every entry type. The first byte picks the type
//! and whether the rest is a whole record file (framing, checksums, trailer) or one record's
//! payload (as if its checksum matched: this is where the fuzzer reaches the serde decoding,
//! which checksums would otherwise hide from it). Any outcome but a panic (or unbounded allocation, which
//! libFuzzer reports with -rss_limit_mb / -malloc_limit_mb) is fine.
#![no_main]

use std::path::Path;

use crcli_image::codec::{decode_records, FileTag};
use crcli_image::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let p = Path::new("fuzz.img");
    if which & 0x80 != 0 {
        use crcli_image::codec::decode_payload;
        let v = FORMAT_VERSION;
        match which % 7 {
            0 => drop(decode_payload::<Inventory>(v, rest)),
            1 => drop(decode_payload::<Process>(v, rest)),
            2 => drop(decode_payload::<FileEntry>(v, rest)),
            3 => drop(decode_payload::<PipeEntry>(v, rest)),
            4 => drop(decode_payload::<MountEntry>(v, rest)),
            5 => drop(decode_payload::<FsEntry>(v, rest)),
            _ => drop(decode_payload::<Extent>(v, rest)),
        }
        return;
    }
    match which % 7 {
        0 => drop(decode_records::<Inventory>(rest, p, FileTag::Inventory, 4)),
        1 => drop(decode_records::<Process>(rest, p, FileTag::Processes, 64)),
        2 => drop(decode_records::<FileEntry>(rest, p, FileTag::Files, 64)),
        3 => drop(decode_records::<PipeEntry>(rest, p, FileTag::Pipes, 64)),
        4 => drop(decode_records::<MountEntry>(rest, p, FileTag::Mounts, 64)),
        5 => drop(decode_records::<FsEntry>(rest, p, FileTag::FsContent, 64)),
        _ => drop(decode_records::<Extent>(rest, p, FileTag::Pagemap, 64)),
    }
});
