//! Scheduling settings of one thread, read and set by another process: `sched_getattr(2)` and
//! `sched_setattr(2)` (rustix has no wrapper), with `struct sched_attr` kept inside this module.
//! Nice values and CPU affinity are rustix's (`getpriority_process`, `sched_getaffinity`).
//!
//! ```no_run
//! use crcli_sys::sched::{sched_getattr, sched_setattr};
//! # fn main() -> Result<(), rustix::io::Errno> {
//! let attr = sched_getattr(1234)?;
//! sched_setattr(1235, &attr)?;
//! # Ok(())
//! # }
//! ```

pub use rustix::io::Errno;

use crate::raw::syscall_result;

/// `SCHED_FLAG_RESET_ON_FORK`: children of the thread start with the default policy.
pub const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;

/// The kernel's `struct sched_attr` up to `SCHED_ATTR_SIZE_VER1` (56 bytes, with the
/// utilization clamps), in its order.
#[repr(C)]
#[derive(Default)]
struct RawSchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

/// A thread's scheduling policy and its parameters, as `sched_getattr` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedAttr {
    /// `SCHED_OTHER` (0), `SCHED_FIFO` (1), `SCHED_RR` (2), `SCHED_BATCH` (3), `SCHED_IDLE` (5),
    /// `SCHED_DEADLINE` (6).
    pub policy: u32,
    /// `SCHED_FLAG_*` bits; only [`SCHED_FLAG_RESET_ON_FORK`] is kept by [`sched_getattr`].
    pub flags: u64,
    /// The nice value (fair policies).
    pub nice: i32,
    /// The static priority (1 to 99 for `SCHED_FIFO` and `SCHED_RR`, else 0).
    pub priority: u32,
    /// `SCHED_DEADLINE` runtime, in nanoseconds.
    pub runtime: u64,
    /// `SCHED_DEADLINE` deadline, in nanoseconds.
    pub deadline: u64,
    /// `SCHED_DEADLINE` period, in nanoseconds.
    pub period: u64,
}

/// `sched_getattr(tid, &attr, sizeof attr, 0)` (Linux 3.14): the scheduling policy and
/// parameters of thread `tid`. The utilization clamps the kernel also reports are dropped, and
/// of the flags only `SCHED_FLAG_RESET_ON_FORK` is kept.
/// See [sched_getattr(2)](https://man7.org/linux/man-pages/man2/sched_getattr.2.html).
pub fn sched_getattr(tid: i32) -> Result<SchedAttr, Errno> {
    let mut raw = RawSchedAttr::default();
    // SAFETY: `raw` is a writable `struct sched_attr` of the size passed, a local that outlives
    // the call; the kernel writes at most that many bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid as libc::c_long,
            &mut raw as *mut RawSchedAttr,
            std::mem::size_of::<RawSchedAttr>() as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    syscall_result(ret)?;
    Ok(SchedAttr {
        policy: raw.sched_policy,
        flags: raw.sched_flags & SCHED_FLAG_RESET_ON_FORK,
        nice: raw.sched_nice,
        priority: raw.sched_priority,
        runtime: raw.sched_runtime,
        deadline: raw.sched_deadline,
        period: raw.sched_period,
    })
}

/// `sched_setattr(tid, &attr, 0)` (Linux 3.14): sets the scheduling policy and parameters of
/// thread `tid` (the utilization clamps are left as they are).
/// See [sched_setattr(2)](https://man7.org/linux/man-pages/man2/sched_setattr.2.html).
pub fn sched_setattr(tid: i32, attr: &SchedAttr) -> Result<(), Errno> {
    let raw = RawSchedAttr {
        // SCHED_ATTR_SIZE_VER0: without the clamps, which the kernel then leaves alone.
        size: 48,
        sched_policy: attr.policy,
        sched_flags: attr.flags,
        sched_nice: attr.nice,
        sched_priority: attr.priority,
        sched_runtime: attr.runtime,
        sched_deadline: attr.deadline,
        sched_period: attr.period,
        ..Default::default()
    };
    // SAFETY: `raw` is a readable `struct sched_attr` at least as large as its `size` field
    // says, a local that outlives the call; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            tid as libc::c_long,
            &raw as *const RawSchedAttr,
            0 as libc::c_uint,
        )
    };
    syscall_result(ret).map(|_| ())
}
