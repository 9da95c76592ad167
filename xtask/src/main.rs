//! `cargo xtask`: project automation for crcli.
//!
//! Subcommands, one module each:
//! - `vm-test [FILTER]` ([`vm`]): builds the workspace's tests and runs them inside a QEMU VM on a
//!   current Debian kernel (Linux 7.0 or newer), so tests of new kernel features really run.
//! - `vm-shell` ([`vm`]): boots the same guest with an interactive shell on the serial console.
//! - `demo` ([`demo`]): boots the same guest and shows a process with files on an unmounted and
//!   an anonymous mount being dumped, killed, restored and carrying on.
//! - `deps` ([`host`]): installs the host packages the tests need, with apt-get.
//! - `tidy` ([`tidy`]): checks the layering of the crates and that `unsafe` lives only in
//!   `crates/sys`; also run as a `#[test]`, so `cargo test --workspace` runs it.
#![forbid(unsafe_code)]

mod demo;
mod host;
mod tidy;
mod vm;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  vm-test [FILTER]   build the workspace's tests and run them in a QEMU VM on Linux >= 7.0
  vm-shell           boot the same guest with an interactive shell on the serial console
  demo               boot the same guest and checkpoint/restore a process with files on an
                     unmounted and an anonymous mount, step by step (vm-shell options apply)
  tidy               check crate layering and that `unsafe` appears only in crates/sys
  deps               install the host packages the tests need (busybox-static, qemu, python3, …)
  help               print this text

vm-test / vm-shell options:
  --release             build and run the release profile instead of dev
  --kernel PATH         boot this bzImage instead of Debian sid's newest cloud kernel
  --refresh-kernel      ask Debian for a newer kernel even when one is cached
  --accel kvm|tcg       force the accelerator (default: KVM if a quick probe boots, else TCG)
  --cpus N              vCPUs (default 2)
  --memory MIB          guest memory in MiB (default 4096)
  --timeout SECS        hard timeout for the whole VM run (default 1800)
  --guest-binary PATH   run only this executable in the guest (harness debugging)
  --selftest            (vm-test only) check that the harness fails on failing guests
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        None | Some("help") | Some("--help") | Some("-h") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("tidy") => {
            if !rest.is_empty() {
                bail!("tidy takes no arguments, got {rest:?}");
            }
            tidy::run(&project_root())
        }
        Some("deps") => {
            if !rest.is_empty() {
                bail!("deps takes no arguments, got {rest:?}");
            }
            host::ensure(&host::ALL)?;
            println!("deps: every host tool the tests need is installed");
            Ok(())
        }
        Some("vm-test") => vm::cmd_vm_test(&rest),
        Some("vm-shell") => vm::cmd_vm_shell(&rest),
        Some("demo") => demo::cmd_demo(&rest),
        Some(other) => bail!("unknown task {other:?}\n\n{USAGE}"),
    }
}

/// The workspace root (the directory above `xtask/`).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one directory below the workspace root")
        .to_path_buf()
}
