//! # crcli-restore: the restore engine
//!
//! Reads and validates an image, rebuilds the mounts its files need without temporary
//! mountpoints, recreates the processes, their files and address spaces by ptrace syscall
//! injection, and lets them run.
//!
//! Status: under construction. Nothing is exported yet.
#![forbid(unsafe_code)]
