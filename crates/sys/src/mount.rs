//! The new mount API: `open_tree`, `move_mount`, `fsopen`/`fsconfig`/`fsmount`/`fspick`,
//! `mount_setattr`, and `umount2`, with the flag types crcli needs (including Linux 7.0's
//! `OPEN_TREE_NAMESPACE`).
//!
//! Where rustix has the call with the right semantics it is used (and its flag types are
//! re-exported); `mount_setattr` is a raw syscall here. Every function returns
//! `rustix::io::Errno` on failure.
//!
//! ```no_run
//! use crcli_sys::mount::*;
//! use rustix::fs::CWD;
//!
//! // A read-only, detached clone of /etc; files opened through it stay on that clone.
//! let tree = open_tree(CWD, "/etc", OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC)?;
//! mount_setattr(&tree, "", MountSetattrFlags::AT_EMPTY_PATH,
//!               &MountAttr { attr_set: MountAttrFlags::RDONLY, ..MountAttr::default() })?;
//! # Ok::<(), rustix::io::Errno>(())
//! ```

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use bitflags::bitflags;
use rustix::io::Errno;
use rustix::path::Arg;

use crate::raw::{syscall_result, SYS_MOUNT_SETATTR};

pub use rustix::mount::{
    fsconfig_create, fsconfig_create_exclusive, fsconfig_reconfigure, fsconfig_set_binary,
    fsconfig_set_fd, fsconfig_set_flag, fsconfig_set_path, fsconfig_set_path_empty,
    fsconfig_set_string, FsMountFlags, FsOpenFlags, FsPickFlags, MoveMountFlags, UnmountFlags,
};

bitflags! {
    /// `MOUNT_ATTR_*`: per-mount attributes, as set by [`mount_setattr`] and [`fsmount`] and
    /// reported by statmount (`mnt_attr`). Unknown bits are kept.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct MountAttrFlags: u64 {
        /// `MOUNT_ATTR_RDONLY`: read-only mount.
        const RDONLY = 0x0000_0001;
        /// `MOUNT_ATTR_NOSUID`: ignore suid and sgid bits.
        const NOSUID = 0x0000_0002;
        /// `MOUNT_ATTR_NODEV`: no access to device special files.
        const NODEV = 0x0000_0004;
        /// `MOUNT_ATTR_NOEXEC`: no program execution.
        const NOEXEC = 0x0000_0008;
        /// `MOUNT_ATTR__ATIME`: the mask of the atime mode (relatime/noatime/strictatime); put
        /// it in `attr_clr` when setting one of them.
        const _ATIME = 0x0000_0070;
        /// `MOUNT_ATTR_RELATIME` (the value 0 inside `_ATIME`: it is "no atime bits set").
        const RELATIME = 0x0000_0000;
        /// `MOUNT_ATTR_NOATIME`: do not update access times.
        const NOATIME = 0x0000_0010;
        /// `MOUNT_ATTR_STRICTATIME`: always update access times.
        const STRICTATIME = 0x0000_0020;
        /// `MOUNT_ATTR_NODIRATIME`: do not update directory access times.
        const NODIRATIME = 0x0000_0080;
        /// `MOUNT_ATTR_IDMAP`: idmapped mount, with the user namespace in `userns_fd` (Linux 5.12).
        const IDMAP = 0x0010_0000;
        /// `MOUNT_ATTR_NOSYMFOLLOW`: do not follow symlinks (Linux 5.14).
        const NOSYMFOLLOW = 0x0020_0000;
        /// Bits a future kernel may define.
        const _ = !0;
    }
}

bitflags! {
    /// Mount propagation type (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE`), as
    /// reported by statmount (`mnt_propagation`) and set through [`MountAttr::propagation`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct MountPropagation: u64 {
        /// `MS_UNBINDABLE`: private, and cannot be bind-mounted.
        const UNBINDABLE = 1 << 17;
        /// `MS_PRIVATE`: no propagation.
        const PRIVATE = 1 << 18;
        /// `MS_SLAVE`: receives propagation from its master.
        const SLAVE = 1 << 19;
        /// `MS_SHARED`: member of a peer group.
        const SHARED = 1 << 20;
        /// Other bits the kernel may report.
        const _ = !0;
    }
}

