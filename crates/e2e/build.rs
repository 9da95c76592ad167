//! Compiles the C test programs of `progs/` (none yet).
fn main() {
    println!("cargo:rerun-if-changed=progs");
}
