//! The ten acceptance scenarios of SCENARIOS.md (files on unmounted and anonymous mounts), and
//! five of crcli's own (11: a file on a detached ext4 filesystem of a loop device, rebuilt by
//! remounting the device; 12: a FIFO on an unmounted bind, with buffered bytes; 13: a file
//! unlinked while open on a lost-superblock tmpfs; 14: files on an attached mount, an unmounted
//! bind and an anonymous clone at once; 15: a file unlinked while open on an unmounted bind),
//! run like CRIU's zdtm tests: each scenario is
//! the C program `progs/scenario.c` with its number; it sets its mounts and fds up, reports
//! ready, and verifies itself when told to go.
//!
//! [`SCENARIOS`] is the declaration table: per scenario what it needs from the kernel (names from
//! `crcli_sys::features::Feature`), its flavours, whether the dump must fail cleanly on a kernel
//! without `STATMOUNT_BY_FD` (Linux 6.18) and with which message fragment, and the program's
//! corrupt switches. Flavours ([`Flavour`]): `Host` (SCENARIOS.md's host flavour, below);
//! `OwnMntns` (every scenario: the program lives in its own mount namespace, kept alive by a
//! second process; crcli dumps it from the test's own namespace and restores it entered into
//! the program's: `own_mntns_*`); `FreshMntns` (2, 3, 7: crcli restores in a fresh `unshare -m`
//! copy of the namespace, where the restored program then lives: `fresh_mntns_*`). SCENARIOS.md's
//! ns flavour (PID 1 of its own PID namespace) comes with the namespaces issue.
//!
//! Every run happens in a private mount namespace made by `progs/scenario-ns.c` (`hold`): `/` made
//! recursively private, so nothing propagates to the machine and parallel tests cannot see each
//! other's mounts. The namespace outlives the scenario program, and the program, `crcli dump` and
//! `crcli restore` all run inside it (`scenario-ns enter`): this is SCENARIOS.md's host flavour —
//! the process shares its mount namespace with crcli, and the live mounts it was set up from stay
//! mounted while it is dumped, killed and restored.
//!
//! Tests, per scenario:
//! - `selfcheck_*`: the program alone (ready -> go, no crcli): it must pass, and each corrupt
//!   switch must make it fail naming the broken check; runs everywhere.
//! - `roundtrip_*`: dump, kill, restore, go: the restored program must pass, and the restore must
//!   leave no mount and no file behind (the namespace's mount table, `/` and the work directory
//!   are compared, and no mount under the work directory may appear in the test's own namespace).
//!   A kernel without what the scenario needs: the test FAILS in the VM (`CRCLI_VM=1`), else
//!   prints `SKIPPED` and returns.
//! - `failed_restore_leaves_nothing_*`: after the dump the file the process had open is removed
//!   from the live mount, so the restore must fail: it must leave no process in the namespace,
//!   no mount, and nothing in `/` or the work directory.
//! - `own_mntns_*`, `fresh_mntns_*`: `roundtrip_*` in those flavours; for a fresh copy the
//!   original namespace must hold no process after the restore, and the copy the restored
//!   program lives in must have the original's mounts (ids aside) and no other.
//! - `refused_own_mntns_*`: without BY_FD, a crcli outside the program's namespace refuses a file
//!   on an unmounted mount or an anonymous clone, naming the namespaces.
//! - `refused_*` (the scenarios with an fd on an unmounted mount, which need `STATMOUNT_BY_FD`;
//!   anonymous mounts are proven anonymous without it, see [`ANONYMOUS`]): on a kernel without it, `crcli dump`
//!   must refuse with a message naming the pid, an fd on an unmounted or anonymous mount, the
//!   reason and "Linux 7.0"; the target must run on untouched (it then passes its own checks), and
//!   no image and no mount may be left. On a kernel with BY_FD there is nothing to refuse: skipped.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crcli_e2e::{
    become_subreaper, in_vm, last_number, progs_dir, skip, wait_exit, Crcli, CrcliRun, E2eError,
    Exit, Process, Restored, Target, Trigger, Workdir, CRCLI_TIMEOUT, EXIT_TIMEOUT, READY_TIMEOUT,
    RESULT_TIMEOUT,
};
use crcli_sys::features::{Feature, Features};

/// The flavours of SCENARIOS.md, and two of crcli's own for mount namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    /// The program shares crcli's mount and PID namespaces, which outlive it.
    Host,
    /// The program lives in a mount namespace of its own (kept alive by a second process),
    /// where its mounts exist only; crcli dumps it from the test's (the machine's) namespace
    /// and restores it entered into the program's (`nsenter -m` style).
    OwnMntns,
    /// Dumped as in `Host`; restored by a crcli run in a fresh copy of the namespace
    /// (`unshare -m`): the rebuilt mounts need no mountpoint, so the restore must work there,
    /// and the restored program lives in that copy.
    FreshMntns,
    /// SCENARIOS.md's ns flavour: the program is PID 1 of its own PID namespace and sets its
    /// mounts up in a mount namespace of its own (a copy of the scenario's, with its own proc on
    /// /proc), made by `progs/scenario-pidns.c`; both die with it at the kill, so crcli must
    /// bring the whole mount namespace back, tmpfs contents included. crcli dumps and restores
    /// from the scenario's namespace.
    Ns,
}

/// How a command is run with respect to the scenario's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    /// Entered into it (`scenario-ns enter`).
    Inside,
    /// In a fresh copy of it (`scenario-ns enter-new`).
    FreshCopy,
    /// In the test's own namespace.
    Outside,
}

/// One scenario's declaration (zdtm's `.desc`).
#[derive(Debug)]
struct Scenario {
    /// The argument of `progs/scenario`.
    number: u32,
    /// SCENARIOS.md's name.
    name: &'static str,
    /// What the kernel must have for a dump and restore of it.
    needs: &'static [Feature],
    /// The flavours it runs in.
    flavours: &'static [Flavour],
    /// `Some(fragment)`: on a kernel without `STATMOUNT_BY_FD` the dump must fail cleanly, and
    /// its message must contain the fragment (besides the pid and the fd).
    dump_must_fail_on_6_18: Option<&'static str>,
    /// What crcli does with it (the rebuild plan; README's table).
    plan: &'static str,
    /// The program's corrupt switches and a fragment of the failure each must cause.
    switches: &'static [(&'static str, &'static str)],
    /// Switches whose failure must, on a kernel with `STATMOUNT_BY_FD`, also show in the BY_FD
    /// checks (this fragment): proof that those checks can fail too.
    by_fd_switches: &'static [(&'static str, &'static str)],
}

