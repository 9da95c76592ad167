//! process_vm_readv(2) / process_vm_writev(2): copy memory between crcli and another process
//! (Linux 3.2), many iovecs per call.
//!
//! The remote side is described by [`RemoteIoVec`]s (addresses in the other process); the local
//! side by std's [`IoSliceMut`] / [`IoSlice`]. One call takes at most [`IOV_MAX`] iovecs on
//! each side (more gives EINVAL). Transfers can be partial: the kernel stops at the first remote
//! iovec it cannot access (a hole, an unreadable mapping such as `[vvar]`, or a non-writable
//! one for writes) and returns how many bytes it copied; a partial transfer never splits a
//! remote iovec except at a page boundary. Check the returned count.
//!
//! Permission: the caller needs ptrace access to the process (root, or same user with
//! `PTRACE_MODE_ATTACH_REALCREDS`); the process need not be stopped.
//!
//! ```no_run
//! use crcli_sys::process_vm::{process_vm_readv, RemoteIoVec};
//! use std::io::IoSliceMut;
//! # fn main() -> Result<(), rustix::io::Errno> {
//! let mut page = vec![0u8; 4096];
//! let n = process_vm_readv(
//!     1234,
//!     &mut [IoSliceMut::new(&mut page)],
//!     &[RemoteIoVec { base: 0x7f00_0000_0000, len: 4096 }],
//! )?;
//! assert!(n <= 4096);
//! # Ok(())
//! # }
//! ```

use std::io::{IoSlice, IoSliceMut};

pub use rustix::io::Errno;

/// The most iovecs one call takes on each side (`UIO_MAXIOV`).
pub const IOV_MAX: usize = 1024;

/// A range of memory in the other process: the kernel's `struct iovec`, with an address that is
/// only meaningful there.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteIoVec {
    /// Start address in the remote process.
    pub base: usize,
    /// Length in bytes.
    pub len: usize,
}

fn check_counts(local: usize, remote: usize) -> Result<(), Errno> {
    if local > IOV_MAX || remote > IOV_MAX {
        return Err(Errno::INVAL);
    }
    Ok(())
}

/// `process_vm_readv(pid, local, liovcnt, remote, riovcnt, 0)`: copies from the ranges
/// `remote` of process `pid` into `local`, in order, and returns the number of bytes copied
/// (may be less than asked; see the module docs). Man page: process_vm_readv(2).
pub fn process_vm_readv(
    pid: i32,
    local: &mut [IoSliceMut<'_>],
    remote: &[RemoteIoVec],
) -> Result<usize, Errno> {
    check_counts(local.len(), remote.len())?;
    // SAFETY: std guarantees IoSliceMut is ABI-compatible with `struct iovec` on Unix, and each
    // describes a live, writable buffer borrowed mutably for the call; RemoteIoVec is
    // repr(C) with iovec's layout and is only read by the kernel (its addresses refer to the
    // other process, which the kernel checks). Counts are within UIO_MAXIOV.
    let ret = unsafe {
        libc::process_vm_readv(
            pid,
            local.as_mut_ptr().cast::<libc::iovec>(),
            local.len() as libc::c_ulong,
            remote.as_ptr().cast::<libc::iovec>(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if ret < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    Ok(ret as usize)
}

/// `process_vm_writev(pid, local, liovcnt, remote, riovcnt, 0)`: copies `local`, in order,
/// into the ranges `remote` of process `pid` and returns the number of bytes copied. Fails
/// (EFAULT, or a short count) on remote mappings that are not writable: use `/proc/PID/mem`
/// for those. Man page: process_vm_writev(2).
pub fn process_vm_writev(
    pid: i32,
    local: &[IoSlice<'_>],
    remote: &[RemoteIoVec],
) -> Result<usize, Errno> {
    check_counts(local.len(), remote.len())?;
    // SAFETY: std guarantees IoSlice is ABI-compatible with `struct iovec` on Unix, and each
    // describes a live, readable buffer borrowed for the call (the kernel only reads it);
    // RemoteIoVec is repr(C) with iovec's layout. Counts are within UIO_MAXIOV.
    let ret = unsafe {
        libc::process_vm_writev(
            pid,
            local.as_ptr().cast::<libc::iovec>(),
            local.len() as libc::c_ulong,
            remote.as_ptr().cast::<libc::iovec>(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if ret < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    Ok(ret as usize)
}

/// Reads exactly `buf.len()` bytes at `addr` of process `pid` (one or more
/// process_vm_readv calls); fails with EFAULT if part of the range cannot be read.
pub fn read_exact(pid: i32, addr: usize, buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0;
    let total = buf.len();
    while done < total {
        let n = process_vm_readv(
            pid,
            &mut [IoSliceMut::new(&mut buf[done..])],
            &[RemoteIoVec {
                base: addr + done,
                len: total - done,
            }],
        )?;
        if n == 0 {
            return Err(Errno::FAULT);
        }
        done += n;
    }
    Ok(())
}

/// Writes all of `buf` at `addr` of process `pid` (one or more process_vm_writev calls);
/// fails with EFAULT if part of the range cannot be written.
pub fn write_all(pid: i32, addr: usize, buf: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        let n = process_vm_writev(
            pid,
            &[IoSlice::new(&buf[done..])],
            &[RemoteIoVec {
                base: addr + done,
                len: buf.len() - done,
            }],
        )?;
        if n == 0 {
            return Err(Errno::FAULT);
        }
        done += n;
    }
    Ok(())
}
