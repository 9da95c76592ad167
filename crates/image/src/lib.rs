//! # crcli-image: the on-disk image format
//!
//! An image is what users keep, copy between machines and restore months later. It is a
//! directory: one inventory ([`Inventory`]: format version, crcli version, dump time, kernel
//! release and the kernel features the dump relied on, and the list of what the image holds),
//! typed entries for processes ([`Process`]), open file descriptions ([`FileEntry`]), pipes
//! ([`PipeEntry`]), mounts ([`MountEntry`], with the rebuild plan of unmounted and anonymous
//! ones) and the content of lost superblocks ([`FsContent`]), plus page data in separate streams
//! ([`pages`]). Since format version 2 an image holds a whole process tree: the inventory's
//! [`Tree`] has the zombies and the namespaces of the tree (a PID namespace of which the root is
//! PID 1, UTS names), and each [`Process`] its pid in the tree's PID namespace; since version 3
//! each [`Thread`] its id there too; version 4 adds state that version 3 did not keep (older
//! versions are converted on load: [`v1`], [`v2`], [`v3`]).
//!
//! - **Encoding** ([`codec`]): serde + postcard. Every file starts with a magic naming its kind
//!   and the format version; every record is length-prefixed and crc32c-checksummed; record
//!   files end with a trailer holding the record count, so a cut file is detected.
//! - **Ids, not nesting** ([`common`]): entries refer to each other by small ids ([`FileId`],
//!   [`MountId`], …); fds sharing an open file description share one [`FileEntry`].
//! - **Atomic writes**: [`Image::create`] writes into a temporary directory beside the target
//!   and [`ImageWriter::commit`] syncs, checks and renames it into place; a drop or an error
//!   removes it.
//! - **Untrusted input**: [`Image::open`] checks everything up front (framing, checksums,
//!   lengths and counts against fixed limits, paths without `..` or NUL, every id resolved,
//!   sorted ranges, data extents inside their files) and every error names the file and the
//!   record. Page and file data are read in chunks of at most [`MAX_CHUNK_LEN`] bytes, each
//!   checked against its own crc32c, so memory stays bounded whatever the image size.
//! - **Who wrote it** ([`check_image_dir`]): a restore believes an image only when the restoring
//!   user or root owns it and nobody else can write it.
//! - **Compatibility**: a reader accepts every format version from [`MIN_FORMAT_VERSION`] to
//!   [`FORMAT_VERSION`] and refuses others with a message naming both; golden images of each
//!   version live in `tests/fixtures/` and must keep decoding.
//! - **JSON view**: [`Image::to_json`] / [`Image::to_json_pretty`] (what `crcli show --json`
//!   prints) — lossless: non-UTF-8 bytes are escaped, blobs are hex.
//!
//! Only this crate derives serde on image types: other crates convert to and from them
//! explicitly, so a refactor elsewhere cannot silently change the on-disk format.
//!
//! ```
//! # fn main() -> Result<(), crcli_image::ImageError> {
//! # let tmp = tempfile::tempdir().unwrap();
//! use crcli_image::*;
//! let target = tmp.path().join("image");
//! let mut w = Image::create(&target)?;
//! w.add_pipe(&PipeEntry { id: PipeId(1), capacity: 65536, buffered: b"hello".to_vec() })?;
//! let mut pages = w.pages(PagesId(1))?;
//! pages.add(0x10000, &[0u8; 4096])?;
//! pages.finish()?;
//! w.commit(Inventory::new(0, vec![KernelFeature::Statmount]))?;
//!
//! let image = Image::open(&target)?;
//! assert_eq!(image.pipe(PipeId(1)).unwrap().buffered, b"hello");
//! assert_eq!(image.inventory().contents.page_bytes, 4096);
//! # Ok(()) }
//! ```
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
pub mod mountns;
pub mod pages;
pub mod process;
pub mod tree;
mod trust;
pub mod v1;
pub mod v2;
pub mod v3;
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
pub use trust::check_image_dir;

pub use bytes::{BytesError, ImagePath, OsBytes};
pub use common::{Extent, FileId, FsContentId, MountId, PagesId, PipeId, Timestamp};
pub use file::{FileEntry, FileKind, FileLocation, PipeEnd, PipeEntry};
pub use fs::{FsContent, FsEntry, FsEntryKind, Xattr};
pub use inventory::{Contents, Inventory, KernelFeature};
pub use mount::{MountEntry, MountKind, ProcessFd, RebuildPlan};
pub use mountns::{MountNamespace, NsMount, NsMountSource};
pub use process::{
    Creds, Fd, ITimer, ITimers, MmInfo, PendingSignals, Process, Rlimit, RobustList, Rseq, Sched,
    SigAction, SigAltStack, Thread, TlsDesc, UserRegs, Vma, VmaBacking, XState,
};
pub use tree::{NamespaceId, NamespaceKind, Namespaces, Tree, UtsNames, Zombie};

/// The format version this crate writes.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format version this crate reads.
pub const MIN_FORMAT_VERSION: u32 = 1;
/// The page size of images (x86_64).
pub const PAGE_SIZE: u64 = 4096;
/// The longest extent (chunk of page or file data with its own checksum), in bytes.
pub const MAX_CHUNK_LEN: u32 = 1 << 20;