/// Every mount-aware scenario needs these: fd -> mount through BY_FD, and the new mount API to
/// rebuild the mount without a temporary mountpoint.
const MOUNT_AWARE: &[Feature] = &[
    Feature::Statmount,
    Feature::StatxMntIdUnique,
    Feature::StatmountByFd,
    Feature::NewMountApi,
    Feature::PidfdGetfd,
];
const MOUNT_AWARE_ATTR: &[Feature] = &[
    Feature::Statmount,
    Feature::StatxMntIdUnique,
    Feature::StatmountByFd,
    Feature::NewMountApi,
    Feature::MountSetattr,
    Feature::PidfdGetfd,
];
/// Anonymous mounts are told apart without BY_FD too: crcli-mountinfo's `resolve_fd` proves a
/// mount anonymous on any kernel since 6.15 (in no table, statmount by id says ENOENT, and the
/// kernel lets crcli clone it, which it allows only for attached or anonymous mounts of the
/// caller's namespace). So scenarios 7 and 8 need no BY_FD and are not refused on 6.18.
const ANONYMOUS: &[Feature] = &[
    Feature::Statmount,
    Feature::StatxMntIdUnique,
    Feature::NewMountApi,
    Feature::PidfdGetfd,
];
const ANONYMOUS_ATTR: &[Feature] = &[
    Feature::Statmount,
    Feature::StatxMntIdUnique,
    Feature::NewMountApi,
    Feature::MountSetattr,
    Feature::PidfdGetfd,
];
const REFUSAL: Option<&str> = Some("Linux 7.0");
const HOST: &[Flavour] = &[Flavour::Host, Flavour::OwnMntns, Flavour::Ns];
const HOST_FRESH: &[Flavour] = &[
    Flavour::Host,
    Flavour::OwnMntns,
    Flavour::FreshMntns,
    Flavour::Ns,
];

/// The declaration table.
static SCENARIOS: [Scenario; 15] = [
    Scenario {
        number: 1,
        name: "regular",
        needs: &[Feature::Statmount, Feature::StatxMntIdUnique, Feature::PidfdGetfd],
        flavours: HOST,
        dump_must_fail_on_6_18: None,
        plan: "attached mount: reopen the file by path on the live tmpfs",
        switches: &[
            ("data", "content differs"),
            ("pos", "position"),
            ("flags", "open flags"),
            ("mount", "want attached"),
        ],
        by_fd_switches: &[("mount", "want attached (MNT_POINT)")],
    },
    Scenario {
        number: 2,
        name: "unmounted bind",
        needs: MOUNT_AWARE,
        flavours: HOST_FRESH,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "bind of a live mount: clone the live tmpfs (open_tree), openat through the clone, close it",
        switches: &[
            ("data", "content differs"),
            ("pos", "position"),
            ("flags", "open flags"),
            ("mount", "want unmounted"),
            ("write", "not visible through"),
        ],
        by_fd_switches: &[("mount", "want unmounted (no MNT_POINT)")],
    },
    Scenario {
        number: 3,
        name: "unmounted whole filesystem",
        needs: MOUNT_AWARE_ATTR,
        flavours: HOST_FRESH,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "lost superblock: dump the reachable file (data, holes, mode, owner, mtime, xattrs); restore into a fresh tmpfs (fsmount), close its mount fd",
        switches: &[
            ("data", "content differs"),
            ("pos", "position"),
            ("mount", "want unmounted"),
            ("meta", "metadata"),
            ("hole", "holes"),
            ("xattr", "xattr"),
        ],
        by_fd_switches: &[("mount", "want unmounted (no MNT_POINT)")],
    },
    Scenario {
        number: 4,
        name: "unmounted sub-directory bind",
        needs: MOUNT_AWARE,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "bind of a live mount at a sub-root: clone the live tmpfs at /sub",
        switches: &[
            ("data", "content differs"),
            ("pos", "position"),
            ("root", "path /sub/file, want /file"),
            ("write", "not visible through the fd"),
        ],
        by_fd_switches: &[("root", "mount root /, want /sub")],
    },
    Scenario {
        number: 5,
        name: "directory and O_PATH fds",
        needs: MOUNT_AWARE,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "bind of a live mount: one clone, both fds opened through it",
        switches: &[
            ("share", "they shared one mount"),
            ("mount", "want unmounted"),
        ],
        by_fd_switches: &[("mount", "want unmounted (no MNT_POINT)")],
    },
    Scenario {
        number: 6,
        name: "read-only unmounted bind",
        needs: MOUNT_AWARE_ATTR,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "bind of a live mount: clone, mount_setattr ro,nosuid, openat, close",
        switches: &[
            ("attr", "mount flags"),
            ("write", "not visible through the fd"),
        ],
        by_fd_switches: &[("attr", "statmount mnt_attr")],
    },
    Scenario {
        number: 7,
        name: "anonymous clone",
        needs: ANONYMOUS,
        flavours: HOST_FRESH,
        dump_must_fail_on_6_18: None,
        plan: "anonymous bind of a live mount (inferred): clone, openat, keep the mount fd at its number",
        switches: &[
            ("mountfd", "mount fd"),
            ("share", "they shared one mount"),
            ("pos", "position"),
        ],
        by_fd_switches: &[("share", "want ENOENT (anonymous mount)")],
    },
    Scenario {
        number: 8,
        name: "anonymous fsmount",
        needs: ANONYMOUS_ATTR,
        flavours: HOST,
        dump_must_fail_on_6_18: None,
        plan: "lost superblock, anonymous: dump the whole tree under the mount fd; fsmount a fresh tmpfs (same size, mode, attributes), fill it, keep the mount fd",
        switches: &[
            ("tree", "tree:"),
            ("mountfd", "tree:"),
            ("share", "they shared one mount"),
        ],
        by_fd_switches: &[("share", "want ENOENT (anonymous mount)")],
    },
    Scenario {
        number: 9,
        name: "unmounted file bind",
        needs: MOUNT_AWARE,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "bind of a live mount at a file: clone the live file (root /file), reopen it through the mount fd",
        switches: &[
            ("data", "content differs"),
            ("root", "path /file, want /"),
            ("write", "not visible through"),
        ],
        by_fd_switches: &[("root", "mount root /, want /file")],
    },
    Scenario {
        number: 10,
        name: "two fds, one unmounted mount",
        needs: MOUNT_AWARE,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "bind of a live mount: one clone serves both fds; the fd on the live mount stays there",
        switches: &[
            ("share", "they shared one mount"),
            ("separate", "they were on different mounts"),
            ("flags", "open flags"),
        ],
        by_fd_switches: &[("separate", "want attached (MNT_POINT)")],
    },
    Scenario {
        number: 11,
        name: "unmounted block-device filesystem",
        needs: MOUNT_AWARE,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "re-mountable superblock: mount the block device afresh (fsopen source=/dev/loopN, fsmount), clone the sub-root /sub, openat, close",
        switches: &[
            ("data", "content differs"),
            ("pos", "position"),
            ("write", "filesystem type"),
        ],
        by_fd_switches: &[],
    },
    Scenario {
        number: 12,
        name: "FIFO on an unmounted bind",
        needs: MOUNT_AWARE,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "bind of a live mount: clone, open the FIFO through the clone (a reader-writer helper refills its buffered bytes), close the clone",
        switches: &[
            ("data", "bytes queued"),
            ("share", "they shared one mount"),
            ("mount", "want unmounted"),
        ],
        by_fd_switches: &[("mount", "want unmounted (no MNT_POINT)")],
    },
    Scenario {
        number: 13,
        name: "unlinked file on a lost superblock",
        needs: MOUNT_AWARE_ATTR,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "lost superblock: fresh tmpfs (fsmount) filled with the reachable files; the unlinked file recreated through the mount fd from its dumped content, opened, unlinked again",
        switches: &[
            ("data", "content differs"),
            ("pos", "position"),
            ("write", "want 0 (unlinked)"),
            ("share", "they shared one mount"),
        ],
        by_fd_switches: &[],
    },
    Scenario {
        number: 14,
        name: "attached, unmounted and anonymous at once",
        needs: MOUNT_AWARE,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "one live tmpfs: the attached file reopened by path; a clone for the detached bind's file, closed; a second clone for the anonymous mount fd and its file, kept at its number",
        switches: &[
            ("data", "content differs"),
            ("share", "they shared one mount"),
            ("separate", "they were on different mounts"),
        ],
        by_fd_switches: &[("separate", "want attached (MNT_POINT)")],
    },
    Scenario {
        number: 15,
        name: "unlinked file on an unmounted bind",
        needs: MOUNT_AWARE,
        flavours: HOST,
        dump_must_fail_on_6_18: REFUSAL,
        plan: "bind of a live mount: clone; the unlinked file recreated with O_TMPFILE through the clone (never visible in the live tree) from its dumped content, reopened, the clone closed",
        switches: &[
            ("data", "content differs"),
            ("pos", "position"),
            ("write", "want the live tmpfs"),
        ],
        by_fd_switches: &[],
    },
];

