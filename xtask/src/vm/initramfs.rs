//! The guest's initramfs: an in-memory model of the guest file tree that mirrors host paths
//! (following and recreating symlinks such as Debian's `/lib -> usr/lib`), shared-library
//! discovery for ELF executables, and a writer for the `newc` cpio format the kernel unpacks.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One entry of the guest tree.
#[derive(Debug, Clone)]
enum Entry {
    Dir { mode: u32 },
    File { src: PathBuf, mode: u32 },
    Data { bytes: Vec<u8>, mode: u32 },
    Symlink { target: PathBuf },
    CharDev { major: u32, minor: u32, mode: u32 },
}

/// The guest file tree, keyed by absolute guest path.
#[derive(Debug, Default)]
pub struct Tree {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Tree {
    /// An empty tree (the root directory is implicit).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a directory and its ancestors (mode 0755), unless present.
    pub fn dir(&mut self, path: &Path) {
        let mut cur = PathBuf::from("/");
        for c in path.components().skip(1) {
            cur.push(c);
            self.entries
                .entry(cur.clone())
                .or_insert(Entry::Dir { mode: 0o755 });
        }
    }

    /// Add a file with the given contents and permission bits (replacing any entry there).
    pub fn data(&mut self, path: &Path, bytes: impl Into<Vec<u8>>, mode: u32) {
        if let Some(parent) = path.parent() {
            self.dir(parent);
        }
        self.entries.insert(
            path.to_path_buf(),
            Entry::Data {
                bytes: bytes.into(),
                mode,
            },
        );
    }

    /// Add a character device node (e.g. `/dev/console`, 5:1).
    pub fn char_dev(&mut self, path: &Path, major: u32, minor: u32, mode: u32) {
        if let Some(parent) = path.parent() {
            self.dir(parent);
        }
        self.entries
            .insert(path.to_path_buf(), Entry::CharDev { major, minor, mode });
    }

    /// Add the host path `host` at the same guest path, exactly as the host shows it: every
    /// symlink met on the way (in directories or the final component) is recreated and its
    /// target mirrored too. A directory is added without its contents.
    pub fn mirror(&mut self, host: &Path) -> Result<()> {
        self.mirror_depth(host, 0)
    }

