//! The rules an opened image must obey beyond decoding: ids defined once and every reference
//! resolved, sizes and counts that the kernel interfaces expect, sorted and non-overlapping
//! ranges, data extents inside their data files. [`check`] runs them all and builds the id
//! indexes of [`crate::Image`]; each error names the file and the record.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::common::{Extent, FileId, Timestamp};
use crate::data::DataReader;
use crate::error::{ImageError, Result};
use crate::file::{FileKind, MAX_PIPE_BUFFER};
use crate::fs::FsEntryKind;
use crate::image::{
    fs_file_names, Image, Index, FILES, FILES_DATA, INVENTORY, MOUNTS, PIPES, PROCESSES,
};
use crate::mount::{MountKind, RebuildPlan};
use crate::process::{VmaBacking, MAX_XSTATE_SIZE, NSIG, RLIM_NLIMITS, SIGINFO_SIZE};
use crate::tree::MAX_UTS_NAME;
use crate::{MAX_CHUNK_LEN, PAGE_SIZE};

struct Ctx {
    path: PathBuf,
    record: u64,
}

impl Ctx {
    fn new(dir: &Path, name: &str) -> Self {
        Self {
            path: dir.join(name),
            record: 0,
        }
    }

    fn err(&self, problem: impl Into<String>) -> ImageError {
        ImageError::Invalid {
            path: self.path.clone(),
            record: self.record,
            problem: problem.into(),
        }
    }

    fn ensure(&self, ok: bool, problem: impl FnOnce() -> String) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.err(problem()))
        }
    }

    fn time(&self, what: &str, t: &Timestamp) -> Result<()> {
        self.ensure(t.nsecs < 1_000_000_000, || {
            format!("{what} has {} nanoseconds", t.nsecs)
        })
    }
}

fn index_of<K: std::hash::Hash + Eq + Copy + std::fmt::Display>(
    ctx: &mut Ctx,
    keys: impl Iterator<Item = K>,
    what: &str,
) -> Result<HashMap<K, usize>> {
    let mut m = HashMap::new();
    for (i, k) in keys.enumerate() {
        ctx.record = i as u64;
        if m.insert(k, i).is_some() {
            return Err(ctx.err(format!("{what} {k} is defined twice")));
        }
    }
    Ok(m)
}

/// Checks the extents of one file's content: sorted, not overlapping, inside `size` and inside
/// the data file.
fn check_extents(ctx: &Ctx, data: &DataReader, extents: &[Extent], size: u64) -> Result<()> {
    let mut next = 0u64;
    for e in extents {
        data.check_extent(e, &ctx.path, ctx.record)?;
        ctx.ensure(e.offset >= next, || {
            format!("data extent at {} overlaps the previous one", e.offset)
        })?;
        next = e.offset.saturating_add(u64::from(e.len));
        ctx.ensure(next <= size, || {
            format!("data extent ending at {next} lies beyond the file size {size}")
        })?;
    }
    Ok(())
}

