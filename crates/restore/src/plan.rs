//! Validation and planning: turns the image's entries into a [`Plan`] of what the child opens and
//! sets up, checking everything that can be checked before anything is created (a supported
//! process shape, mounts that can be reached, files that are still the files that were dumped,
//! sane addresses).

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crcli_image::process::{PROT_WRITE, RLIM_NLIMITS};
use crcli_image::{
    FileEntry, FileId, FileKind, FileLocation, Image, MountKind, PipeEnd, PipeId, Process,
    VmaBacking,
};

use crate::error::RestoreError;
use crate::mounts::HeldOpen;
use crate::RestoreOptions;

/// The highest user-space address of x86_64 with 4-level paging (`TASK_SIZE_MAX`).
pub(crate) const TASK_SIZE: u64 = 0x7fff_ffff_f000;
/// The address of `[vsyscall]`.
pub(crate) const VSYSCALL_START: u64 = 0xffff_ffff_ff60_0000;

/// One open file description the child opens.
#[derive(Debug, Clone)]
pub(crate) enum Open {
    /// Reopen a path (regular file, directory, O_PATH, symlink, device).
    Path {
        path: PathBuf,
        flags: u32,
        /// Position to seek to (`None`: leave it).
        pos: Option<u64>,
    },
    /// Open a FIFO; `pipe` indexes [`Plan::pipes`].
    Fifo {
        path: PathBuf,
        flags: u32,
        pipe: usize,
    },
    /// One end of an anonymous pipe; `pipe` indexes [`Plan::pipes`].
    Pipe {
        pipe: usize,
        end: PipeEnd,
        flags: u32,
    },
    /// Recreate an unlinked file from its content, open it, unlink it again.
    Unlinked {
        path: PathBuf,
        flags: u32,
        pos: u64,
        mode: u32,
        size: u64,
        data: Vec<(u64, Vec<u8>)>,
    },
    /// `--shell-job`: take crcli's own fd of this number (a terminal).
    Inherit { fd: i32 },
    /// A file on an unmounted or anonymous mount, opened by crcli through the rebuilt mount
    /// (`mounts`); `held` indexes [`Plan::held`].
    Held { held: usize },
}

/// One pipe (anonymous or a FIFO's buffer) to rebuild.
#[derive(Debug, Clone)]
pub(crate) struct PipePlan {
    pub(crate) capacity: u32,
    pub(crate) buffered: Vec<u8>,
}

/// One fd number of the process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) fd: i32,
    /// Index into [`Plan::opens`].
    pub(crate) open: usize,
    pub(crate) cloexec: bool,
}

/// A file the child opens for the tracer (file-backed mappings, the exe link): not one of the
/// process's fds, closed again before the process runs.
#[derive(Debug, Clone)]
pub(crate) struct AuxFile {
    pub(crate) path: PathBuf,
    pub(crate) writable: bool,
    /// On an unmounted or anonymous mount: opened by crcli, index into [`Plan::held`].
    pub(crate) held: Option<usize>,
}

/// Whether the restored process leads a session or a process group of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionRole {
    /// `setsid()`: it was the leader of its session.
    SessionLeader,
    /// `setpgid(0, 0)`: it led its process group (in someone else's session).
    GroupLeader,
    /// It stays in crcli's session and process group.
    Member,
}

/// Everything the child does to itself, and what the tracer needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) opens: Vec<Open>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) pipes: Vec<PipePlan>,
    pub(crate) aux_files: Vec<AuxFile>,
    /// Index in `aux_files` of each mapped file.
    pub(crate) aux_of_file: BTreeMap<FileId, usize>,
    /// Index in `aux_files` of the executable.
    pub(crate) exe_aux: Option<usize>,
    pub(crate) cwd: PathBuf,
    pub(crate) root: Option<PathBuf>,
    pub(crate) umask: u32,
    /// (resource, soft, hard).
    pub(crate) rlimits: Vec<(u32, u64, u64)>,
    pub(crate) personality: u32,
    /// The process was a session leader (`setsid`) or a process-group leader (`setpgid`).
    pub(crate) session: SessionRole,
    /// The lowest fd number above every fd of the process.
    pub(crate) high_fd: i32,
    /// Files on unmounted and anonymous mounts, which crcli opens through the rebuilt mounts
    /// and hands to the child.
    pub(crate) held: Vec<HeldOpen>,
    /// The cwd is on an unmounted or anonymous mount: index into `held` (`fchdir`).
    pub(crate) cwd_held: Option<usize>,
    /// The root likewise (`fchdir` + `chroot(".")`).
    pub(crate) root_held: Option<usize>,
    /// Shared anonymous objects that several processes of a tree map: crcli made each one
    /// (with its content) before the processes, which inherit it as this fd (at or above
    /// `high_fd`); the tracer maps the process's views of the ones it maps from the fd.
    pub(crate) shared_fds: BTreeMap<crcli_image::PagesId, i32>,
}

