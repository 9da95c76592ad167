//! Writing and opening whole images.
//!
//! [`Image::create`] returns an [`ImageWriter`] that writes into a temporary directory beside the
//! target; [`ImageWriter::commit`] writes the inventory, checks the whole image by opening it,
//! syncs every file and the directory (all at once, from several threads, so that a journaling
//! filesystem commits them together), and renames the directory into place (refusing to replace
//! anything). Dropping the writer, or any failure, removes the temporary directory: a crash or
//! an error never leaves a half image that looks whole.
//!
//! [`Image::open`] reads and checks all metadata up front (every record, every id, every pagemap)
//! before the caller can use any of it; page and file data are read later, chunk by chunk.
//!
//! Layout of an image directory:
//!
//! | file | holds |
//! |---|---|
//! | `inventory.img` | one [`Inventory`] record |
//! | `processes.img` | [`Process`] records |
//! | `files.img`, `files.data` | [`FileEntry`] records; content of unlinked files |
//! | `pipes.img` | [`PipeEntry`] records |
//! | `mounts.img` | [`MountEntry`] records |
//! | `fs-N.img`, `fs-N.data` | [`FsEntry`] records of lost-superblock content N; its file data |
//! | `pagemap-N.img`, `pages-N.data` | page stream N ([`crate::pages`]) |

use std::collections::{HashMap, HashSet};
use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::codec::{FileTag, RecordReader, RecordWriter};
use crate::common::{Extent, FileId, FsContentId, MountId, PagesId, PipeId};
use crate::data::{DataReader, DataWriter};
use crate::error::{ImageError, Result};
use crate::file::{FileEntry, PipeEntry};
use crate::fs::{FsContent, FsEntry};
use crate::inventory::{Contents, Inventory};
use crate::mount::MountEntry;
use crate::pages::{self, PagesReader, PagesSummary, PagesWriter};
use crate::process::Process;
use crate::{FORMAT_VERSION, MAX_CHUNK_LEN};

/// Name of the inventory file.
pub const INVENTORY: &str = "inventory.img";
/// Name of the processes file.
pub const PROCESSES: &str = "processes.img";
/// Name of the open-file-descriptions file.
pub const FILES: &str = "files.img";
/// Name of the data file with the content of unlinked files.
pub const FILES_DATA: &str = "files.data";
/// Name of the pipes file.
pub const PIPES: &str = "pipes.img";
/// Name of the mounts file.
pub const MOUNTS: &str = "mounts.img";

/// Most processes an image may hold.
pub const MAX_PROCESSES: u64 = 1 << 20;
/// Most entries of one kind (files, pipes, mounts) an image may hold.
pub const MAX_ENTRIES: u64 = 1 << 22;
/// Most entries one dumped filesystem may hold.
pub const MAX_FS_ENTRIES: u64 = 1 << 24;
/// Most encoded metadata bytes [`Image::open`] keeps in memory, over all record files: an
/// image claiming more is refused, so opening one never needs unbounded memory.
pub const MAX_METADATA_BYTES: u64 = 256 << 20;

/// The file names of dumped filesystem content `id`: (entries, data).
pub fn fs_file_names(id: FsContentId) -> (String, String) {
    (format!("fs-{}.img", id.0), format!("fs-{}.data", id.0))
}

/// An image opened for reading: all metadata, checked. See the module documentation.
#[derive(Debug)]
pub struct Image {
    dir: PathBuf,
    version: u32,
    inventory: Inventory,
    processes: Vec<Process>,
    files: Vec<FileEntry>,
    pipes: Vec<PipeEntry>,
    mounts: Vec<MountEntry>,
    fs_contents: Vec<FsContent>,
    pages: Vec<PagesSummary>,
    index: Index,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    pub(crate) processes: HashMap<u32, usize>,
    pub(crate) files: HashMap<FileId, usize>,
    pub(crate) pipes: HashMap<PipeId, usize>,
    pub(crate) mounts: HashMap<MountId, usize>,
    pub(crate) fs: HashMap<FsContentId, usize>,
    pub(crate) pages: HashMap<PagesId, usize>,
}

