//! Tables built from listmount+statmount and from mountinfo agree on this machine's real
//! namespaces and on a namespace the test builds (binds, sub-root binds, shared / slave /
//! private / unbindable, ro / nosuid / noexec, atime modes, overmounts, odd paths), and the
//! queries answer right on that namespace.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crcli_mountinfo::kernel::Namespace;
use crcli_mountinfo::{Atime, MountAttrs, MountTable, Origin, SbFlags};
use crcli_sys::mount::{
    fsconfig_create, fsmount, fsopen, mount_setattr, move_mount, FsMountFlags, FsOpenFlags,
    MountAttr, MountAttrFlags, MountSetattrFlags, MoveMountFlags,
};
use rustix::fs::CWD;
use rustix::mount::{mount, mount_bind, mount_change, MountFlags, MountPropagationFlags};

use crate::ns::ns_test;

fn tmpfs(source: &str, target: &Path, flags: MountFlags, data: &str) {
    let data = std::ffi::CString::new(data).unwrap();
    mount(source, target, "tmpfs", flags, Some(data.as_c_str()))
        .unwrap_or_else(|e| panic!("mount tmpfs on {target:?}: {e}"));
}

fn dir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {p:?}: {e}"));
    p.to_path_buf()
}

fn setattr(target: &Path, set: MountAttrFlags, clr: MountAttrFlags) {
    mount_setattr(
        CWD,
        target,
        MountSetattrFlags::empty(),
        &MountAttr {
            attr_set: set,
            attr_clr: clr,
            ..MountAttr::default()
        },
    )
    .unwrap_or_else(|e| panic!("mount_setattr {target:?}: {e}"));
}

fn assert_agree(sm: &MountTable, mi: &MountTable) {
    let diffs = sm.differences(mi);
    assert!(diffs.is_empty(), "tables differ: {diffs:#?}");
    assert_eq!(sm.len(), mi.len());
    assert!(!sm.is_empty());
}

#[test]
fn current_namespace_tables_agree() {
    // The machine's namespace is shared with everything else running: if a mount changes
    // between the two reads, read both again (a few times at most).
    let read = || {
        let sm = MountTable::from_listmount(None).expect("listmount+statmount of this namespace");
        let mi = MountTable::read_mountinfo(None).expect("mountinfo of this process");
        (sm, mi)
    };
    let (mut sm, mut mi) = read();
    for _ in 0..4 {
        if sm.differences(&mi).is_empty() {
            break;
        }
        (sm, mi) = read();
    }
    assert_eq!(sm.origin(), Origin::Statmount);
    assert_eq!(mi.origin(), Origin::MountInfo);
    assert_agree(&sm, &mi);
    // Every mount has its unique id from statmount, none from mountinfo.
    assert!(sm
        .mounts()
        .iter()
        .all(|m| m.id.is_some() && m.ns_id.is_some()));
    assert!(mi.mounts().iter().all(|m| m.id.is_none()));
}

/// Whether `pid` is a kernel thread (`PF_KTHREAD` in the flags field of /proc/PID/stat).
fn is_kernel_thread(pid: i32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The fields after the parenthesised command name: state, ppid, pgrp, session, tty_nr,
    // tpgid, flags.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(6))
        .and_then(|flags| flags.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

#[test]
fn every_namespace_of_this_machine_agrees() {
    // One process per distinct mount namespace whose root is the namespace's own (mountinfo
    // paths are relative to the process's root, statmount's to the namespace root).
    let mut seen = std::collections::HashSet::new();
    let mut checked = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // Kernel threads (kdevtmpfs has a private namespace of its own on 7.x) have no
        // user-visible view of their namespace: mountinfo and listmount are not comparable.
        if is_kernel_thread(pid) {
            continue;
        }
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/mnt")) else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/root"))
            .ok()
            .as_deref()
            != Some(Path::new("/"))
            || !seen.insert(ns)
        {
            continue;
        }
        let Ok(fd) = crcli_mountinfo::kernel::open_namespace(Some(pid)) else {
            continue; // the process exited
        };
        let ns_id = crcli_mountinfo::kernel::namespace_id(&fd).expect("NS_GET_MNTNS_ID");
        // Another process may change its mounts between the two reads: retry a few times.
        let mut last = Vec::new();
        let agreed = (0..5).any(|_| {
            let sm = MountTable::from_listmount(Some(ns_id)).expect("listmount by namespace id");
            let Ok(mi) = MountTable::read_mountinfo(Some(pid)) else {
                return true; // the process exited
            };
            last = sm.differences(&mi);
            last.is_empty() && sm.len() == mi.len()
        });
        assert!(agreed, "namespace of pid {pid}: {last:#?}");
        checked += 1;
    }
    assert!(checked >= 1);
}

