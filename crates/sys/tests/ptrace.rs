//! Tests of `crcli_sys::ptrace` and `crcli_sys::process_vm` against real processes: a `sleep`
//! child is seized, stopped, inspected, has syscalls injected into it and is left running.

use std::io::{IoSlice, IoSliceMut};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crcli_sys::process_vm::{self, process_vm_readv, process_vm_writev, RemoteIoVec};
use crcli_sys::ptrace::{
    PtraceError, PtraceOptions, SigQueue, Tracee, WaitStatus, PTRACE_EVENT_STOP,
};

/// A child process killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn spawn() -> Sleeper {
        let child = Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        let me = Sleeper(child);
        // Let it reach its nanosleep.
        let deadline = Instant::now() + Duration::from_secs(10);
        while me.state() != 'S' {
            assert!(Instant::now() < deadline, "sleep never went to sleep");
            std::thread::sleep(Duration::from_millis(5));
        }
        me
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// The state letter of /proc/PID/stat.
    fn state(&self) -> char {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("read stat");
        let after = &stat[stat.rfind(')').expect("comm end") + 2..];
        after.chars().next().expect("state")
    }

    fn maps(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/maps", self.pid())).expect("read maps")
    }

    /// The start of the first executable file mapping (not vdso/vsyscall).
    fn exec_addr(&self) -> u64 {
        for line in self.maps().lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields[1].contains('x') && fields.len() >= 6 && fields[5].starts_with('/') {
                let start = fields[0].split('-').next().expect("range");
                return u64::from_str_radix(start, 16).expect("hex");
            }
        }
        panic!("no executable mapping in\n{}", self.maps());
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn seize_stopped(child: &Sleeper) -> Tracee {
    let tracee = Tracee::seize(child.pid(), PtraceOptions::empty()).expect("seize");
    let status = tracee.interrupt_and_wait().expect("interrupt");
    assert!(
        matches!(
            status,
            WaitStatus::Stopped {
                event: PTRACE_EVENT_STOP,
                ..
            }
        ),
        "unexpected stop {status:?}"
    );
    tracee
}

