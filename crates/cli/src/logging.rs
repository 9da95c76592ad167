//! The logging options `crcli dump` and `crcli restore` share (CRIU's `-v` and `-o LOGFILE`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// `-v` (repeatable) and `-o LOGFILE`.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// More log output (repeat for more).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Write the log to this file instead of stderr.
    #[arg(short = 'o', long = "log-file", value_name = "LOGFILE")]
    pub log_file: Option<PathBuf>,
}

impl LogArgs {
    /// Installs the tracing subscriber these options ask for: warnings only by default, more
    /// with each `-v`; to stderr, or to the log file without colours.
    pub fn init(&self) -> Result<()> {
        let level = match self.verbose {
            0 => tracing::Level::WARN,
            1 => tracing::Level::INFO,
            2 => tracing::Level::DEBUG,
            _ => tracing::Level::TRACE,
        };
        let builder = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_target(false);
        let result = match &self.log_file {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating log file {}", path.display()))?;
                builder
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file))
                    .try_init()
            }
            None => builder.with_writer(std::io::stderr).try_init(),
        };
        // Already initialised: keep that one.
        let _ = result;
        Ok(())
    }
}
