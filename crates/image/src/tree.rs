//! The dumped tree as a whole (format version 2): the namespaces its members live in, and its
//! zombies.
//!
//! Live members are [`crate::Process`] records; their links (`ppid`, `pgid`, `sid`) are pids as
//! the dumper saw them, and `ns_pid` is each one's pid in the tree's own PID namespace. A zombie
//! has no memory, files or threads left, only its place in the tree and its exit status, so it is
//! a small [`Zombie`] record kept in [`Tree::zombies`] (part of the inventory).
//!
//! [`Namespaces`] says which namespaces the tree has of its own: a root that is PID 1 of its own
//! PID namespace ([`Namespaces::own_pid_ns`]; the restore makes it with `CLONE_NEWPID` and gives
//! every member its `ns_pid`), a UTS namespace of its own ([`Namespaces::uts`]: the names to set
//! in a new one), and the identity of each namespace of the root ([`Namespaces::ids`]) with
//! whether it was the dumper's own.

use serde::{Deserialize, Serialize};

use crate::bytes::OsBytes;

/// The most zombies an image may hold.
pub const MAX_ZOMBIES: usize = 1 << 16;
/// The most namespace identities an image may list.
pub const MAX_NAMESPACE_IDS: usize = 64;
/// The longest host or domain name (`__NEW_UTS_LEN`), in bytes.
pub const MAX_UTS_NAME: usize = 64;

/// Tree-wide facts: namespaces and zombies.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tree {
    /// The namespaces of the tree (every member shares the root's).
    pub namespaces: Namespaces,
    /// The zombies of the tree (processes that exited and were not yet reaped by their parent),
    /// in no particular order.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_ZOMBIES, _, _>")]
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::arbitrary::any::<Zombie>(), 0..4)"
        )
    )]
    pub zombies: Vec<Zombie>,
    /// The mount tree of the tree's own mount namespace, present when the root lived in a
    /// mount namespace other than the dumper's (see [`crate::mountns`]).
    pub mount_ns: Option<crate::mountns::MountNamespace>,
}

/// The namespaces of the dumped tree.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Namespaces {
    /// The root is PID 1 of its own PID namespace: the restore creates it with `CLONE_NEWPID`
    /// and every member with its [`crate::Process::ns_pid`] in that namespace. When false, every
    /// member's `ns_pid` equals its `pid`.
    pub own_pid_ns: bool,
    /// The host and domain name, present when the tree has a UTS namespace of its own (not the
    /// dumper's): the restore sets them in a new UTS namespace.
    pub uts: Option<UtsNames>,
    /// The identity of each namespace of the root (`/proc/PID/ns/*`), for reference and for
    /// checks: whether it was the dumper's own.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_NAMESPACE_IDS, _, _>")]
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::arbitrary::any::<NamespaceId>(), 0..4)"
        )
    )]
    pub ids: Vec<NamespaceId>,
}

/// Host and domain name of a UTS namespace (`uname -n`, `domainname`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UtsNames {
    /// The host name, at most [`MAX_UTS_NAME`] bytes.
    pub hostname: OsBytes,
    /// The NIS domain name, at most [`MAX_UTS_NAME`] bytes.
    pub domainname: OsBytes,
}

/// A kind of namespace. New variants are only ever appended.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NamespaceKind {
    /// PID namespace (`/proc/PID/ns/pid`).
    Pid,
    /// Mount namespace (`mnt`).
    Mnt,
    /// Network namespace (`net`).
    Net,
    /// UTS namespace (`uts`).
    Uts,
    /// IPC namespace (`ipc`).
    Ipc,
    /// User namespace (`user`).
    User,
    /// Cgroup namespace (`cgroup`).
    Cgroup,
    /// Time namespace (`time`).
    Time,
}

impl NamespaceKind {
    /// The name of the namespace's file in `/proc/PID/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NamespaceKind::Pid => "pid",
            NamespaceKind::Mnt => "mnt",
            NamespaceKind::Net => "net",
            NamespaceKind::Uts => "uts",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::User => "user",
            NamespaceKind::Cgroup => "cgroup",
            NamespaceKind::Time => "time",
        }
    }
}

/// The identity of one namespace (the nsfs inode of `/proc/PID/ns/<kind>`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceId {
    /// Which kind.
    pub kind: NamespaceKind,
    /// `st_dev` of the nsfs file.
    pub dev: u64,
    /// `st_ino` of the nsfs file (what `readlink` shows as `kind:[ino]`).
    pub ino: u64,
    /// Whether it is the dumper's own namespace of that kind.
    pub dumpers: bool,
}

/// A zombie member of the tree: exited, not yet reaped by its parent (a live member).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zombie {
    /// Its pid, as the dumper saw it.
    pub pid: u32,
    /// Its pid in the tree's own PID namespace (equal to `pid` unless
    /// [`Namespaces::own_pid_ns`]).
    pub ns_pid: u32,
    /// Its parent, a live member of the tree.
    pub ppid: u32,
    /// Its process group id.
    pub pgid: u32,
    /// Its session id.
    pub sid: u32,
    /// Its name (`/proc/PID/comm`).
    pub comm: OsBytes,
    /// The exit status its parent will read, in `waitpid` form (`/proc/PID/stat` field 52):
    /// `code << 8` for `exit(code)`, or the signal number (plus `0x80` for a core dump) for a
    /// death by signal.
    pub exit_status: u32,
    /// The signal its parent gets when it exits (`/proc/PID/stat` field 38, normally `SIGCHLD`).
    pub exit_signal: u32,
}