/// Waits until the process is back in its sleep, i.e. running on untraced.
fn assert_sleeps_again(child: &Sleeper) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = child.state();
        if state == 'S' {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process state stayed {state:?} after detach"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

const PROT_RW: u64 = (libc::PROT_READ | libc::PROT_WRITE) as u64;
const MAP_PRIV_ANON: u64 = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;

#[test]
fn interrupt_inject_getpid_mmap_and_detach() {
    let child = Sleeper::spawn();
    let tracee = seize_stopped(&child);
    assert_eq!(
        child.state(),
        't',
        "a seized, interrupted process is in a trace stop"
    );

    let before = tracee.get_regs().expect("regs");
    // Stopped inside clock_nanosleep, which the stop interrupted.
    assert_eq!(
        before.orig_rax,
        libc::SYS_clock_nanosleep as u64,
        "regs {before:x?}"
    );
    assert_eq!(
        before.rax as i64, -516,
        "ERESTART_RESTARTBLOCK expected, regs {before:x?}"
    );
    assert!(before.fs_base != 0, "glibc sets fs_base");
    let mask_before = tracee.get_sigmask().expect("sigmask");

    let code = child.exec_addr();
    let word = tracee.peek_data(code).expect("peek");
    let borrow = tracee.borrow_code(code).expect("borrow");
    assert_eq!(tracee.syscall_site(), Some(code));
    let poked = tracee.peek_data(code).expect("peek");
    assert_eq!(&poked.to_ne_bytes()[..3], &[0x0f, 0x05, 0xcc]);
    assert_eq!(&poked.to_ne_bytes()[3..], &word.to_ne_bytes()[3..]);

    let pid = tracee
        .inject_syscall(libc::SYS_getpid, [0; 6])
        .expect("inject getpid");
    assert_eq!(pid, i64::from(child.pid()));

    let addr = tracee
        .inject_syscall_checked(
            libc::SYS_mmap,
            [0, 8192, PROT_RW, MAP_PRIV_ANON, u64::MAX, 0],
        )
        .expect("inject mmap");
    assert_eq!(addr % 4096, 0);
    let range = format!("{addr:x}-{:x} rw-p", addr + 8192);
    assert!(
        child.maps().contains(&range),
        "{range} not in\n{}",
        child.maps()
    );

    // Bulk memory: write two pieces into two places with one call, read them back with one.
    let a = [0xa5u8; 100];
    let b = *b"crcli process_vm";
    let n = process_vm_writev(
        child.pid(),
        &[IoSlice::new(&a), IoSlice::new(&b)],
        &[
            RemoteIoVec {
                base: addr as usize,
                len: a.len(),
            },
            RemoteIoVec {
                base: addr as usize + 5000,
                len: b.len(),
            },
        ],
    )
    .expect("writev");
    assert_eq!(n, a.len() + b.len());
    let mut ra = [0u8; 100];
    let mut rb = [0u8; 16];
    let n = process_vm_readv(
        child.pid(),
        &mut [IoSliceMut::new(&mut ra), IoSliceMut::new(&mut rb)],
        &[
            RemoteIoVec {
                base: addr as usize,
                len: 100,
            },
            RemoteIoVec {
                base: addr as usize + 5000,
                len: 16,
            },
        ],
    )
    .expect("readv");
    assert_eq!(n, 116);
    assert_eq!(ra, a);
    assert_eq!(rb, b);
    // PEEKDATA sees the same memory; POKEDATA changes it.
    assert_eq!(
        tracee.peek_data(addr + 5000).expect("peek").to_ne_bytes(),
        b[..8]
    );
    tracee
        .poke_data(addr + 8, 0x1122_3344_5566_7788)
        .expect("poke");
    let mut word_back = [0u8; 8];
    process_vm::read_exact(child.pid(), addr as usize + 8, &mut word_back).expect("read");
    assert_eq!(u64::from_ne_bytes(word_back), 0x1122_3344_5566_7788);

    // Code run in one go: getpid() twice, the results ORed into r13 and r12, then int3.
    tracee
        .inject_syscall_checked(
            libc::SYS_mprotect,
            [
                addr,
                8192,
                (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
                0,
                0,
                0,
            ],
        )
        .expect("mprotect rwx");
    let stub: [u8; 21] = [
        0xb8, 39, 0, 0, 0, // mov eax, 39 (getpid)
        0x0f, 0x05, // syscall
        0x49, 0x89, 0xc5, // mov r13, rax
        0xb8, 39, 0, 0, 0, // mov eax, 39
        0x0f, 0x05, // syscall
        0x49, 0x89, 0xc4, // mov r12, rax
        0xcc, // int3
    ];
    let at = addr + 6000;
    let regs_before = tracee.get_regs().expect("regs");
    process_vm_writev(
        child.pid(),
        &[IoSlice::new(&stub)],
        &[RemoteIoVec {
            base: at as usize,
            len: stub.len(),
        }],
    )
    .expect("write code");
    let at_trap = tracee
        .run_code(at, at + stub.len() as u64)
        .expect("run code");
    assert_eq!(at_trap.r13, child.pid() as u64);
    assert_eq!(at_trap.r12, child.pid() as u64);
    assert_eq!(
        tracee.get_regs().expect("regs"),
        regs_before,
        "registers put back after run_code"
    );
    // The int3 must be where the caller says the code ends.
    assert!(matches!(
        tracee.run_code(at, at + 3),
        Err(PtraceError::UnexpectedStop { .. })
    ));
    assert_eq!(
        tracee.get_regs().expect("regs"),
        regs_before,
        "registers put back after a failed run_code"
    );

    let ret = tracee
        .inject_syscall(libc::SYS_munmap, [addr, 8192, 0, 0, 0, 0])
        .expect("munmap");
    assert_eq!(ret, 0);
    assert!(!child.maps().contains(&range), "munmap left {range}");

    // A failing syscall: close(-1) is EBADF.
    match tracee.inject_syscall_checked(libc::SYS_close, [u64::MAX, 0, 0, 0, 0, 0]) {
        Err(PtraceError::Injected { source, .. }) => assert_eq!(source, rustix::io::Errno::BADF),
        other => panic!("close(-1) gave {other:?}"),
    }

    borrow.release().expect("release");
    assert_eq!(tracee.syscall_site(), None);
    assert_eq!(
        tracee.peek_data(code).expect("peek"),
        word,
        "code bytes put back"
    );
    assert_eq!(
        tracee.get_regs().expect("regs"),
        before,
        "registers put back"
    );
    assert_eq!(
        tracee.get_sigmask().expect("sigmask"),
        mask_before,
        "mask put back"
    );

    tracee.detach(0).expect("detach");
    assert_sleeps_again(&child);
    // It is not traced any more: seizing again works.
    let again = Tracee::seize(child.pid(), PtraceOptions::empty()).expect("seize again");
    again.interrupt_and_wait().expect("interrupt again");
    again.detach(0).expect("detach again");
    assert_sleeps_again(&child);
}

#[test]
fn dropped_borrow_puts_code_back() {
    let child = Sleeper::spawn();
    let tracee = seize_stopped(&child);
    let code = child.exec_addr();
    let word = tracee.peek_data(code).expect("peek");
    {
        let _borrow = tracee.borrow_code(code).expect("borrow");
        assert_ne!(tracee.peek_data(code).expect("peek"), word);
    }
    assert_eq!(tracee.peek_data(code).expect("peek"), word);
    match tracee.inject_syscall(libc::SYS_getpid, [0; 6]) {
        Err(PtraceError::NoSyscallSite { .. }) => {}
        other => panic!("inject without a site gave {other:?}"),
    }
    tracee.detach(0).expect("detach");
    assert_sleeps_again(&child);
}

#[test]
fn xstate_sigmask_rseq() {
    let child = Sleeper::spawn();
    let tracee = seize_stopped(&child);

    let xstate = tracee.get_xstate().expect("xstate");
    // The legacy FXSAVE area (512) plus the XSAVE header (64) at least.
    assert!(xstate.len() >= 576, "xstate is {} bytes", xstate.len());
    // MXCSR (offset 24) holds the default 0x1f80 in a program that did not change it.
    assert_eq!(
        u32::from_ne_bytes(xstate[24..28].try_into().unwrap()) & 0xffff,
        0x1f80
    );
    tracee.set_xstate(&xstate).expect("set xstate");
    assert_eq!(tracee.get_xstate().expect("xstate"), xstate);
    let mut prstatus = vec![0u8; 4096];
    let n = tracee
        .get_regset(crcli_sys::ptrace::NT_PRSTATUS, &mut prstatus)
        .expect("prstatus");
    assert_eq!(n, std::mem::size_of::<crcli_sys::ptrace::UserRegs>());

    let mask = tracee.get_sigmask().expect("mask");
    let usr2 = 1u64 << (libc::SIGUSR2 - 1);
    tracee.set_sigmask(mask | usr2).expect("set mask");
    assert_eq!(tracee.get_sigmask().expect("mask"), mask | usr2);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.pid())).unwrap();
    let blocked = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
    assert_eq!(
        u64::from_str_radix(blocked[7..].trim(), 16).unwrap(),
        mask | usr2
    );
    tracee.set_sigmask(mask).expect("set mask back");

    // glibc >= 2.35 registers rseq for the main thread.
    let rseq = tracee.get_rseq_configuration().expect("rseq");
    let fs_base = tracee.get_regs().expect("regs").fs_base;
    assert_ne!(rseq.rseq_abi_pointer, 0, "{rseq:?}");
    assert!(rseq.rseq_abi_size >= 20, "{rseq:?}");
    assert_eq!(rseq.signature, 0x5305_3053, "{rseq:?}");
    assert!(
        fs_base.abs_diff(rseq.rseq_abi_pointer) < 64 * 1024,
        "rseq area lies in the TLS block"
    );

    tracee.detach(0).expect("detach");
    assert_sleeps_again(&child);
}

