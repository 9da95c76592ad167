//! Small types shared by several entry kinds: the ids entries use to reference each other,
//! timestamps, and the extents that locate data in a data file.
//!
//! Entries never nest one another: a process names its files by [`FileId`], a file names its
//! mount by [`MountId`], a lost-superblock mount names its dumped content by [`FsContentId`], and
//! so on. [`crate::Image::open`] checks that every id used is defined exactly once.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Identifies an open file description ([`crate::file::FileEntry`]) in an image. Several fds,
    /// in one or several processes, that share one open file description share one id.
    FileId
);
id_type!(
    /// Identifies a mount ([`crate::mount::MountEntry`]) in an image. Not a kernel mount id: those
    /// are kept in the entry's `unique_id` and `old_id` fields.
    MountId
);
id_type!(
    /// Identifies a pipe ([`crate::file::PipeEntry`]) in an image; both ends of one pipe share it.
    PipeId
);
id_type!(
    /// Identifies the dumped content of a lost superblock ([`crate::fs::FsContent`]).
    FsContentId
);
id_type!(
    /// Identifies a page stream (a pagemap and its pages file, [`crate::pages`]). A process's
    /// private memory is one stream; the content of a shared anonymous mapping is another.
    PagesId
);

/// A point in time, as the kernel gives it (`struct timespec`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (may be negative).
    pub secs: i64,
    /// Nanoseconds, below 1 000 000 000 (checked when an image is opened).
    pub nsecs: u32,
}

/// A run of bytes stored in a data file: `len` bytes that belong at `offset` (a virtual address
/// for pages, an offset in the file for file content) and are stored at `data_offset` in the data
/// file, with the crc32c of those bytes. An extent is at most [`crate::MAX_CHUNK_LEN`] bytes long,
/// so a reader can check each chunk's checksum with a bounded buffer.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Extent {
    /// Where the bytes belong: a virtual address (pages) or an offset in a file (file content).
    pub offset: u64,
    /// How many bytes, 1 to [`crate::MAX_CHUNK_LEN`].
    pub len: u32,
    /// Where the bytes are stored in the data file, counted from the end of its header.
    pub data_offset: u64,
    /// crc32c of the bytes.
    pub crc32c: u32,
}
