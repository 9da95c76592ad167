//! A sample image that uses every entry type and every variant, built with the public API.

use crcli_image::process::*;
use crcli_image::*;

/// Deterministic page content for page `n` of a stream.
pub fn page_fill(stream: u32, addr: u64) -> u8 {
    (addr / 4096)
        .wrapping_mul(31)
        .wrapping_add(u64::from(stream)) as u8
}

pub fn p(s: &str) -> ImagePath {
    ImagePath::try_from(s).unwrap()
}

pub fn o(s: &str) -> OsBytes {
    OsBytes::try_from(s).unwrap()
}

fn ts(secs: i64, nsecs: u32) -> Timestamp {
    Timestamp { secs, nsecs }
}

fn loc(mount: u32, path: &str, ino: u64, mode: u32, size: u64) -> FileLocation {
    FileLocation {
        mount: MountId(mount),
        path: p(path),
        dev: 0x2e,
        ino,
        mode,
        size,
        mtime: ts(1_700_000_000, 123_456_789),
    }
}

fn thread(tid: u32, ns_tid: u32) -> Thread {
    let regs = UserRegs {
        rip: 0x401000 + u64::from(tid),
        rsp: 0x7ffd_0000_1000,
        fs_base: 0x7f00_0000_0740,
        orig_rax: u64::MAX,
        cs: 0x33,
        ss: 0x2b,
        eflags: 0x246,
        ..UserRegs::default()
    };
    Thread {
        tid,
        ns_tid,
        comm: o("worker"),
        regs,
        xstate: XState {
            size: 64,
            features: 0x2e7,
            data: (0..64).map(|i| i as u8).collect(),
        },
        sigmask: 1 << 9,
        pending: PendingSignals {
            mask: 1 << 11,
            queued: vec![vec![0xab; SIGINFO_SIZE]],
        },
        sigaltstack: SigAltStack {
            sp: 0,
            flags: 2,
            size: 0,
        },
        rseq: Some(Rseq {
            ptr: 0x7f00_0000_0740 - 0x920,
            len: 32,
            sig: 0x5305_3053,
        }),
        robust_list: RobustList {
            head: 0x7f00_0000_0750,
            len: 24,
        },
        clear_child_tid: 0x7f00_0000_0a10,
        tls: vec![TlsDesc {
            entry_number: 12,
            base_addr: 0x1000,
            limit: 0xfffff,
            flags: 0x51,
        }],
        sched: Some(Sched {
            policy: 3,
            flags: 1,
            priority: 0,
            nice: 5,
            deadline: [0; 3],
            affinity: vec![0b101],
        }),
    }
}

/// The sample image, opened, and the entries that were written into it.
pub struct Written {
    pub image: Image,
    pub processes: Vec<Process>,
    pub files: Vec<FileEntry>,
    pub pipes: Vec<PipeEntry>,
    pub mounts: Vec<MountEntry>,
    pub fs: Vec<FsEntry>,
}

struct Recorder {
    w: ImageWriter,
    processes: Vec<Process>,
    files: Vec<FileEntry>,
    pipes: Vec<PipeEntry>,
    mounts: Vec<MountEntry>,
    fs: Vec<FsEntry>,
}

impl Recorder {
    fn add_process(&mut self, v: &Process) -> Result<()> {
        self.processes.push(v.clone());
        Ok(())
    }
    fn add_file(&mut self, v: &FileEntry) -> Result<()> {
        self.files.push(v.clone());
        Ok(())
    }
    fn add_pipe(&mut self, v: &PipeEntry) -> Result<()> {
        self.pipes.push(v.clone());
        Ok(())
    }
    fn add_mount(&mut self, v: &MountEntry) -> Result<()> {
        self.mounts.push(v.clone());
        Ok(())
    }
}

/// What a test may change in the sample's entries before they are written.
pub type Edit<'a> = &'a dyn Fn(&mut Vec<Process>, &mut Vec<FileEntry>, &mut Vec<MountEntry>);

