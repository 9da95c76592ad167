//! The dump engine against real processes: a small C program (tests/progs/target.c, compiled
//! here with `cc`) builds a known state; the tests dump it and check the image, that the target
//! keeps running (or was killed), and that refused or failed dumps leave it untouched.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crcli_dump::{dump, DumpError, DumpOptions};
use crcli_image::{FileKind, Image, PagesId, PipeEnd, VmaBacking};

/// The target program, compiled by build.rs.
fn target_binary() -> &'static Path {
    Path::new(env!("CRCLI_DUMP_TARGET"))
}

/// A running target; killed and reaped when dropped.
struct Target {
    child: Child,
    pid: i32,
    dir: tempfile::TempDir,
}

impl Target {
    fn spawn(mode: &str) -> Target {
        Target::spawn_env(mode, &[])
    }

    fn spawn_env(mode: &str, env: &[(&str, &str)]) -> Target {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(target_binary())
            .arg(dir.path())
            .arg(mode)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn target");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read ready line");
        assert!(line.starts_with("ready "), "target said {line:?}");
        let pid = line[6..].trim().parse().expect("pid");
        assert_eq!(pid, child.id() as i32);
        Target { child, pid, dir }
    }

    fn count_lines(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("count"))
            .expect("read count")
            .lines()
            .count()
    }

    /// Waits until the target appended more lines: it runs.
    fn assert_counting(&self) {
        let before = self.count_lines();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count_lines() < before + 3 {
            assert!(
                Instant::now() < deadline,
                "pid {} stopped counting at {before}",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn maps(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/maps", self.pid)).expect("read maps")
    }

    fn status_field(&self, key: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("status");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)
                    .map(|v| v.trim_start_matches(':').trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {key} in status"))
    }

    /// The first 64 bytes of each executable mapping, through /proc/PID/mem.
    fn code_bytes(&self) -> Vec<Vec<u8>> {
        let mem = std::fs::File::open(format!("/proc/{}/mem", self.pid)).expect("open mem");
        let mut out = Vec::new();
        for line in self.maps().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f[1].contains('x') && !line.ends_with("[vsyscall]") {
                let start = u64::from_str_radix(f[0].split('-').next().unwrap(), 16).unwrap();
                let mut buf = vec![0u8; 64];
                mem.read_exact_at(&mut buf, start).expect("read code");
                out.push(buf);
            }
        }
        out
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn image_dir(t: &Target) -> PathBuf {
    t.dir.path().join("img")
}

#[test]
fn leave_running_dump_matches_the_process() {
    let t = Target::spawn("plain");
    let maps_before = t.maps();
    let code_before = t.code_bytes();
    let dir = image_dir(&t);
    let summary = dump(
        t.pid,
        &dir,
        &DumpOptions {
            leave_running: true,
        },
    )
    .expect("dump");
    assert!(summary.left_running);
    t.assert_counting();
    // Nothing of the dump is left in the process: same mappings, same code.
    assert_eq!(t.maps(), maps_before);
    assert_eq!(t.code_bytes(), code_before);

    let image = Image::open(&dir).expect("open image");
    assert_eq!(image.inventory().root_pid, t.pid as u32);
    let p = image.process(t.pid as u32).expect("process entry");

    // The mappings are those of /proc/PID/maps.
    let ranges: Vec<(u64, u64)> = maps_before
        .lines()
        .map(|l| {
            let (s, e) = l
                .split_whitespace()
                .next()
                .unwrap()
                .split_once('-')
                .unwrap();
            (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
            )
        })
        .collect();
    let image_ranges: Vec<(u64, u64)> = p.vmas.iter().map(|v| (v.start, v.end)).collect();
    assert_eq!(image_ranges, ranges);
    assert!(p.vmas.iter().any(|v| v.backing == VmaBacking::Heap));
    assert!(p.vmas.iter().any(|v| v.backing == VmaBacking::Stack));
    // The stack's VmFlags (smaps, read beside the page dump) reached the image: MAP_GROWSDOWN.
    assert!(p
        .vmas
        .iter()
        .any(|v| v.backing == VmaBacking::Stack && v.map_flags & 0x100 != 0));
    assert!(p.vmas.iter().any(|v| v.backing == VmaBacking::Vdso));
    assert!(p
        .vmas
        .iter()
        .any(|v| matches!(v.backing, VmaBacking::SharedAnonymous { size: 65536, .. })));

    // Registers: rip in an executable mapping; stopped in nanosleep (or the write between).
    let th = &p.threads[0];
    assert!(
        p.vmas
            .iter()
            .any(|v| v.prot & 4 != 0 && (v.start..v.end).contains(&th.regs.rip)),
        "rip {:#x}",
        th.regs.rip
    );
    assert_ne!(th.regs.fs_base, 0);
    assert!(th.xstate.size >= 576 && th.xstate.data.len() == th.xstate.size as usize);
    assert_eq!(th.xstate.features & 3, 3, "x87 and SSE are always enabled");
    assert!(th.rseq.is_some(), "glibc registers rseq");
    assert_ne!(th.robust_list.head, 0);
    assert_ne!(th.clear_child_tid, 0, "glibc sets clear_child_tid");

    // Signals.
    let usr1 = (libc::SIGUSR1 - 1) as usize;
    let usr2_bit = 1u64 << (libc::SIGUSR2 - 1);
    assert_eq!(p.sigactions.len(), 64);
    assert!(p.sigactions[usr1].handler > 1, "SIGUSR1 has a handler");
    assert_ne!(p.sigactions[usr1].flags & libc::SA_RESTART as u64, 0);
    assert_eq!(
        p.sigactions[(libc::SIGUSR2 - 1) as usize].handler,
        0,
        "SIG_DFL"
    );
    assert_ne!(th.sigmask & usr2_bit, 0, "SIGUSR2 blocked");
    assert_eq!(th.pending.mask, usr2_bit, "SIGUSR2 pending for the thread");
    assert_eq!(th.pending.queued.len(), 1);
    assert_eq!(
        i32::from_ne_bytes(th.pending.queued[0][..4].try_into().unwrap()),
        libc::SIGUSR2
    );
    assert_eq!(p.umask, 0o027);
    assert_eq!(p.rlimits.len(), 16);

    // Files.
    let fd = |n: u32| {
        p.fds
            .iter()
            .find(|f| f.fd == n)
            .unwrap_or_else(|| panic!("fd {n} missing"))
    };
    let file = |n: u32| image.file(fd(n).file).expect("file entry");
    assert_eq!(
        fd(3).file,
        fd(6).file,
        "dup shares one open file description"
    );
    assert!(fd(3).cloexec && !fd(6).cloexec);
    let count = file(3);
    assert_ne!(count.flags & libc::O_APPEND as u32, 0);
    assert_eq!(count.flags & libc::O_ACCMODE as u32, libc::O_WRONLY as u32);
    match &count.kind {
        FileKind::Regular(loc) => {
            let mount = image.mount(loc.mount).expect("mount entry");
            let full = mount
                .mountpoint
                .as_ref()
                .expect("attached")
                .as_path()
                .join(loc.path.as_path());
            assert_eq!(full, t.dir.path().join("count"));
        }
        other => panic!("fd 3 is {other:?}"),
    }
    let (pipe_r, pipe_w) = (file(4), file(5));
    let (
        FileKind::Pipe {
            pipe: a,
            end: PipeEnd::Read,
        },
        FileKind::Pipe {
            pipe: b,
            end: PipeEnd::Write,
        },
    ) = (&pipe_r.kind, &pipe_w.kind)
    else {
        panic!("fds 4, 5: {:?} {:?}", pipe_r.kind, pipe_w.kind)
    };
    assert_eq!(a, b, "both ends of one pipe");
    assert_eq!(image.pipe(*a).unwrap().buffered, b"pipe-data");
    let FileKind::Unlinked { location, extents } = &file(7).kind else {
        panic!("fd 7: {:?}", file(7).kind)
    };
    assert_eq!(location.size, (3 << 20) + 4);
    assert_eq!(file(7).pos, 5);
    let data = image.files_data().expect("files data");
    let mut content = Vec::new();
    for e in extents {
        let mut buf = vec![0u8; e.len as usize];
        data.read_extent(e, &mut buf, 0).expect("extent");
        content.push((e.offset, buf));
    }
    assert_eq!(
        content.first().map(|(o, b)| (*o, &b[..16])),
        Some((0, &b"unlinked-content"[..]))
    );
    assert!(content
        .iter()
        .any(|(o, b)| *o + b.len() as u64 == (3 << 20) + 4 && b.ends_with(b"tail")));
    let stored: u64 = content.iter().map(|(_, b)| b.len() as u64).sum();
    assert!(stored < 1 << 20, "the hole is not stored ({stored} bytes)");
    assert!(matches!(file(8).kind, FileKind::Directory(_)));
    assert!(matches!(file(9).kind, FileKind::Path(_)));
    match &file(10).kind {
        FileKind::Fifo { pipe, .. } => {
            assert_eq!(image.pipe(*pipe).unwrap().buffered, b"fifo-data")
        }
        other => panic!("fd 10 is {other:?}"),
    }
    // The pipe data is still there for the process (not consumed by the dump).
    let status = std::fs::read_to_string(format!("/proc/{}/fdinfo/4", t.pid)).unwrap();
    assert!(status.contains("flags"));
    assert!(matches!(
        image.file(p.cwd).unwrap().kind,
        FileKind::Directory(_)
    ));
    assert!(p.mm.exe_file.is_some());
    assert!(p.mm.exe_path.as_bytes().ends_with(b"dump-test-target"));
    assert!(p.mm.brk >= p.mm.start_brk && p.mm.start_brk != 0);
    assert!(!p.mm.auxv.is_empty() && p.mm.auxv.len() % 2 == 0);

    // Pages: the 4 MiB heap pattern and the shared memory pattern are in the image.
    let mut buf = vec![0u8; crcli_image::MAX_CHUNK_LEN as usize];
    let mut reader = image.pages(p.pages.expect("page stream")).expect("pages");
    let mut pattern_pages = 0;
    while let Some(chunk) = reader.next_chunk(&mut buf).expect("chunk") {
        pattern_pages += buf[..chunk.len]
            .chunks(4096)
            .filter(|pg| pg.iter().all(|&b| b == 0x5a))
            .count();
    }
    assert!(pattern_pages >= 1000, "{pattern_pages} heap pages found");
    // The PROT_NONE pages (unreadable for process_vm_readv) are saved too, through /proc/PID/mem.
    let hidden = p
        .vmas
        .iter()
        .find(|v| v.prot == 0 && v.end - v.start == 8192 && v.backing == VmaBacking::Anonymous);
    let hidden = hidden.expect("the 8 KiB PROT_NONE mapping");
    let mut reader = image.pages(p.pages.unwrap()).expect("pages");
    let mut hidden_bytes = 0;
    while let Some(chunk) = reader.next_chunk(&mut buf).expect("chunk") {
        for (i, pg) in buf[..chunk.len].chunks(4096).enumerate() {
            let addr = chunk.addr + i as u64 * 4096;
            if (hidden.start..hidden.end).contains(&addr) {
                assert!(pg.iter().all(|&b| b == 0x3c), "page {addr:#x}");
                hidden_bytes += 4096;
            }
        }
    }
    assert_eq!(hidden_bytes, 8192);
    // The read-only megabyte that was only read maps the zero page: present, but not saved.
    let readonly = p
        .vmas
        .iter()
        .find(|v| v.prot == 1 && v.end - v.start == 1 << 20 && v.backing == VmaBacking::Anonymous)
        .expect("the 1 MiB read-only mapping");
    let mut reader = image.pages(p.pages.unwrap()).expect("pages");
    while let Some(chunk) = reader.next_chunk(&mut buf).expect("chunk") {
        let end = chunk.addr + chunk.len as u64;
        assert!(
            end <= readonly.start || chunk.addr >= readonly.end,
            "zero pages saved at {:#x}",
            chunk.addr
        );
    }
    let shared = p
        .vmas
        .iter()
        .find_map(|v| match v.backing {
            VmaBacking::SharedAnonymous { content, .. } => Some(content),
            _ => None,
        })
        .unwrap();
    assert_ne!(shared, PagesId(1));
    let mut reader = image.pages(shared).expect("shared pages");
    let mut total = 0;
    while let Some(chunk) = reader.next_chunk(&mut buf).expect("chunk") {
        assert!(buf[..chunk.len].iter().all(|&b| b == 0xa7));
        total += chunk.len;
    }
    assert_eq!(total, 65536);
    assert!(summary.page_bytes >= (4 << 20) + 65536);
}

#[test]
fn default_dump_kills_the_process() {
    let mut t = Target::spawn("plain");
    let dir = image_dir(&t);
    let summary = dump(t.pid, &dir, &DumpOptions::default()).expect("dump");
    assert!(!summary.left_running);
    // The dump reaped it (the test is both its parent and its tracer).
    assert!(
        !Path::new(&format!("/proc/{}", t.pid)).exists()
            || t.child.try_wait().map(|s| s.is_some()).unwrap_or(true)
    );
    Image::open(&dir).expect("open image");
}

fn assert_refused_untouched(t: &Target, err: DumpError, want: &str) {
    assert!(
        err.to_string().contains(want),
        "error {err:?} does not say {want:?}"
    );
    t.assert_counting();
    assert!(
        !image_dir(t).exists(),
        "a failed dump left {}",
        image_dir(t).display()
    );
    // Not traced any more.
    assert_eq!(t.status_field("TracerPid"), "0");
}

#[test]
fn socket_is_refused_and_the_process_runs_on() {
    let t = Target::spawn("socket");
    let maps = t.maps();
    let code = t.code_bytes();
    let err = dump(t.pid, &image_dir(&t), &DumpOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pid {} fd 11: socket is not supported", t.pid)
    );
    assert_refused_untouched(&t, err, "socket");
    assert_eq!(t.maps(), maps);
    assert_eq!(t.code_bytes(), code);
    assert_eq!(
        t.status_field("SigBlk"),
        format!("{:016x}", 1u64 << (libc::SIGUSR2 - 1))
    );
}

#[test]
fn eventfd_is_refused() {
    let t = Target::spawn("eventfd");
    let err = dump(t.pid, &image_dir(&t), &DumpOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pid {} fd 11: eventfd is not supported", t.pid)
    );
    assert_refused_untouched(&t, err, "eventfd");
}

/// A process with a POSIX timer is refused by name (not dumped without it) and runs on.
#[test]
fn posix_timers_are_refused() {
    let t = Target::spawn("posixtimer");
    let timers = std::fs::read_to_string(format!("/proc/{}/timers", t.pid)).unwrap();
    assert_eq!(timers.lines().filter(|l| l.starts_with("ID:")).count(), 1);
    let err = dump(t.pid, &image_dir(&t), &DumpOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pid {}: POSIX timers (timer_create) are not supported (1 found)",
            t.pid
        )
    );
    assert_refused_untouched(&t, err, "POSIX timers");
}

/// The thread ids of `pid` (`/proc/PID/task`), sorted.
fn tasks(pid: i32) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("list tasks")
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    out.sort_unstable();
    out
}

/// A field of `/proc/PID/task/TID/status`.
fn task_status(pid: i32, tid: u32, key: &str) -> String {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).expect("task status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim_start_matches(':').trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in task status"))
}

