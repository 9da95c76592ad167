//! The framing shared by every image file.
//!
//! A file starts with a 16-byte header:
//!
//! ```text
//! 0   [u8; 8]  magic: "CRCL" + a 4-byte tag naming the kind of file ("INVT", "PROC", …)
//! 8   u32 LE   format version
//! 12  u32 LE   crc32c of bytes 0..12
//! ```
//!
//! A *record file* then holds records and ends with a trailer:
//!
//! ```text
//! record:   u32 LE len (<= MAX_RECORD_LEN)   u32 LE crc32c(len bytes ++ payload)   payload (postcard)
//! trailer:  u32 LE 0xFFFF_FFFF   u64 LE record count   u32 LE crc32c(the 12 bytes before it)
//! ```
//!
//! and nothing after the trailer, so a file cut at a record boundary is detected. A *data file*
//! holds raw bytes after its header; the extents that point into it carry their own checksums.
//!
//! Readers are streaming and bounded: a record is read only after its length has been checked
//! against [`MAX_RECORD_LEN`], and its buffer grows only as bytes actually arrive.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bytes::escape;
use crate::error::{ImageError, Result};
use crate::{FORMAT_VERSION, MIN_FORMAT_VERSION};

/// The longest record payload accepted, in bytes.
pub const MAX_RECORD_LEN: u32 = 16 << 20;
/// The most bytes of list elements one record may decode into (over all its lists, nested
/// ones included). With [`MAX_RECORD_LEN`] this bounds the memory one record can make a reader
/// allocate, whatever counts it claims.
pub const MAX_DECODED_LIST_BYTES: usize = 32 << 20;
/// The most bytes of decoded entries (their own size plus their lists' elements) one
/// [`crate::Image::open`] may build, over all records. With [`crate::MAX_METADATA_BYTES`] of
/// encoded input (whose strings and blobs are copied at most once) this bounds the memory an
/// image can make a reader allocate.
pub const MAX_DECODED_TOTAL_BYTES: usize = 512 << 20;
/// Size of every file header, in bytes.
pub const HEADER_LEN: u64 = 16;
const TRAILER_MARK: u32 = u32::MAX;

/// The kinds of file in an image, each with its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTag {
    /// `inventory.img`.
    Inventory,
    /// `processes.img`.
    Processes,
    /// `files.img`.
    Files,
    /// `pipes.img`.
    Pipes,
    /// `mounts.img`.
    Mounts,
    /// `fs-N.img`.
    FsContent,
    /// `pagemap-N.img`.
    Pagemap,
    /// `*.data`.
    Data,
}

impl FileTag {
    /// The 8-byte magic of this kind of file.
    pub fn magic(self) -> [u8; 8] {
        let tag: &[u8; 4] = match self {
            FileTag::Inventory => b"INVT",
            FileTag::Processes => b"PROC",
            FileTag::Files => b"FILE",
            FileTag::Pipes => b"PIPE",
            FileTag::Mounts => b"MNTS",
            FileTag::FsContent => b"FSCT",
            FileTag::Pagemap => b"PMAP",
            FileTag::Data => b"DATA",
        };
        let mut m = *b"CRCL____";
        m[4..].copy_from_slice(tag);
        m
    }

    /// A human name for this kind of file.
    pub fn name(self) -> &'static str {
        match self {
            FileTag::Inventory => "inventory",
            FileTag::Processes => "processes",
            FileTag::Files => "files",
            FileTag::Pipes => "pipes",
            FileTag::Mounts => "mounts",
            FileTag::FsContent => "filesystem content",
            FileTag::Pagemap => "pagemap",
            FileTag::Data => "data",
        }
    }
}