/// The mount namespace's tree (format version 2): the root first, each parent listed before its
/// children, ids unique, absolute mount points and roots, content that is in the image.
fn check_mount_ns(
    img: &Image,
    ictx: &mut Ctx,
    has_content: impl Fn(crate::FsContentId) -> bool,
) -> Result<()> {
    let Some(ns) = &img.inventory().tree.mount_ns else {
        return Ok(());
    };
    ictx.record = 0;
    ictx.ensure(!ns.mounts.is_empty(), || {
        "the mount namespace has no mounts".into()
    })?;
    let mut seen = HashSet::new();
    for (i, m) in ns.mounts.iter().enumerate() {
        let what = || format!("mount {} of the mount namespace", m.id);
        ictx.ensure((i == 0) == (m.parent == 0), || {
            format!("{}: only the first mount is the namespace's root", what())
        })?;
        ictx.ensure(i == 0 || seen.contains(&m.parent), || {
            format!(
                "{}: its parent {} is not listed before it",
                what(),
                m.parent
            )
        })?;
        ictx.ensure(seen.insert(m.id), || format!("{}: listed twice", what()))?;
        ictx.ensure(m.mountpoint.is_absolute() && m.root.is_absolute(), || {
            format!("{}: mount point or root is not absolute", what())
        })?;
        match &m.source_kind {
            crate::NsMountSource::Content { content, .. } => {
                ictx.ensure(has_content(*content), || {
                    format!(
                        "{}: filesystem content {content} is not in the image",
                        what()
                    )
                })?;
            }
            crate::NsMountSource::HostCopy {
                host_mountpoint, ..
            } => {
                ictx.ensure(host_mountpoint.is_absolute(), || {
                    format!("{}: host mount point is not absolute", what())
                })?;
            }
            crate::NsMountSource::External { key } => {
                ictx.ensure(!key.is_empty(), || {
                    format!("{}: empty external key", what())
                })?;
            }
            crate::NsMountSource::NsBind { of, .. } => {
                ictx.ensure(seen.contains(of) && of != &m.id, || {
                    format!(
                        "{}: the mount it binds ({of}) is not listed before it",
                        what()
                    )
                })?;
            }
            crate::NsMountSource::Fresh { .. } => {}
        }
    }
    Ok(())
}

/// The tree rules (format versions 2 and 3): zombies and links between members, `ns_pid`s and
/// `ns_tid`s, UTS names.
/// Errors about a process name `processes.img`, the others the inventory.
fn check_tree(img: &Image, ictx: &mut Ctx, pctx: &mut Ctx) -> Result<()> {
    let inv = img.inventory();
    let tree = &inv.tree;
    let ns = &tree.namespaces;
    ictx.record = 0;
    let live: HashSet<u32> = img.processes().iter().map(|p| p.pid).collect();
    let mut members = live.clone();
    let mut ns_pids = HashSet::new();
    let root = img.processes().iter().find(|p| p.pid == inv.root_pid);
    let ns_pid_ok = |pid: u32, ns_pid: u32| {
        if ns.own_pid_ns {
            ns_pid != 0 && (pid == inv.root_pid) == (ns_pid == 1)
        } else {
            ns_pid == pid
        }
    };
    let mut all: HashSet<u32> = live.clone();
    all.extend(tree.zombies.iter().map(|z| z.pid));
    // A process group or session is led by a member, or is the root's own (inherited from
    // outside the tree: a shell job).
    let link_ok = |id: u32, root_id: Option<u32>| all.contains(&id) || root_id == Some(id);
    for (i, p) in img.processes().iter().enumerate() {
        pctx.record = i as u64;
        pctx.ensure(ns_pid_ok(p.pid, p.ns_pid), || {
            format!(
                "process {} has pid {} in the tree's PID namespace (own namespace: {})",
                p.pid, p.ns_pid, ns.own_pid_ns
            )
        })?;
        pctx.ensure(!ns.own_pid_ns || ns_pids.insert(p.ns_pid), || {
            format!("pid {} of the tree's PID namespace is used twice", p.ns_pid)
        })?;
        for (j, t) in p.threads.iter().enumerate() {
            let ok = if !ns.own_pid_ns {
                t.ns_tid == t.tid
            } else if j == 0 {
                t.ns_tid == p.ns_pid
            } else {
                t.ns_tid != 0 && ns_pids.insert(t.ns_tid)
            };
            pctx.ensure(ok, || {
                format!(
                    "process {}: thread {} has id {} in the tree's PID namespace (own namespace: {})",
                    p.pid, t.tid, t.ns_tid, ns.own_pid_ns
                )
            })?;
        }
        if p.pid != inv.root_pid {
            pctx.ensure(live.contains(&p.ppid), || {
                format!(
                    "process {}: its parent {} is not a live process of the image",
                    p.pid, p.ppid
                )
            })?;
        }
        pctx.ensure(link_ok(p.pgid, root.map(|r| r.pgid)), || {
            format!(
                "process {}: its process group {} is neither a member's nor the root's",
                p.pid, p.pgid
            )
        })?;
        pctx.ensure(link_ok(p.sid, root.map(|r| r.sid)), || {
            format!(
                "process {}: its session {} is neither a member's nor the root's",
                p.pid, p.sid
            )
        })?;
    }
    for z in &tree.zombies {
        ictx.ensure(members.insert(z.pid), || {
            format!(
                "zombie {} is defined twice or is also a live process",
                z.pid
            )
        })?;
        ictx.ensure(z.pid != inv.root_pid, || {
            format!("the root {} is a zombie", z.pid)
        })?;
        ictx.ensure(live.contains(&z.ppid), || {
            format!(
                "zombie {}: its parent {} is not a live process of the image",
                z.pid, z.ppid
            )
        })?;
        ictx.ensure(ns_pid_ok(z.pid, z.ns_pid), || {
            format!(
                "zombie {} has pid {} in the tree's PID namespace",
                z.pid, z.ns_pid
            )
        })?;
        ictx.ensure(!ns.own_pid_ns || ns_pids.insert(z.ns_pid), || {
            format!("pid {} of the tree's PID namespace is used twice", z.ns_pid)
        })?;
        let sig = z.exit_status & 0x7f;
        ictx.ensure(
            z.exit_status <= 0xffff
                && ((sig == 0 && z.exit_status & 0x80 == 0)
                    || (sig != 0x7f && sig <= 64 && z.exit_status >> 8 == 0)),
            || {
                format!(
                    "zombie {}: {:#x} is not an exit status",
                    z.pid, z.exit_status
                )
            },
        )?;
        ictx.ensure(z.exit_signal <= 64, || {
            format!(
                "zombie {}: exit signal {} is not a signal",
                z.pid, z.exit_signal
            )
        })?;
        ictx.ensure(
            link_ok(z.pgid, root.map(|r| r.pgid)) && link_ok(z.sid, root.map(|r| r.sid)),
            || {
                format!(
                    "zombie {}: its process group {} or session {} is neither a member's nor the root's",
                    z.pid, z.pgid, z.sid
                )
            },
        )?;
    }
    if ns.own_pid_ns {
        ictx.ensure(root.is_some(), || {
            "the tree has its own PID namespace but no root process".into()
        })?;
    }
    if let Some(u) = &ns.uts {
        for (what, name) in [("host", &u.hostname), ("domain", &u.domainname)] {
            ictx.ensure(
                name.as_bytes().len() <= MAX_UTS_NAME && !name.as_bytes().contains(&0),
                || {
                    format!(
                        "the {what} name is longer than {MAX_UTS_NAME} bytes or holds a NUL byte"
                    )
                },
            )?;
        }
    }
    let mut kinds = HashSet::new();
    for id in &ns.ids {
        ictx.ensure(kinds.insert(id.kind), || {
            format!("namespace {:?} is listed twice", id.kind)
        })?;
    }
    Ok(())
}

