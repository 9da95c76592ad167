//! Page streams: memory content as a pagemap (`pagemap-N.img`: one [`Extent`] record per chunk,
//! a virtual address range → an offset in the pages file) and a pages file (`pages-N.data`).
//!
//! Both are written and read as streams in chunks of at most [`MAX_CHUNK_LEN`] bytes, each with
//! its own crc32c, so dumping or restoring a 20 GiB address space needs a few MiB of memory.
//!
//! For speed: a writer that reads pages on one thread and writes on another computes the
//! checksums where the pages are still in cache ([`RunChecksums`], then
//! [`PagesWriter::add_checksummed`], which writes a run with one system call); a reader can let
//! a thread of its own read and check chunks ahead ([`PagesReader::read_ahead`]). Neither
//! changes what is written: the files are the same byte for byte.
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
use std::sync::mpsc;
use std::thread::JoinHandle;

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
    pub(crate) unsynced: &'a mut Vec<crate::image::Unsynced>,
}

impl PagesWriter<'_> {
    /// Adds a run of contiguous pages: `data` is the content of `[vaddr, vaddr + data.len())`.
    /// `vaddr` and `data.len()` must be multiples of [`PAGE_SIZE`], and `vaddr` must not be
    /// below the end of the previous run.
    pub fn add(&mut self, vaddr: u64, data: &[u8]) -> Result<()> {
        let end = self.check_run(vaddr, data)?;
        self.extents.clear();
        self.data
            .append(vaddr, data, MAX_CHUNK_LEN as usize, &mut self.extents)?;
        self.put_extents(end)
    }

    /// [`PagesWriter::add`] with the checksums computed beforehand by [`RunChecksums::compute`]
    /// over the same `data` (for example on the thread that read the pages, while they are
    /// still in its cache). The data is written with one system call.
    pub fn add_checksummed(&mut self, vaddr: u64, data: &[u8], sums: &RunChecksums) -> Result<()> {
        let end = self.check_run(vaddr, data)?;
        if sums.len != data.len() {
            return Err(ImageError::Refused {
                path: self.map.path().to_owned(),
                problem: format!(
                    "pages at {vaddr:#x}: checksums of {} bytes given for {} bytes",
                    sums.len,
                    data.len()
                ),
            });
        }
        self.extents.clear();
        self.data.append_checksummed(
            vaddr,
            data,
            &sums.crcs,
            MAX_CHUNK_LEN as usize,
            &mut self.extents,
        )?;
        self.put_extents(end)
    }

    /// Writes the pagemap records of the extents just appended; the next run starts at `end`
    /// or above.
    fn put_extents(&mut self, end: u64) -> Result<()> {
        for e in &self.extents {
            self.map.write(e)?;
        }
        self.next_min = end;
        Ok(())
    }

    /// Checks a run's address and length against the rules; returns its end.
    fn check_run(&self, vaddr: u64, data: &[u8]) -> Result<u64> {
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
        vaddr.checked_add(len).ok_or_else(|| {
            refuse(format!(
                "pages at {vaddr:#x} with {len} bytes run past the end of the address space"
            ))
        })
    }

    /// Bytes added so far.
    pub fn bytes(&self) -> u64 {
        self.data.len()
    }

    /// Writes the pagemap trailer and flushes both files. They are synced (with every other
    /// file of the image, together) by [`crate::ImageWriter::commit`], not here: a dump does
    /// not wait for the disk while its target is frozen.
    pub fn finish(self) -> Result<PagesSummary> {
        let map_path = self.map.path().to_owned();
        let data_path = self.data.path().to_owned();
        let (extents, map) = self.map.finish_unsynced()?;
        let (bytes, data) = self.data.finish_unsynced()?;
        self.unsynced.push((map_path, map));
        self.unsynced.push((data_path, data));
        let s = PagesSummary {
            id: self.id,
            extents,
            bytes,
        };
        self.done.push(s);
        Ok(s)
    }
}

/// The checksums of a run of pages as [`PagesWriter::add`] computes them (crc32c of each
/// chunk of at most [`MAX_CHUNK_LEN`] bytes, from the start of the run), computed ahead of
/// [`PagesWriter::add_checksummed`], for example on another thread. Reusable: computing again
/// keeps the allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunChecksums {
    len: usize,
    crcs: Vec<u32>,
}

