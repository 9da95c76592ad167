//! Helpers shared by the engine tests: checks, child bookkeeping, and writing small images with
//! the image crate's own writer.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crcli_image::process::{NSIG, RLIM_NLIMITS};
use crcli_image::{
    Contents, Creds, FileEntry, FileId, FileKind, FileLocation, Image, ImagePath, Inventory,
    MmInfo, MountEntry, MountId, MountKind, PendingSignals, Process, Rlimit, RobustList, SigAction,
    SigAltStack, Thread, Timestamp, UserRegs, XState,
};

pub fn ensure(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

pub fn ensure_eq<T: PartialEq + std::fmt::Debug>(
    got: T,
    want: T,
    what: &str,
) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

/// The error and all its sources, joined with ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        out.push_str(": ");
        out.push_str(&e.to_string());
        src = e.source();
    }
    out
}

/// Waits for child `pid` and returns its exit code (128 + signal if killed).
pub fn wait_exit(pid: i32) -> Result<i32, String> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or("bad pid")?;
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, st))) => {
                if let Some(code) = st.exit_status() {
                    return Ok(code);
                }
                if let Some(sig) = st.terminating_signal() {
                    return Ok(128 + sig);
                }
            }
            Ok(None) => continue,
            Err(e) => return Err(format!("waitpid {pid:?}: {e}")),
        }
    }
}

/// Fails if this process has any child left (running or unreaped).
pub fn no_children_left() -> Result<(), String> {
    match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
        Err(rustix::io::Errno::CHILD) => Ok(()),
        Ok(None) => Err(format!(
            "a child process is left running; processes: {}",
            process_table()
        )),
        Ok(Some((pid, st))) => Err(format!(
            "child {pid:?} was left behind unreaped ({st:?}); processes: {}",
            process_table()
        )),
        Err(e) => Err(format!("wait: {e}")),
    }
}

/// Every process but kernel threads as `pid(ppid state name tracer)`, for failure messages.
pub fn process_table() -> String {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return "(/proc unreadable)".into();
    };
    let mut pids: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        if field("PPid:") == "2" || pid == 2 {
            continue;
        }
        out.push(format!(
            "{pid}({} {} {} tracer {})",
            field("PPid:"),
            field("State:").split_whitespace().next().unwrap_or(""),
            field("Name:"),
            field("TracerPid:")
        ));
    }
    out.join(" ")
}

