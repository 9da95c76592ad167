//! Prints the mount table of a process's mount namespace, then where each of its open fds
//! lives (run as root for another user's process).
//!
//! ```text
//! cargo run -p crcli-mountinfo --example show -- [PID]
//! ```

use std::error::Error;

use crcli_mountinfo::kernel::Namespace;
use crcli_mountinfo::{resolve_fd, MountTable, Resolution};
use crcli_sys::pidfd::{pidfd_getfd, pidfd_open, PidfdFlags};

fn main() -> Result<(), Box<dyn Error>> {
    let pid: i32 = match std::env::args().nth(1) {
        Some(p) => p.parse()?,
        None => std::process::id() as i32,
    };
    let table = MountTable::of(Namespace::Pid(pid))?;
    println!(
        "mount namespace {:?}: {} mounts ({:?})",
        table.ns_id(),
        table.len(),
        table.origin()
    );
    for m in table.mounts() {
        println!(
            "{:>6} {:<20} {:?} root={:?} {} {:?} {:?}",
            m.old_id,
            m.id.map_or("-".to_owned(), |id| format!("{id:#x}")),
            m.mount_point,
            m.root,
            m.fs_type,
            m.attrs,
            m.propagation
        );
    }
    let pidfd = pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or("bad pid")?,
        PidfdFlags::empty(),
    )?;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let n: i32 = entry?.file_name().to_string_lossy().parse()?;
        let Ok(fd) = pidfd_getfd(&pidfd, n) else {
            continue;
        };
        let what = match resolve_fd(&fd, &[&table])? {
            Resolution::Attached { mount, fd } => {
                format!("attached on {:?} ({:?})", mount.mount_point, fd.path)
            }
            Resolution::Unmounted { mount, rebuild, .. } => {
                format!("unmounted, root {:?}: {rebuild:?}", mount.root)
            }
            Resolution::Anonymous { root, rebuild, .. } => {
                format!("anonymous, root {root:?}: {rebuild:?}")
            }
            Resolution::CannotTell { missing, fd } => {
                format!("cannot tell without {} ({:?})", missing.name(), fd.path)
            }
            Resolution::Internal { fd } => format!("kernel-internal ({:?})", fd.path),
            other => format!("{other:?}"),
        };
        println!("fd {n}: {what}");
    }
    Ok(())
}
