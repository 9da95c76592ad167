//! What only the process itself can tell: signal dispositions, `clear_child_tid`, the
//! alternate signal stack, a few prctl flags, the current program break and the three interval
//! timers (`getitimer`), asked by syscalls
//! injected into the stopped target. The per-thread answers (`clear_child_tid`, the alternate
//! signal stack) are asked of every thread, by injecting into that thread; the process-wide
//! ones once, in the main thread.
//!
//! A scratch page is mapped in the target for the answers (and as the syscall site), and
//! unmapped at the end, also on error. The first syscall (the `mmap` of the scratch page) runs at
//! the `syscall` instruction the target is stopped after, if it was stopped in a syscall;
//! otherwise at a borrowed word of its code, put back right after.

use crcli_sys::process_vm;
use crcli_sys::ptrace::{Tracee, UserRegs, SYSCALL_INT3};

use crate::error::DumpError;
use crate::procfs::MapEntry;

/// Size of one kernel `struct sigaction` on x86_64: handler, flags, restorer, mask.
const KSIGACTION_SIZE: usize = 32;
/// Signals 1 to 64.
const NSIG: usize = 64;
/// Where the answers go in the scratch page (the syscall site is at offset 0).
const DATA_OFFSET: u64 = 64;
/// Where the results of the main thread's injected queries go in the scratch page (after the
/// sigactions and the answers written through pointers).
const SLOTS_OFFSET: u64 = 2304;
/// Where the three `struct itimerval` answers of `getitimer` go (after the slots).
const ITIMERS_OFFSET: u64 = 2432;
/// Where injected code goes in the scratch page (after every answer).
const CODE_OFFSET: u64 = 3584;
const PAGE: u64 = 4096;

const PR_GET_DUMPABLE: u64 = 3;
const PR_GET_SECUREBITS: u64 = 27;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_GET_TID_ADDRESS: u64 = 40;

/// A signal disposition as the kernel keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KSigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// What one thread told about itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ThreadAnswers {
    pub clear_child_tid: u64,
    /// `stack_t`: ss_sp, ss_flags, ss_size.
    pub sigaltstack: (u64, u32, u64),
}

/// What the injected syscalls told.
#[derive(Debug, Clone, Default)]
pub(crate) struct Injected {
    /// Signals 1 to 64, index 0 for signal 1.
    pub sigactions: Vec<KSigAction>,
    /// The main thread's own answers.
    pub main: ThreadAnswers,
    /// The other threads' answers, in the order of the `others` given to [`ask`].
    pub others: Vec<ThreadAnswers>,
    pub dumpable: u32,
    pub securebits: u32,
    pub child_subreaper: bool,
    /// `brk(0)`: the current program break.
    pub brk: u64,
    /// `getitimer(ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF)`.
    pub itimers: crcli_image::ITimers,
}

fn err(pid: i32, what: &str) -> impl FnOnce(crcli_sys::ptrace::PtraceError) -> DumpError {
    DumpError::ptrace(format!("{what} in pid {pid} (injected syscall)"))
}

/// Asks the stopped target what only it can tell: `tracee` is its main thread, `others` its
/// other stopped threads. `maps` is its memory layout (to find code to borrow if it is not
/// stopped in a syscall). The scratch page is mapped once (by the main thread: it is shared by
/// the whole address space) and each thread is asked in turn. Leaves no trace: the scratch page
/// is unmapped and borrowed code bytes, registers and signal masks are put back, also on error.
pub(crate) fn ask(
    tracee: &Tracee,
    others: &[Tracee],
    maps: &[MapEntry],
) -> Result<Injected, DumpError> {
    let pid = tracee.pid();
    let regs = tracee.get_regs().map_err(DumpError::ptrace(format!(
        "read the registers of pid {pid}"
    )))?;
    let scratch = map_scratch(tracee, &regs, maps)?;
    let result = ask_at(tracee, scratch).and_then(|mut injected| {
        for t in others {
            t.set_syscall_site(Some(scratch));
            let answers = ask_thread(pid, t, scratch);
            t.set_syscall_site(None);
            injected.others.push(answers?);
        }
        Ok(injected)
    });
    // Always unmap the scratch page; the trap after munmap comes before any fetch from it.
    let unmap = tracee.inject_syscall_checked(libc::SYS_munmap, [scratch, PAGE, 0, 0, 0, 0]);
    tracee.set_syscall_site(None);
    let injected = result?;
    unmap.map_err(err(pid, "munmap of the scratch page"))?;
    Ok(injected)
}