/// A pid that no process has now (a little above the last one given out).
pub fn free_pid() -> Result<i32, String> {
    let read = |p: &str| -> Result<i32, String> {
        std::fs::read_to_string(p)
            .map_err(|e| format!("{p}: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("{p}: {e}"))
    };
    let max = read("/proc/sys/kernel/pid_max")?;
    let last = read("/proc/sys/kernel/ns_last_pid")?;
    let mut candidate = last + 5000;
    for _ in 0..100_000 {
        if candidate >= max {
            candidate = 1000;
        }
        if !Path::new(&format!("/proc/{candidate}")).exists() {
            return Ok(candidate);
        }
        candidate += 7;
    }
    Err("no free pid found".into())
}

/// The names in `dir`, recursively, sorted.
pub fn list_dir(dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let e = e.map_err(|e| e.to_string())?;
            out.push(e.path().display().to_string());
            if e.file_type().map_err(|e| e.to_string())?.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn location(mount: MountId, path: &Path) -> Result<FileLocation, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let rel = path
        .to_str()
        .ok_or("non-UTF-8 path")?
        .trim_start_matches('/');
    Ok(FileLocation {
        mount,
        path: ImagePath::new(rel.as_bytes()).map_err(|e| e.to_string())?,
        dev: meta.dev(),
        ino: meta.ino(),
        mode: meta.mode(),
        size: meta.size(),
        mtime: Timestamp {
            secs: meta.mtime(),
            nsecs: meta.mtime_nsec() as u32,
        },
    })
}

/// The root mount of this machine, as an attached mount at `/`.
pub fn root_mount() -> MountEntry {
    MountEntry {
        id: MountId(1),
        kind: MountKind::Attached,
        unique_id: 1 << 32,
        old_id: 1,
        parent_unique_id: 0,
        parent: None,
        mnt_ns_id: Some(1),
        root: ImagePath::new(b"/".to_vec()).expect("path"),
        mountpoint: Some(ImagePath::new(b"/".to_vec()).expect("path")),
        fs_type: "ext4".into(),
        fs_subtype: None,
        source: None,
        super_options: "rw".into(),
        dev_major: 0,
        dev_minor: 0,
        attributes: 0,
        propagation: 0,
        peer_group: 0,
        master: 0,
        propagate_from: 0,
        rebuild: None,
        kept_fds: Vec::new(),
    }
}

/// A regular file on the root mount, opened O_RDWR at position 0.
pub fn regular_file(id: FileId, path: &Path) -> Result<FileEntry, String> {
    Ok(FileEntry {
        id,
        flags: libc::O_RDWR as u32,
        pos: 0,
        kind: FileKind::Regular(location(MountId(1), path)?),
    })
}

/// Files 1 and 2: `/` as a directory (cwd and root of [`minimal_process`]).
pub fn minimal_files() -> Vec<FileEntry> {
    let root = location(MountId(1), Path::new("/")).expect("stat /");
    vec![
        FileEntry {
            id: FileId(1),
            flags: libc::O_RDONLY as u32,
            pos: 0,
            kind: FileKind::Directory(root.clone()),
        },
        FileEntry {
            id: FileId(2),
            flags: libc::O_RDONLY as u32,
            pos: 0,
            kind: FileKind::Directory(root),
        },
    ]
}

/// A process with no memory and no fds: enough for the image to be well formed.
pub fn minimal_process(pid: u32) -> Process {
    Process {
        pid,
        ppid: 1,
        pgid: pid,
        sid: pid,
        ns_pid: pid,
        comm: crcli_image::OsBytes::new(b"minimal".to_vec()).expect("name"),
        threads: vec![Thread {
            tid: pid,
            ns_tid: pid,
            comm: crcli_image::OsBytes::new(b"minimal".to_vec()).expect("name"),
            regs: UserRegs::default(),
            xstate: XState::default(),
            sigmask: 0,
            pending: PendingSignals::default(),
            sigaltstack: SigAltStack {
                sp: 0,
                flags: 2,
                size: 0,
            },
            rseq: None,
            robust_list: RobustList::default(),
            clear_child_tid: 0,
            tls: Vec::new(),
            sched: None,
        }],
        shared_pending: PendingSignals::default(),
        sigactions: vec![SigAction::default(); NSIG],
        creds: Creds::default(),
        cwd: FileId(1),
        root: FileId(2),
        umask: 0o22,
        rlimits: own_rlimits(),
        personality: 0,
        dumpable: 1,
        no_new_privs: false,
        child_subreaper: false,
        exit_signal: 17,
        mm: MmInfo::default(),
        vmas: Vec::new(),
        pages: None,
        fds: Vec::new(),
        itimers: Default::default(),
    }
}

/// Writes an image of one process with the image crate's writer.
pub fn write_image(
    dir: &Path,
    p: &Process,
    files: &[FileEntry],
    mounts: &[MountEntry],
) -> Result<(), String> {
    let mut w = Image::create(dir).map_err(|e| error_chain(&e))?;
    w.add_process(p).map_err(|e| error_chain(&e))?;
    for f in files {
        w.add_file(f).map_err(|e| error_chain(&e))?;
    }
    for m in mounts {
        w.add_mount(m).map_err(|e| error_chain(&e))?;
    }
    let inv = Inventory {
        format_version: crcli_image::FORMAT_VERSION,
        crcli_version: "test".into(),
        dump_time: Timestamp { secs: 1, nsecs: 0 },
        kernel_release: "test".into(),
        arch: "x86_64".into(),
        page_size: 4096,
        features: Vec::new(),
        root_pid: p.pid,
        contents: Contents::default(),
        tree: Default::default(),
    };
    w.commit(inv).map_err(|e| error_chain(&e))?;
    Ok(())
}

/// Rewrites the header of `inventory.img` with the next format version.
pub fn bump_format_version(dir: &Path) -> Result<(), String> {
    let path = dir.join("inventory.img");
    let mut bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    let header = crcli_image::codec::encode_header(
        crcli_image::codec::FileTag::Inventory,
        crcli_image::FORMAT_VERSION + 1,
    );
    bytes[..header.len()].copy_from_slice(&header);
    std::fs::write(&path, bytes).map_err(|e| e.to_string())
}

/// This process's resource limits (what a process started here would have).
pub fn own_rlimits() -> Vec<Rlimit> {
    let text = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let mut out: Vec<Rlimit> = text
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l[26..].split_whitespace().collect();
            let v = |s: &str| {
                if s == "unlimited" {
                    u64::MAX
                } else {
                    s.parse().expect("limit")
                }
            };
            Rlimit {
                cur: v(cols[0]),
                max: v(cols[1]),
            }
        })
        .collect();
    out.resize(
        RLIM_NLIMITS,
        Rlimit {
            cur: u64::MAX,
            max: u64::MAX,
        },
    );
    out
}

