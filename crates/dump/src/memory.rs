//! The target's memory: its mappings as image [`Vma`]s, and the content that must be saved,
//! streamed into page streams.
//!
//! Which pages are saved, from `/proc/PID/pagemap`:
//! - private anonymous memory (also `[heap]`, `[stack]`): pages present or swapped, except
//!   pages that map the shared zero page (read, never written: they read as zeros anyway);
//! - private file mappings: only pages that are no longer the file's (present and not
//!   file-backed, i.e. copied on write, or swapped);
//! - shared anonymous memory: the whole content of the object (by shmem inode, once for all its
//!   mappings, in all members of the tree: the first member that maps it saves it, the others'
//!   views refer to that page stream, see [`share_across_members`]), read through
//!   `/proc/PID/map_files` with SEEK_DATA/SEEK_HOLE, into a page stream of its own whose
//!   addresses are offsets in the object;
//! - nothing for shared file mappings (the file holds the data), `[vdso]` (restore moves the
//!   fresh one), `[vvar]`, `[vvar_vclock]` and `[vsyscall]` (addresses only).
//!
//! Pages are read with process_vm_readv, up to [`BATCH_BYTES`] and [`IOV_MAX`] runs per call,
//! falling back to `/proc/PID/mem` for what process_vm_readv cannot read (mappings without
//! read permission). crcli's memory stays bounded by one batch and one pagemap window,
//! whatever the target's size.

use std::collections::HashMap;
use std::fs::File;
use std::io::IoSliceMut;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use crcli_image::pages::RunChecksums;
use crcli_image::process::{
    MADV_BIT_DONTDUMP, MADV_BIT_DONTFORK, MADV_BIT_HUGEPAGE, MADV_BIT_MERGEABLE,
    MADV_BIT_NOHUGEPAGE, MADV_BIT_WIPEONFORK, PROT_EXEC, PROT_READ, PROT_WRITE,
};
use crcli_image::{PagesId, PagesWriter, Vma, VmaBacking};
use crcli_sys::process_vm::{process_vm_readv, RemoteIoVec, IOV_MAX};
use rustix::fs::OFlags;

use crate::error::DumpError;
use crate::files::Files;
use crate::procfs::{MapEntry, Proc};

/// The most bytes read from the target per process_vm_readv call.
pub const BATCH_BYTES: usize = 1 << 20;
const PAGE: u64 = 4096;
/// Pagemap entries read at once (covers 128 MiB of address space).
const PAGEMAP_WINDOW: usize = 32 * 1024;

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;
/// The page frame number of a present page (0 without CAP_SYS_ADMIN).
const PM_PFN: u64 = (1 << 55) - 1;

const MAP_SHARED: u32 = 0x01;
const MAP_PRIVATE: u32 = 0x02;
const MAP_GROWSDOWN: u32 = 0x100;
const MAP_LOCKED: u32 = 0x2000;
const MAP_NORESERVE: u32 = 0x4000;

/// Which pages of a private range are saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Anonymous memory: present or swapped pages.
    Anon,
    /// A private file mapping: pages no longer the file's.
    PrivateFile,
}

/// A private range whose pages are candidates for the process's page stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrivateRange {
    pub start: u64,
    pub end: u64,
    pub filter: Filter,
}

/// A shared anonymous object to save whole.
pub(crate) struct SharedObject {
    pub id: PagesId,
    pub file: File,
    pub size: u64,
}

/// The memory layout and what to save of it.
pub(crate) struct Layout {
    pub vmas: Vec<Vma>,
    pub private: Vec<PrivateRange>,
    pub shared: Vec<SharedObject>,
}