/// The JSON view of an image (see [`Image::to_json`]).
#[derive(Serialize)]
struct JsonView<'a> {
    format_version: u32,
    inventory: &'a Inventory,
    processes: &'a [Process],
    files: &'a [FileEntry],
    pipes: &'a [PipeEntry],
    mounts: &'a [MountEntry],
    fs_contents: &'a [FsContent],
    pages: &'a [PagesSummary],
}

/// What an [`Image::open`] may still read and build: encoded metadata bytes read so far, and
/// decoded bytes left.
struct Budget(u64, usize);

fn read_all<T: crate::codec::Record>(
    dir: &Path,
    name: &str,
    tag: FileTag,
    max: u64,
    budget: &mut Budget,
) -> Result<Vec<T>> {
    let path = dir.join(name);
    let mut r = RecordReader::open(&path, tag, max, &path)?;
    let mut out = Vec::new();
    let version = r.version();
    loop {
        let idx = r.index();
        let Some(raw) = r.next_raw()? else { break };
        budget.0 = budget.0.saturating_add(raw.len() as u64 + 8);
        if budget.0 > MAX_METADATA_BYTES {
            return Err(ImageError::Corrupt {
                path,
                record: idx,
                problem: format!(
                    "the image holds more than {MAX_METADATA_BYTES} bytes of metadata"
                ),
            });
        }
        let v = crate::codec::decode_payload_budgeted(version, raw, &mut budget.1).map_err(
            |problem| ImageError::Decode {
                path: path.clone(),
                record: idx,
                problem,
            },
        )?;
        out.push(v);
    }
    Ok(out)
}

impl Image {
    /// Starts writing a new image at `target`, which must not exist (its parent must) or be an
    /// empty directory (which the committed image then replaces atomically). See
    /// [`ImageWriter`].
    pub fn create(target: impl AsRef<Path>) -> Result<ImageWriter> {
        ImageWriter::new(target.as_ref())
    }

    /// Opens the image in `dir`, reading and checking all its metadata.
    pub fn open(dir: impl AsRef<Path>) -> Result<Image> {
        let dir = dir.as_ref().to_owned();
        let mut budget = Budget(0, crate::codec::MAX_DECODED_TOTAL_BYTES);
        let inv_path = dir.join(INVENTORY);
        let mut r = RecordReader::open(&inv_path, FileTag::Inventory, 1, &dir)?;
        let version = r.version();
        let inventory: Inventory = r.next_record()?.ok_or_else(|| ImageError::Corrupt {
            path: inv_path.clone(),
            record: 0,
            problem: "the inventory file holds no inventory".into(),
        })?;
        if r.next_record::<Inventory>()?.is_some() {
            unreachable!("RecordReader refuses a second record when max_records is 1");
        }
        if inventory.format_version != version {
            return Err(ImageError::Invalid {
                path: inv_path,
                record: 0,
                problem: format!(
                    "the inventory says format version {} but its file header says {version}",
                    inventory.format_version
                ),
            });
        }
        let processes = read_all(
            &dir,
            PROCESSES,
            FileTag::Processes,
            MAX_PROCESSES,
            &mut budget,
        )?;
        let files = read_all(&dir, FILES, FileTag::Files, MAX_ENTRIES, &mut budget)?;
        let pipes = read_all(&dir, PIPES, FileTag::Pipes, MAX_ENTRIES, &mut budget)?;
        let mounts = read_all(&dir, MOUNTS, FileTag::Mounts, MAX_ENTRIES, &mut budget)?;
        let mut fs_contents = Vec::new();
        let c = &inventory.contents;
        if c.fs_contents.len() as u64 > MAX_ENTRIES || c.pages.len() as u64 > MAX_ENTRIES {
            return Err(ImageError::Invalid {
                path: dir.join(INVENTORY),
                record: 0,
                problem: "absurd number of filesystem contents or page streams".into(),
            });
        }
        for &id in &c.fs_contents {
            let (name, _) = fs_file_names(id);
            let entries = read_all(&dir, &name, FileTag::FsContent, MAX_FS_ENTRIES, &mut budget)?;
            fs_contents.push(FsContent { id, entries });
        }
        let mut pages = Vec::new();
        for &id in &c.pages {
            pages.push(PagesReader::open(&dir, id)?.check_all(id)?);
        }
        let mut image = Image {
            dir,
            version,
            inventory,
            processes,
            files,
            pipes,
            mounts,
            fs_contents,
            pages,
            index: Index::default(),
        };
        image.index = crate::validate::check(&image)?;
        Ok(image)
    }

