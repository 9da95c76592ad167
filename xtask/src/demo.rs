//! `cargo xtask demo`: the README's first command. Boots the same VM as `vm-test` (Linux >= 7.0,
//! see [`crate::vm`]) and shows, step by step on its console, a process holding files on an
//! unmounted mount and on an anonymous mount being dumped by `crcli`, killed, restored, and
//! carrying on, with the state before and after printed.
//!
//! The process is `crates/e2e/progs/demo.c` (compiled by `crcli-e2e`'s build script): it mounts a
//! tmpfs, opens a file through a bind of a sub-directory and detaches the bind (`umount2
//! MNT_DETACH`), keeps the mount fd of an `fsmount()`ed tmpfs and a file in it, and appends its
//! counter to both files every 200 ms. The guest side is [`GUEST_SCRIPT`], a busybox `sh` script
//! run by the VM harness in place of the tests and judged like a test executable: it exits 0 only
//! if every step worked, and this command then exits 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::vm;

/// Where the guest script lives in the guest.
const GUEST_SCRIPT_PATH: &str = "/crcli-vm/demo.sh";

/// The guest side of the demo: busybox `sh`. `@DEMO@` is replaced by the demo program's path.
/// `CRCLI_BIN` (crcli's path) and `CRCLI_VM=1` come from the harness's init.
const GUEST_SCRIPT: &str = r##"#!/bin/busybox sh
# cargo xtask demo, guest side (generated from xtask/src/demo.rs).
DEMO=@DEMO@
C="$CRCLI_BIN"
D=/tmp/demo
IMG=/tmp/img

step() { echo; echo "================ STEP $* ================"; }
say() { echo "demo: $*"; }
fail() {
  echo
  echo "DEMO-FAILED: $*"
  if [ -f "$D/log" ]; then echo "--- the demo program's log (last lines):"; tail -n 15 "$D/log"; fi
  echo "DEMO VERDICT: FAIL"
  exit 1
}
# show a command, then run it
run() { echo "\$ $*" | sed "s#$C#crcli#"; "$@"; }
# wait_file PATH SECONDS: wait for PATH to exist
wait_file() {
  n=0
  while [ ! -e "$1" ]; do
    n=$((n + 1)); [ "$n" -gt $(($2 * 10)) ] && return 1
    sleep 0.1
  done
}
# fds PID: every fd of PID with its target, position and mount id
fds() {
  for f in /proc/$1/fd/*; do
    n=${f##*/}
    pos=$(awk '/^pos:/ {print $2}' /proc/$1/fdinfo/$n)
    mnt=$(awk '/^mnt_id:/ {print $2}' /proc/$1/fdinfo/$n)
    printf '  fd %-2s -> %-34s pos %-5s mnt_id %s\n' "$n" "$(readlink "$f")" "$pos" "$mnt"
  done
}
# facts: the demo program's own view of its fds and mounts (it answers DIR/ask with DIR/facts)
facts() {
  rm -f "$D/facts"
  touch "$D/ask"
  wait_file "$D/facts" 20 || fail "the demo program did not answer $D/ask within 20 s"
  sed 's/^/  /' "$D/facts"
}
# show_file FILE: its header, the lines around the dump, its last line
show_file() {
  head -n 1 "$1" | sed 's/^/    /'
  echo "    ..."
  for k in $((LAST - 1)) "$LAST" "$FIRST" $((FIRST + 1)); do
    l=$(printf '%06d' "$k")
    grep -qx "$l" "$1" || fail "$1 has no line $l"
    case $k in
    "$LAST") echo "    $l   <- tick $LAST, the last one logged before the dump" ;;
    "$FIRST") echo "    $l   <- tick $FIRST, the first one logged after the restore" ;;
    *) echo "    $l" ;;
    esac
  done
  echo "    ..."
  tail -n 1 "$1" | sed 's/^/    /'
}
# ticks FILE: the counter values the program logged, one per line, as decimal numbers
ticks() { awk '$1 == "demo:" && $2 == "tick" {print $3 + 0}' "$1"; }

echo
echo "==== crcli demo: files on an unmounted and an anonymous mount, dumped and restored ===="
echo "kernel $(uname -r); crcli is $C; the demo program is $DEMO"
mkdir -p "$D" || fail "mkdir $D"

step "1: start a process with files on an unmounted and an anonymous mount"
say "the program mounts a tmpfs on $D/live, bind-mounts $D/live/sub on $D/bind, opens"
say "$D/bind/notes.txt, then detaches the bind (umount2 MNT_DETACH): an fd on an UNMOUNTED mount;"
say "it fsmount()s a fresh tmpfs it never attaches (an ANONYMOUS mount), keeps the mount fd and"
say "an fd on journal.txt in it; then every 200 ms it appends its counter to both files"
echo "\$ $DEMO $D </dev/null >>$D/log 2>&1 &"
"$DEMO" "$D" </dev/null >>"$D/log" 2>&1 &
DPID=$!
wait_file "$D/ready" 30 || fail "the demo program did not get ready within 30 s"
PID=$(cat "$D/ready")
[ "$PID" = "$DPID" ] || fail "ready says pid $PID, the shell started $DPID"
sleep 1
say "running as pid $PID; its log so far:"
sed 's/^/  /' "$D/log"

