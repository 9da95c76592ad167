//! Making the dumped tree's mount namespace again ([`crcli_image::MountNamespace`], issue #7)
//! with the new mount API, without touching crcli's own namespace.
//!
//! [`build_namespace`] runs in a crcli thread of its own, by one of two methods
//! ([`NsBuildMethod`], chosen by the kernel feature probe and named in a debug line):
//!
//! - **`OPEN_TREE_NAMESPACE`** (Linux 7.0): the mounts are made detached in crcli's namespace
//!   (step 1 below); `open_tree(root mount fd, "", OPEN_TREE_NAMESPACE | AT_EMPTY_PATH)` copies
//!   the dumped root mount alone (nothing attached to it yet) into a new namespace, on a copy of
//!   the one mount under crcli's root (the kernel's `open_new_namespace`); the thread `setns`es
//!   into it and attaches the rest there. None of crcli's other mounts is copied (on a container
//!   host with hundreds of mounts, that is the saving) and there is no `pivot_root`. Propagation
//!   is set only after that copy, inside the new namespace: the kernel's copy would keep peer
//!   groups, but would drop unbindable mounts. Not used when the root mount of crcli's
//!   namespace is shared: the new namespace's copy of it would be a peer of crcli's.
//! - **`unshare`** (the fallback): the thread moves into a new mount namespace
//!   (`unshare(CLONE_NEWNS)`, a copy of crcli's), makes every mount of it private (so nothing
//!   propagates back), attaches the root mount on a scratch directory of that copy, and at the
//!   end `pivot_root`s into it and detaches the copy.
//!
//! Either way:
//!
//! 1. makes every mount that needs crcli's own mounts or the user's paths, before anything is
//!    attached: `HostCopy` -> `open_tree(live mount point/sub-root, OPEN_TREE_CLONE)`;
//!    `External` -> a clone of the path the user mapped the key to (`--external mnt[KEY]:PATH`);
//!    `Fresh` -> `fsopen`/`fsconfig`/`fsmount`; `Content` -> a fresh tmpfs/ramfs filled with the
//!    dumped content through its mount fd (as for lost superblocks);
//! 2. attaches each mount but the root, parents first and stacked mounts in mount order, with
//!    `move_mount` onto its parent's mount fd at the mount point relative to the parent's (so an
//!    overmount lands on the mount it covers whatever hides that mount's path); `NsBind` mounts
//!    are clones of the earlier mount they bind, made right before they are attached;
//! 3. sets each mount's attributes (`mount_setattr`: ro, nosuid, nodev, noexec, atime mode,
//!    nodiratime, nosymfollow) once everything under it is attached, then propagation, peer
//!    groups before their slaves: one member of each group (the one with the widest root:
//!    `MOVE_MOUNT_SET_GROUP` wants the joining mount's root at or below the root it joins
//!    through) is made shared and the others join it; a group that is also a slave first joins
//!    its master's group and turns slave, then shared, and its peers join it and so get both; a
//!    plain slave joins its master's group, then turns slave; unbindable last.
//!
//! What is left is a namespace holding exactly the dumped mounts (and, under its root, the one
//! mount every namespace has there), reachable only through the returned nsfs fd (and whatever
//! joins it): closing the fd with nobody in it destroys it and every mount in it. On any
//! failure the thread's namespace, or the detached mounts, are dropped the same way: nothing is
//! left in crcli's namespace or in the filesystem.
//!
//! The tree restore (`crate::tree`) builds the namespace after the whole image was checked,
//! moves crcli's main thread into it (`Entered`) to open the tree's files and make its root
//! process (which is born in it), and moves the thread back right after.
//!
//! `proc` and `mqueue` instances are first made by crcli (the restore's own steps read crcli's
//! pids from `/proc` while the members are made; a namespace without `proc` at `/proc` is
//! refused); once every member exists, `own_procs` replaces them with instances of the tree's
//! new PID and IPC namespaces, and makes the mounts on them again on the new instances (runc's
//! and podman's read-only binds of `/proc/sys` and co., `/dev/null` or a read-only tmpfs over
//! masked paths). Limits: two mounts stacked at one mount point on such an instance are refused;
//! the propagation of mounts on them is not restored (they are private).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crcli_image::mountns::{MS_SHARED, MS_SLAVE, MS_UNBINDABLE};
use crcli_image::{Image, MountId, MountNamespace, NsMount, NsMountSource};
use crcli_sys::mount::{
    fsmount, fsopen, mount_setattr, move_mount, open_tree, umount2, FsMountFlags, FsOpenFlags,
    MountAttr, MountAttrFlags, MountPropagation, MountSetattrFlags, MoveMountFlags, OpenTreeFlags,
    UnmountFlags,
};

use crate::error::RestoreError;

/// Attributes re-applied on every mount (the atime mode included).
const ATTRS: MountAttrFlags = MountAttrFlags::RDONLY
    .union(MountAttrFlags::NOSUID)
    .union(MountAttrFlags::NODEV)
    .union(MountAttrFlags::NOEXEC)
    .union(MountAttrFlags::_ATIME)
    .union(MountAttrFlags::NODIRATIME)
    .union(MountAttrFlags::NOSYMFOLLOW);