/// The scenario that needs a block device (crcli's own, beyond SCENARIOS.md's ten).
const BLOCK_DEVICE_SCENARIO: u32 = 11;

/// A loop device over an ext4 image in the work directory, named in `DIR/blockdev` for the
/// program; detached (`losetup -d`, lazily if still in use) on drop.
struct BlockDev {
    dev: String,
}

impl Drop for BlockDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.dev)
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs a setup tool; its stdout, or why it failed.
fn tool(program: &str, args: &[&OsStr]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether this machine can give scenario 11 its block device (the loop driver and
/// mkfs.ext4); the CRCLI_VM rule applies (the VM ships both).
fn block_device_usable(test: &str, number: u32) -> Result<bool, E2eError> {
    if number != BLOCK_DEVICE_SCENARIO {
        return Ok(true);
    }
    let why = if !Path::new("/dev/loop-control").exists() {
        Some("no loop driver (/dev/loop-control)".to_owned())
    } else {
        tool("mkfs.ext4", &["-V".as_ref()]).err()
    };
    match why {
        None => Ok(true),
        Some(why) if in_vm() => Err(unexpected(format!(
            "{test}: CRCLI_VM=1 but no block device can be made: {why}"
        ))),
        Some(why) => {
            skip(test, &format!("cannot make a block device here: {why}"));
            Ok(false)
        }
    }
}

/// For scenario 11: an ext4 image on a fresh loop device, named in `DIR/blockdev`.
fn block_device(wd: &Workdir, number: u32) -> Result<Option<BlockDev>, E2eError> {
    if number != BLOCK_DEVICE_SCENARIO {
        return Ok(None);
    }
    let img = wd.file("disk.img");
    File::create(&img)
        .and_then(|f| f.set_len(16 << 20))
        .map_err(io(format!("creating {}", img.display())))?;
    tool(
        "mkfs.ext4",
        &["-q".as_ref(), "-F".as_ref(), img.as_os_str()],
    )
    .map_err(|e| unexpected(format!("making the ext4 image: {e}")))?;
    let dev = tool(
        "losetup",
        &["-f".as_ref(), "--show".as_ref(), img.as_os_str()],
    )
    .map_err(|e| unexpected(format!("attaching a loop device: {e}")))?;
    let disk = BlockDev { dev };
    std::fs::write(wd.file("blockdev"), format!("{}\n", disk.dev))
        .map_err(io("writing DIR/blockdev".into()))?;
    Ok(Some(disk))
}

/// How long the program runs between `ready` and the dump.
const SETTLE: Duration = Duration::from_millis(100);

fn scenario(number: u32) -> &'static Scenario {
    &SCENARIOS[number as usize - 1]
}

fn prog(name: &str) -> PathBuf {
    progs_dir().join(name)
}

fn unexpected(msg: String) -> E2eError {
    E2eError::Unexpected(msg)
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> E2eError {
    move |e| unexpected(format!("{what}: {e}"))
}

/// A private mount namespace held by `scenario-ns hold` (killed on drop, which ends the
/// namespace once the processes inside are gone).
struct Ns {
    holder: Target,
}

impl Ns {
    fn new(wd: &Workdir) -> Result<Ns, E2eError> {
        let child = Command::new(prog("scenario-ns"))
            .arg("hold")
            .arg(wd.path())
            .stdin(Stdio::null())
            .stdout(log_file(wd)?)
            .stderr(log_file(wd)?)
            .spawn()
            .map_err(io("spawning scenario-ns hold".into()))?;
        let mut holder = Target::from_child(child);
        let start = Instant::now();
        while !wd.file("ns-ready").exists() {
            if let Some(exit) = holder.try_exit()? {
                return Err(unexpected(format!(
                    "scenario-ns hold ended ({exit}){}",
                    wd.details()
                )));
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(unexpected("scenario-ns hold: no ns-ready".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Ns { holder })
    }

    /// A command that runs `program` inside the namespace; with `log`, its stdin is /dev/null
    /// and its stdout and stderr go to `log`, all opened inside the namespace.
    fn command(&self, log: Option<&Path>, program: &Path) -> Command {
        self.command_at(Where::Inside, log, program)
    }

    /// [`Ns::command`] run where `at` says (`Outside`: `program` itself, `log` unused).
    fn command_at(&self, at: Where, log: Option<&Path>, program: &Path) -> Command {
        if at == Where::Outside {
            return Command::new(program);
        }
        let mut c = Command::new(prog("scenario-ns"));
        c.arg(if at == Where::FreshCopy {
            "enter-new"
        } else {
            "enter"
        })
        .arg(self.holder.pid().to_string())
        .arg(log.map_or(OsStr::new("-"), Path::as_os_str))
        .arg(program);
        c
    }

    /// The namespace's mount table, one line per mount.
    fn mounts(&self) -> Result<BTreeSet<String>, E2eError> {
        let path = format!("/proc/{}/mountinfo", self.holder.pid());
        let text = std::fs::read_to_string(&path).map_err(io(format!("reading {path}")))?;
        Ok(text.lines().map(str::to_owned).collect())
    }

    /// The names in the namespace's `/`.
    fn root_entries(&self) -> Result<BTreeSet<String>, E2eError> {
        names(&PathBuf::from(format!("/proc/{}/root/", self.holder.pid())))
    }
}

fn names(dir: &Path) -> Result<BTreeSet<String>, E2eError> {
    let rd = std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))?;
    Ok(rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

fn log_file(wd: &Workdir) -> Result<File, E2eError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(wd.file("log"))
        .map_err(io("opening the log".into()))
}

/// Starts `PROGRAM DIR N` inside the namespace (`scenario` or `scenario-static`).
fn spawn_scenario(ns: &Ns, wd: &Workdir, program: &str, number: u32) -> Result<Target, E2eError> {
    let child = ns
        .command(Some(&wd.file("log")), &prog(program))
        .arg(wd.path())
        .arg(number.to_string())
        .stdin(Stdio::null())
        .spawn()
        .map_err(io("spawning the scenario program".into()))?;
    Ok(Target::from_child(child))
}

/// Runs `crcli ARGS` inside the namespace (output into `crcli.out` / `crcli.err`), with the
/// usual timeout.
fn crcli_in(ns: &Ns, wd: &Workdir, crcli: &Crcli, args: &[&OsStr]) -> Result<CrcliRun, E2eError> {
    crcli_at(Where::Inside, ns, wd, crcli, args)
}

/// [`crcli_in`] run where `at` says.
fn crcli_at(
    at: Where,
    ns: &Ns,
    wd: &Workdir,
    crcli: &Crcli,
    args: &[&OsStr],
) -> Result<CrcliRun, E2eError> {
    let place = match at {
        Where::Inside => "in the scenario's mount namespace",
        Where::FreshCopy => "in a fresh copy of the scenario's mount namespace",
        Where::Outside => "in the test's own mount namespace",
    };
    let command = format!(
        "({place}) {} {}",
        crcli.bin().display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = File::create(wd.file("crcli.out")).map_err(io("creating crcli.out".into()))?;
    let err = File::create(wd.file("crcli.err")).map_err(io("creating crcli.err".into()))?;
    let start = Instant::now();
    let child = ns
        .command_at(at, None, crcli.bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io(format!("spawning {command}")))?;
    let mut t = Target::from_child(child);
    let exit = wait_exit(&mut t, CRCLI_TIMEOUT).map_err(|_| E2eError::Timeout {
        what: format!("running `{command}`"),
        secs: CRCLI_TIMEOUT.as_secs_f64(),
        details: wd.details(),
    })?;
    Ok(CrcliRun {
        command,
        exit,
        stdout: std::fs::read_to_string(wd.file("crcli.out")).unwrap_or_default(),
        stderr: std::fs::read_to_string(wd.file("crcli.err")).unwrap_or_default(),
        wall: start.elapsed(),
    })
}

/// The fds the program holds, from its `fds` file: (number, label, state).
fn held_fds(wd: &Workdir) -> Result<Vec<(i32, String, String)>, E2eError> {
    let text =
        std::fs::read_to_string(wd.file("fds")).map_err(io("reading the fds file".into()))?;
    text.lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            match (w.next().and_then(|n| n.parse().ok()), w.next(), w.next()) {
                (Some(n), Some(label), Some(state)) => Ok((n, label.into(), state.into())),
                _ => Err(unexpected(format!("bad line in the fds file: {l:?}"))),
            }
        })
        .collect()
}

/// Waits for the program's result and its exit. (`Workdir::wait_result` may reap the process
/// itself, which would lose its exit status; this keeps it.)
fn result_and_exit(wd: &Workdir, p: &mut dyn Process) -> Result<(String, Exit), E2eError> {
    let start = Instant::now();
    let mut exit: Option<(Exit, Instant)> = None;
    loop {
        if let Ok(text) = std::fs::read_to_string(wd.file("result")) {
            if let Some(line) = text.strip_suffix('\n') {
                let exit = match exit {
                    Some((e, _)) => e,
                    None => wait_exit(p, EXIT_TIMEOUT)?,
                };
                return Ok((line.to_owned(), exit));
            }
        }
        match exit {
            None => exit = p.try_exit()?.map(|e| (e, Instant::now())),
            // A result written just before the exit may take a moment to show.
            Some((e, when)) if when.elapsed() > Duration::from_millis(500) => {
                return Err(unexpected(format!(
                    "pid {} ended ({e}) without writing a result{}",
                    p.pid(),
                    wd.details()
                )))
            }
            Some(_) => {}
        }
        if start.elapsed() > RESULT_TIMEOUT {
            return Err(E2eError::Timeout {
                what: "waiting for the program's result".into(),
                secs: RESULT_TIMEOUT.as_secs_f64(),
                details: wd.details(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Triggers the program, requires PASS and exit status 0 (or an unknown status if it is not
/// our child, e.g. a restored process when crcli is not the test's child).
fn expect_pass(wd: &Workdir, p: &mut dyn Process, what: &str) -> Result<(), E2eError> {
    wd.trigger(Trigger::GoFile)?;
    let (result, exit) = result_and_exit(wd, p)?;
    if result != "PASS" {
        return Err(unexpected(format!(
            "{what} reported {result:?}{}",
            wd.details()
        )));
    }
    match exit {
        Exit::Code(0) | Exit::Unknown => Ok(()),
        other => Err(unexpected(format!(
            "{what} passed but ended with {other}{}",
            wd.details()
        ))),
    }
}

/// What the kernel must have for `sc` in `flavour`: `sc.needs`, and for a program in a mount
/// namespace other than crcli's also `STATMOUNT_BY_FD` for the anonymous clone (7): without it
/// an anonymous mount is proven by cloning it, which the kernel allows for a clone
/// (`open_tree`) only from the namespace it was cloned from; an `fsmount()` mount (8) belongs
/// to no namespace and can be cloned from anywhere.
fn needs(sc: &Scenario, flavour: Flavour) -> Vec<Feature> {
    let mut out = sc.needs.to_vec();
    if matches!(flavour, Flavour::OwnMntns | Flavour::Ns) && sc.number == 7 {
        out.push(Feature::StatmountByFd);
    }
    out
}

/// The kernel features `sc` needs in `flavour` that this kernel lacks.
fn missing(sc: &Scenario, flavour: Flavour) -> Vec<Feature> {
    let f = Features::current();
    needs(sc, flavour)
        .into_iter()
        .filter(|n| !f.has(*n))
        .collect()
}

/// The CRCLI_VM rule: `Ok(true)` when the test can run; prints SKIPPED and gives `Ok(false)`
/// outside the VM when something is missing; fails inside the VM.
fn can_run(test: &str, sc: &Scenario, flavour: Flavour) -> Result<bool, E2eError> {
    assert!(
        sc.flavours.contains(&flavour),
        "scenario {} does not declare the {flavour:?} flavour",
        sc.number
    );
    let missing = missing(sc, flavour);
    if missing.is_empty() {
        return block_device_usable(test, sc.number);
    }
    let list = missing
        .iter()
        .map(|f| format!("{} (Linux {})", f.name(), f.since()))
        .collect::<Vec<_>>()
        .join(", ");
    let why = format!(
        "kernel {} lacks {list}",
        Features::current().kernel_release()
    );
    if in_vm() {
        return Err(unexpected(format!("{test}: CRCLI_VM=1 but the {why}")));
    }
    skip(test, &why);
    Ok(false)
}

/// Mounts of the test's own namespace under the work directory (there must never be any: the
/// scenario's mounts live in its private namespace).
fn host_mounts_under(wd: &Workdir) -> Result<Vec<String>, E2eError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io("reading /proc/self/mountinfo".into()))?;
    let dir = wd.path().to_string_lossy().into_owned();
    Ok(text
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|mp| mp.starts_with(&dir)))
        .map(str::to_owned)
        .collect())
}

fn same_set(
    what: &str,
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    wd: &Workdir,
) -> Result<(), E2eError> {
    if before == after {
        return Ok(());
    }
    let added: Vec<_> = after.difference(before).collect();
    let gone: Vec<_> = before.difference(after).collect();
    Err(unexpected(format!(
        "{what} changed: added {added:?}, removed {gone:?}{}",
        wd.details()
    )))
}

/// Runs the program alone, optionally with a corrupt switch; returns (result, exit, log).
fn run_alone(
    program: &str,
    number: u32,
    corrupt: Option<&str>,
) -> Result<(String, Exit, String), E2eError> {
    let wd = Workdir::new(&format!("scenario{number}"))?;
    if let Some(what) = corrupt {
        wd.set_corrupt(what)?;
    }
    let ns = Ns::new(&wd)?;
    let _disk = block_device(&wd, number)?;
    let mut target = spawn_scenario(&ns, &wd, program, number)?;
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    std::thread::sleep(SETTLE);
    wd.trigger(Trigger::GoFile)?;
    let (result, exit) = result_and_exit(&wd, &mut target)?;
    let leaked = host_mounts_under(&wd)?;
    assert!(
        leaked.is_empty(),
        "mounts leaked into the test's namespace: {leaked:?}"
    );
    Ok((result, exit, wd.log()))
}

/// The program alone passes; each corrupt switch makes it fail naming the check.
fn selfcheck(test: &str, program: &str, number: u32) -> Result<(), E2eError> {
    let sc = scenario(number);
    if !block_device_usable(test, number)? {
        return Ok(());
    }
    let (result, exit, log) = run_alone(program, number, None)?;
    assert_eq!(
        (result.as_str(), exit),
        ("PASS", Exit::Code(0)),
        "scenario {number} ({}) left alone must pass; log:\n{log}",
        sc.name
    );
    let by_fd = Features::current().has(Feature::StatmountByFd);
    for (what, expect) in sc.switches {
        let (result, exit, log) = run_alone(program, number, Some(what))?;
        assert!(
            result.starts_with("FAIL: ") && exit == Exit::Code(1),
            "scenario {number} with `{what}` corrupted must fail (exit 1), got {result:?} ({exit})"
        );
        assert!(
            log.lines()
                .any(|l| l.contains(": FAIL: ") && l.contains(expect)),
            "scenario {number} with `{what}` corrupted must report {expect:?}; log:\n{log}"
        );
        let by_fd_expect = sc.by_fd_switches.iter().find(|(w, _)| w == what);
        if let (true, Some((_, expect))) = (by_fd, by_fd_expect) {
            assert!(
                log.lines()
                    .any(|l| l.contains(": FAIL: ") && l.contains(expect)),
                "scenario {number} with `{what}` corrupted must report {expect:?} from its BY_FD checks; log:\n{log}"
            );
        }
    }
    Ok(())
}

/// Dump, kill, restore, go: the restored program passes and nothing is left behind.
fn roundtrip(test: &str, program: &str, number: u32) -> Result<(), E2eError> {
    roundtrip_in(test, program, number, Flavour::Host)
}

/// [`roundtrip`] in `flavour`: where crcli dump and crcli restore run (see [`Flavour`]).
fn roundtrip_in(test: &str, program: &str, number: u32, flavour: Flavour) -> Result<(), E2eError> {
    let sc = scenario(number);
    if !can_run(test, sc, flavour)? {
        return Ok(());
    }
    let (dump_at, restore_at) = match flavour {
        Flavour::Host => (Where::Inside, Where::Inside),
        Flavour::OwnMntns => (Where::Outside, Where::Inside),
        Flavour::FreshMntns => (Where::Inside, Where::FreshCopy),
        Flavour::Ns => (Where::Inside, Where::Inside),
    };
    let crcli = Crcli::locate()?;
    become_subreaper()?;
    let wd = Workdir::new(&format!("scenario{number}"))?;
    let ns = Ns::new(&wd)?;
    let _disk = block_device(&wd, number)?;
    let mut target = if flavour == Flavour::Ns {
        spawn_scenario_pidns(&ns, &wd, program, number)?
    } else {
        spawn_scenario(&ns, &wd, program, number)?
    };
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    std::thread::sleep(SETTLE);
    let mounts_before = ns.mounts()?;
    let img = wd.img();
    // In the ns flavour the program is the helper's only child, PID 1 of its namespace; its
    // mount table is what the restore must bring back.
    let (pid, program_mounts) = if flavour == Flavour::Ns {
        let helper = target.pid();
        let child = std::fs::read_to_string(format!("/proc/{helper}/task/{helper}/children"))
            .map_err(io("reading the children of scenario-pidns".into()))?;
        let child: i32 = child
            .trim()
            .parse()
            .map_err(|_| unexpected(format!("scenario-pidns has children {child:?}")))?;
        let text = std::fs::read_to_string(format!("/proc/{child}/mountinfo"))
            .map_err(io(format!("reading the mountinfo of pid {child}")))?;
        (child, Some(ns_mount_shapes(text.lines())))
    } else {
        (target.pid(), None)
    };
    let pid = pid.to_string();
    crcli_at(
        dump_at,
        &ns,
        &wd,
        &crcli,
        &[
            "dump".as_ref(),
            "-t".as_ref(),
            pid.as_ref(),
            "-D".as_ref(),
            img.as_os_str(),
        ],
    )?
    .expect_success("dump")?;
    let exit = wait_exit(&mut target, EXIT_TIMEOUT)?;
    if exit != Exit::Signal(9) {
        return Err(unexpected(format!(
            "the dumped original ended with {exit}, want killed by signal 9{}",
            wd.details()
        )));
    }
    same_set(
        "the mount table (by the dump)",
        &mounts_before,
        &ns.mounts()?,
        &wd,
    )?;
    let root_before = ns.root_entries()?;
    let dir_before = names(wd.path())?;
    let run = crcli_at(
        restore_at,
        &ns,
        &wd,
        &crcli,
        &[
            "restore".as_ref(),
            "-D".as_ref(),
            img.as_os_str(),
            "-d".as_ref(),
        ],
    )?
    .expect_success("restore -d")?;
    let restored_pid = last_number(&run.stdout)
        .ok_or_else(|| unexpected(format!("crcli restore -d printed no pid: {:?}", run.stdout)))?;
    let mut restored = Restored::new(restored_pid);
    let inside = processes_in(&ns);
    if let Some(program_mounts) = &program_mounts {
        // The restored program lives in a new mount namespace holding the dumped mounts, as
        // PID 1 of a new PID namespace; the scenario's namespace holds no process.
        if !inside.is_empty() {
            return Err(unexpected(format!(
                "the scenario's namespace should hold no process, it holds {inside:?}"
            )));
        }
        let theirs = std::fs::read_link(format!("/proc/{restored_pid}/ns/mnt")).map_err(io(
            format!("reading the mount namespace of pid {restored_pid}"),
        ))?;
        let scenario_ns = std::fs::read_link(format!("/proc/{}/ns/mnt", ns.holder.pid()))
            .map_err(io("reading the holder's mount namespace".into()))?;
        if theirs == scenario_ns {
            return Err(unexpected(format!(
                "the restored pid {restored_pid} is in the scenario's namespace, not a new one"
            )));
        }
        let text = std::fs::read_to_string(format!("/proc/{restored_pid}/mountinfo"))
            .map_err(io(format!("reading the mountinfo of pid {restored_pid}")))?;
        same_set(
            "the restored mount namespace, ids and devices aside",
            program_mounts,
            &ns_mount_shapes(text.lines()),
            &wd,
        )?;
        let status = std::fs::read_to_string(format!("/proc/{restored_pid}/status"))
            .map_err(io(format!("reading the status of pid {restored_pid}")))?;
        let nspid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .unwrap_or_default();
        if nspid.split_whitespace().last() != Some("1") {
            return Err(unexpected(format!(
                "the restored pid {restored_pid} is not PID 1 of a PID namespace (NSpid {nspid})"
            )));
        }
    } else if restore_at == Where::FreshCopy {
        // The restored program lives in the copy crcli restored in, not in the original.
        if !inside.is_empty() {
            return Err(unexpected(format!(
                "the original namespace should hold no process, it holds {inside:?}"
            )));
        }
        let theirs = std::fs::read_link(format!("/proc/{restored_pid}/ns/mnt")).map_err(io(
            format!("reading the mount namespace of pid {restored_pid}"),
        ))?;
        let original = std::fs::read_link(format!("/proc/{}/ns/mnt", ns.holder.pid()))
            .map_err(io("reading the holder's mount namespace".into()))?;
        if theirs == original {
            return Err(unexpected(format!(
                "the restored pid {restored_pid} is in the original namespace, not a fresh copy"
            )));
        }
        // The copy has the original's mounts, and nothing more: the restore attached nothing.
        let text = std::fs::read_to_string(format!("/proc/{restored_pid}/mountinfo"))
            .map_err(io(format!("reading the mountinfo of pid {restored_pid}")))?;
        same_set(
            "the fresh namespace's mount table, ids aside (by the restore)",
            &mount_shapes(mounts_before.iter().map(String::as_str)),
            &mount_shapes(text.lines()),
            &wd,
        )?;
    } else if inside != [restored_pid] {
        return Err(unexpected(format!(
            "the namespace should hold the restored pid {restored_pid} alone, it holds {inside:?}"
        )));
    }
    same_set(
        "the mount table (by the restore)",
        &mounts_before,
        &ns.mounts()?,
        &wd,
    )?;
    same_set("/ (by the restore)", &root_before, &ns.root_entries()?, &wd)?;
    same_set(
        "the work directory (by the restore)",
        &dir_before,
        &names(wd.path())?,
        &wd,
    )?;
    expect_pass(&wd, &mut restored, &format!("restored scenario {number}"))?;
    same_set(
        "the mount table (after the run)",
        &mounts_before,
        &ns.mounts()?,
        &wd,
    )?;
    let leaked = host_mounts_under(&wd)?;
    if !leaked.is_empty() {
        return Err(unexpected(format!(
            "mounts leaked into the test's namespace: {leaked:?}"
        )));
    }
    Ok(())
}

/// mountinfo lines without the mount ids and the optional fields: what a copy of a namespace
/// shares with the original (device, root, mount point, options, type, source).
fn mount_shapes<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    lines
        .map(|l| {
            let (head, tail) = l.split_once(" - ").unwrap_or((l, ""));
            let fields: Vec<&str> = head.split(' ').collect();
            let kept = fields.get(2..6).map(|f| f.join(" ")).unwrap_or_default();
            format!("{kept} - {tail}")
        })
        .collect()
}

/// mountinfo lines without mount ids, devices and optional fields: what a namespace made again
/// shares with the dumped one (root, mount point, per-mount options, type, source, superblock
/// options). A fresh tmpfs or proc gets a new device number; its other fields stay.
fn ns_mount_shapes<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    lines
        .map(|l| {
            let (head, tail) = l.split_once(" - ").unwrap_or((l, ""));
            let fields: Vec<&str> = head.split(' ').collect();
            let kept = fields.get(3..6).map(|f| f.join(" ")).unwrap_or_default();
            format!("{kept} - {tail}")
        })
        .collect()
}

/// Starts `PROGRAM DIR N` as PID 1 of its own PID and mount namespaces (`scenario-pidns`,
/// entered from the scenario's namespace); the returned target is the helper, which ends as
/// the program does.
fn spawn_scenario_pidns(
    ns: &Ns,
    wd: &Workdir,
    program: &str,
    number: u32,
) -> Result<Target, E2eError> {
    let child = Command::new(prog("scenario-pidns"))
        .arg(ns.holder.pid().to_string())
        .arg(wd.file("log"))
        .arg(prog(program))
        .arg(wd.path())
        .arg(number.to_string())
        .stdin(Stdio::null())
        .spawn()
        .map_err(io("spawning scenario-pidns".into()))?;
    Ok(Target::from_child(child))
}

/// The processes in the namespace other than its holder.
fn processes_in(ns: &Ns) -> Vec<i32> {
    let holder = ns.holder.pid();
    let Ok(want) = std::fs::read_link(format!("/proc/{holder}/ns/mnt")) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != holder)
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l == want))
        .collect()
}

/// A restore that fails (the file the process had open is gone from the live mount) leaves no
/// process, no mount and no file behind.
fn failed_restore(test: &str, number: u32, lost: &str) -> Result<(), E2eError> {
    let sc = scenario(number);
    if !can_run(test, sc, Flavour::Host)? {
        return Ok(());
    }
    let crcli = Crcli::locate()?;
    become_subreaper()?;
    let wd = Workdir::new(&format!("scenario{number}-failed-restore"))?;
    let ns = Ns::new(&wd)?;
    let _disk = block_device(&wd, number)?;
    let mut target = spawn_scenario(&ns, &wd, "scenario", number)?;
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    std::thread::sleep(SETTLE);
    let mounts_before = ns.mounts()?;
    let img = wd.img();
    let pid = target.pid().to_string();
    crcli_in(
        &ns,
        &wd,
        &crcli,
        &[
            "dump".as_ref(),
            "-t".as_ref(),
            pid.as_ref(),
            "-D".as_ref(),
            img.as_os_str(),
        ],
    )?
    .expect_success("dump")?;
    let exit = wait_exit(&mut target, EXIT_TIMEOUT)?;
    assert_eq!(exit, Exit::Signal(9), "the dumped original must be killed");
    // The live tmpfs is mounted in the namespace only: reach it through the holder's root.
    let victim = PathBuf::from(format!("/proc/{}/root", ns.holder.pid()))
        .join(wd.path().strip_prefix("/").unwrap_or(wd.path()))
        .join(lost);
    std::fs::remove_file(&victim).map_err(io(format!("removing {}", victim.display())))?;
    let root_before = ns.root_entries()?;
    let dir_before = names(wd.path())?;
    let run = crcli_in(
        &ns,
        &wd,
        &crcli,
        &[
            "restore".as_ref(),
            "-D".as_ref(),
            img.as_os_str(),
            "-d".as_ref(),
        ],
    )?;
    let msg = format!("{}\n{}", run.stdout, run.stderr);
    assert!(
        matches!(run.exit, Exit::Code(c) if c != 0),
        "the restore must fail without {lost}, got {} (`{}`)\n{msg}",
        run.exit,
        run.command
    );
    assert!(!msg.contains("panicked"), "crcli panicked:\n{msg}");
    assert!(
        !run.stderr.trim().is_empty(),
        "the restore failed without saying why"
    );
    // Give a process that would be left behind a moment to show.
    std::thread::sleep(SETTLE);
    let left = processes_in(&ns);
    assert!(
        left.is_empty(),
        "the failed restore left processes behind: {left:?}"
    );
    same_set(
        "the mount table (by the failed restore)",
        &mounts_before,
        &ns.mounts()?,
        &wd,
    )?;
    same_set(
        "/ (by the failed restore)",
        &root_before,
        &ns.root_entries()?,
        &wd,
    )?;
    same_set(
        "the work directory (by the failed restore)",
        &dir_before,
        &names(wd.path())?,
        &wd,
    )
}

/// Without STATMOUNT_BY_FD the dump refuses, clearly, and leaves the target running untouched.
fn refused(test: &str, number: u32) -> Result<(), E2eError> {
    refused_in(test, number, Flavour::Host)
}

/// [`refused`] in `flavour`: for `OwnMntns` crcli dumps from outside the program's namespace,
/// and every scenario with a file on an unmounted or anonymous mount is refused without BY_FD
/// (anonymous ones too: see [`needs`]); the message must also name the namespaces.
fn refused_in(test: &str, number: u32, flavour: Flavour) -> Result<(), E2eError> {
    let sc = scenario(number);
    let fragment = match flavour {
        Flavour::OwnMntns => "Linux 7.0",
        _ => sc
            .dump_must_fail_on_6_18
            .expect("the scenario declares a refusal"),
    };
    assert!(
        needs(sc, flavour).contains(&Feature::StatmountByFd),
        "scenario {number} is not refused in {flavour:?}"
    );
    if !block_device_usable(test, number)? {
        return Ok(());
    }
    let dump_at = if flavour == Flavour::OwnMntns {
        Where::Outside
    } else {
        Where::Inside
    };
    if Features::current().has(Feature::StatmountByFd) {
        skip(
            test,
            "this kernel has statmount(STATMOUNT_BY_FD): the refusal is for kernels without it (Linux < 7.0)",
        );
        return Ok(());
    }
    let crcli = Crcli::locate()?;
    let wd = Workdir::new(&format!("scenario{number}-refused"))?;
    let ns = Ns::new(&wd)?;
    let _disk = block_device(&wd, number)?;
    let mut target = spawn_scenario(&ns, &wd, "scenario", number)?;
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    std::thread::sleep(SETTLE);
    let mounts_before = ns.mounts()?;
    let root_before = ns.root_entries()?;
    let img = wd.img();
    let pid = target.pid().to_string();
    let run = crcli_at(
        dump_at,
        &ns,
        &wd,
        &crcli,
        &[
            "dump".as_ref(),
            "-t".as_ref(),
            pid.as_ref(),
            "-D".as_ref(),
            img.as_os_str(),
        ],
    )?;
    let msg = format!("{}\n{}", run.stdout, run.stderr);
    assert!(
        matches!(run.exit, Exit::Code(c) if c != 0),
        "scenario {number}: crcli dump must refuse, got {} (`{}`)\n{msg}",
        run.exit,
        run.command
    );
    assert!(!msg.contains("panicked"), "crcli panicked:\n{msg}");
    assert!(
        msg.contains(&format!("pid {pid}")),
        "the refusal must name the pid ({pid}):\n{msg}"
    );
    let fds = held_fds(&wd)?;
    let named = fds
        .iter()
        .filter(|(_, _, state)| state != "attached")
        .any(|(n, _, _)| msg.contains(&format!("fd {n}")));
    assert!(
        named,
        "the refusal must name an fd on an unmounted or anonymous mount ({fds:?}):\n{msg}"
    );
    assert!(
        msg.contains(fragment),
        "the refusal must say what is needed ({fragment:?}):\n{msg}"
    );
    assert!(
        msg.contains("unmounted") || msg.contains("anonymous"),
        "the refusal must give the reason (an unmounted or anonymous mount):\n{msg}"
    );
    if dump_at == Where::Outside {
        assert!(
            msg.contains("mount namespace"),
            "the refusal must name the process's mount namespace:\n{msg}"
        );
    }
    // Left running, untouched: not stopped, same mounts, no image, and it passes its checks.
    std::thread::sleep(SETTLE);
    if let Some(exit) = target.try_exit()? {
        panic!(
            "the target ended ({exit}) after a refused dump{}",
            wd.details()
        );
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, r)| &r[..1]).unwrap_or("?");
    assert!(
        state != "T" && state != "t",
        "the target is still stopped (state {state}) after a refused dump"
    );
    let img_entries = std::fs::read_dir(&img).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        img_entries,
        0,
        "a refused dump left an image in {}",
        img.display()
    );
    same_set(
        "the mount table (by the refused dump)",
        &mounts_before,
        &ns.mounts()?,
        &wd,
    )?;
    same_set(
        "/ (by the refused dump)",
        &root_before,
        &ns.root_entries()?,
        &wd,
    )?;
    expect_pass(
        &wd,
        &mut target,
        &format!("scenario {number} after the refused dump"),
    )
}