/// Turns the target's mappings into image VMAs. `first_shared_id` is the first page stream id
/// for shared anonymous objects (the private stream has its own). The flags that only
/// `/proc/PID/smaps` shows (growsdown, locked, noreserve, madvise bits) are added later by
/// [`apply_vmflags`]: [`dump_private`] reads smaps while the pages are being dumped.
pub(crate) fn layout(
    proc: &Proc,
    maps: &[MapEntry],
    files: &mut Files<'_>,
    first_shared_id: u32,
) -> Result<Layout, DumpError> {
    let pid = proc.pid;
    let mut out = Layout {
        vmas: Vec::new(),
        private: Vec::new(),
        shared: Vec::new(),
    };
    let mut shared_by_inode: HashMap<(u64, u64), (PagesId, u64)> = HashMap::new();

    for m in maps {
        let range = format!("mapping {:x}-{:x}", m.start, m.end);
        let mut prot = 0;
        if m.read {
            prot |= PROT_READ;
        }
        if m.write {
            prot |= PROT_WRITE;
        }
        if m.exec {
            prot |= PROT_EXEC;
        }
        let map_flags = if m.shared { MAP_SHARED } else { MAP_PRIVATE };
        let path = m.path.as_slice();
        let unsupported = |what: String| DumpError::Unsupported {
            pid,
            what: format!("{range}: {what}"),
        };
        let private_range = |filter| PrivateRange {
            start: m.start,
            end: m.end,
            filter,
        };

        let backing = match path {
            b"[heap]" => {
                out.private.push(private_range(Filter::Anon));
                VmaBacking::Heap
            }
            b"[stack]" => {
                out.private.push(private_range(Filter::Anon));
                VmaBacking::Stack
            }
            b"[vdso]" => VmaBacking::Vdso,
            b"[vvar]" => VmaBacking::Vvar,
            b"[vvar_vclock]" => VmaBacking::VvarVclock,
            b"[vsyscall]" => VmaBacking::Vsyscall,
            _ if m.shared
                && (m.inode == 0
                    || path.starts_with(b"/dev/zero")
                    || path.starts_with(b"[anon_shmem:")) =>
            {
                // Shared anonymous memory (shmem): save the object once.
                let file = open_map_file(proc, m)?;
                let st = rustix::fs::fstat(&file)
                    .map_err(DumpError::sys(format!("fstat {range} of pid {pid}")))?;
                let key = (st.st_dev, st.st_ino);
                let (content, size) = match shared_by_inode.get(&key) {
                    Some(v) => *v,
                    None => {
                        let id = PagesId(first_shared_id + out.shared.len() as u32);
                        let size = st.st_size as u64;
                        out.shared.push(SharedObject {
                            id,
                            file: File::from(file),
                            size,
                        });
                        shared_by_inode.insert(key, (id, size));
                        (id, size)
                    }
                };
                VmaBacking::SharedAnonymous {
                    content,
                    size,
                    offset: m.offset,
                }
            }
            _ if path.is_empty() || path.starts_with(b"[anon:") => {
                out.private.push(private_range(Filter::Anon));
                VmaBacking::Anonymous
            }
            _ if path.starts_with(b"[") => {
                return Err(unsupported(format!(
                    "a special mapping {}",
                    String::from_utf8_lossy(path)
                )));
            }
            _ if path.starts_with(b"/memfd:") => {
                return Err(unsupported(format!(
                    "a mapping of memfd {}",
                    String::from_utf8_lossy(path)
                )));
            }
            _ if path.starts_with(b"/SYSV") => {
                return Err(unsupported("a System V shared memory segment".to_owned()));
            }
            _ if path.ends_with(b" (deleted)") => {
                return Err(unsupported(format!(
                    "a mapping of the deleted file {}",
                    String::from_utf8_lossy(path)
                )));
            }
            _ => {
                let file = open_map_file(proc, m)?;
                let st = rustix::fs::fstat(&file)
                    .map_err(DumpError::sys(format!("fstat {range} of pid {pid}")))?;
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    != rustix::fs::FileType::RegularFile
                {
                    return Err(unsupported(format!(
                        "a mapping of {} (not a regular file)",
                        String::from_utf8_lossy(path)
                    )));
                }
                let flags = if m.shared && m.write {
                    libc::O_RDWR as u32
                } else {
                    libc::O_RDONLY as u32
                };
                let file_id = files.path_entry(&range, file, path, flags, false)?;
                if !m.shared {
                    out.private.push(private_range(Filter::PrivateFile));
                }
                VmaBacking::File {
                    file: file_id,
                    offset: m.offset,
                }
            }
        };
        out.vmas.push(Vma {
            start: m.start,
            end: m.end,
            prot,
            map_flags,
            madvise: 0,
            backing,
        });
    }
    Ok(out)
}

