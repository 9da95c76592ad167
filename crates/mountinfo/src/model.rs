//! The mount model: one [`Mount`] per mount, with what mountinfo and statmount tell about it,
//! decoded into plain Rust types.
//!
//! Fields only one source knows are `Option`s: the 64-bit unique ids and the namespace id come
//! from statmount (or from the namespace fd), the superblock magic from statmount, unknown
//! optional tags from mountinfo. [`Origin`] says which source(s) a mount was built from.
//!
//! Conversions from mountinfo normalise exactly what the two sources write differently, so that
//! a table built either way compares equal:
//! - superblock options: mountinfo's leading `ro`/`rw`, `sync`, `dirsync`, `lazytime` become
//!   [`SbFlags`]; the rest are [`Mount::fs_options`] (statmount's `mnt_opts`);
//! - per-mount options become [`MountAttrs`] (the `MOUNT_ATTR_*` values, so they can be given to
//!   `mount_setattr` as they are); the atime mode is always made explicit in [`Mount::atime`];
//! - propagation: `propagate_from` is kept only when it differs from the master, as mountinfo
//!   prints it.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::parse::{MountInfoEntry, OptionalField};

/// A device number `major:minor`, as in mountinfo's third field and statmount's `sb_dev_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevId {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DevId {
    /// Splits a `dev_t` (as in `st_dev`) with the glibc encoding.
    pub fn from_dev(dev: u64) -> DevId {
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        DevId {
            major: major as u32,
            minor: minor as u32,
        }
    }
}

impl fmt::Display for DevId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

bitflags::bitflags! {
    /// Per-mount attributes, with the values of the kernel's `MOUNT_ATTR_*` (so they can be
    /// given to `mount_setattr`/`fsmount` as they are). The atime mode is in [`Atime`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MountAttrs: u64 {
        /// `MOUNT_ATTR_RDONLY` (mountinfo `ro`).
        const RDONLY = 0x1;
        /// `MOUNT_ATTR_NOSUID`.
        const NOSUID = 0x2;
        /// `MOUNT_ATTR_NODEV`.
        const NODEV = 0x4;
        /// `MOUNT_ATTR_NOEXEC`.
        const NOEXEC = 0x8;
        /// `MOUNT_ATTR_NODIRATIME`.
        const NODIRATIME = 0x80;
        /// `MOUNT_ATTR_IDMAP` (mountinfo `idmapped`).
        const IDMAP = 0x10_0000;
        /// `MOUNT_ATTR_NOSYMFOLLOW`.
        const NOSYMFOLLOW = 0x20_0000;
    }
}

/// How a mount updates access times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Atime {
    /// `relatime` (`MOUNT_ATTR_RELATIME`, 0).
    Relatime,
    /// `noatime` (`MOUNT_ATTR_NOATIME`).
    NoAtime,
    /// `strictatime` (`MOUNT_ATTR_STRICTATIME`): neither of the others.
    StrictAtime,
}

impl Atime {
    /// The `MOUNT_ATTR_*` value of this mode (inside `MOUNT_ATTR__ATIME`).
    pub fn mount_attr(self) -> u64 {
        match self {
            Atime::Relatime => 0x0,
            Atime::NoAtime => 0x10,
            Atime::StrictAtime => 0x20,
        }
    }
}

bitflags::bitflags! {
    /// Superblock flags both sources report: statmount's `sb_flags` (the kernel's `SB_*`
    /// values) and the `ro`/`sync`/`dirsync`/`lazytime` of mountinfo's super options.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct SbFlags: u32 {
        /// `SB_RDONLY`.
        const RDONLY = 1;
        /// `SB_SYNCHRONOUS` (`sync`).
        const SYNCHRONOUS = 1 << 4;
        /// `SB_DIRSYNC` (`dirsync`).
        const DIRSYNC = 1 << 7;
        /// `SB_LAZYTIME` (`lazytime`).
        const LAZYTIME = 1 << 25;
    }
}

/// Mount propagation, as mountinfo's optional fields and statmount's `mnt_propagation`,
/// `mnt_peer_group`, `mnt_master` and `propagate_from` describe it. A mount with neither
/// `shared` nor `master` is private.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Propagation {
    /// Peer group id when the mount is shared.
    pub shared: Option<u64>,
    /// Peer group id of the master when the mount is a slave.
    pub master: Option<u64>,
    /// Dominating peer group seen from the reader's root, when it differs from `master`.
    pub propagate_from: Option<u64>,
    /// The mount is unbindable.
    pub unbindable: bool,
}

impl Propagation {
    /// Neither shared nor slave.
    pub fn is_private(&self) -> bool {
        self.shared.is_none() && self.master.is_none()
    }
}

/// Which sources a [`Mount`] or a [`crate::MountTable`] was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// `/proc/PID/mountinfo` only.
    MountInfo,
    /// listmount + statmount only.
    Statmount,
    /// Both, merged.
    Both,
}

