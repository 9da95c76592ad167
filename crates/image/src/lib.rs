//! # crcli-image: the on-disk image format
//!
//! An image is a directory: an inventory, typed entries for processes, files, pipes and mounts,
//! dumped filesystem content, and page data in separate streams. Every file carries a magic and
//! a format version; every record is length-prefixed and checksummed; readers never trust their
//! input.
//!
//! Status: the entry types are settled; the codec and the reader/writer are being built.
#![forbid(unsafe_code)]

pub mod bytes;
pub mod codec;
pub mod common;
pub mod data;
mod error;
pub mod file;
pub mod fs;
mod image;
pub mod inventory;
pub mod mount;
pub mod pages;
pub mod process;
mod validate;

#[cfg(test)]
mod proptests;

pub use data::DataReader;
pub use error::{ImageError, Result};
pub use image::{
    fs_file_names, FsWriter, Image, ImageWriter, FILES, FILES_DATA, INVENTORY, MAX_ENTRIES,
    MAX_FS_ENTRIES, MAX_METADATA_BYTES, MAX_PROCESSES, MOUNTS, PIPES, PROCESSES,
};
pub use pages::{PageChunk, PagesReader, PagesSummary, PagesWriter};

pub use bytes::{BytesError, ImagePath, OsBytes};
pub use common::{Extent, FileId, FsContentId, MountId, PagesId, PipeId, Timestamp};
pub use file::{FileEntry, FileKind, FileLocation, PipeEnd, PipeEntry};
pub use fs::{FsContent, FsEntry, FsEntryKind, Xattr};
pub use inventory::{Contents, Inventory, KernelFeature};
pub use mount::{MountEntry, MountKind, ProcessFd, RebuildPlan};
pub use process::{
    Creds, Fd, MmInfo, PendingSignals, Process, Rlimit, RobustList, Rseq, SigAction, SigAltStack,
    Thread, TlsDesc, UserRegs, Vma, VmaBacking, XState,
};

/// The format version this crate writes.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest format version this crate reads.
pub const MIN_FORMAT_VERSION: u32 = 1;
/// The page size of images (x86_64).
pub const PAGE_SIZE: u64 = 4096;
/// The longest extent (chunk of page or file data with its own checksum), in bytes.
pub const MAX_CHUNK_LEN: u32 = 1 << 20;