step "2: the state before the dump"
echo "\$ crcli check   (the lines that matter here)"
"$C" check > "$D/check.out"; cst=$?
grep -E '^(status|found   statmount_by_fd|MISSING|verdict)' "$D/check.out"
[ "$cst" = 0 ] || fail "crcli check exited $cst"
grep -q '^found   statmount_by_fd' "$D/check.out" || fail "this kernel lacks statmount(STATMOUNT_BY_FD)"
echo "the fds of pid $PID (readlink /proc/$PID/fd/N; pos and mnt_id from /proc/$PID/fdinfo/N):"
fds "$PID"
echo "\$ grep demo /proc/$PID/mountinfo   (its mount table shows only the live tmpfs)"
grep demo "/proc/$PID/mountinfo" | sed 's/^/  /'
echo "the process's own view (readlink, fdinfo, mountinfo, statx, statmount(STATMOUNT_BY_FD) on each fd):"
facts
MOUNTS_BEFORE=$(wc -l < /proc/self/mountinfo)

step "3: dump (crcli dump kills the process once the image is written)"
run "$C" dump -t "$PID" -D "$IMG" || fail "crcli dump -t $PID -D $IMG failed"
wait "$DPID"; st=$?
say "the shell that started pid $PID collected it: exit status $st (137 = killed by SIGKILL)"
[ "$st" = 137 ] || fail "pid $PID ended with status $st, not SIGKILL (137)"
[ -e "/proc/$PID" ] && fail "pid $PID still exists after the dump"
say "pid $PID is gone: $(ls /proc/$PID 2>&1 | head -n 1)"
LOGGED=$(wc -l < "$D/log")
LAST=$(ticks "$D/log" | tail -n 1)
[ -n "$LAST" ] || fail "the program logged no tick before the dump"
say "the last tick it logged before it died: $LAST"
echo "\$ crcli show $IMG"
"$C" show "$IMG" > "$D/show.out" 2>&1 || { cat "$D/show.out"; fail "crcli show $IMG failed"; }
cat "$D/show.out"
grep -q 'mounts: .* 1 unmounted, 1 anonymous' "$D/show.out" ||
  fail "the image does not hold one unmounted and one anonymous mount (see crcli show above)"
grep -q 'bind of live mount' "$D/show.out" || fail "the unmounted bind has no bind-of-live-mount rebuild plan"
grep -q 'lost superblock' "$D/show.out" || fail "the anonymous tmpfs has no lost-superblock rebuild plan"

step "4: restore (crcli restore -d prints the restored pid and leaves it running)"
echo "\$ crcli restore -D $IMG -d"
NEWPID=$("$C" restore -D "$IMG" -d) || fail "crcli restore -D $IMG -d failed"
echo "$NEWPID"
[ -d "/proc/$NEWPID" ] || fail "restored pid $NEWPID does not exist"
say "restored as pid $NEWPID (dumped as pid $PID)"
echo "the fds of pid $NEWPID (readlink /proc/$NEWPID/fd/N; pos and mnt_id from /proc/$NEWPID/fdinfo/N):"
fds "$NEWPID"
echo "\$ grep demo /proc/$NEWPID/mountinfo"
grep demo "/proc/$NEWPID/mountinfo" | sed 's/^/  /'
echo "the process's own view after the restore:"
facts
MOUNTS_AFTER=$(wc -l < /proc/self/mountinfo)
say "mounts in the guest's table: $MOUNTS_BEFORE before the dump, $MOUNTS_AFTER after the restore"
[ "$MOUNTS_BEFORE" = "$MOUNTS_AFTER" ] || fail "the restore changed the mount table"
sleep 1
say "it carries on; its log around the dump (last 2 lines before, every line after):"
head -n "$LOGGED" "$D/log" | tail -n 2 | sed 's/^/  before: /'
tail -n "+$((LOGGED + 1))" "$D/log" | sed 's/^/  after:  /'
FIRST=$(tail -n "+$((LOGGED + 1))" "$D/log" | ticks /dev/stdin | head -n 1)
[ -n "$FIRST" ] || fail "the restored process logged no tick within 1 s"
[ "$FIRST" = $((LAST + 1)) ] || fail "the first tick after the restore is $FIRST, want $((LAST + 1))"
say "counter: $LAST before the dump, $FIRST first after the restore: no gap, no repeat"
ticks "$D/log" | awk 'NR - 1 != $1 { print "tick " $1 " logged as tick number " NR - 1; bad = 1 } END { exit bad }' ||
  fail "the logged ticks are not 0, 1, 2, ... exactly once each"
