//! The target's files: its fd table, cwd, root, executable and mapped files, as image
//! [`FileEntry`]s, with pipes (and the bytes buffered in them) and unlinked files (and their
//! content).
//!
//! crcli looks at each fd through its own duplicate (`pidfd_getfd`), which shares the target's
//! open file description and changes nothing in the target. Each file is tied to its mount by
//! `mounts` (attached in the target's mount namespace, or unmounted / anonymous with a rebuild
//! plan), FIFOs and unlinked files included. Whatever it cannot restore yet (sockets, eventfd,
//! epoll, timerfd, signalfd, inotify, memfd, namespace files, a file on a mount the kernel
//! cannot identify: without `STATMOUNT_BY_FD` an unmounted mount, or from outside the target's
//! mount namespace an anonymous clone, …) is refused with the pid, the fd and the reason, and
//! the mount namespaces when the target's is not crcli's.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crcli_image::file::MAX_PIPE_BUFFER;
use crcli_image::{
    Extent, FileEntry, FileId, FileKind, FileLocation, ImageWriter, PipeEnd, PipeEntry, PipeId,
    Timestamp,
};
use rustix::fs::{FileType, Mode, OFlags};

use crate::error::DumpError;
use crate::mounts::Mounts;
use crate::procfs::Proc;

/// Read buffer for unlinked file content (one image chunk).
const CHUNK: usize = 1 << 20;
const O_PATH: u32 = libc::O_PATH as u32;
const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const O_ACCMODE: u32 = libc::O_ACCMODE as u32;

/// One fd of the target, dumped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DumpedFd {
    pub fd: i32,
    pub file: FileId,
    pub cloexec: bool,
}

/// The files of the processes being dumped (one tree): open file descriptions shared by
/// several fds, in one process or several, are one entry; so are both ends of a pipe.
/// [`Files::switch_to`] moves on to the next process.
pub(crate) struct Files<'p> {
    proc: &'p Proc,
    pidfd: OwnedFd,
    pub mounts: Mounts,
    pub entries: Vec<FileEntry>,
    pub pipes: Vec<PipeEntry>,
    pipe_by_inode: HashMap<(u64, u64), PipeId>,
    /// Files opened by crcli for cwd, root, exe and mappings, one entry per inode.
    path_by_inode: HashMap<(u64, u64), FileId>,
    /// fds dumped so far (pid, fd, entry) by (dev, ino), to find shared open file
    /// descriptions (kcmp), in one process or across processes.
    seen: HashMap<(u64, u64), Vec<SeenFd>>,
}

/// An fd dumped so far: (pid, fd, its entry).
type SeenFd = (i32, i32, FileId);

fn timestamp(secs: i64, nsecs: u64) -> Timestamp {
    Timestamp {
        secs,
        nsecs: nsecs as u32,
    }
}

/// The type name of an fd crcli does not support, from its /proc link.
fn unsupported_kind(link: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(link);
    if text.starts_with("socket:") {
        return Some("socket".to_owned());
    }
    if let Some(name) = text.strip_prefix("anon_inode:") {
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let kind = match name {
            "eventpoll" => "epoll".to_owned(),
            other => other.to_owned(),
        };
        return Some(kind);
    }
    if text.starts_with("/memfd:") {
        return Some(format!("memfd ({})", text.trim_end_matches(" (deleted)")));
    }
    if !text.starts_with('/') && !text.starts_with("pipe:") {
        // Namespace files (`mnt:[…]`), pidfds on pidfs (`pidfd:[…]`), …
        return Some(format!("{text:?}"));
    }
    None
}

impl<'p> Files<'p> {
    /// Starts with the target's mount table.
    pub fn new(proc: &'p Proc) -> Result<Files<'p>, DumpError> {
        let pid = proc.pid;
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).ok_or(DumpError::BadTarget {
                pid,
                reason: "not a valid pid".into(),
            })?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(DumpError::sys(format!("pidfd_open pid {pid}")))?;
        Ok(Files {
            proc,
            pidfd,
            mounts: Mounts::load(pid)?,
            entries: Vec::new(),
            pipes: Vec::new(),
            pipe_by_inode: HashMap::new(),
            path_by_inode: HashMap::new(),
            seen: HashMap::new(),
        })
    }

