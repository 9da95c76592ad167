//! Filesystem content dumped for lost superblocks (`fs-N.img`, with regular-file data in
//! `fs-N.data`): the files and directories reachable from the process's fds on a filesystem that
//! has no live mount anywhere, so the restore can recreate them in a fresh instance.

use serde::{Deserialize, Serialize};

use crate::bytes::{ImagePath, OsBytes};
use crate::common::{Extent, FsContentId, Timestamp};

/// The most extended attributes one entry may have in an image.
pub const MAX_XATTRS: usize = 1 << 16;

/// The dumped content of one lost superblock: its entries, parents before children.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsContent {
    /// This content's id.
    pub id: FsContentId,
    /// The entries, in `fs-N.img` order (parents before children, hard-link targets before
    /// their links).
    pub entries: Vec<FsEntry>,
}

/// One file, directory, symlink, … of a dumped filesystem.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    /// Path relative to the filesystem root, without a leading `/` (`""` is the root directory).
    pub path: ImagePath,
    /// What it is.
    pub kind: FsEntryKind,
    /// Permission bits (`st_mode & 07777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification.
    pub mtime: Timestamp,
    /// Extended attributes, at most [`MAX_XATTRS`].
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_XATTRS, _, _>")]
    pub xattrs: Vec<Xattr>,
    /// `st_ino` at dump time (to match fds to entries).
    pub ino: u64,
}

/// The kind of a dumped filesystem entry.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsEntryKind {
    /// A directory.
    Directory,
    /// A regular file of `size` bytes; `extents` (in `fs-N.data`, sorted, not overlapping) hold
    /// its data and the gaps between them are holes.
    Regular {
        /// File size in bytes.
        size: u64,
        /// Data extents.
        #[serde(deserialize_with = "crate::bytes::bounded_vec::<{ usize::MAX }, _, _>")]
        extents: Vec<Extent>,
    },
    /// A symbolic link.
    Symlink {
        /// Its target, as `readlink` gives it (may contain `..`: it is never resolved by crcli).
        target: OsBytes,
    },
    /// A hard link to an earlier regular entry of the same content (its hard-link group).
    HardLink {
        /// The path of the first entry of the group.
        target: ImagePath,
    },
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice {
        /// Device number.
        rdev: u64,
    },
    /// A block device.
    BlockDevice {
        /// Device number.
        rdev: u64,
    },
    /// A Unix socket node (recreated as a node only).
    Socket,
}

/// One extended attribute.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Name (`user.foo`, `security.selinux`, …).
    pub name: OsBytes,
    /// Value.
    #[serde(with = "crate::bytes::hex")]
    pub value: Vec<u8>,
}
