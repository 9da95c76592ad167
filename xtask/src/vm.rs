//! `cargo xtask vm-test` and `cargo xtask vm-shell`: the workspace's tests inside a QEMU VM on a
//! current kernel.
//!
//! The host builds the test executables and `crcli`, packs them (at their host paths, with their
//! shared libraries), busybox, the workspace sources and a small init into an initramfs, and boots
//! Debian sid's newest cloud kernel (see [`kernel`]) under QEMU. The guest's init mounts proc,
//! sys, dev, devpts and tmp, runs every test executable as root and prints one line per
//! executable, `CRCLI-VM-RESULT <path> <exit status>`, then `CRCLI-VM-DONE <p> passed, <f>
//! failed`, and powers off. xtask streams the serial console and turns what it saw into its exit
//! status: any failure, a missing line, a kernel panic or a timeout fails the run.

mod initramfs;
mod kernel;
mod selftest;

use std::io::{BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::host;
use initramfs::Tree;

/// Options shared by `vm-test` and `vm-shell`.
#[derive(Debug, Clone)]
pub struct Options {
    release: bool,
    kernel: Option<PathBuf>,
    refresh_kernel: bool,
    accel: Option<Accel>,
    cpus: u32,
    memory_mib: u32,
    timeout: Duration,
    guest_binary: Option<PathBuf>,
    selftest: bool,
    filter: Option<String>,
    /// A script the guest runs instead of the tests (`cargo xtask demo`): its guest path and text.
    guest_script: Option<(PathBuf, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            release: false,
            kernel: None,
            refresh_kernel: false,
            accel: None,
            cpus: 2,
            memory_mib: 4096,
            timeout: Duration::from_secs(1800),
            guest_binary: None,
            selftest: false,
            filter: None,
            guest_script: None,
        }
    }
}

/// How QEMU runs the guest's CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// Emulation (`-accel tcg -cpu max`).
    Tcg,
}

pub(crate) fn parse_options(args: &[String], allow_filter: bool) -> Result<Options> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--release" => o.release = true,
            "--refresh-kernel" => o.refresh_kernel = true,
            "--selftest" if allow_filter => o.selftest = true,
            "--kernel" => o.kernel = Some(PathBuf::from(value("--kernel")?)),
            "--guest-binary" => o.guest_binary = Some(PathBuf::from(value("--guest-binary")?)),
            "--accel" => {
                o.accel = Some(match value("--accel")?.as_str() {
                    "kvm" => Accel::Kvm,
                    "tcg" => Accel::Tcg,
                    other => bail!("--accel takes kvm or tcg, not {other:?}"),
                })
            }
            "--cpus" => o.cpus = number(&value("--cpus")?, "--cpus")?,
            "--memory" => o.memory_mib = number(&value("--memory")?, "--memory")?,
            "--timeout" => {
                o.timeout = Duration::from_secs(number(&value("--timeout")?, "--timeout")?.into())
            }
            s if s.starts_with('-') => bail!("unknown option {s:?} (see `cargo xtask help`)"),
            s if allow_filter && o.filter.is_none() => o.filter = Some(s.to_string()),
            s => bail!("unexpected argument {s:?} (see `cargo xtask help`)"),
        }
    }
    Ok(o)
}

impl Options {
    /// Run the busybox `sh` script `text`, placed at `path` in the guest, instead of the tests:
    /// `crcli` and the C programs of `crates/*/progs` are shipped (the tests are not built), and
    /// the script is judged like one test executable (its exit status).
    pub(crate) fn with_guest_script(mut self, path: PathBuf, text: String) -> Self {
        self.guest_script = Some((path, text));
        self
    }
}

fn number(s: &str, name: &str) -> Result<u32> {
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{name} takes a positive number, not {s:?}"),
    }
}