/// Builds the sample image at `target` with `pages_len` bytes of pages in stream 1.
pub fn write_sample(target: &std::path::Path, pages_len: u64) -> Written {
    try_write_sample(target, pages_len, &|_, _, _| {}).unwrap()
}

fn fs_add(fw: &mut FsWriter<'_>, all: &mut Vec<FsEntry>, e: &FsEntry) -> Result<()> {
    all.push(e.clone());
    fw.add(e)
}

/// Builds the sample image, after `edit` changed its entries; returns the commit's result.
pub fn try_write_sample(
    target: &std::path::Path,
    pages_len: u64,
    edit: Edit<'_>,
) -> Result<Written> {
    let mut rec = Recorder {
        w: Image::create(target).unwrap(),
        processes: vec![],
        files: vec![],
        pipes: vec![],
        mounts: vec![],
        fs: vec![],
    };

    // Page streams: process memory (two runs, a gap between) and a shared anonymous object.
    let mut pw = rec.w.pages(PagesId(1)).unwrap();
    let mut buf = Vec::new();
    let mut addr = 0x7f00_0000_0000u64;
    let mut left = pages_len;
    while left > 0 {
        let n = left.min(3 << 20);
        buf.clear();
        buf.extend((0..n).map(|i| page_fill(1, addr + i)));
        pw.add(addr, &buf).unwrap();
        addr += n + 4096 * 16;
        left -= n;
    }
    pw.finish().unwrap();
    let mut pw = rec.w.pages(PagesId(2)).unwrap();
    pw.add(0, &vec![0x5a; 8192]).unwrap();
    pw.finish().unwrap();

    // Lost-superblock content.
    let mut fw = rec.w.fs_content(FsContentId(1)).unwrap();
    let entry = |path: &str, kind: FsEntryKind, mode: u32| FsEntry {
        path: p(path),
        kind,
        mode,
        uid: 1000,
        gid: 100,
        atime: ts(1_700_000_001, 1),
        mtime: ts(1_700_000_002, 999_999_999),
        xattrs: vec![],
        ino: 0,
    };
    fs_add(
        &mut fw,
        &mut rec.fs,
        &FsEntry {
            ino: 1,
            ..entry("", FsEntryKind::Directory, 0o1777)
        },
    )
    .unwrap();
    fs_add(
        &mut fw,
        &mut rec.fs,
        &entry("dir", FsEntryKind::Directory, 0o755),
    )
    .unwrap();
    let mut extents = fw.add_data(0, b"hello, lost superblock\n").unwrap();
    extents.extend(fw.add_data(1 << 20, &vec![7u8; 5000]).unwrap());
    fs_add(
        &mut fw,
        &mut rec.fs,
        &FsEntry {
            xattrs: vec![Xattr {
                name: o("user.crcli"),
                value: b"v\0alue".to_vec(),
            }],
            ino: 5,
            ..entry(
                "dir/data.bin",
                FsEntryKind::Regular {
                    size: (1 << 20) + 5000 + 4096,
                    extents,
                },
                0o640,
            )
        },
    )
    .unwrap();
    fs_add(
        &mut fw,
        &mut rec.fs,
        &entry(
            "dir/link",
            FsEntryKind::HardLink {
                target: p("dir/data.bin"),
            },
            0o640,
        ),
    )
    .unwrap();
    fs_add(
        &mut fw,
        &mut rec.fs,
        &entry(
            "sym",
            FsEntryKind::Symlink {
                target: o("../outside/\u{e9}"),
            },
            0o777,
        ),
    )
    .unwrap();
    fs_add(
        &mut fw,
        &mut rec.fs,
        &entry("fifo", FsEntryKind::Fifo, 0o600),
    )
    .unwrap();
    fs_add(
        &mut fw,
        &mut rec.fs,
        &entry("null", FsEntryKind::CharDevice { rdev: 0x103 }, 0o666),
    )
    .unwrap();
    fs_add(
        &mut fw,
        &mut rec.fs,
        &entry("loop", FsEntryKind::BlockDevice { rdev: 0x700 }, 0o660),
    )
    .unwrap();
    fs_add(
        &mut fw,
        &mut rec.fs,
        &entry("sock", FsEntryKind::Socket, 0o755),
    )
    .unwrap();
    fw.finish().unwrap();

    // Mounts: one of each kind and each rebuild plan.
    let base = MountEntry {
        id: MountId(1),
        kind: MountKind::Attached,
        unique_id: 0x2000_0001,
        old_id: 21,
        parent_unique_id: 0,
        parent: None,
        mnt_ns_id: Some(0x4000_0001),
        root: p("/"),
        mountpoint: Some(p("/")),
        fs_type: "ext4".into(),
        fs_subtype: None,
        source: Some(o("/dev/vda1")),
        super_options: "rw,relatime".into(),
        dev_major: 254,
        dev_minor: 1,
        attributes: 0,
        propagation: 1 << 20,
        peer_group: 1,
        master: 0,
        propagate_from: 0,
        rebuild: None,
        kept_fds: vec![],
    };
    rec.add_mount(&base).unwrap();
    rec.add_mount(&MountEntry {
        id: MountId(2),
        unique_id: 0x2000_0002,
        old_id: 22,
        parent_unique_id: 0x2000_0001,
        parent: Some(MountId(1)),
        mountpoint: Some(p("/src")),
        fs_type: "tmpfs".into(),
        fs_subtype: None,
        source: Some(o("tmpfs")),
        super_options: "rw,size=1024k".into(),
        dev_major: 0,
        dev_minor: 46,
        ..base.clone()
    })
    .unwrap();
    rec.add_mount(&MountEntry {
        id: MountId(3),
        kind: MountKind::Unmounted,
        unique_id: 0x2000_0003,
        old_id: 23,
        parent: None,
        mnt_ns_id: None,
        root: p("/sub"),
        mountpoint: None,
        attributes: 0x1 | 0x2,
        rebuild: Some(RebuildPlan::BindOfLive {
            live_mount_id: 0x2000_0002,
            live_mountpoint: p("/src"),
            subroot: p("sub"),
        }),
        ..base.clone()
    })
    .unwrap();
    rec.add_mount(&MountEntry {
        id: MountId(4),
        kind: MountKind::Unmounted,
        unique_id: 0x2000_0004,
        old_id: 24,
        parent: None,
        mnt_ns_id: None,
        root: p("/"),
        mountpoint: None,
        rebuild: Some(RebuildPlan::Remount {
            source: o("/dev/vdb"),
            fs_type: "ext4".into(),
            options: "errors=remount-ro".into(),
            subroot: p(""),
        }),
        ..base.clone()
    })
    .unwrap();
    rec.add_mount(&MountEntry {
        id: MountId(5),
        kind: MountKind::Anonymous,
        unique_id: 0x2000_0005,
        old_id: 25,
        parent: None,
        mnt_ns_id: None,
        root: p("/"),
        mountpoint: None,
        fs_type: "tmpfs".into(),
        source: None,
        rebuild: Some(RebuildPlan::LostSuperblock {
            fs_type: "tmpfs".into(),
            options: "size=1m".into(),
            content: FsContentId(1),
            subroot: p(""),
        }),
        kept_fds: vec![ProcessFd { pid: 100, fd: 4 }],
        ..base.clone()
    })
    .unwrap();

    // Pipes and files: every kind.
    rec.add_pipe(&PipeEntry {
        id: PipeId(1),
        capacity: 65536,
        buffered: b"in the pipe".to_vec(),
    })
    .unwrap();
    rec.add_pipe(&PipeEntry {
        id: PipeId(2),
        capacity: 4096,
        buffered: vec![],
    })
    .unwrap();
    let unlinked = rec.w.add_unlinked_data(4096, b"deleted but open").unwrap();
    let files = vec![
        FileKind::Directory(loc(1, "", 2, 0o40755, 4096)),
        FileKind::Regular(loc(2, "a.txt", 10, 0o100644, 12)),
        FileKind::Regular(loc(3, "b.txt", 11, 0o100600, 0)),
        FileKind::Directory(loc(3, "", 12, 0o40755, 60)),
        FileKind::Path(loc(5, "", 1, 0o41777, 80)),
        FileKind::Symlink(loc(5, "sym", 6, 0o120777, 13)),
        FileKind::CharDevice {
            location: loc(1, "dev/null", 4, 0o20666, 0),
            rdev: 0x103,
        },
        FileKind::BlockDevice {
            location: loc(1, "dev/loop0", 5, 0o60660, 0),
            rdev: 0x700,
        },
        FileKind::Fifo {
            location: loc(5, "fifo", 7, 0o10600, 0),
            pipe: PipeId(2),
        },
        FileKind::Pipe {
            pipe: PipeId(1),
            end: PipeEnd::Read,
        },
        FileKind::Pipe {
            pipe: PipeId(1),
            end: PipeEnd::Write,
        },
        FileKind::Unlinked {
            location: loc(2, "gone.tmp", 13, 0o100600, 4096 + 16),
            extents: unlinked,
        },
        FileKind::Regular(loc(5, "dir/data.bin", 5, 0o100640, (1 << 20) + 9096)),
        FileKind::Regular(loc(1, "usr/bin/prog", 99, 0o100755, 10_000)),
    ];
    for (i, kind) in files.into_iter().enumerate() {
        rec.add_file(&FileEntry {
            id: FileId(i as u32 + 1),
            flags: if i == 1 { 0o2002 } else { 0 },
            pos: if i == 1 { 5 } else { 0 },
            kind,
        })
        .unwrap();
    }

    // Two processes: a leader with two threads and its child.
    let mut sigactions = vec![SigAction::default(); NSIG];
    sigactions[1] = SigAction {
        handler: 0x401234,
        flags: 0x0400_0000 | 0x1000_0000,
        restorer: 0x7f00_0004_5678,
        mask: 1 << 14,
    };
    sigactions[12] = SigAction {
        handler: 1,
        ..SigAction::default()
    };
    let rlimits = (0..RLIM_NLIMITS as u64)
        .map(|i| Rlimit {
            cur: i * 1000,
            max: u64::MAX,
        })
        .collect();
    let vmas = vec![
        Vma {
            start: 0x400000,
            end: 0x402000,
            prot: PROT_READ | PROT_EXEC,
            map_flags: 0x02,
            madvise: 0,
            backing: VmaBacking::File {
                file: FileId(14),
                offset: 0,
            },
        },
        Vma {
            start: 0x600000,
            end: 0x621000,
            prot: PROT_READ | PROT_WRITE,
            map_flags: 0x02,
            madvise: 0,
            backing: VmaBacking::Heap,
        },
        Vma {
            start: 0x7f00_0000_0000,
            end: 0x7f00_1000_0000,
            prot: PROT_READ | PROT_WRITE,
            map_flags: 0x02 | 0x4000,
            madvise: MADV_BIT_DONTFORK | MADV_BIT_HUGEPAGE,
            backing: VmaBacking::Anonymous,
        },
        Vma {
            start: 0x7f00_2000_0000,
            end: 0x7f00_2000_2000,
            prot: PROT_READ | PROT_WRITE,
            map_flags: 0x01,
            madvise: 0,
            backing: VmaBacking::SharedAnonymous {
                content: PagesId(2),
                size: 8192,
                offset: 0,
            },
        },
        Vma {
            start: 0x7f00_3000_0000,
            end: 0x7f00_3000_1000,
            prot: PROT_READ,
            map_flags: 0x02,
            madvise: 0,
            backing: VmaBacking::File {
                file: FileId(13),
                offset: 4096,
            },
        },
        Vma {
            start: 0x7ffd_0000_0000,
            end: 0x7ffd_0002_1000,
            prot: PROT_READ | PROT_WRITE,
            map_flags: 0x02 | 0x100,
            madvise: 0,
            backing: VmaBacking::Stack,
        },
        Vma {
            start: 0x7ffd_1000_0000,
            end: 0x7ffd_1000_4000,
            prot: PROT_READ,
            map_flags: 0x02,
            madvise: 0,
            backing: VmaBacking::Vvar,
        },
        Vma {
            start: 0x7ffd_1000_4000,
            end: 0x7ffd_1000_6000,
            prot: PROT_READ,
            map_flags: 0x02,
            madvise: 0,
            backing: VmaBacking::VvarVclock,
        },
        Vma {
            start: 0x7ffd_1000_6000,
            end: 0x7ffd_1000_8000,
            prot: PROT_READ | PROT_EXEC,
            map_flags: 0x02,
            madvise: 0,
            backing: VmaBacking::Vdso,
        },
        Vma {
            start: 0xffff_ffff_ff60_0000,
            end: 0xffff_ffff_ff60_1000,
            prot: PROT_EXEC,
            map_flags: 0x02,
            madvise: 0,
            backing: VmaBacking::Vsyscall,
        },
    ];
    let leader = Process {
        pid: 100,
        ppid: 0,
        pgid: 100,
        sid: 100,
        ns_pid: 1,
        comm: o("sample\u{2603}"),
        threads: vec![thread(100, 1), thread(101, 4)],
        shared_pending: PendingSignals {
            mask: 1 << 9,
            queued: vec![],
        },
        sigactions,
        creds: Creds {
            uids: [0, 0, 0, 0],
            gids: [0, 0, 0, 0],
            groups: vec![0, 10],
            cap_inh: 0,
            cap_prm: 0x1ff_ffff_ffff,
            cap_eff: 0x1ff_ffff_ffff,
            cap_bnd: 0x1ff_ffff_ffff,
            cap_amb: 0,
            securebits: 0,
        },
        cwd: FileId(4),
        root: FileId(1),
        umask: 0o022,
        rlimits,
        personality: 0,
        dumpable: 1,
        no_new_privs: false,
        child_subreaper: true,
        exit_signal: 17,
        mm: MmInfo {
            start_code: 0x400000,
            end_code: 0x401fff,
            start_data: 0x600000,
            end_data: 0x600100,
            start_brk: 0x601000,
            brk: 0x621000,
            start_stack: 0x7ffd_0002_0000,
            arg_start: 0x7ffd_0002_0100,
            arg_end: 0x7ffd_0002_0110,
            env_start: 0x7ffd_0002_0110,
            env_end: 0x7ffd_0002_0200,
            auxv: vec![6, 4096, 0, 0],
            exe_path: p("/usr/bin/prog"),
            exe_file: Some(FileId(14)),
        },
        vmas,
        pages: Some(PagesId(1)),
        fds: (1..=13)
            .map(|i| Fd {
                fd: i - 1 + u32::from(i > 9) * 10,
                file: FileId(i),
                cloexec: i % 2 == 0,
            })
            .collect(),
        itimers: ITimers {
            real: ITimer {
                interval_us: 1_000_000,
                value_us: 1_500_000,
            },
            virt: ITimer {
                interval_us: 0,
                value_us: 250_000,
            },
            prof: ITimer::default(),
        },
    };
    let mut child = leader.clone();
    child.pid = 102;
    child.ppid = 100;
    child.ns_pid = 2;
    child.threads = vec![thread(102, 2)];
    child.pages = None;
    child.vmas.clear();
    child.fds = vec![Fd {
        fd: 0,
        file: FileId(10),
        cloexec: false,
    }];
    rec.add_process(&leader).unwrap();
    rec.add_process(&child).unwrap();

    let mut inv = Inventory::new(
        100,
        vec![KernelFeature::Statmount, KernelFeature::Listmount],
    );
    inv.crcli_version = "0.1.0".into();
    inv.dump_time = ts(1_763_800_000, 42);
    inv.kernel_release = "6.18.0-test".into();
    inv.arch = "x86_64".into();
    inv.tree = Tree {
        namespaces: Namespaces {
            own_pid_ns: true,
            uts: Some(UtsNames {
                hostname: o("sample-host"),
                domainname: o("(none)"),
            }),
            ids: vec![
                NamespaceId {
                    kind: NamespaceKind::Pid,
                    dev: 4,
                    ino: 4_026_532_900,
                    dumpers: false,
                },
                NamespaceId {
                    kind: NamespaceKind::Uts,
                    dev: 4,
                    ino: 4_026_532_901,
                    dumpers: false,
                },
                NamespaceId {
                    kind: NamespaceKind::Net,
                    dev: 4,
                    ino: 4_026_531_840,
                    dumpers: true,
                },
            ],
        },
        zombies: vec![Zombie {
            pid: 103,
            ns_pid: 3,
            ppid: 100,
            pgid: 103,
            sid: 100,
            comm: o("zombie"),
            exit_status: 7 << 8,
            exit_signal: 17,
        }],
        mount_ns: Some(sample_mount_ns()),
    };
    edit(&mut rec.processes, &mut rec.files, &mut rec.mounts);
    rec.processes
        .iter()
        .try_for_each(|x| rec.w.add_process(x))?;
    rec.files.iter().try_for_each(|x| rec.w.add_file(x))?;
    rec.pipes.iter().try_for_each(|x| rec.w.add_pipe(x))?;
    rec.mounts.iter().try_for_each(|x| rec.w.add_mount(x))?;
    let image = rec.w.commit(inv)?;
    Ok(Written {
        image,
        processes: rec.processes,
        files: rec.files,
        pipes: rec.pipes,
        mounts: rec.mounts,
        fs: rec.fs,
    })
}