bitflags! {
    /// Flags of [`open_tree`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct OpenTreeFlags: u32 {
        /// `OPEN_TREE_CLONE`: return a detached clone of the mount (a new anonymous mount)
        /// instead of an fd on the existing one.
        const CLONE = 1;
        /// `OPEN_TREE_NAMESPACE` (Linux 7.0): return an fd of a *new mount namespace* whose root
        /// is a copy of the mount (tree); needs `CAP_SYS_ADMIN`.
        const NAMESPACE = 2;
        /// `OPEN_TREE_CLOEXEC` (= `O_CLOEXEC`).
        const CLOEXEC = libc::O_CLOEXEC as u32;
        /// `AT_EMPTY_PATH`: operate on `dirfd` itself when the path is empty.
        const AT_EMPTY_PATH = libc::AT_EMPTY_PATH as u32;
        /// `AT_NO_AUTOMOUNT`: do not trigger automounts.
        const AT_NO_AUTOMOUNT = libc::AT_NO_AUTOMOUNT as u32;
        /// `AT_RECURSIVE`: with CLONE/NAMESPACE, take the whole subtree of mounts.
        const AT_RECURSIVE = 0x8000;
        /// `AT_SYMLINK_NOFOLLOW`: do not follow a final symlink.
        const AT_SYMLINK_NOFOLLOW = libc::AT_SYMLINK_NOFOLLOW as u32;
        /// Bits a future kernel may define.
        const _ = !0;
    }
}

bitflags! {
    /// Flags of [`mount_setattr`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct MountSetattrFlags: u32 {
        /// `AT_EMPTY_PATH`: change the mount `dirfd` is on (e.g. a mount fd from open_tree).
        const AT_EMPTY_PATH = libc::AT_EMPTY_PATH as u32;
        /// `AT_RECURSIVE`: change every mount of the subtree.
        const AT_RECURSIVE = 0x8000;
        /// `AT_SYMLINK_NOFOLLOW`: do not follow a final symlink.
        const AT_SYMLINK_NOFOLLOW = libc::AT_SYMLINK_NOFOLLOW as u32;
        /// `AT_NO_AUTOMOUNT`: do not trigger automounts.
        const AT_NO_AUTOMOUNT = libc::AT_NO_AUTOMOUNT as u32;
        /// Bits a future kernel may define.
        const _ = !0;
    }
}

/// `struct mount_attr` for [`mount_setattr`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MountAttr<'fd> {
    /// Attributes to set.
    pub attr_set: MountAttrFlags,
    /// Attributes to clear (for an atime mode: put [`MountAttrFlags::_ATIME`] here).
    pub attr_clr: MountAttrFlags,
    /// New propagation type (exactly one of SHARED/SLAVE/PRIVATE/UNBINDABLE), or empty to leave
    /// it unchanged.
    pub propagation: MountPropagation,
    /// The user namespace for [`MountAttrFlags::IDMAP`].
    pub userns_fd: Option<BorrowedFd<'fd>>,
}