/// Encodes a file header.
pub fn encode_header(tag: FileTag, version: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&tag.magic());
    h[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Reads and checks a file header; returns the format version.
///
/// `version_path` is the path named in a version error (the image directory for the inventory).
pub fn read_header(
    r: &mut impl Read,
    path: &Path,
    tag: FileTag,
    version_path: &Path,
) -> Result<u32> {
    let mut h = [0u8; HEADER_LEN as usize];
    let n = read_full(r, &mut h).map_err(|e| ImageError::io("reading", path, e))?;
    if n < 8 || h[..8] != tag.magic() {
        return Err(ImageError::BadMagic {
            path: path.to_owned(),
            expected: tag.name(),
            found: format!("{:?}", escape(&h[..n.min(8)])),
        });
    }
    if n < h.len() {
        return Err(corrupt(path, 0, "truncated file header"));
    }
    let crc = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&h[..12]) {
        return Err(corrupt(path, 0, "file header checksum mismatch"));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(ImageError::UnsupportedVersion {
            path: version_path.to_owned(),
            found: version,
        });
    }
    Ok(version)
}

pub(crate) fn corrupt(path: &Path, record: u64, problem: impl Into<String>) -> ImageError {
    ImageError::Corrupt {
        path: path.to_owned(),
        record,
        problem: problem.into(),
    }
}

/// Reads until `buf` is full or EOF; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streams the records of one record file, checking framing and checksums.
pub struct RecordReader<R> {
    r: R,
    path: PathBuf,
    version: u32,
    index: u64,
    max_records: u64,
    done: bool,
    buf: Vec<u8>,
}

/// Opens an image file for reading; refuses anything but a regular file (a FIFO or a device
/// planted in an image must not block or feed endless bytes to the reader).
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    let f = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| ImageError::io("opening", path, e))?;
    let meta = f
        .metadata()
        .map_err(|e| ImageError::io("reading metadata of", path, e))?;
    if !meta.is_file() {
        return Err(corrupt(path, 0, "not a regular file"));
    }
    Ok(f)
}

impl RecordReader<BufReader<File>> {
    /// Opens a record file and checks its header.
    pub fn open(path: &Path, tag: FileTag, max_records: u64, version_path: &Path) -> Result<Self> {
        let f = open_regular(path)?;
        Self::new(
            BufReader::with_capacity(256 << 10, f),
            path,
            tag,
            max_records,
            version_path,
        )
    }
}

impl<R: Read> RecordReader<R> {
    /// Starts reading a record file from `r`, checking its header. `path` names it in errors.
    pub fn new(
        mut r: R,
        path: &Path,
        tag: FileTag,
        max_records: u64,
        version_path: &Path,
    ) -> Result<Self> {
        let version = read_header(&mut r, path, tag, version_path)?;
        Ok(Self {
            r,
            path: path.to_owned(),
            version,
            index: 0,
            max_records,
            done: false,
            buf: Vec::new(),
        })
    }