    /// The image directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The format version of the image.
    pub fn format_version(&self) -> u32 {
        self.version
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// All processes, in image order (parents before children when the dump wrote them so).
    pub fn processes(&self) -> &[Process] {
        &self.processes
    }

    /// The process with pid `pid`.
    pub fn process(&self, pid: u32) -> Option<&Process> {
        self.index.processes.get(&pid).map(|&i| &self.processes[i])
    }

    /// All open file descriptions.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// The open file description `id`.
    pub fn file(&self, id: FileId) -> Option<&FileEntry> {
        self.index.files.get(&id).map(|&i| &self.files[i])
    }

    /// All pipes.
    pub fn pipes(&self) -> &[PipeEntry] {
        &self.pipes
    }

    /// Pipe `id`.
    pub fn pipe(&self, id: PipeId) -> Option<&PipeEntry> {
        self.index.pipes.get(&id).map(|&i| &self.pipes[i])
    }

    /// All mounts.
    pub fn mounts(&self) -> &[MountEntry] {
        &self.mounts
    }

    /// Mount `id`.
    pub fn mount(&self, id: MountId) -> Option<&MountEntry> {
        self.index.mounts.get(&id).map(|&i| &self.mounts[i])
    }

    /// All dumped filesystem contents.
    pub fn fs_contents(&self) -> &[FsContent] {
        &self.fs_contents
    }

    /// Dumped filesystem content `id`.
    pub fn fs_content(&self, id: FsContentId) -> Option<&FsContent> {
        self.index.fs.get(&id).map(|&i| &self.fs_contents[i])
    }

    /// The page streams, with their sizes.
    pub fn page_streams(&self) -> &[PagesSummary] {
        &self.pages
    }

    /// Opens page stream `id` for reading.
    pub fn pages(&self, id: PagesId) -> Result<PagesReader> {
        if !self.index.pages.contains_key(&id) {
            return Err(ImageError::Refused {
                path: self.dir.clone(),
                problem: format!("the image has no page stream {id}"),
            });
        }
        PagesReader::open(&self.dir, id)
    }

    /// Opens the content of unlinked files (`files.data`); read the extents of a
    /// [`crate::FileKind::Unlinked`] entry with [`DataReader::read_extent`].
    pub fn files_data(&self) -> Result<DataReader> {
        DataReader::open(&self.dir.join(FILES_DATA))
    }

    /// Opens the file data of dumped filesystem content `id`; read the extents of its regular
    /// entries with [`DataReader::read_extent`].
    pub fn fs_data(&self, id: FsContentId) -> Result<DataReader> {
        if !self.index.fs.contains_key(&id) {
            return Err(ImageError::Refused {
                path: self.dir.clone(),
                problem: format!("the image has no filesystem content {id}"),
            });
        }
        DataReader::open(&self.dir.join(fs_file_names(id).1))
    }

    /// Reads every byte of data in the image (all page streams, the content of unlinked files
    /// and of dumped filesystems) and checks every chunk's checksum; returns how many bytes
    /// were checked. [`Image::open`] checks metadata only; this is the full check of an image
    /// that was copied or stored (`crcli show --verify`).
    pub fn verify_data(&self) -> Result<u64> {
        let mut buf = vec![0u8; MAX_CHUNK_LEN as usize];
        let mut total = 0u64;
        for s in &self.pages {
            let mut r = self.pages(s.id)?;
            while let Some(c) = r.next_chunk(&mut buf)? {
                total += c.len as u64;
            }
        }
        let files_data = self.files_data()?;
        for (i, f) in self.files.iter().enumerate() {
            if let crate::file::FileKind::Unlinked { extents, .. } = &f.kind {
                for e in extents {
                    files_data.read_extent(e, &mut buf, i as u64)?;
                    total += u64::from(e.len);
                }
            }
        }
        for c in &self.fs_contents {
            let data = self.fs_data(c.id)?;
            for (i, entry) in c.entries.iter().enumerate() {
                if let crate::fs::FsEntryKind::Regular { extents, .. } = &entry.kind {
                    for e in extents {
                        data.read_extent(e, &mut buf, i as u64)?;
                        total += u64::from(e.len);
                    }
                }
            }
        }
        Ok(total)
    }

    /// The whole image metadata as JSON (what `crcli show --json` prints): the inventory, every
    /// entry, and a summary of each page stream. Paths and names that are not UTF-8 are escaped
    /// (`\xNN`), raw blobs (XSAVE areas, pipe buffers, xattr values) are hex strings.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.json_view()).expect("image types serialize to JSON")
    }