/// Where a file is: a path in crcli's view (attached mounts) or a held open on a rebuilt mount.
enum Place {
    Path(PathBuf),
    Mount(crcli_image::MountId, PathBuf),
}

/// Places a file: attached mounts by path ([`resolve`]), unmounted and anonymous ones through
/// their rebuilt mount.
fn place(loc: &FileLocation, image: &Image, what: &str) -> Result<Place, RestoreError> {
    let mount = image
        .mount(loc.mount)
        .ok_or_else(|| invalid(format!("{what}: mount {} is not in the image", loc.mount)))?;
    if mount.kind == MountKind::Attached {
        return resolve(loc, image, what).map(Place::Path);
    }
    Ok(Place::Mount(mount.id, PathBuf::from(loc.path.as_path())))
}

/// Adds a held open for a file on a rebuilt mount; returns its index.
#[allow(clippy::too_many_arguments)]
fn hold(
    held: &mut Vec<HeldOpen>,
    mount: crcli_image::MountId,
    rel: PathBuf,
    flags: u32,
    pos: Option<u64>,
    loc: &FileLocation,
    strict: bool,
    append: bool,
    mount_fd: bool,
    what: String,
) -> usize {
    held.push(HeldOpen {
        mount,
        rel,
        flags,
        pos,
        loc: loc.clone(),
        append,
        strict,
        mount_fd,
        what,
        special: crate::mounts::Special::None,
    });
    held.len() - 1
}

fn unsupported(msg: impl Into<String>) -> RestoreError {
    RestoreError::Unsupported(msg.into())
}

fn invalid(msg: impl Into<String>) -> RestoreError {
    RestoreError::Invalid(msg.into())
}

/// Where a file lives in crcli's own view: the mountpoint of its (attached) mount, joined with
/// its path relative to the mount's root.
pub(crate) fn resolve(
    loc: &FileLocation,
    image: &Image,
    what: &str,
) -> Result<PathBuf, RestoreError> {
    let mount = image
        .mount(loc.mount)
        .ok_or_else(|| invalid(format!("{what}: mount {} is not in the image", loc.mount)))?;
    let mountpoint = match (mount.kind, &mount.mountpoint) {
        (MountKind::Attached, Some(mp)) => mp,
        (kind, _) => {
            return Err(unsupported(format!(
                "{what} (path {}) is on a {} mount (id {}, {}); it has no path in crcli's view",
                loc.path,
                match kind {
                    MountKind::Attached => "attached but unplaced",
                    MountKind::Unmounted => "unmounted",
                    MountKind::Anonymous => "anonymous",
                },
                mount.unique_id,
                mount.fs_type
            )))
        }
    };
    let mut path = PathBuf::from(mountpoint.as_path());
    if !loc.path.as_bytes().is_empty() {
        path.push(loc.path.as_path());
    }
    Ok(path)
}

/// [`resolve`] for kinds of file that are not restored on rebuilt mounts yet.
/// Whether the file lives on an unmounted or anonymous mount (rebuilt by `mounts`).
fn on_rebuilt_mount(loc: &FileLocation, image: &Image) -> bool {
    image
        .mount(loc.mount)
        .is_some_and(|m| m.kind != MountKind::Attached)
}

fn resolve_attached(
    loc: &FileLocation,
    image: &Image,
    what: &str,
    kind: &str,
) -> Result<PathBuf, RestoreError> {
    match place(loc, image, what)? {
        Place::Path(p) => Ok(p),
        Place::Mount(mount, _) => Err(unsupported(format!(
            "{what} is {kind} on unmounted or anonymous mount {mount}; only regular files, directories, O_PATH fds, symlinks and devices are restored on such mounts yet"
        ))),
    }
}

