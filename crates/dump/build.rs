//! Compiles the dump tests' C target (`tests/progs/target.c`) with the C compiler the `cc` crate
//! finds, into `$OUT_DIR/progs/dump-test-target` (dynamic, glibc, `-O1 -g -pthread`), exported
//! to the tests and the benchmark as `CRCLI_DUMP_TARGET`. Building it here rather than in the
//! tests means no compiler is needed where the tests run: the VM harness copies
//! `target/<profile>/build/*/out/progs/` into the guest at the same absolute path.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src = manifest.join("tests/progs/target.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("progs");
    std::fs::create_dir_all(&out).expect("creating $OUT_DIR/progs");
    println!("cargo:rerun-if-changed=tests/progs/target.c");
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .opt_level(1)
        .debug(true)
        .get_compiler();
    let dst = out.join("dump-test-target");
    let output = Command::new(compiler.path())
        .args(["-std=gnu11", "-O1", "-g", "-Wall", "-pthread", "-o"])
        .arg(&dst)
        .arg(&src)
        .output()
        .expect("running the C compiler");
    assert!(
        output.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("cargo:rustc-env=CRCLI_DUMP_TARGET={}", dst.display());
}