/// Filesystems made fresh.
const FRESH: [&str; 5] = ["proc", "sysfs", "devpts", "mqueue", "cgroup2"];

/// Directories of crcli's namespace copy the new root may be attached on while it is built
/// (in the thread's private copy only: crcli's namespace never sees it).
const SCRATCH: [&str; 4] = ["/mnt", "/tmp", "/var", "/dev"];

/// A `--external mnt[KEY]:PATH` of `crcli restore`: the mount dumped under `key` is a bind of
/// `path` (in crcli's namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPath {
    /// The key given at dump (`--external mnt[MOUNTPOINT]:KEY`).
    pub key: String,
    /// The path to bind.
    pub path: PathBuf,
}

impl std::str::FromStr for ExternalPath {
    type Err = String;

    /// Parses `mnt[KEY]:PATH` (CRIU's form).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not of the form mnt[KEY]:PATH");
        let rest = s.strip_prefix("mnt[").ok_or_else(bad)?;
        let (key, path) = rest.split_once("]:").ok_or_else(bad)?;
        if key.is_empty() || !path.starts_with('/') {
            return Err(bad());
        }
        Ok(ExternalPath {
            key: key.to_owned(),
            path: PathBuf::from(path),
        })
    }
}

fn unsupported(m: &NsMount, why: &str) -> RestoreError {
    RestoreError::Unsupported(format!(
        "mount {} at {} ({}) of the mount namespace: {why}",
        m.id, m.mountpoint, m.fs_type
    ))
}

fn errno(m: &NsMount, step: &str) -> impl FnOnce(rustix::io::Errno) -> RestoreError {
    let step = format!(
        "{step} for mount {} at {} ({})",
        m.id, m.mountpoint, m.fs_type
    );
    RestoreError::errno(step)
}

fn join(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// Checks, before anything is made, that every mount of `ns` can be made here: each external
/// key is mapped to an existing path, each host copy's live mount point exists, each fresh
/// filesystem is one crcli makes.
pub fn check(ns: &MountNamespace, externals: &[ExternalPath]) -> Result<(), RestoreError> {
    for m in &ns.mounts {
        match &m.source_kind {
            NsMountSource::External { key } => {
                let Some(e) = externals.iter().find(|e| &e.key == key) else {
                    return Err(unsupported(
                        m,
                        &format!("a bind from outside named {key:?} at dump; map it with --external mnt[{key}]:PATH"),
                    ));
                };
                if std::fs::symlink_metadata(&e.path).is_err() {
                    return Err(unsupported(
                        m,
                        &format!("--external mnt[{key}]:{}: no such path", e.path.display()),
                    ));
                }
            }
            NsMountSource::HostCopy {
                host_mountpoint,
                subroot,
            } => {
                let at = join(host_mountpoint.as_path(), subroot.as_path());
                if std::fs::symlink_metadata(&at).is_err() {
                    return Err(unsupported(
                        m,
                        &format!("a copy of crcli's mount at {host_mountpoint}, but {} does not exist here", at.display()),
                    ));
                }
            }
            NsMountSource::Fresh { .. } if !FRESH.contains(&m.fs_type.as_str()) => {
                return Err(unsupported(m, "crcli does not make this filesystem fresh"));
            }
            _ => {}
        }
        if m.attributes & MountAttrFlags::IDMAP.bits() != 0 {
            return Err(unsupported(m, "idmapped mounts cannot be made again yet"));
        }
    }
    Ok(())
}

/// How [`build_namespace`] makes the new namespace (the mounts in it are the same either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NsBuildMethod {
    /// Linux 7.0's `open_tree(OPEN_TREE_NAMESPACE)`: the dumped root mount, made detached,
    /// becomes the root of a new namespace (on a copy of the one mount under crcli's root, as
    /// for every namespace); the other mounts are attached in it. None of crcli's other mounts
    /// is copied, and there is nothing to `pivot_root` away.
    OpenTreeNamespace,
    /// The fallback for kernels before 7.0: `unshare(CLONE_NEWNS)` copies every mount of
    /// crcli's namespace; the tree is built on a scratch directory of the copy, `pivot_root`ed
    /// into, and the copy is detached.
    Unshare,
}

impl NsBuildMethod {
    /// The method [`build_namespace`] uses here: [`Self::OpenTreeNamespace`] when the kernel
    /// has it ([`crcli_sys::features::Feature::OpenTreeNamespace`]) and the root mount of
    /// crcli's namespace is not shared (the kernel copies that one mount under the new
    /// namespace's root, and a shared copy would stay a peer of crcli's: the fallback makes its
    /// copy private), else [`Self::Unshare`].
    pub fn current() -> NsBuildMethod {
        use crcli_sys::features::{Feature, Features};
        if !Features::current().has(Feature::OpenTreeNamespace) {
            return NsBuildMethod::Unshare;
        }
        if ns_root_shared() {
            tracing::debug!(
                "the root mount of crcli's namespace is shared: building mount namespaces with unshare"
            );
            return NsBuildMethod::Unshare;
        }
        NsBuildMethod::OpenTreeNamespace
    }

