//! `crcli dump`: checkpoint a running process into an image directory (CRIU's conventions:
//! `-t PID`, `-D DIR`, `--leave-running`, `-v`, `-o LOGFILE`).
//!
//! Prints one line when done: what was saved and how long it took. By default the process is
//! killed once its image is complete; with `--leave-running` it runs on. On failure it runs on
//! untouched, no image is left, and crcli exits with status 1 and says what failed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use crcli_dump::{dump_with_externals, DumpOptions, ExternalMount};

/// Arguments of `crcli dump`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The process to dump.
    #[arg(short = 't', long = "tree", value_name = "PID")]
    pub pid: i32,
    /// The image directory to write (must not exist, or be empty).
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    pub dir: PathBuf,
    /// Let the process run on after the dump instead of killing it.
    #[arg(short = 'R', long = "leave-running")]
    pub leave_running: bool,
    /// A mount of the tree's own mount namespace that is a bind from outside it, named by a
    /// key the restore maps to a path: `mnt[MOUNTPOINT]:KEY` (repeatable).
    #[arg(long = "external", value_name = "mnt[MOUNTPOINT]:KEY")]
    pub external: Vec<ExternalMount>,
    /// Logging (`-v`, `-o LOGFILE`).
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

/// Runs `crcli dump`.
pub fn run(args: Args) -> Result<()> {
    args.log.init()?;
    let options = DumpOptions {
        leave_running: args.leave_running,
    };
    let s = dump_with_externals(args.pid, &args.dir, &options, &args.external)
        .with_context(|| format!("dumping pid {} into {}", args.pid, args.dir.display()))?;
    println!(
        "dumped pid {}: {} mappings, {} fds, {} pages ({:.1} MiB) in {:.1} ms (frozen {:.1} ms), {}",
        s.pid,
        s.vmas,
        s.fds,
        s.pages,
        s.page_bytes as f64 / (1024.0 * 1024.0),
        s.elapsed.as_secs_f64() * 1000.0,
        s.frozen.as_secs_f64() * 1000.0,
        if s.left_running { "left running" } else { "killed" },
    );
    Ok(())
}
