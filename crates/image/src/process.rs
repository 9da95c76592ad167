//! Per-process entries (`processes.img`, one record per process): identity, threads with their
//! registers and signal state, process-wide signal dispositions, credentials, limits, the memory
//! layout and the fd table.
//!
//! Everything a process refers to outside itself is an id: its fds, cwd, root, exe and
//! file-backed mappings name [`crate::file::FileEntry`]s by [`FileId`]; its memory content is a
//! page stream named by [`PagesId`].

use serde::{Deserialize, Serialize};

use crate::bytes::{ImagePath, OsBytes};
use crate::common::{FileId, PagesId};

/// Number of signal dispositions a process has (signals 1 to 64).
pub const NSIG: usize = 64;
/// Number of resource limits (`RLIMIT_NLIMITS` on Linux).
pub const RLIM_NLIMITS: usize = 16;
/// Size of a raw `siginfo_t`, in bytes.
pub const SIGINFO_SIZE: usize = 128;
/// The most threads a process may have in an image.
pub const MAX_THREADS: usize = 1 << 16;
/// The most mappings a process may have in an image.
pub const MAX_VMAS: usize = 1 << 20;
/// The most fds a process may have in an image.
pub const MAX_FDS: usize = 1 << 20;
/// The most TLS descriptors a thread may have in an image.
pub const MAX_TLS: usize = 16;
/// The most supplementary groups (`NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;
/// The most words of an auxiliary vector.
pub const MAX_AUXV: usize = 4096;
/// The largest XSAVE area accepted, in bytes (AMX needs about 11 KiB; this leaves room).
pub const MAX_XSTATE_SIZE: usize = 64 * 1024;

/// One dumped process.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Process id, as the dumper saw it (its PID namespace). `ppid`, `pgid` and `sid` are in the
    /// same numbering.
    pub pid: u32,
    /// Parent pid; 0 for the root of the dumped tree.
    pub ppid: u32,
    /// Process group id (may be outside the tree only for the root's inherited group).
    pub pgid: u32,
    /// Session id (may be outside the tree only for the root's inherited session).
    pub sid: u32,
    /// The pid in the tree's own PID namespace (the last `NSpid` of `/proc/PID/status`) when
    /// [`crate::tree::Namespaces::own_pid_ns`] is set (the root's is then 1); else equal to
    /// `pid`. Format version 2; `pid` when converted from version 1.
    pub ns_pid: u32,
    /// The process name (`/proc/PID/comm`, `PR_SET_NAME`), at most 16 bytes.
    pub comm: OsBytes,
    /// Threads; the first is the thread-group leader (`tid == pid`).
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_THREADS, _, _>")]
    pub threads: Vec<Thread>,
    /// Signals pending for the whole process (shared pending).
    pub shared_pending: PendingSignals,
    /// The 64 signal dispositions, index 0 for signal 1.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<NSIG, _, _>")]
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::arbitrary::any::<SigAction>(), 0..=NSIG)"
        )
    )]
    pub sigactions: Vec<SigAction>,
    /// Credentials.
    pub creds: Creds,
    /// The current directory: an open file description of kind directory.
    pub cwd: FileId,
    /// The root directory: an open file description of kind directory.
    pub root: FileId,
    /// File mode creation mask.
    pub umask: u32,
    /// The 16 resource limits, indexed by `RLIMIT_*`.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<RLIM_NLIMITS, _, _>")]
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::arbitrary::any::<Rlimit>(), 0..=RLIM_NLIMITS)"
        )
    )]
    pub rlimits: Vec<Rlimit>,
    /// `personality(0xffffffff)`.
    pub personality: u32,
    /// `prctl(PR_GET_DUMPABLE)`.
    pub dumpable: u32,
    /// `prctl(PR_GET_NO_NEW_PRIVS)`.
    pub no_new_privs: bool,
    /// `prctl(PR_GET_CHILD_SUBREAPER)`.
    pub child_subreaper: bool,
    /// The signal sent to the parent on exit (`/proc/PID/stat` field 38).
    pub exit_signal: u32,
    /// Memory-descriptor fields (`PR_SET_MM_MAP`).
    pub mm: MmInfo,
    /// The memory layout, sorted by address, not overlapping.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_VMAS, _, _>")]
    pub vmas: Vec<Vma>,
    /// The page stream with the content of private and anonymous memory, if any was dumped.
    pub pages: Option<PagesId>,
    /// The fd table, sorted by fd number, no duplicates.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_FDS, _, _>")]
    pub fds: Vec<Fd>,
    /// The three interval timers (`getitimer`), process-wide. Format version 3; none armed when
    /// converted from version 2 or 1.
    pub itimers: ITimers,
}

