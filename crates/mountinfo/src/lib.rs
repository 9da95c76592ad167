//! # crcli-mountinfo: the mount model
//!
//! Builds the mount table of a mount namespace from `/proc/PID/mountinfo` and from
//! listmount+statmount, merged into one model, and resolves an fd to the mount it lives on:
//! attached, unmounted (`umount2(MNT_DETACH)`) or anonymous (`open_tree(OPEN_TREE_CLONE)`,
//! `fsmount()`), with a plan to rebuild it.
//!
//! Status: under construction. Nothing is exported yet.
#![forbid(unsafe_code)]
