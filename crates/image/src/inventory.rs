//! The inventory: the one record that says what an image is and what it holds.
//!
//! It is written last (so an image without one is incomplete) and read first. It names the format
//! version, the crcli version that wrote the image, when and on which kernel, which kernel
//! features the dump relied on (the restore checks them before touching anything), and the lists
//! of processes and entries the image holds.

use serde::{Deserialize, Serialize};

use crate::common::{FsContentId, PagesId, Timestamp};
use crate::tree::Tree;

/// The inventory of an image (`inventory.img`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The image format version; equal to the version in every file header.
    pub format_version: u32,
    /// The version of crcli that wrote the image (`CARGO_PKG_VERSION` of the writer).
    pub crcli_version: String,
    /// When the dump was taken (wall clock).
    pub dump_time: Timestamp,
    /// `uname -r` of the machine the dump ran on.
    pub kernel_release: String,
    /// `uname -m` of that machine; only `x86_64` images exist so far.
    pub arch: String,
    /// The page size of that machine, in bytes (4096).
    pub page_size: u32,
    /// The kernel features the dump relied on; the restore refuses to start without them.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<1024, _, _>")]
    pub features: Vec<KernelFeature>,
    /// The pid of the root of the dumped tree, as the dumper saw it.
    pub root_pid: u32,
    /// What the image holds, filled in by [`crate::ImageWriter::commit`].
    pub contents: Contents,
    /// The tree's namespaces and zombies (format version 2; empty when converted from 1).
    pub tree: Tree,
}

impl Inventory {
    /// An inventory for a dump taken now, on this machine, of the tree rooted at `root_pid`,
    /// relying on `features`. [`crate::ImageWriter::commit`] fills in `format_version` and
    /// `contents`.
    pub fn new(root_pid: u32, features: Vec<KernelFeature>) -> Self {
        let uname = rustix::system::uname();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            format_version: crate::FORMAT_VERSION,
            crcli_version: env!("CARGO_PKG_VERSION").to_string(),
            dump_time: Timestamp {
                secs: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                nsecs: now.subsec_nanos(),
            },
            kernel_release: uname.release().to_string_lossy().into_owned(),
            arch: uname.machine().to_string_lossy().into_owned(),
            page_size: crate::PAGE_SIZE as u32,
            features,
            root_pid,
            contents: Contents::default(),
            tree: Tree::default(),
        }
    }
}

/// The entries an image holds; [`crate::Image::open`] checks them against the files it finds.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contents {
    /// The pids of the dumped processes, in the order of `processes.img`.
    #[serde(
        deserialize_with = "crate::bytes::bounded_vec::<{ crate::image::MAX_PROCESSES as usize }, _, _>"
    )]
    pub pids: Vec<u32>,
    /// How many open file descriptions (`files.img`).
    pub files: u32,
    /// How many pipes (`pipes.img`).
    pub pipes: u32,
    /// How many mounts (`mounts.img`).
    pub mounts: u32,
    /// The dumped lost-superblock contents (`fs-N.img` and `fs-N.data`).
    #[serde(
        deserialize_with = "crate::bytes::bounded_vec::<{ crate::image::MAX_ENTRIES as usize }, _, _>"
    )]
    pub fs_contents: Vec<FsContentId>,
    /// The page streams (`pagemap-N.img` and `pages-N.data`).
    #[serde(
        deserialize_with = "crate::bytes::bounded_vec::<{ crate::image::MAX_ENTRIES as usize }, _, _>"
    )]
    pub pages: Vec<PagesId>,
    /// Total bytes of page data over all page streams.
    pub page_bytes: u64,
}

/// A kernel feature a dump can rely on. New variants are only ever appended.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KernelFeature {
    /// `statmount(2)` by mount id (Linux 6.8).
    Statmount,
    /// `listmount(2)` (Linux 6.8).
    Listmount,
    /// `statmount(2)` with `STATMOUNT_BY_FD` (Linux 7.0).
    StatmountByFd,
    /// `open_tree(2)` with `OPEN_TREE_NAMESPACE` (Linux 7.0).
    OpenTreeNamespace,
    /// The new mount API: `open_tree`, `move_mount`, `fsopen`, `fsconfig`, `fsmount` (Linux 5.2).
    NewMountApi,
    /// `mount_setattr(2)` (Linux 5.12).
    MountSetattr,
    /// `statx(2)` with `STATX_MNT_ID_UNIQUE` (Linux 6.8).
    StatxMntIdUnique,
    /// `clone3(2)` with `set_tid` (Linux 5.5).
    Clone3SetTid,
    /// `pidfd_getfd(2)` (Linux 5.6).
    PidfdGetfd,
    /// `PTRACE_GET_RSEQ_CONFIGURATION` (Linux 5.13).
    PtraceGetRseqConfiguration,
    /// `prctl(PR_SET_MM, PR_SET_MM_MAP)` (Linux 3.18).
    PrSetMmMap,
}
