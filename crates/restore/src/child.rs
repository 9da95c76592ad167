//! What the fresh child does to itself before the tracer takes over: close every fd it
//! inherited from crcli, open the process's files at their numbers (with their flags and
//! positions, pipes and FIFOs refilled, unlinked files recreated and unlinked again), open the
//! files the tracer will map, set cwd, root, umask, personality and resource limits, report to
//! the parent and stop.
//!
//! Files on unmounted and anonymous mounts were opened by crcli through the rebuilt mounts
//! (`mounts`): the child inherits them at fork, moves them above every needed number before it
//! closes what it inherited, and places them like the others (cwd and root by `fchdir`).
//!
//! It runs in a forked copy of crcli ([`crcli_sys::clone3::spawn`]), so it may allocate, but it
//! must not log or touch any fd it did not open itself: those belonged to crcli and are closed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::plan::{Open, Plan, SessionRole};
use crcli_image::PipeEnd;
use crcli_sys::fdtable;

/// The report the child sends when it is ready: the fd numbers of the aux files, in order.
pub(crate) fn encode_ready(aux_fds: &[i32]) -> Vec<u8> {
    let mut out = b"OK".to_vec();
    for fd in aux_fds {
        out.extend_from_slice(format!(" {fd}").as_bytes());
    }
    out.push(b'\n');
    out
}

/// Parses the child's report: `Ok(aux fds)` or `Err(its error message)`.
pub(crate) fn decode_report(bytes: &[u8]) -> Result<Vec<i32>, String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if let Some(rest) = text.strip_prefix("OK") {
        rest.split_whitespace()
            .map(|s| {
                s.parse::<i32>()
                    .map_err(|_| format!("garbled report from the child: {text:?}"))
            })
            .collect()
    } else if let Some(msg) = text.strip_prefix("ERR ") {
        Err(msg.to_string())
    } else if text.is_empty() {
        Err("the child exited before reporting".to_string())
    } else {
        Err(format!("garbled report from the child: {text:?}"))
    }
}

fn ctx(what: impl FnOnce() -> String) -> impl FnOnce(Errno) -> String {
    move |e| format!("{}: {}", what(), std::io::Error::from(e))
}

/// Moves `fd` to a number >= `high` (close-on-exec), so that it can never sit on a number the
/// process needs.
fn lift(fd: OwnedFd, high: i32) -> Result<OwnedFd, String> {
    if fd.as_raw_fd() >= high {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, high)
        .map_err(ctx(|| format!("moving fd {} above {high}", fd.as_raw_fd())))
}

fn oflags(bits: u32) -> OFlags {
    OFlags::from_bits_retain(bits)
}

pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8], what: &str) -> Result<(), String> {
    while !buf.is_empty() {
        let n = rustix::io::retry_on_intr(|| rustix::io::write(fd, buf))
            .map_err(ctx(|| what.to_string()))?;
        if n == 0 {
            return Err(format!("{what}: short write"));
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Opens one open file description (at some number >= `high`).
pub(crate) fn open_one(
    open: &Open,
    high: i32,
    pipes: &mut [Option<(OwnedFd, OwnedFd)>],
    fifo_helpers: &mut Vec<(usize, OwnedFd)>,
    plan: &Plan,
    inherited: &[(i32, OwnedFd)],
    held: &[OwnedFd],
) -> Result<OwnedFd, String> {
    match open {
        Open::Held { held: i } => {
            let fd = held
                .get(*i)
                .ok_or_else(|| format!("crcli opened no file number {i} for the process"))?;
            rustix::io::fcntl_dupfd_cloexec(fd, high)
                .map_err(ctx(|| format!("taking over {}", plan.held[*i].what)))
        }
        Open::Path { path, flags, pos } => {
            let fd = rustix::fs::open(path, oflags(*flags) | OFlags::CLOEXEC, Mode::empty())
                .map_err(ctx(|| format!("opening {}", path.display())))?;
            if let Some(pos) = pos {
                rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(*pos))
                    .map_err(ctx(|| format!("seeking {} to {pos}", path.display())))?;
            }
            lift(fd, high)
        }
        Open::Fifo { path, flags, pipe } => {
            // A reader-writer open never blocks and keeps the pipe alive while we fill it.
            let helper = rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                .map_err(ctx(|| format!("opening FIFO {}", path.display())))?;
            let spec = &plan.pipes[*pipe];
            // The first open of a FIFO refills its buffer; its helper stays open (keeping the
            // buffer alive) until every fd is in place.
            if !fifo_helpers.iter().any(|(i, _)| i == pipe) {
                if spec.capacity as usize > 65536 {
                    rustix::pipe::fcntl_setpipe_size(&helper, spec.capacity as usize).map_err(
                        ctx(|| format!("setting the size of FIFO {}", path.display())),
                    )?;
                }
                write_all(
                    helper.as_fd(),
                    &spec.buffered,
                    &format!("refilling FIFO {}", path.display()),
                )?;
            }
            let fd = rustix::fs::open(
                path,
                oflags(*flags) | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(ctx(|| format!("opening FIFO {}", path.display())))?;
            rustix::fs::fcntl_setfl(&fd, oflags(*flags)).map_err(ctx(|| {
                format!("setting the flags of FIFO {}", path.display())
            }))?;
            fifo_helpers.push((*pipe, lift(helper, high)?));
            lift(fd, high)
        }
        Open::Pipe { pipe, end, flags } => {
            if pipes[*pipe].is_none() {
                let spec = &plan.pipes[*pipe];
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(ctx(|| "creating a pipe".into()))?;
                if spec.capacity as usize > 65536 {
                    rustix::pipe::fcntl_setpipe_size(&w, spec.capacity as usize)
                        .map_err(ctx(|| "setting a pipe's size".into()))?;
                }
                write_all(w.as_fd(), &spec.buffered, "refilling a pipe")?;
                pipes[*pipe] = Some((lift(r, high)?, lift(w, high)?));
            }
            let (r, w) = pipes[*pipe].as_ref().expect("just created");
            let end_fd = match end {
                PipeEnd::Read => r,
                PipeEnd::Write => w,
            };
            let fd = rustix::io::fcntl_dupfd_cloexec(end_fd, high)
                .map_err(ctx(|| "duplicating a pipe end".into()))?;
            let status = oflags(*flags) & (OFlags::NONBLOCK | OFlags::DIRECT);
            rustix::fs::fcntl_setfl(&fd, status)
                .map_err(ctx(|| "setting a pipe end's flags".into()))?;
            Ok(fd)
        }
        Open::Unlinked {
            path,
            flags,
            pos,
            mode,
            size,
            data,
        } => {
            let mode = Mode::from_bits_truncate(*mode);
            // Prefer the original name (so /proc shows the same "(deleted)" path); if it is
            // taken, an O_TMPFILE in the same directory never appears in the tree at all.
            let (rw, named) = match rustix::fs::open(
                path,
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                mode,
            ) {
                Ok(fd) => (fd, true),
                Err(Errno::EXIST) => {
                    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
                    let fd = rustix::fs::open(
                        dir,
                        OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
                        mode,
                    )
                    .map_err(ctx(|| {
                        format!("creating an unnamed file in {}", dir.display())
                    }))?;
                    (fd, false)
                }
                Err(e) => {
                    return Err(ctx(|| {
                        format!("recreating unlinked file {}", path.display())
                    })(e))
                }
            };
            let result = (|| -> Result<OwnedFd, String> {
                for (off, bytes) in data {
                    let mut done = 0;
                    while done < bytes.len() {
                        let n = rustix::io::pwrite(&rw, &bytes[done..], off + done as u64)
                            .map_err(ctx(|| format!("writing unlinked file {}", path.display())))?;
                        done += n;
                    }
                }
                rustix::fs::ftruncate(&rw, *size)
                    .map_err(ctx(|| format!("sizing unlinked file {}", path.display())))?;
                let reopen = format!("/proc/self/fd/{}", rw.as_raw_fd());
                let fd = rustix::fs::open(
                    reopen.as_str(),
                    oflags(*flags) | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(ctx(|| {
                    format!("reopening unlinked file {}", path.display())
                }))?;
                if *pos != 0 {
                    rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(*pos))
                        .map_err(ctx(|| format!("seeking unlinked file {}", path.display())))?;
                }
                lift(fd, high)
            })();
            if named {
                // Always unlink again, also when something above failed.
                let unlinked = rustix::fs::unlink(path)
                    .map_err(ctx(|| format!("unlinking {}", path.display())));
                let fd = result?;
                unlinked?;
                Ok(fd)
            } else {
                result
            }
        }
        Open::Inherit { fd } => {
            let (_, held) = inherited
                .iter()
                .find(|(n, _)| n == fd)
                .ok_or_else(|| format!("crcli has no fd {fd} to give the process (--shell-job)"))?;
            rustix::io::fcntl_dupfd_cloexec(held, high)
                .map_err(ctx(|| format!("duplicating crcli's fd {fd}")))
        }
    }
}

/// Sets the child up as the plan says. Returns the aux files' fd numbers.
pub(crate) fn setup(
    plan: &Plan,
    report: OwnedFd,
    parent_held: &[OwnedFd],
) -> Result<(Vec<i32>, OwnedFd), (String, OwnedFd)> {
    // Keep the report pipe and (for --shell-job) crcli's terminal fds above every needed number.
    let high = plan.high_fd;
    let report = match rustix::io::fcntl_dupfd_cloexec(&report, high) {
        Ok(fd) => {
            // Closed now: an OwnedFd must never outlive the close_range below.
            drop(report);
            fd
        }
        Err(e) => return Err((format!("moving the report pipe: {e}"), report)),
    };
    let mut inherited = Vec::new();
    for open in &plan.opens {
        if let Open::Inherit { fd } = open {
            let ours: BorrowedFd<'static> = match fd {
                0 => rustix::stdio::stdin(),
                1 => rustix::stdio::stdout(),
                _ => rustix::stdio::stderr(),
            };
            match rustix::io::fcntl_dupfd_cloexec(ours, high) {
                Ok(dup) => inherited.push((*fd, dup)),
                Err(e) => {
                    return Err((
                        format!("duplicating crcli's fd {fd} (--shell-job): {e}"),
                        report,
                    ))
                }
            }
        }
    }
    // The files crcli opened on rebuilt mounts, moved above every needed number.
    let mut held = Vec::with_capacity(parent_held.len());
    for fd in parent_held {
        match rustix::io::fcntl_dupfd_cloexec(fd, high) {
            Ok(dup) => held.push(dup),
            Err(e) => return Err((format!("taking over a file crcli opened: {e}"), report)),
        }
    }
    // Close everything else: crcli's own fds must not leak into the restored process.
    let mut keep: Vec<i32> = inherited.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    keep.extend(held.iter().map(|fd| fd.as_raw_fd()));
    keep.push(report.as_raw_fd());
    keep.sort_unstable();
    let mut from: u32 = 0;
    for k in &keep {
        let k = *k as u32;
        if k > from {
            if let Err(e) = fdtable::close_range(from, k - 1) {
                return Err((format!("closing inherited fds: {e}"), report));
            }
        }
        from = k + 1;
    }
    if let Err(e) = fdtable::close_range(from, u32::MAX) {
        return Err((format!("closing inherited fds: {e}"), report));
    }
    match setup_inner(plan, &inherited, &held) {
        Ok(aux) => Ok((aux, report)),
        Err(msg) => Err((msg, report)),
    }
}

fn setup_inner(
    plan: &Plan,
    inherited: &[(i32, OwnedFd)],
    held: &[OwnedFd],
) -> Result<Vec<i32>, String> {
    let high = plan.high_fd;
    // As many fds as the process had: make sure the soft limit allows them while we work.
    if let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
    let mut pipes: Vec<Option<(OwnedFd, OwnedFd)>> = plan.pipes.iter().map(|_| None).collect();
    let mut fifo_helpers = Vec::new();
    let mut opened = Vec::with_capacity(plan.opens.len());
    for open in &plan.opens {
        opened.push(open_one(
            open,
            high,
            &mut pipes,
            &mut fifo_helpers,
            plan,
            inherited,
            held,
        )?);
    }
    for slot in &plan.slots {
        let fd = &opened[slot.open];
        let dup = rustix::io::dup(fd).map_err(ctx(|| format!("duplicating for fd {}", slot.fd)))?;
        fdtable::dup3_to(dup, slot.fd, slot.cloexec)
            .map_err(ctx(|| format!("placing fd {}", slot.fd)))?;
    }
    drop(opened);
    drop(pipes);
    drop(fifo_helpers);
    finish(plan, held)
}

/// The rest of the setup once the fds are in place: the files the tracer maps, cwd, root,
/// umask, session role, personality and resource limits. Returns the aux files' fd numbers.
/// (Also used by every member of a tree, `tree`.)
pub(crate) fn finish(plan: &Plan, held: &[OwnedFd]) -> Result<Vec<i32>, String> {
    let high = plan.high_fd;
    // Files the tracer maps (and the exe for PR_SET_MM_MAP): left open at numbers >= high.
    let mut aux = Vec::with_capacity(plan.aux_files.len());
    for file in &plan.aux_files {
        if let Some(h) = file.held {
            let fd = rustix::io::fcntl_dupfd_cloexec(&held[h], high).map_err(ctx(|| {
                format!("taking over mapped file {}", file.path.display())
            }))?;
            aux.push(fd.as_raw_fd());
            std::mem::forget(fd);
            continue;
        }
        let mode = if file.writable {
            OFlags::RDWR
        } else {
            OFlags::RDONLY
        };
        let fd = rustix::fs::open(&file.path, mode | OFlags::CLOEXEC, Mode::empty()).map_err(
            ctx(|| format!("opening mapped file {}", file.path.display())),
        )?;
        let fd = lift(fd, high)?;
        aux.push(fd.as_raw_fd());
        // Owned by the process image from now on; the tracer closes it by injection.
        std::mem::forget(fd);
    }

    if let Some(h) = plan.root_held {
        rustix::process::fchdir(&held[h]).map_err(ctx(|| {
            format!("changing directory to {}", plan.held[h].what)
        }))?;
        rustix::process::chroot(".")
            .map_err(ctx(|| format!("changing root to {}", plan.held[h].what)))?;
    }
    match plan.cwd_held {
        Some(h) => rustix::process::fchdir(&held[h]).map_err(ctx(|| {
            format!("changing directory to {}", plan.held[h].what)
        }))?,
        None => rustix::process::chdir(&plan.cwd).map_err(ctx(|| {
            format!("changing directory to {}", plan.cwd.display())
        }))?,
    }
    if let Some(root) = plan.root.as_ref().filter(|_| plan.root_held.is_none()) {
        rustix::process::chroot(root)
            .map_err(ctx(|| format!("changing root to {}", root.display())))?;
    }
    rustix::process::umask(Mode::from_bits_truncate(plan.umask));
    match plan.session {
        SessionRole::SessionLeader => {
            rustix::process::setsid().map_err(ctx(|| "creating a session (setsid)".into()))?;
        }
        SessionRole::GroupLeader => {
            rustix::process::setpgid(None, None)
                .map_err(ctx(|| "creating a process group (setpgid)".into()))?;
        }
        SessionRole::Member => {}
    }
    fdtable::personality(plan.personality).map_err(ctx(|| {
        format!("setting personality {:#x}", plan.personality)
    }))?;
    for &(resource, cur, max) in &plan.rlimits {
        let limit = |v: u64| if v == u64::MAX { None } else { Some(v) };
        let res = resource_from(resource);
        if let Some(res) = res {
            rustix::process::setrlimit(
                res,
                rustix::process::Rlimit {
                    current: limit(cur),
                    maximum: limit(max),
                },
            )
            .map_err(ctx(|| {
                format!("setting resource limit {resource} to {cur}/{max}")
            }))?;
        }
    }
    Ok(aux)
}

fn resource_from(n: u32) -> Option<rustix::process::Resource> {
    use rustix::process::Resource as R;
    Some(match n {
        0 => R::Cpu,
        1 => R::Fsize,
        2 => R::Data,
        3 => R::Stack,
        4 => R::Core,
        5 => R::Rss,
        6 => R::Nproc,
        7 => R::Nofile,
        8 => R::Memlock,
        9 => R::As,
        10 => R::Locks,
        11 => R::Sigpending,
        12 => R::Msgqueue,
        13 => R::Nice,
        14 => R::Rtprio,
        15 => R::Rttime,
        _ => return None,
    })
}

/// The body of the child: set up, report, stop. The tracer then replaces this process's whole
/// address space; if it ever lets this code run on, the child exits.
pub(crate) fn run(plan: &Plan, report: OwnedFd, held: &[OwnedFd]) -> i32 {
    match setup(plan, report, held) {
        Ok((aux, report)) => {
            if write_all(report.as_fd(), &encode_ready(&aux), "reporting").is_err() {
                return 3;
            }
            drop(report);
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::STOP,
            );
            125
        }
        Err((msg, report)) => {
            let _ = write_all(
                report.as_fd(),
                format!("ERR {msg}\n").as_bytes(),
                "reporting",
            );
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_errors_are_named() {
        assert_eq!(
            decode_report(&encode_ready(&[101, 102])),
            Ok(vec![101, 102])
        );
        assert_eq!(decode_report(&encode_ready(&[])), Ok(vec![]));
        assert_eq!(
            decode_report(b"ERR opening /x: No such file\n"),
            Err("opening /x: No such file".to_string())
        );
        assert!(decode_report(b"")
            .unwrap_err()
            .contains("exited before reporting"));
        assert!(decode_report(b"OK 1 x").unwrap_err().contains("garbled"));
        assert!(decode_report(b"hello").unwrap_err().contains("garbled"));
    }
}
