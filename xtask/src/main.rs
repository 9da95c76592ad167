//! `cargo xtask`: project automation (VM tests, tidy checks, demo, benchmarks).
#![forbid(unsafe_code)]

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        None | Some("help") => {
            println!("usage: cargo xtask <task>");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}"),
    }
}
