//! Kernel tests of crcli-sys's mount interfaces, on the real kernel, as root.
//!
//! Cases `selftest_01` … `selftest_12` port the kernel selftests listed in UAPI.md
//! (tools/testing/selftests/filesystems/statmount/ and open_tree_ns/). Every test that mounts
//! anything runs in a child process in a private mount namespace of its own (see
//! `common::in_private_mount_ns`). Tests of Linux 7.0 features skip here with a printed reason
//! and fail in the VM (`CRCLI_VM=1`) if the feature is missing.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::{bind, in_private_mount_ns, mkdir_p, mount_tmpfs, require};
use crcli_sys::features::{Feature, Features};
use crcli_sys::listmount::{listmount, listmount_all, Listmount, ListmountFlags, LSMT_ROOT};
use crcli_sys::mount::*;
use crcli_sys::nsfs::{ns_get_mntns_id, ns_mnt_get_info};
use crcli_sys::pidfd::{pidfd_getfd, pidfd_open, PidfdFlags};
use crcli_sys::statmount::{
    statmount, statmount_by_fd, statmount_into, Statmount, StatmountError, StatmountMask,
    StatmountTarget, INITIAL_BUFFER, STATMOUNT_FIXED_SIZE,
};
use crcli_sys::statx::{fstatx_mnt_id_unique, statx_mnt_id, statx_mnt_id_unique};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags, CWD};
use rustix::io::Errno;
use rustix::mount::MountPropagationFlags;

// ---------------------------------------------------------------------------------------------
// The selftests' namespace setup: a temp dir bind-mounted on itself and chrooted into.

/// Ids recorded by [`enter_temp_root`], as the selftest's `setup_namespace()` records them.
struct TempRoot {
    dir_name: String,
    root_id: u64,
    old_root_id: u64,
    parent_id: u64,
    old_parent_id: u64,
    /// `/proc/self/mountinfo`, opened before the chroot (which hides /proc).
    mountinfo: File,
}

fn unique_id(path: &str) -> u64 {
    statx_mnt_id_unique(CWD, path, AtFlags::empty())
        .unwrap_or_else(|e| panic!("statx unique mount id of {path}: {e}"))
        .unwrap_or_else(|| panic!("kernel gave no unique mount id for {path}"))
}

fn old_id(path: &str) -> u64 {
    statx_mnt_id(CWD, path, AtFlags::empty())
        .unwrap_or_else(|e| panic!("statx mount id of {path}: {e}"))
        .unwrap_or_else(|| panic!("kernel gave no mount id for {path}"))
}

/// Binds a fresh directory of the scratch tmpfs on itself and chroots into it.
fn enter_temp_root() -> TempRoot {
    let dir_name = format!("statmount_test_root.{}", std::process::id());
    let dir = format!("/tmp/{dir_name}");
    mkdir_p(&dir);
    let old_parent_id = old_id(&dir);
    let parent_id = unique_id(&dir);
    let mountinfo = File::open("/proc/self/mountinfo").expect("opening mountinfo");
    bind(&dir, &dir);
    rustix::process::chroot(dir.as_str()).expect("chroot into the temp root");
    std::env::set_current_dir("/").expect("chdir /");
    TempRoot {
        dir_name,
        root_id: unique_id("/"),
        old_root_id: old_id("/"),
        parent_id,
        old_parent_id,
        mountinfo,
    }
}

