//! The types of format version 2 that version 3 changed, kept to decode version-2 images and
//! converted to the current types on load ([`crate::codec::decode_payload`]), through the
//! version-3 types of [`crate::v3`].
//!
//! Version 3 added [`crate::Thread::ns_tid`] and [`crate::Process::itimers`] (converted to no
//! timer armed), so the version-2 process holds threads without it
//! (the thread of versions 1 and 2, [`crate::v1::Thread`]). A version-2 process converts to
//! `ns_tid = ns_pid` for its main thread (`tid == pid`) and `ns_tid = tid` for the others. That
//! is exact when the tree shares the dumper's PID namespace (then `ns_pid == pid`); in a PID
//! namespace of its own, version 2 did not record the other threads' ids inside it (the
//! version-2 restore refused such trees), so `tid` stands for them. Never change these types:
//! version-2 images on disk are decoded with them.

use serde::Deserialize;

use crate::bytes::OsBytes;
use crate::common::{FileId, PagesId};
use crate::process::{
    Fd, MmInfo, PendingSignals, Rlimit, SigAction, MAX_FDS, MAX_THREADS, MAX_VMAS, NSIG,
    RLIM_NLIMITS,
};
use crate::v1::Thread;
use crate::v3::{Creds, Vma};

/// The version-2 process: the current one with threads without `ns_tid`.
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
}

impl From<Process> for crate::v3::Process {
    fn from(v: Process) -> Self {
        let (pid, ns_pid) = (v.pid, v.ns_pid);
        Self {
            pid: v.pid,
            ppid: v.ppid,
            pgid: v.pgid,
            sid: v.sid,
            ns_pid: v.ns_pid,
            comm: v.comm,
            threads: v
                .threads
                .into_iter()
                .map(|t| {
                    let ns_tid = if t.tid == pid { ns_pid } else { t.tid };
                    t.with_ns_tid(ns_tid)
                })
                .collect(),
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
            itimers: crate::process::ITimers::default(),
        }
    }
}

impl From<Process> for crate::Process {
    fn from(v: Process) -> Self {
        crate::v3::Process::from(v).into()
    }
}