/// `cargo xtask vm-test [FILTER] [options]`.
pub fn cmd_vm_test(args: &[String]) -> Result<()> {
    let opts = parse_options(args, true)?;
    if opts.selftest {
        return selftest::run(&opts);
    }
    let started = Instant::now();
    let verdict = vm_test(&opts)?;
    let secs = started.elapsed().as_secs();
    eprintln!(
        "xtask: guest kernel {}; {} s in all (build, initramfs, boot, tests)",
        verdict.kernel, secs
    );
    for p in &verdict.problems {
        eprintln!("vm-test: FAILED: {p}");
    }
    // The closing line counts test executables (each one a libtest run in the guest).
    println!(
        "vm-test: {} passed, {} failed",
        verdict.passed, verdict.failed
    );
    if verdict.ok() {
        Ok(())
    } else {
        bail!(
            "vm-test failed: {} problem(s); test executables: {} passed, {} failed",
            verdict.problems.len(),
            verdict.passed,
            verdict.failed
        )
    }
}

/// `cargo xtask vm-shell [options]`.
pub fn cmd_vm_shell(args: &[String]) -> Result<()> {
    let opts = parse_options(args, false)?;
    let guest = prepare(&opts, Mode::Shell)?;
    let accel = choose_accel(&opts, &guest.kernel, &guest.vm_dir)?;
    eprintln!("xtask: booting a shell; leave with `exit` (powers off) or Ctrl-A X");
    let status = qemu_command(&opts, &guest, accel, true)
        .status()
        .context("running qemu-system-x86_64")?;
    if !status.success() {
        bail!("qemu exited with {status}");
    }
    Ok(())
}

/// Build, boot and judge: the whole of `vm-test` (without `--selftest`).
pub fn vm_test(opts: &Options) -> Result<Verdict> {
    let guest = prepare(opts, Mode::Test)?;
    let accel = choose_accel(opts, &guest.kernel, &guest.vm_dir)?;
    let verdict = run_guest(opts, &guest, accel)?;
    if verdict.panicked_before_init {
        // Seen about once in ten TCG boots on a loaded host (an int3 in the scheduler's clock
        // code, before any test ran). Nothing of ours ran yet: boot once more. A panic after
        // the guest's init started is never retried.
        eprintln!(
            "xtask: the guest kernel panicked before its init started ({}); booting once more",
            verdict.problems.join("; ")
        );
        return run_guest(opts, &guest, accel);
    }
    Ok(verdict)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Test,
    Shell,
}

/// Everything needed to boot: kernel, initramfs, what the guest will run.
struct Guest {
    kernel: kernel::Kernel,
    initramfs: PathBuf,
    expected: Vec<PathBuf>,
    vm_dir: PathBuf,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.initramfs);
    }
}

/// A test executable and the package directory it belongs to.
#[derive(Debug, Clone)]
struct TestExe {
    path: PathBuf,
    manifest_dir: PathBuf,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The cargo target directory (honours CARGO_TARGET_DIR and config).
fn target_dir() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(crate::project_root())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata output")?;
    v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata gave no target_directory")
}

/// Run a cargo build command with JSON messages; return the compiler-artifact messages.
fn cargo_artifacts(args: &[&str]) -> Result<Vec<serde_json::Value>> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let out = Command::new(cargo())
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(crate::project_root())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("cargo {} failed ({})", args.join(" "), out.status);
    }
    Ok(out
        .stdout
        .lines()
        .map_while(|l| l.ok())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .collect())
}

fn build_tests(release: bool) -> Result<Vec<TestExe>> {
    let mut args = vec!["test", "--workspace", "--no-run"];
    if release {
        args.push("--release");
    }
    let mut exes: Vec<TestExe> = cargo_artifacts(&args)?
        .into_iter()
        .filter(|v| v["profile"]["test"] == true)
        .filter_map(|v| {
            let path = PathBuf::from(v["executable"].as_str()?);
            let manifest = PathBuf::from(v["manifest_path"].as_str()?);
            Some(TestExe {
                path,
                manifest_dir: manifest.parent()?.to_path_buf(),
            })
        })
        .collect();
    exes.sort_by(|a, b| a.path.cmp(&b.path));
    exes.dedup_by(|a, b| a.path == b.path);
    Ok(exes)
}