fn sm(id: u64, mask: StatmountMask) -> Statmount {
    statmount(id, None, mask).unwrap_or_else(|e| panic!("statmount {id:#x} {mask:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Selftest cases 1-8 (Linux 6.8+; this machine has them).

#[test]
fn selftest_01_listmount_empty_root() {
    in_private_mount_ns("selftest_01_listmount_empty_root", || {
        let t = enter_temp_root();
        let mut list = [0u64; 32];
        let n =
            listmount(LSMT_ROOT, None, 0, ListmountFlags::empty(), &mut list).expect("listmount");
        assert_eq!(
            n,
            1,
            "listmount of the temp root returned {:x?}",
            &list[..n]
        );
        assert_eq!(list[0], t.root_id);
        assert_eq!(
            listmount_all(LSMT_ROOT, None, ListmountFlags::empty()).unwrap(),
            vec![t.root_id]
        );
    });
}

#[test]
fn selftest_02_statmount_zero_mask() {
    in_private_mount_ns("selftest_02_statmount_zero_mask", || {
        let t = enter_temp_root();
        let s = sm(t.root_id, StatmountMask::empty());
        assert_eq!(s.size as usize, STATMOUNT_FIXED_SIZE);
        assert_eq!(s.mask, StatmountMask::empty());
        assert!(s.sb.is_none() && s.mnt.is_none() && s.mnt_point.is_none());
    });
}

#[test]
fn selftest_03_statmount_mnt_basic() {
    in_private_mount_ns("selftest_03_statmount_mnt_basic", || {
        let t = enter_temp_root();
        let s = sm(t.root_id, StatmountMask::MNT_BASIC);
        assert_eq!(s.size as usize, STATMOUNT_FIXED_SIZE);
        assert_eq!(s.mask, StatmountMask::MNT_BASIC);
        let m = s.mnt.expect("MNT_BASIC filled");
        assert_eq!(m.mnt_id, t.root_id);
        assert_eq!(u64::from(m.mnt_id_old), t.old_root_id);
        assert_eq!(m.parent_id, t.parent_id);
        assert_eq!(u64::from(m.parent_id_old), t.old_parent_id);
        assert_eq!(m.propagation, MountPropagation::PRIVATE);
        assert_eq!((m.peer_group, m.master), (0, 0));
        // Only the parts asked for are decoded.
        assert!(s.sb.is_none() && s.mnt_root.is_none() && s.fs_type.is_none());
    });
}

#[test]
fn selftest_04_statmount_sb_basic() {
    in_private_mount_ns("selftest_04_statmount_sb_basic", || {
        let t = enter_temp_root();
        let s = sm(t.root_id, StatmountMask::SB_BASIC);
        assert_eq!(s.size as usize, STATMOUNT_FIXED_SIZE);
        assert_eq!(s.mask, StatmountMask::SB_BASIC);
        let sb = s.sb.expect("SB_BASIC filled");
        let stx = rustix::fs::statx(CWD, "/", AtFlags::empty(), StatxFlags::BASIC_STATS).unwrap();
        assert_eq!(
            (sb.dev_major, sb.dev_minor),
            (stx.stx_dev_major, stx.stx_dev_minor)
        );
        let sf = rustix::fs::statfs("/").unwrap();
        assert_eq!(sb.magic, sf.f_type as u64);
        assert_eq!(
            sb.magic, 0x0102_1994,
            "the scratch fs is tmpfs (TMPFS_MAGIC)"
        );
        assert!(s.mnt.is_none());
    });
}

#[test]
fn selftest_05_statmount_mnt_point_root_fs_type() {
    in_private_mount_ns("selftest_05_statmount_mnt_point_root_fs_type", || {
        let t = enter_temp_root();
        let s = sm(t.root_id, StatmountMask::MNT_POINT);
        assert_eq!(s.mnt_point.as_deref(), Some(Path::new("/")));
        let s = sm(t.root_id, StatmountMask::MNT_ROOT);
        let root = s.mnt_root.expect("MNT_ROOT filled");
        assert_eq!(root.file_name(), Some(OsStr::new(&t.dir_name)));
        // Stronger than the selftest: the bind's root is that directory of the scratch tmpfs.
        assert_eq!(root, Path::new("/").join(&t.dir_name));
        let s = sm(t.root_id, StatmountMask::FS_TYPE);
        assert_eq!(s.fs_type.as_deref(), Some("tmpfs"));
    });
}

/// Super options of the mountinfo line with old id `old`, without the generic ones the kernel
/// leaves out of `mnt_opts` (the selftest's rule).
fn mountinfo_super_opts(mountinfo: &str, old: u32) -> String {
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').next() == Some(&old.to_string()))
        .unwrap_or_else(|| panic!("no mountinfo line for mount {old}:\n{mountinfo}"));
    let after = line.split(" - ").nth(1).expect("mountinfo separator");
    let mut opts = after.splitn(3, ' ').nth(2).unwrap_or("").to_string();
    for generic in [
        ["ro", "rw"].as_slice(),
        &["sync"],
        &["dirsync"],
        &["lazytime"],
    ] {
        for g in generic {
            if let Some(rest) = opts.strip_prefix(g) {
                opts = rest.to_string();
                break;
            }
        }
        if let Some(rest) = opts.strip_prefix(',') {
            opts = rest.to_string();
        }
    }
    opts
}

#[test]
fn selftest_06_statmount_mnt_opts() {
    in_private_mount_ns("selftest_06_statmount_mnt_opts", || {
        let mut t = enter_temp_root();
        let s = sm(
            t.root_id,
            StatmountMask::MNT_BASIC | StatmountMask::MNT_OPTS,
        );
        let old = s.mnt.expect("MNT_BASIC filled").mnt_id_old;
        let mut text = String::new();
        t.mountinfo.read_to_string(&mut text).unwrap();
        let expected = mountinfo_super_opts(&text, old);
        assert_eq!(s.mnt_opts.unwrap_or_default(), expected);
    });
}

#[test]
fn selftest_07_statmount_string_bounds() {
    in_private_mount_ns("selftest_07_statmount_string_bounds", || {
        let t = enter_temp_root();
        let all = StatmountMask::SB_BASIC
            | StatmountMask::MNT_BASIC
            | StatmountMask::PROPAGATE_FROM
            | StatmountMask::MNT_ROOT
            | StatmountMask::MNT_POINT
            | StatmountMask::FS_TYPE
            | StatmountMask::MNT_NS_ID;
        // (mask, byte offset of the string field, name)
        let cases = [
            (StatmountMask::MNT_ROOT, 104, "mount root"),
            (StatmountMask::MNT_POINT, 108, "mount point"),
            (StatmountMask::FS_TYPE, 36, "fs type"),
            (all, 104, "mount root & all"),
            (all, 108, "mount point & all"),
            (all, 36, "fs type & all"),
        ];
        let target = StatmountTarget::Id {
            mnt_id: t.root_id,
            mnt_ns_id: None,
        };
        for (mask, field, name) in cases {
            let mut buf = vec![0u8; 64 << 10];
            statmount_into(target, mask, &mut buf).unwrap_or_else(|e| panic!("{name}: {e}"));
            let size = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
            assert!(size >= STATMOUNT_FIXED_SIZE, "{name}: size {size}");
            let got = u64::from_ne_bytes(buf[8..16].try_into().unwrap());
            assert_eq!(got, mask.bits(), "{name}: mask");
            let len = size - STATMOUNT_FIXED_SIZE;
            let start = u32::from_ne_bytes(buf[field..field + 4].try_into().unwrap()) as usize;
            let strings = &buf[STATMOUNT_FIXED_SIZE..size];
            let nul = (start..len)
                .find(|&i| strings[i] == 0)
                .unwrap_or_else(|| panic!("{name}: string out of bounds"));
            // The decoder agrees with the raw record.
            Statmount::parse(&buf).unwrap_or_else(|e| panic!("{name}: {e}"));

            let mut exact = vec![0u8; size];
            statmount_into(target, mask, &mut exact)
                .unwrap_or_else(|e| panic!("{name}: exact size {size}: {e}"));
            let mut short = vec![0u8; STATMOUNT_FIXED_SIZE + nul];
            assert_eq!(
                statmount_into(target, mask, &mut short),
                Err(Errno::OVERFLOW),
                "{name}: one byte short"
            );
        }
    });
}

#[test]
fn selftest_08_listmount_tree_paging_and_reverse() {
    in_private_mount_ns("selftest_08_listmount_tree_paging_and_reverse", || {
        let _t = enter_temp_root();
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::SHARED | MountPropagationFlags::REC,
        )
        .expect("making / shared");
        for _ in 0..4 {
            bind("/", "/");
        }
        let step = 3;
        let mut list = [0u64; 16 + 3 + 1];
        let num = listmount(LSMT_ROOT, None, 0, ListmountFlags::empty(), &mut list).unwrap();
        assert_eq!(num, 16, "4 self-binds on a shared / give 16 mounts");
        let list = &list[..num];

        let mut paged = Vec::new();
        loop {
            let mut page = [0u64; 3];
            let last = paged.last().copied().unwrap_or(0);
            let n = listmount(LSMT_ROOT, None, last, ListmountFlags::empty(), &mut page).unwrap();
            paged.extend_from_slice(&page[..n]);
            if n < step {
                break;
            }
        }
        assert_eq!(paged, list);
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "increasing: {list:x?}"
        );

        let rev = listmount_all(LSMT_ROOT, None, ListmountFlags::REVERSE).unwrap();
        assert!(rev.windows(2).all(|w| w[0] > w[1]), "decreasing: {rev:x?}");
        let mut fwd = rev.clone();
        fwd.reverse();
        assert_eq!(fwd, list);
        // The iterator agrees too.
        let it: Vec<u64> = Listmount::new(LSMT_ROOT, None, ListmountFlags::empty())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(it, list);
    });
}

// ---------------------------------------------------------------------------------------------
// Selftest cases 9-12: Linux 7.0 (STATMOUNT_BY_FD, OPEN_TREE_NAMESPACE), except where noted.

fn open_path(path: &str) -> std::os::fd::OwnedFd {
    rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .unwrap_or_else(|e| panic!("opening {path} O_PATH: {e}"))
}

#[test]
fn selftest_09_statmount_by_fd_unmounted_subdir_bind() {
    let name = "selftest_09_statmount_by_fd_unmounted_subdir_bind";
    if !require(name, Feature::StatmountByFd) {
        return;
    }
    in_private_mount_ns(name, || {
        let tmpdir = "/tmp/statmount.fd";
        mkdir_p(tmpdir);
        mount_tmpfs("statmount.test", tmpdir);
        let subdir = format!("{tmpdir}/test.unmounted");
        mkdir_p(&subdir);
        bind(&subdir, &subdir);
        let fd = open_path(&subdir);
        umount2(tmpdir, UnmountFlags::DETACH).expect("detaching the tmpfs");
        let s = statmount_by_fd(&fd, StatmountMask::MNT_POINT | StatmountMask::MNT_ROOT)
            .expect("statmount by fd on an unmounted mount");
        assert!(s.size as usize >= STATMOUNT_FIXED_SIZE);
        assert!(!s.mask.contains(StatmountMask::MNT_POINT), "{s:?}");
        assert_eq!(s.mnt_point, None);
        assert_eq!(s.mnt_root.as_deref(), Some(Path::new("/test.unmounted")));
    });
}

#[test]
fn selftest_10_statmount_by_fd_outside_root() {
    let name = "selftest_10_statmount_by_fd_outside_root";
    if !require(name, Feature::StatmountByFd) {
        return;
    }
    in_private_mount_ns(name, || {
        let tmpdir = "/tmp/statmount.fd";
        mkdir_p(tmpdir);
        mount_tmpfs("statmount.test", tmpdir);
        let subdir = format!("{tmpdir}/test");
        let tmproot = format!("{tmpdir}/chroot");
        mkdir_p(&subdir);
        bind(&subdir, &subdir);
        mkdir_p(&tmproot);
        let fd = open_path(&subdir);
        let orig_root = open_path("/");
        rustix::process::chroot(tmproot.as_str()).expect("chroot elsewhere");
        let mask = StatmountMask::MNT_ROOT | StatmountMask::MNT_POINT;
        let s = statmount_by_fd(&fd, mask).expect("statmount by fd from the chroot");
        assert!(!s.mask.contains(StatmountMask::MNT_POINT), "{s:?}");
        assert_eq!(s.mnt_root.as_deref(), Some(Path::new("/test")));
        rustix::process::fchdir(&orig_root).unwrap();
        rustix::process::chroot(".").expect("chroot back");
        let s = statmount_by_fd(&fd, mask).expect("statmount by fd at the real root");
        assert_eq!(s.mnt_point.as_deref(), Some(Path::new(&subdir)));
        assert_eq!(s.mnt_root.as_deref(), Some(Path::new("/test")));
    });
}

#[test]
fn selftest_11_mnt_ns_id_matches_nsfs() {
    // statmount's MNT_NS_ID and NS_GET_MNTNS_ID (Linux 6.11): runs here.
    in_private_mount_ns("selftest_11_mnt_ns_id_matches_nsfs", || {
        let ns = File::open("/proc/self/ns/mnt").unwrap();
        let ns_id = ns_get_mntns_id(&ns).expect("NS_GET_MNTNS_ID");
        let root = unique_id("/");
        let s = sm(root, StatmountMask::MNT_NS_ID);
        assert_eq!(s.mnt_ns_id, Some(ns_id));
        // Addressing the namespace by id gives the same answers.
        let own = listmount_all(LSMT_ROOT, None, ListmountFlags::empty()).unwrap();
        let by_id = listmount_all(LSMT_ROOT, Some(ns_id), ListmountFlags::empty()).unwrap();
        assert_eq!(own, by_id);
        let s2 = statmount(root, Some(ns_id), StatmountMask::MNT_NS_ID).unwrap();
        assert_eq!(s2.mnt_ns_id, Some(ns_id));
        // NS_MNT_GET_INFO (6.12) agrees on the id, and on the count up to one hidden root: on
        // 7.2 (seen in the VM) nr_mounts also counts the empty root mount that listmount and
        // mountinfo hide, on 6.18 here it does not.
        let info = ns_mnt_get_info(&ns).expect("NS_MNT_GET_INFO");
        assert_eq!(info.mnt_ns_id, ns_id);
        let nr = info.nr_mounts as usize;
        assert!(
            nr == own.len() || nr == own.len() + 1,
            "nr_mounts {nr}, listmount {}",
            own.len()
        );
        // A fresh namespace has another id: the parent's (the host's) differs from ours.
        let parent = rustix::process::getppid().expect("a parent");
        let host = File::open(format!("/proc/{}/ns/mnt", parent.as_raw_nonzero())).unwrap();
        assert_ne!(ns_get_mntns_id(&host).unwrap(), ns_id);
        // setns into a namespace by fd lands on its root (the helper case 12 uses on 7.0).
        setns_in_child(ns.as_fd(), root).expect("setns into our own namespace");
    });
}

#[test]
fn selftest_11_by_fd_after_detach_has_no_ns_id() {
    let name = "selftest_11_by_fd_after_detach_has_no_ns_id";
    if !require(name, Feature::StatmountByFd) {
        return;
    }
    in_private_mount_ns(name, || {
        let ns_id = ns_get_mntns_id(File::open("/proc/self/ns/mnt").unwrap()).unwrap();
        mkdir_p("/tmp/src");
        mkdir_p("/tmp/bind");
        std::fs::write("/tmp/src/file", b"data").unwrap();
        bind("/tmp/src", "/tmp/bind");
        let f = File::open("/tmp/bind/file").unwrap();
        let mask = StatmountMask::MNT_NS_ID | StatmountMask::MNT_POINT | StatmountMask::MNT_ROOT;
        let before = statmount_by_fd(&f, mask).expect("statmount by fd, attached");
        assert_eq!(before.mnt_ns_id, Some(ns_id));
        assert_eq!(before.mnt_point.as_deref(), Some(Path::new("/tmp/bind")));
        umount2("/tmp/bind", UnmountFlags::DETACH).unwrap();
        let after = statmount_by_fd(&f, mask).expect("statmount by fd, detached");
        assert_eq!(after.mnt_ns_id, None, "{after:?}");
        assert_eq!(after.mnt_point, None, "{after:?}");
        assert_eq!(after.mnt_root.as_deref(), Some(Path::new("/src")));
    });
}

/// Forks a child that enters the mount namespace `ns_fd` (setns) and checks that its root is
/// then the mount `expected_root`. Returns the setns errno if setns failed.
fn setns_in_child(ns_fd: std::os::fd::BorrowedFd<'_>, expected_root: u64) -> Result<(), Errno> {
    const MISMATCH: i32 = 200;
    let raw = ns_fd.as_raw_fd();
    // SAFETY: fork in a multi-threaded process: the child only makes raw syscalls (setns,
    // statx with a stack buffer) and `_exit`s; it allocates nothing and takes no lock.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: `raw` is an open fd inherited from the parent.
        let code = if unsafe { libc::setns(raw, libc::CLONE_NEWNS) } != 0 {
            // SAFETY: reads this thread's errno.
            unsafe { *libc::__errno_location() }
        } else {
            match statx_mnt_id_unique(CWD, "/", AtFlags::empty()) {
                Ok(Some(id)) if id == expected_root => 0,
                _ => MISMATCH,
            }
        };
        // SAFETY: ends the forked child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a live, writable int.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid");
    assert!(libc::WIFEXITED(status), "setns child died: {status:#x}");
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        MISMATCH => panic!("after setns, / is not the new namespace's root mount"),
        errno => Err(Errno::from_raw_os_error(errno)),
    }
}

