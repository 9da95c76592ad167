//! `cargo xtask vm-test --selftest`: proves on real VM boots that the harness cannot pass a bad
//! run. A fixture program (`xtask/fixtures/vm_guest_fixture.rs`, built with rustc) is run as the
//! only guest executable in each of its modes: `pass` checks the guest contract (environment,
//! mounts, root, working directory, kernel version, pivot_root) and must pass; `fail`, `panic`,
//! `segv`, `hang` and `kernel-panic` must each fail the run with the right reason. A real older
//! kernel (Debian 12's 6.1 cloud kernel) must be refused before boot.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{choose_accel, kernel, vm_test, Options};

struct Case {
    mode: &'static str,
    timeout_secs: u64,
    /// None: the run must pass; Some(text): it must fail with a problem containing text.
    expect_failure: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        mode: "pass",
        timeout_secs: 180,
        expect_failure: None,
    },
    Case {
        mode: "fail",
        timeout_secs: 180,
        expect_failure: Some("failed with exit status 1"),
    },
    Case {
        mode: "panic",
        timeout_secs: 180,
        expect_failure: Some("failed with exit status 101"),
    },
    Case {
        mode: "segv",
        timeout_secs: 180,
        expect_failure: Some("killed by signal 11 (SIGSEGV)"),
    },
    Case {
        mode: "hang",
        timeout_secs: 30,
        expect_failure: Some("did not finish within the 30 s timeout"),
    },
    Case {
        mode: "kernel-panic",
        timeout_secs: 180,
        expect_failure: Some("guest kernel panicked"),
    },
];

/// Build the fixture program with rustc into `target/vm/selftest/`.
fn build_fixture(out_dir: &std::path::Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out_dir)?;
    let src = crate::project_root().join("xtask/fixtures/vm_guest_fixture.rs");
    let out = out_dir.join("vm-guest-fixture");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let st = Command::new(rustc)
        .args(["--edition", "2021", "-O", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .context("running rustc for the VM fixture")?;
    if !st.success() {
        bail!("compiling {} failed ({st})", src.display());
    }
    Ok(out)
}

/// Run every self-test case; fail if the harness misjudged any.
pub fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let vm_dir = crate::project_root().join("target/vm");
    let fixture = build_fixture(&vm_dir.join("selftest"))?;
    let mut ok = 0usize;
    let mut bad: Vec<String> = Vec::new();

    // The version gate, on a real older kernel image.
    let old = kernel::bookworm_kernel(&vm_dir)?;
    let o = Options {
        kernel: Some(old.clone()),
        guest_binary: Some(fixture.clone()),
        filter: Some("pass".into()),
        ..opts.clone()
    };
    match vm_test(&o) {
        Err(e) if format!("{e:#}").contains("need Linux 7.0 or newer") => {
            eprintln!("selftest: ok: old kernel refused: {e:#}");
            ok += 1;
        }
        Err(e) => bad.push(format!("old kernel {}: wrong error: {e:#}", old.display())),
        Ok(v) => bad.push(format!(
            "old kernel {} was booted instead of refused ({:?})",
            old.display(),
            v.problems
        )),
    }

    let kernel = match &opts.kernel {
        Some(k) => kernel::check_image(k)?,
        None => kernel::sid_kernel(&vm_dir, opts.refresh_kernel)?,
    };
    let accel = choose_accel(opts, &kernel, &vm_dir)?;
    for case in CASES {
        eprintln!("selftest: ===== guest fixture mode {:?} =====", case.mode);
        let o = Options {
            guest_binary: Some(fixture.clone()),
            filter: Some(case.mode.into()),
            timeout: Duration::from_secs(case.timeout_secs),
            accel: Some(accel),
            kernel: Some(kernel.image.clone()),
            ..opts.clone()
        };
        let v = vm_test(&o).with_context(|| format!("self-test case {}", case.mode))?;
        match (case.expect_failure, v.ok()) {
            (None, true) => {
                eprintln!("selftest: ok: {} passed", case.mode);
                ok += 1;
            }
            (None, false) => bad.push(format!(
                "{}: should pass but failed: {:?}",
                case.mode, v.problems
            )),
            (Some(_), true) => bad.push(format!("{}: the run PASSED but must fail", case.mode)),
            (Some(text), false) => {
                if v.problems.iter().any(|p| p.contains(text)) {
                    eprintln!(
                        "selftest: ok: {} failed the run: {:?}",
                        case.mode, v.problems
                    );
                    ok += 1;
                } else {
                    bad.push(format!(
                        "{}: failed, but no reason says {text:?}: {:?}",
                        case.mode, v.problems
                    ));
                }
            }
        }
    }
    for b in &bad {
        eprintln!("selftest: WRONG: {b}");
    }
    eprintln!("selftest: took {} s", started.elapsed().as_secs());
    println!("selftest: {ok} passed, {} failed", bad.len());
    if !bad.is_empty() {
        bail!("the VM harness self-test found {} problem(s)", bad.len());
    }
    Ok(())
}
