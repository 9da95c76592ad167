//! Arranging a process's own file descriptor table at exact numbers: `dup3(2)` onto a chosen
//! number, and `close_range(2)`.
//!
//! A restored process must find its files at the numbers it had. These calls put a file at a
//! number and give up ownership of it: from then on the number belongs to the program that will
//! run in this process (the restored one), not to any Rust owner. They are meant for a child made
//! by [`crate::clone3::spawn`] that is about to have its address space replaced; ordinary programs
//! should keep using `OwnedFd`.
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// `dup3(fd, target, cloexec ? O_CLOEXEC : 0)` then close `fd`: the open file description of
/// `fd` ends up at number `target` (replacing whatever was there) and is owned by no Rust value.
/// Does only the close-on-exec update when `fd` already is `target`. See `man 2 dup3`.
///
/// Whatever `target` held before is closed: the caller must own that number (or know it free).
pub fn dup3_to(fd: OwnedFd, target: RawFd, cloexec: bool) -> rustix::io::Result<()> {
    if target < 0 {
        return Err(rustix::io::Errno::BADF);
    }
    if fd.as_raw_fd() == target {
        let flags = if cloexec {
            rustix::io::FdFlags::CLOEXEC
        } else {
            rustix::io::FdFlags::empty()
        };
        rustix::io::fcntl_setfd(&fd, flags)?;
        // The number now belongs to the process image, not to a Rust owner.
        std::mem::forget(fd);
        return Ok(());
    }
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3(2) takes no pointers; `fd` is open for the whole call (borrowed from the
    // OwnedFd); `target` is a number the caller owns (documented contract), so replacing it
    // cannot invalidate another owner.
    let ret = unsafe { libc::dup3(fd.as_fd().as_raw_fd(), target, flags) };
    if ret < 0 {
        return Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    drop(fd);
    Ok(())
}

/// `close_range(first, last, 0)` (Linux 5.9): closes every fd numbered `first..=last`.
/// See `man 2 close_range`.
///
/// This closes fds that other Rust values may own: call it only in a child made by
/// [`crate::clone3::spawn`] that never returns into code using those values (its address space
/// is about to be replaced, or it exits).
pub fn close_range(first: u32, last: u32) -> rustix::io::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: close_range(2) takes no pointers. Closing fds owned elsewhere is the documented
    // purpose: the caller is a child that will never use those owners again.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if ret < 0 {
        return Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(())
}

/// `personality(persona)`: sets the execution domain of the calling process and returns the
/// previous one. `0xffffffff` only queries. See `man 2 personality`.
pub fn personality(persona: u32) -> rustix::io::Result<u32> {
    // SAFETY: personality(2) takes a plain integer and no pointers.
    let ret = unsafe { libc::personality(persona as libc::c_ulong) };
    if ret < 0 {
        return Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(ret as u32)
}

/// `signal(sig, SIG_DFL)`: gives signal `sig` of the calling process its default action again
/// (a child made by [`crate::clone3::spawn`] inherits the caller's ignored signals, such as the
/// `SIGPIPE` the Rust runtime ignores). See `man 2 signal`.
pub fn default_signal_action(sig: i32) -> rustix::io::Result<()> {
    // SAFETY: signal(2) with SIG_DFL installs no handler, so no code of ours can run from it;
    // it takes no pointers.
    let ret = unsafe { libc::signal(sig, libc::SIG_DFL) };
    if ret == libc::SIG_ERR {
        return Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dup3_to_places_the_file_at_the_number() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        // A number this test owns: a dup of the write end at >= 900.
        let spare = rustix::io::fcntl_dupfd_cloexec(&w, 900).unwrap();
        let target = spare.as_raw_fd();
        std::mem::forget(spare);
        dup3_to(w, target, true).unwrap();
        // SAFETY-free check through /proc: the number now refers to the pipe.
        let link = std::fs::read_link(format!("/proc/self/fd/{target}")).unwrap();
        let want = std::fs::read_link(format!("/proc/self/fd/{}", r.as_raw_fd())).unwrap();
        assert_eq!(link, want);
        close_range(target as u32, target as u32).unwrap();
        assert!(std::fs::read_link(format!("/proc/self/fd/{target}")).is_err());
    }

    #[test]
    fn default_signal_action_accepts_real_signals_only() {
        // SIGURG's default action is to ignore it, so resetting it changes nothing here.
        default_signal_action(libc::SIGURG).unwrap();
        assert_eq!(
            default_signal_action(0),
            Err(rustix::io::Errno::INVAL),
            "signal 0 is no signal"
        );
    }

    #[test]
    fn personality_query_answers() {
        let p = personality(0xffff_ffff).unwrap();
        assert_eq!(p & 0xff, 0, "PER_LINUX expected, got {p:#x}");
    }
}