#[test]
fn selftest_12_open_tree_namespace() {
    let name = "selftest_12_open_tree_namespace";
    if !require(name, Feature::OpenTreeNamespace) {
        return;
    }
    in_private_mount_ns(name, || {
        let current = ns_get_mntns_id(File::open("/proc/self/ns/mnt").unwrap()).unwrap();
        for flags in [
            OpenTreeFlags::NAMESPACE | OpenTreeFlags::CLOEXEC,
            OpenTreeFlags::NAMESPACE | OpenTreeFlags::AT_RECURSIVE | OpenTreeFlags::CLOEXEC,
        ] {
            for path in ["/", "/tmp", "/proc"] {
                let fd = open_tree(CWD, path, flags)
                    .unwrap_or_else(|e| panic!("open_tree {path} {flags:?}: {e}"));
                let new = ns_get_mntns_id(&fd).expect("the fd is a mount namespace");
                assert_ne!(new, current, "{path} {flags:?}");
                let ids = listmount_all(LSMT_ROOT, Some(new), ListmountFlags::empty()).unwrap();
                assert!(!ids.is_empty(), "{path} {flags:?}: no mounts");
                let root = statmount(ids[0], Some(new), StatmountMask::MNT_BASIC).unwrap();
                let m = root.mnt.unwrap();
                assert_ne!(m.mnt_id, m.parent_id);
                setns_in_child(fd.as_fd(), ids[0]).expect("setns into the new namespace");
            }
        }
        // Fails on an unbindable mount.
        mkdir_p("/tmp/unbindable");
        mount_tmpfs("unbindable", "/tmp/unbindable");
        rustix::mount::mount_change("/tmp/unbindable", MountPropagationFlags::UNBINDABLE).unwrap();
        assert_eq!(
            open_tree(
                CWD,
                "/tmp/unbindable",
                OpenTreeFlags::NAMESPACE | OpenTreeFlags::CLOEXEC
            )
            .err(),
            Some(Errno::INVAL)
        );
        // EPERM without CAP_SYS_ADMIN.
        let err = open_tree_as_nobody(OpenTreeFlags::NAMESPACE | OpenTreeFlags::CLOEXEC);
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    });
}

