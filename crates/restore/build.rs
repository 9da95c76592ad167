//! Compiles the C programs of the engine's round-trip tests (`tests/roundtrip/progs/<name>.c`)
//! with the C compiler the `cc` crate finds, twice: dynamically linked into
//! `$OUT_DIR/progs/<name>` and statically linked into `$OUT_DIR/progs/<name>-static`. The
//! directory is exported to the tests as `CRCLI_RESTORE_PROGS_DIR`; the VM harness copies
//! `target/<profile>/build/*/out/progs/` into the guest at the same absolute path.
//! Only the tests use them; the library itself builds nothing here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src_dir = manifest.join("tests/roundtrip/progs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("progs");
    std::fs::create_dir_all(&out).expect("creating $OUT_DIR/progs");
    println!("cargo:rerun-if-changed=tests/roundtrip/progs");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&src_dir)
        .expect("reading tests/roundtrip/progs")
        .map(|e| e.expect("reading tests/roundtrip/progs").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .opt_level(2)
        .get_compiler();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let name = src
            .file_stem()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        compile(&compiler, src, &out.join(&name), false);
        compile(&compiler, src, &out.join(format!("{name}-static")), true);
    }
    println!("cargo:rustc-env=CRCLI_RESTORE_PROGS_DIR={}", out.display());
}

/// Runs the compiler on one program; fails the build with its output on error.
fn compile(compiler: &cc::Tool, src: &Path, dst: &Path, static_link: bool) {
    let mut cmd = Command::new(compiler.path());
    cmd.args(["-std=gnu11", "-O2", "-Wall"]);
    if static_link {
        cmd.arg("-static");
    }
    cmd.arg("-o").arg(dst).arg(src);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {:?}: {e}", compiler.path()));
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("cargo:warning={}: {line}", src.display());
    }
    assert!(
        output.status.success(),
        "compiling {} failed ({}): {}",
        src.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