/// The shared anonymous objects of the members dumped so far, by shmem inode (`st_dev`,
/// `st_ino`): the page stream holding each one's content and its size.
pub(crate) type SeenObjects = HashMap<(u64, u64), (PagesId, u64)>;

/// Cross-member bookkeeping of shared anonymous objects, called once per member in member
/// order: an object an earlier member maps too (inherited across fork, or passed) is saved
/// once, by the first member; here its views refer to that member's page stream and the object
/// is taken out of `layout.shared` (nothing more is saved of it). Objects seen first here are
/// recorded in `seen`.
pub(crate) fn share_across_members(
    pid: i32,
    layout: &mut Layout,
    seen: &mut SeenObjects,
) -> Result<(), DumpError> {
    let mut first_here = Vec::with_capacity(layout.shared.len());
    for obj in std::mem::take(&mut layout.shared) {
        let st = rustix::fs::fstat(&obj.file).map_err(DumpError::sys(format!(
            "fstat a shared memory object of pid {pid}"
        )))?;
        let key = (st.st_dev, st.st_ino);
        match seen.get(&key) {
            Some(&(id, size)) => {
                if size != obj.size {
                    return Err(DumpError::Unsupported {
                        pid,
                        what: format!(
                            "shared anonymous memory of {} bytes that an earlier process saw as {size} bytes",
                            obj.size
                        ),
                    });
                }
                for vma in &mut layout.vmas {
                    if let VmaBacking::SharedAnonymous { content, .. } = &mut vma.backing {
                        if *content == obj.id {
                            *content = id;
                        }
                    }
                }
            }
            None => {
                seen.insert(key, (obj.id, obj.size));
                first_here.push(obj);
            }
        }
    }
    layout.shared = first_here;
    Ok(())
}

/// The `VmFlags` of `/proc/PID/smaps`: (start address of the mapping, its flags).
pub(crate) type VmFlags = Vec<(u64, Vec<String>)>;

/// Adds to `vmas` what `/proc/PID/smaps` says of each mapping (its `VmFlags`, by start
/// address): growsdown, locked and noreserve as mmap flags, and the madvise bits.
pub(crate) fn apply_vmflags(vmas: &mut [Vma], vmflags: &VmFlags) {
    let flags_of: HashMap<u64, &Vec<String>> = vmflags.iter().map(|(s, f)| (*s, f)).collect();
    for vma in vmas {
        let vmf: &[String] = flags_of
            .get(&vma.start)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        let has = |f: &str| vmf.iter().any(|x| x == f);
        for (flag, bit) in [
            ("gd", MAP_GROWSDOWN),
            ("lo", MAP_LOCKED),
            ("nr", MAP_NORESERVE),
        ] {
            if has(flag) {
                vma.map_flags |= bit;
            }
        }
        for (flag, bit) in [
            ("dc", MADV_BIT_DONTFORK),
            ("dd", MADV_BIT_DONTDUMP),
            ("hg", MADV_BIT_HUGEPAGE),
            ("nh", MADV_BIT_NOHUGEPAGE),
            ("mg", MADV_BIT_MERGEABLE),
            ("wf", MADV_BIT_WIPEONFORK),
        ] {
            if has(flag) {
                vma.madvise |= bit;
            }
        }
    }
}