#[test]
fn two_threads_are_dumped_each_with_its_own_state() {
    let t = Target::spawn("thread");
    let tids = tasks(t.pid);
    assert_eq!(tids.len(), 2, "the target runs a second thread");
    let code_before = t.code_bytes();
    let dir = image_dir(&t);
    dump(
        t.pid,
        &dir,
        &DumpOptions {
            leave_running: true,
        },
    )
    .expect("dump of a two-thread process");
    // Both threads run on, untraced, and nothing of the dump is left in the code.
    t.assert_counting();
    for &tid in &tids {
        assert_eq!(task_status(t.pid, tid, "TracerPid"), "0", "thread {tid}");
    }
    assert_eq!(t.code_bytes(), code_before);

    let image = Image::open(&dir).expect("open image");
    let p = image.process(t.pid as u32).expect("process entry");
    let mut image_tids: Vec<u32> = p.threads.iter().map(|th| th.tid).collect();
    assert_eq!(
        p.threads[0].tid, t.pid as u32,
        "the main thread comes first"
    );
    image_tids.sort_unstable();
    assert_eq!(image_tids, tids);
    let (main, other) = (&p.threads[0], &p.threads[1]);
    // Each thread's own state: TLS base, stack, rseq area, robust list, tid address.
    assert_ne!(main.regs.fs_base, other.regs.fs_base);
    assert_ne!(
        main.regs.rsp >> 20,
        other.regs.rsp >> 20,
        "different stacks"
    );
    for th in &p.threads {
        let rseq = th.rseq.expect("glibc registers rseq in every thread");
        // glibc keeps each thread's rseq area in its thread control block, next to fs_base.
        assert!(
            th.regs.fs_base.abs_diff(rseq.ptr) < 0x1_0000,
            "thread {}: rseq at {:#x}, fs_base {:#x}",
            th.tid,
            rseq.ptr,
            th.regs.fs_base
        );
        assert_ne!(th.robust_list.head, 0, "thread {}", th.tid);
        assert_ne!(th.clear_child_tid, 0, "thread {}", th.tid);
        assert_eq!(th.xstate.data.len(), main.xstate.data.len());
    }
    assert_ne!(main.rseq.unwrap().ptr, other.rseq.unwrap().ptr);
    assert_ne!(main.robust_list.head, other.robust_list.head);
    assert_ne!(main.clear_child_tid, other.clear_child_tid);
    // The second thread sits in pause(); its mask is its own (SIGUSR2 was blocked by the main
    // thread after it was created).
    let usr2_bit = 1u64 << (libc::SIGUSR2 - 1);
    assert_ne!(main.sigmask & usr2_bit, 0);
    assert_eq!(
        other.sigmask & usr2_bit,
        0,
        "the second thread blocks nothing"
    );
    assert_eq!(other.regs.orig_rax, libc::SYS_pause as u64, "in pause()");
    assert!(other.pending.queued.is_empty());
}