#[test]
fn peek_siginfo_does_not_dequeue() {
    let child = Sleeper::spawn();
    let tracee = seize_stopped(&child);
    assert!(tracee
        .peek_siginfo(SigQueue::Shared)
        .expect("peek")
        .is_empty());
    // Signals sent while it is in a trace stop stay queued.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.pid()).unwrap(),
        rustix::process::Signal::USR1,
    )
    .expect("kill");
    // SAFETY: tgkill with plain integer arguments touches no memory.
    let ret = unsafe { libc::syscall(libc::SYS_tgkill, child.pid(), child.pid(), libc::SIGUSR2) };
    assert_eq!(ret, 0);
    for _ in 0..2 {
        let shared = tracee.peek_siginfo(SigQueue::Shared).expect("peek shared");
        assert_eq!(shared.len(), 1, "{shared:?}");
        assert_eq!(shared[0].signo(), libc::SIGUSR1);
        assert_eq!(shared[0].code(), libc::SI_USER);
        let private = tracee.peek_siginfo(SigQueue::Thread).expect("peek thread");
        assert_eq!(private.len(), 1, "{private:?}");
        assert_eq!(private[0].signo(), libc::SIGUSR2);
        assert_eq!(private[0].code(), libc::SI_TKILL);
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.pid())).unwrap();
    assert!(status.contains("ShdPnd:\t0000000000000200"), "{status}");
}