    /// [`Image::to_json`] as pretty-printed text, with fields in declaration order (inventory
    /// first) rather than sorted.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.json_view()).expect("image types serialize to JSON")
    }

    fn json_view(&self) -> JsonView<'_> {
        JsonView {
            format_version: self.version,
            inventory: &self.inventory,
            processes: &self.processes,
            files: &self.files,
            pipes: &self.pipes,
            mounts: &self.mounts,
            fs_contents: &self.fs_contents,
            pages: &self.pages,
        }
    }
}

/// Removes a temporary image directory unless disarmed.
struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes an image atomically; see the module documentation.
///
/// Entries are streamed to their files as they are added; ids are checked when the image is
/// committed (which opens and checks the whole temporary image before renaming it into place).
pub struct ImageWriter {
    tmp: TempDir,
    target: PathBuf,
    replace_empty: bool,
    processes: RecordWriter,
    files: RecordWriter,
    pipes: RecordWriter,
    mounts: RecordWriter,
    files_data: DataWriter,
    pids: Vec<u32>,
    fs_started: HashSet<FsContentId>,
    fs_done: Vec<FsContentId>,
    pages_started: HashSet<PagesId>,
    pages_done: Vec<PagesSummary>,
    unsynced: Vec<Unsynced>,
}

/// A finished file of an image being written, not yet synced: [`ImageWriter::commit`] syncs
/// them all together.
pub(crate) type Unsynced = (PathBuf, File);

