//! `crcli restore`: restore a process from an image directory (CRIU's conventions: `-D`, `-d`,
//! `--shell-job`, `-v`, `-o`).
//!
//! Without `-d` crcli waits for the restored process and exits with its status (its exit code,
//! or 128 + the signal that killed it); with `-d` it prints the restored pid and exits at once,
//! leaving the process running.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use crcli_restore::{restore, ExternalPath, RestoreOptions};

/// Arguments of `crcli restore`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The image directory to restore from.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    pub dir: PathBuf,
    /// Leave the restored process running and exit at once, printing its pid.
    #[arg(short = 'd', long = "restore-detached")]
    pub detached: bool,
    /// The process was started from a shell: give it crcli's terminal as its stdin, stdout and
    /// stderr where it had a terminal.
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// The path a mount dumped as a bind from outside the tree's mount namespace is bound
    /// from: `mnt[KEY]:PATH`, KEY as given to `crcli dump --external` (repeatable).
    #[arg(long = "external", value_name = "mnt[KEY]:PATH")]
    pub external: Vec<ExternalPath>,
    /// Restore the image even if another user owns it or group or others may write it (by
    /// default such an image is refused: what it says becomes the restored process).
    #[arg(long = "trust-image")]
    pub trust_image: bool,
    /// Logging (`-v`, `-o LOGFILE`).
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

/// Runs `crcli restore`.
pub fn run(args: Args) -> Result<()> {
    args.log.init()?;
    let opts = RestoreOptions::default()
        .with_shell_job(args.shell_job)
        .with_trust_image(args.trust_image)
        .with_external_mounts(args.external);
    let restored = restore(&args.dir, &opts)
        .with_context(|| format!("restoring from {}", args.dir.display()))?;
    if restored.in_new_pid_namespace() {
        eprintln!(
            "crcli: restored the tree of pid {} as PID 1 of a new PID namespace (pid {} here)",
            restored.dumped_pid(),
            restored.pid()
        );
    } else if restored.pid() != restored.dumped_pid() as i32 {
        eprintln!(
            "crcli: restored pid {} as pid {} ({})",
            restored.dumped_pid(),
            restored.pid(),
            restored.pid_outcome()
        );
    }
    if args.detached {
        println!("{}", restored.pid());
        return Ok(());
    }
    let pid = restored.pid();
    let status = restored
        .wait()
        .with_context(|| format!("waiting for restored process {pid}"))?;
    std::process::exit(status.code());
}
