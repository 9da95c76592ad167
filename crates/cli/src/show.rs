//! `crcli show DIR`: print an image. By default a short human summary (what was dumped, when,
//! where, and what it holds); with `--json`, the full JSON view of every entry
//! (`crcli_image::Image::to_json`); with `--verify`, all data is read and checksummed too. The image is read and checked completely first: a damaged
//! image gives an error naming the file and record, never partial output.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use crcli_image::{FileKind, Image, MountKind, RebuildPlan};

/// Arguments of `crcli show`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The image directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the full JSON view instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Also read all page and file data and check every chunk's checksum (the metadata is
    /// always checked).
    #[arg(long)]
    pub verify: bool,
}

/// Runs `crcli show`.
pub fn run(args: Args) -> Result<()> {
    let image =
        Image::open(&args.dir).with_context(|| format!("reading image {}", args.dir.display()))?;
    let verified = if args.verify {
        Some(
            image
                .verify_data()
                .with_context(|| format!("verifying the data of image {}", args.dir.display()))?,
        )
    } else {
        None
    };
    let out = if args.json {
        let mut s = image.to_json_pretty();
        s.push('\n');
        s
    } else {
        let mut s = summary(&image);
        if let Some(n) = verified {
            let _ = writeln!(s, "verified: {} of data, every checksum matches", bytes(n));
        }
        s
    };
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for seconds since the epoch.
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn file_kind(k: &FileKind) -> &'static str {
    match k {
        FileKind::Regular(_) => "regular",
        FileKind::Directory(_) => "directory",
        FileKind::Path(_) => "O_PATH",
        FileKind::Symlink(_) => "symlink",
        FileKind::CharDevice { .. } => "char device",
        FileKind::BlockDevice { .. } => "block device",
        FileKind::Fifo { .. } => "fifo",
        FileKind::Pipe { .. } => "pipe",
        FileKind::Unlinked { .. } => "unlinked",
    }
}

/// `s` with its control characters (ESC, CR, C1 controls, …) written as `\xNN`, so that a
/// string from an image cannot drive the terminal it is printed to. Image names and paths
/// ([`crcli_image::OsBytes`], [`crcli_image::ImagePath`]) escape themselves when displayed.
fn term(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The human summary.
pub fn summary(img: &Image) -> String {
    let inv = img.inventory();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "image {} (format {}, written by crcli {})",
        img.dir().display(),
        img.format_version(),
        term(&inv.crcli_version)
    );
    let features: Vec<String> = inv.features.iter().map(|f| format!("{f:?}")).collect();
    let _ = writeln!(
        s,
        "dumped {} UTC on Linux {} {}; kernel features used: {}",
        utc(inv.dump_time.secs),
        term(&inv.kernel_release),
        term(&inv.arch),
        if features.is_empty() {
            "none".to_string()
        } else {
            features.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "processes: {} (root pid {})",
        img.processes().len(),
        inv.root_pid
    );
    for p in img.processes() {
        let _ = writeln!(
            s,
            "  pid {} (ppid {}) \"{}\": {} thread{}, {} mappings, {} fds",
            p.pid,
            p.ppid,
            p.comm,
            p.threads.len(),
            if p.threads.len() == 1 { "" } else { "s" },
            p.vmas.len(),
            p.fds.len()
        );
    }
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for f in img.files() {
        let k = file_kind(&f.kind);
        match kinds.iter_mut().find(|(n, _)| *n == k) {
            Some(e) => e.1 += 1,
            None => kinds.push((k, 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        s,
        "files: {}{}; pipes: {}",
        img.files().len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        },
        img.pipes().len()
    );
    let count = |k: MountKind| img.mounts().iter().filter(|m| m.kind == k).count();
    let _ = writeln!(
        s,
        "mounts: {} ({} attached, {} unmounted, {} anonymous)",
        img.mounts().len(),
        count(MountKind::Attached),
        count(MountKind::Unmounted),
        count(MountKind::Anonymous)
    );
    for m in img.mounts() {
        let Some(plan) = &m.rebuild else { continue };
        let how = match plan {
            RebuildPlan::BindOfLive {
                live_mountpoint,
                subroot,
                ..
            } => format!("bind of live mount {live_mountpoint} at sub-root {subroot:?}"),
            RebuildPlan::Remount {
                source, subroot, ..
            } => format!("remount of {source} at sub-root {subroot:?}"),
            RebuildPlan::LostSuperblock { content, .. } => {
                let n = img.fs_content(*content).map_or(0, |c| c.entries.len());
                format!("lost superblock, restored from dumped content {content} ({n} entries)")
            }
        };
        let _ = writeln!(
            s,
            "  mount {} {:?} {} root {}: {}",
            m.id,
            m.kind,
            term(&m.fs_type),
            m.root,
            how
        );
    }
    let pages: u64 = img.page_streams().iter().map(|p| p.bytes).sum();
    let _ = writeln!(
        s,
        "memory: {} page stream{}, {}",
        img.page_streams().len(),
        if img.page_streams().len() == 1 {
            ""
        } else {
            "s"
        },
        bytes(pages)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_763_800_000), "2025-11-22 08:26:40");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn strings_from_an_image_cannot_drive_the_terminal() {
        assert_eq!(
            term("7.2\x1b]0;owned\x07\u{9b}2J"),
            "7.2\\x1b]0;owned\\x07\\xc2\\x9b2J"
        );
        assert_eq!(term("tmpfs"), "tmpfs");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(5 << 20), "5.0 MiB");
        assert_eq!(bytes(3 << 30 | 1 << 29), "3.5 GiB");
    }
}
