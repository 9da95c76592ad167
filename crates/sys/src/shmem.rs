//! Shared anonymous memory objects held by an fd: the object that `mmap(MAP_SHARED |
//! MAP_ANONYMOUS)` creates (a shmem file named `/dev/zero (deleted)`), kept by an open file
//! description instead of a mapping.
//!
//! A tree restore needs one such object mapped by several processes: crcli creates it, fills it
//! through the fd (`pwrite`) and every process maps the fd (`mmap(MAP_SHARED, fd, offset)`),
//! which gives the same object, with the same name in `/proc/PID/maps`, as the processes had
//! (CRIU opens `/proc/PID/map_files/` for the same purpose).
use std::os::fd::OwnedFd;

use rustix::io::Errno;

/// Creates a shared anonymous object of `size` bytes (a positive multiple of 4096): maps it in
/// crcli (`MAP_SHARED | MAP_ANONYMOUS`), opens it read-write through
/// `/proc/self/map_files/START-END` (needs `CAP_SYS_ADMIN`), unmaps it and returns the fd
/// (close-on-exec). The object holds zeros; it lives as long as an fd or a mapping refers to it.
pub fn shared_anonymous_object(size: u64) -> Result<OwnedFd, Errno> {
    if size == 0 || size % 4096 != 0 || size > isize::MAX as u64 {
        return Err(Errno::INVAL);
    }
    let len = size as usize;
    // SAFETY: a fresh shared anonymous mapping at an address the kernel picks (no MAP_FIXED):
    // no existing memory is affected. Nothing in this process reads or writes it; it is
    // unmapped below and no reference to it escapes.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::ENOMEM),
        ));
    }
    let start = addr as usize;
    let path = format!("/proc/self/map_files/{:x}-{:x}", start, start + len);
    let opened = rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    );
    // SAFETY: unmaps exactly the mapping made above, which nothing references.
    unsafe { libc::munmap(addr, len) };
    opened
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn the_object_is_a_dev_zero_shmem_file_that_keeps_its_content() {
        let fd = shared_anonymous_object(3 * 4096).unwrap();
        let st = rustix::fs::fstat(&fd).unwrap();
        assert_eq!(st.st_size, 3 * 4096);
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .unwrap();
        assert_eq!(link.to_str().unwrap(), "/dev/zero (deleted)");
        let f = std::fs::File::from(fd);
        f.write_all_at(b"marker", 4096 + 10).unwrap();
        let mut back = [0u8; 6];
        f.read_exact_at(&mut back, 4096 + 10).unwrap();
        assert_eq!(&back, b"marker");
        let mut zeros = [1u8; 16];
        f.read_exact_at(&mut zeros, 0).unwrap();
        assert_eq!(zeros, [0u8; 16]);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(shared_anonymous_object(0).unwrap_err(), Errno::INVAL);
        assert_eq!(shared_anonymous_object(4095).unwrap_err(), Errno::INVAL);
    }
}