    /// A short name for logs and reports (`open_tree_namespace`, `unshare`).
    pub fn name(self) -> &'static str {
        match self {
            NsBuildMethod::OpenTreeNamespace => "open_tree_namespace",
            NsBuildMethod::Unshare => "unshare",
        }
    }
}

/// Whether the root mount of crcli's mount namespace (the bottom one, which `listmount` lists
/// first) is shared; an error counts as shared.
fn ns_root_shared() -> bool {
    use crcli_sys::listmount::{listmount, ListmountFlags, LSMT_ROOT};
    use crcli_sys::statmount::{statmount, StatmountMask};
    let mut first = [0u64; 1];
    match listmount(LSMT_ROOT, None, 0, ListmountFlags::empty(), &mut first) {
        Ok(1) => statmount(first[0], None, StatmountMask::MNT_BASIC)
            .ok()
            .and_then(|s| s.mnt)
            .is_none_or(|m| m.propagation.contains(MountPropagation::SHARED)),
        _ => true,
    }
}

/// Makes the mount namespace of the image in directory `dir` (see the module documentation)
/// and returns its nsfs fd (`/proc/PID/ns/mnt` of a process in it), for `setns`; with
/// [`NsBuildMethod::current`].
pub fn build_namespace(dir: &Path, externals: &[ExternalPath]) -> Result<OwnedFd, RestoreError> {
    build_namespace_with(dir, externals, NsBuildMethod::current())
}

/// [`build_namespace`] with the given method (benchmarks and tests compare them); asking for
/// [`NsBuildMethod::OpenTreeNamespace`] on a kernel without it fails with the kernel's error.
pub fn build_namespace_with(
    dir: &Path,
    externals: &[ExternalPath],
    method: NsBuildMethod,
) -> Result<OwnedFd, RestoreError> {
    let image = Image::open(dir)?;
    let ns =
        image.inventory().tree.mount_ns.as_ref().ok_or_else(|| {
            RestoreError::Invalid("the image holds no mount namespace".to_owned())
        })?;
    check(ns, externals)?;
    build_with(&image, ns, externals, method)
}

/// [`build_namespace`] for an opened, validated image.
pub(crate) fn build(
    image: &Image,
    ns: &MountNamespace,
    externals: &[ExternalPath],
) -> Result<OwnedFd, RestoreError> {
    build_with(image, ns, externals, NsBuildMethod::current())
}

fn build_with(
    image: &Image,
    ns: &MountNamespace,
    externals: &[ExternalPath],
    method: NsBuildMethod,
) -> Result<OwnedFd, RestoreError> {
    std::thread::scope(|s| {
        s.spawn(|| build_in_this_thread(image, ns, externals, method))
            .join()
            .unwrap_or_else(|_| {
                Err(RestoreError::Unsupported(
                    "building the mount namespace panicked".to_owned(),
                ))
            })
    })
}