fn mode_type(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

/// Checks that `path` is still the kind of file the image says, and for regular files that its
/// size and modification time are unchanged. A file the process only appends to (`append`:
/// opened with `O_APPEND`, e.g. a log that a `--leave-running` original kept writing) may have
/// grown.
fn check_file(
    path: &Path,
    loc: &FileLocation,
    kind: &FileKind,
    append: bool,
) -> Result<(), RestoreError> {
    let mismatch = |problem: String| RestoreError::FileMismatch {
        path: path.to_path_buf(),
        problem,
    };
    let meta =
        std::fs::symlink_metadata(path).map_err(|e| mismatch(format!("stat failed: {e}")))?;
    if mode_type(meta.mode()) != mode_type(loc.mode) {
        return Err(mismatch(format!(
            "file type changed since the dump (mode {:o}, was {:o})",
            meta.mode(),
            loc.mode
        )));
    }
    match kind {
        FileKind::Regular(_) if append && meta.size() < loc.size => {
            return Err(mismatch(format!(
                "shrank since the dump ({} bytes, was {})",
                meta.size(),
                loc.size
            )));
        }
        FileKind::Regular(_) if append => {}
        FileKind::Regular(_) => {
            if meta.size() != loc.size {
                return Err(mismatch(format!(
                    "size changed since the dump ({} bytes, was {})",
                    meta.size(),
                    loc.size
                )));
            }
            if meta.mtime() != loc.mtime.secs || meta.mtime_nsec() != i64::from(loc.mtime.nsecs) {
                return Err(mismatch(format!(
                    "modified since the dump (mtime {}.{:09}, was {}.{:09})",
                    meta.mtime(),
                    meta.mtime_nsec(),
                    loc.mtime.secs,
                    loc.mtime.nsecs
                )));
            }
        }
        FileKind::CharDevice { rdev, .. } | FileKind::BlockDevice { rdev, .. }
            if meta.rdev() != *rdev =>
        {
            return Err(mismatch(format!(
                "device number changed since the dump ({:#x}, was {:#x})",
                meta.rdev(),
                rdev
            )));
        }
        FileKind::Fifo { .. } if !meta.file_type().is_fifo() => {
            return Err(mismatch("not a FIFO any more".into()));
        }
        _ => {}
    }
    Ok(())
}

/// Whether a character device is a terminal (pty slaves 136-143, /dev/tty*, /dev/console).
fn is_tty_rdev(rdev: u64) -> bool {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    matches!(major, 4 | 5 | 136..=143)
}

/// Checks the image for one process and plans its restore. Touches nothing.
pub(crate) fn plan(
    image: &Image,
    p: &Process,
    opts: &RestoreOptions,
) -> Result<Plan, RestoreError> {
    crate::threads::check(p)?;
    if p.sigactions.len() != crcli_image::process::NSIG {
        return Err(invalid(format!(
            "process {}: {} signal dispositions, expected 64",
            p.pid,
            p.sigactions.len()
        )));
    }
    if p.rlimits.len() > RLIM_NLIMITS {
        return Err(invalid(format!(
            "process {}: {} resource limits",
            p.pid,
            p.rlimits.len()
        )));
    }
    if p.comm.as_bytes().len() > 16 {
        return Err(invalid(format!(
            "process {}: name longer than 16 bytes",
            p.pid
        )));
    }
    check_vmas(p)?;

    let mut plan = Plan {
        opens: Vec::new(),
        slots: Vec::new(),
        pipes: Vec::new(),
        aux_files: Vec::new(),
        aux_of_file: BTreeMap::new(),
        exe_aux: None,
        cwd: PathBuf::from("/"),
        root: None,
        umask: p.umask & 0o777,
        rlimits: p
            .rlimits
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32, r.cur, r.max))
            .collect(),
        personality: p.personality,
        session: if opts.shell_job {
            // A shell job stays in the shell's session and process group, as in CRIU.
            SessionRole::Member
        } else if p.sid == p.pid {
            SessionRole::SessionLeader
        } else if p.pgid == p.pid {
            SessionRole::GroupLeader
        } else {
            SessionRole::Member
        },
        high_fd: 0,
        held: Vec::new(),
        shared_fds: BTreeMap::new(),
        cwd_held: None,
        root_held: None,
    };

    // Fds: one Open per open file description.
    let mut open_of_file: BTreeMap<FileId, usize> = BTreeMap::new();
    let mut pipe_index: BTreeMap<PipeId, usize> = BTreeMap::new();
    let mut last_fd: i64 = -1;
    for fd in &p.fds {
        if i64::from(fd.fd) <= last_fd {
            return Err(invalid(format!(
                "process {}: fd table not sorted at fd {}",
                p.pid, fd.fd
            )));
        }
        if fd.fd > i32::MAX as u32 - 64 {
            return Err(invalid(format!(
                "process {}: fd number {} out of range",
                p.pid, fd.fd
            )));
        }
        last_fd = i64::from(fd.fd);
        let open = match open_of_file.get(&fd.file) {
            Some(&i) => i,
            None => {
                let file = image.file(fd.file).ok_or_else(|| {
                    invalid(format!(
                        "fd {} of process {}: file {} is not in the image",
                        fd.fd, p.pid, fd.file
                    ))
                })?;
                let open = plan_open(
                    image,
                    p,
                    file,
                    fd.fd,
                    opts,
                    &mut plan.pipes,
                    &mut pipe_index,
                    &mut plan.held,
                )?;
                plan.opens.push(open);
                open_of_file.insert(fd.file, plan.opens.len() - 1);
                plan.opens.len() - 1
            }
        };
        plan.slots.push(Slot {
            fd: fd.fd as i32,
            open,
            cloexec: fd.cloexec,
        });
    }
    plan.high_fd = (last_fd + 1).max(3) as i32;
    warn_one_ended_pipes(image, p);

    // cwd and root.
    let dir_path = |id: FileId, what: &str| -> Result<Place, RestoreError> {
        let file = image.file(id).ok_or_else(|| {
            invalid(format!(
                "the {what} of process {} (file {id}) is not in the image",
                p.pid
            ))
        })?;
        match &file.kind {
            FileKind::Directory(loc) | FileKind::Path(loc) => {
                match place(loc, image, &format!("the {what}"))? {
                    Place::Path(path) => {
                        check_file(&path, loc, &file.kind, false)?;
                        Ok(Place::Path(path))
                    }
                    held => Ok(held),
                }
            }
            other => Err(invalid(format!(
                "the {what} of process {} is not a directory ({other:?})",
                p.pid
            ))),
        }
    };
    let dir_loc = |id: FileId| match image.file(id).map(|f| &f.kind) {
        Some(FileKind::Directory(loc) | FileKind::Path(loc)) => Some(loc.clone()),
        _ => None,
    };
    match dir_path(p.cwd, "current directory")? {
        Place::Path(path) => plan.cwd = path,
        Place::Mount(mount, rel) => {
            let loc = dir_loc(p.cwd).expect("checked above");
            plan.cwd_held = Some(hold(
                &mut plan.held,
                mount,
                rel,
                (libc::O_PATH | libc::O_DIRECTORY) as u32,
                None,
                &loc,
                false,
                false,
                false,
                format!("the current directory of process {}", p.pid),
            ));
        }
    }
    match dir_path(p.root, "root directory")? {
        Place::Path(root) => {
            if root != Path::new("/") {
                plan.root = Some(root);
            }
        }
        Place::Mount(mount, rel) => {
            let loc = dir_loc(p.root).expect("checked above");
            plan.root_held = Some(hold(
                &mut plan.held,
                mount,
                rel,
                (libc::O_PATH | libc::O_DIRECTORY) as u32,
                None,
                &loc,
                false,
                false,
                false,
                format!("the root directory of process {}", p.pid),
            ));
        }
    }

    // Files the tracer needs: mapped files and the executable.
    let add_aux =
        |plan: &mut Plan, id: FileId, writable: bool, what: &str| -> Result<usize, RestoreError> {
            if let Some(&i) = plan.aux_of_file.get(&id) {
                plan.aux_files[i].writable |= writable;
                return Ok(i);
            }
            let file = image
                .file(id)
                .ok_or_else(|| invalid(format!("{what}: file {id} is not in the image")))?;
            let loc = match &file.kind {
                FileKind::Regular(loc)
                | FileKind::CharDevice { location: loc, .. }
                | FileKind::BlockDevice { location: loc, .. } => loc,
                other => {
                    return Err(unsupported(format!(
                        "{what}: mapping this kind of file ({}) is not supported yet",
                        kind_name(other)
                    )))
                }
            };
            match place(loc, image, what)? {
                Place::Path(path) => {
                    check_file(&path, loc, &file.kind, false)?;
                    plan.aux_files.push(AuxFile {
                        path,
                        writable,
                        held: None,
                    });
                }
                Place::Mount(mount, rel) => {
                    let h = hold(
                        &mut plan.held,
                        mount,
                        rel.clone(),
                        libc::O_RDONLY as u32,
                        None,
                        loc,
                        matches!(file.kind, FileKind::Regular(_)),
                        false,
                        false,
                        what.to_owned(),
                    );
                    plan.aux_files.push(AuxFile {
                        path: rel,
                        writable,
                        held: Some(h),
                    });
                }
            }
            plan.aux_of_file.insert(id, plan.aux_files.len() - 1);
            Ok(plan.aux_files.len() - 1)
        };
    for vma in &p.vmas {
        match &vma.backing {
            VmaBacking::File { file, .. } => {
                let shared_writable =
                    vma.map_flags & libc::MAP_SHARED as u32 != 0 && vma.prot & PROT_WRITE != 0;
                add_aux(
                    &mut plan,
                    *file,
                    shared_writable,
                    &format!("the mapping at {:#x}", vma.start),
                )?;
            }
            VmaBacking::SharedAnonymous {
                content,
                size,
                offset,
            } => {
                let bad = |why: &str| {
                    invalid(format!(
                        "the shared anonymous mapping at {:#x} (object {content}): {why}",
                        vma.start
                    ))
                };
                let page = crcli_image::PAGE_SIZE;
                if offset % page != 0 || size % page != 0 {
                    return Err(bad("offset or size not page aligned"));
                }
                if offset
                    .checked_add(vma.end - vma.start)
                    .is_none_or(|end| end > *size)
                {
                    return Err(bad("reaches past the end of its object"));
                }
                let disagree = p.vmas.iter().any(|v| {
                    matches!(&v.backing, VmaBacking::SharedAnonymous { content: c, size: s, .. } if c == content && s != size)
                });
                if disagree {
                    return Err(bad("its views disagree about the object's size"));
                }
            }
            _ => {}
        }
    }
    if let Some(exe) = p.mm.exe_file {
        plan.exe_aux = Some(add_aux(&mut plan, exe, false, "the executable")?);
    } else if !p.mm.exe_path.as_bytes().is_empty() {
        let path = PathBuf::from(p.mm.exe_path.as_path());
        if path.exists() {
            plan.aux_files.push(AuxFile {
                path,
                writable: false,
                held: None,
            });
            plan.exe_aux = Some(plan.aux_files.len() - 1);
        }
    }
    // Mapped files on rebuilt mounts: opened read-write when a shared writable mapping needs it.
    for aux in &plan.aux_files {
        if let (Some(h), true) = (aux.held, aux.writable) {
            plan.held[h].flags = libc::O_RDWR as u32;
        }
    }
    // Every rebuilt mount must be rebuildable here; nothing is created before this is known.
    let mut checked = std::collections::BTreeSet::new();
    for h in &plan.held {
        if checked.insert(h.mount) {
            let e = image
                .mount(h.mount)
                .ok_or_else(|| invalid(format!("mount {} is not in the image", h.mount)))?;
            crate::mounts::check(e, image)?;
        }
    }
    Ok(plan)
}

