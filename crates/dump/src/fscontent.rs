//! Content of lost superblocks (a tmpfs, ramfs, … whose every mount is unmounted or anonymous,
//! so its data exists only through the target's fds): what the target can reach through it —
//! each open file, and the whole tree under any directory fd, cwd, root or mount fd on it —
//! written to the image's `fs-N` files with modes, owners, timestamps, xattrs, symlinks, hard
//! links and holes (`SEEK_DATA`/`SEEK_HOLE`).
//!
//! Everything is read through crcli's own duplicates of the target's fds (reopened through
//! `/proc/self/fd/N`, with `O_NOATIME` where allowed, so access times stay as they were) and
//! streamed: file data in 1 MiB chunks, entries one by one. What stays in memory is one path
//! per inode with several links and one path per entry written (to skip what two fds reach).
//!
//! Directories above a reached file that no fd reaches (the root of a tmpfs of which only one
//! file is held open) cannot be read: they are written as directories with `ino` 0, which tells
//! the restore that their metadata is unknown (the fresh instance's own, from its mount options,
//! stays). Xattrs are read from regular files and directories only; sockets, FIFOs and device
//! nodes are recreated as nodes with their metadata.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crcli_image::{
    FsEntry, FsEntryKind, FsWriter, ImagePath, ImageWriter, OsBytes, Timestamp, Xattr,
};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::DumpError;
use crate::mounts::Mounts;

const CHUNK: usize = 1 << 20;

/// The walk of one lost superblock's content.
struct Walk<'w, 'i> {
    out: &'w mut FsWriter<'i>,
    dev: u64,
    written: HashSet<Vec<u8>>,
    links: HashMap<u64, Vec<u8>>,
    buf: Vec<u8>,
}

fn ts(secs: i64, nsecs: u64) -> Timestamp {
    Timestamp {
        secs,
        nsecs: nsecs as u32,
    }
}

fn path_bytes(p: &Path) -> Vec<u8> {
    let b = p.as_os_str().as_bytes();
    b.strip_prefix(b"/").unwrap_or(b).to_vec()
}

fn image_path(b: &[u8]) -> Result<ImagePath, DumpError> {
    ImagePath::new(b.to_vec()).map_err(|e| DumpError::Parse {
        what: format!("path {:?}", String::from_utf8_lossy(b)),
        detail: e.to_string(),
    })
}

fn sys(op: String) -> impl FnOnce(rustix::io::Errno) -> DumpError {
    DumpError::sys(op)
}

/// Opens `name` in `dir` for reading without following a last symlink, with `O_NOATIME`
/// when the kernel allows it.
fn open_read(dir: BorrowedFd<'_>, name: &Path, extra: OFlags) -> rustix::io::Result<OwnedFd> {
    let base = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | extra;
    match rustix::fs::openat(dir, name, base | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, base, Mode::empty()),
        other => other,
    }
}

impl Mounts {
    /// Writes the content of every lost superblock met so far into `image` (`fs-N.img`,
    /// `fs-N.data`). Call once, after every fd, cwd, root and mapping was located.
    pub(crate) fn dump_contents(&mut self, image: &mut ImageWriter) -> Result<(), DumpError> {
        let lost = self.lost.clone();
        let mut roots = std::mem::take(&mut self.content_roots);
        // Directories first, then by depth: a file under a directory already walked is skipped.
        roots.sort_by_key(|(_, p, fd)| {
            let dir = rustix::fs::fstat(fd)
                .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                .unwrap_or(false);
            (!dir, p.components().count())
        });
        for (mount, content, _) in lost {
            let mut out = image
                .fs_content(content)
                .map_err(|source| DumpError::Image {
                    op: format!("start filesystem content {}", content.0),
                    source,
                })?;
            let mut dev = None;
            let mut walk = Walk {
                out: &mut out,
                dev: 0,
                written: HashSet::new(),
                links: HashMap::new(),
                buf: vec![0u8; CHUNK],
            };
            for (_, path, fd) in roots.iter().filter(|(m, _, _)| *m == mount) {
                let st = rustix::fs::fstat(fd).map_err(sys(format!(
                    "fstat a file of lost filesystem content {}",
                    content.0
                )))?;
                walk.dev = *dev.get_or_insert(st.st_dev);
                walk.root(path, fd.as_fd())?;
            }
            if walk.written.is_empty() {
                walk.synthetic_dir(b"")?;
            }
            out.finish().map_err(|source| DumpError::Image {
                op: format!("finish filesystem content {}", content.0),
                source,
            })?;
        }
        Ok(())
    }
}

impl Walk<'_, '_> {
    fn add(&mut self, e: FsEntry) -> Result<(), DumpError> {
        let what = e.path.to_string();
        self.written.insert(e.path.as_bytes().to_vec());
        self.out.add(&e).map_err(|source| DumpError::Image {
            op: format!("filesystem entry {what}"),
            source,
        })
    }