fn build_crcli(release: bool) -> Result<PathBuf> {
    let mut args = vec!["build", "-p", "crcli"];
    if release {
        args.push("--release");
    }
    cargo_artifacts(&args)?
        .into_iter()
        .filter(|v| v["target"]["name"] == "crcli")
        .filter(|v| {
            v["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == "bin"))
        })
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .context("cargo build -p crcli produced no crcli executable")
}

/// Remove `initramfs-*-<pid>.cpio` files left by runs that were killed (their process is gone).
fn remove_stale_initramfs(vm_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(vm_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name
            .strip_prefix("initramfs-")
            .and_then(|n| n.strip_suffix(".cpio"))
        else {
            continue;
        };
        let pid = stem.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Fail if `p` lies where the guest mounts a fresh filesystem (it would be hidden there).
fn hidden_in_guest(p: &Path) -> Result<()> {
    for m in ["/tmp", "/run", "/proc", "/sys", "/dev"] {
        if p.starts_with(m) {
            bail!(
                "{} lies under {m}, which the guest covers with a fresh mount; \
                 put the workspace and CARGO_TARGET_DIR elsewhere",
                p.display()
            );
        }
    }
    Ok(())
}

/// Single-quote a string for the guest's shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

/// Host programs copied into the guest when the host has them: tools tests run that busybox
/// lacks or implements too thinly (ext4 images on loop devices).
const GUEST_HOST_TOOLS: &[&str] = &[
    "/sbin/mkfs.ext4",
    "/sbin/mke2fs",
    "/etc/mke2fs.conf",
    "/sbin/e2fsck",
    "/sbin/losetup",
];

/// Stage 1 of the guest's init, on the initramfs rootfs. Tests need a root that pivot_root can
/// leave. On 7.x kernels the rootfs sits on an immutable mount below it and pivot_root works
/// from it: go straight on. Otherwise copy the root into a tmpfs and switch_root into it.
const INIT_STAGE1: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
if $bb unshare -m $bb sh -c '/bin/busybox mount --make-rprivate / &&
    /bin/busybox mkdir -p /.crcli-pr && /bin/busybox mount -t tmpfs pr /.crcli-pr &&
    /bin/busybox mkdir /.crcli-pr/old && cd /.crcli-pr && /bin/busybox pivot_root . old' 2>/dev/null; then
  $bb rmdir /.crcli-pr
  exec /crcli-vm/init
fi
echo "crcli-vm: pivot_root does not work from the rootfs; copying it into a tmpfs"
$bb rmdir /.crcli-pr 2>/dev/null
$bb mount -t tmpfs -o mode=0755,size=90% rootfs-tmpfs /newroot || { echo "CRCLI-VM-INIT-FAILED mount tmpfs"; $bb poweroff -f; }
for e in /* /.[!.]*; do
  case "$e" in /newroot|/proc|/sys|/dev|'/.[!.]*') ;; *) $bb cp -a "$e" /newroot/ || { echo "CRCLI-VM-INIT-FAILED copy $e"; $bb poweroff -f; } ;; esac
done
$bb mkdir -p /newroot/proc /newroot/sys /newroot/dev
exec $bb switch_root /newroot /crcli-vm/init
"#;

/// Stage 2 of the guest's init: mounts, environment, then the generated run script.
const INIT_STAGE2: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root CRCLI_VM=1 CI=true INSTA_UPDATE=no RUST_BACKTRACE=1 TERM=dumb
mkdir -p /proc /sys /dev /tmp /run /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
[ -d /sys/fs/cgroup ] && mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
mount --make-rprivate / || echo "CRCLI-VM-INIT-FAILED mount --make-rprivate /"
for m in /crcli-vm/modules/*.ko; do
  [ -e "$m" ] && { insmod "$m" || echo "CRCLI-VM-INIT-FAILED insmod $m"; }
done
hostname crcli-vm
ip link set lo up 2>/dev/null
echo
echo "CRCLI-VM-BOOTED $(uname -r)"
crcli_pass=0
crcli_fail=0
crcli_run() {
  crcli_bin=$1; crcli_mdir=$2; shift 2
  crcli_dir=$(mktemp -d /tmp/crcli-test.XXXXXX)
  echo
  echo "CRCLI-VM-START $crcli_bin"
  ( cd "$crcli_dir" && CARGO_MANIFEST_DIR="$crcli_mdir" exec "$crcli_bin" "$@" ) </dev/null
  crcli_st=$?
  echo
  echo "CRCLI-VM-RESULT $crcli_bin $crcli_st"
  if [ "$crcli_st" -eq 0 ]; then crcli_pass=$((crcli_pass + 1)); else crcli_fail=$((crcli_fail + 1)); fi
}
. /crcli-vm/run.sh
"#;

/// Build the test executables (unless `--guest-binary`), find the kernel, write the initramfs.
fn prepare(opts: &Options, mode: Mode) -> Result<Guest> {
    host::ensure(&[&host::QEMU, &host::BUSYBOX, &host::APT_GET, &host::DPKG_DEB])?;
    let vm_dir = crate::project_root().join("target/vm");
    std::fs::create_dir_all(&vm_dir).with_context(|| format!("creating {}", vm_dir.display()))?;
    remove_stale_initramfs(&vm_dir);
    let kernel = match &opts.kernel {
        Some(k) => kernel::check_image(k)?,
        None => kernel::sid_kernel(&vm_dir, opts.refresh_kernel)?,
    };

    let mut tree = Tree::new();
    let mut run = String::from("# generated by cargo xtask\n");
    let mut expected = Vec::new();
    let mut args: Vec<String> = vec![format!("--test-threads={}", opts.cpus)];
    if let Some(f) = &opts.filter {
        args.push(f.clone());
    }
    let args_sh: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    let args_sh = args_sh.join(" ");

    let mut tests: Vec<TestExe> = Vec::new();
    if let Some(bin) = &opts.guest_binary {
        let bin = std::fs::canonicalize(bin)
            .with_context(|| format!("--guest-binary {}", bin.display()))?;
        tests.push(TestExe {
            manifest_dir: bin.parent().unwrap_or(Path::new("/")).to_path_buf(),
            path: bin,
        });
    } else {
        hidden_in_guest(&crate::project_root())?;
        let crcli = build_crcli(opts.release)?;
        hidden_in_guest(&crcli)?;
        if opts.guest_script.is_none() {
            tests = build_tests(opts.release)?;
        }
        if tests.is_empty() && mode == Mode::Test && opts.guest_script.is_none() {
            bail!("cargo test --no-run produced no test executables");
        }
        tree.mirror_with_libs(&crcli)?;
        // insta finds snapshots relative to the workspace root; without this it runs cargo.
        run.push_str(&format!(
            "export INSTA_WORKSPACE_ROOT={}\n",
            sh_quote(path_str(&crate::project_root())?)
        ));
        run.push_str(&format!(
            "export CRCLI_BIN={}\n",
            sh_quote(path_str(&crcli)?)
        ));
        // C test programs of crates/e2e (and any other build script's progs/).
        let profile_dir = target_dir()?.join(if opts.release { "release" } else { "debug" });
        if let Ok(rd) = std::fs::read_dir(profile_dir.join("build")) {
            for e in rd.flatten() {
                let progs = e.path().join("out/progs");
                if progs.is_dir() {
                    tree.mirror_tree(&progs, &|_| false)?;
                }
            }
        }
        // The sources, at their host path: tests read fixtures and snapshots from
        // CARGO_MANIFEST_DIR, and tidy reads the manifests.
        let root = crate::project_root();
        let target = target_dir()?;
        let skip = |p: &Path| {
            p == target
                || p.file_name().is_some_and(|n| n == ".git")
                || (p.parent() == Some(root.as_path())
                    && p.file_name().is_some_and(|n| {
                        n.to_str()
                            .is_some_and(|n| n == "target" || n.starts_with("target-"))
                    }))
        };
        if opts.guest_script.is_none() {
            match source_files(&root) {
                // In a git checkout: only what git tracks or would track, so build output
                // and scratch files (fuzz/target, fuzz/corpus, …) stay out of the guest.
                Some(files) => {
                    for f in files {
                        if f.exists() {
                            tree.mirror(&f)?;
                        }
                    }
                }
                None => tree.mirror_tree(&root, &skip)?,
            }
        }
    }
    for t in &tests {
        hidden_in_guest(&t.path)?;
        tree.mirror_with_libs(&t.path)?;
        if mode == Mode::Test {
            run.push_str(&format!(
                "crcli_run {} {} {}\n",
                sh_quote(path_str(&t.path)?),
                sh_quote(path_str(&t.manifest_dir)?),
                args_sh
            ));
        }
        expected.push(t.path.clone());
    }
    if let Some((path, text)) = &opts.guest_script {
        tree.data(path, text.as_bytes(), 0o755);
        run.push_str(&format!("crcli_run {} /\n", sh_quote(path_str(path)?)));
        expected.push(path.clone());
    }
    match mode {
        Mode::Test => run.push_str(
            "echo\necho \"CRCLI-VM-DONE $crcli_pass passed, $crcli_fail failed\"\nsync\npoweroff -f\n",
        ),
        Mode::Shell => run.push_str(
            "echo 'crcli VM shell: tests are at their host paths; exit powers off'\n\
             cd /tmp\nsetsid cttyhack sh -l || sh -l\nsync\npoweroff -f\n",
        ),
    }

    tree.mirror(&host::path(&host::BUSYBOX))?;
    // The directories busybox installs its applets into, as the host has them (on Debian 12
    // /bin and /sbin are symlinks into /usr).
    for d in ["/bin", "/sbin", "/usr/bin", "/usr/sbin"] {
        if Path::new(d).exists() {
            tree.mirror(Path::new(d))?;
        } else {
            tree.dir(Path::new(d));
        }
    }
    for d in ["/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/newroot"] {
        tree.dir(Path::new(d));
    }
    // Kernel modules the tests need (loop), loaded by the guest's init.
    for m in &kernel.modules {
        let name = m.file_name().context("module path")?;
        tree.data(
            &Path::new("/crcli-vm/modules").join(name),
            std::fs::read(m).with_context(|| format!("reading {}", m.display()))?,
            0o644,
        );
    }
    // Host tools some tests run that busybox lacks (with their shared libraries).
    for tool in GUEST_HOST_TOOLS {
        if Path::new(tool).exists() {
            tree.mirror_with_libs(Path::new(tool))?;
        }
    }
    tree.char_dev(Path::new("/dev/console"), 5, 1, 0o600);
    tree.data(Path::new("/init"), INIT_STAGE1, 0o755);
    tree.data(Path::new("/crcli-vm/init"), INIT_STAGE2, 0o755);
    tree.data(Path::new("/crcli-vm/run.sh"), run, 0o644);
    // Per process, so that several runs (several engineers) can share target/vm.
    let initramfs = vm_dir.join(format!(
        "initramfs-{}-{}.cpio",
        match mode {
            Mode::Test => "test",
            Mode::Shell => "shell",
        },
        std::process::id()
    ));
    let mib = tree.payload_bytes() as f64 / (1024.0 * 1024.0);
    eprintln!(
        "xtask: writing {} ({mib:.0} MiB, {} test executables)",
        initramfs.display(),
        expected.len()
    );
    tree.write_cpio(&initramfs)?;
    if mib * 3.0 > f64::from(opts.memory_mib) {
        eprintln!(
            "xtask: warning: the guest needs about {:.0} MiB for its files alone; consider --memory",
            mib * 2.0
        );
    }
    Ok(Guest {
        kernel,
        initramfs,
        expected,
        vm_dir,
    })
}

/// Kernel command line: serial console, reboot (= QEMU exits, `-no-reboot`) at once on a
/// panic, few messages. `mitigations=off`: the tests check mount and process interfaces, not
/// CPU side channels, and mitigations such as page-table isolation are costly under emulation.
const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off rdinit=/init";

fn qemu_command(opts: &Options, guest: &Guest, accel: Accel, interactive: bool) -> Command {
    let mut c = Command::new(host::QEMU.path);
    c.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    match accel {
        Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => c.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
    };
    c.args([
        "-smp",
        &opts.cpus.to_string(),
        "-m",
        &format!("{}M", opts.memory_mib),
    ]);
    c.arg("-kernel").arg(&guest.kernel.image);
    c.arg("-initrd").arg(&guest.initramfs);
    c.args(["-append", KERNEL_CMDLINE]);
    if interactive {
        c.args(["-serial", "mon:stdio"]);
    } else {
        c.args(["-serial", "stdio"]);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    c
}

/// `--accel` if given, else KVM when a quick boot of a tiny guest under KVM works, else TCG.
fn choose_accel(opts: &Options, kernel: &kernel::Kernel, vm_dir: &Path) -> Result<Accel> {
    if let Some(a) = opts.accel {
        return Ok(a);
    }
    if !Path::new("/dev/kvm").exists() {
        eprintln!("xtask: no /dev/kvm: using TCG emulation");
        return Ok(Accel::Tcg);
    }
    let mut tree = Tree::new();
    tree.mirror(&host::path(&host::BUSYBOX))?;
    tree.data(
        Path::new("/init"),
        "#!/bin/busybox sh\necho CRCLI-KVM-PROBE-OK\n/bin/busybox poweroff -f\n",
        0o755,
    );
    let probe = vm_dir.join(format!("initramfs-kvm-probe-{}.cpio", std::process::id()));
    tree.write_cpio(&probe)?;
    let probe_guest = Guest {
        kernel: kernel.clone(),
        initramfs: probe,
        expected: Vec::new(),
        vm_dir: vm_dir.to_path_buf(),
    };
    let probe_opts = Options {
        memory_mib: 256,
        cpus: 1,
        ..opts.clone()
    };
    let mut cmd = qemu_command(&probe_opts, &probe_guest, Accel::Kvm, false);
    let session = Session::spawn(&mut cmd, false)?;
    let seen = session.wait_for(Duration::from_secs(30), "CRCLI-KVM-PROBE-OK");
    if seen {
        eprintln!("xtask: KVM works: using it");
        Ok(Accel::Kvm)
    } else {
        eprintln!("xtask: KVM does not work here: using TCG emulation (-accel tcg -cpu max)");
        Ok(Accel::Tcg)
    }
}

/// A running QEMU whose serial console is read line by line by a thread.
struct Session {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Session {
    fn spawn(cmd: &mut Command, echo: bool) -> Result<Session> {
        let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
        let stdout = child.stdout.take().context("qemu stdout")?;
        let stderr = child.stderr.take().context("qemu stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(stdout);
            let mut buf = Vec::new();
            let mut out = std::io::stdout();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if echo {
                            let _ = out.write_all(&buf);
                            let _ = out.flush();
                        }
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\r', '\n'])
                            .to_string();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let err_buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let eb = err_buf.clone();
        std::thread::spawn(move || {
            let mut r = stderr;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let s = String::from_utf8_lossy(&chunk[..n]);
                if echo {
                    eprint!("{s}");
                }
                if let Ok(mut g) = eb.lock() {
                    g.push_str(&s);
                }
            }
        });
        Ok(Session {
            child,
            lines: rx,
            stderr: err_buf,
        })
    }

    /// Wait up to `limit` for a line containing `marker`; kill QEMU in any case.
    fn wait_for(mut self, limit: Duration, marker: &str) -> bool {
        let deadline = Instant::now() + limit;
        let mut seen = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(marker) => {
                    seen = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        seen
    }
}

/// What the guest run came to.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Test executables that exited 0.
    pub passed: usize,
    /// Test executables that did not.
    pub failed: usize,
    /// Every reason the run fails; empty means it passed.
    pub problems: Vec<String>,
    /// Release of the kernel that was booted.
    pub kernel: String,
    /// The guest kernel panicked before the guest's init announced itself: no test ran.
    pub panicked_before_init: bool,
}

impl Verdict {
    /// Whether the run passed.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What the serial console said, parsed.
#[derive(Debug, Default)]
struct Console {
    booted: Option<String>,
    started: Vec<String>,
    results: Vec<(String, i32)>,
    done: Option<(usize, usize)>,
    kernel_panic: Option<String>,
    init_failed: Vec<String>,
}

impl Console {
    fn feed(&mut self, line: &str) {
        if let Some(rest) = after(line, "CRCLI-VM-BOOTED ") {
            self.booted = Some(rest.trim().to_string());
        } else if let Some(rest) = after(line, "CRCLI-VM-START ") {
            self.started.push(rest.trim().to_string());
        } else if let Some(rest) = after(line, "CRCLI-VM-RESULT ") {
            if let Some((bin, st)) = rest.trim().rsplit_once(' ') {
                if let Ok(st) = st.parse() {
                    self.results.push((bin.to_string(), st));
                }
            }
        } else if let Some(rest) = after(line, "CRCLI-VM-DONE ") {
            // "<p> passed, <f> failed"
            let nums: Vec<usize> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|s| s.parse().ok())
                .collect();
            if rest.contains("passed") && rest.contains("failed") && nums.len() == 2 {
                self.done = Some((nums[0], nums[1]));
            }
        } else if let Some(rest) = after(line, "CRCLI-VM-INIT-FAILED ") {
            self.init_failed.push(rest.trim().to_string());
        }
        if line.contains("Kernel panic - not syncing") && self.kernel_panic.is_none() {
            let msg = line
                .split("Kernel panic - not syncing")
                .nth(1)
                .unwrap_or("");
            self.kernel_panic = Some(msg.trim_start_matches(':').trim().to_string());
        }
    }

    fn running(&self) -> Option<&str> {
        let last = self.started.last()?;
        if self.results.iter().any(|(b, _)| b == last) {
            None
        } else {
            Some(last)
        }
    }
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// CPU seconds used by this process's waited-for children (cutime + cstime of /proc/self/stat,
/// in USER_HZ = 100 ticks per second on Linux).
fn children_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); cutime and cstime are fields 16 and 17.
    let cutime: f64 = f.get(13)?.parse().ok()?;
    let cstime: f64 = f.get(14)?.parse().ok()?;
    Some((cutime + cstime) / 100.0)
}

/// Describe an exit status as the guest's shell reports it.
fn describe_status(st: i32) -> String {
    if st > 128 && st < 128 + 65 {
        let sig = st - 128;
        let name = match sig {
            4 => " (SIGILL)",
            6 => " (SIGABRT)",
            7 => " (SIGBUS)",
            8 => " (SIGFPE)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            _ => "",
        };
        format!("was killed by signal {sig}{name} (exit status {st})")
    } else {
        format!("failed with exit status {st}")
    }
}

/// Boot the guest, stream its console, and judge the run.
fn run_guest(opts: &Options, guest: &Guest, accel: Accel) -> Result<Verdict> {
    eprintln!(
        "xtask: booting Linux {} with {}, {} vCPUs, {} MiB, timeout {} s",
        guest.kernel.release,
        match accel {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        },
        opts.cpus,
        opts.memory_mib,
        opts.timeout.as_secs()
    );
    let mut cmd = qemu_command(opts, guest, accel, false);
    let cpu_before = children_cpu_secs();
    let mut session = Session::spawn(&mut cmd, true)?;
    let booted_at = Instant::now();
    let deadline = booted_at + opts.timeout;
    let mut console = Console::default();
    let mut timed_out = false;
    let mut shutdown_deadline: Option<Instant> = None;
    loop {
        let until = shutdown_deadline.unwrap_or(deadline).min(deadline);
        let left = until.saturating_duration_since(Instant::now());
        match session.lines.recv_timeout(left) {
            Ok(line) => {
                console.feed(&line);
                if console.done.is_some() && shutdown_deadline.is_none() {
                    // The tests are over; the guest powers off now. Don't wait forever.
                    shutdown_deadline = Some(Instant::now() + Duration::from_secs(30));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) if shutdown_deadline.is_some() => {
                eprintln!("xtask: the guest did not power off after its summary; stopping qemu");
                let _ = session.child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if timed_out {
        let _ = session.child.kill();
    }
    // The console closed: QEMU is exiting (or was killed); give it a moment.
    let status = session.child.wait().context("waiting for qemu")?;
    let qemu_stderr = session.stderr.lock().map(|s| s.clone()).unwrap_or_default();
    let cpu = match (cpu_before, children_cpu_secs()) {
        (Some(a), Some(b)) => format!(", qemu used {:.0} s of CPU", b - a),
        _ => String::new(),
    };
    eprintln!("xtask: the VM ran {} s{cpu}", booted_at.elapsed().as_secs());

    let mut v = Verdict {
        kernel: console
            .booted
            .clone()
            .unwrap_or_else(|| guest.kernel.release.clone()),
        panicked_before_init: console.kernel_panic.is_some() && console.booted.is_none(),
        ..Verdict::default()
    };
    let p = &mut v.problems;
    if timed_out {
        p.push(match console.running() {
            Some(bin) => format!(
                "the VM did not finish within the {} s timeout (hung?); still running {bin}",
                opts.timeout.as_secs()
            ),
            None => format!(
                "the VM did not finish within the {} s timeout (hung?)",
                opts.timeout.as_secs()
            ),
        });
    }
    if let Some(msg) = &console.kernel_panic {
        p.push(match console.running() {
            Some(bin) => format!("the guest kernel panicked ({msg}) while running {bin}"),
            None => format!("the guest kernel panicked ({msg})"),
        });
    }
    for f in &console.init_failed {
        p.push(format!("the guest's init failed: {f}"));
    }
    if console.booted.is_none() {
        p.push("the guest never reached its init (no CRCLI-VM-BOOTED line)".into());
    } else if console.booted.as_deref() != Some(guest.kernel.release.as_str()) {
        p.push(format!(
            "the guest booted kernel {:?}, expected {}",
            console.booted, guest.kernel.release
        ));
    }
    for (bin, st) in &console.results {
        if *st == 0 {
            v.passed += 1;
        } else {
            v.failed += 1;
            p.push(format!("{bin} {}", describe_status(*st)));
        }
    }
    for e in &guest.expected {
        let e = e.to_string_lossy();
        if !console.results.iter().any(|(b, _)| *b == e) {
            p.push(format!("{e} reported no result"));
        }
    }
    match console.done {
        None => p.push(
            "the guest never printed its CRCLI-VM-DONE summary (crash, panic or hang)".into(),
        ),
        Some((dp, df)) if dp != v.passed || df != v.failed => p.push(format!(
            "the guest's summary ({dp} passed, {df} failed) disagrees with its result lines \
             ({} passed, {} failed)",
            v.passed, v.failed
        )),
        Some(_) => {}
    }
    if !timed_out && shutdown_deadline.is_none() && !status.success() {
        p.push(format!("qemu exited with {status}: {}", qemu_stderr.trim()));
    }
    Ok(v)
}

/// The workspace's source files as git sees them: tracked files plus untracked ones that are
/// not ignored. `None` outside a git checkout (or without git), where the caller walks the tree.
fn source_files(root: &Path) -> Option<Vec<PathBuf>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        out.stdout
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| root.join(std::ffi::OsStr::from_bytes(name)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_parsing() {
        let mut c = Console::default();
        for l in [
            "[    1.0] random kernel line",
            "CRCLI-VM-BOOTED 7.2.13+deb14-cloud-amd64\r",
            "CRCLI-VM-START /t/a",
            "test result: ok. 3 passed; 0 failed",
            "partial line without newlineCRCLI-VM-RESULT /t/a 0",
            "CRCLI-VM-START /t/b",
            "CRCLI-VM-RESULT /t/b 139",
            "CRCLI-VM-DONE 1 passed, 1 failed",
        ] {
            c.feed(l.trim_end_matches('\r'));
        }
        assert_eq!(c.booted.as_deref(), Some("7.2.13+deb14-cloud-amd64"));
        assert_eq!(
            c.results,
            [("/t/a".to_string(), 0), ("/t/b".to_string(), 139)]
        );
        assert_eq!(c.done, Some((1, 1)));
        assert_eq!(c.running(), None);
        assert!(describe_status(139).contains("SIGSEGV"));
        assert!(describe_status(101).contains("exit status 101"));

        let mut c = Console::default();
        c.feed("CRCLI-VM-START /t/a");
        c.feed("[   9.1] Kernel panic - not syncing: sysrq triggered crash");
        assert_eq!(c.running(), Some("/t/a"));
        assert_eq!(c.kernel_panic.as_deref(), Some("sysrq triggered crash"));
    }

    #[test]
    fn option_parsing() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse_options(&a(&["statmount", "--cpus", "4", "--timeout", "60"]), true).unwrap();
        assert_eq!(o.filter.as_deref(), Some("statmount"));
        assert_eq!(o.cpus, 4);
        assert_eq!(o.timeout, Duration::from_secs(60));
        assert!(parse_options(&a(&["--cpus", "0"]), true).is_err());
        assert!(parse_options(&a(&["--bogus"]), true).is_err());
        assert!(parse_options(&a(&["a", "b"]), true).is_err());
        assert!(parse_options(&a(&["filter"]), false).is_err());
        assert!(parse_options(&a(&["--accel", "xen"]), true).is_err());
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