/// Maps the scratch page (read, write, exec; anonymous) and makes it the syscall site.
fn map_scratch(tracee: &Tracee, regs: &UserRegs, maps: &[MapEntry]) -> Result<u64, DumpError> {
    let pid = tracee.pid();
    let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let scratch = bootstrap_syscall(
        tracee,
        regs,
        maps,
        libc::SYS_mmap,
        [0, PAGE, prot, flags, u64::MAX, 0],
    )
    .map_err(err(pid, "mmap of a scratch page"))?;
    let mut word = [0xccu8; 8];
    word[..SYSCALL_INT3.len()].copy_from_slice(&SYSCALL_INT3);
    if let Err(e) = tracee.poke_data(scratch, u64::from_ne_bytes(word)) {
        // Take the page away again before reporting.
        let _ = bootstrap_syscall(
            tracee,
            regs,
            maps,
            libc::SYS_munmap,
            [scratch, PAGE, 0, 0, 0, 0],
        );
        return Err(DumpError::ptrace(format!(
            "write the syscall site into the scratch page of pid {pid}"
        ))(e));
    }
    tracee.set_syscall_site(Some(scratch));
    Ok(scratch)
}

/// Runs one syscall before a scratch page exists: at the `syscall` instruction the target is
/// stopped after when it was stopped in a syscall, otherwise at a borrowed word of its code
/// (put back at once, also on error).
fn bootstrap_syscall(
    tracee: &Tracee,
    regs: &UserRegs,
    maps: &[MapEntry],
    nr: i64,
    args: [u64; 6],
) -> Result<u64, crcli_sys::ptrace::PtraceError> {
    let pid = tracee.pid();
    let in_syscall = (regs.orig_rax as i64) >= 0
        && regs.rip >= 2
        && tracee
            .peek_data(regs.rip - 2)
            .map(|w| w & 0xffff == 0x050f)
            .unwrap_or(false);
    if in_syscall {
        tracee.set_syscall_site(Some(regs.rip - 2));
        let r = tracee.inject_syscall_checked(nr, args);
        tracee.set_syscall_site(None);
        return r;
    }
    // A private mapping only: writing into a shared one would change the file or object
    // behind it for everyone, even if only for a moment.
    let code = maps
        .iter()
        .find(|m| m.exec && !m.shared && !m.path.starts_with(b"[") && m.end - m.start >= 8)
        .ok_or(crcli_sys::ptrace::PtraceError::NoSyscallSite { pid, nr })?;
    let borrow = tracee.borrow_code(code.start)?;
    let r = tracee.inject_syscall_checked(nr, args);
    borrow.release()?;
    r
}

