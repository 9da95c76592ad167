//! # crcli-dump: the dump engine
//!
//! Freezes a process tree with ptrace, collects every piece of its state (memory, registers,
//! signals, files and the mounts they live on) and writes an image with crcli-image.
//!
//! Status: under construction. Nothing is exported yet.
#![forbid(unsafe_code)]
