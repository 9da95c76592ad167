//! # crcli-sys: the raw kernel interfaces of crcli
//!
//! The lowest layer of crcli. It wraps, safely, the Linux interfaces crcli needs that `rustix`
//! does not offer (statmount, listmount, the new mount API where rustix lacks it, ptrace, pidfds,
//! …) and probes once per process which of them the running kernel has.
//!
//! Every `unsafe` block of the workspace lives in this crate; every other crate is
//! `#![forbid(unsafe_code)]`.
//!
//! Status: under construction.

// Mount interfaces.
pub mod features;
pub mod listmount;
pub mod mount;
pub mod nsfs;
pub mod pidfd;
pub mod statmount;
pub mod statx;

// Process interfaces (ptrace, memory of another process, clone3).
pub mod clone3;
pub mod process_vm;
pub mod ptrace;