/// The interval timers of a process (`setitimer(2)`), as `getitimer` showed them at dump time.
/// The remaining values are restored as dumped: the time the process spent frozen between dump
/// and restore is not counted.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ITimers {
    /// `ITIMER_REAL`: wall-clock time, `SIGALRM` (also what `alarm()` arms).
    pub real: ITimer,
    /// `ITIMER_VIRTUAL`: user CPU time of the process, `SIGVTALRM`.
    pub virt: ITimer,
    /// `ITIMER_PROF`: user and system CPU time of the process, `SIGPROF`.
    pub prof: ITimer,
}

/// One interval timer (`struct itimerval`), in microseconds; `value_us == 0` is disarmed.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ITimer {
    /// The period it is re-armed with after each expiry (0: one-shot).
    pub interval_us: u64,
    /// The time left until the next expiry (0: disarmed).
    pub value_us: u64,
}

/// One thread of a process.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// Thread id, as the dumper saw it (its PID namespace).
    pub tid: u32,
    /// The thread id in the tree's own PID namespace (the last `NSpid` of
    /// `/proc/PID/task/TID/status`) when [`crate::tree::Namespaces::own_pid_ns`] is set (the
    /// main thread's is then its process's [`Process::ns_pid`]); else equal to `tid`. Format
    /// version 3; when converted from version 2 or 1, see [`crate::v2`].
    pub ns_tid: u32,
    /// The thread name (`/proc/PID/task/TID/comm`).
    pub comm: OsBytes,
    /// General registers (`PTRACE_GETREGS`), including `fs_base` and `gs_base`.
    pub regs: UserRegs,
    /// Extended CPU state (`PTRACE_GETREGSET NT_X86_XSTATE`).
    pub xstate: XState,
    /// Blocked signals (bit `n - 1` for signal `n`).
    pub sigmask: u64,
    /// Signals pending for this thread only.
    pub pending: PendingSignals,
    /// The alternate signal stack (`sigaltstack`).
    pub sigaltstack: SigAltStack,
    /// The registered rseq area, if any (`PTRACE_GET_RSEQ_CONFIGURATION`).
    pub rseq: Option<Rseq>,
    /// The robust futex list (`get_robust_list`).
    pub robust_list: RobustList,
    /// `clear_child_tid` (`PR_GET_TID_ADDRESS`).
    pub clear_child_tid: u64,
    /// 32-bit TLS descriptors in the GDT (`PTRACE_GET_THREAD_AREA`); usually empty on x86_64,
    /// where TLS is `fs_base`.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_TLS, _, _>")]
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::arbitrary::any::<TlsDesc>(), 0..=MAX_TLS)"
        )
    )]
    pub tls: Vec<TlsDesc>,
    /// Scheduling policy, priority, nice value and CPU affinity. Format version 3; `None` when
    /// converted from version 2 or 1 (not recorded: the restore leaves the thread's defaults).
    pub sched: Option<Sched>,
}

/// The most 64-bit words of a CPU affinity mask (8192 CPUs).
pub const MAX_AFFINITY_WORDS: usize = 128;

/// A thread's scheduling settings (`sched_getattr`, `getpriority`, `sched_getaffinity`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Sched {
    /// `SCHED_OTHER` (0), `SCHED_FIFO` (1), `SCHED_RR` (2), `SCHED_BATCH` (3), `SCHED_IDLE` (5),
    /// `SCHED_DEADLINE` (6).
    pub policy: u32,
    /// `SCHED_FLAG_RESET_ON_FORK` (1) or 0.
    pub flags: u64,
    /// The static priority (1 to 99 for `SCHED_FIFO` and `SCHED_RR`, else 0).
    pub priority: u32,
    /// The nice value, -20 to 19 (`getpriority(PRIO_PROCESS, tid)`).
    pub nice: i32,
    /// `SCHED_DEADLINE` runtime, deadline and period, in nanoseconds (0 for other policies).
    pub deadline: [u64; 3],
    /// The CPUs the thread may run on: bit `n % 64` of word `n / 64` for CPU `n`. Empty when
    /// the thread was not restricted (it could run on every CPU the dumper could use): the
    /// restore then leaves it on every CPU of the restoring machine.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_AFFINITY_WORDS, _, _>")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::collection::vec(proptest::arbitrary::any::<u64>(), 0..=4)")
    )]
    pub affinity: Vec<u64>,
}

