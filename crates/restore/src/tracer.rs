//! The tracer's half: with the child stopped after its own setup, replace its address space with
//! the dumped one and set every piece of CPU and signal state, all by injected syscalls
//! ([`crcli_sys::ptrace::Tracee::inject_syscall`]) and ptrace requests.
//!
//! Order (RESTORE-NOTES.md): unregister the child's own rseq; map a scratch page holding
//! `syscall; int3` at an address free in both layouts and inject from there; unmap the child's
//! mappings; move vdso/vvar (via a temporary area) to where the program had them; map the
//! dumped mappings (writable for now); stream the pages in; mprotect back; `PR_SET_MM_MAP`,
//! `PR_SET_NAME`; close the helper fds; sigactions, sigaltstack, robust list, tid address, rseq;
//! create the other threads at their thread ids (an injected `clone3` with `set_tid`, traced
//! from birth with `PTRACE_O_TRACECLONE`) and inject each one's own sigaltstack, robust list,
//! tid address and rseq into it; re-queue pending signals with everything blocked (a thread's
//! own signals by that thread); credentials in every thread; scheduling policy, priority, nice
//! value and CPU affinity of every thread (by crcli on the thread ids, not injected); the
//! interval timers (`setitimer`, as late as possible, so that they start counting right before
//! the process runs: their remaining values are the dumped ones, the time the process spent
//! frozen is not counted); unmap the scratch page (the last injected call); then, per thread,
//! the xstate, the normalised registers and the signal mask with ptrace.

use std::io::IoSlice;
use std::os::unix::fs::FileExt;

use crcli_image::process::{
    MADV_BIT_DONTDUMP, MADV_BIT_DONTFORK, MADV_BIT_HUGEPAGE, MADV_BIT_MERGEABLE,
    MADV_BIT_NOHUGEPAGE, MADV_BIT_WIPEONFORK, PROT_WRITE,
};
use crcli_image::{Image, PagesId, Process, Thread, UserRegs, Vma, VmaBacking, PAGE_SIZE};
use crcli_sys::clone3;
use crcli_sys::process_vm::{self, RemoteIoVec};
use crcli_sys::ptrace::{self, Tracee, SYSCALL_INT3};

use crate::error::RestoreError;
use crate::plan::{Plan, TASK_SIZE};