    /// The format version of the file.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The index the next record will have (the number read so far).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Reads the next record's payload; `None` after the trailer (which must end the file).
    pub fn next_raw(&mut self) -> Result<Option<&[u8]>> {
        if self.done {
            return Ok(None);
        }
        let idx = self.index;
        let mut head = [0u8; 8];
        let n = read_full(&mut self.r, &mut head)
            .map_err(|e| ImageError::io("reading", &self.path, e))?;
        if n < 8 {
            return Err(corrupt(
                &self.path,
                idx,
                if n == 0 {
                    "file ends without a trailer (truncated?)".to_string()
                } else {
                    format!("truncated record header ({n} of 8 bytes)")
                },
            ));
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        if len == TRAILER_MARK {
            let mut rest = [0u8; 8];
            let mut t = [0u8; 12];
            t[..4].copy_from_slice(&head[..4]);
            t[4..8].copy_from_slice(&head[4..8]);
            let n = read_full(&mut self.r, &mut rest)
                .map_err(|e| ImageError::io("reading", &self.path, e))?;
            if n < 8 {
                return Err(corrupt(&self.path, idx, "truncated trailer"));
            }
            t[8..].copy_from_slice(&rest[..4]);
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            if crc != crc32c::crc32c(&t) {
                return Err(corrupt(&self.path, idx, "trailer checksum mismatch"));
            }
            let count = u64::from_le_bytes(t[4..12].try_into().expect("8 bytes"));
            if count != idx {
                return Err(corrupt(
                    &self.path,
                    idx,
                    format!("trailer says {count} records, the file has {idx}"),
                ));
            }
            let mut extra = [0u8; 1];
            if read_full(&mut self.r, &mut extra)
                .map_err(|e| ImageError::io("reading", &self.path, e))?
                != 0
            {
                return Err(corrupt(&self.path, idx, "bytes after the trailer"));
            }
            self.done = true;
            return Ok(None);
        }
        if idx >= self.max_records {
            return Err(corrupt(
                &self.path,
                idx,
                format!("more than {} records", self.max_records),
            ));
        }
        if len > MAX_RECORD_LEN {
            return Err(corrupt(
                &self.path,
                idx,
                format!("record length {len} exceeds the limit of {MAX_RECORD_LEN}"),
            ));
        }
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        self.buf.clear();
        let got = (&mut self.r)
            .take(u64::from(len))
            .read_to_end(&mut self.buf)
            .map_err(|e| ImageError::io("reading", &self.path, e))?;
        if got < len as usize {
            return Err(corrupt(
                &self.path,
                idx,
                format!("truncated record ({got} of {len} bytes)"),
            ));
        }
        let mut c = crc32c::crc32c(&head[..4]);
        c = crc32c::crc32c_append(c, &self.buf);
        if c != crc {
            return Err(corrupt(&self.path, idx, "record checksum mismatch"));
        }
        self.index += 1;
        Ok(Some(&self.buf))
    }

    /// Reads and decodes the next record; `None` after the trailer.
    pub fn next_record<T: Record>(&mut self) -> Result<Option<T>> {
        let version = self.version;
        let path = self.path.clone();
        let idx = self.index;
        let Some(raw) = self.next_raw()? else {
            return Ok(None);
        };
        decode_payload(version, raw)
            .map(Some)
            .map_err(|problem| ImageError::Decode {
                path,
                record: idx,
                problem,
            })
    }
}

/// A type stored as records in image files, decodable from every format version this crate
/// reads: a type whose encoding changed keeps its old form in a `v1` or `v2` module and converts
/// it.
pub trait Record: DeserializeOwned {
    /// Decodes `raw`, a payload of format `version` (one this crate reads), charging the decoded
    /// lists to `total`. The default decodes the current type, for types whose encoding never
    /// changed.
    #[doc(hidden)]
    fn decode_version(
        version: u32,
        raw: &[u8],
        total: &mut usize,
    ) -> std::result::Result<Self, String> {
        let _ = version;
        decode_as::<Self>(raw, total)
    }
}

/// Types whose encoding is the same in every format version they exist in.
macro_rules! same_in_every_version {
    ($($t:ty),* $(,)?) => { $(impl Record for $t {})* };
}
same_in_every_version!(
    crate::file::PipeEntry,
    crate::mount::MountEntry,
    crate::fs::FsEntry,
    crate::common::Extent,
    crate::tree::Tree,
    crate::tree::Zombie,
);

impl Record for crate::inventory::Inventory {
    fn decode_version(
        version: u32,
        raw: &[u8],
        total: &mut usize,
    ) -> std::result::Result<Self, String> {
        if version == 1 {
            decode_as::<crate::v1::Inventory>(raw, total).map(Into::into)
        } else {
            decode_as::<Self>(raw, total)
        }
    }
}

impl Record for crate::process::Process {
    fn decode_version(
        version: u32,
        raw: &[u8],
        total: &mut usize,
    ) -> std::result::Result<Self, String> {
        match version {
            1 => decode_as::<crate::v1::Process>(raw, total).map(Into::into),
            2 => decode_as::<crate::v2::Process>(raw, total).map(Into::into),
            3 => decode_as::<crate::v3::Process>(raw, total).map(Into::into),
            _ => decode_as::<Self>(raw, total),
        }
    }
}

impl Record for crate::file::FileEntry {
    fn decode_version(
        version: u32,
        raw: &[u8],
        total: &mut usize,
    ) -> std::result::Result<Self, String> {
        match version {
            1..=3 => decode_as::<crate::v3::FileEntry>(raw, total).map(Into::into),
            _ => decode_as::<Self>(raw, total),
        }
    }
}

/// Never a record of an image file on its own (only inside a [`crate::process::Process`]).
impl Record for crate::process::Vma {
    fn decode_version(
        version: u32,
        raw: &[u8],
        total: &mut usize,
    ) -> std::result::Result<Self, String> {
        match version {
            1..=3 => decode_as::<crate::v3::Vma>(raw, total).map(Into::into),
            _ => decode_as::<Self>(raw, total),
        }
    }
}

/// Never a record of an image file on its own (only inside a [`crate::process::Process`]); on
/// its own an old thread converts to `ns_tid = tid`.
impl Record for crate::process::Thread {
    fn decode_version(
        version: u32,
        raw: &[u8],
        total: &mut usize,
    ) -> std::result::Result<Self, String> {
        match version {
            1 | 2 => decode_as::<crate::v1::Thread>(raw, total).map(Into::into),
            3 => decode_as::<crate::v3::Thread>(raw, total).map(Into::into),
            _ => decode_as::<Self>(raw, total),
        }
    }
}

/// Decodes one record payload (checksum already checked) of format `version`, which must be a
/// version this crate reads; the error is a description of what is wrong.
///
/// Types whose encoding changed since version 1 ([`crate::Inventory`], [`crate::Process`]) are
/// decoded from their `v1` form for version 1 (and [`crate::Process`] from its `v2` form for
/// version 2) and converted to the current type.
pub fn decode_payload<T: Record>(version: u32, raw: &[u8]) -> std::result::Result<T, String> {
    let mut unlimited = usize::MAX;
    decode_payload_budgeted(version, raw, &mut unlimited)
}

/// [`decode_payload`], charging the memory of the decoded value (its own size and its lists'
/// elements) to `total`, which spans many records; fails when it would run out.
pub(crate) fn decode_payload_budgeted<T: Record>(
    version: u32,
    raw: &[u8],
    total: &mut usize,
) -> std::result::Result<T, String> {
    let own = std::mem::size_of::<T>();
    if *total < own {
        return Err("the image's entries would take more memory than the decoding limit".into());
    }
    *total -= own;
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "format version {version} is not one this crate reads"
        ));
    }
    T::decode_version(version, raw, total)
}

