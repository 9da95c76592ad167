//! The error type of this crate.
//!
//! Every error names the operation and the file; errors about a record also name the record's
//! index (counted from 0 in its file), so a user can tell exactly what is wrong with an image.

use std::path::PathBuf;

use crate::{FORMAT_VERSION, MIN_FORMAT_VERSION};

/// An error reading, checking or writing an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// A system call on an image file failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done ("opening", "reading", "renaming … to", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The image (or one of its files) has a format version this crate cannot read.
    #[error(
        "image {} has format version {found}, this crcli reads versions {MIN_FORMAT_VERSION} to {FORMAT_VERSION}",
        path.display()
    )]
    UnsupportedVersion {
        /// The image directory, or the file whose header has the version.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A file does not start with the magic of the kind of file expected.
    #[error("reading {}: not a crcli {expected} file (magic {found})", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The kind of file expected.
        expected: &'static str,
        /// The first bytes found, escaped.
        found: String,
    },
    /// A file's framing is damaged: bad header, truncated, wrong checksum, absurd length, …
    #[error("reading {} record {record}: {problem}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The index of the record (or of the trailer: the number of records read).
        record: u64,
        /// What is wrong.
        problem: String,
    },
    /// A record's checksum is right but its payload does not decode as the expected entry.
    #[error("decoding {} record {record}: {problem}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The index of the record.
        record: u64,
        /// What is wrong.
        problem: String,
    },
    /// A record decodes but breaks a rule of the format (a dangling id, unsorted mappings, …).
    #[error("checking {} record {record}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The index of the record.
        record: u64,
        /// What is wrong.
        problem: String,
    },
    /// The image directory or one of its files could have been written by someone other than
    /// the restoring user or root ([`crate::check_image_dir`]).
    #[error("image file {} {problem}: refusing to restore what another user could have written (check the owner and mode, or pass --trust-image)", path.display())]
    Untrusted {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong with its owner, mode or type.
        problem: String,
    },
    /// The writer was asked to write something the format cannot hold.
    #[error("writing {}: {problem}", path.display())]
    Refused {
        /// The file being written.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Encoding an entry failed.
    #[error("encoding {} record {record}", path.display())]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// The index of the record.
        record: u64,
        /// The cause.
        #[source]
        source: postcard::Error,
    },
    /// `Image::create` was given a path that already exists.
    #[error("creating image {}: it already exists", path.display())]
    Exists {
        /// The target path.
        path: PathBuf,
    },
}

/// The result type of this crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
