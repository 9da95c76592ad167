//! Threads benchmark: wall time of `crcli dump` and `crcli restore -d` of the 8-thread test program
//! (`progs/threads.c`), beside CRIU (`criu-peer`, installed by `/work/shared/tools/install-criu`)
//! on the same program when it is installed.
//!
//! Run with `cargo bench -p crcli-e2e --bench threads` (it builds nothing else: build the binary
//! first with `cargo build --release -p crcli`, or point `CRCLI_BIN` at one). Cases: `threads`
//! (dynamic) and `threads-static`.
//!
//! Work directories and images live on tmpfs (`/dev/shm`). Each run: spawn, wait for `ready` (all
//! 8 threads started), let it run 200 ms, dump (the original must die of SIGKILL), restore
//! detached, trigger the program and require `PASS` — a run only counts if the restored program
//! verified itself (every thread's tid, TLS, FP state, mask and sigaltstack, and the shared
//! counter). Wall time is measured around each tool's process (spawn to exit).
//!
//! Environment: `CRCLI_BENCH_RUNS` (runs per case and tool, default 10), `CRCLI_BENCH_CASES`
//! (subset of `threads,threads-static`), `CRCLI_BENCH_TOOLS` (subset of `crcli,criu`). Tools run
//! interleaved (one run of each in turn), so that load changes hit both alike.
#![forbid(unsafe_code)]

mod interleaved;
mod tools;

use std::process::ExitCode;

use crcli_e2e::{Linkage, Prog};

/// The program runs its main thread and 8 others.
fn check_started(pid: i32) -> Result<Vec<i32>, String> {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    if threads != 9 {
        return Err(format!("the program runs {threads} threads, want 9"));
    }
    Ok(Vec::new())
}

fn main() -> ExitCode {
    interleaved::run(&interleaved::Bench {
        name: "threads",
        cases: vec![
            ("threads", Prog::c("threads", Linkage::Dynamic)),
            ("threads-static", Prog::c("threads", Linkage::Static)),
        ],
        check_started,
    })
}
