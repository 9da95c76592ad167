//! Compiles the dump tests' C targets (`tests/progs/target.c`, `tests/progs/tree.c`) with the C
//! compiler the `cc` crate finds, into `$OUT_DIR/progs/dump-test-target` and `dump-test-tree`
//! (dynamic, glibc, `-O1 -g -pthread`), exported to the tests and the benchmark as
//! `CRCLI_DUMP_TARGET` and `CRCLI_DUMP_TREE`. Building it here rather than in the
//! tests means no compiler is needed where the tests run: the VM harness copies
//! `target/<profile>/build/*/out/progs/` into the guest at the same absolute path.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("progs");
    std::fs::create_dir_all(&out).expect("creating $OUT_DIR/progs");
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .opt_level(1)
        .debug(true)
        .get_compiler();
    for (name, binary, var) in [
        ("target", "dump-test-target", "CRCLI_DUMP_TARGET"),
        ("tree", "dump-test-tree", "CRCLI_DUMP_TREE"),
    ] {
        let src = manifest.join(format!("tests/progs/{name}.c"));
        println!("cargo:rerun-if-changed=tests/progs/{name}.c");
        let dst = out.join(binary);
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
        println!("cargo:rustc-env={var}={}", dst.display());
    }
}
