//! Which of the interfaces crcli builds on the running kernel has, probed once per process (like
//! CRIU's kerndat).
//!
//! Each probe makes the cheapest call whose answer differs between a kernel that has the
//! feature and one that does not (UAPI.md, "Feature probes"); an answer that proves nothing
//! counts as "absent", so there are no false positives. [`Features::current`] probes on first
//! use and caches the result for the life of the process.
//!
//! ```
//! use crcli_sys::features::{Feature, Features};
//! let f = Features::current();
//! println!("kernel {}", f.kernel_release());
//! for (feature, present) in f.iter() {
//!     if !present {
//!         println!("{} (Linux {}) missing: {}", feature.name(), feature.since(), feature.loss());
//!     }
//! }
//! ```

use std::fmt;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use rustix::fs::{AtFlags, CWD};
use rustix::io::Errno;

use crate::listmount::{listmount, ListmountFlags, LSMT_ROOT};
use crate::mount::{
    fsopen, mount_setattr, move_mount, open_tree, FsOpenFlags, MountAttr, MountSetattrFlags,
    MoveMountFlags, OpenTreeFlags,
};
use crate::nsfs::ns_get_mntns_id;
use crate::pidfd::{pidfd_getfd, pidfd_open, PidfdFlags};
use crate::statmount::{
    statmount, statmount_raw, MntIdReq, StatmountMask, MNT_ID_REQ_SIZE_VER1, STATMOUNT_BY_FD,
};
use crate::statx::statx_mnt_id_unique;

/// One kernel interface crcli uses and can probe for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// `statmount(2)` by unique mount id.
    Statmount,
    /// `listmount(2)`.
    Listmount,
    /// `listmount(2)` with `LISTMOUNT_REVERSE`.
    ListmountReverse,
    /// `statmount(2)` with `STATMOUNT_BY_FD`.
    StatmountByFd,
    /// `open_tree(2)` with `OPEN_TREE_NAMESPACE`.
    OpenTreeNamespace,
    /// `mount_setattr(2)`.
    MountSetattr,
    /// The new mount API: `fsopen`/`fsconfig`/`fsmount`/`fspick`/`open_tree`/`move_mount`.
    NewMountApi,
    /// `move_mount(2)` with `MOVE_MOUNT_SET_GROUP`.
    MoveMountSetGroup,
    /// `pidfd_open(2)`.
    PidfdOpen,
    /// `pidfd_getfd(2)`.
    PidfdGetfd,
    /// `statx(2)` with `STATX_MNT_ID_UNIQUE`.
    StatxMntIdUnique,
    /// The nsfs ioctl `NS_GET_MNTNS_ID`.
    NsGetMntnsId,
}

impl Feature {
    /// Every feature, in a stable order.
    pub const ALL: [Feature; 12] = [
        Feature::Statmount,
        Feature::Listmount,
        Feature::ListmountReverse,
        Feature::StatmountByFd,
        Feature::OpenTreeNamespace,
        Feature::MountSetattr,
        Feature::NewMountApi,
        Feature::MoveMountSetGroup,
        Feature::PidfdOpen,
        Feature::PidfdGetfd,
        Feature::StatxMntIdUnique,
        Feature::NsGetMntnsId,
    ];