    /// Goes on with another process of the same tree (same mount namespace): its fds are
    /// compared with every fd dumped so far.
    pub fn switch_to(&mut self, proc: &'p Proc) -> Result<(), DumpError> {
        let pid = proc.pid;
        self.pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).ok_or(DumpError::BadTarget {
                pid,
                reason: "not a valid pid".into(),
            })?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(DumpError::sys(format!("pidfd_open pid {pid}")))?;
        self.proc = proc;
        self.mounts.set_pid(pid);
        Ok(())
    }

    fn next_id(&self) -> FileId {
        FileId(self.entries.len() as u32 + 1)
    }

    /// Where a file crcli holds an fd of lives: its mount and path. `link` is the path /proc
    /// shows for it, `old_mnt_id` its mount (fdinfo).
    fn location(
        &mut self,
        fd: &OwnedFd,
        link: &[u8],
        old_mnt_id: u32,
        what: &dyn Fn() -> (i32, String),
    ) -> Result<FileLocation, DumpError> {
        let pid = self.proc.pid;
        let st = rustix::fs::fstat(fd)
            .map_err(DumpError::sys(format!("fstat {} of pid {pid}", what().1)))?;
        let path = link.strip_suffix(b" (deleted)").unwrap_or(link);
        let Some((mount, rel)) =
            self.mounts
                .locate(std::os::fd::AsFd::as_fd(fd), old_mnt_id, path, what().0)?
        else {
            let (fd_no, _) = what();
            let kind = self.why_no_mount(fd, old_mnt_id, path);
            return Err(if fd_no >= 0 {
                DumpError::UnsupportedFd {
                    pid,
                    fd: fd_no,
                    kind,
                }
            } else {
                DumpError::Unsupported {
                    pid,
                    what: format!("{}: {kind}", what().1),
                }
            });
        };
        Ok(FileLocation {
            mount,
            path: rel,
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            size: st.st_size as u64,
            mtime: timestamp(st.st_mtime, st.st_mtime_nsec),
        })
    }

    /// Says why the mount of a file is in no mount table the dump can use, as precisely as the
    /// kernel allows (crcli-mountinfo's `resolve_fd`).
    fn why_no_mount(&self, fd: &OwnedFd, old_mnt_id: u32, path: &[u8]) -> String {
        use crcli_mountinfo::Resolution;
        use crcli_sys::features::{Feature, Features};
        let at = format!(
            "mount {old_mnt_id}, path {:?}",
            String::from_utf8_lossy(path)
        );
        match crcli_mountinfo::resolve_fd(fd, &self.mounts.tables()) {
            Ok(Resolution::CannotTell { missing, .. }) => {
                let what = if missing == Feature::StatmountByFd {
                    "statmount(STATMOUNT_BY_FD)".to_owned()
                } else {
                    missing.to_string()
                };
                // Without BY_FD an anonymous mount is proven by cloning it, which the kernel
                // allows only from the namespace it was made in.
                let ns = if self.mounts.other_namespace() {
                    format!(" in {}", self.mounts.namespaces())
                } else {
                    String::new()
                };
                format!(
                    "a file on an unmounted or anonymous mount ({at}){ns} on kernel {}, which lacks {what} (Linux {}) to identify it,",
                    Features::current().kernel_release(),
                    missing.since()
                )
            }
            Ok(Resolution::Unmounted { .. }) => format!("a file on an unmounted mount ({at})"),
            Ok(Resolution::Anonymous { .. }) => format!("a file on an anonymous mount ({at})"),
            Ok(Resolution::Attached { .. }) if self.mounts.other_namespace() => format!(
                "a file on a mount of crcli's mount namespace or outside the process's root ({at}), not in the {}",
                self.mounts.namespaces()
            ),
            Ok(Resolution::Attached { .. }) => format!(
                "a file on a mount of another mount namespace or outside the process's root ({at})"
            ),
            Ok(Resolution::Internal { .. }) => format!("a file on a kernel-internal mount ({at})"),
            Ok(other) => format!("a file on a mount crcli cannot place ({at}: {other:?})"),
            Err(e) => format!(
                "a file on a mount that is in no mount table ({at}; resolving it failed: {e})"
            ),
        }
    }

    /// Dumps every fd of the target, in fd order. Unlinked files' content goes to `image`.
    pub fn dump_fds(&mut self, image: &mut ImageWriter) -> Result<Vec<DumpedFd>, DumpError> {
        let pid = self.proc.pid;
        let mut out = Vec::new();
        for fd in self.proc.fds()? {
            out.push(self.dump_fd(fd, image)?);
        }
        tracing::debug!(
            "pid {pid}: {} fds, {} open file descriptions, {} pipes",
            out.len(),
            self.entries.len(),
            self.pipes.len()
        );
        Ok(out)
    }

    fn dump_fd(&mut self, fd: i32, image: &mut ImageWriter) -> Result<DumpedFd, DumpError> {
        let pid = self.proc.pid;
        let link = self.proc.readlink(&format!("fd/{fd}"))?;
        if let Some(kind) = unsupported_kind(&link) {
            return Err(DumpError::UnsupportedFd { pid, fd, kind });
        }
        let info = self.proc.fdinfo(fd)?;
        let cloexec = info.flags & O_CLOEXEC != 0;
        let flags = info.flags & !O_CLOEXEC;
        let dup = rustix::process::pidfd_getfd(
            &self.pidfd,
            fd,
            rustix::process::PidfdGetfdFlags::empty(),
        )
        .map_err(DumpError::sys(format!("pidfd_getfd fd {fd} of pid {pid}")))?;
        let st = rustix::fs::fstat(&dup)
            .map_err(DumpError::sys(format!("fstat fd {fd} of pid {pid}")))?;
        let inode = (st.st_dev, st.st_ino);

        // Another fd sharing this open file description (dup, or inherited across fork)?
        for (other_pid, other, id) in self.seen.get(&inode).map(Vec::as_slice).unwrap_or(&[]) {
            if crcli_sys::task::kcmp_same_file(pid, *other_pid, fd, *other).map_err(
                DumpError::sys(format!(
                    "kcmp fd {fd} of pid {pid} and fd {other} of pid {other_pid}"
                )),
            )? {
                return Ok(DumpedFd {
                    fd,
                    file: *id,
                    cloexec,
                });
            }
        }

        let file_type = FileType::from_raw_mode(st.st_mode);
        let what = move || (fd, format!("fd {fd}"));
        let kind = if flags & O_PATH != 0 {
            let location = self.location(&dup, &link, info.mnt_id, &what)?;
            if file_type == FileType::Symlink {
                FileKind::Symlink(location)
            } else {
                FileKind::Path(location)
            }
        } else {
            match file_type {
                FileType::RegularFile => {
                    let location = self.location(&dup, &link, info.mnt_id, &what)?;
                    if st.st_nlink == 0 {
                        let extents = self.dump_unlinked(fd, image)?;
                        FileKind::Unlinked { location, extents }
                    } else {
                        FileKind::Regular(location)
                    }
                }
                FileType::Directory => {
                    FileKind::Directory(self.location(&dup, &link, info.mnt_id, &what)?)
                }
                FileType::CharacterDevice => FileKind::CharDevice {
                    location: self.location(&dup, &link, info.mnt_id, &what)?,
                    rdev: st.st_rdev,
                },
                FileType::BlockDevice => FileKind::BlockDevice {
                    location: self.location(&dup, &link, info.mnt_id, &what)?,
                    rdev: st.st_rdev,
                },
                FileType::Fifo if link.starts_with(b"pipe:") => {
                    let pipe = self.pipe(fd, &dup, flags, inode)?;
                    let end = if flags & O_ACCMODE == libc::O_WRONLY as u32 {
                        PipeEnd::Write
                    } else {
                        PipeEnd::Read
                    };
                    FileKind::Pipe { pipe, end }
                }
                FileType::Fifo => {
                    let location = self.location(&dup, &link, info.mnt_id, &what)?;
                    let pipe = self.pipe(fd, &dup, flags, inode)?;
                    FileKind::Fifo { location, pipe }
                }
                FileType::Socket => {
                    return Err(DumpError::UnsupportedFd {
                        pid,
                        fd,
                        kind: "socket".to_owned(),
                    })
                }
                _ => {
                    return Err(DumpError::UnsupportedFd {
                        pid,
                        fd,
                        kind: format!(
                            "a file of mode {:o} ({:?})",
                            st.st_mode,
                            String::from_utf8_lossy(&link)
                        ),
                    })
                }
            }
        };
        let id = self.next_id();
        self.entries.push(FileEntry {
            id,
            flags,
            pos: info.pos,
            kind,
        });
        self.seen.entry(inode).or_default().push((pid, fd, id));
        Ok(DumpedFd {
            fd,
            file: id,
            cloexec,
        })
    }

    /// The pipe behind a pipe or FIFO fd; the first time, its buffered bytes are copied
    /// (tee(2) into a fresh pipe: nothing is consumed).
    fn pipe(
        &mut self,
        fd: i32,
        dup: &OwnedFd,
        flags: u32,
        inode: (u64, u64),
    ) -> Result<PipeId, DumpError> {
        if let Some(id) = self.pipe_by_inode.get(&inode) {
            return Ok(*id);
        }
        let pid = self.proc.pid;
        let capacity = rustix::pipe::fcntl_getpipe_size(dup)
            .map_err(DumpError::sys(format!("F_GETPIPE_SZ fd {fd} of pid {pid}")))?;
        // tee needs the read side: use the fd itself if readable, else open the pipe again for
        // reading through /proc (a new reader, closed at once; the data stays).
        let reopened;
        let reader = if flags & O_ACCMODE == libc::O_WRONLY as u32 {
            reopened = rustix::fs::open(
                self.proc.path(&format!("fd/{fd}")),
                OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(DumpError::sys(format!(
                "open the read side of the pipe of fd {fd} of pid {pid}"
            )))?;
            reopened.as_fd()
        } else {
            dup.as_fd()
        };
        let buffered = peek_pipe(reader, capacity).map_err(DumpError::sys(format!(
            "copy the data buffered in the pipe of fd {fd} of pid {pid}"
        )))?;
        if buffered.len() > MAX_PIPE_BUFFER {
            return Err(DumpError::UnsupportedFd {
                pid,
                fd,
                kind: format!(
                    "a pipe holding {} bytes (more than {MAX_PIPE_BUFFER})",
                    buffered.len()
                ),
            });
        }
        let id = PipeId(self.pipes.len() as u32 + 1);
        self.pipes.push(PipeEntry {
            id,
            capacity: capacity as u32,
            buffered,
        });
        self.pipe_by_inode.insert(inode, id);
        Ok(id)
    }

    /// The content of an unlinked file, data regions only (holes are skipped), streamed into
    /// the image in chunks. Read through a new open of the file, so the target's file position
    /// is not touched.
    fn dump_unlinked(
        &mut self,
        fd: i32,
        image: &mut ImageWriter,
    ) -> Result<Vec<Extent>, DumpError> {
        let pid = self.proc.pid;
        let file = rustix::fs::open(
            self.proc.path(&format!("fd/{fd}")),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(DumpError::sys(format!(
            "open unlinked file of fd {fd} of pid {pid} for reading"
        )))?;
        let size = rustix::fs::fstat(&file)
            .map_err(DumpError::sys(format!("fstat fd {fd} of pid {pid}")))?
            .st_size as u64;
        let mut extents = Vec::new();
        let mut buf = vec![0u8; CHUNK];
        let mut pos = 0u64;
        while pos < size {
            let data = match rustix::fs::seek(&file, rustix::fs::SeekFrom::Data(pos)) {
                Ok(d) => d,
                Err(rustix::io::Errno::NXIO) => break,
                Err(e) => {
                    return Err(DumpError::sys(format!(
                        "SEEK_DATA in unlinked file of fd {fd} of pid {pid}"
                    ))(e))
                }
            };
            let hole = rustix::fs::seek(&file, rustix::fs::SeekFrom::Hole(data))
                .map_err(DumpError::sys(format!(
                    "SEEK_HOLE in unlinked file of fd {fd} of pid {pid}"
                )))?
                .min(size);
            let mut at = data;
            while at < hole {
                let want = ((hole - at) as usize).min(CHUNK);
                let n = rustix::io::pread(&file, &mut buf[..want], at).map_err(DumpError::sys(
                    format!("read unlinked file of fd {fd} of pid {pid}"),
                ))?;
                if n == 0 {
                    break;
                }
                let mut e =
                    image
                        .add_unlinked_data(at, &buf[..n])
                        .map_err(|source| DumpError::Image {
                            op: format!("content of unlinked fd {fd}"),
                            source,
                        })?;
                extents.append(&mut e);
                at += n as u64;
            }
            pos = hole.max(data + 1);
        }
        Ok(extents)
    }

    /// A file entry for a path crcli opened itself (`/proc/PID/cwd`, `root`, `exe`,
    /// `map_files/…`): one entry per inode, opened with `flags`.
    pub fn path_entry(
        &mut self,
        what: &str,
        file: OwnedFd,
        link: &[u8],
        flags: u32,
        directory: bool,
    ) -> Result<FileId, DumpError> {
        let pid = self.proc.pid;
        let st = rustix::fs::fstat(&file)
            .map_err(DumpError::sys(format!("fstat {what} of pid {pid}")))?;
        if let Some(id) = self.path_by_inode.get(&(st.st_dev, st.st_ino)) {
            return Ok(*id);
        }
        let old_mnt_id = crcli_sys::statx::fstatx_mnt_id(&file)
            .map_err(DumpError::sys(format!(
                "statx mount id of {what} of pid {pid}"
            )))?
            .ok_or_else(|| DumpError::Unsupported {
                pid,
                what: "a kernel without STATX_MNT_ID".to_owned(),
            })? as u32;
        if link.ends_with(b" (deleted)") {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "{what}: a deleted file ({:?})",
                    String::from_utf8_lossy(link)
                ),
            });
        }
        let label = what.to_owned();
        let describe = move || (-1, label.clone());
        let location = self.location(&file, link, old_mnt_id, &describe)?;
        let id = self.next_id();
        let kind = if directory {
            FileKind::Directory(location)
        } else {
            FileKind::Regular(location)
        };
        self.entries.push(FileEntry {
            id,
            flags,
            pos: 0,
            kind,
        });
        self.path_by_inode.insert((st.st_dev, st.st_ino), id);
        Ok(id)
    }

    /// Opens `/proc/PID/<name>` (cwd, root, exe, map_files/…) with `flags` and makes a file
    /// entry of it (see [`Files::path_entry`]).
    pub fn proc_entry(
        &mut self,
        name: &str,
        open_flags: OFlags,
        entry_flags: u32,
        directory: bool,
    ) -> Result<FileId, DumpError> {
        let pid = self.proc.pid;
        let link = self.proc.readlink(name)?;
        let file = rustix::fs::open(
            self.proc.path(name),
            open_flags | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(DumpError::sys(format!("open /proc/{pid}/{name}")))?;
        self.path_entry(name, file, &link, entry_flags, directory)
    }
}

