//! [`MountTable`]: the mounts of one mount namespace, indexed, with the queries crcli needs
//! (children, parent chain, the mount at a path, the mounts of one superblock).
//!
//! A table is built from mountinfo text ([`MountTable::from_mountinfo`]), from the kernel
//! (see [`crate::kernel`]), or by merging the two ([`MountTable::merge`]). Two tables of the
//! same namespace can be compared field by field with [`MountTable::differences`].

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::model::{DevId, Mount, Origin};
use crate::parse::{parse_mountinfo, ParseError};

/// The mounts of one mount namespace, in the order the source listed them.
#[derive(Debug, Clone)]
pub struct MountTable {
    mounts: Vec<Mount>,
    ns_id: Option<u64>,
    origin: Origin,
    by_old: HashMap<u32, usize>,
    by_unique: HashMap<u64, usize>,
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    access_root: Option<PathBuf>,
}

/// One way two tables of the same namespace disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// A mount (by old id) is only in the left table.
    OnlyLeft(u32),
    /// A mount (by old id) is only in the right table.
    OnlyRight(u32),
    /// A field of one mount differs.
    Field {
        /// Old id of the mount.
        old_id: u32,
        /// Name of the field.
        field: &'static str,
        /// The value in the left table (Debug form).
        left: String,
        /// The value in the right table (Debug form).
        right: String,
    },
}

