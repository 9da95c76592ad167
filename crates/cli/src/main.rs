//! `crcli`: the command-line front end of crcli. It parses arguments, shows progress and prints
//! results; all logic lives in the library crates. Each subcommand lives in its own module
//! (`show.rs`, `dump.rs`, `restore.rs`, `check.rs`) with an `Args` struct and a `run` function.
#![forbid(unsafe_code)]

mod check;
mod dump;
mod logging;
mod restore;
mod show;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Checkpoint/restore for Linux processes.
#[derive(Parser)]
#[command(name = "crcli", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands; each one's arguments and code live in a module of its own.
#[derive(Subcommand)]
enum Command {
    /// Checkpoint a running process into an image directory.
    Dump(dump::Args),
    /// Restore a process from an image directory.
    Restore(restore::Args),
    /// Print an image: a short summary, or everything as JSON with --json.
    Show(show::Args),
    /// Which kernel features crcli uses this kernel has, and what is lost without each.
    Check(check::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Dump(args) => dump::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Show(args) => show::run(args),
        Command::Check(args) => check::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

/// Prints an error and its causes for the user, one per line, without a stack backtrace
/// (whatever `RUST_BACKTRACE` says: a backtrace is for developers, the causes are for users).
fn report(err: &anyhow::Error) {
    eprintln!("Error: {err}");
    let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
    match causes.as_slice() {
        [] => {}
        [only] => eprintln!("\nCaused by:\n    {only}"),
        many => {
            eprintln!("\nCaused by:");
            for (i, cause) in many.iter().enumerate() {
                eprintln!("    {i}: {cause}");
            }
        }
    }
}