/// Decodes `raw` as exactly `T` (postcard), charging its lists to `total`.
fn decode_as<T: DeserializeOwned>(raw: &[u8], total: &mut usize) -> std::result::Result<T, String> {
    crate::bytes::take_problem();
    let budget = MAX_DECODED_LIST_BYTES.min(*total);
    let (decoded, left) = crate::bytes::with_budget(budget, || postcard::from_bytes::<T>(raw));
    *total -= budget - left;
    match decoded {
        Ok(v) => Ok(v),
        Err(postcard::Error::SerdeDeCustom) => {
            Err(crate::bytes::take_problem().unwrap_or_else(|| "invalid value".to_string()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Writes one record file: header, records, trailer.
pub struct RecordWriter {
    w: BufWriter<File>,
    path: PathBuf,
    count: u64,
    buf: Vec<u8>,
}

impl RecordWriter {
    /// Creates the file (it must not exist) and writes its header.
    pub fn create(path: &Path, tag: FileTag) -> Result<Self> {
        let f = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ImageError::io("creating", path, e))?;
        let mut w = BufWriter::with_capacity(256 << 10, f);
        w.write_all(&encode_header(tag, FORMAT_VERSION))
            .map_err(|e| ImageError::io("writing", path, e))?;
        Ok(Self {
            w,
            path: path.to_owned(),
            count: 0,
            buf: Vec::new(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many records were written.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Encodes and writes one record.
    pub fn write<T: Serialize>(&mut self, value: &T) -> Result<()> {
        self.buf.clear();
        let buf = std::mem::take(&mut self.buf);
        let buf = postcard::to_extend(value, buf).map_err(|source| ImageError::Encode {
            path: self.path.clone(),
            record: self.count,
            source,
        })?;
        self.buf = buf;
        self.write_raw_payload()
    }

    fn write_raw_payload(&mut self) -> Result<()> {
        let len = u32::try_from(self.buf.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD_LEN)
            .ok_or_else(|| ImageError::Refused {
                path: self.path.clone(),
                problem: format!(
                    "record {} is {} bytes, more than the limit of {MAX_RECORD_LEN}",
                    self.count,
                    self.buf.len()
                ),
            })?;
        let lb = len.to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&lb), &self.buf);
        let path = &self.path;
        let io = |e| ImageError::io("writing", path, e);
        self.w.write_all(&lb).map_err(io)?;
        self.w.write_all(&crc.to_le_bytes()).map_err(io)?;
        self.w.write_all(&self.buf).map_err(io)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the trailer, flushes and syncs the file.
    pub fn finish(self) -> Result<u64> {
        let path = self.path.clone();
        let (count, f) = self.finish_unsynced()?;
        f.sync_all()
            .map_err(|e| ImageError::io("syncing", &path, e))?;
        Ok(count)
    }

    /// [`RecordWriter::finish`] without the sync: returns the count and the file, for the
    /// caller to sync (an image syncs all its files together at commit).
    pub(crate) fn finish_unsynced(mut self) -> Result<(u64, File)> {
        let mut t = [0u8; 16];
        t[..4].copy_from_slice(&TRAILER_MARK.to_le_bytes());
        t[4..12].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32c::crc32c(&t[..12]);
        t[12..].copy_from_slice(&crc.to_le_bytes());
        let path = self.path.clone();
        self.w
            .write_all(&t)
            .map_err(|e| ImageError::io("writing", &path, e))?;
        let f = self
            .w
            .into_inner()
            .map_err(|e| ImageError::io("writing", &path, e.into_error()))?;
        Ok((self.count, f))
    }
}

/// Encodes a whole record file in memory (for tests, fuzzing and tools).
pub fn encode_records<T: Serialize>(tag: FileTag, values: &[T]) -> Result<Vec<u8>> {
    let mut out = encode_header(tag, FORMAT_VERSION).to_vec();
    for (i, v) in values.iter().enumerate() {
        let payload = postcard::to_stdvec(v).map_err(|source| ImageError::Encode {
            path: PathBuf::from("<memory>"),
            record: i as u64,
            source,
        })?;
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let lb = len.to_le_bytes();
        out.extend_from_slice(&lb);
        out.extend_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&lb), &payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    let mut t = [0u8; 12];
    t[..4].copy_from_slice(&TRAILER_MARK.to_le_bytes());
    t[4..].copy_from_slice(&(values.len() as u64).to_le_bytes());
    out.extend_from_slice(&t);
    out.extend_from_slice(&crc32c::crc32c(&t).to_le_bytes());
    Ok(out)
}

/// Decodes a whole record file held in memory, with at most `max_records` records.
/// `name` names it in errors.
pub fn decode_records<T: Record>(
    bytes: &[u8],
    name: &Path,
    tag: FileTag,
    max_records: u64,
) -> Result<Vec<T>> {
    let mut r = RecordReader::new(bytes, name, tag, max_records, name)?;
    let mut out = Vec::new();
    while let Some(v) = r.next_record()? {
        out.push(v);
    }
    Ok(out)
}