impl MountTable {
    /// Builds a table from mounts in listing order. `ns_id` is the namespace's id if known.
    pub fn from_mounts(mounts: Vec<Mount>, ns_id: Option<u64>, origin: Origin) -> MountTable {
        let mut by_old = HashMap::with_capacity(mounts.len());
        let mut by_unique = HashMap::with_capacity(mounts.len());
        for (i, m) in mounts.iter().enumerate() {
            by_old.insert(m.old_id, i);
            if let Some(id) = m.id {
                by_unique.insert(id, i);
            }
        }
        let parent: Vec<Option<usize>> = mounts
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let p = match m.parent_id {
                    Some(pid) => by_unique.get(&pid).copied(),
                    None => by_old.get(&m.parent_old_id).copied(),
                };
                p.filter(|&p| p != i)
            })
            .collect();
        let mut children = vec![Vec::new(); mounts.len()];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(i);
            }
        }
        MountTable {
            mounts,
            ns_id,
            origin,
            by_old,
            by_unique,
            parent,
            children,
            access_root: None,
        }
    }

    /// Parses mountinfo text (the content of `/proc/PID/mountinfo`) into a table.
    pub fn from_mountinfo(text: &[u8], ns_id: Option<u64>) -> Result<MountTable, ParseError> {
        let mounts = parse_mountinfo(text)?
            .iter()
            .map(|e| Mount::from_mountinfo(e, ns_id))
            .collect();
        Ok(MountTable::from_mounts(mounts, ns_id, Origin::MountInfo))
    }

    /// Merges a table built from statmount with one built from mountinfo of the same
    /// namespace. Mounts are matched by old id; a matched mount takes statmount's fields and
    /// gains mountinfo's unknown tags and unmapped options (origin [`Origin::Both`]). A
    /// mount only one side lists (it appeared or vanished between the two reads) is kept as
    /// that side saw it. Order and ids follow the statmount table.
    pub fn merge(statmount: MountTable, mountinfo: MountTable) -> MountTable {
        let ns_id = statmount.ns_id.or(mountinfo.ns_id);
        let mut from_mi = mountinfo.mounts;
        let mut matched = vec![false; from_mi.len()];
        let mut mounts = statmount.mounts;
        for m in &mut mounts {
            if let Some(&i) = mountinfo.by_old.get(&m.old_id) {
                matched[i] = true;
                let mi = &mut from_mi[i];
                m.unknown_tags = std::mem::take(&mut mi.unknown_tags);
                m.other_mount_options = std::mem::take(&mut mi.other_mount_options);
                if m.source.is_none() {
                    m.source = mi.source.take();
                }
                m.origin = Origin::Both;
            }
        }
        if matched.iter().all(|&m| m) {
            // The common case: the statmount table's indexes still hold.
            return MountTable {
                mounts,
                ns_id,
                origin: Origin::Both,
                ..statmount
            };
        }
        // Mounts only mountinfo saw (attached between the two reads) go last.
        mounts.extend(
            from_mi
                .into_iter()
                .zip(matched)
                .filter(|(_, seen)| !seen)
                .map(|(m, _)| m),
        );
        MountTable::from_mounts(mounts, ns_id, Origin::Both)
    }

    /// All mounts, in listing order.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Number of mounts.
    pub fn len(&self) -> usize {
        self.mounts.len()
    }

    /// Whether the table has no mount.
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// The namespace id, when known.
    pub fn ns_id(&self) -> Option<u64> {
        self.ns_id
    }

    /// Where the caller reaches this table's mount points: `None` when they are paths of the
    /// caller's own view (its namespace and root); `/proc/PID/root` for the table of another
    /// mount namespace read through a process of it (see [`MountTable::reach`]).
    pub fn access_root(&self) -> Option<&Path> {
        self.access_root.as_deref()
    }

    /// The same table, its mount points reached through `root` (see
    /// [`MountTable::access_root`]).
    pub fn with_access_root(mut self, root: Option<PathBuf>) -> MountTable {
        self.access_root = root;
        self
    }

    /// An absolute path of this table's namespace (as its mount points are written) as the
    /// caller can open it: the path itself, or below [`MountTable::access_root`].
    pub fn reach(&self, path: &Path) -> PathBuf {
        match &self.access_root {
            None => path.to_path_buf(),
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
        }
    }

    /// Which source(s) the table was built from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The mount with this unique (64-bit) id.
    pub fn by_unique_id(&self, id: u64) -> Option<&Mount> {
        self.by_unique.get(&id).map(|&i| &self.mounts[i])
    }

    /// The mount with this old (short) id.
    pub fn by_old_id(&self, old_id: u32) -> Option<&Mount> {
        self.by_old.get(&old_id).map(|&i| &self.mounts[i])
    }

    fn index_of(&self, m: &Mount) -> Option<usize> {
        self.by_old
            .get(&m.old_id)
            .copied()
            .filter(|&i| self.mounts[i].id == m.id)
    }

    /// The parent of a mount of this table (`None` for a root, or a mount not in the table).
    pub fn parent(&self, m: &Mount) -> Option<&Mount> {
        let i = self.index_of(m)?;
        self.parent[i].map(|p| &self.mounts[p])
    }

    /// The children of a mount, in listing order.
    pub fn children(&self, m: &Mount) -> Vec<&Mount> {
        match self.index_of(m) {
            Some(i) => self.children[i].iter().map(|&c| &self.mounts[c]).collect(),
            None => Vec::new(),
        }
    }

    /// The ancestors of a mount, nearest first, up to a root of the table.
    pub fn parent_chain(&self, m: &Mount) -> Vec<&Mount> {
        let mut chain = Vec::new();
        let Some(mut i) = self.index_of(m) else {
            return chain;
        };
        // The parent relation of a consistent table has no cycle; the bound guards against a
        // table read while mounts moved.
        while let Some(p) = self.parent[i] {
            if chain.len() >= self.mounts.len() {
                break;
            }
            chain.push(&self.mounts[p]);
            i = p;
        }
        chain
    }

    /// Mounts without a parent in the table (normally one: the namespace root).
    pub fn roots(&self) -> Vec<&Mount> {
        self.parent
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_none())
            .map(|(i, _)| &self.mounts[i])
            .collect()
    }

    /// Mounts of the superblock with this device number.
    pub fn superblock_mounts(&self, dev: DevId) -> Vec<&Mount> {
        self.mounts.iter().filter(|m| m.dev == dev).collect()
    }

    /// The mount a lexical, absolute path lies on, as a path walk from the root sees it:
    /// overmounts hide what is under them. `.` and `..` components and symlinks are not
    /// resolved: pass a canonical path. `None` for a relative path or an empty table.
    pub fn mount_at(&self, path: &Path) -> Option<&Mount> {
        if !path.is_absolute() {
            return None;
        }
        let target: Vec<Component<'_>> = path.components().collect();
        let depth_if_prefix = |i: usize| -> Option<usize> {
            let mp: Vec<Component<'_>> = self.mounts[i].mount_point.components().collect();
            (mp.len() <= target.len() && mp[..] == target[..mp.len()]).then_some(mp.len())
        };
        // Start at the root (normally the only one) whose mount point is the longest prefix
        // of the path: a mount whose parent is missing from the table (read while mounts
        // changed) still answers for the paths under it.
        let mut current = (0..self.mounts.len())
            .filter(|&i| self.parent[i].is_none())
            .filter_map(|i| depth_if_prefix(i).map(|d| (d, i)))
            .max()?
            .1;
        // At each mount, the child mounted at the shortest prefix of the remaining path is the
        // one the walk crosses first (a mount on the same point covers its parent's root).
        let mut steps = 0;
        loop {
            let next = self.children[current]
                .iter()
                .filter_map(|&c| depth_if_prefix(c).map(|d| (d, c)))
                // Among siblings at one depth the walk meets the last mounted.
                .min_by_key(|&(d, c)| (d, std::cmp::Reverse(c)));
            match next {
                Some((_, c)) if steps < self.mounts.len() => {
                    current = c;
                    steps += 1;
                }
                _ => return Some(&self.mounts[current]),
            }
        }
    }

    /// Compares this table with another of the same namespace, field by field, on the fields
    /// both know (unique ids, superblock magic and namespace id are compared only when both
    /// have them). Mounts are matched by old id.
    pub fn differences(&self, other: &MountTable) -> Vec<Difference> {
        let mut out = Vec::new();
        for a in &self.mounts {
            let Some(b) = other.by_old_id(a.old_id) else {
                out.push(Difference::OnlyLeft(a.old_id));
                continue;
            };
            let mut field = |name: &'static str, l: String, r: String| {
                if l != r {
                    out.push(Difference::Field {
                        old_id: a.old_id,
                        field: name,
                        left: l,
                        right: r,
                    });
                }
            };
            macro_rules! cmp {
                ($f:ident) => {
                    field(stringify!($f), format!("{:?}", a.$f), format!("{:?}", b.$f))
                };
            }
            macro_rules! cmp_opt {
                ($f:ident) => {
                    if let (Some(x), Some(y)) = (&a.$f, &b.$f) {
                        field(stringify!($f), format!("{x:?}"), format!("{y:?}"))
                    }
                };
            }
            cmp_opt!(id);
            cmp_opt!(parent_id);
            cmp!(parent_old_id);
            cmp!(dev);
            cmp_opt!(sb_magic);
            cmp!(root);
            cmp!(mount_point);
            cmp!(fs_type);
            cmp!(fs_subtype);
            cmp!(source);
            cmp!(sb_flags);
            cmp!(fs_options);
            cmp!(attrs);
            cmp!(atime);
            cmp!(propagation);
            cmp_opt!(ns_id);
        }
        for b in &other.mounts {
            if self.by_old_id(b.old_id).is_none() {
                out.push(Difference::OnlyRight(b.old_id));
            }
        }
        out
    }
}
