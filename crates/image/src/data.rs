//! Data files (`*.data`): raw bytes after a header, located by [`Extent`]s that carry a crc32c
//! per chunk of at most [`MAX_CHUNK_LEN`] bytes.
//!
//! [`DataWriter`] appends bytes in bounded chunks; [`DataReader`] reads one extent into a
//! caller's buffer with `pread` and checks its checksum, so neither ever holds more than one
//! chunk, whatever the size of the data.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::codec::{corrupt, encode_header, read_header, FileTag, HEADER_LEN};
use crate::common::Extent;
use crate::error::{ImageError, Result};
use crate::{FORMAT_VERSION, MAX_CHUNK_LEN};

/// Appends data to a data file.
pub struct DataWriter {
    w: BufWriter<File>,
    path: PathBuf,
    pos: u64,
}

impl DataWriter {
    /// Creates the file (it must not exist) and writes its header.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let f = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ImageError::io("creating", path, e))?;
        let mut w = BufWriter::with_capacity(MAX_CHUNK_LEN as usize, f);
        w.write_all(&encode_header(FileTag::Data, FORMAT_VERSION))
            .map_err(|e| ImageError::io("writing", path, e))?;
        Ok(Self {
            w,
            path: path.to_owned(),
            pos: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of data written so far (not counting the header).
    pub fn len(&self) -> u64 {
        self.pos
    }

    /// Whether no data was written yet.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Appends `data`, which belongs at `offset`, in chunks of at most `chunk` bytes; pushes
    /// one extent per chunk to `out`.
    pub(crate) fn append(
        &mut self,
        offset: u64,
        data: &[u8],
        chunk: usize,
        out: &mut Vec<Extent>,
    ) -> Result<()> {
        if offset.checked_add(data.len() as u64).is_none() {
            return Err(ImageError::Refused {
                path: self.path.clone(),
                problem: format!(
                    "{} bytes at offset {offset:#x} run past the end of the address space",
                    data.len()
                ),
            });
        }
        let mut off = offset;
        for c in data.chunks(chunk) {
            self.w
                .write_all(c)
                .map_err(|e| ImageError::io("writing", &self.path, e))?;
            out.push(Extent {
                offset: off,
                len: c.len() as u32,
                data_offset: self.pos,
                crc32c: crc32c::crc32c(c),
            });
            self.pos += c.len() as u64;
            off += c.len() as u64;
        }
        Ok(())
    }

    /// [`DataWriter::append`] with the checksums already computed: `crcs[i]` is the crc32c of
    /// the `i`-th chunk of at most `chunk` bytes of `data`. The data goes out in one write
    /// (the checksums can be computed elsewhere, e.g. on the thread that produced the data).
    pub(crate) fn append_checksummed(
        &mut self,
        offset: u64,
        data: &[u8],
        crcs: &[u32],
        chunk: usize,
        out: &mut Vec<Extent>,
    ) -> Result<()> {
        if offset.checked_add(data.len() as u64).is_none() {
            return Err(ImageError::Refused {
                path: self.path.clone(),
                problem: format!(
                    "{} bytes at offset {offset:#x} run past the end of the address space",
                    data.len()
                ),
            });
        }
        if crcs.len() != data.len().div_ceil(chunk) {
            return Err(ImageError::Refused {
                path: self.path.clone(),
                problem: format!(
                    "{} checksums for {} bytes at offset {offset:#x} (one per {chunk} bytes expected)",
                    crcs.len(),
                    data.len()
                ),
            });
        }
        self.w
            .write_all(data)
            .map_err(|e| ImageError::io("writing", &self.path, e))?;
        let mut off = offset;
        for (c, &crc32c) in data.chunks(chunk).zip(crcs) {
            out.push(Extent {
                offset: off,
                len: c.len() as u32,
                data_offset: self.pos,
                crc32c,
            });
            self.pos += c.len() as u64;
            off += c.len() as u64;
        }
        Ok(())
    }

    /// Flushes the file (without syncing it: see [`crate::ImageWriter::commit`]); returns the
    /// data length and the file, for the caller to sync.
    pub(crate) fn finish_unsynced(self) -> Result<(u64, File)> {
        let f = self
            .w
            .into_inner()
            .map_err(|e| ImageError::io("writing", &self.path, e.into_error()))?;
        Ok((self.pos, f))
    }
}

/// Reads extents from a data file.
#[derive(Debug)]
pub struct DataReader {
    f: File,
    path: PathBuf,
    len: u64,
}

impl DataReader {
    /// Opens a data file and checks its header.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut f = crate::codec::open_regular(path)?;
        read_header(&mut f, path, FileTag::Data, path)?;
        let len = f
            .metadata()
            .map_err(|e| ImageError::io("reading metadata of", path, e))?
            .len()
            .saturating_sub(HEADER_LEN);
        Ok(Self {
            f,
            path: path.to_owned(),
            len,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of data in the file (not counting the header).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds no data.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks that `e` is well formed and lies inside the file. `record` names the extent in
    /// errors (the index of the record that holds it).
    pub(crate) fn check_extent(&self, e: &Extent, owner: &Path, record: u64) -> Result<()> {
        if e.len == 0 || e.len > MAX_CHUNK_LEN {
            return Err(ImageError::Invalid {
                path: owner.to_owned(),
                record,
                problem: format!(
                    "extent at {:#x} has length {}, not 1 to {MAX_CHUNK_LEN}",
                    e.offset, e.len
                ),
            });
        }
        match e.data_offset.checked_add(u64::from(e.len)) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(ImageError::Invalid {
                path: owner.to_owned(),
                record,
                problem: format!(
                    "extent at {:#x} points at bytes {}..{} of {}, which holds {} bytes",
                    e.offset,
                    e.data_offset,
                    u128::from(e.data_offset) + u128::from(e.len),
                    self.path.display(),
                    self.len
                ),
            }),
        }
    }

    /// Reads extent `e` into `buf[..e.len]` and checks its checksum. `record` names the
    /// extent in errors (the index of the record that holds it).
    pub fn read_extent(&self, e: &Extent, buf: &mut [u8], record: u64) -> Result<()> {
        let len = e.len as usize;
        if len == 0 || e.len > MAX_CHUNK_LEN {
            return Err(corrupt(
                &self.path,
                record,
                format!("extent length {} is not 1 to {MAX_CHUNK_LEN}", e.len),
            ));
        }
        if buf.len() < len {
            return Err(ImageError::Refused {
                path: self.path.clone(),
                problem: format!(
                    "reading an extent of {len} bytes into a buffer of {}",
                    buf.len()
                ),
            });
        }
        if e.data_offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(corrupt(
                &self.path,
                record,
                format!(
                    "extent at data offset {} with {len} bytes lies past the end ({} bytes)",
                    e.data_offset, self.len
                ),
            ));
        }
        let buf = &mut buf[..len];
        self.f
            .read_exact_at(buf, HEADER_LEN + e.data_offset)
            .map_err(|err| ImageError::io("reading", &self.path, err))?;
        if crc32c::crc32c(buf) != e.crc32c {
            return Err(corrupt(
                &self.path,
                record,
                format!(
                    "checksum mismatch in the {len} bytes at data offset {} (for {:#x})",
                    e.data_offset, e.offset
                ),
            ));
        }
        Ok(())
    }
}