fn kind_name(kind: &FileKind) -> &'static str {
    match kind {
        FileKind::Regular(_) => "regular file",
        FileKind::Directory(_) => "directory",
        FileKind::Path(_) => "O_PATH fd",
        FileKind::Symlink(_) => "symlink",
        FileKind::CharDevice { .. } => "character device",
        FileKind::BlockDevice { .. } => "block device",
        FileKind::Fifo { .. } => "FIFO",
        FileKind::Pipe { .. } => "pipe",
        FileKind::Unlinked { .. } => "unlinked file",
    }
}

fn plan_pipe(
    image: &Image,
    id: PipeId,
    pipes: &mut Vec<PipePlan>,
    index: &mut BTreeMap<PipeId, usize>,
) -> Result<usize, RestoreError> {
    if let Some(&i) = index.get(&id) {
        return Ok(i);
    }
    let entry = image
        .pipe(id)
        .ok_or_else(|| invalid(format!("pipe {id} is not in the image")))?;
    if entry.buffered.len() > entry.capacity.max(4096) as usize {
        return Err(invalid(format!(
            "pipe {id} holds {} bytes, more than its capacity {}",
            entry.buffered.len(),
            entry.capacity
        )));
    }
    pipes.push(PipePlan {
        capacity: entry.capacity,
        buffered: entry.buffered.clone(),
    });
    index.insert(id, pipes.len() - 1);
    Ok(pipes.len() - 1)
}

