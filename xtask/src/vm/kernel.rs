//! The guest kernel: Debian sid's newest `linux-binary-unsigned-*-cloud-amd64`, fetched with apt
//! through a private sources list and cached under `target/vm/kernel/<version>/`, or a bzImage
//! given with `--kernel`. Either way its version is read from the bzImage header and must be at
//! least [`MIN_VERSION`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The oldest kernel the VM tests accept: STATMOUNT_BY_FD and OPEN_TREE_NAMESPACE are 7.0.
pub const MIN_VERSION: (u32, u32) = (7, 0);

const MIRROR: &str = "http://deb.debian.org/debian";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A kernel image ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The bzImage.
    pub image: PathBuf,
    /// The release string from its header, e.g. `7.2.13+deb14-cloud-amd64`.
    pub release: String,
    /// Uncompressed modules (`NAME.ko`) the guest loads at boot, if this kernel has them.
    pub modules: Vec<PathBuf>,
}

/// Kernel modules the tests need that Debian's cloud kernel does not build in.
pub const GUEST_MODULES: &[&str] = &["loop"];

/// Read the kernel release string from an x86 bzImage's setup header.
///
/// The header has the magic `HdrS` at 0x202 and, at 0x20e, the offset (minus 0x200) of a
/// NUL-terminated version string such as `7.2.13+deb14-cloud-amd64 (builder) #1 SMP ...`.
pub fn bzimage_release(image: &[u8]) -> Result<String> {
    if image.len() < 0x210 || &image[0x202..0x206] != b"HdrS" {
        bail!("reading the kernel version: not an x86 bzImage (no HdrS setup header)");
    }
    let protocol = u16::from_le_bytes([image[0x206], image[0x207]]);
    if protocol < 0x200 {
        bail!("reading the kernel version: boot protocol {protocol:#x} is too old to say");
    }
    let off = u16::from_le_bytes([image[0x20e], image[0x20f]]) as usize + 0x200;
    let tail = image
        .get(off..)
        .filter(|t| !t.is_empty())
        .context("reading the kernel version: version string offset lies outside the image")?;
    let end = tail
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(tail.len().min(256));
    let s = std::str::from_utf8(&tail[..end])
        .context("reading the kernel version: version string is not UTF-8")?;
    let release = s.split_whitespace().next().unwrap_or("");
    if release.is_empty() {
        bail!("reading the kernel version: empty version string");
    }
    Ok(release.to_string())
}

/// The `(major, minor)` of a release string such as `7.2.13+deb14-cloud-amd64` or `6.18.44`.
pub fn release_version(release: &str) -> Result<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next().and_then(|s| s.parse().ok());
    let minor = it.next().and_then(|s| s.parse().ok());
    match (major, minor) {
        (Some(a), Some(b)) if release.starts_with(|c: char| c.is_ascii_digit()) => Ok((a, b)),
        _ => bail!("parsing kernel release {release:?}: expected MAJOR.MINOR..."),
    }
}