/// Spawns a child that drops to uid/gid 65534 (losing every capability) and calls
/// `open_tree(AT_FDCWD, "/", flags)`; returns the errno it got as the spawn error. Fails the
/// test if the call succeeds (the child then execs the test binary with `--list`, harmlessly).
fn open_tree_as_nobody(flags: OpenTreeFlags) -> std::io::Error {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--list").stdout(std::process::Stdio::null());
    // SAFETY: runs between fork and exec; only raw syscalls (setresgid, setresuid, open_tree
    // with a short, stack-converted path), no allocation.
    unsafe {
        cmd.pre_exec(move || {
            let nobody = rustix::process::Uid::from_raw(65534);
            let nogroup = rustix::process::Gid::from_raw(65534);
            if rustix::thread::set_thread_res_gid(nogroup, nogroup, nogroup).is_err()
                || rustix::thread::set_thread_res_uid(nobody, nobody, nobody).is_err()
            {
                return Err(std::io::Error::from_raw_os_error(libc::ENOTRECOVERABLE));
            }
            match open_tree(CWD, "/", flags) {
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            }
        });
    }
    cmd.status()
        .expect_err("open_tree succeeded without CAP_SYS_ADMIN")
}

#[test]
fn selftest_12_recursive_without_clone_is_einval() {
    // The part of case 12 every kernel with open_tree answers the same way.
    in_private_mount_ns("selftest_12_recursive_without_clone_is_einval", || {
        assert_eq!(
            open_tree(
                CWD,
                "/",
                OpenTreeFlags::AT_RECURSIVE | OpenTreeFlags::CLOEXEC
            )
            .err(),
            Some(Errno::INVAL)
        );
        // And a clone of an unbindable mount is refused.
        mkdir_p("/tmp/unbindable");
        mount_tmpfs("unbindable", "/tmp/unbindable");
        rustix::mount::mount_change("/tmp/unbindable", MountPropagationFlags::UNBINDABLE).unwrap();
        assert_eq!(
            open_tree(
                CWD,
                "/tmp/unbindable",
                OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC
            )
            .err(),
            Some(Errno::INVAL)
        );
        // Cloning needs CAP_SYS_ADMIN (the same helper checks OPEN_TREE_NAMESPACE on 7.0).
        let err = open_tree_as_nobody(OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC);
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    });
}

