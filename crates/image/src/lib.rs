//! # crcli-image: the on-disk image format
//!
//! An image is a directory: an inventory, typed entries for processes, files and mounts, and page
//! data in separate streams. Every file carries a magic and a format version; every record is
//! length-prefixed and checksummed; readers never trust their input.
//!
//! Status: under construction. Nothing is exported yet.
#![forbid(unsafe_code)]