fn open_map_file(proc: &Proc, m: &MapEntry) -> Result<rustix::fd::OwnedFd, DumpError> {
    let name = format!("map_files/{}", m.map_files_name());
    rustix::fs::open(
        proc.path(&name),
        OFlags::RDONLY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(DumpError::sys(format!("open /proc/{}/{name}", proc.pid)))
}

/// Counts of what a page stream received.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PageCount {
    pub pages: u64,
    pub bytes: u64,
}

/// Reads the selected pages of the private ranges and streams them into `out`.
///
/// Two threads overlap the work: a reader (pagemap, process_vm_readv, and the checksums of
/// what it read, while the pages are still in its cache) fills batches of at most
/// [`BATCH_BYTES`], the caller's thread writes them into the image, one write per run;
/// [`BUFFERS`] batches circulate between them, so crcli holds at most
/// `BUFFERS * BATCH_BYTES` of page data. Ranges of at most [`INLINE_BYTES`] in all (a small
/// process: the members of a tree of small processes) are read on the caller's thread: then
/// two thread starts and their hand-overs would cost more than the reading.
///
/// A third thread reads `/proc/PID/smaps` meanwhile (it walks every page table of the target:
/// tens of milliseconds per GiB, off the critical path here; read inline for a small process);
/// its `VmFlags` are returned for [`apply_vmflags`].
///
/// What process_vm_readv cannot read is read through `/proc/PID/mem` by the thread that
/// seized the target, through `tracer` (see [`MemRequest`]).
pub(crate) fn dump_private(
    proc: &Proc,
    ranges: &[PrivateRange],
    out: &mut PagesWriter<'_>,
    tracer: &mpsc::Sender<MemRequest>,
) -> Result<(PageCount, VmFlags), DumpError> {
    let pid = proc.pid;
    let pagemap = File::open(proc.path("pagemap"))
        .map_err(DumpError::io(format!("open /proc/{pid}/pagemap")))?;
    // Pages that map the shared zero page (read but never written) are not saved: they read as
    // zeros after a restore anyway.
    static ZERO_PFN: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let zero_pfn = *ZERO_PFN.get_or_init(crcli_sys::task::zero_page_pfn);
    let inline = ranges.iter().map(|r| r.end - r.start).sum::<u64>() <= INLINE_BYTES as u64;
    std::thread::scope(|scope| {
        let smaps = (!inline).then(|| scope.spawn(|| proc.smaps_vmflags()));
        let (full_tx, full_rx) = mpsc::sync_channel::<Result<Batch, DumpError>>(BUFFERS);
        let (free_tx, free_rx) = mpsc::sync_channel::<Batch>(BUFFERS);
        for _ in 0..BUFFERS {
            free_tx.send(Batch::new()).expect("the channel has room");
        }
        let reader = move || {
            if let Err(e) = read_batches(pid, &pagemap, ranges, zero_pfn, &free_rx, &full_tx) {
                // The writer may be gone already (it failed first): nothing to tell then.
                let _ = full_tx.send(Err(e));
            }
        };
        if inline {
            // At most INLINE_BYTES of pages: fewer batches than BUFFERS, so the reader never
            // waits for the writer (and the channel holds its error too).
            reader();
            // The closure holds the channel's sender: dropping it ends the loop below.
            drop(reader);
        } else {
            scope.spawn(reader);
        }
        let mut count = PageCount::default();
        for batch in full_rx.iter() {
            let mut batch = batch?;
            if batch.got < batch.fill {
                // What process_vm_readv could not read, through /proc/PID/mem, by the tracing
                // thread: kernels built with PROC_MEM_FORCE_PTRACE let only the tracer (the
                // thread that seized the target) read mappings without read permission there.
                let (reply_tx, reply_rx) = mpsc::channel();
                let stopped = || DumpError::Unsupported {
                    pid,
                    what: "memory without read permission while the tracing thread stopped"
                        .to_owned(),
                };
                tracer
                    .send(MemRequest {
                        pid,
                        batch,
                        reply: reply_tx,
                    })
                    .map_err(|_| stopped())?;
                batch = reply_rx.recv().map_err(|_| stopped())??;
            }
            let mut off = 0usize;
            for (&(base, len), sums) in batch.runs.iter().zip(&batch.sums) {
                out.add_checksummed(base, &batch.buf[off..off + len], sums)
                    .map_err(|source| DumpError::Image {
                        op: format!("pages at {base:#x}"),
                        source,
                    })?;
                off += len;
                count.pages += (len as u64) / PAGE;
                count.bytes += len as u64;
            }
            // The reader may have finished: then the batch is simply dropped.
            let _ = free_tx.send(batch.reset());
        }
        let vmflags = match smaps {
            Some(smaps) => smaps
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))?,
            None => proc.smaps_vmflags()?,
        };
        // Returning drops both channel ends, which stops the reader if it is still running.
        Ok((count, vmflags))
    })
}