// ---------------------------------------------------------------------------------------------
// Buffer growth, paging, features, the rest of the mount API.

#[test]
fn statmount_grows_buffer_on_eoverflow() {
    in_private_mount_ns("statmount_grows_buffer_on_eoverflow", || {
        // Two ~2000-byte paths: mnt_root and mnt_point alone overflow the first 4 KiB buffer.
        let deep: String = (0..10)
            .map(|i| format!("/{}{i}", "d".repeat(199)))
            .collect();
        let src = format!("/tmp/src{deep}");
        let dst = format!("/tmp/dst{deep}");
        mkdir_p(&src);
        mkdir_p(&dst);
        bind(&src, &dst);
        let id = unique_id(&dst);
        let s = sm(id, StatmountMask::MNT_ROOT | StatmountMask::MNT_POINT);
        assert!(
            s.size as usize > INITIAL_BUFFER,
            "record of {} bytes did not need growth",
            s.size
        );
        assert_eq!(s.mnt_point.as_deref(), Some(Path::new(&dst)));
        assert_eq!(
            s.mnt_root.as_deref(),
            Some(Path::new(&format!("/src{deep}")))
        );
        // The raw call really answers EOVERFLOW at the initial size.
        let mut small = vec![0u8; INITIAL_BUFFER];
        assert_eq!(
            statmount_into(
                StatmountTarget::Id {
                    mnt_id: id,
                    mnt_ns_id: None
                },
                StatmountMask::MNT_ROOT | StatmountMask::MNT_POINT,
                &mut small
            ),
            Err(Errno::OVERFLOW)
        );
    });
}

#[test]
fn listmount_pages_through_more_than_1000_mounts() {
    in_private_mount_ns("listmount_pages_through_more_than_1000_mounts", || {
        const N: usize = 1100;
        let mut made = BTreeSet::new();
        for i in 0..N {
            let dir = format!("/tmp/many/m{i}");
            mkdir_p(&dir);
            mount_tmpfs("many", &dir);
            made.insert(unique_id(&dir));
        }
        let all = listmount_all(LSMT_ROOT, None, ListmountFlags::empty()).unwrap();
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        let all_set: BTreeSet<u64> = all.iter().copied().collect();
        assert!(made.is_subset(&all_set));
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(all.len(), mountinfo.lines().count());

        let mut rev = listmount_all(LSMT_ROOT, None, ListmountFlags::REVERSE).unwrap();
        rev.reverse();
        assert_eq!(rev, all);

        // Below the scratch tmpfs: exactly the mounts made on it.
        let below = listmount_all(unique_id("/tmp"), None, ListmountFlags::empty()).unwrap();
        assert_eq!(below.iter().copied().collect::<BTreeSet<_>>(), made);
        assert_eq!(below.len(), N);
    });
}

/// Major.minor of a kernel release string like "6.18.44-foo".
fn version(release: &str) -> (u32, u32) {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next().and_then(|s| s.parse().ok()).expect("major");
    let minor = it.next().and_then(|s| s.parse().ok()).expect("minor");
    (major, minor)
}

#[test]
fn features_probe_has_no_false_result() {
    let f = Features::probe();
    assert!(std::ptr::eq(f, Features::current()), "probed once, cached");
    let uname = rustix::system::uname();
    assert_eq!(f.kernel_release(), uname.release().to_str().unwrap());
    let kernel = version(f.kernel_release());
    // Mainline kernels: a feature is present exactly when the kernel is at least as new as the
    // version that added it (the machines run 6.18, the VM 7.x).
    for (feature, present) in f.iter() {
        assert_eq!(
            present,
            kernel >= version(feature.since()),
            "{feature} (since {}) on {}",
            feature.since(),
            f.kernel_release()
        );
        assert_eq!(Feature::from_name(feature.name()), Some(feature));
        assert!(!feature.loss().is_empty());
    }
    // Independent checks of the probes that matter most, by using the feature.
    let root = File::open("/").unwrap();
    match statmount_by_fd(&root, StatmountMask::MNT_POINT) {
        Ok(s) => {
            assert!(f.has(Feature::StatmountByFd));
            assert_eq!(s.mnt_point.as_deref(), Some(Path::new("/")));
        }
        Err(e) => {
            assert!(!f.has(Feature::StatmountByFd), "{e}");
            assert_eq!(e.errno(), Some(Errno::INVAL));
        }
    }
    assert!(f.has(Feature::Statmount));
    sm(unique_id("/"), StatmountMask::MNT_BASIC);
    if kernel < (7, 0) {
        assert!(!f.has(Feature::StatmountByFd));
        assert!(!f.has(Feature::OpenTreeNamespace));
    }
    let mask = f
        .statmount_supported_mask()
        .expect("6.15+ reports its mask");
    assert!(mask.contains(StatmountMask::KNOWN));
}

#[test]
fn statmount_errors_are_clear() {
    // Ids below the unique-id range are invalid; ids in it that no mount has are not found.
    let e = statmount(1, None, StatmountMask::MNT_BASIC).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::INVAL));
    assert_eq!(e.to_string(), "statmount of mount 0x1 failed");
    let missing = unique_id("/") + (1 << 40);
    let e = statmount(missing, None, StatmountMask::MNT_BASIC).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::NOENT), "{e}");
    let too_short = [0u8; 100];
    let e = Statmount::parse(&too_short).unwrap_err();
    assert!(matches!(e, StatmountError::Malformed { .. }), "{e}");
    // A record whose size field exceeds the buffer.
    let mut buf = vec![0u8; 600];
    buf[0..4].copy_from_slice(&4000u32.to_ne_bytes());
    assert!(Statmount::parse(&buf).is_err());
    // A string offset past the end, and a string without its NUL.
    buf[0..4].copy_from_slice(&600u32.to_ne_bytes());
    buf[8..16].copy_from_slice(&StatmountMask::FS_TYPE.bits().to_ne_bytes());
    buf[36..40].copy_from_slice(&1000u32.to_ne_bytes());
    let e = Statmount::parse(&buf).unwrap_err();
    assert!(e.to_string().contains("fs_type"), "{e}");
    buf[36..40].copy_from_slice(&0u32.to_ne_bytes());
    buf[512..600].fill(b'x');
    let e = Statmount::parse(&buf).unwrap_err();
    assert!(e.to_string().contains("NUL"), "{e}");
    // An array whose count is absurd.
    buf[8..16].copy_from_slice(&StatmountMask::OPT_ARRAY.bits().to_ne_bytes());
    buf[128..132].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert!(Statmount::parse(&buf).is_err());
}