/// One mount of a mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// 64-bit unique mount id (statmount, listmount, `statx(STATX_MNT_ID_UNIQUE)`); `None`
    /// when built from mountinfo alone.
    pub id: Option<u64>,
    /// The short, reusable mount id (mountinfo's first field, fdinfo's `mnt_id`).
    pub old_id: u32,
    /// Unique id of the parent; `None` when built from mountinfo alone.
    pub parent_id: Option<u64>,
    /// Old id of the parent (the namespace root's parent may be itself or absent).
    pub parent_old_id: u32,
    /// The superblock's device number.
    pub dev: DevId,
    /// The superblock's magic (`statfs` `f_type`); statmount only.
    pub sb_magic: Option<u64>,
    /// The mount's root inside its file system (`/` unless a bind of a sub-tree).
    pub root: PathBuf,
    /// Where it is mounted, relative to the reading process's root.
    pub mount_point: PathBuf,
    /// File system type, e.g. `ext4`, `tmpfs`, `fuse`.
    pub fs_type: String,
    /// File system subtype, e.g. `sshfs` for `fuse.sshfs`.
    pub fs_subtype: Option<String>,
    /// Mount source (`/dev/vda`, `tmpfs`, ...). `None` when the kernel reports none or an
    /// empty one: statmount then omits it, mountinfo writes the literal `none` or an empty
    /// field (a source really named `none` is indistinguishable there and also reads as
    /// `None`).
    pub source: Option<OsString>,
    /// Superblock flags.
    pub sb_flags: SbFlags,
    /// File system specific superblock options (`size=…`, `mode=…`), in the kernel's order.
    pub fs_options: Vec<OsString>,
    /// Per-mount attributes.
    pub attrs: MountAttrs,
    /// Per-mount atime mode.
    pub atime: Atime,
    /// Per-mount options neither source maps to an attribute (future kernels), mountinfo only.
    pub other_mount_options: Vec<String>,
    /// Propagation.
    pub propagation: Propagation,
    /// Optional mountinfo tags this crate does not know, kept verbatim in order.
    pub unknown_tags: Vec<String>,
    /// Id of the mount namespace the mount is in, when known.
    pub ns_id: Option<u64>,
    /// Where this description came from.
    pub origin: Origin,
}

const SB_OPTION_FLAGS: [(&str, SbFlags); 3] = [
    ("sync", SbFlags::SYNCHRONOUS),
    ("dirsync", SbFlags::DIRSYNC),
    ("lazytime", SbFlags::LAZYTIME),
];

impl Mount {
    /// Builds the model of one mountinfo line. `ns_id` is the namespace the file was read
    /// from, when known.
    pub fn from_mountinfo(e: &MountInfoEntry, ns_id: Option<u64>) -> Mount {
        let mut attrs = MountAttrs::empty();
        let mut atime = Atime::StrictAtime;
        let mut other_mount_options = Vec::new();
        for o in &e.mount_options {
            match o.as_str() {
                "rw" => {}
                "ro" => attrs |= MountAttrs::RDONLY,
                "nosuid" => attrs |= MountAttrs::NOSUID,
                "nodev" => attrs |= MountAttrs::NODEV,
                "noexec" => attrs |= MountAttrs::NOEXEC,
                "noatime" => atime = Atime::NoAtime,
                "relatime" => atime = Atime::Relatime,
                "nodiratime" => attrs |= MountAttrs::NODIRATIME,
                "nosymfollow" => attrs |= MountAttrs::NOSYMFOLLOW,
                "idmapped" => attrs |= MountAttrs::IDMAP,
                other => other_mount_options.push(other.to_owned()),
            }
        }
        let mut propagation = Propagation::default();
        let mut unknown_tags = Vec::new();
        for f in &e.optional {
            match f {
                OptionalField::Shared(n) => propagation.shared = Some(*n),
                OptionalField::Master(n) => propagation.master = Some(*n),
                OptionalField::PropagateFrom(n) => propagation.propagate_from = Some(*n),
                OptionalField::Unbindable => propagation.unbindable = true,
                OptionalField::Unknown(t) => unknown_tags.push(t.clone()),
            }
        }
        let mut sb_flags = SbFlags::empty();
        let mut opts = e.super_options.iter().peekable();
        match opts.peek().and_then(|o| o.to_str()) {
            Some("ro") => {
                sb_flags |= SbFlags::RDONLY;
                opts.next();
            }
            Some("rw") => {
                opts.next();
            }
            _ => {}
        }
        while let Some(flag) = opts.peek().and_then(|o| {
            SB_OPTION_FLAGS
                .iter()
                .find(|(name, _)| o.to_str() == Some(name))
                .map(|(_, f)| *f)
        }) {
            sb_flags |= flag;
            opts.next();
        }
        let source = if e.source == "none" || e.source.is_empty() {
            None
        } else {
            Some(e.source.clone())
        };
        Mount {
            id: None,
            old_id: e.mount_id,
            parent_id: None,
            parent_old_id: e.parent_id,
            dev: e.dev,
            sb_magic: None,
            root: e.root.clone(),
            mount_point: e.mount_point.clone(),
            fs_type: e.fs_type.clone(),
            fs_subtype: e.fs_subtype.clone(),
            source,
            sb_flags,
            fs_options: opts.cloned().collect(),
            attrs,
            atime,
            other_mount_options,
            propagation,
            unknown_tags,
            ns_id,
            origin: Origin::MountInfo,
        }
    }
}