say "the files, read through /proc/$NEWPID/fd (nothing in any mount table leads to them):"
for n in $(ls /proc/$NEWPID/fd); do
  case "$(readlink /proc/$NEWPID/fd/$n)" in
  /notes.txt | /journal.txt)
    echo "  --- fd $n: $(readlink /proc/$NEWPID/fd/$n), $(wc -l < /proc/$NEWPID/fd/$n) lines:"
    show_file "/proc/$NEWPID/fd/$n" ;;
  esac
done

step "5: stop it: it checks itself (files, positions, mounts, sleeps) and exits"
echo "\$ touch $D/go"
touch "$D/go"
wait_file "$D/result" 30 || fail "the restored program wrote no result within 30 s"
say "its result: $(cat "$D/result")"
tail -n 3 "$D/log" | sed 's/^/  /'
[ "$(cat "$D/result")" = PASS ] || fail "the restored program's own checks failed: $(cat "$D/result")"
n=0
while [ -e "/proc/$NEWPID" ] && [ "$(awk '{print $3}' /proc/$NEWPID/stat 2>/dev/null)" != Z ]; do
  n=$((n + 1)); [ "$n" -gt 100 ] && fail "pid $NEWPID did not exit after writing PASS"
  sleep 0.1
done
echo
echo "DEMO VERDICT: PASS (dumped at tick $LAST, restored, carried on from tick $FIRST, checks passed)"
exit 0
"##;

/// `cargo xtask demo [options]` (the `vm-shell` options of `cargo xtask help`).
pub fn cmd_demo(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--guest-binary") {
        bail!("demo runs its own guest program; --guest-binary is for vm-test");
    }
    // A shorter default timeout than vm-test's: the demo boots, dumps and restores one program.
    let mut all = vec!["--timeout".to_string(), "600".to_string()];
    all.extend(args.iter().cloned());
    let opts = vm::parse_options(&all, false)?;
    let release = args.iter().any(|a| a == "--release");

    let started = Instant::now();
    let demo = build_demo_program(release)?;
    let script = GUEST_SCRIPT.replace("@DEMO@", &sh_quote(path_str(&demo)?));
    let opts = opts.with_guest_script(PathBuf::from(GUEST_SCRIPT_PATH), script);
    let verdict = vm::vm_test(&opts)?;
    eprintln!(
        "xtask: guest kernel {}; {} s in all (build, initramfs, boot, demo)",
        verdict.kernel,
        started.elapsed().as_secs()
    );
    for p in &verdict.problems {
        eprintln!("demo: FAILED: {p}");
    }
    if verdict.ok() && verdict.passed == 1 {
        println!(
            "demo: PASSED: dumped, killed, restored and carried on, in the VM on Linux {}",
            verdict.kernel
        );
        Ok(())
    } else {
        bail!(
            "demo failed: {} problem(s) (see DEMO-FAILED in the guest's output above)",
            verdict.problems.len().max(1)
        )
    }
}

/// Build `crcli-e2e` (its build script compiles `progs/demo.c`) and return the demo program's
/// path, from the build script's `out_dir` that cargo reports.
fn build_demo_program(release: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec![
        "build",
        "-p",
        "crcli-e2e",
        "--message-format=json-render-diagnostics",
    ];
    if release {
        args.push("--release");
    }
    eprintln!("xtask: cargo {}", args.join(" "));
    let out = Command::new(cargo)
        .args(&args)
        .current_dir(crate::project_root())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build -p crcli-e2e")?;
    if !out.status.success() {
        bail!("cargo build -p crcli-e2e failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let out_dir = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "build-script-executed")
        .filter(|v| {
            v["package_id"]
                .as_str()
                .is_some_and(|id| id.contains("crcli-e2e"))
        })
        .find_map(|v| v["out_dir"].as_str().map(PathBuf::from))
        .context("cargo build -p crcli-e2e reported no build script output directory")?;
    let demo = out_dir.join("progs/demo");
    if !demo.is_file() {
        bail!(
            "the build script of crcli-e2e did not produce {}",
            demo.display()
        );
    }
    Ok(demo)
}

/// Single-quote a string for the guest's shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_script_is_valid_sh() {
        // The script must at least parse; `sh -n` reads it without running anything.
        let script = GUEST_SCRIPT.replace("@DEMO@", &sh_quote("/x/it's/demo"));
        let out = Command::new("sh")
            .arg("-n")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(script.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!script.contains("@DEMO@"));
        assert!(script.contains(r"DEMO='/x/it'\''s/demo'"));
    }

    #[test]
    fn rejects_guest_binary() {
        let e = cmd_demo(&["--guest-binary".into(), "/bin/true".into()]).unwrap_err();
        assert!(e.to_string().contains("--guest-binary"), "{e}");
    }
}