/// The x86_64 `struct user_regs_struct`, field for field, in the kernel's order.
#[allow(missing_docs)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// The extended CPU state of a thread, as raw XSAVE bytes, with what a restore must check: the
/// size of the XSAVE area and the enabled feature mask (XCR0) of the dumping CPU.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct XState {
    /// Size of the XSAVE area on the dumping CPU, in bytes (`data.len()`).
    pub size: u32,
    /// XCR0 of the dumping CPU (the features enabled in the XSAVE area).
    pub features: u64,
    /// The XSAVE area, at most [`MAX_XSTATE_SIZE`] bytes.
    #[serde(with = "crate::bytes::hex")]
    pub data: Vec<u8>,
}

/// Pending signals: a mask and, for each queued signal, its raw `siginfo_t`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PendingSignals {
    /// Pending signals (bit `n - 1` for signal `n`).
    pub mask: u64,
    /// Queued signals in delivery order (`PTRACE_PEEKSIGINFO`), each [`SIGINFO_SIZE`] bytes.
    #[serde(with = "crate::bytes::hex::list")]
    pub queued: Vec<Vec<u8>>,
}

/// One signal disposition (`struct sigaction` as the kernel sees it).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SigAction {
    /// Handler address, or 0 (`SIG_DFL`) or 1 (`SIG_IGN`).
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked during the handler.
    pub mask: u64,
}

/// An alternate signal stack (`stack_t`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SigAltStack {
    /// Stack base.
    pub sp: u64,
    /// `SS_*` flags (`SS_DISABLE` when there is none).
    pub flags: u32,
    /// Stack size.
    pub size: u64,
}

/// A registered rseq area.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rseq {
    /// Address of `struct rseq`.
    pub ptr: u64,
    /// Its registered length.
    pub len: u32,
    /// The signature it was registered with.
    pub sig: u32,
}

/// A robust futex list (`get_robust_list`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RobustList {
    /// List head address (0 when none).
    pub head: u64,
    /// Length of the head structure.
    pub len: u64,
}

/// A 32-bit TLS descriptor (`struct user_desc`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TlsDesc {
    /// GDT entry number.
    pub entry_number: u32,
    /// Base address.
    pub base_addr: u32,
    /// Limit.
    pub limit: u32,
    /// The packed flag bits of `struct user_desc` (seg_32bit, contents, …).
    pub flags: u32,
}

/// One resource limit (`struct rlimit64`); `u64::MAX` is `RLIM_INFINITY`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rlimit {
    /// Soft limit.
    pub cur: u64,
    /// Hard limit.
    pub max: u64,
}

/// Credentials (`/proc/PID/status`).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Creds {
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gids: [u32; 4],
    /// Supplementary groups.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_GROUPS, _, _>")]
    pub groups: Vec<u32>,
    /// Inheritable capabilities.
    pub cap_inh: u64,
    /// Permitted capabilities.
    pub cap_prm: u64,
    /// Effective capabilities.
    pub cap_eff: u64,
    /// Bounding set.
    pub cap_bnd: u64,
    /// Ambient capabilities.
    pub cap_amb: u64,
    /// `prctl(PR_GET_SECUREBITS)`.
    pub securebits: u32,
}

