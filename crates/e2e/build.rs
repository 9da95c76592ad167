//! Compiles every C test program `progs/<name>.c` twice, with the C compiler the `cc` crate finds:
//! dynamically linked against glibc into `$OUT_DIR/progs/<name>` and statically linked (`-static`)
//! into `$OUT_DIR/progs/<name>-static`, both `-O2 -g`. AVX code in the programs is compiled through
//! per-function `target("avx2")` / `target("avx512f")` attributes, so no global `-m` flags are
//! needed and the programs still start on CPUs without AVX. The directory is exported to the
//! crate's code as `CRCLI_PROGS_DIR`; the VM harness copies `target/<profile>/build/*/out/progs/`
//! into the guest at the same absolute path, so this layout must not change.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let progs_src = manifest.join("progs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("progs");
    std::fs::create_dir_all(&out).expect("creating $OUT_DIR/progs");
    println!("cargo:rerun-if-changed=progs");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&progs_src)
        .expect("reading progs/")
        .map(|e| e.expect("reading progs/").path())
        .collect();
    sources.sort();
    for path in &sources {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let headers: Vec<&PathBuf> = sources
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "h"))
        .collect();
    assert!(
        !headers.is_empty() || sources.is_empty(),
        "progs/common.h missing"
    );

    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .opt_level(2)
        .debug(true)
        .get_compiler();
    for src in sources
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
    {
        let name = src
            .file_stem()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        compile(&compiler, src, &out.join(&name), false);
        compile(&compiler, src, &out.join(format!("{name}-static")), true);
    }
    println!("cargo:rustc-env=CRCLI_PROGS_DIR={}", out.display());
}

/// Runs the compiler on one program; panics (failing the build) with its output on error.
fn compile(compiler: &cc::Tool, src: &Path, dst: &Path, static_link: bool) {
    let mut cmd = Command::new(compiler.path());
    cmd.args(["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-pthread"]);
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
        "compiling {} into {} failed ({}): {}",
        src.display(),
        dst.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