/// The most bytes of private ranges [`dump_private`] reads on the caller's thread.
const INLINE_BYTES: usize = 4 * BATCH_BYTES;
const _: () = assert!(
    INLINE_BYTES / BATCH_BYTES + 2 <= BUFFERS,
    "an inline read must fit in the batches in circulation"
);

/// A batch whose pages process_vm_readv could not all read (a mapping without read
/// permission), sent by the thread writing the pages to the thread that seized the target,
/// which reads the rest through `/proc/PID/mem` ([`MemRequest::serve`]) and sends it back.
pub(crate) struct MemRequest {
    pid: i32,
    batch: Batch,
    reply: mpsc::Sender<Result<Batch, DumpError>>,
}

impl MemRequest {
    /// Reads the rest of the batch through `/proc/PID/mem` and sends it back (with its
    /// checksums), or the error. Call it from the thread that seized the target.
    pub(crate) fn serve(self) {
        let MemRequest {
            pid,
            mut batch,
            reply,
        } = self;
        let result = File::open(format!("/proc/{pid}/mem"))
            .map_err(DumpError::io(format!("open /proc/{pid}/mem")))
            .and_then(|mem| batch.complete(pid, &mem))
            .map(|read| {
                if read {
                    batch.checksum();
                }
                batch
            });
        // The requester may be gone (it failed meanwhile): nothing to tell then.
        let _ = reply.send(result);
    }
}

/// Batches in circulation between the reader and the writer: many small ones rather than a few
/// big ones, so that either thread can run ahead while the other waits for a CPU (measured:
/// 12 x 1 MiB dumps 1 GiB ~10% faster than 3 x 4 MiB on a loaded machine, same memory).
const BUFFERS: usize = 12;

/// The reader thread of [`dump_private`]: walks the pagemap, fills batches, sends them.
fn read_batches(
    pid: i32,
    pagemap: &File,
    ranges: &[PrivateRange],
    zero_pfn: Option<u64>,
    free: &mpsc::Receiver<Batch>,
    full: &mpsc::SyncSender<Result<Batch, DumpError>>,
) -> Result<(), DumpError> {
    let Ok(mut batch) = free.recv() else {
        return Ok(());
    };
    // No bigger than the largest range needs.
    let window = ranges
        .iter()
        .map(|r| ((r.end - r.start) / PAGE) as usize)
        .max()
        .unwrap_or(0)
        .min(PAGEMAP_WINDOW);
    let mut raw = vec![0u8; window * 8];
    for r in ranges {
        let mut addr = r.start;
        while addr < r.end {
            let n = (((r.end - addr) / PAGE) as usize).min(window);
            let bytes = &mut raw[..n * 8];
            pagemap
                .read_exact_at(bytes, addr / PAGE * 8)
                .map_err(DumpError::io(format!(
                    "read /proc/{pid}/pagemap at {addr:#x}"
                )))?;
            for (i, c) in bytes.chunks_exact(8).enumerate() {
                let e = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
                let keep = match r.filter {
                    Filter::Anon => {
                        e & PM_SWAP != 0 || (e & PM_PRESENT != 0 && Some(e & PM_PFN) != zero_pfn)
                    }
                    Filter::PrivateFile => {
                        (e & PM_PRESENT != 0 && e & PM_FILE == 0) || e & PM_SWAP != 0
                    }
                };
                if keep && !batch.push(addr + i as u64 * PAGE) {
                    batch.read(pid)?;
                    let Ok(next) = free.recv() else {
                        return Ok(());
                    };
                    let done = std::mem::replace(&mut batch, next);
                    if full.send(Ok(done)).is_err() {
                        return Ok(());
                    }
                    assert!(
                        batch.push(addr + i as u64 * PAGE),
                        "an empty batch takes a page"
                    );
                }
            }
            addr += n as u64 * PAGE;
        }
        // Runs never cross a mapping boundary.
        batch.sealed = true;
    }
    if !batch.runs.is_empty() {
        batch.read(pid)?;
        let _ = full.send(Ok(batch));
    }
    Ok(())
}