/// Memory-descriptor fields, as `prctl(PR_SET_MM, PR_SET_MM_MAP)` takes them.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MmInfo {
    /// Start of the code segment.
    pub start_code: u64,
    /// End of the code segment.
    pub end_code: u64,
    /// Start of the data segment.
    pub start_data: u64,
    /// End of the data segment.
    pub end_data: u64,
    /// Start of the heap.
    pub start_brk: u64,
    /// Current program break.
    pub brk: u64,
    /// Start of the stack.
    pub start_stack: u64,
    /// Start of the arguments.
    pub arg_start: u64,
    /// End of the arguments.
    pub arg_end: u64,
    /// Start of the environment.
    pub env_start: u64,
    /// End of the environment.
    pub env_end: u64,
    /// The auxiliary vector (`/proc/PID/auxv`), as pairs of words, including the final AT_NULL.
    #[serde(deserialize_with = "crate::bytes::bounded_vec::<MAX_AUXV, _, _>")]
    pub auxv: Vec<u64>,
    /// The executable's path as `/proc/PID/exe` showed it.
    pub exe_path: ImagePath,
    /// The executable as an open file description, when crcli could open it.
    pub exe_file: Option<FileId>,
}

/// `Vma::prot` bit: readable.
pub const PROT_READ: u32 = 0x1;
/// `Vma::prot` bit: writable.
pub const PROT_WRITE: u32 = 0x2;
/// `Vma::prot` bit: executable.
pub const PROT_EXEC: u32 = 0x4;

/// One memory mapping (`/proc/PID/maps` line, with smaps details).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    /// Start address, page aligned.
    pub start: u64,
    /// End address (exclusive), page aligned, above `start`.
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `MAP_*` bits the mapping needs when recreated: `MAP_SHARED` (0x01) or `MAP_PRIVATE`
    /// (0x02), plus e.g. `MAP_GROWSDOWN` (0x100), `MAP_NORESERVE` (0x4000), `MAP_LOCKED` (0x2000).
    pub map_flags: u32,
    /// `MADV_*`-visible state from smaps VmFlags, as bits of [`Vma`]'s `MADV_BIT_*` constants.
    pub madvise: u32,
    /// What the mapping maps.
    pub backing: VmaBacking,
}

/// `Vma::madvise` bit: `MADV_DONTFORK` (VmFlags `dc`).
pub const MADV_BIT_DONTFORK: u32 = 0x1;
/// `Vma::madvise` bit: `MADV_DONTDUMP` (VmFlags `dd`).
pub const MADV_BIT_DONTDUMP: u32 = 0x2;
/// `Vma::madvise` bit: `MADV_HUGEPAGE` (VmFlags `hg`).
pub const MADV_BIT_HUGEPAGE: u32 = 0x4;
/// `Vma::madvise` bit: `MADV_NOHUGEPAGE` (VmFlags `nh`).
pub const MADV_BIT_NOHUGEPAGE: u32 = 0x8;
/// `Vma::madvise` bit: `MADV_MERGEABLE` (VmFlags `mg`).
pub const MADV_BIT_MERGEABLE: u32 = 0x10;
/// `Vma::madvise` bit: `MADV_WIPEONFORK` (VmFlags `wf`).
pub const MADV_BIT_WIPEONFORK: u32 = 0x20;

/// What a mapping maps.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaBacking {
    /// Private anonymous memory; its present pages are in the process's page stream.
    Anonymous,
    /// A file, from `offset` (bytes, page aligned). For private mappings, pages that differ from
    /// the file are in the process's page stream.
    File {
        /// The mapped file.
        file: FileId,
        /// Offset in the file of `start`.
        offset: u64,
    },
    /// `[heap]`.
    Heap,
    /// `[stack]`.
    Stack,
    /// `[vdso]`.
    Vdso,
    /// `[vvar]`.
    Vvar,
    /// `[vvar_vclock]`.
    VvarVclock,
    /// `[vsyscall]` (the same in every process; never dumped).
    Vsyscall,
    /// Shared anonymous memory (`MAP_SHARED|MAP_ANONYMOUS`, `/dev/zero (deleted)`); mappings of
    /// one object share `content`, the page stream holding it (addresses are offsets in the
    /// object), in one process or in several processes of the tree (an object mapped before a
    /// fork): the restore makes one object for all of them.
    SharedAnonymous {
        /// The page stream with the object's content.
        content: PagesId,
        /// The object's size in bytes.
        size: u64,
        /// Offset in the object of `start`.
        offset: u64,
    },
}

/// One fd of a process.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    /// The fd number.
    pub fd: u32,
    /// The open file description it refers to.
    pub file: FileId,
    /// Whether `FD_CLOEXEC` is set.
    pub cloexec: bool,
}
