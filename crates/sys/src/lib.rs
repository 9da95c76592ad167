//! # crcli-sys: the raw kernel interfaces of crcli
//!
//! The lowest layer of crcli. It wraps, safely, the Linux interfaces crcli needs that `rustix`
//! does not offer (statmount, listmount, the new mount API where rustix lacks it, ptrace, pidfds,
//! …) and probes once per process which of them the running kernel has.
//!
//! Every `unsafe` block of the workspace lives in this crate; every other crate is
//! `#![forbid(unsafe_code)]`.
//!
//! Mount side: [`statmount`], [`listmount`], [`statx`] (mount ids), [`nsfs`] (mount namespace
//! ids), [`mount`] (open_tree, move_mount, fsopen/fsconfig/fsmount/fspick, mount_setattr,
//! umount2), [`pidfd`], and [`features`] (`Features::current()`). Process side: [`ptrace`],
//! [`process_vm`], [`clone3`], [`shmem`] (shared anonymous objects held by an fd), [`signal`]
//! (ignoring a signal, dying by one).
//!
//! Conventions: wrappers are named after the syscall; fds go in as `AsFd`/`BorrowedFd` and come
//! out as `OwnedFd`; flags are `bitflags` types; failures are `rustix::io::Errno` (decoded in
//! one place, `raw::syscall_result`) or, where a result is decoded, a per-module `thiserror` enum.

// Mount interfaces.
pub mod features;
pub mod listmount;
pub mod mntns;
pub mod mount;
pub mod nsfs;
pub mod pidfd;
mod raw;
pub mod statmount;
pub mod statx;

// Process interfaces (ptrace, memory of another process, clone3).
pub mod clone3;
pub mod fdtable;
pub mod process_vm;
pub mod ptrace;
pub mod sched;
pub mod shmem;
pub mod signal;
pub mod task;
