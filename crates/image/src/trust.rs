//! Who may have written an image: the check a restore makes before it believes one.
//!
//! What an image says becomes the restored process: its memory, registers and credentials. A
//! restore run by a user must therefore only believe an image that this user (or root) wrote
//! and that nobody else could have changed since, as ssh treats its key files.
//! [`check_image_dir`] refuses an image directory, or any file in it, that is owned by another
//! user, that group or others may write, or that is not a plain file (a symlink could point
//! the reader anywhere). `crcli restore --trust-image` skips it, for images whose origin the
//! user vouches for. The directory's own parents are not checked.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::{ImageError, Result};

/// Refuses `dir` unless it and every entry in it are owned by `uid` or root, are not writable
/// by group or others, and are plain files (the entries) or a directory (`dir`, which may be
/// reached through a symlink).
///
/// ```
/// # let tmp = tempfile::tempdir().unwrap();
/// let uid = std::fs::metadata(tmp.path()).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
/// crcli_image::check_image_dir(tmp.path(), uid).unwrap();
/// ```
pub fn check_image_dir(dir: &Path, uid: u32) -> Result<()> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { op, path, source }
    };
    let meta = std::fs::metadata(dir).map_err(io("checking the owner of", dir))?;
    if !meta.is_dir() {
        return Err(untrusted(dir, "is not a directory".into()));
    }
    check_meta(dir, &meta, uid)?;
    for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io("checking the owner of", &path))?;
        if !meta.file_type().is_file() {
            return Err(untrusted(&path, "is not a regular file".into()));
        }
        check_meta(&path, &meta, uid)?;
    }
    Ok(())
}

fn check_meta(path: &Path, meta: &std::fs::Metadata, uid: u32) -> Result<()> {
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(untrusted(
            path,
            format!(
                "is owned by uid {}, not by the restoring user (uid {uid}) or root",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(
            path,
            format!(
                "is writable by group or others (mode {:04o})",
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

fn untrusted(path: &Path, problem: String) -> ImageError {
    ImageError::Untrusted {
        path: path.to_path_buf(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn set_mode(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn refuses_what_others_could_have_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        std::fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o755);
        let f = dir.join("processes.img");
        std::fs::write(&f, b"x").unwrap();
        set_mode(&f, 0o644);
        let me = std::fs::metadata(&dir).unwrap().uid();
        check_image_dir(&dir, me).unwrap();

        set_mode(&f, 0o664);
        let e = check_image_dir(&dir, me).unwrap_err().to_string();
        assert!(
            e.contains("processes.img is writable by group or others (mode 0664)"),
            "{e}"
        );
        set_mode(&f, 0o644);

        set_mode(&dir, 0o777);
        let e = check_image_dir(&dir, me).unwrap_err().to_string();
        assert!(
            e.contains("is writable by group or others (mode 0777)"),
            "{e}"
        );
        set_mode(&dir, 0o755);

        std::os::unix::fs::symlink("/etc/passwd", dir.join("files.img")).unwrap();
        let e = check_image_dir(&dir, me).unwrap_err().to_string();
        assert!(e.contains("files.img is not a regular file"), "{e}");
        std::fs::remove_file(dir.join("files.img")).unwrap();

        std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
        let e = check_image_dir(&dir, me).unwrap_err().to_string();
        assert!(
            e.contains("is owned by uid 65534, not by the restoring user"),
            "{e}"
        );
        // User 65534 may restore it: the file is its own, the directory root's.
        check_image_dir(&dir, 65534).unwrap();
    }
}
