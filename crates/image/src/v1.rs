//! The types of format version 1 that version 2 changed, kept to decode version-1 images and
//! converted to the current types on load ([`crate::codec::decode_payload`]), through the
//! version-2 types of [`crate::v2`] and the version-3 types of [`crate::v3`].
//!
//! Version 2 added [`crate::Inventory::tree`] (namespaces and zombies) and
//! [`crate::Process::ns_pid`]; version 3 added [`crate::Thread::ns_tid`]. A version-1 image
//! converts to: no zombies, no namespace facts (`own_pid_ns` false, no UTS names, no ids),
//! `ns_pid == pid` for every process and `ns_tid == tid` for every thread. Never change these
//! types: version-1 images on disk are decoded with them.

use serde::Deserialize;

use crate::bytes::OsBytes;
use crate::common::{FileId, PagesId, Timestamp};
use crate::inventory::{Contents, KernelFeature};
use crate::process::{
    Fd, MmInfo, PendingSignals, Rlimit, RobustList, Rseq, SigAction, SigAltStack, TlsDesc,
    UserRegs, XState, MAX_FDS, MAX_THREADS, MAX_TLS, MAX_VMAS, NSIG, RLIM_NLIMITS,
};
use crate::tree::Tree;
use crate::v3::{Creds, Vma};

/// The version-1 inventory: the current one without `tree`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Inventory {
    /// See [`crate::Inventory::format_version`].
    pub format_version: u32,
    /// See [`crate::Inventory::crcli_version`].
    pub crcli_version: String,
    /// See [`crate::Inventory::dump_time`].
    pub dump_time: Timestamp,
    /// See [`crate::Inventory::kernel_release`].
    pub kernel_release: String,
    /// See [`crate::Inventory::arch`].
    pub arch: String,
    /// See [`crate::Inventory::page_size`].
    pub page_size: u32,
    /// See [`crate::Inventory::features`].
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<1024, _, _>")]
    pub features: Vec<KernelFeature>,
    /// See [`crate::Inventory::root_pid`].
    pub root_pid: u32,
    /// See [`crate::Inventory::contents`].
    pub contents: Contents,
}

impl From<Inventory> for crate::Inventory {
    fn from(v: Inventory) -> Self {
        Self {
            format_version: v.format_version,
            crcli_version: v.crcli_version,
            dump_time: v.dump_time,
            kernel_release: v.kernel_release,
            arch: v.arch,
            page_size: v.page_size,
            features: v.features,
            root_pid: v.root_pid,
            contents: v.contents,
            tree: Tree::default(),
        }
    }
}

/// The thread of format versions 1 and 2: the current one without `ns_tid`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Thread {
    pub tid: u32,
    pub comm: OsBytes,
    pub regs: UserRegs,
    pub xstate: XState,
    pub sigmask: u64,
    pub pending: PendingSignals,
    pub sigaltstack: SigAltStack,
    pub rseq: Option<Rseq>,
    pub robust_list: RobustList,
    pub clear_child_tid: u64,
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_TLS, _, _>")]
    pub tls: Vec<TlsDesc>,
}

impl Thread {
    /// The version-3 thread, with `ns_tid` given (it depends on the thread's process, see
    /// [`crate::v2::Process`]).
    pub fn with_ns_tid(self, ns_tid: u32) -> crate::v3::Thread {
        crate::v3::Thread {
            tid: self.tid,
            ns_tid,
            comm: self.comm,
            regs: self.regs,
            xstate: self.xstate,
            sigmask: self.sigmask,
            pending: self.pending,
            sigaltstack: self.sigaltstack,
            rseq: self.rseq,
            robust_list: self.robust_list,
            clear_child_tid: self.clear_child_tid,
            tls: self.tls,
            sched: None,
        }
    }
}

/// A thread decoded on its own (never a record of an image file): `ns_tid = tid`.
impl From<Thread> for crate::Thread {
    fn from(v: Thread) -> Self {
        let tid = v.tid;
        v.with_ns_tid(tid).into()
    }
}

/// The version-1 process: the version-2 one without `ns_pid`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub comm: OsBytes,
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_THREADS, _, _>")]
    pub threads: Vec<Thread>,
    pub shared_pending: PendingSignals,
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<NSIG, _, _>")]
    pub sigactions: Vec<SigAction>,
    pub creds: Creds,
    pub cwd: FileId,
    pub root: FileId,
    pub umask: u32,
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<RLIM_NLIMITS, _, _>")]
    pub rlimits: Vec<Rlimit>,
    pub personality: u32,
    pub dumpable: u32,
    pub no_new_privs: bool,
    pub child_subreaper: bool,
    pub exit_signal: u32,
    pub mm: MmInfo,
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_VMAS, _, _>")]
    pub vmas: Vec<Vma>,
    pub pages: Option<PagesId>,
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_FDS, _, _>")]
    pub fds: Vec<Fd>,
}

impl From<Process> for crate::v2::Process {
    fn from(v: Process) -> Self {
        Self {
            pid: v.pid,
            ppid: v.ppid,
            pgid: v.pgid,
            sid: v.sid,
            ns_pid: v.pid,
            comm: v.comm,
            threads: v.threads,
            shared_pending: v.shared_pending,
            sigactions: v.sigactions,
            creds: v.creds,
            cwd: v.cwd,
            root: v.root,
            umask: v.umask,
            rlimits: v.rlimits,
            personality: v.personality,
            dumpable: v.dumpable,
            no_new_privs: v.no_new_privs,
            child_subreaper: v.child_subreaper,
            exit_signal: v.exit_signal,
            mm: v.mm,
            vmas: v.vmas,
            pages: v.pages,
            fds: v.fds,
        }
    }
}

impl From<Process> for crate::Process {
    fn from(v: Process) -> Self {
        crate::v3::Process::from(crate::v2::Process::from(v)).into()
    }
}