fn ask_at(tracee: &Tracee, scratch: u64) -> Result<Injected, DumpError> {
    let pid = tracee.pid();
    let data = scratch + DATA_OFFSET;
    let mut out = Injected::default();

    // The 64 rt_sigaction calls and the main thread's other queries run as one piece of code
    // (one resume instead of 70 single-stepped syscalls).
    let code_at = scratch + CODE_OFFSET;
    // Then the main thread's own queries, each result (rax) stored in its slot.
    let answers = data + (NSIG * KSIGACTION_SIZE) as u64;
    let reaper_at = answers;
    let tid_at = answers + 8;
    let ss_at = tid_at + 8;
    let slots = scratch + SLOTS_OFFSET;
    let itimers_at = scratch + ITIMERS_OFFSET;
    let calls: [(i64, u64, u64); 9] = [
        (libc::SYS_prctl, PR_GET_CHILD_SUBREAPER, reaper_at),
        (libc::SYS_prctl, PR_GET_DUMPABLE, 0),
        (libc::SYS_prctl, PR_GET_SECUREBITS, 0),
        (libc::SYS_brk, 0, 0),
        (libc::SYS_prctl, PR_GET_TID_ADDRESS, tid_at),
        (libc::SYS_sigaltstack, 0, ss_at),
        (libc::SYS_getitimer, libc::ITIMER_REAL as u64, itimers_at),
        (
            libc::SYS_getitimer,
            libc::ITIMER_VIRTUAL as u64,
            itimers_at + 32,
        ),
        (
            libc::SYS_getitimer,
            libc::ITIMER_PROF as u64,
            itimers_at + 64,
        ),
    ];
    let mut code = sigaction_code(data);
    code.pop(); // the int3 comes after the queries
    code.extend(calls_code(&calls, slots));
    code.push(0xcc);
    process_vm::write_all(pid, code_at as usize, &code).map_err(DumpError::sys(format!(
        "write the sigaction queries into the scratch page of pid {pid}"
    )))?;
    let regs = tracee
        .run_code(code_at, code_at + code.len() as u64)
        .map_err(err(pid, "rt_sigaction(1..64)"))?;
    if regs.r13 != 0 {
        // r13 holds the first failed rt_sigaction's result (negative), else 0.
        crcli_sys::ptrace::injected_result(pid, libc::SYS_rt_sigaction, regs.r13 as i64).map_err(
            DumpError::ptrace(format!("rt_sigaction(1..64) in pid {pid} (injected code)")),
        )?;
    }
    let mut buf = vec![0u8; NSIG * KSIGACTION_SIZE];
    process_vm::read_exact(pid, data as usize, &mut buf)
        .map_err(DumpError::sys(format!("read the sigactions of pid {pid}")))?;
    let word =
        |b: &[u8], i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    out.sigactions = buf
        .chunks_exact(KSIGACTION_SIZE)
        .map(|c| KSigAction {
            handler: word(c, 0),
            flags: word(c, 1),
            restorer: word(c, 2),
            mask: word(c, 3),
        })
        .collect();

    let mut raw = [0u8; 9 * 8];
    process_vm::read_exact(pid, slots as usize, &mut raw).map_err(DumpError::sys(format!(
        "read the injected answers of pid {pid}"
    )))?;
    let rax: Vec<i64> = raw
        .chunks_exact(8)
        .map(|c| i64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let names = [
        "prctl(PR_GET_CHILD_SUBREAPER)",
        "prctl(PR_GET_DUMPABLE)",
        "prctl(PR_GET_SECUREBITS)",
        "brk(0)",
        "prctl(PR_GET_TID_ADDRESS)",
        "sigaltstack",
        "getitimer(ITIMER_REAL)",
        "getitimer(ITIMER_VIRTUAL)",
        "getitimer(ITIMER_PROF)",
    ];
    for ((&r, name), (nr, _, _)) in rax.iter().zip(names).zip(calls) {
        crcli_sys::ptrace::injected_result(pid, nr, r).map_err(DumpError::ptrace(format!(
            "{name} in pid {pid} (injected code)"
        )))?;
    }
    out.dumpable = rax[1] as u32;
    out.securebits = rax[2] as u32;
    out.brk = rax[3] as u64;
    let mut buf = [0u8; 8 + 8 + 24];
    process_vm::read_exact(pid, answers as usize, &mut buf).map_err(DumpError::sys(format!(
        "read the injected answers of pid {pid}"
    )))?;
    out.child_subreaper = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) != 0;
    out.main = ThreadAnswers {
        clear_child_tid: u64::from_ne_bytes(buf[8..16].try_into().expect("8 bytes")),
        sigaltstack: (
            u64::from_ne_bytes(buf[16..24].try_into().expect("8 bytes")),
            u32::from_ne_bytes(buf[24..28].try_into().expect("4 bytes")),
            u64::from_ne_bytes(buf[32..40].try_into().expect("8 bytes")),
        ),
    };
    let mut raw = [0u8; 3 * 32];
    process_vm::read_exact(pid, itimers_at as usize, &mut raw).map_err(DumpError::sys(format!(
        "read the interval timers of pid {pid}"
    )))?;
    let timers: Vec<crcli_image::ITimer> = raw
        .chunks_exact(32)
        .map(|v| {
            let w = |i: usize| i64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            crcli_image::ITimer {
                interval_us: timeval_us(w(0), w(1)),
                value_us: timeval_us(w(2), w(3)),
            }
        })
        .collect();
    out.itimers = crcli_image::ITimers {
        real: timers[0],
        virt: timers[1],
        prof: timers[2],
    };
    Ok(out)
}

/// A `struct timeval` the kernel filled (never negative) in microseconds.
fn timeval_us(sec: i64, usec: i64) -> u64 {
    (sec.max(0) as u64)
        .saturating_mul(1_000_000)
        .saturating_add(usec.clamp(0, 999_999) as u64)
}