    fn mirror_depth(&mut self, host: &Path, depth: u32) -> Result<()> {
        if depth > 40 {
            bail!("mirroring {}: too many levels of symlinks", host.display());
        }
        if !host.is_absolute() {
            bail!("mirroring {}: not an absolute path", host.display());
        }
        let mut cur = PathBuf::from("/");
        for c in normalize(host).components().skip(1) {
            let next = cur.join(c);
            let meta = fs::symlink_metadata(&next).with_context(|| {
                format!("mirroring {}: stat {}", host.display(), next.display())
            })?;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&next)?;
                self.entries.entry(next.clone()).or_insert(Entry::Symlink {
                    target: target.clone(),
                });
                let resolved = normalize(&cur.join(&target));
                self.mirror_depth(&resolved, depth + 1)?;
                cur = fs::canonicalize(&next)
                    .with_context(|| format!("resolving {}", next.display()))?;
            } else {
                let mode = meta.permissions().mode() & 0o7777;
                let e = if meta.is_dir() {
                    Entry::Dir { mode }
                } else if meta.is_file() {
                    Entry::File {
                        src: next.clone(),
                        mode,
                    }
                } else {
                    bail!(
                        "mirroring {}: {} is not a regular file",
                        host.display(),
                        next.display()
                    );
                };
                self.entries.entry(next.clone()).or_insert(e);
                cur = next;
            }
        }
        Ok(())
    }

    /// Mirror a host file and, if it is a dynamically linked ELF executable, its dynamic
    /// loader and every shared library it loads.
    pub fn mirror_with_libs(&mut self, host: &Path) -> Result<()> {
        self.mirror(host)?;
        for lib in shared_libraries(host)? {
            self.mirror(&lib)?;
        }
        Ok(())
    }

    /// Mirror a host directory tree (files, symlinks, directories), ELF files with their
    /// shared libraries. `skip` decides, from a path, whether to leave it (and what is below
    /// it) out.
    pub fn mirror_tree(&mut self, root: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
        self.mirror(root)?;
        let root = fs::canonicalize(root)?;
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let rd = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
            for e in rd {
                let p = e?.path();
                if skip(&p) {
                    continue;
                }
                let meta = fs::symlink_metadata(&p)?;
                if meta.file_type().is_symlink() {
                    self.entries.entry(p.clone()).or_insert(Entry::Symlink {
                        target: fs::read_link(&p)?,
                    });
                } else if meta.is_dir() {
                    self.entries.entry(p.clone()).or_insert(Entry::Dir {
                        mode: meta.permissions().mode() & 0o7777,
                    });
                    stack.push(p);
                } else if meta.is_file() {
                    self.entries.entry(p.clone()).or_insert(Entry::File {
                        src: p.clone(),
                        mode: meta.permissions().mode() & 0o7777,
                    });
                    if is_elf(&p) {
                        for lib in shared_libraries(&p)? {
                            self.mirror(&lib)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Total size of file contents in bytes.
    pub fn payload_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match e {
                Entry::File { src, .. } => fs::metadata(src).map(|m| m.size()).unwrap_or(0),
                Entry::Data { bytes, .. } => bytes.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Write the tree as an uncompressed `newc` cpio archive.
    pub fn write_cpio(&self, out: &Path) -> Result<()> {
        let f = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut w = CpioWriter::new(BufWriter::with_capacity(1 << 20, f));
        for (path, e) in &self.entries {
            let name = path.strip_prefix("/").unwrap_or(path);
            let name = name.to_str().context("guest path is not UTF-8")?;
            match e {
                Entry::Dir { mode } => w.entry(name, 0o040000 | mode, &mut std::io::empty(), 0)?,
                Entry::CharDev { major, minor, mode } => {
                    w.rdev = (*major, *minor);
                    w.entry(name, 0o020000 | mode, &mut std::io::empty(), 0)?;
                    w.rdev = (0, 0);
                }
                Entry::Data { bytes, mode } => {
                    w.entry(name, 0o100000 | mode, &mut &bytes[..], bytes.len() as u64)?
                }
                Entry::Symlink { target } => {
                    let t = target.as_os_str().as_encoded_bytes();
                    w.entry(name, 0o120777, &mut &t[..], t.len() as u64)?
                }
                Entry::File { src, mode } => {
                    let mut f = fs::File::open(src)
                        .with_context(|| format!("reading {}", src.display()))?;
                    let len = f.metadata()?.len();
                    w.entry(name, 0o100000 | mode, &mut f, len)
                        .with_context(|| format!("archiving {}", src.display()))?;
                }
            }
        }
        w.finish()?;
        Ok(())
    }
}

/// Lexically normalize an absolute path (resolve `.` and `..`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Whether a file starts with the ELF magic.
pub fn is_elf(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The ELF program interpreter (`PT_INTERP`) of a 64-bit little-endian ELF file, if any.
pub fn elf_interpreter(data: &[u8]) -> Option<PathBuf> {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    let phoff = u64_at(0x20)? as usize;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? == 3 {
            let off = u64_at(ph + 8)? as usize;
            let size = u64_at(ph + 32)? as usize;
            let raw = data.get(off..off.checked_add(size)?)?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            return std::str::from_utf8(&raw[..end]).ok().map(PathBuf::from);
        }
    }
    None
}

/// The dynamic loader and shared libraries an ELF executable needs (empty when statically
/// linked or not ELF), as reported by the loader's `--list`.
pub fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>> {
    if !is_elf(exe) {
        return Ok(Vec::new());
    }
    let data = fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    let Some(interp) = elf_interpreter(&data) else {
        return Ok(Vec::new());
    };
    let out = Command::new(&interp)
        .arg("--list")
        .arg(exe)
        .output()
        .with_context(|| format!("running {} --list {}", interp.display(), exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "listing the shared libraries of {}: {} --list failed: {}{}",
            exe.display(),
            interp.display(),
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut libs = vec![interp];
    libs.extend(parse_ld_list(&text).with_context(|| format!("libraries of {}", exe.display()))?);
    Ok(libs)
}

/// Parse `ld.so --list` output into library paths.
fn parse_ld_list(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path_part = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("shared library {} not found", name.trim());
                }
                rest
            }
            None => line,
        };
        let path = path_part.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Writer for the `newc` ("070701") cpio format.
struct CpioWriter<W: Write> {
    w: W,
    ino: u32,
    offset: u64,
    rdev: (u32, u32),
}

impl<W: Write> CpioWriter<W> {
    fn new(w: W) -> Self {
        CpioWriter {
            w,
            ino: 1,
            offset: 0,
            rdev: (0, 0),
        }
    }

    fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.offset += b.len() as u64;
        self.w.write_all(b)
    }

    fn pad4(&mut self) -> std::io::Result<()> {
        let pad = (4 - (self.offset % 4) as usize) % 4;
        self.write(&[0u8; 3][..pad])
    }

    fn entry(&mut self, name: &str, mode: u32, data: &mut dyn Read, len: u64) -> Result<()> {
        if len > u32::MAX as u64 {
            bail!("{name} is too large for a cpio archive ({len} bytes)");
        }
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            len,
            0,
            0,
            self.rdev.0,
            self.rdev.1,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad4()?;
        let copied = std::io::copy(&mut data.take(len), &mut self.w)?;
        self.offset += copied;
        if copied != len {
            bail!("{name} changed size while archiving ({copied} of {len} bytes)");
        }
        self.pad4()?;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.entry("TRAILER!!!", 0, &mut std::io::empty(), 0)?;
        self.w.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loader_listing() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ld_list(text).unwrap();
        assert_eq!(
            libs,
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        let err = parse_ld_list("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(err.to_string().contains("libfoo.so.1 not found"), "{err}");
    }

    #[test]
    fn finds_interpreter_of_this_test_binary() {
        // This test binary is a real dynamically linked executable of the host.
        let exe = std::env::current_exe().unwrap();
        let data = fs::read(&exe).unwrap();
        let interp = elf_interpreter(&data).expect("test binary has PT_INTERP");
        assert!(interp.exists(), "{}", interp.display());
        let libs = shared_libraries(&exe).unwrap();
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
        assert!(elf_interpreter(
            b"not an elf file at all, just text........................................"
        )
        .is_none());
    }

    #[test]
    fn mirror_recreates_symlinks_and_cpio_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(d.join("usr/lib")).unwrap();
        fs::write(d.join("usr/lib/libx.so"), b"lib").unwrap();
        std::os::unix::fs::symlink("usr/lib", d.join("lib")).unwrap();
        let mut t = Tree::new();
        t.mirror(&d.join("lib/libx.so")).unwrap();
        assert!(matches!(
            t.entries.get(&d.join("lib")),
            Some(Entry::Symlink { .. })
        ));
        assert!(matches!(
            t.entries.get(&d.join("usr/lib/libx.so")),
            Some(Entry::File { .. })
        ));
        t.data(Path::new("/init"), "#!/bin/sh\n", 0o755);
        let cpio = d.join("out.cpio");
        t.write_cpio(&cpio).unwrap();
        let bytes = fs::read(&cpio).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("usr/lib/libx.so\0"));
        // Parents come before children, so the kernel can create them in order.
        let lib_dir = text
            .find(&format!(
                "{}\0",
                d.join("usr/lib")
                    .display()
                    .to_string()
                    .trim_start_matches('/')
            ))
            .unwrap();
        let lib_file = text.find("usr/lib/libx.so\0").unwrap();
        assert!(lib_dir < lib_file);
        // If cpio(1) is installed, it must list the archive without complaint.
        if Path::new("/usr/bin/cpio").exists() {
            let out = Command::new("cpio")
                .args(["-t", "--quiet"])
                .stdin(fs::File::open(&cpio).unwrap())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("usr/lib/libx.so"));
        }
    }
}