/// The kernel layout of `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0` = 32 bytes).
#[repr(C)]
struct RawMountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(dirfd, path, flags, &attr, sizeof(attr))`: change the attributes and/or
/// propagation of a mount (or, with `AT_RECURSIVE`, a mount tree). Linux 5.12.
///
/// <https://man7.org/linux/man-pages/man2/mount_setattr.2.html>. Errors: `EINVAL` bad flags or
/// attribute combination (e.g. two atime modes, an idmap on a mount already attached and in
/// use), `EBUSY` making a mount read-only while a file on it is open for writing, `EPERM` not
/// permitted (locked attributes, no `CAP_SYS_ADMIN`), `EBADF` bad `dirfd` or `userns_fd`,
/// `ENOENT` path not found, `ENOSYS` kernel before 5.12.
pub fn mount_setattr<P: Arg>(
    dirfd: impl AsFd,
    path: P,
    flags: MountSetattrFlags,
    attr: &MountAttr<'_>,
) -> Result<(), Errno> {
    let raw = RawMountAttr {
        attr_set: attr.attr_set.bits(),
        attr_clr: attr.attr_clr.bits(),
        propagation: attr.propagation.bits(),
        userns_fd: attr.userns_fd.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let dirfd = dirfd.as_fd();
    path.into_with_c_str(|path| {
        // SAFETY: `path` is a NUL-terminated string and `raw` a fully initialised
        // `struct mount_attr` of exactly the size passed; both live until the call returns and
        // the kernel keeps no reference to them. `dirfd` is a valid fd borrowed for the call.
        let ret = unsafe {
            libc::syscall(
                SYS_MOUNT_SETATTR,
                dirfd.as_raw_fd(),
                path.as_ptr(),
                flags.bits() as libc::c_uint,
                &raw as *const RawMountAttr,
                std::mem::size_of::<RawMountAttr>(),
            )
        };
        syscall_result(ret).map(|_| ())
    })
}

/// `open_tree(dirfd, path, flags)`: an fd on a mount (`O_PATH`-like), a detached clone of it
/// (`CLONE`, optionally `AT_RECURSIVE`), or a new mount namespace (`NAMESPACE`, Linux 7.0).
/// Linux 5.2.
///
/// <https://man7.org/linux/man-pages/man2/open_tree.2.html>. Errors: `EINVAL` unknown flags
/// (e.g. `NAMESPACE` before 7.0), `AT_RECURSIVE` without `CLONE`/`NAMESPACE`, cloning a mount
/// that is unmounted or unbindable; `EPERM` cloning without `CAP_SYS_ADMIN`; `ENOENT` path not
/// found.
pub fn open_tree<P: Arg>(
    dirfd: impl AsFd,
    path: P,
    flags: OpenTreeFlags,
) -> Result<OwnedFd, Errno> {
    rustix::mount::open_tree(
        dirfd,
        path,
        rustix::mount::OpenTreeFlags::from_bits_retain(flags.bits()),
    )
}

/// `move_mount(from_dirfd, from_path, to_dirfd, to_path, flags)`: attach or move a mount, or
/// with `MOVE_MOUNT_SET_GROUP` (5.15) make `to` a peer of `from`'s sharing group. Linux 5.2.
///
/// <https://man7.org/linux/man-pages/man2/move_mount.2.html>. Use `MOVE_MOUNT_F_EMPTY_PATH`
/// to move the mount of `from_dirfd` itself (a mount fd from [`open_tree`] or [`fsmount`]).
/// Errors: `EINVAL` bad flags or a source that is not a mount (and, with `MOVE_MOUNT_SET_GROUP`,
/// `from` and `to` on different superblocks: seen on 6.18), `ENOENT` path not found, `ELOOP`
/// a move into its own subtree, `EPERM` no `CAP_SYS_ADMIN`.
pub fn move_mount<P: Arg, Q: Arg>(
    from_dirfd: impl AsFd,
    from_path: P,
    to_dirfd: impl AsFd,
    to_path: Q,
    flags: MoveMountFlags,
) -> Result<(), Errno> {
    rustix::mount::move_mount(from_dirfd, from_path, to_dirfd, to_path, flags)
}

/// `fsopen(fs_name, flags)`: a filesystem context for a new superblock of type `fs_name`.
/// Linux 5.2.
///
/// <https://man7.org/linux/man-pages/man2/fsopen.2.html>. Configure it with the `fsconfig_*`
/// functions (re-exported from rustix), then [`fsmount`]. Errors: `ENODEV` unknown filesystem
/// type, `EPERM` no `CAP_SYS_ADMIN`.
pub fn fsopen<P: Arg>(fs_name: P, flags: FsOpenFlags) -> Result<OwnedFd, Errno> {
    rustix::mount::fsopen(fs_name, flags)
}

/// `fsmount(fs_fd, flags, attr_flags)`: a detached mount of the superblock created in the
/// context `fs_fd` (after `fsconfig_create`). Linux 5.2.
///
/// <https://man7.org/linux/man-pages/man2/fsmount.2.html>. `attr_flags` takes the `MOUNT_ATTR_*`
/// bits (all of them fit the call's 32-bit argument). Errors: `EINVAL` the context is not in
/// the created state or bad flags, `EBUSY` the context was already used.
pub fn fsmount(
    fs_fd: impl AsFd,
    flags: FsMountFlags,
    attr_flags: MountAttrFlags,
) -> Result<OwnedFd, Errno> {
    let attr = u32::try_from(attr_flags.bits()).map_err(|_| Errno::INVAL)?;
    rustix::mount::fsmount(
        fs_fd,
        flags,
        rustix::mount::MountAttrFlags::from_bits_retain(attr),
    )
}

/// `fspick(dirfd, path, flags)`: a filesystem context for the superblock of an existing mount,
/// for reconfiguration. Linux 5.2.
///
/// <https://man7.org/linux/man-pages/man2/fspick.2.html>. Errors: `EINVAL` the path is not a
/// mount root (without `FSPICK_EMPTY_PATH`), `EPERM` no `CAP_SYS_ADMIN`.
pub fn fspick<P: Arg>(dirfd: impl AsFd, path: P, flags: FsPickFlags) -> Result<OwnedFd, Errno> {
    rustix::mount::fspick(dirfd, path, flags)
}

/// `umount2(target, flags)`: unmount; with `MNT_DETACH` the mount leaves the tree at once and
/// lives on, unmounted, as long as something (an open file, a cwd) uses it. Linux 2.1.116.
///
/// <https://man7.org/linux/man-pages/man2/umount2.2.html>. Errors: `EBUSY` in use (without
/// `MNT_DETACH`), `EINVAL` not a mount point or bad flags, `EPERM` no `CAP_SYS_ADMIN`.
pub fn umount2<P: Arg>(target: P, flags: UnmountFlags) -> Result<(), Errno> {
    rustix::mount::unmount(target, flags)
}