/// Pages gathered for one process_vm_readv call.
struct Batch {
    buf: Vec<u8>,
    /// (address, length) of each run, in address order.
    runs: Vec<(u64, usize)>,
    /// The checksums of each run (valid once [`Batch::read`] read everything, or after
    /// [`Batch::complete`] and [`Batch::checksum`]).
    sums: Vec<RunChecksums>,
    fill: usize,
    /// Bytes process_vm_readv filled (the rest is read by [`Batch::complete`]).
    got: usize,
    /// The last run must not be extended (a mapping ended).
    sealed: bool,
}

impl Batch {
    /// An empty batch. Its buffer grows as pages are added (up to [`BATCH_BYTES`]) and keeps
    /// its size when reused: a process with little memory costs little (zeroing 12 buffers of
    /// 1 MiB for each member of a tree of small processes was a third of a tree dump's time).
    fn new() -> Self {
        Batch {
            buf: Vec::new(),
            runs: Vec::with_capacity(IOV_MAX),
            sums: Vec::new(),
            fill: 0,
            got: 0,
            sealed: false,
        }
    }

    /// Empties the batch for reuse (keeping its allocations).
    fn reset(mut self) -> Self {
        self.runs.clear();
        self.fill = 0;
        self.got = 0;
        self.sealed = false;
        self
    }

    /// Adds a page; false if the batch is full (no room in the buffer or no iovec left).
    fn push(&mut self, addr: u64) -> bool {
        if self.fill + PAGE as usize > BATCH_BYTES {
            return false;
        }
        if self.buf.len() < self.fill + PAGE as usize {
            self.buf.resize(self.fill + PAGE as usize, 0);
        }
        if let Some(last) = self.runs.last_mut() {
            if !self.sealed && last.0 + last.1 as u64 == addr {
                last.1 += PAGE as usize;
                self.fill += PAGE as usize;
                return true;
            }
        }
        if self.runs.len() == IOV_MAX {
            return false;
        }
        self.runs.push((addr, PAGE as usize));
        self.fill += PAGE as usize;
        self.sealed = false;
        true
    }

    /// Reads the runs from the target into the buffer with process_vm_readv, as far as it can
    /// (it stops at the first page it cannot read); [`Batch::complete`] reads the rest. If it
    /// read everything, computes the checksums too.
    fn read(&mut self, pid: i32) -> Result<(), DumpError> {
        let remote: Vec<RemoteIoVec> = self
            .runs
            .iter()
            .map(|&(base, len)| RemoteIoVec {
                base: base as usize,
                len,
            })
            .collect();
        let got = match process_vm_readv(
            pid,
            &mut [IoSliceMut::new(&mut self.buf[..self.fill])],
            &remote,
        ) {
            Ok(n) => n,
            // Nothing readable at the first run (e.g. a mapping without read permission).
            Err(rustix::io::Errno::FAULT) => 0,
            Err(e) => {
                return Err(DumpError::sys(format!("process_vm_readv from pid {pid}"))(
                    e,
                ))
            }
        };
        self.got = got;
        if got == self.fill {
            self.checksum();
        }
        Ok(())
    }

