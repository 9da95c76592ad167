//! Every test program, run without crcli: it must pass when left alone, and each of its checks
//! must fail when the program damages that piece of state on purpose (`<dir>/corrupt`).

use std::time::Duration;

use crcli_e2e::{
    wait_exit, E2eError, Exit, Linkage, Prog, Workdir, EXIT_TIMEOUT, READY_TIMEOUT, RESULT_TIMEOUT,
};

/// Runs `prog` once: ready, a short run, trigger, result. `prepare` runs just before the trigger.
fn run_once(
    prog: &Prog,
    corrupt: Option<&str>,
    prepare: impl FnOnce(&Workdir) -> Result<(), E2eError>,
) -> Result<(String, Exit), E2eError> {
    let wd = Workdir::new(prog.name())?;
    if let Some(what) = corrupt {
        wd.set_corrupt(what)?;
    }
    let mut target = prog.spawn(&wd)?;
    wd.wait_ready(&mut target, READY_TIMEOUT)?;
    std::thread::sleep(Duration::from_millis(100));
    prepare(&wd)?;
    wd.trigger(prog.trigger())?;
    let result = wd.wait_result(RESULT_TIMEOUT, Some(&mut target))?;
    let exit = wait_exit(&mut target, EXIT_TIMEOUT)?;
    Ok((result, exit))
}

/// The clean run passes and exits 0; each corrupt switch fails, exits 1 and names the problem.
fn selfcheck(prog: Prog, switches: &[(&str, &str)]) -> Result<(), E2eError> {
    let (result, exit) = run_once(&prog, None, |_| Ok(()))?;
    assert_eq!(result, "PASS", "{} left alone must pass", prog.name());
    assert_eq!(
        exit,
        Exit::Code(0),
        "{} passed but ended with {exit}",
        prog.name()
    );
    for (what, expect) in switches {
        let (result, exit) = run_once(&prog, Some(what), |_| Ok(()))?;
        assert!(
            result.starts_with("FAIL: ") && result.contains(expect),
            "{} with `{what}` corrupted must fail mentioning {expect:?}; got {result:?}",
            prog.name()
        );
        assert_eq!(
            exit,
            Exit::Code(1),
            "{} failed but ended with {exit}",
            prog.name()
        );
    }
    Ok(())
}

macro_rules! selfcheck_tests {
    ($($name:ident, $static_name:ident, $prog:literal, [$(($arg:literal))*], $switches:expr;)*) => {$(
        #[test]
        fn $name() -> Result<(), E2eError> {
            selfcheck(Prog::c($prog, Linkage::Dynamic)$(.arg($arg))*, $switches)
        }
        #[test]
        fn $static_name() -> Result<(), E2eError> {
            selfcheck(Prog::c($prog, Linkage::Static)$(.arg($arg))*, $switches)
        }
    )*};
}

selfcheck_tests! {
    counter, counter_static, "counter", [], &[
        ("memory", "in-memory counter"),
        ("file", "lost or repeated"),
        ("sleep", "shorter than"),
    ];
    heap, heap_static, "heap", [("64")], &[
        ("heap", "big block"),
        ("small", "small chunk"),
        ("region", "first page 5 (kind 1"),
        ("hole", "first page 126 (kind 62"),
        ("readonly", "want r--p"),
    ];
    signals, signals_static, "signals", [], &[
        ("sigaction", "signal 10: sa_flags"),
        ("mask", "blocked mask differs at signal 13"),
        ("pending", "SIGUSR2 is no longer pending"),
        ("ignore", "signal 2: handler"),
    ];
    fpu, fpu_static, "fpu", [], &[
        ("ymm", "ymm3 lane 1"),
        ("x87", "x87 st(5)"),
        ("mxcsr", "MXCSR"),
        ("x87cw", "x87 control word"),
    ];
    sleeper, sleeper_static, "sleeper", [("100")], &[("sleep", "shorter than")];
    pipe, pipe_static, "pipe", [], &[("pipe", "the pipe held 39999 bytes")];
    deleted, deleted_static, "deleted", [], &[("deleted", "byte 777")];
    threads, threads_static, "threads", [], &[
        ("tid", "thread 0: gettid() is"),
        ("tls", "thread 2: TLS pattern differs at byte 77"),
        ("fpu", "thread 1: FP accumulator"),
        ("sigmask", "thread 7: signal mask differs at signal 10"),
        ("altstack", "thread 7: alternate signal stack is"),
        ("counter", "lost or repeated"),
        ("name", "thread 3: its name is \"renamed\""),
        ("pending", "thread 7: SIGRTMIN+3 is no longer pending"),
    ];
    sigchld, sigchld_static, "sigchld", [], &[
        ("sigchld", "no SIGCHLD pending"),
        ("tid", "/proc/self/task lists thread"),
    ];
}

/// The AVX-512 part of fpu only runs on CPUs that have it; its check must fail when damaged.
#[test]
fn fpu_avx512_switch() -> Result<(), E2eError> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !cpuinfo.split_whitespace().any(|w| w == "avx512f") {
        crcli_e2e::skip("fpu_avx512_switch", "this CPU has no AVX-512");
        return Ok(());
    }
    selfcheck(Prog::c("fpu", Linkage::Dynamic), &[("zmm", "k3 is")])
}

/// The busybox script passes alone, and fails when its count file is damaged behind its back.
#[test]
fn busybox_sh() -> Result<(), E2eError> {
    let prog = Prog::busybox()?;
    let (result, exit) = run_once(&prog, None, |_| Ok(()))?;
    assert_eq!((result.as_str(), exit), ("PASS", Exit::Code(0)));
    let (result, exit) = run_once(&prog, None, |wd| append(wd, "count", "0\n"))?;
    assert!(
        result.starts_with("FAIL: "),
        "damaged count file must fail: {result:?}"
    );
    assert_eq!(exit, Exit::Code(1));
    Ok(())
}

/// The python3 script passes alone, and fails when its count file is damaged behind its back.
#[test]
fn python3() -> Result<(), E2eError> {
    if crcli_e2e::in_vm() {
        crcli_e2e::skip("python3", "no python3 in the guest");
        return Ok(());
    }
    let prog = Prog::python3().expect("python3 is needed on the host (apt-get install -y python3)");
    let (result, exit) = run_once(&prog, None, |_| Ok(()))?;
    assert_eq!((result.as_str(), exit), ("PASS", Exit::Code(0)));
    let (result, exit) = run_once(&prog, None, |wd| append(wd, "count", "0\n"))?;
    assert!(
        result.starts_with("FAIL: "),
        "damaged count file must fail: {result:?}"
    );
    assert_eq!(exit, Exit::Code(1));
    Ok(())
}

fn append(wd: &Workdir, name: &str, text: &str) -> Result<(), E2eError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(wd.file(name))
        .map_err(|e| E2eError::Unexpected(format!("opening {name}: {e}")))?;
    f.write_all(text.as_bytes())
        .map_err(|e| E2eError::Unexpected(format!("writing {name}: {e}")))
}