/// Copies what is buffered in a pipe without consuming it: tee(2) into a fresh pipe as large as
/// the source, then read that.
fn peek_pipe(
    reader: std::os::fd::BorrowedFd<'_>,
    capacity: usize,
) -> Result<Vec<u8>, rustix::io::Errno> {
    let (r, w) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )?;
    rustix::pipe::fcntl_setpipe_size(&w, capacity)?;
    let n = match rustix::pipe::tee(reader, &w, capacity, rustix::pipe::SpliceFlags::NONBLOCK) {
        Ok(n) => n,
        Err(rustix::io::Errno::AGAIN) => 0,
        Err(e) => return Err(e),
    };
    let mut out = vec![0u8; n];
    let mut done = 0;
    while done < n {
        let got = rustix::io::read(&r, &mut out[done..])?;
        if got == 0 {
            break;
        }
        done += got;
    }
    out.truncate(done);
    Ok(out)
}

/// The bytes of an `OsStr` path (for links read by other modules).
#[allow(dead_code)]
pub(crate) fn os_bytes(p: &std::path::Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::unsupported_kind;

    #[test]
    fn unsupported_fd_kinds() {
        assert_eq!(
            unsupported_kind(b"socket:[1234]").as_deref(),
            Some("socket")
        );
        assert_eq!(
            unsupported_kind(b"anon_inode:[eventfd]").as_deref(),
            Some("eventfd")
        );
        assert_eq!(
            unsupported_kind(b"anon_inode:[eventpoll]").as_deref(),
            Some("epoll")
        );
        assert_eq!(
            unsupported_kind(b"anon_inode:[timerfd]").as_deref(),
            Some("timerfd")
        );
        assert_eq!(
            unsupported_kind(b"anon_inode:[signalfd]").as_deref(),
            Some("signalfd")
        );
        assert_eq!(
            unsupported_kind(b"anon_inode:inotify").as_deref(),
            Some("inotify")
        );
        assert_eq!(
            unsupported_kind(b"/memfd:x (deleted)").as_deref(),
            Some("memfd (/memfd:x)")
        );
        assert_eq!(
            unsupported_kind(b"mnt:[4026531841]").as_deref(),
            Some("\"mnt:[4026531841]\"")
        );
        assert_eq!(unsupported_kind(b"pipe:[77]"), None);
        assert_eq!(unsupported_kind(b"/tmp/file"), None);
    }
}