    /// A stable, lower-case name (recorded in images, printed by `crcli check`).
    pub fn name(self) -> &'static str {
        match self {
            Feature::Statmount => "statmount",
            Feature::Listmount => "listmount",
            Feature::ListmountReverse => "listmount_reverse",
            Feature::StatmountByFd => "statmount_by_fd",
            Feature::OpenTreeNamespace => "open_tree_namespace",
            Feature::MountSetattr => "mount_setattr",
            Feature::NewMountApi => "new_mount_api",
            Feature::MoveMountSetGroup => "move_mount_set_group",
            Feature::PidfdOpen => "pidfd_open",
            Feature::PidfdGetfd => "pidfd_getfd",
            Feature::StatxMntIdUnique => "statx_mnt_id_unique",
            Feature::NsGetMntnsId => "ns_get_mntns_id",
        }
    }

    /// The feature with this [`Feature::name`], if any.
    pub fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The mainline kernel version that added it.
    pub fn since(self) -> &'static str {
        match self {
            Feature::Statmount | Feature::Listmount | Feature::StatxMntIdUnique => "6.8",
            Feature::ListmountReverse | Feature::NsGetMntnsId => "6.11",
            Feature::StatmountByFd | Feature::OpenTreeNamespace => "7.0",
            Feature::MountSetattr => "5.12",
            Feature::NewMountApi => "5.2",
            Feature::MoveMountSetGroup => "5.15",
            Feature::PidfdOpen => "5.3",
            Feature::PidfdGetfd => "5.6",
        }
    }

    /// One line: what crcli loses on a kernel without it.
    pub fn loss(self) -> &'static str {
        match self {
            Feature::Statmount => {
                "mounts are known only from /proc/PID/mountinfo: no unique mount ids, options and sources are escaped text"
            }
            Feature::Listmount => {
                "the mount table is read from /proc/PID/mountinfo only, which is slower and racy on big tables"
            }
            Feature::ListmountReverse => {
                "mount tables are listed forward only (crcli reverses them itself)"
            }
            Feature::StatmountByFd => {
                "files on unmounted or anonymous mounts cannot be dumped: the mount of such an fd cannot be identified"
            }
            Feature::OpenTreeNamespace => {
                "restoring a mount namespace copies mounts one by one instead of in one call"
            }
            Feature::MountSetattr => {
                "mount attributes (ro, nosuid, nodev, noexec, atime, idmaps) cannot be restored on detached mounts"
            }
            Feature::NewMountApi => {
                "mounts cannot be rebuilt without temporary mountpoints: no unmounted or anonymous mounts, no lost tmpfs"
            }
            Feature::MoveMountSetGroup => {
                "mount sharing groups (shared/slave propagation) cannot be restored exactly"
            }
            Feature::PidfdOpen => {
                "processes are referred to by PID only, which can be reused while crcli works"
            }
            Feature::PidfdGetfd => {
                "crcli cannot take its own copy of a process's fds and must reopen files by path"
            }
            Feature::StatxMntIdUnique => {
                "fds are matched to mounts by the reusable old mount id, which can be ambiguous"
            }
            Feature::NsGetMntnsId => {
                "mount namespaces cannot be named by id: listmount/statmount of another namespace is impossible"
            }
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of probing the running kernel: which [`Feature`]s it has, and its release string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    kernel_release: String,
    present: [bool; Feature::ALL.len()],
    statmount_supported_mask: Option<StatmountMask>,
}

static CURRENT: OnceLock<Features> = OnceLock::new();

impl Features {
    /// Probes the running kernel on the first call in this process and returns the cached
    /// result from then on (the same as [`Features::current`]).
    pub fn probe() -> &'static Features {
        CURRENT.get_or_init(Features::probe_now)
    }

    /// The features of the running kernel, probed once per process.
    pub fn current() -> &'static Features {
        Features::probe()
    }

    fn probe_now() -> Features {
        let mut present = [false; Feature::ALL.len()];
        for f in Feature::ALL {
            present[f as usize] = probe_one(f);
        }
        let statmount_supported_mask = if present[Feature::Statmount as usize] {
            probe_supported_mask()
        } else {
            None
        };
        Features {
            kernel_release: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            present,
            statmount_supported_mask,
        }
    }

    /// Whether the kernel has `feature`.
    pub fn has(&self, feature: Feature) -> bool {
        self.present[feature as usize]
    }

    /// Every feature with whether it is present, in [`Feature::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Feature, bool)> + '_ {
        Feature::ALL.into_iter().map(|f| (f, self.has(f)))
    }

    /// The kernel release (`uname -r`).
    pub fn kernel_release(&self) -> &str {
        &self.kernel_release
    }

    /// The `STATMOUNT_*` bits this kernel can fill, from statmount's `STATMOUNT_SUPPORTED_MASK`
    /// (Linux 6.15) on the root mount; `None` when the kernel cannot tell.
    pub fn statmount_supported_mask(&self) -> Option<StatmountMask> {
        self.statmount_supported_mask
    }
}

