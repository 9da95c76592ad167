//! What every crcli-vs-CRIU benchmark shares: the two checkpoint tools and how each is run, the
//! environment filters (`CRCLI_BENCH_TOOLS`, `CRCLI_BENCH_CASES`), and the statistics.

use std::path::PathBuf;
use std::time::Duration;

use crcli_e2e::Workdir;

/// A checkpoint tool: how to dump and restore.
pub struct Tool {
    /// `crcli` or `criu`.
    pub name: &'static str,
    /// Its executable.
    pub bin: PathBuf,
    /// Arguments added to `dump -t PID -D DIR`.
    pub dump_extra: &'static [&'static str],
    /// Arguments added to `restore -D DIR`.
    pub restore_extra: &'static [&'static str],
}

/// Whether `name` is selected by the comma-separated list in environment variable `var` (all
/// are when it is unset).
pub fn wanted(var: &str, name: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.split(',').any(|x| x.trim() == name))
}

/// The tools selected by `CRCLI_BENCH_TOOLS`: crcli (an error when it cannot be found) and CRIU
/// 4.3 as `criu-peer` (skipped, saying so, when it is not installed).
pub fn find() -> Result<Vec<Tool>, String> {
    let mut tools = Vec::new();
    if wanted("CRCLI_BENCH_TOOLS", "crcli") {
        let bin = crcli_e2e::crcli().map_err(|e| e.to_string())?;
        tools.push(Tool {
            name: "crcli",
            bin,
            dump_extra: &[],
            restore_extra: &["-d"],
        });
    }
    if wanted("CRCLI_BENCH_TOOLS", "criu") {
        match crcli_e2e::which("criu-peer") {
            Some(bin) => tools.push(Tool {
                name: "criu",
                bin,
                dump_extra: &["--shell-job"],
                restore_extra: &["-d", "--shell-job"],
            }),
            None => eprintln!(
                "SKIPPED criu: criu-peer is not installed (run `bash /work/shared/tools/install-criu`)"
            ),
        }
    }
    Ok(tools)
}

/// What the tool printed (its stdout and stderr were redirected into the work directory).
pub fn output(wd: &Workdir) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        std::fs::read_to_string(wd.file("tool.out")).unwrap_or_default(),
        std::fs::read_to_string(wd.file("tool.err")).unwrap_or_default()
    )
}

/// The median (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