/// x86-64 code making the syscalls `calls` (number, first and second argument; the others 0)
/// one after the other, storing each result (rax) at `slots + 8 * i`.
fn calls_code(calls: &[(i64, u64, u64)], slots: u64) -> Vec<u8> {
    // xor edx, edx; xor r10d, r10d; xor r8d, r8d; xor r9d, r9d
    let mut c = vec![
        0x31, 0xd2, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xc0, 0x45, 0x31, 0xc9,
    ];
    for (i, &(nr, a1, a2)) in calls.iter().enumerate() {
        c.push(0xb8); // mov eax, nr
        c.extend_from_slice(&(nr as u32).to_le_bytes());
        c.extend_from_slice(&[0x48, 0xbf]); // mov rdi, a1
        c.extend_from_slice(&a1.to_le_bytes());
        c.extend_from_slice(&[0x48, 0xbe]); // mov rsi, a2
        c.extend_from_slice(&a2.to_le_bytes());
        c.extend_from_slice(&[0x0f, 0x05]); // syscall
        c.extend_from_slice(&[0x48, 0xa3]); // movabs [slot], rax
        c.extend_from_slice(&(slots + 8 * i as u64).to_le_bytes());
    }
    c
}

/// x86-64 code that stores the 64 signal dispositions at `data` (32 bytes each, signal 1 first)
/// and stops at an `int3` (its last byte); r13 ends as the OR of every result (0: all succeeded).
///
/// ```text
///       mov ebx, 1            ; the signal
///       mov r12, data         ; where its sigaction goes
///       xor r13d, r13d        ; OR of the results
/// loop: mov eax, 13           ; rt_sigaction(ebx, NULL, r12, 8)
///       mov edi, ebx
///       xor esi, esi
///       mov rdx, r12
///       mov r10d, 8
///       syscall
///       or r13, rax
///       add r12, 32
///       inc ebx
///       cmp ebx, 65
///       jne loop
///       int3
/// ```
fn sigaction_code(data: u64) -> Vec<u8> {
    let mut c = vec![0xbb, 1, 0, 0, 0, 0x49, 0xbc];
    c.extend_from_slice(&data.to_le_bytes());
    c.extend_from_slice(&[0x45, 0x31, 0xed]);
    let body: [u8; 34] = [
        0xb8, 13, 0, 0, 0, // mov eax, 13
        0x89, 0xdf, // mov edi, ebx
        0x31, 0xf6, // xor esi, esi
        0x4c, 0x89, 0xe2, // mov rdx, r12
        0x41, 0xba, 8, 0, 0, 0, // mov r10d, 8
        0x0f, 0x05, // syscall
        0x49, 0x09, 0xc5, // or r13, rax
        0x49, 0x83, 0xc4, 0x20, // add r12, 32
        0xff, 0xc3, // inc ebx
        0x83, 0xfb, 0x41, // cmp ebx, 65
        0x75, 0xde, // jne loop (-34)
    ];
    c.extend_from_slice(&body);
    c.push(0xcc);
    c
}

/// Asks thread `t` of process `pid` (stopped, with the scratch page as its syscall site) its
/// `clear_child_tid` and alternate signal stack. The answers go after the sigactions' area.
fn ask_thread(pid: i32, t: &Tracee, scratch: u64) -> Result<ThreadAnswers, DumpError> {
    let tid = t.pid();
    let what = |call: &str| {
        if tid == pid {
            err(pid, call)
        } else {
            err(pid, &format!("{call} of thread {tid}"))
        }
    };
    let tid_at = scratch + DATA_OFFSET + (NSIG * KSIGACTION_SIZE) as u64 + 8;
    let ss_at = tid_at + 8;
    t.inject_syscall_checked(libc::SYS_prctl, [PR_GET_TID_ADDRESS, tid_at, 0, 0, 0, 0])
        .map_err(what("prctl(PR_GET_TID_ADDRESS)"))?;
    t.inject_syscall_checked(libc::SYS_sigaltstack, [0, ss_at, 0, 0, 0, 0])
        .map_err(what("sigaltstack"))?;
    let mut buf = [0u8; 8 + 24];
    process_vm::read_exact(pid, tid_at as usize, &mut buf).map_err(DumpError::sys(format!(
        "read the injected answers of thread {tid} of pid {pid}"
    )))?;
    Ok(ThreadAnswers {
        clear_child_tid: u64::from_ne_bytes(buf[0..8].try_into().expect("8 bytes")),
        sigaltstack: (
            u64::from_ne_bytes(buf[8..16].try_into().expect("8 bytes")),
            u32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes")),
            u64::from_ne_bytes(buf[24..32].try_into().expect("8 bytes")),
        ),
    })
}