/// `unshare(CLONE_NEWNS)` for the calling thread, every mount of the copy made private; the
/// new namespace's fd.
fn unshare_private() -> Result<OwnedFd, RestoreError> {
    crcli_sys::mntns::unshare_mount_ns().map_err(RestoreError::errno(
        "unshare(CLONE_NEWNS) for the new mount namespace",
    ))?;
    let ns_fd = rustix::fs::open(
        "/proc/thread-self/ns/mnt",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(RestoreError::errno("open the new mount namespace"))?;
    mount_setattr(
        rustix::fs::CWD,
        "/",
        MountSetattrFlags::AT_RECURSIVE,
        &MountAttr {
            propagation: MountPropagation::PRIVATE,
            ..MountAttr::default()
        },
    )
    .map_err(RestoreError::errno(
        "make the copy of crcli's mounts private",
    ))?;
    Ok(ns_fd)
}

fn build_in_this_thread(
    image: &Image,
    ns: &MountNamespace,
    externals: &[ExternalPath],
    method: NsBuildMethod,
) -> Result<OwnedFd, RestoreError> {
    // With OPEN_TREE_NAMESPACE the mounts are made detached, in crcli's namespace, and the
    // namespace once the root mount is ready.
    let mut ns_fd = match method {
        NsBuildMethod::Unshare => Some(unshare_private()?),
        NsBuildMethod::OpenTreeNamespace => None,
    };

    let clone = OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC;
    // 1. Everything that needs crcli's tree or is made fresh.
    let mut fds: Vec<Option<OwnedFd>> = Vec::with_capacity(ns.mounts.len());
    for m in &ns.mounts {
        let fd = match &m.source_kind {
            NsMountSource::HostCopy {
                host_mountpoint,
                subroot,
            } => {
                let at = join(host_mountpoint.as_path(), subroot.as_path());
                Some(
                    open_tree(rustix::fs::CWD, &at, clone)
                        .map_err(errno(m, &format!("clone {}", at.display())))?,
                )
            }
            NsMountSource::External { key } => {
                let e = externals
                    .iter()
                    .find(|e| &e.key == key)
                    .ok_or_else(|| unsupported(m, &format!("no --external mnt[{key}]:PATH")))?;
                Some(
                    open_tree(rustix::fs::CWD, &e.path, clone)
                        .map_err(errno(m, &format!("clone {}", e.path.display())))?,
                )
            }
            NsMountSource::Fresh { options } => Some(fresh(m, &m.fs_type, options)?),
            NsMountSource::Content { options, content } => {
                let fd = fresh(m, &m.fs_type, options)?;
                let c = image.fs_content(*content).ok_or_else(|| {
                    RestoreError::Invalid(format!("content {content} is not in the image"))
                })?;
                match ino_order(&c.entries).filter(|_| m.fs_type == "tmpfs") {
                    Some(sorted) => crate::mounts::fill(&fd, image, *content, &sorted, true)?,
                    None => crate::mounts::fill(&fd, image, *content, &c.entries, false)?,
                }
                let root = m
                    .root
                    .as_path()
                    .strip_prefix("/")
                    .unwrap_or(m.root.as_path());
                if root.as_os_str().is_empty() {
                    Some(fd)
                } else {
                    Some(open_tree(&fd, root, clone).map_err(errno(m, "clone the sub-root"))?)
                }
            }
            NsMountSource::NsBind { .. } => None,
        };
        fds.push(fd);
    }

    // 2. Attach: the root on a scratch directory of this thread's private copy, then the rest.
    let index: HashMap<u64, usize> = ns
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id, i))
        .collect();
    let root_m = &ns.mounts[0];
    let root_fd = fds[0]
        .as_ref()
        .ok_or_else(|| unsupported(root_m, "the root mount cannot be a bind of another"))?;
    if ns_fd.is_some() {
        let scratch = SCRATCH
            .iter()
            .find(|p| Path::new(p).is_dir())
            .ok_or_else(|| {
                RestoreError::Unsupported("no directory to build the mount namespace on".to_owned())
            })?;
        move_mount(
            root_fd,
            "",
            rustix::fs::CWD,
            *scratch,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(errno(root_m, "attach the root mount while it is built"))?;
    } else {
        // The detached root mount (nothing attached to it yet: one mount is copied) becomes
        // the root of a new namespace; this thread moves in, and its root is that copy.
        let new_ns = open_tree(
            root_fd,
            "",
            OpenTreeFlags::NAMESPACE | OpenTreeFlags::CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH,
        )
        .map_err(errno(
            root_m,
            "open_tree(OPEN_TREE_NAMESPACE) of the root mount",
        ))?;
        crcli_sys::mntns::unshare_fs().map_err(RestoreError::errno("unshare(CLONE_FS)"))?;
        crcli_sys::mntns::setns_mnt(&new_ns)
            .map_err(RestoreError::errno("setns into the new mount namespace"))?;
        rustix::process::chdir("/").map_err(RestoreError::errno("chdir to the new root"))?;
        fds[0] = Some(
            open_tree(rustix::fs::CWD, "/", OpenTreeFlags::CLOEXEC)
                .map_err(errno(root_m, "open the root mount in the new namespace"))?,
        );
        ns_fd = Some(new_ns);
    }
    for (i, m) in ns.mounts.iter().enumerate().skip(1) {
        if let NsMountSource::NsBind { of, subroot } = &m.source_kind {
            let src = index
                .get(of)
                .and_then(|&j| fds[j].as_ref())
                .ok_or_else(|| {
                    unsupported(m, &format!("the mount it binds ({of}) was not made"))
                })?;
            let fd = if subroot.as_bytes().is_empty() {
                open_tree(src, "", clone | OpenTreeFlags::AT_EMPTY_PATH)
            } else {
                open_tree(src, subroot.as_path(), clone)
            }
            .map_err(errno(m, "clone the mount it binds"))?;
            fds[i] = Some(fd);
        }
        let &pi = index
            .get(&m.parent)
            .ok_or_else(|| unsupported(m, "its parent is not in the namespace"))?;
        let parent = &ns.mounts[pi];
        let rel = below(m.mountpoint.as_path(), parent.mountpoint.as_path()).ok_or_else(|| {
            unsupported(
                m,
                &format!("not below its parent's mount point {}", parent.mountpoint),
            )
        })?;
        let (Some(fd), Some(pfd)) = (fds[i].as_ref(), fds[pi].as_ref()) else {
            return Err(unsupported(m, "its parent was not made"));
        };
        let mut flags = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH;
        if rel.as_os_str().is_empty() {
            flags |= MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
        }
        move_mount(fd, "", pfd, &rel, flags)
            .map_err(errno(m, &format!("attach at {}", rel.display())))?;
    }

    // 3. Attributes (children first: a read-only parent is fine, they are attached), then
    //    propagation.
    for (i, m) in ns.mounts.iter().enumerate().rev() {
        let fd = fds[i].as_ref().expect("every mount was made");
        set_attributes(fd, m.attributes).map_err(errno(m, "set the mount attributes"))?;
    }
    propagation(ns, &fds)?;

    // 4. With unshare: the new tree becomes the namespace's root; crcli's copy under it goes.
    if method == NsBuildMethod::Unshare {
        let root_fd = fds[0].as_ref().expect("the root mount was made");
        rustix::process::fchdir(root_fd).map_err(RestoreError::errno("chdir into the new root"))?;
        crcli_sys::mntns::pivot_root(".", ".")
            .map_err(RestoreError::errno("pivot_root into the new root"))?;
        umount2(".", UnmountFlags::DETACH)
            .map_err(RestoreError::errno("detach crcli's copied tree"))?;
        rustix::process::chdir("/").map_err(RestoreError::errno("chdir to the new root"))?;
    }
    tracing::debug!(
        mounts = ns.mounts.len(),
        method = method.name(),
        "mount namespace built"
    );
    ns_fd.ok_or_else(|| RestoreError::Unsupported("no mount namespace was made".to_owned()))
}

