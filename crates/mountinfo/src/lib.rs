//! # crcli-mountinfo: the mount model
//!
//! Builds the mount table of a mount namespace from `/proc/PID/mountinfo` and from
//! listmount+statmount, merged into one model, and resolves an fd to the mount it lives on:
//! attached, unmounted (`umount2(MNT_DETACH)`) or anonymous (`open_tree(OPEN_TREE_CLONE)`,
//! `fsmount()`), with a plan to rebuild it.
//!
//! Main types:
//! - [`parse`]: the mountinfo parser ([`parse::parse_mountinfo`], [`parse::MountInfoEntry`]);
//! - [`Mount`] and its parts ([`model`]): one mount, whatever source described it;
//! - [`MountTable`] ([`table`]): the mounts of one namespace, with queries (children, parent
//!   chain, the mount at a path, the mounts of one superblock) and a field-by-field
//!   comparison of two tables;
//! - [`kernel`]: tables from the running kernel: [`MountTable::read_mountinfo`],
//!   [`MountTable::from_listmount`], and [`MountTable::of`] (both merged) for the caller's
//!   namespace, a process's, or a namespace fd. A table of another namespace read through a
//!   process of it has an access root (`/proc/PID/root`, [`MountTable::access_root`]): its
//!   mount points are paths of that namespace, [`MountTable::reach`] makes them paths the
//!   caller can open (used by [`resolve_fd`] to search a live mount for an anonymous mount's
//!   root and to find a block device's node);
//! - [`resolve_fd`] ([`resolve`]): the mount an fd is on, as a [`Resolution`] (attached,
//!   unmounted, anonymous, internal, or "cannot tell on this kernel") with a [`Rebuild`]
//!   plan for mounts no table shows;
//! - [`Error`] for everything that talks to the kernel, [`ParseError`] for mountinfo text.
//!
//! Nothing here changes any mount table. The one side effect is [`resolve_fd`]'s probe on
//! kernels without `STATMOUNT_BY_FD`: it may make an unattached clone of the fd's mount
//! (`open_tree(OPEN_TREE_CLONE)`) and drop it at once, which attaches, detaches and changes
//! nothing.
//!
//! ```
//! use crcli_mountinfo::MountTable;
//!
//! let text = b"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
//!              22 27 0:21 / /proc rw,relatime - proc proc rw\n";
//! let table = MountTable::from_mountinfo(text, None).unwrap();
//! let proc_mount = table.mount_at(std::path::Path::new("/proc/self")).unwrap();
//! assert_eq!(proc_mount.fs_type, "proc");
//! assert_eq!(table.parent(proc_mount).unwrap().old_id, 27);
//! ```
#![forbid(unsafe_code)]

pub mod error;
pub mod kernel;
pub mod model;
pub mod parse;
pub mod resolve;
pub mod table;

pub use error::Error;
pub use model::{Atime, DevId, Mount, MountAttrs, Origin, Propagation, SbFlags};
pub use parse::{MountInfoEntry, OptionalField, ParseError};
pub use resolve::{resolve_fd, AnonymousEvidence, FdFacts, LiveMount, Rebuild, Resolution};
pub use table::{Difference, MountTable};