/// A mount namespace holding every way of making a mount again.
fn sample_mount_ns() -> MountNamespace {
    let p = |s: &str| ImagePath::new(s.as_bytes().to_vec()).unwrap();
    let m = |id: u64, parent: u64, at: &str, fs: &str, source_kind: NsMountSource| NsMount {
        id,
        parent,
        mountpoint: p(at),
        root: p("/"),
        fs_type: fs.into(),
        source: Some(OsBytes::new(fs.as_bytes().to_vec()).unwrap()),
        super_options: "rw".into(),
        attributes: 0x2,
        propagation: mountns::MS_PRIVATE,
        peer_group: 0,
        master: 0,
        source_kind,
    };
    MountNamespace {
        ns_id: 0x1_0000_0042,
        mounts: vec![
            m(
                0x1_0000_0001,
                0,
                "/",
                "ext4",
                NsMountSource::HostCopy {
                    host_mountpoint: p("/"),
                    subroot: p(""),
                },
            ),
            m(
                0x1_0000_0002,
                0x1_0000_0001,
                "/proc",
                "proc",
                NsMountSource::Fresh {
                    options: String::new(),
                },
            ),
            m(
                0x1_0000_0003,
                0x1_0000_0001,
                "/data",
                "tmpfs",
                NsMountSource::Content {
                    options: "size=1048576".into(),
                    content: FsContentId(1),
                },
            ),
            NsMount {
                propagation: mountns::MS_SHARED,
                peer_group: 7,
                ..m(
                    0x1_0000_0004,
                    0x1_0000_0003,
                    "/data/ext",
                    "ext4",
                    NsMountSource::External { key: "ext".into() },
                )
            },
            NsMount {
                root: p("/sub"),
                ..m(
                    0x1_0000_0005,
                    0x1_0000_0001,
                    "/bound",
                    "tmpfs",
                    NsMountSource::NsBind {
                        of: 0x1_0000_0003,
                        subroot: p("sub"),
                    },
                )
            },
        ],
    }
}

/// A scratch directory on a tmpfs when there is one (tests that rewrite files thousands of
/// times would otherwise wait for ext4's flush-on-truncate), else in the default temp dir.
pub fn scratch() -> tempfile::TempDir {
    if std::path::Path::new("/dev/shm").is_dir() {
        if let Ok(d) = tempfile::tempdir_in("/dev/shm") {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}
