//! `crcli check` against the real kernel of the machine it runs on: every feature that
//! `crcli_sys::features::Features` probes is listed with the right status and kernel version, the
//! JSON agrees with the table, the verdict and the exit status follow the required features.
//!
//! Kernel-specific expectations: on Linux 6.18 (the development machines) statmount is found and
//! statmount_by_fd is missing; in the test VM (`CRCLI_VM=1`, Linux 7.0+) statmount_by_fd must be
//! found, and the test fails if it is not.

use std::process::{Command, Output};

use crcli_sys::features::{Feature, Features};

/// The required features (the same list as `crcli check`'s `REQUIRED`).
const REQUIRED: [Feature; 3] = [
    Feature::PidfdOpen,
    Feature::PidfdGetfd,
    Feature::StatxMntIdUnique,
];

fn crcli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crcli"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running crcli")
}

fn in_vm() -> bool {
    std::env::var_os("CRCLI_VM").is_some_and(|v| v == "1")
}

fn usable() -> bool {
    REQUIRED.iter().all(|f| Features::current().has(*f))
}

#[test]
fn table_lists_every_feature_as_probed() {
    let out = crcli(&["check"]);
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let features = Features::current();
    assert!(
        stdout.starts_with(&format!("kernel {} ", features.kernel_release())),
        "first line names the kernel:\n{stdout}"
    );
    for f in Feature::ALL {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(f.name()))
            .unwrap_or_else(|| panic!("no line for {}:\n{stdout}", f.name()));
        let status = if features.has(f) { "found" } else { "MISSING" };
        assert!(
            line.starts_with(status),
            "{} is {status} here: {line:?}",
            f.name()
        );
        assert!(
            line.contains(&format!("Linux {}", f.since())),
            "{line:?} names the version"
        );
        let need = if REQUIRED.contains(&f) {
            "required"
        } else {
            "optional"
        };
        assert!(line.contains(need), "{} is {need}: {line:?}", f.name());
        if !features.has(f) {
            assert!(
                stdout.contains(&format!("lost: {}", f.loss())),
                "what is lost without {} is printed:\n{stdout}",
                f.name()
            );
        }
    }
    let verdict = stdout.lines().last().unwrap_or_default();
    assert!(verdict.starts_with("verdict: "), "last line: {verdict:?}");
    if usable() {
        assert!(verdict.starts_with("verdict: OK"), "{verdict:?}\n{stderr}");
        assert_eq!(out.status.code(), Some(0), "{stderr}");
    } else {
        assert!(verdict.starts_with("verdict: NOT USABLE"), "{verdict:?}");
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr.contains("crcli cannot dump or restore"), "{stderr}");
    }
    let missing: Vec<_> = features.iter().filter(|(_, p)| !p).collect();
    if missing.is_empty() {
        assert_eq!(verdict, "verdict: OK: every feature crcli uses is present");
    } else {
        for (f, _) in missing {
            assert!(verdict.contains(f.name()), "{verdict:?} names {}", f.name());
        }
    }
}

#[test]
fn json_agrees_with_the_probes() {
    let out = crcli(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(if usable() { 0 } else { 1 }));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let features = Features::current();
    assert_eq!(v["kernel"], features.kernel_release());
    assert_eq!(v["usable"], usable());
    assert!(v["verdict"]
        .as_str()
        .is_some_and(|s| s.starts_with("verdict: ")));
    let list = v["features"].as_array().expect("features array");
    assert_eq!(list.len(), Feature::ALL.len());
    for (item, f) in list.iter().zip(Feature::ALL) {
        assert_eq!(item["name"], f.name());
        assert_eq!(item["since"], f.since());
        assert_eq!(item["present"], features.has(f), "{}", f.name());
        assert_eq!(item["required"], REQUIRED.contains(&f));
        assert_eq!(item["loss"], f.loss());
        assert!(item["enables"].as_str().is_some_and(|s| !s.is_empty()));
    }
}

/// What this machine's kernel must show: 6.18 lacks BY_FD; the VM's kernel must have it.
#[test]
fn kernel_specific_expectations() {
    let out = crcli(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let present = |name: &str| {
        v["features"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == name))
            .map(|i| i["present"] == true)
            .unwrap_or_else(|| panic!("{name} is listed"))
    };
    let release = Features::current().kernel_release().to_owned();
    if in_vm() {
        assert!(
            present("statmount_by_fd"),
            "CRCLI_VM=1: the VM's kernel ({release}) must have statmount_by_fd"
        );
        assert!(present("statmount") && present("new_mount_api"));
    } else if release.starts_with("6.18") {
        assert!(present("statmount"), "6.18 has statmount");
        assert!(present("listmount"), "6.18 has listmount");
        assert!(!present("statmount_by_fd"), "6.18 has no statmount_by_fd");
        assert!(
            !present("open_tree_namespace"),
            "6.18 has no open_tree_namespace"
        );
        assert_eq!(out.status.code(), Some(0), "6.18 can dump and restore");
    } else {
        eprintln!(
            "SKIPPED kernel_specific_expectations: kernel {release} is neither 6.18 nor the test VM"
        );
    }
}

#[test]
fn bad_option_is_a_clear_error() {
    let out = crcli(&["check", "--no-such-option"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--no-such-option"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
