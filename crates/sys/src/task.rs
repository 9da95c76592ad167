//! Per-process state that another process can read with plain syscalls, where rustix has no
//! wrapper (or only one that also writes): `get_robust_list(2)`, the read-only form of
//! `prlimit(2)`, `kcmp(2)` for telling whether two fds share one open file description, and the
//! page frame number of the shared zero page ([`zero_page_pfn`]).
//!
//! All of them need ptrace access to the target process (`PTRACE_MODE_READ_REALCREDS`), which
//! root has.
//!
//! ```no_run
//! use crcli_sys::task::{get_robust_list, prlimit_get};
//! # fn main() -> Result<(), rustix::io::Errno> {
//! let (head, len) = get_robust_list(1234)?;
//! let nofile = prlimit_get(1234, libc::RLIMIT_NOFILE)?;
//! println!("robust list at {head:#x} ({len} bytes), NOFILE {nofile:?}");
//! # Ok(())
//! # }
//! ```

pub use rustix::io::Errno;

fn last_errno() -> Errno {
    Errno::from_raw_os_error(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

/// `get_robust_list(pid, &head, &len)` (Linux 2.6.17): the head address and length of the
/// robust futex list registered by thread `pid` (head 0 when none was registered; glibc registers one of length 24 for every thread).
/// See get_robust_list(2).
pub fn get_robust_list(pid: i32) -> Result<(u64, u64), Errno> {
    let mut head: u64 = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: `head` and `len` are writable locals of the pointer and size_t size the kernel
    // writes; they outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            pid as libc::c_long,
            &mut head as *mut u64,
            &mut len as *mut libc::size_t,
        )
    };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok((head, len as u64))
}

/// One resource limit: soft and hard, `u64::MAX` for `RLIM_INFINITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The soft limit.
    pub cur: u64,
    /// The hard limit.
    pub max: u64,
}

/// `prlimit64(pid, resource, NULL, &old)` (Linux 2.6.36): reads one resource limit of process
/// `pid` without changing it (`resource` is `RLIMIT_*`). See prlimit(2).
pub fn prlimit_get(pid: i32, resource: u32) -> Result<Rlimit, Errno> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a NULL new limit makes this a pure read; `old` is a writable rlimit64 outliving
    // the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            pid as libc::c_long,
            resource as libc::c_long,
            std::ptr::null::<libc::rlimit64>(),
            &mut old as *mut libc::rlimit64,
        )
    };
    if ret < 0 {
        return Err(last_errno());
    }
    Ok(Rlimit {
        cur: old.rlim_cur,
        max: old.rlim_max,
    })
}

/// `KCMP_FILE`.
const KCMP_FILE: libc::c_long = 0;

/// `kcmp(pid1, pid2, KCMP_FILE, fd1, fd2)` (Linux 3.5): whether fd `fd1` of `pid1` and fd `fd2`
/// of `pid2` refer to the same open file description. EBADF if an fd is not open. See kcmp(2).
pub fn kcmp_same_file(pid1: i32, pid2: i32, fd1: i32, fd2: i32) -> Result<bool, Errno> {
    // SAFETY: kcmp with KCMP_FILE takes only integers and touches no memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1 as libc::c_long,
            pid2 as libc::c_long,
            KCMP_FILE,
            fd1 as libc::c_long,
            fd2 as libc::c_long,
        )
    };
    match ret {
        0 => Ok(true),
        1..=3 => Ok(false),
        _ => Err(last_errno()),
    }
}

/// The page frame number of the kernel's shared zero page (what an anonymous private page
/// that was only ever read maps), found by read-faulting one fresh anonymous page of crcli's
/// own and reading its `/proc/self/pagemap` entry. `None` when the kernel hides page frame
/// numbers (without `CAP_SYS_ADMIN` pagemap reports them as 0) or the probe fails.
///
/// A dumper can skip pages that map it: untouched anonymous memory reads as zeros after a
/// restore anyway. (CRIU's `kerndat_get_zero_pfn` does the same.)
pub fn zero_page_pfn() -> Option<u64> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    const PM_PRESENT: u64 = 1 << 63;
    const PFN_MASK: u64 = (1 << 55) - 1;
    // SAFETY: a fresh private anonymous read-only mapping of one page; no existing memory is
    // affected (addr NULL, no MAP_FIXED); it is unmapped below and no reference to it escapes.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `addr` is the start of the readable page mapped just above; a volatile read
    // makes the kernel map the zero page there.
    let _ = unsafe { std::ptr::read_volatile(addr.cast::<u8>()) };
    let entry = std::fs::File::open("/proc/self/pagemap")
        .ok()
        .and_then(|f| {
            let mut word = [0u8; 8];
            f.read_exact_at(&mut word, (addr as u64 / PAGE as u64) * 8)
                .ok()
                .map(|_| u64::from_ne_bytes(word))
        });
    // SAFETY: unmaps exactly the page mapped above, which nothing references any more.
    unsafe { libc::munmap(addr, PAGE) };
    let entry = entry?;
    let pfn = entry & PFN_MASK;
    (entry & PM_PRESENT != 0 && pfn != 0).then_some(pfn)
}
