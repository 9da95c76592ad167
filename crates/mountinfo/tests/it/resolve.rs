//! `resolve_fd` on real attached, unmounted (MNT_DETACH) and anonymous (open_tree clone,
//! fsmount) mounts, each made in a private mount namespace.
//!
//! Classifying an unmounted mount needs `STATMOUNT_BY_FD` (Linux 7.0). Where the kernel lacks
//! it, those tests assert the "cannot tell" answer instead, print `SKIPPED` for the part they
//! could not check, and fail outright when `CRCLI_VM=1` (the VM must have the feature).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crcli_mountinfo::kernel::Namespace;
use crcli_mountinfo::{resolve_fd, AnonymousEvidence, MountAttrs, MountTable, Rebuild, Resolution};
use crcli_sys::features::{Feature, Features};
use crcli_sys::mount::{
    fsconfig_create, fsmount, fsopen, mount_setattr, open_tree, umount2, FsMountFlags, FsOpenFlags,
    MountAttr, MountAttrFlags, MountSetattrFlags, OpenTreeFlags, UnmountFlags,
};
use rustix::fs::{openat, Mode, OFlags, CWD};
use rustix::mount::{mount, mount_bind, MountFlags};

use crate::ns::ns_test;

fn has_by_fd(test: &str) -> bool {
    if Features::current().has(Feature::StatmountByFd) {
        return true;
    }
    assert_ne!(
        std::env::var("CRCLI_VM").as_deref(),
        Ok("1"),
        "{test}: STATMOUNT_BY_FD is missing inside the VM"
    );
    eprintln!(
        "SKIPPED {test}: classifying an unmounted mount needs STATMOUNT_BY_FD (Linux 7.0), kernel {} lacks it; checked the cannot-tell answer instead",
        Features::current().kernel_release()
    );
    false
}

/// A tmpfs at /tmp/src with /sub/file ("hello") and /sub/deeper/.
fn src_tmpfs() -> PathBuf {
    let src = PathBuf::from("/tmp/src");
    std::fs::create_dir_all(&src).unwrap();
    mount("src", &src, "tmpfs", MountFlags::empty(), None).unwrap();
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("sub/file"), b"hello").unwrap();
    src
}

fn table() -> MountTable {
    MountTable::of(Namespace::Current).expect("mount table of this namespace")
}

fn bind_of(rebuild: &Rebuild) -> (&Path, &Path) {
    match rebuild {
        Rebuild::BindOfLive { live, sub_root } => (&live.mount_point, sub_root),
        other => panic!("expected a bind of a live mount, got {other:?}"),
    }
}

fn assert_cannot_tell(r: &Resolution, rel_path: &str) {
    match r {
        Resolution::CannotTell { missing, fd } => {
            assert_eq!(*missing, Feature::StatmountByFd);
            assert_eq!(fd.path, Path::new(rel_path));
            assert!(fd.mnt_id.is_some());
        }
        other => panic!("expected CannotTell, got {other:?}"),
    }
}