    /// A directory whose metadata cannot be read (no fd reaches it): `ino` 0.
    fn synthetic_dir(&mut self, path: &[u8]) -> Result<(), DumpError> {
        if self.written.contains(path) {
            return Ok(());
        }
        self.add(FsEntry {
            path: image_path(path)?,
            kind: FsEntryKind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            atime: ts(0, 0),
            mtime: ts(0, 0),
            xattrs: Vec::new(),
            ino: 0,
        })
    }

    /// Dumps what `fd` (at `path` inside the filesystem) reaches: its ancestors as directories
    /// of unknown metadata if not written yet, then itself and, for a directory, its tree.
    fn root(&mut self, path: &Path, fd: BorrowedFd<'_>) -> Result<(), DumpError> {
        let bytes = path_bytes(path);
        if self.written.contains(&bytes) {
            return Ok(());
        }
        // Already inside a walked directory?
        let mut prefix = Vec::new();
        let comps: Vec<&[u8]> = bytes
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        if !comps.is_empty() {
            self.synthetic_dir(b"")?;
        }
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(c);
            self.synthetic_dir(&prefix)?;
        }
        // Reopen through /proc: the target's fd may be O_PATH or write-only.
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let st = rustix::fs::fstat(fd).map_err(sys(format!("fstat {}", path.display())))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        let extra = if ft == FileType::Directory {
            OFlags::DIRECTORY
        } else {
            OFlags::empty()
        };
        let reopened = if matches!(ft, FileType::Directory | FileType::RegularFile) {
            let cwd = rustix::fs::CWD;
            let base = OFlags::RDONLY | OFlags::CLOEXEC | extra;
            Some(
                match rustix::fs::openat(
                    cwd,
                    proc_path.as_str(),
                    base | OFlags::NOATIME,
                    Mode::empty(),
                ) {
                    Err(rustix::io::Errno::PERM) => {
                        rustix::fs::openat(cwd, proc_path.as_str(), base, Mode::empty())
                    }
                    other => other,
                }
                .map_err(sys(format!("reopen {} for reading", path.display())))?,
            )
        } else {
            None
        };
        self.entry(bytes, &st, reopened.as_ref().map(|f| f.as_fd()), None)
    }

    /// Dumps one file given its stat and (for directories and regular files) a readable fd;
    /// `symlink` is the target of a symlink.
    fn entry(
        &mut self,
        path: Vec<u8>,
        st: &rustix::fs::Stat,
        fd: Option<BorrowedFd<'_>>,
        symlink: Option<Vec<u8>>,
    ) -> Result<(), DumpError> {
        if self.written.contains(&path) {
            return Ok(());
        }
        let shown = String::from_utf8_lossy(&path).into_owned();
        let ft = FileType::from_raw_mode(st.st_mode);
        let xattrs = match (fd, ft) {
            (Some(fd), FileType::Directory | FileType::RegularFile) => xattrs(fd, &shown)?,
            _ => Vec::new(),
        };
        let mut e = FsEntry {
            path: image_path(&path)?,
            kind: FsEntryKind::Directory,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            atime: ts(st.st_atime, st.st_atime_nsec),
            mtime: ts(st.st_mtime, st.st_mtime_nsec),
            xattrs,
            ino: st.st_ino,
        };
        match ft {
            FileType::Directory => {
                self.add(e)?;
                let Some(fd) = fd else { return Ok(()) };
                self.tree(&path, fd)?;
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&st.st_ino) {
                        e.kind = FsEntryKind::HardLink {
                            target: image_path(first)?,
                        };
                        e.xattrs.clear();
                        return self.add(e);
                    }
                    self.links.insert(st.st_ino, path.clone());
                }
                let extents = match fd {
                    Some(fd) => self.data(fd, st.st_size as u64, &shown)?,
                    None => Vec::new(),
                };
                e.kind = FsEntryKind::Regular {
                    size: st.st_size as u64,
                    extents,
                };
                self.add(e)?;
            }
            FileType::Symlink => {
                let target = symlink.unwrap_or_default();
                e.kind = FsEntryKind::Symlink {
                    target: OsBytes::new(target).map_err(|err| DumpError::Parse {
                        what: format!("symlink {shown}"),
                        detail: err.to_string(),
                    })?,
                };
                self.add(e)?;
            }
            FileType::Fifo => {
                e.kind = FsEntryKind::Fifo;
                self.add(e)?;
            }
            FileType::CharacterDevice => {
                e.kind = FsEntryKind::CharDevice { rdev: st.st_rdev };
                self.add(e)?;
            }
            FileType::BlockDevice => {
                e.kind = FsEntryKind::BlockDevice { rdev: st.st_rdev };
                self.add(e)?;
            }
            FileType::Socket => {
                e.kind = FsEntryKind::Socket;
                self.add(e)?;
            }
            FileType::Unknown => {
                return Err(DumpError::Parse {
                    what: format!("file {shown} of a lost filesystem"),
                    detail: format!("unknown file type (mode {:o})", st.st_mode),
                })
            }
        }
        Ok(())
    }

    /// Every entry under directory `dir` (at `path`), depth first: parents before children.
    fn tree(&mut self, path: &[u8], dir: BorrowedFd<'_>) -> Result<(), DumpError> {
        let shown = String::from_utf8_lossy(path).into_owned();
        let listing = open_read(dir, Path::new("."), OFlags::DIRECTORY)
            .map_err(sys(format!("open directory {shown:?}")))?;
        let mut names = Vec::new();
        let d = rustix::fs::Dir::read_from(&listing)
            .map_err(sys(format!("read directory {shown:?}")))?;
        for ent in d {
            let ent = ent.map_err(sys(format!("read directory {shown:?}")))?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        names.sort();
        for name in names {
            let mut child = path.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(&name);
            let cname = Path::new(std::ffi::OsStr::from_bytes(&name));
            let st = rustix::fs::statat(dir, cname, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(sys(format!("stat {:?}", String::from_utf8_lossy(&child))))?;
            if st.st_dev != self.dev {
                // Another filesystem mounted inside (not in an unmounted tree's copy).
                continue;
            }
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    let fd = open_read(dir, cname, OFlags::DIRECTORY).map_err(sys(format!(
                        "open directory {:?}",
                        String::from_utf8_lossy(&child)
                    )))?;
                    self.entry(child, &st, Some(fd.as_fd()), None)?;
                }
                FileType::RegularFile => {
                    let fd = open_read(dir, cname, OFlags::empty())
                        .map_err(sys(format!("open {:?}", String::from_utf8_lossy(&child))))?;
                    self.entry(child, &st, Some(fd.as_fd()), None)?;
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(dir, cname, Vec::new()).map_err(sys(
                        format!("readlink {:?}", String::from_utf8_lossy(&child)),
                    ))?;
                    self.entry(child, &st, None, Some(target.into_bytes()))?;
                }
                _ => self.entry(child, &st, None, None)?,
            }
        }
        Ok(())
    }

    /// The data regions of a regular file (holes skipped), streamed into the content's data
    /// file.
    fn data(
        &mut self,
        fd: BorrowedFd<'_>,
        size: u64,
        shown: &str,
    ) -> Result<Vec<crcli_image::Extent>, DumpError> {
        let mut extents = Vec::new();
        let mut pos = 0u64;
        while pos < size {
            let data = match rustix::fs::seek(fd, rustix::fs::SeekFrom::Data(pos)) {
                Ok(d) => d,
                Err(rustix::io::Errno::NXIO) => break,
                Err(e) => return Err(sys(format!("SEEK_DATA in {shown:?}"))(e)),
            };
            let hole = rustix::fs::seek(fd, rustix::fs::SeekFrom::Hole(data))
                .map_err(sys(format!("SEEK_HOLE in {shown:?}")))?
                .min(size);
            let mut at = data;
            while at < hole {
                let want = ((hole - at) as usize).min(CHUNK);
                let n = rustix::io::pread(fd, &mut self.buf[..want], at)
                    .map_err(sys(format!("read {shown:?}")))?;
                if n == 0 {
                    break;
                }
                let mut e =
                    self.out
                        .add_data(at, &self.buf[..n])
                        .map_err(|source| DumpError::Image {
                            op: format!("data of {shown:?}"),
                            source,
                        })?;
                extents.append(&mut e);
                at += n as u64;
            }
            pos = hole.max(data + 1);
        }
        Ok(extents)
    }
}

