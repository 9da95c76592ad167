//! Open file descriptions (`files.img`) and pipes (`pipes.img`).
//!
//! A [`FileEntry`] is one open file description: fds that share it (after `dup`, `fork` or fd
//! passing) share one entry. A file that lives in a filesystem names its mount ([`MountId`]) and
//! its path relative to that mount's root, so the restore can reopen it through the rebuilt mount
//! even when that mount is unmounted or anonymous. The inode identity and size/mtime let the
//! restore check that it reopened the same file.

use serde::{Deserialize, Serialize};

use crate::common::{Extent, FileId, MountId, PipeId, Timestamp};

/// The most bytes a pipe buffer may hold in an image (the kernel's default `pipe-max-size`).
pub const MAX_PIPE_BUFFER: usize = 1 << 20;

/// One open file description.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// This entry's id, unique in the image.
    pub id: FileId,
    /// Open flags (`O_*`, as `fdinfo`'s `flags:` shows them, without `O_CLOEXEC`, which is
    /// per fd).
    pub flags: u32,
    /// File position (`fdinfo`'s `pos:`).
    pub pos: u64,
    /// What kind of file it is, and where it lives.
    pub kind: FileKind,
}

/// The kind of an open file description.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file.
    Regular(FileLocation),
    /// A directory (opened with `O_DIRECTORY` or just a directory opened read-only).
    Directory(FileLocation),
    /// An `O_PATH` fd on anything but a symlink (including a mount fd from `open_tree` or
    /// `fsmount`, whose location is the mount's root).
    Path(FileLocation),
    /// An `O_PATH | O_NOFOLLOW` fd on a symlink.
    Symlink(FileLocation),
    /// A character device.
    CharDevice {
        /// Where the device node lives.
        location: FileLocation,
        /// The device number (`st_rdev`).
        rdev: u64,
    },
    /// A block device.
    BlockDevice {
        /// Where the device node lives.
        location: FileLocation,
        /// The device number (`st_rdev`).
        rdev: u64,
    },
    /// A named pipe; its buffered data is in the pipe entry.
    Fifo {
        /// Where the FIFO lives.
        location: FileLocation,
        /// The pipe (buffer) behind it; all opens of one FIFO share it.
        pipe: PipeId,
    },
    /// One end of an anonymous pipe.
    Pipe {
        /// The pipe.
        pipe: PipeId,
        /// Which end.
        end: PipeEnd,
    },
    /// A regular file that was unlinked while open: its content is in `files.data`.
    Unlinked {
        /// Where it lived (the mount it is on, the path it had before it was unlinked).
        location: FileLocation,
        /// Its content: data extents in `files.data`; the gaps up to `location.size` are holes.
        #[serde(deserialize_with = "crate::bytes::bounded_vec::<{ usize::MAX }, _, _>")]
        extents: Vec<Extent>,
    },
}

/// Which end of a pipe.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipeEnd {
    /// The read end.
    Read,
    /// The write end.
    Write,
}

/// Where a file lives and what it was, for reopening and checking it.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLocation {
    /// The mount the file is on.
    pub mount: MountId,
    /// Its path relative to that mount's root, without a leading `/` (`""` is the root itself).
    pub path: crate::bytes::ImagePath,
    /// `st_dev` at dump time.
    pub dev: u64,
    /// `st_ino` at dump time.
    pub ino: u64,
    /// `st_mode` at dump time (type and permission bits).
    pub mode: u32,
    /// `st_size` at dump time.
    pub size: u64,
    /// `st_mtime` at dump time.
    pub mtime: Timestamp,
}

/// A pipe (anonymous or the buffer of a FIFO) and the bytes buffered in it at dump time.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeEntry {
    /// This pipe's id, unique in the image.
    pub id: PipeId,
    /// The pipe's capacity (`F_GETPIPE_SZ`).
    pub capacity: u32,
    /// The bytes buffered in it, at most [`MAX_PIPE_BUFFER`].
    #[serde(with = "crate::bytes::hex")]
    pub buffered: Vec<u8>,
}
