//! Host tools the VM harness needs (QEMU, a static busybox, apt and dpkg), installed with
//! `apt-get` when absent.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A program the harness runs on the host and the Debian package that provides it.
pub struct Tool {
    /// Absolute path of the program after installation.
    pub path: &'static str,
    /// Debian package that installs it.
    pub package: &'static str,
}

/// QEMU for x86_64 guests.
pub const QEMU: Tool = Tool {
    path: "/usr/bin/qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// Statically linked busybox: the guest's shell and utilities.
pub const BUSYBOX: Tool = Tool {
    path: "/bin/busybox",
    package: "busybox-static",
};
/// apt-get, used to fetch the guest kernel through a private sources list.
pub const APT_GET: Tool = Tool {
    path: "/usr/bin/apt-get",
    package: "apt",
};
/// dpkg-deb, used to unpack the kernel package without installing it.
pub const DPKG_DEB: Tool = Tool {
    path: "/usr/bin/dpkg-deb",
    package: "dpkg",
};

/// Python 3: the host end-to-end tests checkpoint a python3 loop.
pub const PYTHON3: Tool = Tool {
    path: "/usr/bin/python3",
    package: "python3-minimal",
};
/// A C compiler: crates/e2e and crates/dump build their C test programs in build scripts.
pub const CC: Tool = Tool {
    path: "/usr/bin/cc",
    package: "gcc",
};
/// glibc's static archive: the test programs are also linked statically.
pub const LIBC_STATIC: Tool = Tool {
    path: "/usr/lib/x86_64-linux-gnu/libc.a",
    package: "libc6-dev",
};
/// mkfs.ext4: mount-model tests make a loop-device filesystem.
pub const MKFS_EXT4: Tool = Tool {
    path: "/sbin/mkfs.ext4",
    package: "e2fsprogs",
};

/// Everything the host tests and the VM harness need (`cargo xtask deps`).
pub const ALL: [&Tool; 8] = [
    &QEMU,
    &BUSYBOX,
    &APT_GET,
    &DPKG_DEB,
    &PYTHON3,
    &CC,
    &LIBC_STATIC,
    &MKFS_EXT4,
];

/// Make sure every tool exists, installing the missing packages with apt-get (saying so).
/// Fails with the exact command to run when that is impossible.
pub fn ensure(tools: &[&Tool]) -> Result<()> {
    let mut missing: Vec<&str> = Vec::new();
    for t in tools {
        if !Path::new(t.path).exists() && !missing.contains(&t.package) {
            missing.push(t.package);
        }
    }
    // busybox must be the static one: the dynamic `busybox` package also installs /bin/busybox.
    if Path::new(BUSYBOX.path).exists()
        && tools.iter().any(|t| t.path == BUSYBOX.path)
        && !is_package_installed(BUSYBOX.package)
        && !missing.contains(&BUSYBOX.package)
    {
        missing.push(BUSYBOX.package);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        bail!("missing host packages {missing:?}; install them with: sudo {cmd}");
    }
    eprintln!("xtask: installing missing host packages: {cmd}");
    if apt_install(&missing)? {
        return Ok(());
    }
    eprintln!("xtask: apt-get install failed; running apt-get update and trying again");
    let _ = Command::new("apt-get").arg("update").status();
    if apt_install(&missing)? {
        return Ok(());
    }
    bail!("could not install host packages {missing:?}; run as root: apt-get update && {cmd}")
}

fn apt_install(packages: &[&str]) -> Result<bool> {
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    Ok(status.success())
}

fn is_package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok installed"))
        .unwrap_or(false)
}

/// Whether xtask runs as root (needed for apt-get install).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Path of a tool, as a `PathBuf`.
pub fn path(tool: &Tool) -> PathBuf {
    PathBuf::from(tool.path)
}