/// The extended attributes of an open file.
fn xattrs(fd: BorrowedFd<'_>, shown: &str) -> Result<Vec<Xattr>, DumpError> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::flistxattr(fd, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(sys(format!("list the xattrs of {shown:?}"))(e)),
        }
        if names.len() > 1 << 20 {
            return Err(DumpError::Parse {
                what: format!("the xattrs of {shown:?}"),
                detail: "more than 1 MiB of names".to_owned(),
            });
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let cname = std::ffi::CString::new(name).map_err(|_| DumpError::Parse {
            what: format!("the xattrs of {shown:?}"),
            detail: "a name with a NUL byte".to_owned(),
        })?;
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::fgetxattr(fd, cname.as_c_str(), &mut value) {
                Ok(len) => break len,
                Err(rustix::io::Errno::RANGE) if value.len() < 1 << 16 => value.resize(1 << 16, 0),
                Err(e) => {
                    return Err(sys(format!(
                        "read xattr {} of {shown:?}",
                        String::from_utf8_lossy(name)
                    ))(e))
                }
            }
        };
        value.truncate(len);
        out.push(Xattr {
            name: OsBytes::new(name.to_vec()).map_err(|e| DumpError::Parse {
                what: format!("the xattrs of {shown:?}"),
                detail: e.to_string(),
            })?,
            value,
        });
    }
    Ok(out)
}