ns_test! {
    fn built_namespace_tables_agree() {
        let t = Path::new("/tmp");
        let src = dir(&t.join("src"));
        tmpfs("src pool", &src, MountFlags::empty(), "size=1m,mode=750");
        dir(&src.join("sub/deeper"));
        std::fs::write(src.join("sub/file"), b"x").unwrap();

        // Binds: whole, sub-root, of a file.
        let bind = dir(&t.join("bind"));
        mount_bind(&src, &bind).unwrap();
        let subbind = dir(&t.join("subbind"));
        mount_bind(src.join("sub"), &subbind).unwrap();
        std::fs::write(t.join("filebind"), b"").unwrap();
        mount_bind(src.join("sub/file"), t.join("filebind")).unwrap();

        // ro / nosuid / noexec / nodev / nodiratime / nosymfollow bind.
        let ro = dir(&t.join("ro"));
        mount_bind(&src, &ro).unwrap();
        setattr(
            &ro,
            MountAttrFlags::RDONLY
                | MountAttrFlags::NOSUID
                | MountAttrFlags::NOEXEC
                | MountAttrFlags::NODEV
                | MountAttrFlags::NODIRATIME
                | MountAttrFlags::NOSYMFOLLOW,
            MountAttrFlags::empty(),
        );

        // atime modes and superblock flags.
        let noatime = dir(&t.join("noatime"));
        tmpfs("tmpfs", &noatime, MountFlags::NOATIME, "");
        let strict = dir(&t.join("strict"));
        tmpfs("tmpfs", &strict, MountFlags::STRICTATIME, "");
        let syncfs = dir(&t.join("sync"));
        tmpfs("tmpfs", &syncfs, MountFlags::SYNCHRONOUS | MountFlags::DIRSYNC, "");
        let rofs = dir(&t.join("rofs"));
        tmpfs("tmpfs", &rofs, MountFlags::RDONLY, "");

        // Propagation: shared with a peer, a slave of it, a slave that is also shared,
        // private, unbindable.
        let shared = dir(&t.join("shared"));
        tmpfs("tmpfs", &shared, MountFlags::empty(), "");
        mount_change(&shared, MountPropagationFlags::SHARED).unwrap();
        let peer = dir(&t.join("peer"));
        mount_bind(&shared, &peer).unwrap();
        let slave = dir(&t.join("slave"));
        mount_bind(&shared, &slave).unwrap();
        mount_change(&slave, MountPropagationFlags::DOWNSTREAM).unwrap();
        let slave_shared = dir(&t.join("slave-shared"));
        mount_bind(&shared, &slave_shared).unwrap();
        mount_change(&slave_shared, MountPropagationFlags::DOWNSTREAM).unwrap();
        mount_change(&slave_shared, MountPropagationFlags::SHARED).unwrap();
        let unbindable = dir(&t.join("unbindable"));
        tmpfs("tmpfs", &unbindable, MountFlags::empty(), "");
        mount_change(&unbindable, MountPropagationFlags::UNBINDABLE).unwrap();

        // Overmount: two tmpfs on one mount point, and a mount under the lower one that the
        // upper hides.
        let over = dir(&t.join("over"));
        tmpfs("lower", &over, MountFlags::empty(), "");
        let hidden = dir(&over.join("hidden"));
        tmpfs("hidden", &hidden, MountFlags::empty(), "");
        tmpfs("upper", &over, MountFlags::empty(), "");

        // Odd paths and sources.
        let odd_names: [&[u8]; 5] = [
            b"with space",
            b"new\nline",
            b"tab\there",
            b"back\\slash",
            b"\xffnot-utf8",
        ];
        for name in odd_names {
            let p = dir(&t.join(OsStr::from_bytes(name)));
            tmpfs("odd source\twith\\escapes", &p, MountFlags::empty(), "");
        }
        let empty_src = dir(&t.join("empty-source"));
        tmpfs("", &empty_src, MountFlags::empty(), "");
        // A tmpfs attached from fsmount without any source: the kernel reports none.
        let nosrc = dir(&t.join("no-source"));
        let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).unwrap();
        fsconfig_create(&fs).unwrap();
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::NOEXEC).unwrap();
        move_mount(&mnt, "", CWD, &nosrc, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).unwrap();

        // procfs reads the odd paths the same way (but for the escapes it leaves alone), except
        // the one that is not UTF-8, which it cannot read at all.
        let text = std::fs::read("/proc/self/mountinfo").unwrap();
        assert_eq!(crate::parse::assert_procfs_agrees(&text), 1);
        let sm = MountTable::from_listmount(None).expect("listmount+statmount");
        let mi = MountTable::read_mountinfo(None).expect("mountinfo");
        assert_agree(&sm, &mi);
        let merged = MountTable::of(Namespace::Current).expect("merged table");
        assert_eq!(merged.origin(), Origin::Both);
        assert!(merged.differences(&sm).is_empty());

        let at = |p: &Path| sm.mount_at(p).unwrap_or_else(|| panic!("no mount at {p:?}"));
        // Binds share the superblock; the sub-root bind's root is /sub.
        let srcm = at(&src);
        assert_eq!(srcm.source.as_deref(), Some(OsStr::new("src pool")));
        // Newer kernels (7.x with CONFIG_TMPFS_INODE64) also show their default `inode64`,
        // which the test did not ask for: compare what the test set.
        let set: Vec<_> = srcm.fs_options.iter().filter(|o| *o != "inode64").collect();
        assert_eq!(set, ["size=1024k", "mode=750"]);
        assert_eq!(at(&subbind).root, Path::new("/sub"));
        assert_eq!(at(&subbind.join("deeper")).root, Path::new("/sub"));
        assert_eq!(at(&t.join("filebind")).root, Path::new("/sub/file"));
        let sb: Vec<_> = sm.superblock_mounts(srcm.dev).iter().map(|m| m.mount_point.clone()).collect();
        assert_eq!(sb, [src.clone(), bind.clone(), subbind.clone(), t.join("filebind"), ro.clone()]);
        assert_eq!(
            at(&ro).attrs,
            MountAttrs::RDONLY
                | MountAttrs::NOSUID
                | MountAttrs::NOEXEC
                | MountAttrs::NODEV
                | MountAttrs::NODIRATIME
                | MountAttrs::NOSYMFOLLOW
        );
        assert_eq!(at(&bind).attrs, MountAttrs::empty());
        assert_eq!(at(&noatime).atime, Atime::NoAtime);
        assert_eq!(at(&strict).atime, Atime::StrictAtime);
        assert_eq!(at(&bind).atime, Atime::Relatime);
        assert_eq!(at(&syncfs).sb_flags, SbFlags::SYNCHRONOUS | SbFlags::DIRSYNC);
        assert_eq!(at(&rofs).sb_flags, SbFlags::RDONLY);
        assert_eq!(at(&rofs).attrs, MountAttrs::RDONLY);

        let (s, p, sl, ss, ub) = (at(&shared), at(&peer), at(&slave), at(&slave_shared), at(&unbindable));
        let group = s.propagation.shared.expect("shared");
        assert_eq!(p.propagation.shared, Some(group));
        assert_eq!(sl.propagation.master, Some(group));
        assert_eq!(sl.propagation.shared, None);
        assert_eq!(ss.propagation.master, Some(group));
        assert!(ss.propagation.shared.is_some_and(|g| g != group));
        assert!(ub.propagation.unbindable && ub.propagation.is_private());
        assert!(at(&bind).propagation.is_private());

        // Overmount: the walk sees the upper tmpfs, whose parent is the lower one; the hidden
        // mount is a child of the lower one and is not what the path reaches.
        let upper = at(&over.join("hidden/x"));
        assert_eq!(upper.source.as_deref(), Some(OsStr::new("upper")));
        let lower = sm.parent(upper).expect("the upper mount's parent");
        assert_eq!(lower.source.as_deref(), Some(OsStr::new("lower")));
        assert_eq!(lower.mount_point, over);
        let lower_children: Vec<_> = sm.children(lower).iter().map(|m| m.source.clone()).collect();
        assert_eq!(lower_children.len(), 2);
        assert!(lower_children.contains(&Some("hidden".into())));
        let chain: Vec<_> = sm.parent_chain(upper).iter().map(|m| m.mount_point.clone()).collect();
        assert_eq!(chain.first(), Some(&over));
        assert_eq!(chain.last().map(PathBuf::as_path), Some(Path::new("/")));

        for name in odd_names {
            let p = t.join(OsStr::from_bytes(name));
            let m = at(&p.join("inside"));
            assert_eq!(m.mount_point, p);
            assert_eq!(m.source.as_deref(), Some(OsStr::new("odd source\twith\\escapes")));
        }
        assert_eq!(at(&empty_src).source, None);
        assert_eq!(at(&nosrc).source, None);
        assert_eq!(at(&nosrc).attrs, MountAttrs::NOEXEC);
        eprintln!("built namespace: {} mounts agree", sm.len());
    }
}

