//! Page streams: memory content as a pagemap (`pagemap-N.img`: one [`Extent`] record per chunk,
//! a virtual address range → an offset in the pages file) and a pages file (`pages-N.data`).
//!
//! Both are written and read as streams in chunks of at most [`MAX_CHUNK_LEN`] bytes, each with
//! its own crc32c, so dumping or restoring a 20 GiB address space needs a few MiB of memory.
//!
//! Rules a pagemap obeys (checked by [`PagesWriter::add`] and by [`PagesReader`]): addresses and
//! lengths are multiples of [`PAGE_SIZE`]; extents are sorted by address and do not overlap;
//! each extent's data follows the previous one's in the pages file; the pages file holds exactly
//! the extents' bytes.
//!
//! ```
//! # fn main() -> Result<(), crcli_image::ImageError> {
//! # let dir = tempfile::tempdir().unwrap();
//! use crcli_image::{Image, PagesId, MAX_CHUNK_LEN};
//! let target = dir.path().join("img");
//! let mut w = Image::create(&target)?;
//! let mut pages = w.pages(PagesId(1))?;
//! pages.add(0x7f00_0000_0000, &vec![7u8; 3 * 4096])?;
//! pages.finish()?;
//! w.commit(crcli_image::Inventory::new(0, vec![]))?;
//!
//! let image = Image::open(&target)?;
//! let mut reader = image.pages(PagesId(1))?;
//! let mut buf = vec![0u8; MAX_CHUNK_LEN as usize];
//! while let Some(chunk) = reader.next_chunk(&mut buf)? {
//!     assert_eq!(chunk.addr, 0x7f00_0000_0000);
//!     assert!(buf[..chunk.len].iter().all(|&b| b == 7));
//! }
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::codec::{FileTag, RecordReader, RecordWriter};
use crate::common::{Extent, PagesId};
use crate::data::{DataReader, DataWriter};
use crate::error::{ImageError, Result};
use crate::{MAX_CHUNK_LEN, PAGE_SIZE};

/// The most extents one pagemap may hold (2^32 chunks: far beyond any real address space).
pub const MAX_PAGEMAP_EXTENTS: u64 = 1 << 32;

/// The file names of page stream `id`: (pagemap, pages file).
pub fn file_names(id: PagesId) -> (String, String) {
    (
        format!("pagemap-{}.img", id.0),
        format!("pages-{}.data", id.0),
    )
}

/// What a page stream holds, as counted when it was written or checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PagesSummary {
    /// The stream.
    pub id: PagesId,
    /// Number of extents (chunks) in its pagemap.
    pub extents: u64,
    /// Bytes of page data.
    pub bytes: u64,
}

/// Streams pages into a page stream of an image being written; get one from
/// [`crate::ImageWriter::pages`] and call [`PagesWriter::finish`] when done.
pub struct PagesWriter<'a> {
    pub(crate) done: &'a mut Vec<PagesSummary>,
    pub(crate) id: PagesId,
    pub(crate) map: RecordWriter,
    pub(crate) data: DataWriter,
    pub(crate) next_min: u64,
    pub(crate) extents: Vec<Extent>,
}

impl PagesWriter<'_> {
    /// Adds a run of contiguous pages: `data` is the content of `[vaddr, vaddr + data.len())`.
    /// `vaddr` and `data.len()` must be multiples of [`PAGE_SIZE`], and `vaddr` must not be
    /// below the end of the previous run.
    pub fn add(&mut self, vaddr: u64, data: &[u8]) -> Result<()> {
        let len = data.len() as u64;
        let refuse = |problem: String| ImageError::Refused {
            path: self.map.path().to_owned(),
            problem,
        };
        if vaddr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 || len == 0 {
            return Err(refuse(format!(
                "pages at {vaddr:#x} with {len} bytes: address and length must be non-zero multiples of {PAGE_SIZE}"
            )));
        }
        if vaddr < self.next_min {
            return Err(refuse(format!(
                "pages at {vaddr:#x} are below the end of the previous run ({:#x})",
                self.next_min
            )));
        }
        let end = vaddr.checked_add(len).ok_or_else(|| {
            refuse(format!(
                "pages at {vaddr:#x} with {len} bytes run past the end of the address space"
            ))
        })?;
        self.extents.clear();
        self.data
            .append(vaddr, data, MAX_CHUNK_LEN as usize, &mut self.extents)?;
        for e in &self.extents {
            self.map.write(e)?;
        }
        self.next_min = end;
        Ok(())
    }

    /// Bytes added so far.
    pub fn bytes(&self) -> u64 {
        self.data.len()
    }

    /// Writes the pagemap trailer and syncs both files.
    pub fn finish(self) -> Result<PagesSummary> {
        let extents = self.map.finish()?;
        let bytes = self.data.finish()?;
        let s = PagesSummary {
            id: self.id,
            extents,
            bytes,
        };
        self.done.push(s);
        Ok(s)
    }
}

