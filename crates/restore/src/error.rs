//! The error type of the restore engine.
//!
//! Every variant names what was being done; validation errors come before anything was created,
//! later ones after the half-restored process has been killed and reaped.

use std::path::PathBuf;

use crcli_sys::clone3::Clone3Error;
use crcli_sys::ptrace::PtraceError;

/// An error of [`crate::restore`] or of waiting for a restored process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The image could not be opened or read.
    #[error("reading the image")]
    Image(#[from] crcli_image::ImageError),
    /// The image is well-formed but cannot be restored here.
    #[error("checking the image: {0}")]
    Invalid(String),
    /// The image holds something this restore does not support yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A file the image refers to is missing or is not the file that was dumped.
    #[error("checking {}: {problem}", path.display())]
    FileMismatch {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Creating the child process failed.
    #[error("creating the process")]
    Spawn(#[from] Clone3Error),
    /// The child failed while setting itself up (files, cwd, root, limits).
    #[error("setting up the process: {0}")]
    ChildSetup(String),
    /// A ptrace request or an injected syscall failed.
    #[error("{step}")]
    Ptrace {
        /// What was being done.
        step: String,
        /// The cause.
        #[source]
        source: PtraceError,
    },
    /// A system call of the restore itself failed.
    #[error("{step}")]
    Sys {
        /// What was being done.
        step: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Rebuilding one member of a tree failed (the whole tree was killed).
    #[error("restoring process {pid} of the tree")]
    Member {
        /// The member's pid as dumped.
        pid: u32,
        /// What failed.
        #[source]
        source: Box<RestoreError>,
    },
}

impl RestoreError {
    pub(crate) fn ptrace(step: impl Into<String>) -> impl FnOnce(PtraceError) -> RestoreError {
        let step = step.into();
        move |source| RestoreError::Ptrace { step, source }
    }

    pub(crate) fn sys(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
        let step = step.into();
        move |source| RestoreError::Sys { step, source }
    }

    pub(crate) fn errno(step: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> RestoreError {
        let step = step.into();
        move |e| RestoreError::Sys {
            step,
            source: e.into(),
        }
    }
}