/// Threads that come and go while the dump seizes them (a thread that exits between the scan and
/// the seize, or before it stops, is left out; new ones are found by the re-scan).
#[test]
fn a_process_that_keeps_making_threads_is_dumped_and_runs_on() {
    let t = Target::spawn("churn");
    for round in 0..5 {
        let dir = t.dir.path().join(format!("img{round}"));
        dump(
            t.pid,
            &dir,
            &DumpOptions {
                leave_running: true,
            },
        )
        .unwrap_or_else(|e| panic!("dump {round} of a process making threads: {e}"));
        let image = Image::open(&dir).expect("open image");
        let p = image.process(t.pid as u32).expect("process entry");
        assert_eq!(p.threads[0].tid, t.pid as u32);
        assert!(
            p.threads.len() >= 2,
            "round {round}: {} threads",
            p.threads.len()
        );
        t.assert_counting();
        for tid in tasks(t.pid) {
            // A short-lived thread may end between the listing and the read.
            if let Ok(status) =
                std::fs::read_to_string(format!("/proc/{}/task/{tid}/status", t.pid))
            {
                assert!(
                    status.contains("TracerPid:\t0\n"),
                    "round {round}: thread {tid} is still traced"
                );
            }
        }
    }
}

#[test]
fn a_refused_two_thread_process_runs_on_with_every_thread_untraced() {
    let t = Target::spawn("thread+socket");
    let tids = tasks(t.pid);
    assert_eq!(tids.len(), 2);
    let code = t.code_bytes();
    let err = dump(t.pid, &image_dir(&t), &DumpOptions::default()).unwrap_err();
    assert_refused_untouched(&t, err, "socket is not supported");
    assert_eq!(t.code_bytes(), code);
    for &tid in &tids {
        assert_eq!(task_status(t.pid, tid, "TracerPid"), "0", "thread {tid}");
        let state = task_status(t.pid, tid, "State");
        assert!(
            state.starts_with('S') || state.starts_with('R'),
            "thread {tid} is {state}"
        );
    }
}

