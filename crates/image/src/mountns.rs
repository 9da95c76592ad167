//! The mount tree of the dumped tree's own mount namespace (format version 2), kept in
//! [`crate::Tree::mount_ns`] when the root lived in a mount namespace other than the dumper's.
//!
//! Each [`NsMount`] is one attached mount of that namespace, listed parents first and, among
//! mounts stacked on one mount point, in the order they were mounted (an overmount after the
//! mount it hides). It carries what the kernel shows of it (root in its filesystem, mount point,
//! filesystem type, source, superblock options, `MOUNT_ATTR_*` attributes, propagation) and
//! [`NsMountSource`]: how the restore makes it again — a fresh instance (`proc`, `sysfs`,
//! `devpts`, …), a fresh tmpfs/ramfs filled with dumped content (an `fs-N` stream, as for lost
//! superblocks), a bind of an earlier mount of the namespace, a clone of the live mount of the restoring crcli's namespace that the namespace
//! was copied from (`unshare(CLONE_NEWNS)`), or a bind of a host path the user names at restore
//! (`--external mnt[KEY]:PATH`, CRIU's convention).

use serde::{Deserialize, Serialize};

use crate::bytes::{ImagePath, OsBytes};
use crate::common::FsContentId;

/// The most mounts one mount namespace may hold in an image.
pub const MAX_NS_MOUNTS: usize = 1 << 14;

/// The mount tree of one mount namespace.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MountNamespace {
    /// The namespace's id at dump time (`NS_GET_MNTNS_ID`), 0 when unknown; for messages.
    pub ns_id: u64,
    /// Every mount, parents before children, stacked mounts in mount order; the first is the
    /// namespace's root mount.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_NS_MOUNTS, _, _>")]
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::arbitrary::any::<NsMount>(), 0..4)"
        )
    )]
    pub mounts: Vec<NsMount>,
}

/// One mount of the namespace.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsMount {
    /// The kernel's unique mount id at dump time (names the mount in messages and links
    /// parents).
    pub id: u64,
    /// The unique id of the parent mount; 0 for the namespace's root mount.
    pub parent: u64,
    /// Where it is mounted, absolute in the namespace (`/` for the root mount).
    pub mountpoint: ImagePath,
    /// The path inside its filesystem that is its root (`/` for the whole filesystem).
    pub root: ImagePath,
    /// Filesystem type (`tmpfs`, `proc`, `ext4`, …).
    pub fs_type: String,
    /// The source (`sb_source`), if any.
    pub source: Option<OsBytes>,
    /// Superblock options as mountinfo shows them (`rw,size=1024k`).
    pub super_options: String,
    /// Per-mount attributes (`MOUNT_ATTR_*` bits: ro, nosuid, nodev, noexec, atime mode, …).
    pub attributes: u64,
    /// Propagation (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE` bits).
    pub propagation: u64,
    /// Peer group id of a shared mount, 0 when not shared.
    pub peer_group: u64,
    /// Peer group id of the master of a slave mount, 0 when not a slave.
    pub master: u64,
    /// How the restore makes it.
    pub source_kind: NsMountSource,
}

/// How one mount of the namespace is made again.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsMountSource {
    /// A fresh instance of a filesystem whose content is not data (`proc`, `sysfs`, `devpts`,
    /// `mqueue`, `cgroup2`), made with `fsopen`/`fsconfig`/`fsmount`.
    Fresh {
        /// Options for `fsconfig`.
        options: String,
    },
    /// A fresh `tmpfs` or `ramfs` (its superblock dies with the namespace) filled with the
    /// dumped content.
    Content {
        /// Options for `fsconfig` (`size=…`, `mode=…`).
        options: String,
        /// The dumped content (`fs-N`).
        content: FsContentId,
    },
    /// A copy of a mount of the dumper's own namespace, made when the namespace was copied from
    /// it: the restore clones the mount at `host_mountpoint` in its own namespace
    /// (`open_tree(OPEN_TREE_CLONE)`), at `subroot` below its root.
    HostCopy {
        /// Where the live mount is in the dumper's (and the restorer's) namespace.
        host_mountpoint: ImagePath,
        /// The mount's root relative to the live mount's root (`""` for the same root).
        subroot: ImagePath,
    },
    /// A bind of another mount of the namespace, listed before this one, of the same
    /// superblock (`mount --bind` inside the namespace): a clone of it at `subroot`.
    NsBind {
        /// The unique id ([`NsMount::id`]) of the earlier mount.
        of: u64,
        /// This mount's root relative to that mount's root (`""` for the same root).
        subroot: ImagePath,
    },
    /// A bind of a path outside the namespace, named by the user: at dump
    /// `--external mnt[MOUNTPOINT]:KEY`, at restore `--external mnt[KEY]:PATH`.
    External {
        /// The user's key.
        key: String,
    },
}

/// `MS_UNBINDABLE`, as [`NsMount::propagation`] holds it.
pub const MS_UNBINDABLE: u64 = 1 << 17;
/// `MS_PRIVATE`.
pub const MS_PRIVATE: u64 = 1 << 18;
/// `MS_SLAVE`.
pub const MS_SLAVE: u64 = 1 << 19;
/// `MS_SHARED`.
pub const MS_SHARED: u64 = 1 << 20;