/// Size of the scratch area: code at offset 0, arguments from [`ARGS`].
const SCRATCH_LEN: u64 = 16 * PAGE_SIZE;
/// Offset of the argument area in the scratch area.
const ARGS: u64 = 64;

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_GROWSDOWN: u64 = 0x100;
const MAP_LOCKED: u64 = 0x2000;
const MAP_NORESERVE: u64 = 0x4000;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const PR_SET_NAME: u64 = 15;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const SS_DISABLE: u32 = 2;
const SS_AUTODISARM: u32 = 1 << 31;
const PR_SET_DUMPABLE: u64 = 4;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The credentials of a process as `/proc/PID/status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct StatusCreds {
    pub(crate) uids: [u32; 4],
    pub(crate) gids: [u32; 4],
    pub(crate) groups: Vec<u32>,
    pub(crate) cap_inh: u64,
    pub(crate) cap_prm: u64,
    pub(crate) cap_eff: u64,
    pub(crate) cap_bnd: u64,
    pub(crate) cap_amb: u64,
}

/// Reads the credentials of `pid` from `/proc/PID/status`.
pub(crate) fn read_creds(pid: i32) -> Result<StatusCreds, RestoreError> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(RestoreError::sys(format!("reading {path}")))?;
    let mut c = StatusCreds::default();
    let bad = |line: &str| RestoreError::Invalid(format!("unparsable line in {path}: {line}"));
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let nums = || {
            value
                .split_whitespace()
                .map(|v| v.parse::<u32>())
                .collect::<Result<Vec<u32>, _>>()
        };
        let hex = || u64::from_str_radix(value.trim(), 16).map_err(|_| bad(line));
        match key {
            "Uid" | "Gid" => {
                let v = nums().map_err(|_| bad(line))?;
                let arr: [u32; 4] = v.as_slice().try_into().map_err(|_| bad(line))?;
                if key == "Uid" {
                    c.uids = arr;
                } else {
                    c.gids = arr;
                }
            }
            "Groups" => c.groups = nums().map_err(|_| bad(line))?,
            "CapInh" => c.cap_inh = hex()?,
            "CapPrm" => c.cap_prm = hex()?,
            "CapEff" => c.cap_eff = hex()?,
            "CapBnd" => c.cap_bnd = hex()?,
            "CapAmb" => c.cap_amb = hex()?,
            _ => {}
        }
    }
    Ok(c)
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone)]
pub(crate) struct MapLine {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) name: String,
}

/// Parses `/proc/PID/maps`.
pub(crate) fn read_maps(pid: i32) -> Result<Vec<MapLine>, RestoreError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(RestoreError::sys(format!("reading /proc/{pid}/maps")))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let range = parts.next().unwrap_or("");
        let (s, e) = range.split_once('-').unwrap_or(("", ""));
        let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            return Err(RestoreError::Invalid(format!(
                "unparsable line in /proc/{pid}/maps: {line}"
            )));
        };
        let name = parts.nth(4).unwrap_or("").to_string();
        out.push(MapLine { start, end, name });
    }
    Ok(out)
}

fn is_vdso_name(name: &str) -> bool {
    matches!(name, "[vdso]" | "[vvar]" | "[vvar_vclock]")
}

/// Finds `len` bytes free of every range in `busy`, searching downwards from below 0x7f00_0000_0000.
fn find_free(busy: &[(u64, u64)], len: u64) -> Option<u64> {
    let mut ranges: Vec<(u64, u64)> = busy.iter().copied().filter(|r| r.0 < TASK_SIZE).collect();
    ranges.sort_unstable();
    let mut candidate = 0x7e00_0000_0000u64;
    loop {
        if candidate < 0x1000_0000 {
            return None;
        }
        match ranges
            .iter()
            .find(|(s, e)| candidate < *e && candidate + len > *s)
        {
            None => return Some(candidate),
            Some((s, _)) => candidate = (s.saturating_sub(len)) & !(PAGE_SIZE - 1),
        }
    }
}

/// The tracer's working state for one child: `t` is the thread injected into (the main
/// thread, or another thread of the same process with its own `Rebuild`).
pub(crate) struct Rebuild<'a> {
    t: &'a Tracee,
    pid: i32,
    /// The thread id of `t` (`pid` for the main thread).
    tid: i32,
    scratch: u64,
    image: &'a Image,
    p: &'a Process,
    plan: &'a Plan,
    aux_fds: &'a [i32],
}

impl<'a> Rebuild<'a> {
    fn sc(
        &self,
        nr: i64,
        args: [u64; 6],
        what: impl FnOnce() -> String,
    ) -> Result<u64, RestoreError> {
        // Every signal is blocked in the process for the whole rebuild (step 3) and its final
        // registers are set at the end (step 15), so the injection need neither save, block and
        // restore the mask nor save and restore the registers each time.
        self.t
            .inject_syscall_unsaved(nr, args)
            .map_err(|source| RestoreError::Ptrace {
                step: what(),
                source,
            })
    }

    fn poke(&self, offset: u64, bytes: &[u8]) -> Result<u64, RestoreError> {
        let addr = self.scratch + offset;
        if offset + bytes.len() as u64 > SCRATCH_LEN {
            return Err(RestoreError::Invalid(
                "argument too large for the scratch area".into(),
            ));
        }
        process_vm::write_all(self.pid, addr as usize, bytes).map_err(|e| RestoreError::Sys {
            step: "writing into the scratch area".into(),
            source: e.into(),
        })?;
        Ok(addr)
    }
}

/// Offset in the scratch area of the injected sigaction loop (after the 64 actions at
/// [`ARGS`]).
const SIGACTION_CODE: u64 = ARGS + 64 * 32;

/// x86_64 code that sets the 64 signal actions from the `struct sigaction`s (32 bytes each) at
/// `actions`: `rt_sigaction(sig, act, NULL, 8)` for sig 1..=64, with `act = NULL` (a query)
/// for SIGKILL and SIGSTOP, which cannot be set; ORs every result into `r13` (0: all
/// succeeded) and ends with `int3`. Touches no stack.
fn sigaction_code(actions: u64) -> Vec<u8> {
    let mut c = vec![0xbb, 1, 0, 0, 0, 0x49, 0xbc]; // mov ebx, 1; mov r12, imm64
    c.extend_from_slice(&actions.to_le_bytes());
    c.extend_from_slice(&[0x45, 0x31, 0xed]); // xor r13d, r13d
    let body: [u8; 48] = [
        0xb8, 13, 0, 0, 0, // mov eax, 13 (rt_sigaction)
        0x89, 0xdf, // mov edi, ebx
        0x4c, 0x89, 0xe6, // mov rsi, r12
        0x83, 0xfb, 0x09, // cmp ebx, 9 (SIGKILL)
        0x75, 0x02, // jne +2
        0x31, 0xf6, // xor esi, esi
        0x83, 0xfb, 0x13, // cmp ebx, 19 (SIGSTOP)
        0x75, 0x02, // jne +2
        0x31, 0xf6, // xor esi, esi
        0x31, 0xd2, // xor edx, edx
        0x41, 0xba, 8, 0, 0, 0, // mov r10d, 8
        0x0f, 0x05, // syscall
        0x49, 0x09, 0xc5, // or r13, rax
        0x49, 0x83, 0xc4, 0x20, // add r12, 32
        0xff, 0xc3, // inc ebx
        0x83, 0xfb, 0x41, // cmp ebx, 65
        0x75, 0xd0, // jne loop (-48)
    ];
    c.extend_from_slice(&body);
    c.push(0xcc); // int3
    c
}

/// Checks that this CPU's extended-state layout is the dumped one.
pub(crate) fn check_xstate(t: &Tracee, p: &Process) -> Result<(), RestoreError> {
    let ours = t.get_xstate().map_err(RestoreError::ptrace(
        "reading the child's extended CPU state",
    ))?;
    let x = &p.threads[0].xstate;
    let our_features = ours
        .get(464..472)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .unwrap_or(0);
    if ours.len() != x.data.len() || our_features != x.features {
        return Err(RestoreError::Unsupported(format!(
            "the image was dumped on a CPU with another extended-state layout ({} bytes, XCR0 {:#x}); this CPU has {} bytes, XCR0 {:#x}",
            x.data.len(),
            x.features,
            ours.len(),
            our_features
        )));
    }
    Ok(())
}

/// Rebuilds the stopped child `t` as process `p` and leaves it stopped with its final state set;
/// its other threads are created (at their dumped thread ids) and pushed onto `threads` as soon
/// as each exists, so that the caller can reap them if anything fails, and are left stopped with
/// their final state set too.
pub(crate) fn rebuild(
    t: &Tracee,
    image: &Image,
    p: &Process,
    plan: &Plan,
    aux_fds: &[i32],
    threads: &mut Vec<Tracee>,
) -> Result<(), RestoreError> {
    let pid = t.pid();
    let started = std::time::Instant::now();
    // 1. The child stopped itself inside kill(2): the syscall instruction is at rip - 2.
    let regs0 = t
        .get_regs()
        .map_err(RestoreError::ptrace("reading the child's registers"))?;
    let word = t
        .peek_data(regs0.rip - 2)
        .map_err(RestoreError::ptrace("reading the child's code"))?;
    if word.to_le_bytes()[..2] != [0x0f, 0x05] {
        return Err(RestoreError::Invalid(format!(
            "the child did not stop after a syscall (rip {:#x})",
            regs0.rip
        )));
    }
    t.set_syscall_site(Some(regs0.rip - 2));

    // 2. Unregister the child's own rseq area before its memory goes away.
    let rseq = t.get_rseq_configuration().map_err(RestoreError::ptrace(
        "reading the child's rseq registration",
    ))?;
    if rseq.rseq_abi_pointer != 0 {
        t.inject_syscall_checked(
            libc::SYS_rseq,
            [
                rseq.rseq_abi_pointer,
                u64::from(rseq.rseq_abi_size),
                RSEQ_FLAG_UNREGISTER,
                u64::from(rseq.signature),
                0,
                0,
            ],
        )
        .map_err(RestoreError::ptrace("unregistering the child's rseq"))?;
    }

    // 3. Every signal blocked until the final mask is set (step 15): nothing is delivered
    //    while crcli injects (`Rebuild::sc` relies on it). Then the scratch area, free in both
    //    layouts.
    t.set_sigmask(!0)
        .map_err(RestoreError::ptrace("blocking every signal in the child"))?;
    let ours = read_maps(pid)?;
    let mut busy: Vec<(u64, u64)> = ours.iter().map(|m| (m.start, m.end)).collect();
    busy.extend(p.vmas.iter().map(|v| (v.start, v.end)));
    let scratch = find_free(&busy, SCRATCH_LEN).ok_or_else(|| {
        RestoreError::Invalid("no free address range for the scratch area".into())
    })?;
    let got = t
        .inject_syscall_checked(
            libc::SYS_mmap,
            [
                scratch,
                SCRATCH_LEN,
                7,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                u64::MAX,
                0,
            ],
        )
        .map_err(RestoreError::ptrace("mapping the scratch area"))?;
    if got != scratch {
        return Err(RestoreError::Invalid(format!(
            "the scratch area landed at {got:#x}, not {scratch:#x}"
        )));
    }
    let rb = Rebuild {
        t,
        pid,
        tid: pid,
        scratch,
        image,
        p,
        plan,
        aux_fds,
    };
    rb.poke(0, &SYSCALL_INT3)?;
    t.set_syscall_site(Some(scratch));

    // 4. Unmap everything of the child but the scratch area and the vdso group: one munmap per
    //    gap between the ranges kept (munmap of a range holding nothing is harmless).
    let mut keep: Vec<(u64, u64)> = ours
        .iter()
        .filter(|m| is_vdso_name(&m.name))
        .map(|m| (m.start, m.end))
        .collect();
    keep.push((scratch, scratch + SCRATCH_LEN));
    keep.sort_unstable();
    let mut from = PAGE_SIZE;
    for (start, end) in keep
        .iter()
        .copied()
        .chain(std::iter::once((TASK_SIZE, TASK_SIZE)))
    {
        if start > from {
            rb.sc(libc::SYS_munmap, [from, start - from, 0, 0, 0, 0], || {
                format!("unmapping the child's memory {from:#x}-{start:#x}")
            })?;
        }
        from = from.max(end);
    }
    if let Some(left) = read_maps(pid)?
        .into_iter()
        .find(|m| m.start < TASK_SIZE && !is_vdso_name(&m.name) && m.start != scratch)
    {
        return Err(RestoreError::Invalid(format!(
            "the child still has {:#x}-{:#x} {} after unmapping",
            left.start, left.end, left.name
        )));
    }

    // 5. vdso, vvar, vvar_vclock.
    rb.place_vdso(&ours, &busy)?;

    // 6. The dumped mappings.
    for vma in &p.vmas {
        rb.map_vma(vma)?;
    }

    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "mappings in place"
    );
    // 7. Pages.
    if let Some(id) = p.pages {
        rb.write_pages(id, 0)?;
    }
    rb.shared_objects()?;

    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pages written"
    );
    // 8. Final protections.
    for vma in &p.vmas {
        if rb.mapped_writable(vma) && vma.prot & PROT_WRITE == 0 {
            rb.sc(
                libc::SYS_mprotect,
                [vma.start, vma.end - vma.start, u64::from(vma.prot), 0, 0, 0],
                || format!("protecting {:#x}-{:#x}", vma.start, vma.end),
            )?;
        }
    }

    // 9. mm fields and name.
    rb.set_mm()?;
    let mut name = p.comm.as_bytes().to_vec();
    name.truncate(15);
    name.push(0);
    let addr = rb.poke(ARGS, &name)?;
    rb.sc(libc::SYS_prctl, [PR_SET_NAME, addr, 0, 0, 0, 0], || {
        "setting the process name".into()
    })?;

    // 10. Close the helper fds (mapped files, exe): all sit at or above high_fd.
    rb.sc(
        libc::SYS_close_range,
        [plan.high_fd as u64, u64::from(u32::MAX), 0, 0, 0, 0],
        || "closing the restore's helper fds".into(),
    )?;

    // 11. Signal dispositions and per-thread state.
    rb.set_sigactions()?;
    rb.set_thread_state(&p.threads[0])?;

    // 11b. The other threads, each at its dumped thread id, made by an injected clone3 in the
    //      main thread (they start traced and stopped, never running a single instruction of
    //      their own before their registers are set), then their own state, injected into each.
    if p.threads.len() > 1 {
        t.set_options(ptrace::PtraceOptions::EXITKILL | ptrace::PtraceOptions::TRACECLONE)
            .map_err(RestoreError::ptrace(
                "tracing the threads the process will clone",
            ))?;
    }
    for th in &p.threads[1..] {
        let nt = rb.create_thread(th.tid, th.ns_tid)?;
        threads.push(nt);
        let nt = threads.last().expect("just pushed");
        let trb = rb.for_thread(nt);
        trb.set_thread_name(th)?;
        trb.set_thread_state(th)?;
    }

    // 12. Pending signals, with everything blocked so that none is delivered while we inject.
    t.set_sigmask(!0)
        .map_err(RestoreError::ptrace("blocking signals"))?;
    rb.queue_signals(&p.threads[0])?;
    for (nt, th) in threads.iter().zip(&p.threads[1..]) {
        nt.set_sigmask(!0).map_err(RestoreError::ptrace(format!(
            "blocking signals in thread {}",
            th.tid
        )))?;
        rb.for_thread(nt).queue_signals(th)?;
    }

    // 13. Process flags and credentials (last: they may take away crcli's privileges in it);
    //     credentials belong to each thread: the other threads first, the main thread last.
    for nt in threads.iter() {
        rb.for_thread(nt).set_flags_and_creds()?;
    }
    rb.set_flags_and_creds()?;

    // 13a. Scheduling policy, priority, nice value and CPU affinity of every thread, set by
    //      crcli itself on the restored thread ids (no injection).
    set_sched(t.pid(), &p.threads[0], p.pid)?;
    for (nt, th) in threads.iter().zip(&p.threads[1..]) {
        set_sched(nt.pid(), th, p.pid)?;
    }

    // 13b. The interval timers, as late as possible: they run from here on (an expiry before the
    //      process runs leaves its signal pending, blocked until step 15 sets the mask).
    rb.set_itimers()?;

    // 14. The last injected call unmaps the scratch area (the trap comes before any fetch).
    rb.sc(libc::SYS_munmap, [scratch, SCRATCH_LEN, 0, 0, 0, 0], || {
        "unmapping the scratch area".into()
    })?;
    t.set_syscall_site(None);

    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state set"
    );
    // 15. CPU state and the signal mask, of every thread.
    set_cpu_state(t, &p.threads[0], "")?;
    for (nt, th) in threads.iter().zip(&p.threads[1..]) {
        set_cpu_state(nt, th, &format!(" of thread {}", th.tid))?;
    }
    Ok(())
}

/// Sets the scheduling settings of the thread with id `real_tid` (as crcli sees it) from the
/// dumped thread `th` of process `pid`: affinity, then policy and priority, then the nice value
/// (after the policy: a real-time policy keeps the nice value apart). A CPU of the dumped
/// affinity that crcli itself may not use on this machine is an error naming the thread and
/// the CPU, not silently dropped; an empty affinity (the thread was not restricted) is left as
/// the restorer's (every CPU here). Nothing is done for an image that did not record them.
fn set_sched(real_tid: i32, th: &Thread, pid: u32) -> Result<(), RestoreError> {
    let Some(s) = &th.sched else {
        return Ok(());
    };
    let who = format!("thread {} of process {pid}", th.tid);
    let id = rustix::process::Pid::from_raw(real_tid);
    let ours = rustix::thread::sched_getaffinity(None)
        .map_err(RestoreError::errno("reading crcli's own CPU affinity"))?;
    let mut set = rustix::thread::CpuSet::new();
    for (w, word) in s.affinity.iter().enumerate() {
        for bit in 0..64 {
            if word & (1 << bit) == 0 {
                continue;
            }
            let cpu = w * 64 + bit;
            if cpu >= rustix::thread::CpuSet::MAX_CPU || !ours.is_set(cpu) {
                return Err(RestoreError::Unsupported(format!(
                    "{who} was bound to CPU {cpu}, which is not available here"
                )));
            }
            set.set(cpu);
        }
    }
    if s.affinity.iter().any(|&w| w != 0) {
        rustix::thread::sched_setaffinity(id, &set).map_err(RestoreError::errno(format!(
            "setting the CPU affinity of {who}"
        )))?;
    }
    let attr = crcli_sys::sched::SchedAttr {
        policy: s.policy,
        flags: s.flags,
        nice: s.nice,
        priority: s.priority,
        runtime: s.deadline[0],
        deadline: s.deadline[1],
        period: s.deadline[2],
    };
    crcli_sys::sched::sched_setattr(real_tid, &attr).map_err(RestoreError::errno(format!(
        "setting the scheduling policy {} (priority {}) of {who}",
        s.policy, s.priority
    )))?;
    rustix::process::setpriority_process(id, s.nice).map_err(RestoreError::errno(format!(
        "setting the nice value {} of {who}",
        s.nice
    )))?;
    Ok(())
}

/// Sets the extended state, the registers (an interrupted syscall normalised, see
/// [`final_regs`]) and the signal mask of the stopped thread `t` from `th`.
fn set_cpu_state(t: &Tracee, th: &Thread, of: &str) -> Result<(), RestoreError> {
    t.set_xstate(&th.xstate.data)
        .map_err(RestoreError::ptrace(format!(
            "setting the extended CPU state{of}"
        )))?;
    let regs = final_regs(&th.regs);
    t.set_regs(&to_sys_regs(&regs))
        .map_err(RestoreError::ptrace(format!("setting the registers{of}")))?;
    t.set_sigmask(th.sigmask)
        .map_err(RestoreError::ptrace(format!("setting the signal mask{of}")))?;
    Ok(())
}

/// The registers the process resumes with. A syscall interrupted by the dump (`rax` =
/// -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND or -ERESTART_RESTARTBLOCK, `orig_rax` = its
/// number) is made to run again from its start: `rax = orig_rax`, `rip -= 2`. For
/// -ERESTART_RESTARTBLOCK (an interrupted `nanosleep`/`clock_nanosleep`, `poll`, …) the kernel
/// would continue through `restart_syscall` with state (`restart_block`) that a new process
/// does not have; running the original call again means a relative sleep starts over with its
/// full duration (CRIU instead returns -EINTR, which ends the sleep early). `orig_rax` is always
/// -1 so that the kernel's restart logic never touches these registers.
pub(crate) fn final_regs(r: &UserRegs) -> UserRegs {
    let mut r = *r;
    if (r.orig_rax as i64) >= 0 {
        if let -516 | -514 | -513 | -512 = r.rax as i64 {
            r.rax = r.orig_rax;
            r.rip -= 2;
        }
    }
    r.orig_rax = u64::MAX;
    r
}

/// Converts the image's registers to the sys crate's.
pub(crate) fn to_sys_regs(r: &UserRegs) -> ptrace::UserRegs {
    ptrace::UserRegs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.rbp,
        rbx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        orig_rax: r.orig_rax,
        rip: r.rip,
        cs: r.cs,
        eflags: r.eflags,
        rsp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
    }
}

impl Rebuild<'_> {
    fn place_vdso(&self, ours: &[MapLine], busy: &[(u64, u64)]) -> Result<(), RestoreError> {
        let ours: Vec<&MapLine> = ours.iter().filter(|m| is_vdso_name(&m.name)).collect();
        let target_of = |name: &str| {
            self.p.vmas.iter().find(|v| {
                matches!(
                    (&v.backing, name),
                    (VmaBacking::Vdso, "[vdso]")
                        | (VmaBacking::Vvar, "[vvar]")
                        | (VmaBacking::VvarVclock, "[vvar_vclock]")
                )
            })
        };
        let targets = self
            .p
            .vmas
            .iter()
            .filter(|v| {
                matches!(
                    v.backing,
                    VmaBacking::Vdso | VmaBacking::Vvar | VmaBacking::VvarVclock
                )
            })
            .count();
        if targets == 0 {
            // The program ran without a vdso (e.g. `vdso=0`): it must not get one now.
            for m in &ours {
                self.sc(
                    libc::SYS_munmap,
                    [m.start, m.end - m.start, 0, 0, 0, 0],
                    || format!("unmapping the child's {}", m.name),
                )?;
            }
            return Ok(());
        }
        if targets != ours.len() {
            return Err(RestoreError::Unsupported(format!(
                "the dumped process has {targets} vdso/vvar mappings, a process of this kernel has {}",
                ours.len()
            )));
        }
        let mut moves = Vec::new();
        for m in &ours {
            let v = target_of(&m.name).ok_or_else(|| {
                RestoreError::Unsupported(format!(
                    "the dumped process has no {} mapping, this kernel has one",
                    m.name
                ))
            })?;
            if v.end - v.start != m.end - m.start {
                return Err(RestoreError::Unsupported(format!(
                    "{} is {} bytes in the image and {} bytes on this kernel",
                    m.name,
                    v.end - v.start,
                    m.end - m.start
                )));
            }
            moves.push((m.start, m.end - m.start, v.start, m.name.clone()));
        }
        if moves.iter().all(|(from, _, to, _)| from == to) {
            return Ok(());
        }
        // Through a temporary area, keeping the group's layout, so that no move lands on a
        // mapping of the group that has not moved yet.
        let lo = moves.iter().map(|m| m.0).min().unwrap_or(0);
        let hi = moves.iter().map(|m| m.0 + m.1).max().unwrap_or(0);
        let mut busy = busy.to_vec();
        busy.push((self.scratch, self.scratch + SCRATCH_LEN));
        let temp = find_free(&busy, hi - lo).ok_or_else(|| {
            RestoreError::Invalid("no free address range to move the vdso through".into())
        })?;
        for (from, len, _, name) in &moves {
            let to = temp + (from - lo);
            self.sc(
                libc::SYS_mremap,
                [*from, *len, *len, MREMAP_MAYMOVE | MREMAP_FIXED, to, 0],
                || format!("moving {name} from {from:#x} to {to:#x}"),
            )?;
        }
        for (from, len, to, name) in &moves {
            let at = temp + (from - lo);
            self.sc(
                libc::SYS_mremap,
                [at, *len, *len, MREMAP_MAYMOVE | MREMAP_FIXED, *to, 0],
                || format!("moving {name} to {to:#x}"),
            )?;
        }
        Ok(())
    }

    /// Whether `vma` is mapped with PROT_WRITE added (so that pages can be written into it).
    fn mapped_writable(&self, vma: &Vma) -> bool {
        match &vma.backing {
            VmaBacking::Vdso | VmaBacking::Vvar | VmaBacking::VvarVclock | VmaBacking::Vsyscall => {
                false
            }
            VmaBacking::File { .. } => u64::from(vma.map_flags) & MAP_SHARED == 0,
            _ => true,
        }
    }

    fn map_vma(&self, vma: &Vma) -> Result<(), RestoreError> {
        let len = vma.end - vma.start;
        let keep = u64::from(vma.map_flags) & (MAP_GROWSDOWN | MAP_NORESERVE | MAP_LOCKED);
        let shared = u64::from(vma.map_flags) & MAP_SHARED != 0;
        let prot = u64::from(vma.prot)
            | if self.mapped_writable(vma) {
                u64::from(PROT_WRITE)
            } else {
                0
            };
        let (flags, fd, offset) = match &vma.backing {
            VmaBacking::Vdso | VmaBacking::Vvar | VmaBacking::VvarVclock | VmaBacking::Vsyscall => {
                return Ok(())
            }
            VmaBacking::Anonymous | VmaBacking::Heap => {
                (MAP_PRIVATE | MAP_ANONYMOUS | keep, u64::MAX, 0)
            }
            VmaBacking::Stack => (
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | keep,
                u64::MAX,
                0,
            ),
            // Built with their content by `shared_objects`.
            VmaBacking::SharedAnonymous { .. } => return Ok(()),
            VmaBacking::File { file, offset } => {
                let i = self.plan.aux_of_file.get(file).copied().ok_or_else(|| {
                    RestoreError::Invalid(format!(
                        "the mapping at {:#x}: file {file} was not opened",
                        vma.start
                    ))
                })?;
                let fd = *self.aux_fds.get(i).ok_or_else(|| {
                    RestoreError::Invalid("the child reported too few fds".into())
                })?;
                (
                    if shared { MAP_SHARED } else { MAP_PRIVATE } | keep,
                    fd as u64,
                    *offset,
                )
            }
        };
        let got = self.sc(
            libc::SYS_mmap,
            [
                vma.start,
                len,
                prot,
                flags | MAP_FIXED_NOREPLACE,
                fd,
                offset,
            ],
            || {
                format!(
                    "mapping {:#x}-{:#x} ({:?})",
                    vma.start, vma.end, vma.backing
                )
            },
        )?;
        if got != vma.start {
            return Err(RestoreError::Invalid(format!(
                "mapping {:#x} landed at {got:#x}",
                vma.start
            )));
        }
        let advice = [
            (MADV_BIT_DONTFORK, libc::MADV_DONTFORK),
            (MADV_BIT_DONTDUMP, libc::MADV_DONTDUMP),
            (MADV_BIT_HUGEPAGE, libc::MADV_HUGEPAGE),
            (MADV_BIT_NOHUGEPAGE, libc::MADV_NOHUGEPAGE),
            (MADV_BIT_MERGEABLE, libc::MADV_MERGEABLE),
            (MADV_BIT_WIPEONFORK, libc::MADV_WIPEONFORK),
        ];
        for (bit, advice) in advice {
            if vma.madvise & bit != 0 {
                self.sc(
                    libc::SYS_madvise,
                    [vma.start, len, advice as u64, 0, 0, 0],
                    || format!("madvise({advice}) on {:#x}-{:#x}", vma.start, vma.end),
                )?;
            }
        }
        Ok(())
    }

    /// Streams page stream `id` into the child; addresses are virtual addresses, or offsets
    /// added to `base` for a shared object's content.
    fn write_pages(&self, id: PagesId, base: u64) -> Result<(), RestoreError> {
        self.write_pages_checked(id, base, None)
    }

    /// [`Self::write_pages`]; with `object_size`, the stream is a shared object's content
    /// written at `base` (a temporary mapping of the whole object) instead of into the image's
    /// mappings, and must stay below `object_size`.
    fn write_pages_checked(
        &self,
        id: PagesId,
        base: u64,
        object_size: Option<u64>,
    ) -> Result<(), RestoreError> {
        // Reading and checking the image runs ahead on a thread of its own.
        let mut reader = self.image.pages(id)?.read_ahead()?;
        let mut mem: Option<std::fs::File> = None;
        while let Some((chunk, data)) = reader.next_chunk()? {
            let addr = base + chunk.addr;
            let end = addr + chunk.len as u64;
            if let Some(size) = object_size {
                if chunk.addr + chunk.len as u64 > size {
                    return Err(RestoreError::Invalid(format!(
                        "page stream {id} has content at offset {:#x}, past the end of its {size}-byte object",
                        chunk.addr
                    )));
                }
            }
            // Every byte must land in a mapping the image has and that may be written.
            let mut at = if object_size.is_some() { end } else { addr };
            while at < end {
                let vma = self
                    .p
                    .vmas
                    .iter()
                    .find(|v| v.start <= at && at < v.end)
                    .ok_or_else(|| {
                        RestoreError::Invalid(format!(
                            "page stream {id} has pages at {at:#x}, outside every mapping"
                        ))
                    })?;
                if !self.mapped_writable(vma) {
                    return Err(RestoreError::Invalid(format!(
                        "page stream {id} has pages at {at:#x}, in a mapping that is not restored from pages ({:?})",
                        vma.backing
                    )));
                }
                at = vma.end;
            }
            let remote = [RemoteIoVec {
                base: addr as usize,
                len: chunk.len,
            }];
            match process_vm::process_vm_writev(self.pid, &[IoSlice::new(data)], &remote) {
                Ok(n) if n == chunk.len => continue,
                _ => {}
            }
            // Fall back to /proc/PID/mem (FOLL_FORCE).
            if mem.is_none() {
                mem = Some(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(format!("/proc/{}/mem", self.pid))
                        .map_err(RestoreError::sys(format!("opening /proc/{}/mem", self.pid)))?,
                );
            }
            mem.as_ref()
                .expect("just opened")
                .write_all_at(data, addr)
                .map_err(RestoreError::sys(format!(
                    "writing {} bytes at {addr:#x}",
                    chunk.len
                )))?;
        }
        Ok(())
    }

    /// Shared anonymous objects (`MAP_SHARED|MAP_ANONYMOUS`): each one is mapped whole at a
    /// temporary address and filled with its content; every view the process had is then made
    /// with `mremap(old_size = 0)`, which maps the same pages again (so views of one object stay
    /// one object, and `/proc` still shows `/dev/zero (deleted)`), and given its protection; the
    /// temporary mapping goes away.
    fn shared_objects(&self) -> Result<(), RestoreError> {
        let mut objects: Vec<(PagesId, u64)> = Vec::new();
        for vma in &self.p.vmas {
            if let VmaBacking::SharedAnonymous { content, size, .. } = &vma.backing {
                if !objects.iter().any(|(c, _)| c == content) {
                    objects.push((*content, *size));
                }
            }
        }
        for (content, size) in objects {
            if let Some(&fd) = self.plan.shared_fds.get(&content) {
                self.map_shared_from_fd(content, fd)?;
                continue;
            }
            let mut busy: Vec<(u64, u64)> = self.p.vmas.iter().map(|v| (v.start, v.end)).collect();
            busy.push((self.scratch, self.scratch + SCRATCH_LEN));
            let temp = find_free(&busy, size).ok_or_else(|| {
                RestoreError::Invalid(format!("no free address range for shared object {content}"))
            })?;
            let got = self.sc(
                libc::SYS_mmap,
                [
                    temp,
                    size,
                    3,
                    MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                    u64::MAX,
                    0,
                ],
                || format!("mapping shared object {content} ({size} bytes)"),
            )?;
            if got != temp {
                return Err(RestoreError::Invalid(format!(
                    "shared object {content} landed at {got:#x}"
                )));
            }
            self.write_pages_checked(content, temp, Some(size))?;
            for (vma, offset) in self.views(content) {
                let len = vma.end - vma.start;
                self.sc(
                    libc::SYS_mremap,
                    [
                        temp + offset,
                        0,
                        len,
                        MREMAP_MAYMOVE | MREMAP_FIXED,
                        vma.start,
                        0,
                    ],
                    || {
                        format!(
                            "mapping view {:#x}-{:#x} of shared object {content}",
                            vma.start, vma.end
                        )
                    },
                )?;
                self.sc(
                    libc::SYS_mprotect,
                    [vma.start, len, u64::from(vma.prot), 0, 0, 0],
                    || format!("protecting {:#x}-{:#x}", vma.start, vma.end),
                )?;
            }
            self.sc(libc::SYS_munmap, [temp, size, 0, 0, 0, 0], || {
                format!("unmapping the temporary view of shared object {content}")
            })?;
        }
        Ok(())
    }

    /// The process's views of shared anonymous object `content`, with their offsets into it.
    fn views(&self, content: PagesId) -> impl Iterator<Item = (&Vma, u64)> + '_ {
        self.p
            .vmas
            .iter()
            .filter_map(move |vma| match &vma.backing {
                VmaBacking::SharedAnonymous {
                    content: c, offset, ..
                } if *c == content => Some((vma, *offset)),
                _ => None,
            })
    }

    /// Maps every view of shared object `content` that the process had from `fd`, the object
    /// crcli made (and filled) for several processes of a tree: `mmap(MAP_SHARED, fd, offset)`
    /// gives the same object, and the same `/dev/zero (deleted)` name and offset in
    /// `/proc/PID/maps`, as the processes had.
    fn map_shared_from_fd(&self, content: PagesId, fd: i32) -> Result<(), RestoreError> {
        for (vma, offset) in self.views(content) {
            let got = self.sc(
                libc::SYS_mmap,
                [
                    vma.start,
                    vma.end - vma.start,
                    u64::from(vma.prot),
                    MAP_SHARED | MAP_FIXED_NOREPLACE,
                    fd as u64,
                    offset,
                ],
                || {
                    format!(
                        "mapping view {:#x}-{:#x} of shared object {content} (fd {fd})",
                        vma.start, vma.end
                    )
                },
            )?;
            if got != vma.start {
                return Err(RestoreError::Invalid(format!(
                    "view {:#x} of shared object {content} landed at {got:#x}",
                    vma.start
                )));
            }
        }
        Ok(())
    }

    fn set_mm(&self) -> Result<(), RestoreError> {
        let mm = &self.p.mm;
        let exe_fd = match self.plan.exe_aux {
            Some(i) => *self
                .aux_fds
                .get(i)
                .ok_or_else(|| RestoreError::Invalid("the child reported too few fds".into()))?,
            None => -1,
        };
        if exe_fd < 0 || mm.auxv.is_empty() {
            return Err(RestoreError::Unsupported(
                "the image has no executable or no auxiliary vector; cannot set the memory descriptor".into(),
            ));
        }
        let auxv: Vec<u8> = mm.auxv.iter().flat_map(|w| w.to_le_bytes()).collect();
        if auxv.len() > 1024 {
            return Err(RestoreError::Invalid(format!(
                "auxiliary vector of {} bytes is too long",
                auxv.len()
            )));
        }
        let auxv_addr = self.poke(ARGS + 256, &auxv)?;
        let mut map = Vec::with_capacity(104);
        for v in [
            mm.start_code,
            mm.end_code,
            mm.start_data,
            mm.end_data,
            mm.start_brk,
            mm.brk,
            mm.start_stack,
            mm.arg_start,
            mm.arg_end,
            mm.env_start,
            mm.env_end,
            auxv_addr,
        ] {
            map.extend_from_slice(&v.to_le_bytes());
        }
        map.extend_from_slice(&(auxv.len() as u32).to_le_bytes());
        map.extend_from_slice(&(exe_fd as u32).to_le_bytes());
        let map_addr = self.poke(ARGS, &map)?;
        self.sc(
            libc::SYS_prctl,
            [PR_SET_MM, PR_SET_MM_MAP, map_addr, map.len() as u64, 0, 0],
            || "setting the memory descriptor (prctl PR_SET_MM_MAP)".into(),
        )?;
        Ok(())
    }

    fn set_sigactions(&self) -> Result<(), RestoreError> {
        let mut raw = Vec::with_capacity(64 * 32);
        for a in &self.p.sigactions {
            for v in [a.handler, a.flags, a.restorer, a.mask] {
                raw.extend_from_slice(&v.to_le_bytes());
            }
        }
        let base = self.poke(ARGS, &raw)?;
        // The 64 rt_sigaction calls run as one piece of injected code: one resume instead of
        // 62 single-stepped syscalls (SIGKILL and SIGSTOP are only queried).
        let code = sigaction_code(base);
        let at = self.poke(SIGACTION_CODE, &code)?;
        let regs = self
            .t
            .run_code(at, at + code.len() as u64)
            .map_err(RestoreError::ptrace(
                "setting the signal actions (rt_sigaction 1..64)",
            ))?;
        if regs.r13 != 0 {
            return Err(RestoreError::Invalid(format!(
                "setting the signal actions: rt_sigaction failed (errno bits {:#x})",
                (regs.r13 as i64).unsigned_abs()
            )));
        }
        Ok(())
    }

    /// The same rebuild, injecting into thread `t` of the process instead.
    fn for_thread<'b>(&'b self, t: &'b Tracee) -> Rebuild<'b> {
        t.set_syscall_site(Some(self.scratch));
        Rebuild {
            t,
            pid: self.pid,
            tid: t.pid(),
            scratch: self.scratch,
            image: self.image,
            p: self.p,
            plan: self.plan,
            aux_fds: self.aux_fds,
        }
    }

    /// Creates a thread of the process at thread id `ns_tid` (its id in the process's own PID
    /// namespace, which the injected call runs in; `tid` is the dumped id, for messages) by a
    /// `clone3` injected into this (the main) thread, with `PTRACE_O_TRACECLONE` set: the new
    /// thread starts traced, in a stop of its own, which this waits for. It is traced by its id
    /// in crcli's namespace (the clone event's message). Its registers are the main thread's
    /// until set.
    fn create_thread(&self, tid: u32, ns_tid: u32) -> Result<Tracee, RestoreError> {
        let pid = self.pid;
        let want = i32::try_from(ns_tid)
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| RestoreError::Invalid(format!("thread id {ns_tid} of process {pid}")))?;
        let tid_at = self.poke(ARGS + 128, &want.to_le_bytes())?;
        let args = clone3::thread_clone_args(tid_at);
        let args_at = self.poke(ARGS, &args)?;
        let ret = self
            .t
            .inject_syscall(libc::SYS_clone3, [args_at, args.len() as u64, 0, 0, 0, 0])
            .map_err(|source| RestoreError::Ptrace {
                step: format!("creating thread {tid} of process {pid} (injected clone3)"),
                source,
            })?;
        if (-4095..0).contains(&ret) {
            let errno = rustix::io::Errno::from_raw_os_error(-ret as i32);
            let why = match errno {
                rustix::io::Errno::EXIST => format!(
                    "thread id {tid} is taken by another process or thread on this machine"
                ),
                rustix::io::Errno::PERM => format!(
                    "not permitted to choose thread id {tid} (needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)"
                ),
                rustix::io::Errno::INVAL => {
                    format!("thread id {tid} is out of this PID namespace's range")
                }
                _ => format!("clone3 for thread {tid} failed"),
            };
            return Err(RestoreError::Sys {
                step: format!("creating thread {tid} of process {pid}: {why}"),
                source: errno.into(),
            });
        }
        let Some(here) = self.t.last_new_task().filter(|&h| h > 0) else {
            return Err(RestoreError::Invalid(format!(
                "thread {tid} of process {pid} was created as {ret} but its clone event was not seen"
            )));
        };
        let nt = Tracee::assume_attached(here);
        if ret != i64::from(want) {
            // Cannot happen with set_tid; never leave such a thread untraced-for.
            return Err(RestoreError::Invalid(format!(
                "thread {tid} of process {pid} was created as {ret}"
            )));
        }
        match nt.wait_stop() {
            Ok(ptrace::WaitStatus::Stopped {
                event: ptrace::PTRACE_EVENT_STOP,
                ..
            }) => {}
            Ok(other) => {
                return Err(RestoreError::Invalid(format!(
                    "new thread {tid} of process {pid} did not start stopped ({other})"
                )))
            }
            Err(source) => {
                return Err(RestoreError::Ptrace {
                    step: format!("waiting for new thread {tid} of process {pid} to stop"),
                    source,
                })
            }
        }
        tracing::debug!(pid, tid, "thread created");
        Ok(nt)
    }

    /// The name of this `Rebuild`'s thread (`PR_SET_NAME` names the calling thread only; the
    /// main thread's name is the process name, set with the mm fields).
    fn set_thread_name(&self, th: &Thread) -> Result<(), RestoreError> {
        let mut name = th.comm.as_bytes().to_vec();
        name.truncate(15);
        name.push(0);
        let addr = self.poke(ARGS, &name)?;
        self.sc(libc::SYS_prctl, [PR_SET_NAME, addr, 0, 0, 0, 0], || {
            format!("setting the name of thread {}", th.tid)
        })?;
        Ok(())
    }

    /// Per-thread state injected into this `Rebuild`'s thread: alternate signal stack, robust
    /// list, `clear_child_tid`, rseq.
    fn set_thread_state(&self, th: &Thread) -> Result<(), RestoreError> {
        // sigaltstack (crcli's own, inherited by the child, is replaced either way).
        let ss = th.sigaltstack;
        let flags = if ss.flags & SS_DISABLE != 0 {
            SS_DISABLE
        } else {
            ss.flags & SS_AUTODISARM
        };
        let mut raw = Vec::with_capacity(24);
        raw.extend_from_slice(&ss.sp.to_le_bytes());
        raw.extend_from_slice(&flags.to_le_bytes());
        raw.extend_from_slice(&0u32.to_le_bytes());
        raw.extend_from_slice(&ss.size.to_le_bytes());
        let addr = self.poke(ARGS, &raw)?;
        self.sc(libc::SYS_sigaltstack, [addr, 0, 0, 0, 0, 0], || {
            "setting the alternate signal stack".into()
        })?;
        let len = if th.robust_list.len == 0 {
            24
        } else {
            th.robust_list.len
        };
        self.sc(
            libc::SYS_set_robust_list,
            [th.robust_list.head, len, 0, 0, 0, 0],
            || "setting the robust futex list".into(),
        )?;
        self.sc(
            libc::SYS_set_tid_address,
            [th.clear_child_tid, 0, 0, 0, 0, 0],
            || "setting clear_child_tid".into(),
        )?;
        if let Some(r) = th.rseq {
            self.sc(
                libc::SYS_rseq,
                [r.ptr, u64::from(r.len), 0, u64::from(r.sig), 0, 0],
                || format!("registering rseq at {:#x}", r.ptr),
            )?;
        }
        if th.tls.iter().any(|d| d.base_addr != 0 || d.limit != 0) {
            return Err(RestoreError::Unsupported(
                "32-bit TLS descriptors (set_thread_area) are not supported".into(),
            ));
        }
        Ok(())
    }

    /// The three interval timers of the process (process-wide: set from the main thread), with
    /// their dumped remaining values and intervals; a disarmed one is set disarmed too.
    fn set_itimers(&self) -> Result<(), RestoreError> {
        let t = &self.p.itimers;
        for (which, name, it) in [
            (libc::ITIMER_REAL, "ITIMER_REAL", t.real),
            (libc::ITIMER_VIRTUAL, "ITIMER_VIRTUAL", t.virt),
            (libc::ITIMER_PROF, "ITIMER_PROF", t.prof),
        ] {
            let mut raw = Vec::with_capacity(32);
            for us in [it.interval_us, it.value_us] {
                raw.extend_from_slice(&(us / 1_000_000).to_le_bytes());
                raw.extend_from_slice(&(us % 1_000_000).to_le_bytes());
            }
            let addr = self.poke(ARGS, &raw)?;
            self.sc(
                libc::SYS_setitimer,
                [which as u64, addr, 0, 0, 0, 0],
                || format!("setting the interval timer {name} of process {}", self.pid),
            )?;
        }
        Ok(())
    }

    /// dumpable, no_new_privs, child_subreaper; then uids, gids, groups and capabilities when
    /// they differ from crcli's (the bounding and ambient sets cannot be restored yet: refused).
    fn set_flags_and_creds(&self) -> Result<(), RestoreError> {
        let p = self.p;
        let c = &p.creds;
        let mut target_groups = c.groups.clone();
        target_groups.sort_unstable();
        let now = read_creds(self.tid)?;
        let mut now_groups = now.groups.clone();
        now_groups.sort_unstable();
        if c.cap_bnd != now.cap_bnd || c.cap_amb != now.cap_amb {
            return Err(RestoreError::Unsupported(format!(
                "the process had capability bounding set {:#x} and ambient set {:#x}; restoring sets other than crcli's ({:#x}, {:#x}) is not implemented yet",
                c.cap_bnd, c.cap_amb, now.cap_bnd, now.cap_amb
            )));
        }
        if p.child_subreaper {
            self.sc(
                libc::SYS_prctl,
                [PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0],
                || "setting child_subreaper".into(),
            )?;
        }
        if target_groups != now_groups {
            let raw: Vec<u8> = c.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
            let addr = self.poke(ARGS, &raw)?;
            self.sc(
                libc::SYS_setgroups,
                [c.groups.len() as u64, addr, 0, 0, 0, 0],
                || format!("setting the supplementary groups {:?}", c.groups),
            )?;
        }
        if c.gids != now.gids {
            let [r, e, s, fs] = c.gids.map(u64::from);
            self.sc(libc::SYS_setresgid, [r, e, s, 0, 0, 0], || {
                format!("setting gids {:?}", c.gids)
            })?;
            self.sc(libc::SYS_setfsgid, [fs, 0, 0, 0, 0, 0], || {
                "setting the fs gid".into()
            })?;
        }
        if c.uids != now.uids {
            let [r, e, s, fs] = c.uids.map(u64::from);
            self.sc(libc::SYS_setresuid, [r, e, s, 0, 0, 0], || {
                format!("setting uids {:?}", c.uids)
            })?;
            self.sc(libc::SYS_setfsuid, [fs, 0, 0, 0, 0, 0], || {
                "setting the fs uid".into()
            })?;
        }
        let now = read_creds(self.tid)?;
        if (c.cap_eff, c.cap_prm, c.cap_inh) != (now.cap_eff, now.cap_prm, now.cap_inh) {
            let mut raw = Vec::with_capacity(32);
            raw.extend_from_slice(&LINUX_CAPABILITY_VERSION_3.to_le_bytes());
            raw.extend_from_slice(&0u32.to_le_bytes());
            for half in [0u32, 32] {
                for v in [c.cap_eff, c.cap_prm, c.cap_inh] {
                    raw.extend_from_slice(&((v >> half) as u32).to_le_bytes());
                }
            }
            let hdr = self.poke(ARGS, &raw)?;
            self.sc(libc::SYS_capset, [hdr, hdr + 8, 0, 0, 0, 0], || {
                format!(
                    "setting capabilities (effective {:#x}, permitted {:#x})",
                    c.cap_eff, c.cap_prm
                )
            })?;
        }
        if p.no_new_privs {
            self.sc(
                libc::SYS_prctl,
                [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0],
                || "setting no_new_privs".into(),
            )?;
        }
        if p.dumpable <= 2 {
            self.sc(
                libc::SYS_prctl,
                [PR_SET_DUMPABLE, u64::from(p.dumpable.min(1)), 0, 0, 0, 0],
                || "setting the dumpable flag".into(),
            )?;
        }
        Ok(())
    }

    /// Re-queues the signals pending for thread `th` (this `Rebuild`'s thread: the kernel lets a
    /// thread queue a user signal only to itself) and, for the main thread, the process-wide
    /// ones.
    fn queue_signals(&self, th: &Thread) -> Result<(), RestoreError> {
        let send = |info: &Vec<u8>, shared: bool| -> Result<(), RestoreError> {
            if info.len() != 128 {
                return Err(RestoreError::Invalid(format!(
                    "a queued siginfo of {} bytes",
                    info.len()
                )));
            }
            let signo = u32::from_le_bytes(info[0..4].try_into().expect("4 bytes")) as u64;
            if !(1..=64).contains(&signo) {
                return Err(RestoreError::Invalid(format!(
                    "a queued signal numbered {signo}"
                )));
            }
            let addr = self.poke(ARGS, info)?;
            // The ids as the process sees them: the injected call runs in its PID namespace,
            // the tree's own one (ids `ns_pid`/`ns_tid`) or crcli's (the tracees' ids).
            let (pid, tid) = if self.image.inventory().tree.namespaces.own_pid_ns {
                (u64::from(self.p.ns_pid), u64::from(th.ns_tid))
            } else {
                (self.pid as u64, self.tid as u64)
            };
            if shared {
                self.sc(
                    libc::SYS_rt_sigqueueinfo,
                    [pid, signo, addr, 0, 0, 0],
                    || format!("re-queueing signal {signo}"),
                )?;
            } else {
                self.sc(
                    libc::SYS_rt_tgsigqueueinfo,
                    [pid, tid, signo, addr, 0, 0],
                    || format!("re-queueing signal {signo} for thread {tid}"),
                )?;
            }
            Ok(())
        };
        if self.tid == self.pid {
            for info in &self.p.shared_pending.queued {
                send(info, true)?;
            }
        }
        for info in &th.pending.queued {
            send(info, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(rax: i64, orig_rax: i64, rip: u64) -> UserRegs {
        UserRegs {
            rax: rax as u64,
            orig_rax: orig_rax as u64,
            rip,
            ..UserRegs::default()
        }
    }

    #[test]
    fn interrupted_syscalls_are_restarted_from_their_start() {
        for code in [-512i64, -513, -514, -516] {
            let r = final_regs(&regs(code, 230, 0x1002));
            assert_eq!(
                (r.rax, r.rip, r.orig_rax as i64),
                (230, 0x1000, -1),
                "code {code}"
            );
        }
    }

    #[test]
    fn finished_syscalls_and_user_code_are_left_alone() {
        // A syscall that returned -EINTR, one that returned a value, and plain user code.
        for (rax, orig) in [(-4i64, 0i64), (5, 1), (-516, -1)] {
            let r = final_regs(&regs(rax, orig, 0x2000));
            assert_eq!((r.rax as i64, r.rip, r.orig_rax as i64), (rax, 0x2000, -1));
        }
    }

    #[test]
    fn the_sigaction_loop_jumps_back_to_its_start() {
        let c = sigaction_code(0x1122_3344_5566_7788);
        assert_eq!(&c[7..15], &0x1122_3344_5566_7788u64.to_le_bytes());
        let start = 18; // after mov ebx; mov r12, imm64; xor r13d
        assert_eq!(c[start], 0xb8, "the loop starts with mov eax, 13");
        assert_eq!(*c.last().unwrap(), 0xcc, "it ends with int3");
        let jne_end = c.len() - 1;
        assert_eq!(c[jne_end - 2], 0x75);
        let target = jne_end as i64 + i64::from(c[jne_end - 1] as i8);
        assert_eq!(target, start as i64);
        assert_eq!(c.windows(2).filter(|w| w == &[0x0f, 0x05]).count(), 1);
    }

    #[test]
    fn free_ranges_avoid_every_busy_range() {
        let top = 0x7e00_0000_0000u64;
        assert_eq!(find_free(&[], 0x4000), Some(top));
        let busy = [
            (top - 0x1000, top + 0x10_0000),
            (top - 0x20_0000, top - 0x8000),
        ];
        let got = find_free(&busy, 0x4000).unwrap();
        assert_eq!(got % PAGE_SIZE, 0);
        for (s, e) in busy {
            assert!(
                got + 0x4000 <= s || got >= e,
                "{got:#x} overlaps {s:#x}-{e:#x}"
            );
        }
        assert_eq!(find_free(&[(0, TASK_SIZE)], 0x1000), None);
    }
}