/// Copies image `src` to a new image `dst` (with the image crate's reader and writer), letting
/// `edit` change the process entry on the way: for testing restore paths that `crcli dump`
/// cannot produce on this machine.
pub fn rewrite_image(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Process),
) -> Result<(), String> {
    rewrite_image_with(src, dst, edit, |_| {})
}

/// [`rewrite_image`], also editing the inventory (e.g. its tree: namespaces, zombies).
#[allow(dead_code)]
pub fn rewrite_image_with(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Process),
    edit_inventory: impl FnOnce(&mut crcli_image::Inventory),
) -> Result<(), String> {
    rewrite_image_tree(
        src,
        dst,
        |ps| {
            if let Some(p) = ps.first_mut() {
                edit(p)
            }
        },
        edit_inventory,
    )
}

/// [`rewrite_image_with`], editing the list of processes as a whole (e.g. adding members).
#[allow(dead_code)]
pub fn rewrite_image_tree(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Vec<Process>),
    edit_inventory: impl FnOnce(&mut crcli_image::Inventory),
) -> Result<(), String> {
    let e = |err: crcli_image::ImageError| error_chain(&err);
    let img = Image::open(src).map_err(e)?;
    let mut w = Image::create(dst).map_err(e)?;
    let mut procs: Vec<Process> = img.processes().to_vec();
    edit(&mut procs);
    for p in &procs {
        w.add_process(p).map_err(e)?;
    }
    let data = img.files_data().map_err(e)?;
    for f in img.files() {
        let mut f = f.clone();
        if let FileKind::Unlinked { extents, .. } = &mut f.kind {
            let mut new = Vec::new();
            for (i, x) in extents.iter().enumerate() {
                let mut buf = vec![0u8; x.len as usize];
                data.read_extent(x, &mut buf, i as u64).map_err(e)?;
                new.extend(w.add_unlinked_data(x.offset, &buf).map_err(e)?);
            }
            *extents = new;
        }
        w.add_file(&f).map_err(e)?;
    }
    for p in img.pipes() {
        w.add_pipe(p).map_err(e)?;
    }
    for m in img.mounts() {
        w.add_mount(m).map_err(e)?;
    }
    for s in img.page_streams() {
        let mut r = img.pages(s.id).map_err(e)?;
        let mut pw = w.pages(s.id).map_err(e)?;
        let mut buf = vec![0u8; crcli_image::MAX_CHUNK_LEN as usize];
        while let Some(chunk) = r.next_chunk(&mut buf).map_err(e)? {
            pw.add(chunk.addr, &buf[..chunk.len]).map_err(e)?;
        }
        pw.finish().map_err(e)?;
    }
    let mut inv = img.inventory().clone();
    edit_inventory(&mut inv);
    w.commit(inv).map_err(e)?;
    Ok(())
}