fn propagation(ns: &MountNamespace, fds: &[Option<OwnedFd>]) -> Result<(), RestoreError> {
    let fd = |i: usize| fds[i].as_ref().expect("every mount was made").as_fd();
    let set_prop = |i: usize, p: MountPropagation| {
        mount_setattr(
            fd(i),
            "",
            MountSetattrFlags::AT_EMPTY_PATH,
            &MountAttr {
                propagation: p,
                ..MountAttr::default()
            },
        )
        .map_err(errno(&ns.mounts[i], "set the propagation"))
    };
    let join_group = |from: usize, to: usize| {
        move_mount(
            fd(from),
            "",
            fd(to),
            "",
            MoveMountFlags::MOVE_MOUNT_SET_GROUP
                | MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
                | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(errno(
            &ns.mounts[to],
            "join its peer group (MOVE_MOUNT_SET_GROUP)",
        ))
    };
    // Peer groups (by dumped id), each widest root first:
    // MOVE_MOUNT_SET_GROUP wants the new peer's root at or below the root of the mount it
    // joins through.
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, m) in ns.mounts.iter().enumerate() {
        if m.propagation & MS_SHARED != 0 && m.peer_group != 0 {
            groups.entry(m.peer_group).or_default().push(i);
        }
    }
    for members in groups.values_mut() {
        members.sort_by_key(|&i| ns.mounts[i].root.as_bytes().len());
    }
    let root_of = |i: usize| ns.mounts[i].root.as_path();
    // A member of `among` (already in its group) whose root is at or above `to`'s (compared
    // by path components: `/ab` is not below `/a`).
    let through = |among: &[usize], to: usize| -> Result<usize, RestoreError> {
        among
            .iter()
            .copied()
            .find(|&f| root_of(to).starts_with(root_of(f)))
            .ok_or_else(|| {
                unsupported(
                    &ns.mounts[to],
                    "no mount of the peer group it joins has a root at or above its own",
                )
            })
    };
    let master_of = |i: usize| -> Result<&Vec<usize>, RestoreError> {
        let m = &ns.mounts[i];
        groups.get(&m.master).ok_or_else(|| {
            unsupported(
                m,
                &format!(
                    "a slave of peer group {}, which is not in the namespace",
                    m.master
                ),
            )
        })
    };
    // A private mount becomes a slave of `master`'s group: it joins the group, then turns
    // slave of it.
    let make_slave = |i: usize, master: &[usize]| -> Result<(), RestoreError> {
        join_group(through(master, i)?, i)?;
        set_prop(i, MountPropagation::SLAVE)
    };
    // Groups whose master group is made first (a master is always a shared group).
    let mut done: std::collections::HashSet<u64> = std::collections::HashSet::new();
    while done.len() < groups.len() {
        let before = done.len();
        for (&group, members) in &groups {
            let lead = members[0];
            let m = &ns.mounts[lead];
            let slave = m.propagation & MS_SLAVE != 0;
            if done.contains(&group) || (slave && !done.contains(&m.master)) {
                continue;
            }
            if slave {
                // Shared and slave: the lead becomes a slave, then shared in a group of its
                // own; its peers join through it and so get both (the group and the master).
                make_slave(lead, master_of(lead)?)?;
            }
            set_prop(lead, MountPropagation::SHARED)?;
            for (k, &other) in members.iter().enumerate().skip(1) {
                join_group(through(&members[..k], other)?, other)?;
            }
            done.insert(group);
        }
        if done.len() == before {
            let stuck = groups.keys().find(|g| !done.contains(g)).copied();
            return Err(RestoreError::Unsupported(format!(
                "peer group {stuck:?} of the mount namespace is a slave of a group that is not in it, or of itself"
            )));
        }
    }
    // Slaves that are not shared.
    for (i, m) in ns.mounts.iter().enumerate() {
        if m.propagation & MS_SLAVE != 0 && m.propagation & MS_SHARED == 0 {
            make_slave(i, master_of(i)?)?;
        }
    }
    for (i, m) in ns.mounts.iter().enumerate() {
        if m.propagation & MS_UNBINDABLE != 0 {
            set_prop(i, MountPropagation::UNBINDABLE)?;
        }
    }
    Ok(())
}