macro_rules! selfcheck_tests {
    ($($n:literal: $name:ident $program:literal;)*) => {$(
        #[test]
        fn $name() -> Result<(), E2eError> {
            selfcheck(stringify!($name), $program, $n)
        }
    )*};
}

macro_rules! roundtrip_tests {
    ($($n:literal: $name:ident $program:literal $(#[$attr:meta])*;)*) => {$(
        #[test]
        $(#[$attr])*
        fn $name() -> Result<(), E2eError> {
            roundtrip(stringify!($name), $program, $n)
        }
    )*};
}

macro_rules! flavour_tests {
    ($flavour:ident: $($n:literal: $name:ident $program:literal;)*) => {$(
        #[test]
        fn $name() -> Result<(), E2eError> {
            roundtrip_in(stringify!($name), $program, $n, Flavour::$flavour)
        }
    )*};
}

macro_rules! refusal_tests {
    ($($n:literal: $name:ident $(#[$attr:meta])*;)*) => {$(
        #[test]
        $(#[$attr])*
        fn $name() -> Result<(), E2eError> {
            refused(stringify!($name), $n)
        }
    )*};
}

selfcheck_tests! {
    1: selfcheck_1_regular "scenario";
    1: selfcheck_1_regular_static "scenario-static";
    2: selfcheck_2_unmounted_bind "scenario";
    3: selfcheck_3_unmounted_whole_fs "scenario";
    4: selfcheck_4_unmounted_subdir_bind "scenario";
    5: selfcheck_5_dir_and_opath_fds "scenario";
    6: selfcheck_6_readonly_unmounted_bind "scenario";
    7: selfcheck_7_anonymous_clone "scenario";
    8: selfcheck_8_anonymous_fsmount "scenario";
    9: selfcheck_9_unmounted_file_bind "scenario";
    10: selfcheck_10_two_fds_one_mount "scenario";
    11: selfcheck_11_unmounted_block_device "scenario";
    12: selfcheck_12_fifo_on_unmounted_bind "scenario";
    13: selfcheck_13_unlinked_on_lost_superblock "scenario";
    14: selfcheck_14_three_kinds_at_once "scenario";
    15: selfcheck_15_unlinked_on_unmounted_bind "scenario";
}

roundtrip_tests! {
    1: roundtrip_1_regular "scenario";
    1: roundtrip_1_regular_static "scenario-static";
    2: roundtrip_2_unmounted_bind "scenario";
    3: roundtrip_3_unmounted_whole_fs "scenario";
    4: roundtrip_4_unmounted_subdir_bind "scenario";
    5: roundtrip_5_dir_and_opath_fds "scenario";
    6: roundtrip_6_readonly_unmounted_bind "scenario";
    7: roundtrip_7_anonymous_clone "scenario";
    8: roundtrip_8_anonymous_fsmount "scenario";
    9: roundtrip_9_unmounted_file_bind "scenario";
    10: roundtrip_10_two_fds_one_mount "scenario";
    11: roundtrip_11_unmounted_block_device "scenario";
    12: roundtrip_12_fifo_on_unmounted_bind "scenario";
    13: roundtrip_13_unlinked_on_lost_superblock "scenario";
    14: roundtrip_14_three_kinds_at_once "scenario";
    15: roundtrip_15_unlinked_on_unmounted_bind "scenario";
}

flavour_tests! { OwnMntns:
    1: own_mntns_1_regular "scenario";
    2: own_mntns_2_unmounted_bind "scenario";
    3: own_mntns_3_unmounted_whole_fs "scenario";
    4: own_mntns_4_unmounted_subdir_bind "scenario";
    5: own_mntns_5_dir_and_opath_fds "scenario";
    6: own_mntns_6_readonly_unmounted_bind "scenario";
    7: own_mntns_7_anonymous_clone "scenario";
    8: own_mntns_8_anonymous_fsmount "scenario";
    9: own_mntns_9_unmounted_file_bind "scenario";
    10: own_mntns_10_two_fds_one_mount "scenario";
    11: own_mntns_11_unmounted_block_device "scenario";
    12: own_mntns_12_fifo_on_unmounted_bind "scenario";
    13: own_mntns_13_unlinked_on_lost_superblock "scenario";
    14: own_mntns_14_three_kinds_at_once "scenario";
    15: own_mntns_15_unlinked_on_unmounted_bind "scenario";
}

flavour_tests! { Ns:
    1: ns_1_regular "scenario";
    2: ns_2_unmounted_bind "scenario";
    3: ns_3_unmounted_whole_fs "scenario";
    4: ns_4_unmounted_subdir_bind "scenario";
    5: ns_5_dir_and_opath_fds "scenario";
    6: ns_6_readonly_unmounted_bind "scenario";
    7: ns_7_anonymous_clone "scenario";
    8: ns_8_anonymous_fsmount "scenario";
    9: ns_9_unmounted_file_bind "scenario";
    10: ns_10_two_fds_one_mount "scenario";
    11: ns_11_unmounted_block_device "scenario";
    12: ns_12_fifo_on_unmounted_bind "scenario";
    13: ns_13_unlinked_on_lost_superblock "scenario";
    14: ns_14_three_kinds_at_once "scenario";
    15: ns_15_unlinked_on_unmounted_bind "scenario";
}

flavour_tests! { FreshMntns:
    2: fresh_mntns_2_unmounted_bind "scenario";
    3: fresh_mntns_3_unmounted_whole_fs "scenario";
    7: fresh_mntns_7_anonymous_clone "scenario";
}

/// Without BY_FD a program in its own mount namespace with a file on an anonymous clone is
/// refused by a crcli outside it (the clone proof works only from the clone's namespace), as
/// are files on unmounted mounts, naming the namespaces.
#[test]
fn refused_own_mntns_7_anonymous_clone() -> Result<(), E2eError> {
    refused_in("refused_own_mntns_7_anonymous_clone", 7, Flavour::OwnMntns)
}

#[test]
fn refused_own_mntns_2_unmounted_bind() -> Result<(), E2eError> {
    refused_in("refused_own_mntns_2_unmounted_bind", 2, Flavour::OwnMntns)
}

refusal_tests! {
    2: refused_2_unmounted_bind;
    3: refused_3_unmounted_whole_fs;
    4: refused_4_unmounted_subdir_bind;
    5: refused_5_dir_and_opath_fds;
    6: refused_6_readonly_unmounted_bind;
    9: refused_9_unmounted_file_bind;
    10: refused_10_two_fds_one_mount;
    11: refused_11_unmounted_block_device;
    12: refused_12_fifo_on_unmounted_bind;
    13: refused_13_unlinked_on_lost_superblock;
    14: refused_14_three_kinds_at_once;
    15: refused_15_unlinked_on_unmounted_bind;
}

#[test]
fn failed_restore_leaves_nothing_1_regular() -> Result<(), E2eError> {
    failed_restore("failed_restore_leaves_nothing_1_regular", 1, "src/file")
}

#[test]
fn failed_restore_leaves_nothing_2_unmounted_bind() -> Result<(), E2eError> {
    failed_restore(
        "failed_restore_leaves_nothing_2_unmounted_bind",
        2,
        "src/file",
    )
}

#[test]
fn failed_restore_leaves_nothing_10_two_fds_one_mount() -> Result<(), E2eError> {
    // "b" is opened after "a" on the same clone: the clone already serves one fd when it fails.
    failed_restore(
        "failed_restore_leaves_nothing_10_two_fds_one_mount",
        10,
        "src/b",
    )
}

/// The table is consistent: numbers in order, names unique, corrupt switches for each; the
/// scenarios with an fd on an unmounted mount need BY_FD and declare the refusal, the others not.
#[test]
fn declarations_are_consistent() {
    let mut names = BTreeSet::new();
    for (i, sc) in SCENARIOS.iter().enumerate() {
        assert_eq!(sc.number as usize, i + 1);
        assert!(names.insert(sc.name), "duplicate name {}", sc.name);
        assert!(!sc.plan.is_empty() && !sc.switches.is_empty());
        for (w, _) in sc.by_fd_switches {
            assert!(
                sc.switches.iter().any(|(s, _)| s == w),
                "scenario {}: BY_FD switch {w} is not a switch",
                sc.number
            );
        }
        let by_fd = sc.needs.contains(&Feature::StatmountByFd);
        assert_eq!(
            by_fd,
            sc.dump_must_fail_on_6_18.is_some(),
            "scenario {}: needing BY_FD <=> refused without it",
            sc.number
        );
        // Unmounted mounts cannot be identified without BY_FD; attached and anonymous ones can.
        assert_eq!(
            by_fd,
            ![1, 7, 8].contains(&sc.number),
            "scenario {}",
            sc.number
        );
    }
}
