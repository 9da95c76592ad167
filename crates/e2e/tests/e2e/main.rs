//! The end-to-end test binary of crcli (one binary, several modules):
//! - `selfcheck`: every test program run without crcli, clean (must pass) and with each corrupt
//!   switch (must fail with the expected message), proving the programs verify themselves;
//! - `cycle`: the real `crcli dump` / `crcli restore` on each program, dynamic and static:
//!   detached and foreground restore, `--leave-running`, two cycles in a row, busybox sh, python3;
//! - `failures`: crcli refusing what it cannot do, cleanly;
//! - `tree`: process trees (a pipeline, a forking server with a zombie, two processes sharing
//!   one open file description, a PID namespace), dumped and restored whole;
//! - `container`: busybox sh as PID 1 of its own PID, mount, UTS and IPC namespaces with two
//!   tmpfs mounts and a running job, its whole mount namespace brought back.
//!
//! The `crcli` binary is found through `CRCLI_BIN` or next to the test's `deps` directory
//! (see `crcli_e2e::crcli`): build it first with `cargo build -p crcli`.
#![forbid(unsafe_code)]

mod container;
mod cycle;
mod failures;
mod selfcheck;
mod tree;