impl ImageWriter {
    fn new(target: &Path) -> Result<Self> {
        // CRIU's convention: the image directory may exist if it is empty; the rename at commit
        // replaces it atomically (the kernel refuses to replace a directory that is not empty).
        let replace_empty = match target.symlink_metadata() {
            Err(_) => false,
            Ok(m) if m.is_dir() => {
                let empty = std::fs::read_dir(target)
                    .map_err(|e| ImageError::io("reading", target, e))?
                    .next()
                    .is_none();
                if !empty {
                    return Err(ImageError::Exists {
                        path: target.to_owned(),
                    });
                }
                true
            }
            Ok(_) => {
                return Err(ImageError::Exists {
                    path: target.to_owned(),
                })
            }
        };
        let name = target.file_name().ok_or_else(|| ImageError::Refused {
            path: target.to_owned(),
            problem: "the target has no file name".into(),
        })?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp_path = parent.join(format!(
            ".{}.crcli-tmp-{}-{nanos}",
            name.to_string_lossy(),
            std::process::id()
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&tmp_path)
            .map_err(|e| ImageError::io("creating temporary image directory", &tmp_path, e))?;
        let tmp = TempDir {
            path: tmp_path,
            armed: true,
        };
        let p = &tmp.path;
        Ok(Self {
            processes: RecordWriter::create(&p.join(PROCESSES), FileTag::Processes)?,
            files: RecordWriter::create(&p.join(FILES), FileTag::Files)?,
            pipes: RecordWriter::create(&p.join(PIPES), FileTag::Pipes)?,
            mounts: RecordWriter::create(&p.join(MOUNTS), FileTag::Mounts)?,
            files_data: DataWriter::create(&p.join(FILES_DATA))?,
            tmp,
            target: target.to_owned(),
            replace_empty,
            pids: Vec::new(),
            fs_started: HashSet::new(),
            fs_done: Vec::new(),
            pages_started: HashSet::new(),
            pages_done: Vec::new(),
            unsynced: Vec::new(),
        })
    }

    /// The temporary directory being written (removed unless the image is committed).
    pub fn temp_dir(&self) -> &Path {
        &self.tmp.path
    }

    /// Adds a process.
    pub fn add_process(&mut self, p: &Process) -> Result<()> {
        self.processes.write(p)?;
        self.pids.push(p.pid);
        Ok(())
    }

    /// Adds an open file description.
    pub fn add_file(&mut self, f: &FileEntry) -> Result<()> {
        self.files.write(f)
    }

    /// Adds a pipe.
    pub fn add_pipe(&mut self, p: &PipeEntry) -> Result<()> {
        self.pipes.write(p)
    }

    /// Adds a mount.
    pub fn add_mount(&mut self, m: &MountEntry) -> Result<()> {
        self.mounts.write(m)
    }

    /// Stores content of an unlinked file: `data` belongs at `offset` in that file. Returns the
    /// extents to put in its [`crate::FileKind::Unlinked`] entry (call again for each data
    /// region of the file, skipping holes, and concatenate the extents).
    pub fn add_unlinked_data(&mut self, offset: u64, data: &[u8]) -> Result<Vec<Extent>> {
        let mut out = Vec::new();
        self.files_data
            .append(offset, data, MAX_CHUNK_LEN as usize, &mut out)?;
        Ok(out)
    }

    /// Starts page stream `id` (each id once).
    pub fn pages(&mut self, id: PagesId) -> Result<PagesWriter<'_>> {
        if !self.pages_started.insert(id) {
            return Err(ImageError::Refused {
                path: self.tmp.path.clone(),
                problem: format!("page stream {id} was already started"),
            });
        }
        let (m, d) = pages::file_names(id);
        Ok(PagesWriter {
            map: RecordWriter::create(&self.tmp.path.join(m), FileTag::Pagemap)?,
            data: DataWriter::create(&self.tmp.path.join(d))?,
            done: &mut self.pages_done,
            id,
            next_min: 0,
            extents: Vec::new(),
            unsynced: &mut self.unsynced,
        })
    }

