//! The types of format version 3 that version 4 changed, kept to decode version-3 images and
//! converted to the current types on load ([`crate::codec::decode_payload`]). Versions 1 and 2
//! convert through these types too ([`crate::v1`], [`crate::v2`]).
//!
//! Version 4 extends the process, the thread, the credentials, the mapping and the open file
//! description with state that version 3 did not record; a version-3 image converts to "none
//! recorded" for each (see the current types' docs, which say what each field converts to).
//! Never change these types: version-3 images on disk are decoded with them.

use serde::Deserialize;

use crate::bytes::OsBytes;
use crate::common::{FileId, PagesId};
use crate::file::FileKind;
use crate::process::{
    Fd, ITimers, MmInfo, PendingSignals, Rlimit, RobustList, Rseq, Sched, SigAction, SigAltStack,
    TlsDesc, UserRegs, VmaBacking, XState, MAX_FDS, MAX_GROUPS, MAX_THREADS, MAX_TLS, MAX_VMAS,
    NSIG, RLIM_NLIMITS,
};

/// The version-3 process.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub ns_pid: u32,
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
    pub itimers: ITimers,
}

/// The version-3 thread.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Thread {
    pub tid: u32,
    pub ns_tid: u32,
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
    pub sched: Option<Sched>,
}

/// The credentials of versions 1 to 3.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Creds {
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_GROUPS, _, _>")]
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub securebits: u32,
}

/// The mapping of versions 1 to 3.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub map_flags: u32,
    pub madvise: u32,
    pub backing: VmaBacking,
}

/// The open file description of versions 1 to 3.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileEntry {
    pub id: crate::common::FileId,
    pub flags: u32,
    pub pos: u64,
    pub kind: FileKind,
}

impl From<Process> for crate::Process {
    fn from(v: Process) -> Self {
        Self {
            pid: v.pid,
            ppid: v.ppid,
            pgid: v.pgid,
            sid: v.sid,
            ns_pid: v.ns_pid,
            comm: v.comm,
            threads: v.threads.into_iter().map(Into::into).collect(),
            shared_pending: v.shared_pending,
            sigactions: v.sigactions,
            creds: v.creds.into(),
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
            vmas: v.vmas.into_iter().map(Into::into).collect(),
            pages: v.pages,
            fds: v.fds,
            itimers: v.itimers,
        }
    }
}

impl From<Thread> for crate::Thread {
    fn from(v: Thread) -> Self {
        Self {
            tid: v.tid,
            ns_tid: v.ns_tid,
            comm: v.comm,
            regs: v.regs,
            xstate: v.xstate,
            sigmask: v.sigmask,
            pending: v.pending,
            sigaltstack: v.sigaltstack,
            rseq: v.rseq,
            robust_list: v.robust_list,
            clear_child_tid: v.clear_child_tid,
            tls: v.tls,
            sched: v.sched,
        }
    }
}

impl From<Creds> for crate::Creds {
    fn from(v: Creds) -> Self {
        Self {
            uids: v.uids,
            gids: v.gids,
            groups: v.groups,
            cap_inh: v.cap_inh,
            cap_prm: v.cap_prm,
            cap_eff: v.cap_eff,
            cap_bnd: v.cap_bnd,
            cap_amb: v.cap_amb,
            securebits: v.securebits,
        }
    }
}

impl From<Vma> for crate::Vma {
    fn from(v: Vma) -> Self {
        Self {
            start: v.start,
            end: v.end,
            prot: v.prot,
            map_flags: v.map_flags,
            madvise: v.madvise,
            backing: v.backing,
        }
    }
}

impl From<FileEntry> for crate::FileEntry {
    fn from(v: FileEntry) -> Self {
        Self {
            id: v.id,
            flags: v.flags,
            pos: v.pos,
            kind: v.kind,
        }
    }
}