/// Sort key of a release: every number in it, in order.
fn release_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Check that a kernel image is a bzImage of Linux [`MIN_VERSION`] or newer.
pub fn check_image(image: &Path) -> Result<Kernel> {
    let bytes = read_head(image)?;
    let release = bzimage_release(&bytes)
        .with_context(|| format!("checking kernel image {}", image.display()))?;
    let version = release_version(&release)?;
    if version < MIN_VERSION {
        bail!(
            "kernel {} is Linux {} (version {}.{}): the VM tests need Linux {}.{} or newer \
             (STATMOUNT_BY_FD, OPEN_TREE_NAMESPACE); refusing to boot it",
            image.display(),
            release,
            version.0,
            version.1,
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    let mut modules = Vec::new();
    if let Some(dir) = image.parent() {
        for m in GUEST_MODULES {
            let ko = dir.join("modules").join(format!("{m}.ko"));
            if ko.is_file() {
                modules.push(ko);
            }
        }
    }
    Ok(Kernel {
        image: image.to_path_buf(),
        release,
        modules,
    })
}

fn read_head(image: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(image)
        .with_context(|| format!("opening kernel image {}", image.display()))?;
    let mut buf = Vec::with_capacity(64 * 1024);
    f.by_ref()
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading kernel image {}", image.display()))?;
    Ok(buf)
}

/// The newest kernel: the newest cached one (downloading nothing), or when none is cached or
/// `refresh` is set, the newest of Debian sid fetched into the cache.
pub fn sid_kernel(vm_dir: &Path, refresh: bool) -> Result<Kernel> {
    let cache = vm_dir.join("kernel");
    if !refresh {
        if let Some(k) = newest_cached(&cache) {
            eprintln!(
                "xtask: using cached kernel {} ({})",
                k.release,
                k.image.display()
            );
            return Ok(k);
        }
    }
    let apt = PrivateApt::new(vm_dir.join("apt-sid"), "sid")?;
    apt.update()?;
    let mut candidates: Vec<String> = apt
        .pkgnames("linux-binary-unsigned-")?
        .into_iter()
        .filter(|n| n.ends_with("-cloud-amd64"))
        .collect();
    candidates.sort_by_key(|n| release_key(n));
    let Some(package) = candidates.pop() else {
        bail!("finding the guest kernel: no linux-binary-unsigned-*-cloud-amd64 package in sid");
    };
    let release = package
        .trim_start_matches("linux-binary-unsigned-")
        .to_string();
    let version = release_version(&release)?;
    if version < MIN_VERSION {
        bail!(
            "finding the guest kernel: sid's newest cloud kernel {package} is older than {}.{}",
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    let dest = cache.join(&release);
    if let Ok(k) = check_image(&dest.join("vmlinuz")) {
        eprintln!("xtask: newest sid kernel {release} is already cached");
        return Ok(k);
    }
    eprintln!("xtask: downloading {package} from Debian sid");
    let image = apt.fetch_file(&package, "vmlinuz", &dest)?;
    check_image(&image)?;
    let modules_pkg = format!("linux-modules-{release}");
    eprintln!("xtask: downloading {modules_pkg} for the modules {GUEST_MODULES:?}");
    apt.fetch_modules(&modules_pkg, GUEST_MODULES, &dest.join("modules"))?;
    let k = check_image(&image)?;
    fs::write(dest.join("package"), format!("{package}\n"))?;
    Ok(k)
}

fn newest_cached(cache: &Path) -> Option<Kernel> {
    let mut found: Vec<Kernel> = fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| check_image(&e.path().join("vmlinuz")).ok())
        .collect();
    found.sort_by_key(|k| release_key(&k.release));
    found.pop()
}

/// An older kernel (Debian 12's cloud kernel, Linux 6.1) for the harness self-test that checks
/// the version gate on a real image. Cached under `target/vm/kernel-old/`.
pub fn bookworm_kernel(vm_dir: &Path) -> Result<PathBuf> {
    let cache = vm_dir.join("kernel-old");
    if let Ok(entries) = fs::read_dir(&cache) {
        for e in entries.flatten() {
            let p = e.path().join("vmlinuz");
            if p.exists() {
                return Ok(p);
            }
        }
    }
    let apt = PrivateApt::new(vm_dir.join("apt-bookworm"), "bookworm")?;
    apt.update()?;
    let mut candidates: Vec<String> = apt
        .pkgnames("linux-image-")?
        .into_iter()
        .filter(|n| n.ends_with("-cloud-amd64") && n.starts_with("linux-image-6."))
        .filter(|n| !n.contains("-dbg") && !n.contains("unsigned"))
        .collect();
    candidates.sort_by_key(|n| release_key(n));
    let Some(package) = candidates.pop() else {
        bail!("finding an old kernel: no linux-image-6.*-cloud-amd64 package in bookworm");
    };
    eprintln!("xtask: downloading {package} from Debian bookworm (self-test of the version gate)");
    let dest = cache.join(package.trim_start_matches("linux-image-"));
    apt.fetch_file(&package, "vmlinuz", &dest)
}

/// apt with its own sources list, state and cache (never the machine's own lists).
struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    fn new(dir: PathBuf, suite: &str) -> Result<Self> {
        for sub in [
            "etc/sources.list.d",
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
            "download",
        ] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        fs::write(
            dir.join("etc/sources.list"),
            format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n"),
        )?;
        let status = dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        Ok(PrivateApt { dir })
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/etc/sources.list"),
            format!("-oDir::Etc::SourceParts={d}/etc/sources.list.d"),
            format!("-oDir::Etc::Preferences={d}/etc/preferences"),
            format!("-oDir::Etc::PreferencesParts={d}/etc/preferences.d"),
            format!("-oDir::State={d}/state"),
            format!("-oDir::State::status={d}/state/status"),
            format!("-oDir::Cache={d}/cache"),
            "-oAcquire::Check-Valid-Until=false".into(),
            "-oAcquire::Languages=none".into(),
            "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "-oAPT::Architecture=amd64".into(),
            "-oAPT::Sandbox::User=root".into(),
        ]
    }

    fn update(&self) -> Result<()> {
        let st = Command::new("apt-get")
            .args(self.options())
            .args(["-q", "update"])
            .stdout(Stdio::inherit())
            .status()
            .context("running apt-get update with the private sources list")?;
        if !st.success() {
            bail!(
                "apt-get update with the private sources list {} failed ({st})",
                self.dir.join("etc/sources.list").display()
            );
        }
        Ok(())
    }

    fn pkgnames(&self, prefix: &str) -> Result<Vec<String>> {
        let out = Command::new("apt-cache")
            .args(self.options())
            .args(["pkgnames", prefix])
            .output()
            .context("running apt-cache pkgnames")?;
        if !out.status.success() {
            bail!(
                "apt-cache pkgnames {prefix} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Download `package` and extract the kernel modules `names` from it, uncompressed, to
    /// `dest/NAME.ko`.
    fn fetch_modules(&self, package: &str, names: &[&str], dest: &Path) -> Result<()> {
        let deb = self.download(package)?;
        let listing = Command::new("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .context("running dpkg-deb -c")?;
        let listing = String::from_utf8_lossy(&listing.stdout);
        let unpack = self.dir.join("download/unpack");
        let _ = fs::remove_dir_all(&unpack);
        fs::create_dir_all(&unpack)?;
        fs::create_dir_all(dest)?;
        for name in names {
            let member = listing
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .find(|p| {
                    let f = p.rsplit('/').next().unwrap_or("");
                    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                        .iter()
                        .any(|ext| f == format!("{name}{ext}"))
                })
                .with_context(|| format!("package {package} holds no module {name}"))?
                .to_string();
            let sh = format!(
                "dpkg-deb --fsys-tarfile '{}' | tar -x -O '{}' > '{}'",
                deb.display(),
                member,
                unpack.join("m").display()
            );
            run_sh(&sh, &format!("unpacking {member} from {package}"))?;
            let decompress = if member.ends_with(".xz") {
                "xz -dc"
            } else if member.ends_with(".zst") {
                "zstd -dcq"
            } else if member.ends_with(".gz") {
                "gzip -dc"
            } else {
                "cat"
            };
            let out = dest.join(format!("{name}.ko"));
            let sh = format!(
                "{decompress} < '{}' > '{}'",
                unpack.join("m").display(),
                out.display()
            );
            run_sh(&sh, &format!("decompressing module {name}"))?;
        }
        let _ = fs::remove_dir_all(&unpack);
        let _ = fs::remove_file(&deb);
        Ok(())
    }

    /// `apt-get download` one package into the private download directory; its path.
    fn download(&self, package: &str) -> Result<PathBuf> {
        let dl = self.dir.join("download");
        for e in fs::read_dir(&dl)?.flatten() {
            if e.path().is_file() {
                let _ = fs::remove_file(e.path());
            }
        }
        let st = Command::new("apt-get")
            .args(self.options())
            .args(["-q", "download", package])
            .current_dir(&dl)
            .status()
            .context("running apt-get download")?;
        if !st.success() {
            bail!("apt-get download {package} failed ({st})");
        }
        fs::read_dir(&dl)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .with_context(|| format!("apt-get download {package} left no .deb"))
    }

    /// Download `package`, extract the one file whose name starts with `prefix` (under
    /// `boot/` or `usr/lib/modules/*/`) to `dest/vmlinuz`, delete the package.
    fn fetch_file(&self, package: &str, prefix: &str, dest: &Path) -> Result<PathBuf> {
        let dl = self.dir.join("download");
        let deb = self.download(package)?;
        let listing = Command::new("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .context("running dpkg-deb -c")?;
        let listing = String::from_utf8_lossy(&listing.stdout);
        let member = listing
            .lines()
            .filter(|l| l.starts_with('-'))
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| {
                let name = p.rsplit('/').next().unwrap_or("");
                name.starts_with(prefix)
                    && (p.starts_with("./boot/") || p.starts_with("./usr/lib/modules/"))
            })
            .with_context(|| format!("package {package} holds no {prefix}* kernel image"))?
            .to_string();
        let unpack = dl.join("unpack");
        let _ = fs::remove_dir_all(&unpack);
        fs::create_dir_all(&unpack)?;
        let sh = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' '{}'",
            deb.display(),
            unpack.display(),
            member
        );
        let st = Command::new("sh")
            .args(["-c", &sh])
            .status()
            .context("unpacking the kernel package")?;
        if !st.success() {
            bail!("unpacking {member} from {} failed ({st})", deb.display());
        }
        fs::create_dir_all(dest)?;
        let out = dest.join("vmlinuz");
        fs::rename(unpack.join(&member), &out)
            .with_context(|| format!("moving the kernel image to {}", out.display()))?;
        let _ = fs::remove_dir_all(&unpack);
        let _ = fs::remove_file(&deb);
        Ok(out)
    }
}

fn run_sh(script: &str, what: &str) -> Result<()> {
    let st = Command::new("sh")
        .args(["-c", script])
        .status()
        .with_context(|| format!("{what}: running sh"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: &str) -> Vec<u8> {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        let off = 0x400usize;
        img[0x20e..0x210].copy_from_slice(&((off - 0x200) as u16).to_le_bytes());
        img[off..off + version.len()].copy_from_slice(version.as_bytes());
        img
    }

    #[test]
    fn reads_release_from_setup_header() {
        let img = header("7.2.13+deb14-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP");
        assert_eq!(bzimage_release(&img).unwrap(), "7.2.13+deb14-cloud-amd64");
    }

    #[test]
    fn rejects_non_bzimage() {
        let err = bzimage_release(&[0u8; 0x1000]).unwrap_err().to_string();
        assert!(err.contains("not an x86 bzImage"), "{err}");
        assert!(bzimage_release(b"short").is_err());
        let mut img = header("7.0");
        img[0x20e..0x210].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert!(bzimage_release(&img).is_err());
    }

    #[test]
    fn version_gate() {
        assert_eq!(release_version("7.2.13+deb14-cloud-amd64").unwrap(), (7, 2));
        assert_eq!(release_version("6.18.44-fc-v669").unwrap(), (6, 18));
        assert_eq!(release_version("7.0").unwrap(), (7, 0));
        assert!(release_version("linux").is_err());
        assert!((6, 18) < MIN_VERSION);
        assert!((7, 0) >= MIN_VERSION);
        assert!((10, 1) >= MIN_VERSION);
    }

    #[test]
    fn check_image_refuses_old_kernel_with_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("vmlinuz-old");
        fs::write(&old, header("6.1.0-40-cloud-amd64 (debian) #1 SMP")).unwrap();
        let err = format!("{:#}", check_image(&old).unwrap_err());
        assert!(err.contains("need Linux 7.0 or newer"), "{err}");
        assert!(err.contains("6.1.0-40-cloud-amd64"), "{err}");
        let new = dir.path().join("vmlinuz-new");
        fs::write(&new, header("7.2.13+deb14-cloud-amd64 #1")).unwrap();
        assert_eq!(
            check_image(&new).unwrap().release,
            "7.2.13+deb14-cloud-amd64"
        );
    }

    #[test]
    fn release_ordering() {
        let mut v = vec!["7.10.1-cloud-amd64", "7.2.13+deb14-cloud-amd64", "7.9.0"];
        v.sort_by_key(|r| release_key(r));
        assert_eq!(
            v,
            ["7.2.13+deb14-cloud-amd64", "7.9.0", "7.10.1-cloud-amd64"]
        );
    }
}