#[allow(clippy::too_many_arguments)]
fn plan_open(
    image: &Image,
    p: &Process,
    file: &FileEntry,
    fd: u32,
    opts: &RestoreOptions,
    pipes: &mut Vec<PipePlan>,
    pipe_index: &mut BTreeMap<PipeId, usize>,
    held: &mut Vec<HeldOpen>,
) -> Result<Open, RestoreError> {
    let what = format!("fd {fd} of process {}", p.pid);
    let flags =
        file.flags & !((libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC) as u32);
    Ok(match &file.kind {
        FileKind::CharDevice { location, rdev }
            if opts.shell_job && is_tty_rdev(*rdev) && fd <= 2 =>
        {
            let _ = location;
            Open::Inherit { fd: fd as i32 }
        }
        FileKind::Regular(loc)
        | FileKind::Directory(loc)
        | FileKind::Path(loc)
        | FileKind::Symlink(loc)
        | FileKind::CharDevice { location: loc, .. }
        | FileKind::BlockDevice { location: loc, .. } => {
            let seekable = matches!(
                file.kind,
                FileKind::Regular(_) | FileKind::Directory(_) | FileKind::BlockDevice { .. }
            );
            let pos = (seekable && file.flags & libc::O_PATH as u32 == 0 && file.pos != 0)
                .then_some(file.pos);
            let sym_flags = if matches!(file.kind, FileKind::Symlink(_)) {
                flags | libc::O_NOFOLLOW as u32
            } else {
                flags
            };
            let path = match place(loc, image, &what)? {
                Place::Path(path) => path,
                Place::Mount(mount, rel) => {
                    let mount_fd = image.mount(mount).is_some_and(|m| {
                        m.kind == MountKind::Anonymous
                            && m.kept_fds.iter().any(|k| k.pid == p.pid && k.fd == fd)
                    });
                    let append = file.flags & libc::O_APPEND as u32 != 0;
                    return Ok(Open::Held {
                        held: hold(
                            held,
                            mount,
                            rel,
                            sym_flags,
                            pos,
                            loc,
                            matches!(file.kind, FileKind::Regular(_)),
                            append,
                            mount_fd,
                            what,
                        ),
                    });
                }
            };
            check_file(
                &path,
                loc,
                &file.kind,
                file.flags & libc::O_APPEND as u32 != 0,
            )?;
            Open::Path {
                path,
                flags: sym_flags,
                pos,
            }
        }
        FileKind::Fifo { location, pipe } if on_rebuilt_mount(location, image) => {
            let entry = image
                .pipe(*pipe)
                .ok_or_else(|| invalid(format!("pipe {pipe} is not in the image")))?;
            let Place::Mount(mount, rel) = place(location, image, &what)? else {
                return Err(invalid(format!("{what}: a FIFO placed twice")));
            };
            let i = hold(
                held, mount, rel, flags, None, location, false, false, false, what,
            );
            held[i].special = crate::mounts::Special::Fifo {
                pipe: *pipe,
                capacity: entry.capacity,
                buffered: entry.buffered.clone(),
            };
            Open::Held { held: i }
        }
        FileKind::Unlinked { location, .. } if on_rebuilt_mount(location, image) => {
            let Place::Mount(mount, rel) = place(location, image, &what)? else {
                return Err(invalid(format!("{what}: an unlinked file placed twice")));
            };
            let by_name = image.mount(mount).is_some_and(|m| {
                matches!(
                    m.rebuild,
                    Some(crcli_image::RebuildPlan::LostSuperblock { .. })
                )
            });
            let data = unlinked_content(image, file)?;
            let i = hold(
                held,
                mount,
                rel,
                flags,
                Some(file.pos),
                location,
                false,
                false,
                false,
                what,
            );
            held[i].special = crate::mounts::Special::Unlinked {
                mode: location.mode,
                size: location.size,
                data,
                by_name,
            };
            Open::Held { held: i }
        }
        FileKind::Fifo { location, pipe } => {
            let path = resolve_attached(location, image, &what, "a FIFO")?;
            check_file(&path, location, &file.kind, false)?;
            Open::Fifo {
                path,
                flags,
                pipe: plan_pipe(image, *pipe, pipes, pipe_index)?,
            }
        }
        FileKind::Pipe { pipe, end } => Open::Pipe {
            pipe: plan_pipe(image, *pipe, pipes, pipe_index)?,
            end: *end,
            flags,
        },
        FileKind::Unlinked { location, .. } => {
            let path = resolve_attached(location, image, &what, "an unlinked file")?;
            let parent = path.parent().unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                return Err(RestoreError::FileMismatch {
                    path: parent.to_path_buf(),
                    problem: format!("the directory of the unlinked file of {what} is gone"),
                });
            }
            Open::Unlinked {
                path,
                flags,
                pos: file.pos,
                mode: location.mode & 0o7777,
                size: location.size,
                data: unlinked_content(image, file)?,
            }
        }
    })
}