#[test]
fn bad_image_directories_fail_and_leave_the_process_running() {
    let t = Target::spawn("plain");
    let maps = t.maps();
    // The parent does not exist.
    let missing = t.dir.path().join("no/such/dir");
    let err = dump(t.pid, &missing, &DumpOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "image directory {}: its parent directory does not exist",
            missing.display()
        )
    );
    t.assert_counting();
    assert!(!missing.exists());
    // A file is in the way.
    let file = t.dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = dump(t.pid, &file, &DumpOptions::default()).unwrap_err();
    assert!(matches!(err, DumpError::ImageDir { .. }), "{err:?}");
    // A directory that is not empty.
    let err = dump(t.pid, t.dir.path(), &DumpOptions::default()).unwrap_err();
    assert!(
        err.to_string().ends_with("exists and is not empty"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    // A directory that is not writable: /proc.
    let err = dump(
        t.pid,
        Path::new("/proc/crcli-image"),
        &DumpOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DumpError::Image { .. }), "{err:?}");
    t.assert_counting();
    assert_eq!(t.maps(), maps);
    assert_eq!(t.status_field("TracerPid"), "0");
}

#[test]
fn bad_targets_are_refused() {
    let err = dump(
        i32::MAX - 1,
        Path::new("/tmp/unused"),
        &DumpOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pid {}: no such process", i32::MAX - 1)
    );
    let me = std::process::id() as i32;
    let err = dump(me, Path::new("/tmp/unused"), &DumpOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DumpError::BadTarget { .. } | DumpError::Unsupported { .. }
        ),
        "{err:?}"
    );
    // kthreadd (pid 2) has no memory.
    if std::fs::read_to_string("/proc/2/comm")
        .map(|c| c.trim() == "kthreadd")
        .unwrap_or(false)
    {
        let err = dump(2, Path::new("/tmp/unused"), &DumpOptions::default()).unwrap_err();
        assert!(err.to_string().contains("kernel thread"), "{err}");
    }
}

