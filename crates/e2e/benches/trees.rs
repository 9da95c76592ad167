//! Trees benchmark: wall time of `crcli dump` and `crcli restore -d` of a tree of 100 small
//! processes (`progs/tree100.c`: the root, 9 groups, 10 leaves each), beside CRIU (`criu-peer`,
//! installed by `/work/shared/tools/install-criu`) on the same tree when it is installed.
//!
//! Run with `cargo bench -p crcli-e2e --bench trees` (it builds nothing else: build the binary
//! first with `cargo build --release -p crcli`, or point `CRCLI_BIN` at one). Cases: `tree100`
//! (dynamic) and `tree100-static`.
//!
//! Work directories and images live on tmpfs (`/dev/shm`). Each run: spawn, wait for `ready` (all
//! 100 processes started), let it run 200 ms, check the tree has 100 processes, dump (the
//! original root must die of SIGKILL, and every other member be gone), restore detached, trigger
//! the program and require `PASS` — a run only counts if the restored tree verified itself
//! (every process its memory, every parent its children's pids and exit statuses). Wall time is
//! measured around each tool's process (spawn to exit).
//!
//! Environment: `CRCLI_BENCH_RUNS` (runs per case and tool, default 10), `CRCLI_BENCH_CASES`
//! (subset of `tree100,tree100-static`), `CRCLI_BENCH_TOOLS` (subset of `crcli,criu`). Tools run
//! interleaved (one run of each in turn), so that load changes hit both alike.
#![forbid(unsafe_code)]

mod interleaved;
mod tools;

use std::process::ExitCode;

use crcli_e2e::{Linkage, Prog};

/// The tree has 100 processes; all of them must be gone after the dump.
fn check_started(pid: i32) -> Result<Vec<i32>, String> {
    let members = crcli_e2e::tree_members(pid);
    if members.len() != 100 {
        return Err(format!(
            "the tree has {} processes, want 100",
            members.len()
        ));
    }
    Ok(members)
}

fn main() -> ExitCode {
    interleaved::run(&interleaved::Bench {
        name: "trees",
        cases: vec![
            ("tree100", Prog::c("tree100", Linkage::Dynamic)),
            ("tree100-static", Prog::c("tree100", Linkage::Static)),
        ],
        check_started,
    })
}