/// The content's entries in the order a fresh tmpfs gives them their dumped inode numbers:
/// the root and directories of unknown metadata first, then by inode number, hard links last;
/// `None` when that order would make an entry before its directory (a file moved into a
/// directory made after it).
fn ino_order(entries: &[crcli_image::FsEntry]) -> Option<Vec<crcli_image::FsEntry>> {
    use crcli_image::FsEntryKind;
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| {
        let root = e.path.as_bytes().is_empty();
        let link = matches!(e.kind, FsEntryKind::HardLink { .. });
        (!root, e.ino != 0, link, e.ino)
    });
    let mut made = std::collections::HashSet::new();
    for e in &sorted {
        let p = e.path.as_bytes();
        if let Some(slash) = p.iter().rposition(|&b| b == b'/') {
            if !made.contains(&p[..slash]) {
                return None;
            }
        }
        made.insert(p);
    }
    Some(sorted)
}

/// A fresh instance of `fs_type` with `options`.
fn fresh(m: &NsMount, fs_type: &str, options: &str) -> Result<OwnedFd, RestoreError> {
    let fs = fsopen(fs_type, FsOpenFlags::FSOPEN_CLOEXEC).map_err(errno(m, "fsopen"))?;
    // The source mountinfo shows (`none` when not given).
    if let Some(source) = &m.source {
        crcli_sys::mount::fsconfig_set_string(&fs, "source", source.as_bytes())
            .map_err(errno(m, "fsconfig source"))?;
    }
    crate::mounts::configure(&fs, options, MountId(0))
        .map_err(|e| unsupported(m, &e.to_string()))?;
    fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(errno(m, "fsmount"))
}

/// `path` relative to `base` (both absolute), `""` when equal.
fn below(path: &Path, base: &Path) -> Option<PathBuf> {
    path.strip_prefix(base).ok().map(Path::to_path_buf)
}

/// The image's mount namespace when the restore must build it: it has one, and crcli does not
/// run in that very namespace (still alive, with the same id: a restore entered into the
/// dumped namespace, `nsenter -m` style, restores into it as it is).
pub(crate) fn to_build(image: &Image) -> Option<&MountNamespace> {
    let ns = image.inventory().tree.mount_ns.as_ref()?;
    let current = rustix::fs::open(
        "/proc/thread-self/ns/mnt",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()
    .and_then(|fd| crcli_sys::nsfs::ns_get_mntns_id(&fd).ok());
    if ns.ns_id != 0 && current == Some(ns.ns_id) {
        tracing::info!(
            ns_id = ns.ns_id,
            "crcli runs in the dumped mount namespace itself: restoring into it"
        );
        return None;
    }
    Some(ns)
}

/// Whether the mount at `mountpoint` is one the restore made again from the image (a fresh
/// filesystem, a tmpfs filled with its content, or a bind of one) in the namespace it built: its
/// device number is new, so a dumped device number says nothing about it.
pub(crate) fn remade(image: &Image, mountpoint: &Path) -> bool {
    let Some(ns) = to_build(image) else {
        return false;
    };
    ns.mounts
        .iter()
        .rev()
        .find(|m| m.mountpoint.as_path() == mountpoint)
        .is_some_and(|m| {
            matches!(
                m.source_kind,
                NsMountSource::Fresh { .. }
                    | NsMountSource::Content { .. }
                    | NsMountSource::NsBind { .. }
            )
        })
}

/// Checks, before anything is made, that the tree restore can use the image's mount namespace
/// (see [`check`]); the restore's processes need crcli's `/proc` while they are made, so the
/// namespace must have a `proc` at `/proc`.
pub(crate) fn check_for_tree<'a>(
    image: &'a Image,
    externals: &[ExternalPath],
) -> Result<Option<&'a MountNamespace>, RestoreError> {
    let Some(ns) = to_build(image) else {
        return Ok(None);
    };
    check(ns, externals)?;
    let fresh_procs: Vec<u64> = ns
        .mounts
        .iter()
        .filter(|m| {
            matches!(m.fs_type.as_str(), "proc" | "mqueue")
                && matches!(m.source_kind, NsMountSource::Fresh { .. })
        })
        .map(|m| m.id)
        .collect();
    // Mounts on them are made again on the new instances by path ([`own_procs`]): two at one
    // mount point cannot be told apart.
    for &r in &fresh_procs {
        let subs = descendants(ns, r);
        for (k, m) in subs.iter().enumerate() {
            if subs[..k].iter().any(|o| o.mountpoint == m.mountpoint) {
                return Err(unsupported(
                    m,
                    "stacked on another mount on a proc or mqueue of the namespace's own",
                ));
            }
        }
    }
    let proc_at_proc = ns.mounts.iter().any(|m| {
        m.fs_type == "proc"
            && m.mountpoint.as_bytes() == b"/proc"
            && matches!(m.source_kind, NsMountSource::Fresh { .. })
    });
    if !proc_at_proc {
        return Err(RestoreError::Unsupported(
            "a mount namespace without a proc of its own at /proc cannot be restored yet"
                .to_owned(),
        ));
    }
    Ok(Some(ns))
}

