//! End-to-end tests of the `crcli` binary on real programs. The test programs live in `progs/`
//! and are compiled by `build.rs`; the tests are in `tests/`.
#![forbid(unsafe_code)]
