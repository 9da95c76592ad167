//! `crcli`: the command-line front end of crcli. It parses arguments, shows progress and prints
//! results; all logic lives in the library crates.
#![forbid(unsafe_code)]

use anyhow::Result;
use clap::Parser;

/// Checkpoint/restore for Linux processes.
#[derive(Parser)]
#[command(name = "crcli", version, about)]
struct Cli {}

fn main() -> Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