/// Replaces each fresh `proc` (with `new_pid`) and `mqueue` (with `new_ipc`) of the built
/// namespace — made by crcli, so showing crcli's PID and IPC namespaces — with one of the tree's
/// new namespace, once every member exists: a helper child born in the tree's PID namespace
/// (crcli `setns`es its children's PID namespace to the root's for the fork), which joins the
/// root's IPC namespace, then the mount namespace, detaches crcli's instance at each mount
/// point and mounts its own there. The helper takes a free pid of the namespace and is reaped
/// before any member runs.
pub(crate) fn own_procs(
    ns: &MountNamespace,
    ns_fd: &OwnedFd,
    root_host: i32,
    new_pid: bool,
    new_ipc: bool,
) -> Result<(), RestoreError> {
    let remade: Vec<&NsMount> = ns
        .mounts
        .iter()
        .filter(|m| {
            matches!(m.source_kind, NsMountSource::Fresh { .. })
                && ((new_pid && m.fs_type == "proc") || (new_ipc && m.fs_type == "mqueue"))
        })
        .collect();
    if remade.is_empty() {
        return Ok(());
    }
    // The mounts on each (masked paths, read-only binds of /proc/sys, …), to be made again on
    // the new instance: a bind of the instance itself from the new one, anything else a clone
    // of what is mounted there now.
    let remade: Vec<Remade> = remade
        .into_iter()
        .map(|m| {
            let subs = descendants(ns, m.id)
                .into_iter()
                .map(|s| {
                    let of_it = match &s.source_kind {
                        NsMountSource::NsBind { of, subroot } if *of == m.id => {
                            Some(join(m.mountpoint.as_path(), subroot.as_path()))
                        }
                        _ => None,
                    };
                    (s, of_it)
                })
                .collect();
            (m, subs)
        })
        .collect();
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
    let open = |p: String| {
        rustix::fs::open(
            p.as_str(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(RestoreError::errno(format!("open {p}")))
    };
    let ipc = if new_ipc {
        Some(open(format!("/proc/{root_host}/ns/ipc"))?)
    } else {
        None
    };
    let own = open("/proc/self/ns/pid".to_owned())?;
    if new_pid {
        let theirs = open(format!("/proc/{root_host}/ns/pid"))?;
        move_into_link_name_space(theirs.as_fd(), Some(LinkNameSpaceType::ProcessID)).map_err(
            RestoreError::errno("setns into the tree's PID namespace for its proc"),
        )?;
    }
    let spawned = crcli_sys::clone3::spawn(
        &crcli_sys::clone3::SpawnOptions {
            set_tid: None,
            hold: false,
        },
        || proc_helper(&remade, ns_fd, ipc.as_ref()),
    );
    let back = if new_pid {
        move_into_link_name_space(own.as_fd(), Some(LinkNameSpaceType::ProcessID))
    } else {
        Ok(())
    };
    let spawned = spawned.map_err(|e| {
        RestoreError::Unsupported(format!(
            "making the helper that mounts the tree's proc and mqueue: {e}"
        ))
    })?;
    back.map_err(RestoreError::errno("setns back into crcli's PID namespace"))?;
    let pid = rustix::process::Pid::from_raw(spawned.pid())
        .ok_or_else(|| RestoreError::Unsupported("the proc helper has no pid".to_owned()))?;
    let status = rustix::io::retry_on_intr(|| {
        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
    })
    .map_err(RestoreError::errno("waiting for the proc helper"))?
    .map(|(_, s)| s);
    match status.and_then(|s| s.exit_status()) {
        Some(0) => Ok(()),
        other => Err(RestoreError::Unsupported(format!(
            "mounting the tree's own proc and mqueue failed (helper status {other:?}: {})",
            match other {
                Some(10) => "setns into the mount namespace",
                Some(11) => "detaching crcli's instance",
                Some(12) => "making the new instance",
                Some(13) => "attaching the new instance",
                Some(14) => "setns into the tree's IPC namespace",
                Some(15) => "cloning a mount on the instance",
                Some(16) => "attaching a mount on the new instance",
                _ => "unknown",
            }
        ))),
    }
}

/// The mounts below mount `id` of `ns`, parents first.
fn descendants(ns: &MountNamespace, id: u64) -> Vec<&NsMount> {
    let mut ids = std::collections::HashSet::from([id]);
    let mut out = Vec::new();
    for m in &ns.mounts {
        if ids.contains(&m.parent) && m.id != id {
            ids.insert(m.id);
            out.push(m);
        }
    }
    out
}

/// A mount [`own_procs`] makes again, and the mounts on it: for each, the path to clone on the
/// new instance when it is a bind of the instance itself.
type Remade<'a> = (&'a NsMount, Vec<(&'a NsMount, Option<PathBuf>)>);

/// The body of [`own_procs`]'s helper (a forked child of crcli in the tree's PID namespace).
fn proc_helper(remade: &[Remade<'_>], ns_fd: &OwnedFd, ipc: Option<&OwnedFd>) -> i32 {
    if let Some(ipc) = ipc {
        let joined = rustix::thread::move_into_link_name_space(
            ipc.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::InterProcessCommunication),
        );
        if joined.is_err() {
            return 14;
        }
    }
    if crcli_sys::mntns::setns_mnt(ns_fd).is_err() {
        return 10;
    }
    let clone = OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC;
    for (m, subs) in remade {
        let at = m.mountpoint.as_path();
        // Clones of the mounts on it, before it goes with them.
        let mut clones = Vec::with_capacity(subs.len());
        for (s, of_it) in subs {
            clones.push(match of_it {
                Some(_) => None,
                None => match open_tree(rustix::fs::CWD, s.mountpoint.as_path(), clone) {
                    Ok(fd) => Some(fd),
                    Err(_) => return 15,
                },
            });
        }
        if umount2(at, UnmountFlags::DETACH).is_err() {
            return 11;
        }
        let options = match &m.source_kind {
            NsMountSource::Fresh { options } => options.as_str(),
            _ => "",
        };
        let Ok(fd) = fresh(m, &m.fs_type, options) else {
            return 12;
        };
        if !set_and_attach(&fd, m.attributes, at) {
            return 13;
        }
        for ((s, of_it), cloned) in subs.iter().zip(clones) {
            let fd = match (of_it, cloned) {
                (_, Some(fd)) => fd,
                (Some(path), None) => match open_tree(rustix::fs::CWD, path, clone) {
                    Ok(fd) => fd,
                    Err(_) => return 15,
                },
                (None, None) => return 15,
            };
            if !set_and_attach(&fd, s.attributes, s.mountpoint.as_path()) {
                return 16;
            }
        }
    }
    0
}

/// Sets exactly the dumped `attributes` of [`ATTRS`] on mount `fd` (clearing the others).
fn set_attributes(fd: &OwnedFd, attributes: u64) -> rustix::io::Result<()> {
    let attr = MountAttr {
        attr_set: MountAttrFlags::from_bits_retain(attributes) & ATTRS,
        attr_clr: ATTRS,
        ..MountAttr::default()
    };
    mount_setattr(fd, "", MountSetattrFlags::AT_EMPTY_PATH, &attr)
}

/// Sets the dumped `attributes` (those of [`ATTRS`]) on the detached mount `fd` and attaches it
/// at `at`; false on any failure (raw calls only: [`proc_helper`] runs in a forked child).
fn set_and_attach(fd: &OwnedFd, attributes: u64, at: &Path) -> bool {
    set_attributes(fd, attributes).is_ok()
        && move_mount(
            fd,
            "",
            rustix::fs::CWD,
            at,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .is_ok()
}

/// crcli's calling thread moved into a built mount namespace, so that the files it opens and
/// the root process it makes are in it; dropping it moves the thread back to crcli's own
/// namespace, root and working directory.
pub(crate) struct Entered {
    orig_ns: OwnedFd,
    orig_root: OwnedFd,
    orig_cwd: OwnedFd,
}

impl Entered {
    /// Moves the calling thread into namespace `ns` (its own filesystem information first).
    pub(crate) fn enter(ns: &OwnedFd) -> Result<Entered, RestoreError> {
        use rustix::fs::{Mode, OFlags};
        let open = |p: &str, what: &str| {
            rustix::fs::open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(RestoreError::errno(format!("open {what}")))
        };
        let orig_ns = rustix::fs::open(
            "/proc/thread-self/ns/mnt",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(RestoreError::errno("open crcli's mount namespace"))?;
        let orig_root = open("/", "crcli's root")?;
        let orig_cwd = open(".", "crcli's working directory")?;
        crcli_sys::mntns::unshare_fs().map_err(RestoreError::errno("unshare(CLONE_FS)"))?;
        crcli_sys::mntns::setns_mnt(ns)
            .map_err(RestoreError::errno("setns into the new mount namespace"))?;
        Ok(Entered {
            orig_ns,
            orig_root,
            orig_cwd,
        })
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let back = crcli_sys::mntns::setns_mnt(&self.orig_ns)
            .and_then(|()| crcli_sys::mntns::chroot_to(&self.orig_root))
            .and_then(|()| rustix::process::fchdir(&self.orig_cwd));
        if let Err(e) = back {
            tracing::error!("returning to crcli's own mount namespace: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_paths_parse() {
        let e: ExternalPath = "mnt[data]:/srv/data".parse().unwrap();
        assert_eq!(e.key, "data");
        assert_eq!(e.path, PathBuf::from("/srv/data"));
        for bad in ["mnt[]:/x", "mnt[k]:x", "dev[k]:/x", "mnt[k]/x"] {
            assert!(bad.parse::<ExternalPath>().is_err(), "{bad}");
        }
    }

    #[test]
    fn roots_at_or_below_another() {
        // What `propagation` relies on: `Path::starts_with` compares whole components.
        let under = |p: &str, base: &str| Path::new(p).starts_with(base);
        assert!(under("/a/b", "/"));
        assert!(under("/", "/"));
        assert!(under("/a", "/a"));
        assert!(under("/a/b", "/a"));
        assert!(!under("/ab", "/a"));
        assert!(!under("/", "/a"));
    }

    #[test]
    fn mount_points_below_their_parent() {
        assert_eq!(
            below(Path::new("/a/b"), Path::new("/")),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(
            below(Path::new("/a"), Path::new("/a")),
            Some(PathBuf::new())
        );
        assert_eq!(below(Path::new("/ab"), Path::new("/a")), None);
    }
}