fn probe_one(feature: Feature) -> bool {
    match feature {
        Feature::Statmount => {
            // A bogus id: a kernel with statmount says ENOENT (or EINVAL), one without ENOSYS.
            let mut buf = [0u8; 1024];
            let req = MntIdReq::new(1, 0, 0);
            matches!(
                statmount_raw(&req, &mut buf, 0),
                Ok(()) | Err(Errno::NOENT) | Err(Errno::INVAL)
            )
        }
        Feature::Listmount => {
            let mut ids = [0u64; 1];
            listmount(LSMT_ROOT, None, 0, ListmountFlags::empty(), &mut ids).is_ok()
        }
        Feature::ListmountReverse => {
            let mut ids = [0u64; 1];
            listmount(LSMT_ROOT, None, 0, ListmountFlags::REVERSE, &mut ids).is_ok()
        }
        Feature::StatmountByFd => {
            // An fd that cannot be open: EBADF from a kernel that knows the flag, EINVAL from
            // one that does not.
            let mut buf = [0u8; 1024];
            let req = MntIdReq {
                size: MNT_ID_REQ_SIZE_VER1,
                fd: u32::MAX,
                mnt_id: 0,
                param: 0,
                mnt_ns_id: 0,
            };
            statmount_raw(&req, &mut buf, STATMOUNT_BY_FD) == Err(Errno::BADF)
        }
        Feature::OpenTreeNamespace => {
            // EINVAL: unknown flag. EPERM: known, but this process lacks CAP_SYS_ADMIN.
            match open_tree(CWD, "/", OpenTreeFlags::NAMESPACE | OpenTreeFlags::CLOEXEC) {
                Ok(_ns_fd) => true,
                Err(e) => e == Errno::PERM,
            }
        }
        Feature::MountSetattr => {
            // An unknown flag bit: EINVAL from a kernel with the call, ENOSYS without.
            mount_setattr(
                CWD,
                "/",
                MountSetattrFlags::from_bits_retain(0x8000_0000),
                &MountAttr::default(),
            ) == Err(Errno::INVAL)
        }
        Feature::NewMountApi => match fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC) {
            Ok(_fs_fd) => true,
            Err(e) => e == Errno::PERM,
        },
        Feature::MoveMountSetGroup => {
            // A path that cannot exist: ENOENT once the flag has been accepted, EINVAL if not.
            let missing = "/proc/self/fd/-1/crcli-probe";
            move_mount(
                CWD,
                missing,
                CWD,
                missing,
                MoveMountFlags::MOVE_MOUNT_SET_GROUP,
            ) == Err(Errno::NOENT)
        }
        Feature::PidfdOpen => pidfd_open(rustix::process::getpid(), PidfdFlags::empty()).is_ok(),
        Feature::PidfdGetfd => match pidfd_open(rustix::process::getpid(), PidfdFlags::empty()) {
            Ok(pidfd) => pidfd_getfd(&pidfd, pidfd.as_raw_fd()).is_ok(),
            Err(_) => false,
        },
        Feature::StatxMntIdUnique => {
            matches!(statx_mnt_id_unique(CWD, "/", AtFlags::empty()), Ok(Some(_)))
        }
        Feature::NsGetMntnsId => match std::fs::File::open("/proc/self/ns/mnt") {
            Ok(ns) => ns_get_mntns_id(&ns).is_ok(),
            Err(_) => false,
        },
    }
}

fn probe_supported_mask() -> Option<StatmountMask> {
    let root = statx_mnt_id_unique(CWD, "/", AtFlags::empty()).ok()??;
    statmount(root, None, StatmountMask::SUPPORTED_MASK)
        .ok()?
        .supported_mask
}