ns_test! {
    fn another_namespace_by_fd_and_pid() {
        // This child is in its own namespace; its parent (the test harness, which `unshare`
        // exec'ed us from) is in the machine's. Build that namespace's table from here by fd
        // (listmount by namespace id, mountinfo of a process found in it) and by pid, and
        // compare with the parent's mountinfo.
        let parent = rustix::process::getppid().expect("a parent process").as_raw_nonzero().get();
        let host = crcli_mountinfo::kernel::open_namespace(Some(parent)).expect("open the parent's ns/mnt");
        let own = crcli_mountinfo::kernel::open_namespace(None).unwrap();
        let host_id = crcli_mountinfo::kernel::namespace_id(&host).unwrap();
        assert_ne!(host_id, crcli_mountinfo::kernel::namespace_id(&own).unwrap());
        let mut last = Vec::new();
        let agreed = (0..5).any(|_| {
            let by_fd = MountTable::of(Namespace::Fd(std::os::fd::AsFd::as_fd(&host))).unwrap();
            let by_pid = MountTable::of(Namespace::Pid(parent)).unwrap();
            let mi = MountTable::read_mountinfo(Some(parent)).unwrap();
            assert_eq!(by_fd.origin(), Origin::Both);
            assert_eq!(by_fd.ns_id(), Some(host_id));
            assert!(by_fd.mounts().iter().all(|m| m.ns_id == Some(host_id)));
            last = by_fd.differences(&mi);
            last.extend(by_pid.differences(&mi));
            last.is_empty()
        });
        assert!(agreed, "{last:#?}");
        // The other namespace's mount points are reached through the parent's root: its /tmp
        // is not our scratch tmpfs on /tmp.
        let by_pid = MountTable::of(Namespace::Pid(parent)).unwrap();
        let parent_root = std::path::PathBuf::from(format!("/proc/{parent}/root"));
        assert_eq!(by_pid.access_root(), Some(parent_root.as_path()));
        let tmp = std::path::Path::new("/tmp");
        assert_eq!(by_pid.reach(tmp), parent_root.join("tmp"));
        let theirs = by_pid.mount_at(tmp).expect("a mount under the parent's /tmp");
        let dev = |p: &std::path::Path| {
            crcli_mountinfo::DevId::from_dev(std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(p).unwrap()))
        };
        assert_eq!(dev(&by_pid.reach(tmp)), theirs.dev);
        assert_ne!(dev(tmp), theirs.dev, "our /tmp is the scratch tmpfs, not the parent's");
        let ours = MountTable::of(Namespace::Current).unwrap();
        assert_eq!(ours.access_root(), None);
        assert_eq!(ours.reach(tmp), tmp);
        // Our own scratch tmpfs on /tmp is not in the other namespace.
        let host_table = MountTable::from_listmount(Some(host_id)).unwrap();
        assert!(host_table.mounts().iter().all(|m| m.source.as_deref() != Some(OsStr::new("crcli-test"))));
    }
}