/// Checks the memory layout: page aligned, inside user space, sorted, not overlapping.
fn check_vmas(p: &Process) -> Result<(), RestoreError> {
    let mut last_end = 0u64;
    for vma in &p.vmas {
        let bad = |why: &str| {
            invalid(format!(
                "process {}: mapping {:#x}-{:#x}: {why}",
                p.pid, vma.start, vma.end
            ))
        };
        if vma.start % crcli_image::PAGE_SIZE != 0
            || vma.end % crcli_image::PAGE_SIZE != 0
            || vma.end <= vma.start
        {
            return Err(bad("not page aligned or empty"));
        }
        if matches!(vma.backing, VmaBacking::Vsyscall) {
            if vma.start != VSYSCALL_START {
                return Err(bad("[vsyscall] at an unexpected address"));
            }
            continue;
        }
        if vma.end > TASK_SIZE {
            return Err(bad("above the user address space"));
        }
        if vma.start < last_end {
            return Err(bad("overlaps the previous mapping or is out of order"));
        }
        last_end = vma.end;
    }
    Ok(())
}

/// The most bytes of unlinked-file content a restore holds in memory at once.
const MAX_UNLINKED_BYTES: u64 = 256 << 20;

/// Reads the content of an unlinked file from the image's data file.
fn unlinked_content(image: &Image, file: &FileEntry) -> Result<Vec<(u64, Vec<u8>)>, RestoreError> {
    let FileKind::Unlinked { extents, .. } = &file.kind else {
        return Ok(Vec::new());
    };
    let total: u64 = extents.iter().map(|e| u64::from(e.len)).sum();
    if total > MAX_UNLINKED_BYTES {
        return Err(unsupported(format!(
            "unlinked file {} holds {total} bytes; at most {MAX_UNLINKED_BYTES} are supported",
            file.id
        )));
    }
    if extents.is_empty() {
        return Ok(Vec::new());
    }
    let reader = image.files_data()?;
    let mut out = Vec::with_capacity(extents.len());
    for (i, e) in extents.iter().enumerate() {
        let mut buf = vec![0u8; e.len as usize];
        reader.read_extent(e, &mut buf, i as u64)?;
        out.push((e.offset, buf));
    }
    Ok(out)
}