    /// Starts dumped filesystem content `id` (each id once).
    pub fn fs_content(&mut self, id: FsContentId) -> Result<FsWriter<'_>> {
        if !self.fs_started.insert(id) {
            return Err(ImageError::Refused {
                path: self.tmp.path.clone(),
                problem: format!("filesystem content {id} was already started"),
            });
        }
        let (m, d) = fs_file_names(id);
        Ok(FsWriter {
            entries: RecordWriter::create(&self.tmp.path.join(m), FileTag::FsContent)?,
            data: DataWriter::create(&self.tmp.path.join(d))?,
            done: &mut self.fs_done,
            id,
            unsynced: &mut self.unsynced,
        })
    }

    /// Finishes the image: fills in `inventory.format_version` and `inventory.contents`,
    /// writes the inventory, checks the whole image with [`Image::open`], syncs every file
    /// and the temporary directory (together: one fsync each, issued from several threads at
    /// once), and renames it to the target (failing, and removing everything, if the target
    /// appeared meanwhile, or if the empty directory it replaces is no longer empty), then syncs
    /// the target's parent directory. When it returns, the image is on stable storage under its
    /// final name. Returns the opened image.
    pub fn commit(mut self, mut inventory: Inventory) -> Result<Image> {
        let tmp = &self.tmp.path;
        if let Some(id) = self
            .pages_started
            .iter()
            .find(|id| !self.pages_done.iter().any(|s| s.id == **id))
        {
            return Err(ImageError::Refused {
                path: tmp.clone(),
                problem: format!("page stream {id} was started but not finished"),
            });
        }
        if let Some(id) = self.fs_started.iter().find(|id| !self.fs_done.contains(id)) {
            return Err(ImageError::Refused {
                path: tmp.clone(),
                problem: format!("filesystem content {id} was started but not finished"),
            });
        }
        let to_u32 = |n: u64, what: &str| {
            u32::try_from(n).map_err(|_| ImageError::Refused {
                path: tmp.clone(),
                problem: format!("too many {what}: {n}"),
            })
        };
        let mut unsynced = std::mem::take(&mut self.unsynced);
        let mut finish = |w: RecordWriter| -> Result<u64> {
            let path = w.path().to_owned();
            let (n, f) = w.finish_unsynced()?;
            unsynced.push((path, f));
            Ok(n)
        };
        inventory.format_version = FORMAT_VERSION;
        inventory.contents = Contents {
            pids: self.pids.clone(),
            files: to_u32(finish(self.files)?, "files")?,
            pipes: to_u32(finish(self.pipes)?, "pipes")?,
            mounts: to_u32(finish(self.mounts)?, "mounts")?,
            fs_contents: self.fs_done.clone(),
            pages: self.pages_done.iter().map(|s| s.id).collect(),
            page_bytes: self.pages_done.iter().map(|s| s.bytes).sum(),
        };
        finish(self.processes)?;
        let mut inv = RecordWriter::create(&tmp.join(INVENTORY), FileTag::Inventory)?;
        inv.write(&inventory)?;
        finish(inv)?;
        let files_data_path = self.files_data.path().to_owned();
        let (_, f) = self.files_data.finish_unsynced()?;
        unsynced.push((files_data_path, f));
        // Check everything before it gets its final name.
        let mut image = Image::open(tmp)?;
        let dir = File::open(tmp)
            .map_err(|e| ImageError::io("opening temporary image directory", tmp, e))?;
        unsynced.push((tmp.clone(), dir));
        sync_together(&unsynced)?;
        drop(unsynced);
        let parent = match self.target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            tmp,
            rustix::fs::CWD,
            &self.target,
            if self.replace_empty {
                rustix::fs::RenameFlags::empty()
            } else {
                rustix::fs::RenameFlags::NOREPLACE
            },
        )
        .map_err(|e| ImageError::Io {
            op: "renaming the temporary image into place at",
            path: self.target.clone(),
            source: e.into(),
        })?;
        let mut guard = self.tmp;
        guard.armed = false;
        sync_dir(&parent)?;
        // Same files, new name: no need to read them again.
        image.dir = self.target.clone();
        Ok(image)
    }
}