#[test]
fn fsmount_setattr_move_mount_and_detach() {
    in_private_mount_ns("fsmount_setattr_move_mount_and_detach", || {
        let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).expect("fsopen");
        fsconfig_set_string(&fs, "size", "1m").unwrap();
        fsconfig_set_string(&fs, "source", "crcli-fsmount").unwrap();
        fsconfig_create(&fs).unwrap();
        let mnt =
            fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::NODEV).expect("fsmount");
        mount_setattr(
            &mnt,
            "",
            MountSetattrFlags::AT_EMPTY_PATH,
            &MountAttr {
                attr_set: MountAttrFlags::NOSUID | MountAttrFlags::NOATIME,
                attr_clr: MountAttrFlags::_ATIME,
                ..MountAttr::default()
            },
        )
        .expect("mount_setattr on the detached mount");
        // A file created through the detached mount fd.
        drop(
            rustix::fs::openat(
                &mnt,
                "hello",
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .unwrap(),
        );
        // Kept open read-only (a writer would make the later read-only switch fail with EBUSY).
        let file = rustix::fs::openat(
            &mnt,
            "hello",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let anon_id = fstatx_mnt_id_unique(&file).unwrap().unwrap();
        assert_eq!(fstatx_mnt_id_unique(&mnt).unwrap(), Some(anon_id));

        mkdir_p("/tmp/target");
        move_mount(
            &mnt,
            "",
            CWD,
            "/tmp/target",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .expect("move_mount attaches it");
        assert_eq!(unique_id("/tmp/target"), anon_id);
        assert!(Path::new("/tmp/target/hello").exists());
        let s = sm(
            anon_id,
            StatmountMask::MNT_BASIC
                | StatmountMask::FS_TYPE
                | StatmountMask::SB_SOURCE
                | StatmountMask::OPT_ARRAY
                | StatmountMask::MNT_POINT,
        );
        let attr = s.mnt.unwrap().attr;
        assert!(
            attr.contains(MountAttrFlags::NODEV | MountAttrFlags::NOSUID | MountAttrFlags::NOATIME),
            "{attr:?}"
        );
        assert!(!attr.contains(MountAttrFlags::RDONLY));
        assert_eq!(s.fs_type.as_deref(), Some("tmpfs"));
        assert_eq!(s.sb_source.as_deref(), Some(OsStr::new("crcli-fsmount")));
        assert!(s.opt_array.unwrap().contains(&"size=1024k".to_string()));
        assert_eq!(s.mnt_point.as_deref(), Some(Path::new("/tmp/target")));

        // Read-only via mount_setattr on the attached path.
        mount_setattr(
            CWD,
            "/tmp/target",
            MountSetattrFlags::empty(),
            &MountAttr {
                attr_set: MountAttrFlags::RDONLY,
                ..MountAttr::default()
            },
        )
        .unwrap();
        assert!(sm(anon_id, StatmountMask::MNT_BASIC)
            .mnt
            .unwrap()
            .attr
            .contains(MountAttrFlags::RDONLY));
        assert_eq!(
            File::create("/tmp/target/other")
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EROFS)
        );

        // fspick + reconfigure works on the attached superblock.
        let pick = fspick(CWD, "/tmp/target", FsPickFlags::FSPICK_CLOEXEC).expect("fspick");
        fsconfig_set_string(&pick, "size", "2m").unwrap();
        fsconfig_reconfigure(&pick).unwrap();
        let s = sm(anon_id, StatmountMask::OPT_ARRAY);
        assert!(s.opt_array.unwrap().contains(&"size=2048k".to_string()));

        // umount2(MNT_DETACH): gone from the table, the open file lives on.
        umount2("/tmp/target", UnmountFlags::DETACH).unwrap();
        let ids = listmount_all(LSMT_ROOT, None, ListmountFlags::empty()).unwrap();
        assert!(!ids.contains(&anon_id));
        assert_eq!(fstatx_mnt_id_unique(&file).unwrap(), Some(anon_id));
        assert_eq!(
            statmount(anon_id, None, StatmountMask::MNT_BASIC)
                .unwrap_err()
                .errno(),
            Some(Errno::NOENT)
        );
    });
}

