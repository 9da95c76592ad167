//! Mounts (`mounts.img`): the three kinds of DESIGN.md (attached, unmounted, anonymous) and, for
//! the two that no mount table shows, the plan to rebuild them.

use serde::{Deserialize, Serialize};

use crate::bytes::{ImagePath, OsBytes};
use crate::common::{FsContentId, MountId};

/// One mount.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    /// This entry's id, unique in the image.
    pub id: MountId,
    /// Attached, unmounted or anonymous.
    pub kind: MountKind,
    /// The kernel's 64-bit unique mount id at dump time.
    pub unique_id: u64,
    /// The kernel's short (reusable) mount id at dump time, as mountinfo and fdinfo show it.
    pub old_id: u32,
    /// The kernel's unique id of the parent mount (0 when none is known: unmounted and anonymous
    /// mounts, the namespace root).
    pub parent_unique_id: u64,
    /// The parent mount, when it is in the image.
    pub parent: Option<MountId>,
    /// The id of the mount namespace the mount is attached in (attached mounts only).
    pub mnt_ns_id: Option<u64>,
    /// The path inside the superblock that is the mount's root (`/` for the whole filesystem).
    pub root: ImagePath,
    /// Where it is mounted (attached mounts only), absolute in its namespace.
    pub mountpoint: Option<ImagePath>,
    /// Filesystem type (`tmpfs`, `ext4`, …).
    pub fs_type: String,
    /// Filesystem subtype (FUSE), if any.
    pub fs_subtype: Option<String>,
    /// The source (`sb_source`), if any.
    pub source: Option<OsBytes>,
    /// Superblock options (`mnt_opts`, mountinfo's last field).
    pub super_options: String,
    /// Device number of the superblock (major).
    pub dev_major: u32,
    /// Device number of the superblock (minor).
    pub dev_minor: u32,
    /// Per-mount attributes (`MOUNT_ATTR_*` bits).
    pub attributes: u64,
    /// Propagation (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE` bits).
    pub propagation: u64,
    /// Peer group id (shared mounts), 0 when none.
    pub peer_group: u64,
    /// Master peer group id (slave mounts), 0 when none.
    pub master: u64,
    /// Nearest dominant peer group in this namespace, 0 when none.
    pub propagate_from: u64,
    /// How to rebuild it; `None` for attached mounts, which the restore mounts where they were.
    pub rebuild: Option<RebuildPlan>,
    /// For an anonymous mount: the fds that are the mount fd itself (from `open_tree` or
    /// `fsmount`), which the restore must keep open at these numbers.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<{ crate::process::MAX_FDS }, _, _>")]
    pub kept_fds: Vec<ProcessFd>,
}

/// The three kinds of mount crcli meets (DESIGN.md, "The mount model").
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// In some mount namespace's table.
    Attached,
    /// Removed with `umount2(MNT_DETACH)` (or an anonymous mount whose mount fd was closed).
    Unmounted,
    /// A clone or an fsmount that was never attached; its mount fd is still open.
    Anonymous,
}

/// How to rebuild a mount that no mount table shows.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RebuildPlan {
    /// Another, attached, mount shows the same superblock: clone it at a sub-root.
    BindOfLive {
        /// The kernel's unique id of the live mount at dump time.
        live_mount_id: u64,
        /// Where the live mount is mounted (absolute).
        live_mountpoint: ImagePath,
        /// The rebuilt mount's root relative to the live mount's root (`""` for the same root).
        subroot: ImagePath,
    },
    /// The superblock can be mounted again from its source (a block device that still exists).
    Remount {
        /// The source (device path).
        source: OsBytes,
        /// Filesystem type.
        fs_type: String,
        /// Options for `fsconfig`.
        options: String,
        /// The mount's root relative to the filesystem root (`""` for the whole filesystem).
        subroot: ImagePath,
    },
    /// The superblock exists only through the process's fds: make a fresh instance and fill it
    /// with the dumped content.
    LostSuperblock {
        /// Filesystem type (`tmpfs`, `ramfs`, …).
        fs_type: String,
        /// Options for `fsconfig`.
        options: String,
        /// The dumped content.
        content: FsContentId,
        /// The mount's root relative to the filesystem root (`""` for the whole filesystem).
        subroot: ImagePath,
    },
}

/// An fd of a process.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessFd {
    /// The process.
    pub pid: u32,
    /// The fd number.
    pub fd: u32,
}