/// The most threads [`sync_together`] uses.
const SYNC_THREADS: usize = 16;
/// `statfs.f_type` of tmpfs (linux/magic.h).
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `statfs.f_type` of ramfs (linux/magic.h).
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Syncs every file (one fsync each), from up to [`SYNC_THREADS`] threads at once: a
/// journaling filesystem (ext4's jbd2, XFS's log) then commits them in one or a few journal
/// transactions instead of one per file. One after the other on tmpfs and ramfs, or if no
/// thread could be started.
fn sync_together(files: &[Unsynced]) -> Result<()> {
    let sync = |(path, f): &Unsynced| {
        f.sync_all().map_err(|e| {
            let what = if f.metadata().is_ok_and(|m| m.is_dir()) {
                "syncing directory"
            } else {
                "syncing"
            };
            ImageError::io(what, path, e)
        })
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> Result<()> {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(item) = files.get(i) else {
                return Ok(());
            };
            sync(item)?;
        }
    };
    // On tmpfs and ramfs an fsync does nothing: threads would only cost time.
    let in_memory = files
        .first()
        .is_some_and(|(_, f)| rustix::fs::fstatfs(f).is_ok_and(|s| in_memory_fs(&s)));
    let helpers = if in_memory {
        0
    } else {
        files.len().min(SYNC_THREADS).saturating_sub(1)
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..helpers)
            .map_while(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        // This thread works too, and finishes the list if no helper could start.
        let mut result = work();
        for h in handles {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Whether a filesystem keeps its files in memory only (tmpfs, ramfs): fsync does nothing.
fn in_memory_fs(s: &rustix::fs::StatFs) -> bool {
    // f_type's integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let t = s.f_type as i64;
    matches!(t, TMPFS_MAGIC | RAMFS_MAGIC)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("syncing directory", dir, e))
}

/// Writes the content of one lost superblock; get one from [`ImageWriter::fs_content`].
pub struct FsWriter<'a> {
    entries: RecordWriter,
    data: DataWriter,
    done: &'a mut Vec<FsContentId>,
    id: FsContentId,
    unsynced: &'a mut Vec<Unsynced>,
}

impl FsWriter<'_> {
    /// Stores file data: `data` belongs at `offset` in a regular file. Returns the extents for
    /// its [`crate::FsEntryKind::Regular`] entry (call again for each data region, skipping holes,
    /// and concatenate).
    pub fn add_data(&mut self, offset: u64, data: &[u8]) -> Result<Vec<Extent>> {
        let mut out = Vec::new();
        self.data
            .append(offset, data, MAX_CHUNK_LEN as usize, &mut out)?;
        Ok(out)
    }

    /// Adds an entry (parents before children, hard-link targets before their links).
    pub fn add(&mut self, entry: &FsEntry) -> Result<()> {
        self.entries.write(entry)
    }

    /// Finishes this content: writes the trailer and flushes both files (synced by
    /// [`ImageWriter::commit`], with every other file of the image).
    pub fn finish(self) -> Result<()> {
        let entries_path = self.entries.path().to_owned();
        let data_path = self.data.path().to_owned();
        let (_, entries) = self.entries.finish_unsynced()?;
        let (_, data) = self.data.finish_unsynced()?;
        self.unsynced.push((entries_path, entries));
        self.unsynced.push((data_path, data));
        self.done.push(self.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image with two page streams and a filesystem content, committed in `parent`.
    fn commit_in(parent: &Path) {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let target = dir.path().join("img");
        let mut w = Image::create(&target).unwrap();
        for id in [1, 2] {
            let mut p = w.pages(PagesId(id)).unwrap();
            p.add(0x1000, &[id as u8; 8192]).unwrap();
            p.finish().unwrap();
        }
        let fs = w.fs_content(FsContentId(1)).unwrap();
        fs.finish().unwrap();
        let img = w.commit(Inventory::new(0, vec![])).unwrap();
        assert_eq!(img.dir(), target);
        assert_eq!(img.page_streams().len(), 2);
        // Only the image is left, under its final name.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("img")]);
        Image::open(&target).unwrap().verify_data().unwrap();
    }

    #[test]
    fn commit_syncs_on_disk_and_in_memory_filesystems() {
        // The default temporary directory (a disk here: files synced from several threads) and
        // a tmpfs (synced one after the other).
        commit_in(&std::env::temp_dir());
        let shm = Path::new("/dev/shm");
        if rustix::fs::statfs(shm).is_ok_and(|s| in_memory_fs(&s)) {
            commit_in(shm);
        } else {
            eprintln!("SKIPPED commit_syncs_on_disk_and_in_memory_filesystems (tmpfs part): /dev/shm is not a tmpfs or ramfs");
        }
    }

    #[test]
    fn sync_together_syncs_every_file_and_names_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..40 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, b"x").unwrap();
            files.push((p.clone(), File::open(&p).unwrap()));
        }
        sync_together(&files).unwrap();
        assert!(sync_together(&[]).is_ok());
        // fsync of a pipe fails with EINVAL: the error names it.
        let (r, _w) = std::io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(r));
        files.insert(17, (PathBuf::from("the-pipe"), pipe));
        let err = sync_together(&files).unwrap_err();
        assert!(err.to_string().contains("syncing the-pipe"), "{err}");
    }
}