/// Checks every rule; returns the indexes.
pub(crate) fn check(img: &Image) -> Result<Index> {
    let dir = img.dir();
    let inv = img.inventory();
    let c = &inv.contents;
    let mut ctx = Ctx::new(dir, INVENTORY);
    ctx.time("dump_time", &inv.dump_time)?;
    ctx.ensure(inv.page_size as u64 == PAGE_SIZE, || {
        format!("page size {} is not {PAGE_SIZE}", inv.page_size)
    })?;
    ctx.ensure(c.pids.len() == img.processes().len(), || {
        format!(
            "the inventory lists {} processes, {PROCESSES} holds {}",
            c.pids.len(),
            img.processes().len()
        )
    })?;
    for (what, n, m) in [
        ("files", c.files as usize, img.files().len()),
        ("pipes", c.pipes as usize, img.pipes().len()),
        ("mounts", c.mounts as usize, img.mounts().len()),
    ] {
        ctx.ensure(n == m, || {
            format!("the inventory lists {n} {what}, the image holds {m}")
        })?;
    }
    let total: u64 = img.page_streams().iter().map(|s| s.bytes).sum();
    ctx.ensure(total == c.page_bytes, || {
        format!(
            "the inventory says {} bytes of pages, the page streams hold {total}",
            c.page_bytes
        )
    })?;
    let mut index = Index {
        pages: index_of(&mut ctx, c.pages.iter().copied(), "page stream")?,
        fs: index_of(
            &mut ctx,
            c.fs_contents.iter().copied(),
            "filesystem content",
        )?,
        ..Index::default()
    };
    ctx.record = 0;
    if !img.processes().is_empty() || inv.root_pid != 0 {
        ctx.ensure(c.pids.contains(&inv.root_pid), || {
            format!("root pid {} is not among the processes", inv.root_pid)
        })?;
    }

    let mut pctx = Ctx::new(dir, PROCESSES);
    index.processes = index_of(&mut pctx, img.processes().iter().map(|p| p.pid), "pid")?;
    let mut fctx = Ctx::new(dir, FILES);
    index.files = index_of(&mut fctx, img.files().iter().map(|f| f.id), "file")?;
    let mut pipectx = Ctx::new(dir, PIPES);
    index.pipes = index_of(&mut pipectx, img.pipes().iter().map(|p| p.id), "pipe")?;
    let mut mctx = Ctx::new(dir, MOUNTS);
    index.mounts = index_of(&mut mctx, img.mounts().iter().map(|m| m.id), "mount")?;

    // Processes.
    let mut tids = HashSet::new();
    for (i, p) in img.processes().iter().enumerate() {
        pctx.record = i as u64;
        let ctx = &pctx;
        ctx.ensure(c.pids.get(i) == Some(&p.pid), || {
            format!(
                "process {} is not at its place in the inventory's pid list",
                p.pid
            )
        })?;
        ctx.ensure(!p.threads.is_empty(), || {
            format!("process {} has no threads", p.pid)
        })?;
        ctx.ensure(p.threads[0].tid == p.pid, || {
            format!(
                "process {}: the first thread is {}, not the leader",
                p.pid, p.threads[0].tid
            )
        })?;
        ctx.ensure(p.exit_signal <= 64, || {
            format!(
                "process {}: exit signal {} is not a signal",
                p.pid, p.exit_signal
            )
        })?;
        for t in &p.threads {
            ctx.ensure(tids.insert(t.tid), || {
                format!("thread id {} appears twice", t.tid)
            })?;
            let x = &t.xstate;
            ctx.ensure(x.data.len() <= MAX_XSTATE_SIZE && x.size as usize == x.data.len(), || {
                format!(
                    "thread {}: xstate size {} does not match its {} bytes (limit {MAX_XSTATE_SIZE})",
                    t.tid,
                    x.size,
                    x.data.len()
                )
            })?;
            for q in &t.pending.queued {
                ctx.ensure(q.len() == SIGINFO_SIZE, || {
                    format!(
                        "thread {}: a queued siginfo has {} bytes, not {SIGINFO_SIZE}",
                        t.tid,
                        q.len()
                    )
                })?;
            }
        }
        for q in &p.shared_pending.queued {
            ctx.ensure(q.len() == SIGINFO_SIZE, || {
                format!(
                    "a shared queued siginfo has {} bytes, not {SIGINFO_SIZE}",
                    q.len()
                )
            })?;
        }
        ctx.ensure(p.sigactions.len() == NSIG, || {
            format!("{} sigactions, not {NSIG}", p.sigactions.len())
        })?;
        ctx.ensure(p.rlimits.len() == RLIM_NLIMITS, || {
            format!("{} rlimits, not {RLIM_NLIMITS}", p.rlimits.len())
        })?;
        ctx.ensure(p.mm.auxv.len() % 2 == 0, || {
            "auxv has an odd number of words".into()
        })?;
        let file_ref = |id: FileId, what: &str| {
            ctx.ensure(index.files.contains_key(&id), || {
                format!("{what} refers to file {id}, which is not in the image")
            })
        };
        file_ref(p.cwd, "cwd")?;
        file_ref(p.root, "root")?;
        if let Some(f) = p.mm.exe_file {
            file_ref(f, "exe")?;
        }
        if let Some(id) = p.pages {
            ctx.ensure(index.pages.contains_key(&id), || {
                format!("page stream {id} is not in the image")
            })?;
        }
        let mut prev_end = 0u64;
        for v in &p.vmas {
            ctx.ensure(
                v.start % PAGE_SIZE == 0 && v.end % PAGE_SIZE == 0 && v.start < v.end,
                || {
                    format!(
                        "mapping {:#x}-{:#x} is empty or not page aligned",
                        v.start, v.end
                    )
                },
            )?;
            ctx.ensure(v.start >= prev_end, || {
                format!(
                    "mapping {:#x}-{:#x} is out of order or overlaps the previous one",
                    v.start, v.end
                )
            })?;
            prev_end = v.end;
            match &v.backing {
                VmaBacking::File { file, .. } => file_ref(*file, "a mapping")?,
                VmaBacking::SharedAnonymous { content, .. } => ctx
                    .ensure(index.pages.contains_key(content), || {
                        format!("shared mapping content {content} is not in the image")
                    })?,
                _ => {}
            }
        }
        let mut prev_fd = None;
        for fd in &p.fds {
            ctx.ensure(prev_fd.is_none_or(|p| fd.fd > p), || {
                format!("fd {} is out of order or duplicated", fd.fd)
            })?;
            prev_fd = Some(fd.fd);
            file_ref(fd.file, &format!("fd {}", fd.fd))?;
        }
    }
    check_tree(img, &mut ctx, &mut pctx)?;
    check_mount_ns(img, &mut ctx, |c| index.fs.contains_key(&c))?;

    // Files.
    let files_data = DataReader::open(&dir.join(FILES_DATA))?;
    for (i, f) in img.files().iter().enumerate() {
        fctx.record = i as u64;
        let ctx = &fctx;
        let loc = match &f.kind {
            FileKind::Regular(l)
            | FileKind::Directory(l)
            | FileKind::Path(l)
            | FileKind::Symlink(l) => Some(l),
            FileKind::CharDevice { location, .. } | FileKind::BlockDevice { location, .. } => {
                Some(location)
            }
            FileKind::Fifo { location, pipe } => {
                ctx.ensure(index.pipes.contains_key(pipe), || {
                    format!("pipe {pipe} is not in the image")
                })?;
                Some(location)
            }
            FileKind::Pipe { pipe, .. } => {
                ctx.ensure(index.pipes.contains_key(pipe), || {
                    format!("pipe {pipe} is not in the image")
                })?;
                None
            }
            FileKind::Unlinked { location, extents } => {
                check_extents(ctx, &files_data, extents, location.size)?;
                Some(location)
            }
        };
        if let Some(l) = loc {
            ctx.ensure(index.mounts.contains_key(&l.mount), || {
                format!(
                    "file {} is on mount {}, which is not in the image",
                    f.id, l.mount
                )
            })?;
            ctx.ensure(!l.path.is_absolute(), || {
                format!(
                    "file {} has an absolute path {:?}; it must be relative to its mount",
                    f.id, l.path
                )
            })?;
            ctx.time("mtime", &l.mtime)?;
        }
    }

    // Pipes.
    for (i, p) in img.pipes().iter().enumerate() {
        pipectx.record = i as u64;
        pipectx.ensure(p.buffered.len() <= MAX_PIPE_BUFFER, || {
            format!(
                "pipe {} buffers {} bytes, more than {MAX_PIPE_BUFFER}",
                p.id,
                p.buffered.len()
            )
        })?;
    }

    // Mounts.
    for (i, m) in img.mounts().iter().enumerate() {
        mctx.record = i as u64;
        let ctx = &mctx;
        if let Some(parent) = m.parent {
            ctx.ensure(index.mounts.contains_key(&parent), || {
                format!("mount {}: parent mount {parent} is not in the image", m.id)
            })?;
        }
        match m.kind {
            MountKind::Attached => {
                ctx.ensure(m.rebuild.is_none(), || {
                    format!("attached mount {} has a rebuild plan", m.id)
                })?;
                ctx.ensure(
                    m.mountpoint.as_ref().is_some_and(|p| p.is_absolute()),
                    || format!("attached mount {} has no absolute mountpoint", m.id),
                )?;
            }
            MountKind::Unmounted | MountKind::Anonymous => {
                ctx.ensure(m.rebuild.is_some(), || {
                    format!("{:?} mount {} has no rebuild plan", m.kind, m.id)
                })?;
                ctx.ensure(m.mountpoint.is_none(), || {
                    format!("{:?} mount {} has a mountpoint", m.kind, m.id)
                })?;
            }
        }
        ctx.ensure(
            m.kind == MountKind::Anonymous || m.kept_fds.is_empty(),
            || format!("mount {} keeps mount fds but is not anonymous", m.id),
        )?;
        for k in &m.kept_fds {
            let ok = index
                .processes
                .get(&k.pid)
                .is_some_and(|&pi| img.processes()[pi].fds.iter().any(|f| f.fd == k.fd));
            ctx.ensure(ok, || {
                format!(
                    "mount {} keeps fd {} of process {}, which does not exist",
                    m.id, k.fd, k.pid
                )
            })?;
        }
        if let Some(RebuildPlan::LostSuperblock { content, .. }) = &m.rebuild {
            ctx.ensure(index.fs.contains_key(content), || {
                format!(
                    "mount {}: filesystem content {content} is not in the image",
                    m.id
                )
            })?;
        }
        if let Some(RebuildPlan::BindOfLive {
            live_mountpoint, ..
        }) = &m.rebuild
        {
            ctx.ensure(live_mountpoint.is_absolute(), || {
                format!(
                    "mount {}: live mountpoint {live_mountpoint:?} is not absolute",
                    m.id
                )
            })?;
        }
    }

    // Filesystem contents.
    for content in img.fs_contents() {
        let (name, _) = fs_file_names(content.id);
        let data = DataReader::open(&dir.join(fs_file_names(content.id).1))?;
        let mut ctx = Ctx::new(dir, &name);
        let mut kinds: HashMap<&[u8], bool> = HashMap::new(); // path -> is directory
        for (i, e) in content.entries.iter().enumerate() {
            ctx.record = i as u64;
            let p = e.path.as_bytes();
            ctx.ensure(
                !e.path.is_absolute()
                    && !p.ends_with(b"/")
                    && !p.windows(2).any(|w| w == b"//")
                    && p.split(|&b| b == b'/').all(|c| c != b"."),
                || format!("path {:?} is not a clean relative path", e.path),
            )?;
            ctx.ensure(e.mode <= 0o7777, || {
                format!("{:?}: mode {:o} has bits beyond 07777", e.path, e.mode)
            })?;
            ctx.time("atime", &e.atime)?;
            ctx.time("mtime", &e.mtime)?;
            if i == 0 {
                ctx.ensure(p.is_empty() && e.kind == FsEntryKind::Directory, || {
                    "the first entry must be the root directory (path \"\")".into()
                })?;
            } else {
                let parent: &[u8] = match p.iter().rposition(|&b| b == b'/') {
                    Some(k) => &p[..k],
                    None => b"",
                };
                ctx.ensure(!p.is_empty() && kinds.get(parent) == Some(&true), || {
                    format!("{:?}: its parent directory is not an earlier entry", e.path)
                })?;
            }
            match &e.kind {
                FsEntryKind::Regular { size, extents } => {
                    check_extents(&ctx, &data, extents, *size)?
                }
                FsEntryKind::HardLink { target } => {
                    ctx.ensure(kinds.get(target.as_bytes()) == Some(&false), || {
                        format!("{:?}: hard-link target {target:?} is not an earlier non-directory entry", e.path)
                    })?;
                }
                _ => {}
            }
            let is_dir = e.kind == FsEntryKind::Directory;
            ctx.ensure(kinds.insert(p, is_dir).is_none(), || {
                format!("{:?} appears twice", e.path)
            })?;
        }
    }
    let _ = MAX_CHUNK_LEN;
    Ok(index)
}