#[test]
fn an_empty_directory_is_replaced_by_the_image() {
    let t = Target::spawn("plain");
    let dir = image_dir(&t);
    std::fs::create_dir(&dir).unwrap();
    dump(
        t.pid,
        &dir,
        &DumpOptions {
            leave_running: true,
        },
    )
    .expect("dump into an empty directory");
    Image::open(&dir).expect("open image");
    // A failed dump puts the empty directory back.
    let s = Target::spawn("socket");
    let dir = image_dir(&s);
    std::fs::create_dir(&dir).unwrap();
    dump(s.pid, &dir, &DumpOptions::default()).unwrap_err();
    assert!(dir.is_dir() && std::fs::read_dir(&dir).unwrap().next().is_none());
    s.assert_counting();
}

#[test]
fn a_process_stopped_outside_any_syscall_is_dumped_through_borrowed_code() {
    let t = Target::spawn("busy");
    t.assert_counting();
    let code = t.code_bytes();
    let dir = image_dir(&t);
    dump(
        t.pid,
        &dir,
        &DumpOptions {
            leave_running: true,
        },
    )
    .expect("dump");
    t.assert_counting();
    assert_eq!(t.code_bytes(), code, "the borrowed code bytes are back");
    let image = Image::open(&dir).expect("open image");
    let th = &image.process(t.pid as u32).unwrap().threads[0];
    // Stopped in the loop (not in a syscall: the injected syscalls went through borrowed
    // code), or, rarely, in its write.
    assert!(
        th.regs.orig_rax == u64::MAX || th.regs.orig_rax == libc::SYS_write as u64,
        "{:x?}",
        th.regs
    );
}