#[test]
fn errors_name_the_request() {
    // A pid that does not exist (pid_max is at most 2^22).
    let err = Tracee::seize(i32::MAX - 1, PtraceOptions::empty()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("ptrace PTRACE_SEIZE of pid {}", i32::MAX - 1)
    );
    match err {
        PtraceError::Request { source, .. } => assert_eq!(source, rustix::io::Errno::SRCH),
        other => panic!("{other:?}"),
    }
    // Too many iovecs.
    let err =
        process_vm_readv(1, &mut [], &vec![RemoteIoVec { base: 0, len: 0 }; 2000]).unwrap_err();
    assert_eq!(err, rustix::io::Errno::INVAL);
}

#[test]
fn process_vm_partial_and_unreadable() {
    let child = Sleeper::spawn();
    let pid = child.pid();
    // [vvar] cannot be read with process_vm_readv (RESTORE-NOTES.md).
    let maps = child.maps();
    let vvar = maps.lines().find(|l| l.ends_with("[vvar]")).expect("vvar");
    let start = usize::from_str_radix(vvar.split('-').next().unwrap(), 16).unwrap();
    let mut buf = [0u8; 64];
    assert!(process_vm::read_exact(pid, start, &mut buf).is_err());
    // The ELF header at the start of the executable (coreutils' sleep, or busybox in the VM):
    // its first mapping, at file offset 0.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
    let exe = exe.to_str().expect("utf-8 exe path");
    let first = maps
        .lines()
        .find(|l| l.ends_with(exe) && l.split_whitespace().nth(2) == Some("00000000"))
        .map(|l| usize::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
        .expect("the exe's first mapping");
    process_vm::read_exact(pid, first, &mut buf).expect("read elf header");
    assert_eq!(&buf[..4], b"\x7fELF");
    // A read spanning a readable range then vvar stops short at the first unreadable iovec.
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    let n = process_vm_readv(
        pid,
        &mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)],
        &[
            RemoteIoVec {
                base: first,
                len: 16,
            },
            RemoteIoVec {
                base: start,
                len: 16,
            },
        ],
    )
    .expect("partial read");
    assert_eq!(n, 16);
}

