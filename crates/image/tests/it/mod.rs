//! Test modules and shared helpers.

pub mod atomic;
pub mod corrupt;
pub mod golden;
pub mod pages;
pub mod roundtrip;
pub mod sample;
