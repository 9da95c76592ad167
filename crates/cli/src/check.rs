//! `crcli check`: which of the kernel features crcli uses this kernel has (like `criu check`), what
//! each one enables, what is lost without it, and a verdict.
//!
//! The probes are `crcli_sys::features::Features` (one cheap syscall each, no false positives).
//! Every feature is listed, found or missing, with the mainline version that added it. The verdict
//! line says whether basic dump and restore work here; the exit status is 0 when they do (optional
//! features may be missing), 1 when a feature they need is missing. `--json` prints the same as
//! one JSON object on stdout.

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use crcli_sys::features::{Feature, Features};

/// Arguments of `crcli check`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The features without which crcli cannot dump or restore even a plain process on attached
/// mounts: the dump engine takes its own copy of every fd (pidfd_open, pidfd_getfd) and ties each
/// to its mount by unique id (statx STATX_MNT_ID_UNIQUE), and records them as relied on.
pub const REQUIRED: [Feature; 3] = [
    Feature::PidfdOpen,
    Feature::PidfdGetfd,
    Feature::StatxMntIdUnique,
];

/// What crcli does with `feature` when the kernel has it.
fn enables(feature: Feature) -> &'static str {
    match feature {
        Feature::Statmount => "mount facts by unique id: options, sources, attributes, propagation, idmaps",
        Feature::Listmount => "the mount table of any namespace, without parsing /proc",
        Feature::ListmountReverse => "mount tables listed children first (unmount order)",
        Feature::StatmountByFd => {
            "files on unmounted and anonymous mounts: the mount of any fd, even one in no mount table"
        }
        Feature::OpenTreeNamespace => "a whole mount namespace rebuilt from one call",
        Feature::MountSetattr => "mount attributes (ro, nosuid, nodev, noexec, atime, idmaps) set on detached mounts",
        Feature::NewMountApi => {
            "mounts rebuilt without temporary mountpoints: clones (open_tree), fresh instances (fsmount)"
        }
        Feature::MoveMountSetGroup => "shared and slave propagation restored exactly",
        Feature::PidfdOpen => "processes held by pidfd, immune to pid reuse",
        Feature::PidfdGetfd => "crcli's own copy of every fd of the target",
        Feature::StatxMntIdUnique => "every fd tied to its mount by a unique, never reused id",
        Feature::NsGetMntnsId => "mount namespaces named by id (listmount/statmount of other namespaces)",
        _ => "(not described yet)",
    }
}

/// Runs `crcli check`.
pub fn run(args: Args) -> Result<()> {
    let features = Features::current();
    let missing_required: Vec<Feature> =
        REQUIRED.into_iter().filter(|f| !features.has(*f)).collect();
    let missing_optional: Vec<Feature> = features
        .iter()
        .filter(|(f, present)| !present && !REQUIRED.contains(f))
        .map(|(f, _)| f)
        .collect();
    let verdict = verdict(&missing_required, &missing_optional);
    let text = if args.json {
        format!("{}\n", json(features, &missing_required, &verdict))
    } else if missing_required.is_empty() && !missing_optional.is_empty() {
        format!("{}{verdict} (see above)\n", table(features))
    } else {
        format!("{}{verdict}\n", table(features))
    };
    emit(&text)?;
    if !missing_required.is_empty() {
        bail!(
            "crcli cannot dump or restore on this kernel (Linux {}): missing {}",
            features.kernel_release(),
            list(&missing_required)
        );
    }
    Ok(())
}

/// Writes to stdout; a reader that went away (`crcli check | head`) is not an error.
fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing the report to stdout"))
        }
        _ => Ok(()),
    }
}

fn list(features: &[Feature]) -> String {
    features
        .iter()
        .map(|f| format!("{} (Linux {})", f.name(), f.since()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(missing_required: &[Feature], missing_optional: &[Feature]) -> String {
    if !missing_required.is_empty() {
        format!(
            "verdict: NOT USABLE: basic dump/restore needs {}",
            list(missing_required)
        )
    } else if missing_optional.is_empty() {
        "verdict: OK: every feature crcli uses is present".to_owned()
    } else {
        format!(
            "verdict: OK for basic dump/restore; without {} some things are lost",
            list(missing_optional)
        )
    }
}

fn table(features: &Features) -> String {
    let mut out = format!(
        "kernel {} ({})\n",
        features.kernel_release(),
        std::env::consts::ARCH
    );
    let width = Feature::ALL
        .iter()
        .map(|f| f.name().len())
        .max()
        .unwrap_or(0);
    out.push_str(&format!(
        "{:7} {:width$}  {:11} {:8}  what it enables\n",
        "status", "feature", "since", "crcli"
    ));
    for (f, present) in features.iter() {
        let need = if REQUIRED.contains(&f) {
            "required"
        } else {
            "optional"
        };
        let status = if present { "found  " } else { "MISSING" };
        out.push_str(&format!(
            "{status} {:width$}  Linux {:<5} {need}  {}\n",
            f.name(),
            f.since(),
            enables(f)
        ));
        if !present {
            out.push_str(&format!("{:>w$}lost: {}\n", "", f.loss(), w = width + 8));
        }
    }
    out
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json(features: &Features, missing_required: &[Feature], verdict: &str) -> String {
    let items: Vec<String> = features
        .iter()
        .map(|(f, present)| {
            format!(
                "{{\"name\":{},\"since\":{},\"present\":{present},\"required\":{},\"enables\":{},\"loss\":{}}}",
                js(f.name()),
                js(f.since()),
                REQUIRED.contains(&f),
                js(enables(f)),
                js(f.loss())
            )
        })
        .collect();
    format!(
        "{{\"kernel\":{},\"arch\":{},\"usable\":{},\"verdict\":{},\"features\":[{}]}}",
        js(features.kernel_release()),
        js(std::env::consts::ARCH),
        missing_required.is_empty(),
        js(verdict),
        items.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names_what_is_missing() {
        let v = verdict(&[Feature::PidfdGetfd], &[Feature::StatmountByFd]);
        assert!(v.starts_with("verdict: NOT USABLE") && v.contains("pidfd_getfd (Linux 5.6)"));
        let v = verdict(&[], &[Feature::StatmountByFd]);
        assert!(
            v.starts_with("verdict: OK for basic") && v.contains("statmount_by_fd (Linux 7.0)")
        );
        assert_eq!(
            verdict(&[], &[]),
            "verdict: OK: every feature crcli uses is present"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(js("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