#[test]
fn namespace_fd_without_any_process() {
    // A namespace whose only process has exited, kept alive by our fd: statmount alone
    // describes it (no mountinfo to merge).
    let mut child = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sleep", "60"])
        .spawn()
        .expect("run unshare");
    let pid = child.id() as i32;
    let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let mut fd = None;
    for _ in 0..500 {
        // `unshare` has unshared once the link differs from ours.
        if std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l != own) {
            fd = Some(crcli_mountinfo::kernel::open_namespace(Some(pid)).unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let fd = fd.expect("the child entered a new mount namespace");
    let id = crcli_mountinfo::kernel::namespace_id(&fd).unwrap();
    let t = MountTable::of(Namespace::Fd(std::os::fd::AsFd::as_fd(&fd))).unwrap();
    assert_eq!(t.origin(), Origin::Statmount);
    assert_eq!(t.ns_id(), Some(id));
    assert!(t
        .mounts()
        .iter()
        .all(|m| m.ns_id == Some(id) && m.id.is_some()));
    // It is a private copy of ours: same mount points and types, other ids.
    let ours = MountTable::read_mountinfo(None).unwrap();
    let shape = |t: &MountTable| {
        let mut v: Vec<_> = t
            .mounts()
            .iter()
            .map(|m| (m.mount_point.clone(), m.fs_type.clone(), m.root.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(shape(&t), shape(&ours));
    // Copies get ids of their own; ours are still in use.
    assert!(t
        .mounts()
        .iter()
        .all(|m| ours.by_old_id(m.old_id).is_none()));
}
