//! Tying files to mounts: the target's mount table (crcli-mountinfo, listmount + statmount +
//! mountinfo merged) and the image's mount entries for the mounts its files live on.
//!
//! Only attached mounts are handled here yet: the target's namespace, or crcli's own when the
//! target entered a namespace of its own but still holds fds from crcli's. A file whose mount is
//! in no mount table (unmounted or anonymous) is refused by the caller with a clear message.
//! TODO(next issue): use `crcli_mountinfo::resolve_fd` for unmounted and anonymous mounts and
//! record their rebuild plans.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;

use crcli_image::{ImagePath, MountEntry, MountId, MountKind, OsBytes};
use crcli_mountinfo::kernel::Namespace;
use crcli_mountinfo::{Mount, MountTable, SbFlags};

use crate::error::DumpError;

const MS_UNBINDABLE: u64 = 1 << 17;
const MS_PRIVATE: u64 = 1 << 18;
const MS_SLAVE: u64 = 1 << 19;
const MS_SHARED: u64 = 1 << 20;

/// The target's mounts and the image entries made so far.
#[derive(Debug)]
pub(crate) struct Mounts {
    table: MountTable,
    /// crcli's own namespace, when it differs from the target's (read on first need): a
    /// process that entered a new mount namespace may still hold fds on mounts of the old one.
    own: Option<Option<MountTable>>,
    same_namespace: bool,
    entries: Vec<MountEntry>,
    by_old_id: HashMap<u32, MountId>,
}

impl Mounts {
    /// Reads the mount table of the target's mount namespace.
    pub fn load(pid: i32) -> Result<Mounts, DumpError> {
        let table = MountTable::of(Namespace::Pid(pid)).map_err(|source| DumpError::Mounts {
            op: format!("read the mount table of pid {pid}"),
            source,
        })?;
        let ns_of = |p: &str| {
            std::fs::metadata(p)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        };
        let same_namespace = ns_of(&format!("/proc/{pid}/ns/mnt")) == ns_of("/proc/self/ns/mnt");
        Ok(Mounts {
            table,
            own: None,
            same_namespace,
            entries: Vec::new(),
            by_old_id: HashMap::new(),
        })
    }

    /// The mount tables known: the target's namespace first, then crcli's if it was read.
    pub fn tables(&self) -> Vec<&MountTable> {
        let mut out = vec![&self.table];
        if let Some(Some(own)) = &self.own {
            out.push(own);
        }
        out
    }

    /// The mount entries made so far, in id order.
    pub fn entries(&self) -> &[MountEntry] {
        &self.entries
    }

    /// The image mount of a file on mount `old_id` (fdinfo's `mnt_id`) seen at `path` (an
    /// absolute path, as /proc's links show it), and the file's path relative to that mount's
    /// root. `None` when the mount is in no mount table of the target (unmounted, anonymous) or
    /// the path does not lie under its mount point.
    pub fn locate(
        &mut self,
        old_id: u32,
        path: &[u8],
    ) -> Result<Option<(MountId, ImagePath)>, DumpError> {
        if self.own.is_none() && !self.same_namespace && self.table.by_old_id(old_id).is_none() {
            self.own = Some(MountTable::of(Namespace::Current).ok());
        }
        let found = self.table.by_old_id(old_id).or_else(|| {
            self.own
                .as_ref()
                .and_then(|t| t.as_ref())
                .and_then(|t| t.by_old_id(old_id))
        });
        let Some(mount) = found else {
            return Ok(None);
        };
        let Some(rel) = relative_to(path, mount.mount_point.as_os_str().as_bytes()) else {
            return Ok(None);
        };
        let rel = ImagePath::new(rel.to_vec()).map_err(|e| DumpError::Parse {
            what: format!("path {:?}", String::from_utf8_lossy(path)),
            detail: e.to_string(),
        })?;
        if let Some(id) = self.by_old_id.get(&old_id) {
            return Ok(Some((*id, rel)));
        }
        let id = MountId(self.entries.len() as u32 + 1);
        let entry = entry_of(id, mount)?;
        self.entries.push(entry);
        self.by_old_id.insert(old_id, id);
        Ok(Some((id, rel)))
    }
}

/// `path` relative to `mount_point` (no leading `/`), if it lies under it.
fn relative_to<'a>(path: &'a [u8], mount_point: &[u8]) -> Option<&'a [u8]> {
    if mount_point == b"/" {
        return path.strip_prefix(b"/");
    }
    let rest = path.strip_prefix(mount_point)?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix(b"/")
}

fn image_path(what: &str, bytes: &[u8]) -> Result<ImagePath, DumpError> {
    ImagePath::new(bytes.to_vec()).map_err(|e| DumpError::Parse {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

fn entry_of(id: MountId, m: &Mount) -> Result<MountEntry, DumpError> {
    let what = format!("mount {}", m.old_id);
    let mut super_options = String::from(if m.sb_flags.contains(SbFlags::RDONLY) {
        "ro"
    } else {
        "rw"
    });
    for (name, flag) in [
        ("sync", SbFlags::SYNCHRONOUS),
        ("dirsync", SbFlags::DIRSYNC),
        ("lazytime", SbFlags::LAZYTIME),
    ] {
        if m.sb_flags.contains(flag) {
            super_options.push(',');
            super_options.push_str(name);
        }
    }
    for o in &m.fs_options {
        super_options.push(',');
        super_options.push_str(&o.to_string_lossy());
    }
    let p = &m.propagation;
    let mut propagation = 0;
    if p.shared.is_some() {
        propagation |= MS_SHARED;
    }
    if p.master.is_some() {
        propagation |= MS_SLAVE;
    }
    if p.is_private() {
        propagation |= MS_PRIVATE;
    }
    if p.unbindable {
        propagation |= MS_UNBINDABLE;
    }
    Ok(MountEntry {
        id,
        kind: MountKind::Attached,
        unique_id: m.id.unwrap_or(0),
        old_id: m.old_id,
        parent_unique_id: m.parent_id.unwrap_or(0),
        parent: None,
        mnt_ns_id: m.ns_id,
        root: image_path(&what, m.root.as_os_str().as_bytes())?,
        mountpoint: Some(image_path(&what, m.mount_point.as_os_str().as_bytes())?),
        fs_type: m.fs_type.clone(),
        fs_subtype: m.fs_subtype.clone(),
        source: match &m.source {
            Some(s) => Some(
                OsBytes::new(s.as_bytes().to_vec()).map_err(|e| DumpError::Parse {
                    what: what.clone(),
                    detail: e.to_string(),
                })?,
            ),
            None => None,
        },
        super_options,
        dev_major: m.dev.major,
        dev_minor: m.dev.minor,
        attributes: m.attrs.bits() | m.atime.mount_attr(),
        propagation,
        peer_group: p.shared.unwrap_or(0),
        master: p.master.unwrap_or(0),
        propagate_from: p.propagate_from.unwrap_or(0),
        rebuild: None,
        kept_fds: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::relative_to;

    #[test]
    fn paths_relative_to_mount_points() {
        assert_eq!(relative_to(b"/a/b", b"/"), Some(&b"a/b"[..]));
        assert_eq!(relative_to(b"/", b"/"), Some(&b""[..]));
        assert_eq!(relative_to(b"/tmp/x/f", b"/tmp/x"), Some(&b"f"[..]));
        assert_eq!(relative_to(b"/tmp/x", b"/tmp/x"), Some(&b""[..]));
        assert_eq!(relative_to(b"/tmp/xy/f", b"/tmp/x"), None);
        assert_eq!(relative_to(b"/usr", b"/tmp"), None);
    }
}
