//! [`Error`]: what can go wrong while building a [`crate::MountTable`] from the kernel or
//! resolving an fd. Parse errors of mountinfo text are [`crate::ParseError`], wrapped here
//! with the file they came from.

use std::path::PathBuf;

use crcli_sys::statmount::StatmountError;
use rustix::io::Errno;

use crate::parse::ParseError;

/// Errors of building a mount table from the kernel and of [`crate::resolve_fd`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file of /proc failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A mountinfo file did not parse.
    #[error("parsing {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause (names the line).
        #[source]
        source: ParseError,
    },
    /// Opening a namespace file failed.
    #[error("opening mount namespace {path}")]
    OpenNamespace {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// `NS_GET_MNTNS_ID` or `fstat` on a namespace fd failed.
    #[error("getting the id of a mount namespace")]
    NamespaceId {
        /// The cause.
        #[source]
        source: Errno,
    },
    /// listmount failed.
    #[error("listing the mounts of mount namespace {ns_id:?} with listmount")]
    Listmount {
        /// The namespace (`None`: the caller's).
        ns_id: Option<u64>,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// statmount of a listed mount failed (other than the mount vanishing meanwhile).
    #[error("statmount of mount {mnt_id:#x}")]
    Statmount {
        /// The unique mount id.
        mnt_id: u64,
        /// The cause.
        #[source]
        source: StatmountError,
    },
    /// statmount answered without a part every mount has.
    #[error("statmount of mount {mnt_id:#x} did not report {missing}")]
    StatmountIncomplete {
        /// The unique mount id.
        mnt_id: u64,
        /// The missing part.
        missing: &'static str,
    },
    /// A namespace fd was given, the kernel has no listmount/statmount, and no process of
    /// that namespace was found to read its mountinfo.
    #[error("building the mount table of a namespace fd: this kernel has no listmount and no process of the namespace was found")]
    NoSourceForNamespace,
    /// Inspecting the fd being resolved failed.
    #[error("inspecting fd: {what}")]
    Inspect {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: Errno,
    },
}