/// One chunk read by [`PagesReader::next_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageChunk {
    /// Virtual address (or offset in a shared object) of the first byte.
    pub addr: u64,
    /// Number of bytes, now in the first `len` bytes of the caller's buffer.
    pub len: usize,
}

/// Reads a page stream: iterates its extents and reads them, chunk by chunk, checking each
/// chunk's checksum and every rule of the pagemap.
pub struct PagesReader {
    map: RecordReader<BufReader<File>>,
    data: DataReader,
    map_path: PathBuf,
    next_min: u64,
    next_data: u64,
    finished: bool,
}

impl PagesReader {
    /// Opens page stream `id` in image directory `dir`.
    pub(crate) fn open(dir: &Path, id: PagesId) -> Result<Self> {
        let (m, d) = file_names(id);
        let map_path = dir.join(m);
        let map = RecordReader::open(&map_path, FileTag::Pagemap, MAX_PAGEMAP_EXTENTS, &map_path)?;
        let data = DataReader::open(&dir.join(d))?;
        Ok(Self {
            map,
            data,
            map_path,
            next_min: 0,
            next_data: 0,
            finished: false,
        })
    }

    /// The next extent of the pagemap, checked; `None` at the end (after checking that the pages
    /// file holds exactly the extents' bytes).
    pub fn next_extent(&mut self) -> Result<Option<Extent>> {
        if self.finished {
            return Ok(None);
        }
        let Some(e) = self.map.next_record::<Extent>()? else {
            self.finished = true;
            if self.next_data != self.data.len() {
                return Err(ImageError::Invalid {
                    path: self.map_path.clone(),
                    record: self.map.index(),
                    problem: format!(
                        "the pagemap covers {} bytes but {} holds {}",
                        self.next_data,
                        self.data.path().display(),
                        self.data.len()
                    ),
                });
            }
            return Ok(None);
        };
        let record = self.map.index() - 1;
        let invalid = |problem: String| ImageError::Invalid {
            path: self.map_path.clone(),
            record,
            problem,
        };
        let len = u64::from(e.len);
        if e.offset % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 || len == 0 || e.len > MAX_CHUNK_LEN {
            return Err(invalid(format!(
                "extent at {:#x} with {len} bytes is not page aligned or not 1 to {MAX_CHUNK_LEN} bytes",
                e.offset
            )));
        }
        if e.offset < self.next_min {
            return Err(invalid(format!(
                "extent at {:#x} overlaps or precedes the previous one (ending at {:#x})",
                e.offset, self.next_min
            )));
        }
        if e.data_offset != self.next_data {
            return Err(invalid(format!(
                "extent at {:#x} has data offset {}, expected {}",
                e.offset, e.data_offset, self.next_data
            )));
        }
        self.next_min = e
            .offset
            .checked_add(len)
            .ok_or_else(|| invalid(format!("extent at {:#x} overflows", e.offset)))?;
        self.data.check_extent(&e, &self.map_path, record)?;
        self.next_data += len;
        Ok(Some(e))
    }

    /// Reads extent `e` (from [`PagesReader::next_extent`]) into `buf[..e.len]`, checking its
    /// checksum.
    pub fn read_extent(&self, e: &Extent, buf: &mut [u8]) -> Result<()> {
        self.data
            .read_extent(e, buf, self.map.index().saturating_sub(1))
    }

    /// Reads the next chunk into `buf` (which must hold at least [`MAX_CHUNK_LEN`] bytes, or at
    /// least the chunk); `None` at the end.
    pub fn next_chunk(&mut self, buf: &mut [u8]) -> Result<Option<PageChunk>> {
        let Some(e) = self.next_extent()? else {
            return Ok(None);
        };
        self.read_extent(&e, buf)?;
        Ok(Some(PageChunk {
            addr: e.offset,
            len: e.len as usize,
        }))
    }

    /// Reads the whole pagemap (not the pages), checking it; returns the totals.
    pub(crate) fn check_all(mut self, id: PagesId) -> Result<PagesSummary> {
        let mut extents = 0;
        while self.next_extent()?.is_some() {
            extents += 1;
        }
        Ok(PagesSummary {
            id,
            extents,
            bytes: self.next_data,
        })
    }
}