#[test]
fn an_interrupted_sleep_is_recorded_as_the_kernel_shows_it() {
    // `sleep` sits in clock_nanosleep: the dump records orig_rax = the syscall and
    // rax = -ERESTART_RESTARTBLOCK (-516), for the restore to normalise.
    let mut child = Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if stat.contains(") S ") && wchan.contains("nanosleep") {
            break;
        }
        assert!(Instant::now() < deadline, "sleep never slept");
        std::thread::sleep(Duration::from_millis(5));
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let result = dump(
        pid,
        &img,
        &DumpOptions {
            leave_running: true,
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let still_sleeping = loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        if stat.contains(") S ") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.kill();
    let _ = child.wait();
    result.expect("dump sleep");
    assert!(still_sleeping, "sleep went back to sleep after the dump");
    let image = Image::open(&img).expect("open image");
    let regs = image.process(pid as u32).unwrap().threads[0].regs;
    assert_eq!(regs.orig_rax, libc::SYS_clock_nanosleep as u64, "{regs:x?}");
    assert_eq!(regs.rax as i64, -516, "{regs:x?}");
}

/// Starts the target in a private mount namespace of its own (unshare(1) makes / private
/// recursively) after running `pre` (bash) there.
fn spawn_in_namespace(pre: &str) -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    // Plain sh (busybox's in the VM): fds above 9 cannot be redirected there, so `pre` may
    // leave an fd at 9 and the target moves it to 20.
    let script = format!(
        "set -e; {pre}; TARGET_FD9_TO_20=1 exec {} {} plain",
        target_binary().display(),
        dir.path().display()
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn unshare");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready line");
    let pid = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("target said {line:?}"));
    Target {
        pid: pid.trim().parse().expect("pid"),
        child,
        dir,
    }
}