/// A pipe of which the process held only one end had its other end in another process, which
/// is not restored: say what that means for the program.
fn warn_one_ended_pipes(image: &Image, p: &Process) {
    if image.inventory().contents.pids.len() > 1 {
        return; // a tree: the other end is in another member, restored with it
    }
    let mut ends: BTreeMap<PipeId, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
    for fd in &p.fds {
        if let Some(FileKind::Pipe { pipe, end }) = image.file(fd.file).map(|f| &f.kind) {
            let e = ends.entry(*pipe).or_default();
            match end {
                PipeEnd::Read => e.0.push(fd.fd),
                PipeEnd::Write => e.1.push(fd.fd),
            }
        }
    }
    for (pipe, (readers, writers)) in ends {
        if readers.is_empty() {
            tracing::warn!("pipe {pipe} (fds {writers:?}): its read end was in another process, which is not restored; writes will fail with EPIPE");
        } else if writers.is_empty() {
            tracing::warn!("pipe {pipe} (fds {readers:?}): its write end was in another process, which is not restored; reads will see end-of-file after the buffered data");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminals_are_recognised_by_device_number() {
        let dev = |major: u64, minor: u64| (major << 8) | minor | ((minor & !0xff) << 12);
        assert!(is_tty_rdev(dev(136, 0)));
        assert!(is_tty_rdev(dev(136, 300)));
        assert!(is_tty_rdev(dev(4, 1)));
        assert!(is_tty_rdev(dev(5, 0)));
        assert!(!is_tty_rdev(dev(1, 3)));
        assert!(!is_tty_rdev(dev(8, 0)));
    }
}