#[test]
fn robust_list_rlimits_and_kcmp() {
    let child = Sleeper::spawn();
    let pid = child.pid();
    // glibc registers a robust list of 24 bytes for every thread.
    let (head, len) = crcli_sys::task::get_robust_list(pid).expect("get_robust_list");
    assert_ne!(head, 0);
    assert_eq!(len, 24);
    assert_eq!(
        crcli_sys::task::get_robust_list(i32::MAX - 1),
        Err(rustix::io::Errno::SRCH)
    );

    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("nofile line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let nofile = crcli_sys::task::prlimit_get(pid, libc::RLIMIT_NOFILE).expect("prlimit");
    assert_eq!(nofile.cur.to_string(), fields[3]);
    assert_eq!(nofile.max.to_string(), fields[4]);
    let stack = crcli_sys::task::prlimit_get(pid, libc::RLIMIT_CPU).expect("prlimit");
    assert_eq!(stack.cur, u64::MAX, "RLIMIT_CPU is unlimited");

    use std::os::fd::AsRawFd;
    let me = std::process::id() as i32;
    let a = std::fs::File::open("/proc/self/exe").expect("open");
    let b = a.try_clone().expect("dup");
    let c = std::fs::File::open("/proc/self/exe").expect("open");
    let (a, b, c) = (a.as_raw_fd(), b.as_raw_fd(), c.as_raw_fd());
    assert_eq!(crcli_sys::task::kcmp_same_file(me, me, a, b), Ok(true));
    assert_eq!(crcli_sys::task::kcmp_same_file(me, me, a, c), Ok(false));
    assert_eq!(
        crcli_sys::task::kcmp_same_file(me, me, a, 100_000),
        Err(rustix::io::Errno::BADF)
    );
}

#[test]
fn a_stopped_process_is_seized_injected_into_and_stays_stopped() {
    let child = Sleeper::spawn();
    let pid = rustix::process::Pid::from_raw(child.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.state() != 'T' {
        assert!(Instant::now() < deadline, "never stopped");
        std::thread::sleep(Duration::from_millis(5));
    }
    let tracee = Tracee::seize(child.pid(), PtraceOptions::empty()).expect("seize");
    // A group-stop of a seized tracee is reported as PTRACE_EVENT_STOP with the stop signal.
    let status = tracee.interrupt_and_wait().expect("interrupt");
    assert_eq!(
        status,
        WaitStatus::Stopped {
            signal: libc::SIGSTOP,
            event: PTRACE_EVENT_STOP
        }
    );
    let regs = tracee.get_regs().expect("regs");
    // Stopped inside clock_nanosleep: the `syscall` instruction is right before rip.
    assert_eq!(
        tracee.peek_data(regs.rip - 2).expect("peek") & 0xffff,
        0x050f
    );
    tracee.set_syscall_site(Some(regs.rip - 2));
    let ret = tracee
        .inject_syscall(libc::SYS_getppid, [0; 6])
        .expect("getppid");
    assert_eq!(ret, i64::from(std::process::id() as i32));
    assert_eq!(tracee.get_regs().expect("regs"), regs);
    tracee.detach(0).expect("detach");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(child.state(), 'T', "still stopped after the detach");
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    assert_sleeps_again(&child);
}

#[test]
fn the_zero_page_pfn_is_what_read_only_anonymous_memory_maps() {
    // As root, pagemap shows page frame numbers.
    let pfn = crcli_sys::task::zero_page_pfn().expect("zero page pfn (root)");
    assert_ne!(pfn, 0);
    // Stable: every probe maps the same page.
    assert_eq!(crcli_sys::task::zero_page_pfn(), Some(pfn));
    // A written page is not the zero page.
    let data = vec![1u8; 4096 * 4];
    let page = (data.as_ptr() as u64 / 4096 + 1) * 4096;
    let f = std::fs::File::open("/proc/self/pagemap").unwrap();
    let mut word = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut word, page / 4096 * 8).unwrap();
    assert_ne!(u64::from_ne_bytes(word) & ((1 << 55) - 1), pfn);
}