#[test]
fn open_tree_clone_and_move_mount_set_group() {
    in_private_mount_ns("open_tree_clone_and_move_mount_set_group", || {
        mkdir_p("/tmp/a");
        mkdir_p("/tmp/b");
        mkdir_p("/tmp/clone");
        mount_tmpfs("a", "/tmp/a");
        std::fs::create_dir("/tmp/a/sub").unwrap();
        std::fs::write("/tmp/a/sub/f", b"through the clone").unwrap();
        // /tmp/b: a private bind of /tmp/a (SET_GROUP needs the same superblock).
        bind("/tmp/a", "/tmp/b");

        // A clone of a sub-directory: detached until moved, root "/sub".
        let clone = open_tree(
            CWD,
            "/tmp/a/sub",
            OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC,
        )
        .expect("open_tree clone");
        let clone_id = fstatx_mnt_id_unique(&clone).unwrap().unwrap();
        assert_ne!(clone_id, unique_id("/tmp/a"));
        let f = rustix::fs::openat(&clone, "f", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .unwrap();
        let mut text = String::new();
        File::from(f).read_to_string(&mut text).unwrap();
        assert_eq!(text, "through the clone");
        move_mount(
            &clone,
            "",
            CWD,
            "/tmp/clone",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .unwrap();
        let s = sm(clone_id, StatmountMask::MNT_ROOT | StatmountMask::MNT_POINT);
        assert_eq!(s.mnt_root.as_deref(), Some(Path::new("/sub")));
        assert_eq!(s.mnt_point.as_deref(), Some(Path::new("/tmp/clone")));

        // MOVE_MOUNT_SET_GROUP: /tmp/b joins /tmp/a's peer group.
        let b = sm(unique_id("/tmp/b"), StatmountMask::MNT_BASIC)
            .mnt
            .unwrap();
        assert_eq!(
            (b.propagation, b.peer_group),
            (MountPropagation::PRIVATE, 0)
        );
        rustix::mount::mount_change("/tmp/a", MountPropagationFlags::SHARED).unwrap();
        let a = sm(unique_id("/tmp/a"), StatmountMask::MNT_BASIC)
            .mnt
            .unwrap();
        assert!(a.propagation.contains(MountPropagation::SHARED));
        assert_ne!(a.peer_group, 0);
        move_mount(
            CWD,
            "/tmp/a",
            CWD,
            "/tmp/b",
            MoveMountFlags::MOVE_MOUNT_SET_GROUP,
        )
        .expect("move_mount SET_GROUP");
        let b = sm(unique_id("/tmp/b"), StatmountMask::MNT_BASIC)
            .mnt
            .unwrap();
        assert_eq!(b.peer_group, a.peer_group);
        assert!(b.propagation.contains(MountPropagation::SHARED));

        // mount_setattr can change propagation too.
        mount_setattr(
            CWD,
            "/tmp/b",
            MountSetattrFlags::empty(),
            &MountAttr {
                propagation: MountPropagation::PRIVATE,
                ..MountAttr::default()
            },
        )
        .unwrap();
        let b = sm(unique_id("/tmp/b"), StatmountMask::MNT_BASIC)
            .mnt
            .unwrap();
        assert_eq!(b.propagation, MountPropagation::PRIVATE);
        assert_eq!(b.peer_group, 0);
    });
}

#[test]
fn pidfd_getfd_duplicates_a_childs_fd() {
    let file = tempfile_with(b"pidfd");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["helper_sleeper", "--exact", "--nocapture"])
        .env("CRCLI_SYS_TEST_CHILD", "helper_sleeper")
        .stdin(File::open(&file).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).expect("pidfd_open");
    let dup = pidfd_getfd(&pidfd, 0).expect("pidfd_getfd of the child's stdin");
    let mine = std::fs::metadata(&file).unwrap();
    let theirs = rustix::fs::fstat(&dup).unwrap();
    assert_eq!((theirs.st_dev, theirs.st_ino), (mine.dev(), mine.ino()));
    assert_eq!(pidfd_getfd(&pidfd, 999).unwrap_err(), Errno::BADF);
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(&file).unwrap();
    // A reaped child: ESRCH.
    assert_eq!(
        pidfd_open(pid, PidfdFlags::empty()).unwrap_err(),
        Errno::SRCH
    );
}

fn tempfile_with(data: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("crcli-sys-pidfd-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn statx_ids_agree_with_mountinfo() {
    // The old id from statx is mountinfo's first field; the unique id is what statmount takes.
    let root_old = old_id("/");
    let root_unique = unique_id("/");
    let s = sm(root_unique, StatmountMask::MNT_BASIC);
    assert_eq!(u64::from(s.mnt.unwrap().mnt_id_old), root_old);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mountinfo
        .lines()
        .any(|l| l.split(' ').next() == Some(&root_old.to_string())
            && l.split(' ').nth(4) == Some("/")));
    assert!(
        root_unique > u64::from(u32::MAX) >> 1,
        "unique ids are > 2^31"
    );
}

// ---------------------------------------------------------------------------------------------
// The helper itself: a failing child fails the parent, a missing test is not a pass.

#[test]
fn helper_child_that_fails_on_purpose() {
    // Passes when run normally; panics only when re-executed by the test below.
    if common::is_child("helper_child_that_fails_on_purpose") {
        panic!("failing on purpose");
    }
}

#[test]
fn helper_reports_child_failure_and_missing_tests() {
    let err = common::run_child("helper_child_that_fails_on_purpose").unwrap_err();
    assert!(err.contains("failed"), "{err}");
    let err = common::run_child("no_such_test").unwrap_err();
    assert!(err.contains("did not run exactly one test"), "{err}");
}

#[test]
fn helper_sleeper() {
    // A live process for the pidfd tests: sleeps only when re-executed as their child.
    if common::is_child("helper_sleeper") {
        std::thread::sleep(std::time::Duration::from_secs(30));
    }
}

#[test]
fn idmapped_mount_via_mount_setattr_and_statmount_idmaps() {
    in_private_mount_ns(
        "idmapped_mount_via_mount_setattr_and_statmount_idmaps",
        || {
            // A user namespace mapping 0 -> 1000: a sleeping child unshares it, we write its maps.
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["helper_sleeper", "--exact", "--nocapture"])
                .env("CRCLI_SYS_TEST_CHILD", "helper_sleeper")
                .stdout(std::process::Stdio::null());
            // SAFETY: runs between fork and exec, in a single-threaded child that shares no fd
            // table (what unshare_unsafe requires): one raw syscall, no allocation.
            unsafe {
                cmd.pre_exec(|| {
                    rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER)?;
                    Ok(())
                });
            }
            let mut child = cmd
                .spawn()
                .expect("spawning a child in a new user namespace");
            let pid = child.id();
            std::fs::write(format!("/proc/{pid}/uid_map"), "0 1000 1").unwrap();
            std::fs::write(format!("/proc/{pid}/gid_map"), "0 2000 1").unwrap();
            let userns = File::open(format!("/proc/{pid}/ns/user")).unwrap();
            child.kill().unwrap();
            child.wait().unwrap();

            mkdir_p("/tmp/idsrc");
            mkdir_p("/tmp/idmapped");
            std::fs::write("/tmp/idsrc/owned", b"x").unwrap();
            let clone = open_tree(
                CWD,
                "/tmp/idsrc",
                OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC,
            )
            .unwrap();
            mount_setattr(
                &clone,
                "",
                MountSetattrFlags::AT_EMPTY_PATH,
                &MountAttr {
                    attr_set: MountAttrFlags::IDMAP,
                    userns_fd: Some(userns.as_fd()),
                    ..MountAttr::default()
                },
            )
            .expect("mount_setattr MOUNT_ATTR_IDMAP on a detached clone");
            move_mount(
                &clone,
                "",
                CWD,
                "/tmp/idmapped",
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )
            .unwrap();
            // The idmap is in effect: the file, 0:0 on disk, shows as 1000:2000 through it.
            let md = std::fs::metadata("/tmp/idsrc/owned").unwrap();
            assert_eq!((md.uid(), md.gid()), (0, 0));
            let md = std::fs::metadata("/tmp/idmapped/owned").unwrap();
            assert_eq!((md.uid(), md.gid()), (1000, 2000));

            let s = sm(
                unique_id("/tmp/idmapped"),
                StatmountMask::MNT_BASIC | StatmountMask::MNT_UIDMAP | StatmountMask::MNT_GIDMAP,
            );
            assert!(s.mnt.unwrap().attr.contains(MountAttrFlags::IDMAP));
            assert_eq!(s.mnt_uidmap, Some(vec!["0 1000 1".to_string()]));
            assert_eq!(s.mnt_gidmap, Some(vec!["0 2000 1".to_string()]));

            // A mount that is not idmapped: the maps are absent or empty, never made up.
            let plain = sm(
                unique_id("/tmp"),
                StatmountMask::MNT_UIDMAP | StatmountMask::MNT_GIDMAP,
            );
            assert!(plain.mnt_uidmap.unwrap_or_default().is_empty());
            assert!(plain.mnt_gidmap.unwrap_or_default().is_empty());
        },
    );
}