ns_test! {
    fn attached_fds_resolve_to_their_mount() {
        let src = src_tmpfs();
        let bind = Path::new("/tmp/bind");
        std::fs::create_dir_all(bind).unwrap();
        mount_bind(src.join("sub"), bind).unwrap();
        let on_src = File::open(src.join("sub/file")).unwrap();
        let on_bind = File::open(bind.join("file")).unwrap();
        let t = table();
        for (f, mp, root) in [(&on_src, &*src, "/"), (&on_bind, bind, "/sub")] {
            match resolve_fd(f, &[&t]).unwrap() {
                Resolution::Attached { mount, fd } => {
                    assert_eq!(mount.mount_point, mp);
                    assert_eq!(mount.root, Path::new(root));
                    assert_eq!(mount.id, fd.mnt_id);
                    assert_eq!(Some(mount.old_id), fd.old_mnt_id);
                    assert_eq!(mount.dev, fd.dev);
                    assert_eq!(mount.attrs, fd.attrs);
                    assert_eq!(mount.atime, fd.atime);
                }
                other => panic!("expected Attached, got {other:?}"),
            }
        }
        // A table from mountinfo alone matches by old id.
        let mi = MountTable::read_mountinfo(None).unwrap();
        match resolve_fd(&on_bind, &[&mi]).unwrap() {
            Resolution::Attached { mount, .. } => assert_eq!(mount.mount_point, bind),
            other => panic!("expected Attached, got {other:?}"),
        }
        // A pipe lives on a kernel-internal mount.
        let (r, _w) = rustix::pipe::pipe().unwrap();
        assert!(matches!(resolve_fd(&r, &[&t]).unwrap(), Resolution::Internal { .. }));
        // So does a memfd, and a pidfd.
        let memfd = rustix::fs::memfd_create("test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        assert!(matches!(resolve_fd(&memfd, &[&t]).unwrap(), Resolution::Internal { .. }));
        let pidfd = crcli_sys::pidfd::pidfd_open(rustix::process::getpid(), crcli_sys::pidfd::PidfdFlags::empty()).unwrap();
        assert!(matches!(resolve_fd(&pidfd, &[&t]).unwrap(), Resolution::Internal { .. }));
    }
}

ns_test! {
    fn detached_bind_is_unmounted_or_cannot_tell() {
        let src = src_tmpfs();
        let b = Path::new("/tmp/b");
        std::fs::create_dir_all(b).unwrap();
        mount_bind(src.join("sub"), b).unwrap();
        mount_setattr(
            CWD,
            b,
            MountSetattrFlags::empty(),
            &MountAttr {
                attr_set: MountAttrFlags::RDONLY | MountAttrFlags::NOSUID,
                ..MountAttr::default()
            },
        )
        .unwrap();
        let f = File::open(b.join("file")).unwrap();
        umount2(b, UnmountFlags::DETACH).unwrap();
        let t = table();
        assert!(t.mounts().iter().all(|m| m.mount_point != b));
        let r = resolve_fd(&f, &[&t]).unwrap();
        if !has_by_fd("resolve::detached_bind_is_unmounted_or_cannot_tell") {
            assert_cannot_tell(&r, "/file");
            return;
        }
        match r {
            Resolution::Unmounted { mount, fd, rebuild } => {
                assert_eq!(mount.root, Path::new("/sub"));
                assert!(mount.attrs.contains(MountAttrs::RDONLY | MountAttrs::NOSUID));
                assert_eq!(mount.ns_id, None);
                assert_eq!(mount.id, fd.mnt_id);
                assert_eq!(bind_of(&rebuild), (&*src, Path::new("sub")));
            }
            other => panic!("expected Unmounted, got {other:?}"),
        }
    }
}

ns_test! {
    fn detached_file_bind_is_unmounted_or_cannot_tell() {
        let src = src_tmpfs();
        let fb = Path::new("/tmp/filebind");
        File::create(fb).unwrap();
        mount_bind(src.join("sub/file"), fb).unwrap();
        let f = File::open(fb).unwrap();
        umount2(fb, UnmountFlags::DETACH).unwrap();
        let t = table();
        let r = resolve_fd(&f, &[&t]).unwrap();
        if !has_by_fd("resolve::detached_file_bind_is_unmounted_or_cannot_tell") {
            assert_cannot_tell(&r, "/");
            return;
        }
        match r {
            Resolution::Unmounted { mount, rebuild, .. } => {
                assert_eq!(mount.root, Path::new("/sub/file"));
                assert_eq!(bind_of(&rebuild), (&*src, Path::new("sub/file")));
            }
            other => panic!("expected Unmounted, got {other:?}"),
        }
    }
}

ns_test! {
    fn detached_only_mount_is_lost_superblock_or_cannot_tell() {
        let only = Path::new("/tmp/only");
        std::fs::create_dir_all(only).unwrap();
        mount("only", only, "tmpfs", MountFlags::empty(), Some(c"size=64k")).unwrap();
        let mut f = File::create(only.join("data")).unwrap();
        f.write_all(b"only here").unwrap();
        umount2(only, UnmountFlags::DETACH).unwrap();
        let t = table();
        let r = resolve_fd(&f, &[&t]).unwrap();
        if !has_by_fd("resolve::detached_only_mount_is_lost_superblock_or_cannot_tell") {
            assert_cannot_tell(&r, "/data");
            return;
        }
        match r {
            Resolution::Unmounted { mount, rebuild, .. } => {
                assert_eq!(mount.root, Path::new("/"));
                assert_eq!(mount.fs_type, "tmpfs");
                match rebuild {
                    Rebuild::LostSuperblock { fs_type, options } => {
                        assert_eq!(fs_type.as_deref(), Some("tmpfs"));
                        assert!(options.iter().any(|o| o == "size=64k"), "{options:?}");
                    }
                    other => panic!("expected LostSuperblock, got {other:?}"),
                }
            }
            other => panic!("expected Unmounted, got {other:?}"),
        }
    }
}

fn expected_evidence() -> AnonymousEvidence {
    if Features::current().has(Feature::StatmountByFd) {
        AnonymousEvidence::StatmountByFdEnoent
    } else {
        AnonymousEvidence::CloneAllowed
    }
}

ns_test! {
    fn open_tree_clone_is_anonymous() {
        let src = src_tmpfs();
        let mfd = open_tree(CWD, src.join("sub"), OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC)
            .expect("open_tree clone");
        // Attributes set on the clone are seen through statfs.
        mount_setattr(
            &mfd,
            "",
            MountSetattrFlags::AT_EMPTY_PATH,
            &MountAttr {
                attr_set: MountAttrFlags::RDONLY | MountAttrFlags::NOEXEC | MountAttrFlags::NOATIME,
                attr_clr: MountAttrFlags::_ATIME,
                ..MountAttr::default()
            },
        )
        .unwrap();
        let file = openat(&mfd, "file", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let dir = openat(&mfd, "deeper", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let t = table();
        let mut ids = Vec::new();
        for (fd, path) in [(&mfd, "/"), (&file, "/file"), (&dir, "/deeper")] {
            match resolve_fd(fd, &[&t]).unwrap() {
                Resolution::Anonymous { fd, same_superblock, root, evidence, rebuild } => {
                    assert_eq!(fd.path, Path::new(path));
                    assert_eq!(evidence, expected_evidence());
                    assert_eq!(fd.attrs, MountAttrs::RDONLY | MountAttrs::NOEXEC);
                    assert_eq!(fd.atime, crcli_mountinfo::Atime::NoAtime);
                    assert_eq!(root.as_deref(), Some(Path::new("/sub")));
                    assert_eq!(same_superblock.unwrap().mount_point, src);
                    assert_eq!(bind_of(&rebuild), (&*src, Path::new("sub")));
                    ids.push(fd.mnt_id);
                }
                other => panic!("expected Anonymous for {path}, got {other:?}"),
            }
        }
        assert!(ids.iter().all(|id| id.is_some() && *id == ids[0]));
        // The probe changed nothing: the source mount is still the only one of its superblock.
        let after = table();
        assert_eq!(after.superblock_mounts(t.mount_at(&src).unwrap().dev).len(), 1);
        assert!(t.differences(&after).is_empty());
    }
}

ns_test! {
    fn fsmount_never_attached_is_anonymous_lost_superblock() {
        let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).unwrap();
        fsconfig_create(&fs).unwrap();
        let mfd = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).unwrap();
        let file = openat(&mfd, "created", OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC, Mode::from_raw_mode(0o600)).unwrap();
        let t = table();
        for fd in [&mfd, &file] {
            match resolve_fd(fd, &[&t]).unwrap() {
                Resolution::Anonymous { same_superblock, evidence, rebuild, .. } => {
                    assert_eq!(evidence, expected_evidence());
                    assert_eq!(same_superblock, None);
                    assert_eq!(
                        rebuild,
                        Rebuild::LostSuperblock { fs_type: Some("tmpfs".into()), options: vec![] }
                    );
                }
                other => panic!("expected Anonymous, got {other:?}"),
            }
        }
    }
}

ns_test! {
    fn clone_whose_mount_fd_closed_is_unmounted_or_cannot_tell() {
        let src = src_tmpfs();
        let mfd = open_tree(CWD, src.join("sub"), OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC).unwrap();
        let file = openat(&mfd, "file", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        drop(mfd);
        let t = table();
        let r = resolve_fd(&file, &[&t]).unwrap();
        if !has_by_fd("resolve::clone_whose_mount_fd_closed_is_unmounted_or_cannot_tell") {
            assert_cannot_tell(&r, "/file");
            return;
        }
        match r {
            Resolution::Unmounted { mount, rebuild, .. } => {
                assert_eq!(mount.root, Path::new("/sub"));
                assert_eq!(bind_of(&rebuild), (&*src, Path::new("sub")));
            }
            other => panic!("expected Unmounted, got {other:?}"),
        }
    }
}

ns_test! {
    fn detached_block_device_mount_is_remountable_or_cannot_tell() {
        // An ext2/ext4 image on an autoclear loop device (released when its superblock goes).
        // The tools are userspace, not kernel features: without them the test says so.
        let test = "resolve::detached_block_device_mount_is_remountable_or_cannot_tell";
        let img = Path::new("/tmp/disk.img");
        File::create(img).unwrap().set_len(8 << 20).unwrap();
        let run = |c: &mut std::process::Command| {
            c.output().map_or_else(|e| Err(e.to_string()), |o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&o.stderr).into_owned())
                }
            })
        };
        let made = [("mkfs.ext4", &["-q", "-F"][..]), ("mke2fs", &["-q", "-F"][..]), ("mke2fs", &[][..])]
            .iter()
            .find_map(|(tool, args)| run(std::process::Command::new(tool).args(*args).arg(img)).ok());
        let disk = Path::new("/tmp/disk");
        std::fs::create_dir_all(disk).unwrap();
        let mounted = made.ok_or_else(|| "no mkfs.ext4 or mke2fs".to_owned()).and_then(|()| {
            run(std::process::Command::new("mount").args(["-o", "loop"]).arg(img).arg(disk))
        });
        if let Err(why) = mounted {
            eprintln!("SKIPPED {test}: cannot make a loop-device file system here: {}", why.trim());
            return;
        }
        std::fs::create_dir_all(disk.join("sub")).unwrap();
        std::fs::write(disk.join("sub/file"), b"on disk").unwrap();
        let db = Path::new("/tmp/db");
        std::fs::create_dir_all(db).unwrap();
        mount_bind(disk.join("sub"), db).unwrap();
        let f = File::open(db.join("file")).unwrap();
        let t0 = table();
        let on_disk = t0.mount_at(disk).unwrap();
        let source = on_disk.source.clone().unwrap();
        let disk_type = on_disk.fs_type.clone();
        umount2(db, UnmountFlags::DETACH).unwrap();
        umount2(disk, UnmountFlags::DETACH).unwrap();
        let t = table();
        let r = resolve_fd(&f, &[&t]).unwrap();
        if !has_by_fd(test) {
            assert_cannot_tell(&r, "/file");
            return;
        }
        match r {
            Resolution::Unmounted { mount, rebuild, .. } => {
                assert_eq!(mount.root, Path::new("/sub"));
                match rebuild {
                    Rebuild::Remount { source: s, fs_type, sub_root, .. } => {
                        assert_eq!(s, source);
                        assert_eq!(fs_type, disk_type);
                        assert_eq!(sub_root, Path::new("sub"));
                    }
                    other => panic!("expected Remount, got {other:?}"),
                }
            }
            other => panic!("expected Unmounted, got {other:?}"),
        }
    }
}

ns_test! {
    fn anonymous_root_is_not_fooled_by_a_bind_inside_the_live_mount() {
        // /tmp/src/other/deeper is a bind of /tmp/src/sub/deeper: the same directory shows at
        // a second path inside the live mount, but through another mount.
        let src = src_tmpfs();
        for name in ["a", "other", "z"] {
            std::fs::create_dir_all(src.join(name).join("deeper")).unwrap();
            mount_bind(src.join("sub/deeper"), src.join(name).join("deeper")).unwrap();
        }
        let mfd = open_tree(CWD, src.join("sub"), OpenTreeFlags::CLONE | OpenTreeFlags::CLOEXEC).unwrap();
        let dir = openat(&mfd, "deeper", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let t = table();
        match resolve_fd(&dir, &[&t]).unwrap() {
            Resolution::Anonymous { root, rebuild, .. } => {
                assert_eq!(root.as_deref(), Some(Path::new("/sub")));
                assert_eq!(bind_of(&rebuild), (&*src, Path::new("sub")));
            }
            other => panic!("expected Anonymous, got {other:?}"),
        }
    }
}