    /// Computes the checksums of every run.
    fn checksum(&mut self) {
        self.sums
            .resize_with(self.runs.len(), RunChecksums::default);
        let mut off = 0usize;
        for (s, &(_, len)) in self.sums.iter_mut().zip(&self.runs) {
            s.compute(&self.buf[off..off + len]);
            off += len;
        }
    }

    /// Reads what [`Batch::read`] could not through `/proc/PID/mem` (which can read mappings
    /// without read permission). Call it from the tracing thread. True if it read anything
    /// (the checksums must then be computed).
    fn complete(&mut self, pid: i32, mem: &File) -> Result<bool, DumpError> {
        let got = self.got;
        if got >= self.fill {
            return Ok(false);
        }
        let mut off = 0usize;
        for &(base, len) in &self.runs {
            let run_end = off + len;
            if run_end > got {
                let skip = got.saturating_sub(off);
                let at = base + skip as u64;
                mem.read_exact_at(&mut self.buf[off + skip..run_end], at)
                    .map_err(DumpError::io(format!(
                        "read memory at {at:#x} of pid {pid} through /proc/{pid}/mem"
                    )))?;
            }
            off = run_end;
        }
        self.got = self.fill;
        Ok(true)
    }
}

/// Saves the content of a shared anonymous object into its own page stream (addresses are
/// offsets in the object); holes are skipped.
pub(crate) fn dump_shared(
    pid: i32,
    obj: &SharedObject,
    out: &mut PagesWriter<'_>,
) -> Result<PageCount, DumpError> {
    let mut count = PageCount::default();
    let mut buf = vec![0u8; crcli_image::MAX_CHUNK_LEN as usize];
    let mut pos = 0u64;
    let what = format!("shared anonymous memory {} of pid {pid}", obj.id);
    while pos < obj.size {
        let data = match rustix::fs::seek(&obj.file, rustix::fs::SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(DumpError::sys(format!("SEEK_DATA in {what}"))(e)),
        };
        let hole = rustix::fs::seek(&obj.file, rustix::fs::SeekFrom::Hole(data))
            .map_err(DumpError::sys(format!("SEEK_HOLE in {what}")))?
            .min(obj.size);
        let mut at = data / PAGE * PAGE;
        let end = hole.div_ceil(PAGE) * PAGE;
        while at < end {
            let want = ((end - at) as usize).min(buf.len());
            obj.file
                .read_exact_at(&mut buf[..want], at)
                .map_err(DumpError::io(format!("read {what} at offset {at}")))?;
            out.add(at, &buf[..want])
                .map_err(|source| DumpError::Image {
                    op: what.clone(),
                    source,
                })?;
            count.pages += want as u64 / PAGE;
            count.bytes += want as u64;
            at += want as u64;
        }
        pos = end.max(data + PAGE);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, map_flags: u32) -> Vma {
        Vma {
            start,
            end: start + PAGE,
            prot: PROT_READ,
            map_flags,
            madvise: 0,
            backing: VmaBacking::Anonymous,
        }
    }

    fn object(id: u32, fd: &std::os::fd::OwnedFd) -> SharedObject {
        let size = rustix::fs::fstat(fd).unwrap().st_size as u64;
        SharedObject {
            id: PagesId(id),
            file: File::from(fd.try_clone().unwrap()),
            size,
        }
    }

    fn view(start: u64, content: u32, size: u64) -> Vma {
        Vma {
            start,
            end: start + PAGE,
            prot: PROT_READ,
            map_flags: MAP_SHARED,
            madvise: 0,
            backing: VmaBacking::SharedAnonymous {
                content: PagesId(content),
                size,
                offset: 0,
            },
        }
    }

    fn contents(layout: &Layout) -> Vec<u32> {
        layout
            .vmas
            .iter()
            .map(|v| match v.backing {
                VmaBacking::SharedAnonymous { content, .. } => content.0,
                _ => 0,
            })
            .collect()
    }

    /// Real shmem objects (as `MAP_SHARED|MAP_ANONYMOUS` makes them): one that two "members"
    /// see is saved by the first only, and the second's views point at the first's stream.
    #[test]
    fn an_object_of_several_members_is_saved_once() {
        let shared = crcli_sys::shmem::shared_anonymous_object(2 * PAGE).unwrap();
        let own = crcli_sys::shmem::shared_anonymous_object(PAGE).unwrap();
        let mut seen = SeenObjects::new();
        let mut first = Layout {
            vmas: vec![view(0x1000, 2, 2 * PAGE)],
            private: Vec::new(),
            shared: vec![object(2, &shared)],
        };
        share_across_members(10, &mut first, &mut seen).unwrap();
        assert_eq!(first.shared.len(), 1);
        assert_eq!(contents(&first), [2]);
        // The second member numbered its objects 5 (the shared one) and 6 (its own).
        let mut second = Layout {
            vmas: vec![
                view(0x1000, 5, 2 * PAGE),
                view(0x3000, 6, PAGE),
                view(0x5000, 5, 2 * PAGE),
            ],
            private: Vec::new(),
            shared: vec![object(5, &shared), object(6, &own)],
        };
        share_across_members(11, &mut second, &mut seen).unwrap();
        assert_eq!(contents(&second), [2, 6, 2]);
        let left: Vec<u32> = second.shared.iter().map(|o| o.id.0).collect();
        assert_eq!(left, [6]);
        assert_eq!(seen.len(), 2);
        // A size that disagrees with the first member's is refused, naming the pid.
        let mut third = Layout {
            vmas: vec![view(0x1000, 9, PAGE)],
            private: Vec::new(),
            shared: vec![SharedObject {
                size: PAGE,
                ..object(9, &shared)
            }],
        };
        let err = share_across_members(12, &mut third, &mut seen).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("pid 12: shared anonymous memory of 4096 bytes that an earlier process saw as 8192 bytes"),
            "{err}"
        );
    }

    #[test]
    fn vmflags_become_map_flags_and_madvise_bits() {
        let mut vmas = vec![
            vma(0x1000, MAP_PRIVATE),
            vma(0x5000, MAP_SHARED),
            vma(0x9000, MAP_PRIVATE),
        ];
        let flags = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let vmflags: VmFlags = vec![
            (0x1000, flags("rd wr mr mw me gd ac lo nr")),
            (0x5000, flags("rd mr mw me sd dc dd hg mg wf")),
            // 0x9000 has no VmFlags line; 0x7000 is no mapping.
            (0x7000, flags("gd nh")),
        ];
        apply_vmflags(&mut vmas, &vmflags);
        assert_eq!(
            vmas[0].map_flags,
            MAP_PRIVATE | MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE
        );
        assert_eq!(vmas[0].madvise, 0);
        assert_eq!(vmas[1].map_flags, MAP_SHARED);
        assert_eq!(
            vmas[1].madvise,
            MADV_BIT_DONTFORK
                | MADV_BIT_DONTDUMP
                | MADV_BIT_HUGEPAGE
                | MADV_BIT_MERGEABLE
                | MADV_BIT_WIPEONFORK
        );
        assert_eq!((vmas[2].map_flags, vmas[2].madvise), (MAP_PRIVATE, 0));
        // "nh" alone.
        let mut one = vec![vma(0x7000, MAP_PRIVATE)];
        apply_vmflags(&mut one, &vmflags);
        assert_eq!(one[0].madvise, MADV_BIT_NOHUGEPAGE);
        assert_eq!(one[0].map_flags, MAP_PRIVATE | MAP_GROWSDOWN);
    }
}