// ---------------------------------------------------------------------------------------------
// UAPI.md's table "What the kernel does with unmounted and anonymous mounts", checked through
// these wrappers (the statmount-by-fd rows need Linux 7.0).

fn fd_link(fd: &impl AsRawFd) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
}

#[test]
fn uapi_unmounted_and_anonymous_mounts_without_by_fd() {
    // The rows that hold on any kernel with the new mount API.
    in_private_mount_ns("uapi_unmounted_and_anonymous_mounts_without_by_fd", || {
        mkdir_p("/tmp/live/sub");
        mkdir_p("/tmp/bind");
        std::fs::write("/tmp/live/sub/f", b"data").unwrap();
        bind("/tmp/live/sub", "/tmp/bind");
        let f = File::open("/tmp/bind/f").unwrap();
        let dir = open_path("/tmp/bind");
        assert_eq!(fd_link(&f), Path::new("/tmp/bind/f"));
        umount2("/tmp/bind", UnmountFlags::DETACH).unwrap();
        // Unmounted: the link is relative to the mount's root.
        assert_eq!(fd_link(&f), Path::new("/f"));
        // An unmounted mount cannot be cloned back from its own fd; without CLONE it can be
        // opened.
        assert_eq!(
            open_tree(
                &dir,
                "",
                OpenTreeFlags::CLONE | OpenTreeFlags::AT_EMPTY_PATH | OpenTreeFlags::CLOEXEC
            )
            .err(),
            Some(Errno::INVAL)
        );
        let again = open_tree(
            &dir,
            "",
            OpenTreeFlags::AT_EMPTY_PATH | OpenTreeFlags::CLOEXEC,
        )
        .expect("open_tree without CLONE on an unmounted mount");
        assert_eq!(
            fstatx_mnt_id_unique(&again).unwrap(),
            fstatx_mnt_id_unique(&f).unwrap()
        );

        // Anonymous: a clone never attached; files through it have relative links too.
        let clone = open_tree(
            CWD,
            "/tmp/live/sub",
            OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC,
        )
        .unwrap();
        let g = File::from(
            rustix::fs::openat(&clone, "f", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .unwrap(),
        );
        assert_eq!(fd_link(&g), Path::new("/f"));
        let clone_id = fstatx_mnt_id_unique(&clone).unwrap().unwrap();
        assert_eq!(fstatx_mnt_id_unique(&g).unwrap(), Some(clone_id));
        assert!(!listmount_all(LSMT_ROOT, None, ListmountFlags::empty())
            .unwrap()
            .contains(&clone_id));
    });
}

#[test]
fn uapi_unmounted_and_anonymous_mounts_by_fd() {
    let name = "uapi_unmounted_and_anonymous_mounts_by_fd";
    if !require(name, Feature::StatmountByFd) {
        return;
    }
    in_private_mount_ns(name, || {
        let mask = StatmountMask::MNT_POINT | StatmountMask::MNT_NS_ID | StatmountMask::MNT_ROOT;
        mkdir_p("/tmp/live/sub");
        mkdir_p("/tmp/bind");
        std::fs::write("/tmp/live/sub/f", b"data").unwrap();
        bind("/tmp/live/sub", "/tmp/bind");
        let f = File::open("/tmp/bind/f").unwrap();
        let attached = statmount_by_fd(&f, mask).unwrap();
        assert!(attached
            .mask
            .contains(StatmountMask::MNT_POINT | StatmountMask::MNT_NS_ID));
        umount2("/tmp/bind", UnmountFlags::DETACH).unwrap();
        let unmounted = statmount_by_fd(&f, mask).unwrap();
        assert_eq!((unmounted.mnt_point, unmounted.mnt_ns_id), (None, None));
        assert_eq!(unmounted.mnt_root.as_deref(), Some(Path::new("/live/sub")));

        // Anonymous with its mount fd open: ENOENT.
        let clone = open_tree(
            CWD,
            "/tmp/live/sub",
            OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC,
        )
        .unwrap();
        let g = File::from(
            rustix::fs::openat(&clone, "f", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .unwrap(),
        );
        let e = statmount_by_fd(&g, mask).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::NOENT), "{e}");
        // After the last mount fd is closed: exactly like MNT_DETACH. This is how a restore
        // rebuilds an unmounted bind without a temporary mountpoint (DESIGN.md).
        drop(clone);
        let after = statmount_by_fd(&g, mask).unwrap();
        assert_eq!((after.mnt_point, after.mnt_ns_id), (None, None));
        assert_eq!(after.mnt_root.as_deref(), Some(Path::new("/live/sub")));

        // Same for an fsmount()ed tmpfs.
        let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).unwrap();
        fsconfig_create(&fs).unwrap();
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).unwrap();
        let h = File::from(
            rustix::fs::openat(
                &mnt,
                "new",
                OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .unwrap(),
        );
        assert_eq!(
            statmount_by_fd(&h, mask).unwrap_err().errno(),
            Some(Errno::NOENT)
        );
        drop(mnt);
        let after = statmount_by_fd(&h, mask | StatmountMask::FS_TYPE).unwrap();
        assert_eq!((after.mnt_point, after.mnt_ns_id), (None, None));
        assert_eq!(after.fs_type.as_deref(), Some("tmpfs"));
        assert_eq!(after.mnt_root.as_deref(), Some(Path::new("/")));
    });
}
