//! `listmount(2)`: the unique ids of the mounts of a mount namespace, or of the mounts below a
//! given mount, in id order (or reverse), paged through with the last id already seen.
//!
//! [`listmount`] is one raw call; [`Listmount`] is an iterator that pages through any number of
//! mounts with a bounded buffer ([`PAGE`] ids per call); [`listmount_all`] collects it.
//!
//! ```
//! use crcli_sys::listmount::{listmount_all, ListmountFlags, LSMT_ROOT};
//! let ids = listmount_all(LSMT_ROOT, None, ListmountFlags::empty())?;
//! println!("{} mounts", ids.len());
//! # Ok::<(), rustix::io::Errno>(())
//! ```

use bitflags::bitflags;
use rustix::io::Errno;

use crate::raw::{syscall_result, SYS_LISTMOUNT};
use crate::statmount::MntIdReq;

/// `LSMT_ROOT`: list from the root of the namespace (as seen from the caller's root).
pub const LSMT_ROOT: u64 = u64::MAX;

/// Ids asked for per call by [`Listmount`].
pub const PAGE: usize = 512;

bitflags! {
    /// Flags of [`listmount`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ListmountFlags: u32 {
        /// `LISTMOUNT_REVERSE`: list in decreasing id order (Linux 6.11).
        const REVERSE = 1;
        /// Bits a future kernel may define.
        const _ = !0;
    }
}

/// `listmount({.mnt_id, .param = last_mnt_id, .mnt_ns_id}, list, nr, flags)`: one call. Linux
/// 6.8 (`mnt_ns_id` and `LISTMOUNT_REVERSE` since 6.11).
///
/// No man page in Debian 12; see kernel commit b4c2bea8ceaa ("add listmount(2) syscall") and
/// <https://man7.org/linux/man-pages/man2/listmount.2.html>.
///
/// Writes the unique ids of the mounts below `mnt_id` ([`LSMT_ROOT`] for the whole namespace,
/// root included) that come after `last_mnt_id` (0 to start) into `list`, and returns how many.
/// `mnt_ns_id: None` is the caller's namespace. Errors: `ENOENT` no such mount or namespace,
/// `EINVAL` unknown flags/fields, `EPERM` a namespace the caller may not see, `ENOSYS` kernel
/// before 6.8.
pub fn listmount(
    mnt_id: u64,
    mnt_ns_id: Option<u64>,
    last_mnt_id: u64,
    flags: ListmountFlags,
    list: &mut [u64],
) -> Result<usize, Errno> {
    let req = MntIdReq::new(mnt_id, mnt_ns_id.unwrap_or(0), last_mnt_id);
    // SAFETY: `req` is a live, initialised `struct mnt_id_req` of at least `req.size` bytes;
    // `list` is a live, writable array of exactly `list.len()` u64s, of which the kernel writes
    // at most that many; neither is referenced by the kernel after the call.
    let ret = unsafe {
        libc::syscall(
            SYS_LISTMOUNT,
            &req as *const MntIdReq,
            list.as_mut_ptr(),
            list.len(),
            flags.bits() as libc::c_ulong,
        )
    };
    let n = syscall_result(ret)? as usize;
    // The kernel never returns more than asked; treat anything else as a kernel bug, not UB.
    Ok(n.min(list.len()))
}

/// An iterator over the mount ids listmount returns, paging internally ([`PAGE`] ids per call).
///
/// Yields `Err` once (and then ends) if a call fails.
#[derive(Debug)]
pub struct Listmount {
    mnt_id: u64,
    mnt_ns_id: Option<u64>,
    flags: ListmountFlags,
    last: u64,
    page: Vec<u64>,
    pos: usize,
    done: bool,
}

impl Listmount {
    /// Lists the mounts below `mnt_id` ([`LSMT_ROOT`] for all) of the namespace `mnt_ns_id`
    /// (`None`: the caller's), in the order `flags` asks for.
    pub fn new(mnt_id: u64, mnt_ns_id: Option<u64>, flags: ListmountFlags) -> Self {
        Listmount {
            mnt_id,
            mnt_ns_id,
            flags,
            last: 0,
            page: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Iterator for Listmount {
    type Item = Result<u64, Errno>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos == self.page.len() {
            if self.done {
                return None;
            }
            self.page.resize(PAGE, 0);
            match listmount(
                self.mnt_id,
                self.mnt_ns_id,
                self.last,
                self.flags,
                &mut self.page,
            ) {
                Ok(n) => {
                    self.page.truncate(n);
                    self.pos = 0;
                    // A short page is the last one.
                    self.done = n < PAGE;
                    match self.page.last() {
                        Some(&last) => self.last = last,
                        None => return None,
                    }
                }
                Err(e) => {
                    self.page.clear();
                    self.pos = 0;
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let id = self.page[self.pos];
        self.pos += 1;
        Some(Ok(id))
    }
}

/// All mount ids below `mnt_id` ([`LSMT_ROOT`] for the whole namespace) of the namespace
/// `mnt_ns_id` (`None`: the caller's), however many there are.
pub fn listmount_all(
    mnt_id: u64,
    mnt_ns_id: Option<u64>,
    flags: ListmountFlags,
) -> Result<Vec<u64>, Errno> {
    Listmount::new(mnt_id, mnt_ns_id, flags).collect()
}
