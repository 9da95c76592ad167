//! Integration tests of crcli-image: whole images written and read through the public API on a
//! real filesystem, their atomicity, version handling, untrusted input and golden images.

mod it;