impl RunChecksums {
    /// The checksums of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut s = Self::default();
        s.compute(data);
        s
    }

    /// Replaces the checksums with those of `data`.
    pub fn compute(&mut self, data: &[u8]) {
        self.len = data.len();
        self.crcs.clear();
        self.crcs
            .extend(data.chunks(MAX_CHUNK_LEN as usize).map(crc32c::crc32c));
    }

    /// The number of bytes the checksums cover.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the checksums cover no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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

    /// Turns this reader into one that reads on a thread of its own, up to
    /// [`READ_AHEAD_CHUNKS`] chunks ahead of the caller, with every check of
    /// [`PagesReader::next_chunk`]: reading the image overlaps with whatever the caller does
    /// with each chunk. It holds `READ_AHEAD_CHUNKS + 1` buffers of [`MAX_CHUNK_LEN`] bytes.
    pub fn read_ahead(self) -> Result<ReadAhead> {
        let (full_tx, full_rx) = mpsc::sync_channel::<Ahead>(READ_AHEAD_CHUNKS);
        let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(READ_AHEAD_CHUNKS + 1);
        for _ in 0..=READ_AHEAD_CHUNKS {
            free_tx
                .send(vec![0u8; MAX_CHUNK_LEN as usize])
                .expect("the channel has room for every buffer");
        }
        let map_path = self.map_path.clone();
        let mut reader = self;
        let thread = std::thread::Builder::new()
            .name("crcli-pages".into())
            .spawn(move || loop {
                // No free buffer: the consumer is gone.
                let Ok(mut buf) = free_rx.recv() else { return };
                let item = match reader.next_chunk(&mut buf) {
                    Ok(Some(c)) => Ok(Some((c, buf))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                let last = !matches!(item, Ok(Some(_)));
                if full_tx.send(item).is_err() || last {
                    return;
                }
            })
            .map_err(|e| ImageError::io("starting a thread to read", &map_path, e))?;
        Ok(ReadAhead {
            full: Some(full_rx),
            free: Some(free_tx),
            current: None,
            thread: Some(thread),
            map_path,
            done: false,
        })
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

/// Chunks a [`ReadAhead`] reads ahead of its caller.
pub const READ_AHEAD_CHUNKS: usize = 2;

/// What the read-ahead thread sends: a chunk and the buffer holding it, the end, or an error.
type Ahead = Result<Option<(PageChunk, Vec<u8>)>>;

/// A page stream read ahead on a thread of its own; see [`PagesReader::read_ahead`]. Dropping
/// it stops and joins the thread.
pub struct ReadAhead {
    full: Option<mpsc::Receiver<Ahead>>,
    free: Option<mpsc::SyncSender<Vec<u8>>>,
    current: Option<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
    map_path: PathBuf,
    done: bool,
}

impl ReadAhead {
    /// The next chunk (checked) and its bytes; `None` at the end of the stream. The bytes stay
    /// valid until the next call.
    pub fn next_chunk(&mut self) -> Result<Option<(PageChunk, &[u8])>> {
        if self.done {
            return Ok(None);
        }
        if let (Some(buf), Some(free)) = (self.current.take(), &self.free) {
            // The channel has room for every buffer; the thread may be gone (then the buffer
            // is dropped).
            let _ = free.send(buf);
        }
        let full = self.full.as_ref().expect("present until dropped");
        match full.recv() {
            Ok(Ok(Some((chunk, buf)))) => {
                let buf = self.current.insert(buf);
                Ok(Some((chunk, &buf[..chunk.len])))
            }
            Ok(Ok(None)) => {
                self.done = true;
                Ok(None)
            }
            Ok(Err(e)) => {
                self.done = true;
                Err(e)
            }
            // The thread stopped without saying why (it panicked): never mistake that for the
            // end of the stream.
            Err(mpsc::RecvError) => {
                self.done = true;
                Err(ImageError::io(
                    "reading ahead",
                    &self.map_path,
                    std::io::Error::other("the read-ahead thread stopped before the end"),
                ))
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing both channels wakes the thread wherever it waits.
        self.full.take();
        self.free.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Image, Inventory};

    const M: usize = MAX_CHUNK_LEN as usize;

    /// Runs of a stream: (address, length, seed of their bytes).
    const RUNS: [(u64, usize, u8); 4] = [
        (0x1000, 4096, 1),
        (0x10_0000, 2 * M + 3 * 4096, 2),
        (0x7f00_0000_0000, M, 3),
        (0x7fff_f000_0000, 8192, 4),
    ];

    fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Writes RUNS as stream 3 of a new image in `dir/name`, with `add` or `add_checksummed`.
    fn write(dir: &Path, name: &str, checksummed: bool) -> PathBuf {
        let target = dir.join(name);
        let mut w = Image::create(&target).unwrap();
        let mut pw = w.pages(PagesId(3)).unwrap();
        for (addr, len, seed) in RUNS {
            let data = bytes_of(len, seed);
            if checksummed {
                pw.add_checksummed(addr, &data, &RunChecksums::of(&data))
                    .unwrap();
            } else {
                pw.add(addr, &data).unwrap();
            }
        }
        pw.finish().unwrap();
        w.commit(Inventory::new(0, vec![])).unwrap();
        target
    }

    /// Every chunk of stream 3, read with `next_chunk`.
    fn chunks(img: &Image) -> Vec<(u64, Vec<u8>)> {
        let mut r = img.pages(PagesId(3)).unwrap();
        let mut buf = vec![0u8; M];
        let mut out = vec![];
        while let Some(c) = r.next_chunk(&mut buf).unwrap() {
            out.push((c.addr, buf[..c.len].to_vec()));
        }
        out
    }

    #[test]
    fn checksummed_runs_write_the_same_files_as_add() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", false);
        let b = write(dir.path(), "b", true);
        for name in ["pagemap-3.img", "pages-3.data"] {
            let fa = std::fs::read(a.join(name)).unwrap();
            let fb = std::fs::read(b.join(name)).unwrap();
            assert!(fa == fb, "{name} differs");
        }
        let img = Image::open(&b).unwrap();
        let got = chunks(&img);
        assert_eq!(got.len(), 6);
        // The chunks put back together are the runs.
        let mut joined: Vec<(u64, Vec<u8>)> = vec![];
        for (addr, data) in got {
            match joined.last_mut() {
                Some((a, d)) if *a + d.len() as u64 == addr => d.extend(data),
                _ => joined.push((addr, data)),
            }
        }
        let want: Vec<(u64, Vec<u8>)> = RUNS.iter().map(|&(a, l, s)| (a, bytes_of(l, s))).collect();
        assert!(joined == want, "the stream does not hold the runs");
    }

    #[test]
    fn checksums_must_cover_the_run_and_wrong_ones_are_caught_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("img");
        let mut w = Image::create(&target).unwrap();
        let mut pw = w.pages(PagesId(3)).unwrap();
        let data = bytes_of(3 * 4096, 9);
        let short = RunChecksums::of(&data[..4096]);
        assert_eq!(short.len(), 4096);
        let err = pw.add_checksummed(0x1000, &data, &short).unwrap_err();
        assert!(
            err.to_string()
                .contains("checksums of 4096 bytes given for 12288 bytes"),
            "{err}"
        );
        // The usual rules hold too.
        let err = pw
            .add_checksummed(0x1001, &data, &RunChecksums::of(&data))
            .unwrap_err();
        assert!(err.to_string().contains("multiples of 4096"), "{err}");
        // Checksums of other bytes of the same length: written, but reading finds out.
        let other = bytes_of(3 * 4096, 10);
        pw.add_checksummed(0x1000, &data, &RunChecksums::of(&other))
            .unwrap();
        pw.finish().unwrap();
        let img = w.commit(Inventory::new(0, vec![])).unwrap();
        let mut r = img.pages(PagesId(3)).unwrap();
        let mut buf = vec![0u8; M];
        let err = r.next_chunk(&mut buf).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn read_ahead_yields_what_next_chunk_reads() {
        let dir = tempfile::tempdir().unwrap();
        let img = Image::open(write(dir.path(), "img", true)).unwrap();
        let want = chunks(&img);
        let mut ahead = img.pages(PagesId(3)).unwrap().read_ahead().unwrap();
        let mut got = vec![];
        while let Some((c, data)) = ahead.next_chunk().unwrap() {
            assert_eq!(c.len, data.len());
            got.push((c.addr, data.to_vec()));
        }
        assert!(got == want, "read ahead differs from next_chunk");
        // The end stays the end.
        assert!(ahead.next_chunk().unwrap().is_none());
    }

    #[test]
    fn read_ahead_reports_damage_and_stops_when_dropped_early() {
        let dir = tempfile::tempdir().unwrap();
        let target = write(dir.path(), "img", true);
        let img = Image::open(&target).unwrap();
        // Dropped after one chunk while the thread is still reading: returns (joins).
        let mut ahead = img.pages(PagesId(3)).unwrap().read_ahead().unwrap();
        assert!(ahead.next_chunk().unwrap().is_some());
        drop(ahead);
        // A flipped byte in the third chunk's data (the first two are 4096 bytes and 1 MiB).
        let data = target.join("pages-3.data");
        let mut bytes = std::fs::read(&data).unwrap();
        let at = crate::codec::HEADER_LEN as usize + 4096 + M + 100;
        bytes[at] ^= 0x40;
        std::fs::write(&data, bytes).unwrap();
        let mut ahead = img.pages(PagesId(3)).unwrap().read_ahead().unwrap();
        assert!(ahead.next_chunk().unwrap().is_some());
        assert!(ahead.next_chunk().unwrap().is_some());
        let err = ahead.next_chunk().unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        // After an error, no more chunks (never a silent restart).
        assert!(ahead.next_chunk().unwrap().is_none());
    }
}