#[test]
fn a_process_in_its_own_mount_namespace_is_dumped() {
    // Its stdin and stderr are on mounts of the test's namespace, its other files on its own.
    let t = spawn_in_namespace("true");
    let dir = image_dir(&t);
    dump(
        t.pid,
        &dir,
        &DumpOptions {
            leave_running: true,
        },
    )
    .expect("dump");
    t.assert_counting();
    let image = Image::open(&dir).expect("open image");
    let p = image.process(t.pid as u32).unwrap();
    let own_ns = std::fs::metadata(format!("/proc/{}/ns/mnt", t.pid))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert_ne!(
        own_ns,
        std::fs::metadata("/proc/self/ns/mnt")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap()
    );
    assert!(p.fds.iter().any(|f| f.fd == 0));
    assert!(image.mounts().len() >= 2, "{:?}", image.mounts());
}

#[test]
fn a_file_on_a_detached_tmpfs_is_refused_or_dumped_as_unmounted() {
    // fd 20 is on a tmpfs that was detached with umount -l: its data lives only through the fd.
    let t = spawn_in_namespace(
        "m=$(mktemp -d); mount -t tmpfs crcli-test \"$m\"; echo x > \"$m/f\"; \
         exec 9<\"$m/f\"; umount -l \"$m\"; rmdir \"$m\"",
    );
    // Only statmount(STATMOUNT_BY_FD) (Linux 7.0) tells an unmounted mount from an anonymous
    // one. Without it the dump must refuse, saying so; with it (the VM) the mount is recorded
    // as unmounted, to be rebuilt as a fresh tmpfs filled with the dumped content.
    let by_fd =
        crcli_sys::features::Features::current().has(crcli_sys::features::Feature::StatmountByFd);
    if !by_fd {
        let err = dump(t.pid, &image_dir(&t), &DumpOptions::default()).unwrap_err();
        let text = err.to_string();
        let want = format!(
            "pid {} fd 20: a file on an unmounted or anonymous mount (mount ",
            t.pid
        );
        assert!(
            text.starts_with(&want) && text.ends_with("is not supported"),
            "{text}"
        );
        assert!(
            text.contains("lacks statmount(STATMOUNT_BY_FD) (Linux 7.0)"),
            "{text}"
        );
        assert_refused_untouched(&t, err, "unmounted");
        return;
    }
    let dir = image_dir(&t);
    dump(
        t.pid,
        &dir,
        &DumpOptions {
            leave_running: true,
        },
    )
    .expect("dump");
    t.assert_counting();
    let image = Image::open(&dir).expect("open image");
    let p = image.process(t.pid as u32).unwrap();
    let fd20 = p.fds.iter().find(|f| f.fd == 20).expect("fd 20");
    let FileKind::Regular(loc) = &image.file(fd20.file).unwrap().kind else {
        panic!("fd 20: {:?}", image.file(fd20.file))
    };
    let mount = image.mount(loc.mount).expect("mount entry");
    assert_eq!(mount.kind, crcli_image::MountKind::Unmounted, "{mount:?}");
    assert!(
        matches!(
            mount.rebuild,
            Some(crcli_image::RebuildPlan::LostSuperblock { .. })
        ),
        "{mount:?}"
    );
    // The inventory says what the dump relied on and what the rebuild will need.
    let used = &image.inventory().features;
    for f in [
        crcli_image::KernelFeature::StatmountByFd,
        crcli_image::KernelFeature::NewMountApi,
        crcli_image::KernelFeature::MountSetattr,
    ] {
        assert!(used.contains(&f), "{f:?} missing from {used:?}");
    }
}
