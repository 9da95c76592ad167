//! Benchmark: writing and reading 1 GiB of page data to and from a tmpfs directory with
//! `PagesWriter` / `PagesReader`, beside `cp` of a 1 GiB file on the same tmpfs.
//!
//! Run: `cargo bench -p crcli-image --bench pages` (options after `--`: `--dir DIR` for the
//! tmpfs directory, default /dev/shm; `--gib N` for the size, default 1; `--rounds N`, default 5).
//! Figures are recorded in crates/image/BENCH.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crcli_image::{Image, Inventory, PagesId, MAX_CHUNK_LEN};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn fs_type(dir: &Path) -> String {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut dir = PathBuf::from("/dev/shm");
    let mut gib = 1u64;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().expect("--dir DIR").into(),
            "--gib" => gib = args.next().expect("--gib N").parse().expect("a number"),
            "--rounds" => rounds = args.next().expect("--rounds N").parse().expect("a number"),
            "--bench" => {}
            _ => {}
        }
    }
    let total = gib << 30;
    let work = tempfile::tempdir_in(&dir).expect("a scratch directory in --dir");
    println!(
        "page stream benchmark: {} GiB, {} rounds, in {} ({})",
        gib,
        rounds,
        dir.display(),
        fs_type(&dir)
    );

    // One chunk of non-trivial page content, reused (the source is memory, as in a dump).
    let chunk: Vec<u8> = (0..MAX_CHUNK_LEN as usize)
        .map(|i| (i as u64).wrapping_mul(2654435761) as u8 ^ (i >> 12) as u8)
        .collect();
    let mut buf = vec![0u8; MAX_CHUNK_LEN as usize];

    let (mut w_times, mut r_times, mut cp_times) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let target = work.path().join(format!("img{round}"));
        let t = Instant::now();
        let mut w = Image::create(&target).unwrap();
        let mut pw = w.pages(PagesId(1)).unwrap();
        let mut addr = 0x7f00_0000_0000u64;
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            pw.add(addr, &chunk[..n]).unwrap();
            addr += n as u64;
            left -= n as u64;
        }
        pw.finish().unwrap();
        let img = w.commit(Inventory::new(0, vec![])).unwrap();
        w_times.push(t.elapsed());
        drop(img);

        let t = Instant::now();
        let img = Image::open(&target).unwrap();
        let mut r = img.pages(PagesId(1)).unwrap();
        let mut got = 0u64;
        let mut x = 0u8;
        while let Some(c) = r.next_chunk(&mut buf).unwrap() {
            got += c.len as u64;
            x ^= buf[c.len - 1];
        }
        r_times.push(t.elapsed());
        assert_eq!(got, total);
        std::hint::black_box(x);

        // cp of a file of the same size on the same tmpfs.
        let src = work.path().join("cp-src");
        if round == 0 {
            std::fs::copy(target.join("pages-1.data"), &src).unwrap();
        }
        let dst = work.path().join("cp-dst");
        let t = Instant::now();
        let st = Command::new("cp").arg(&src).arg(&dst).status().unwrap();
        cp_times.push(t.elapsed());
        assert!(st.success());
        std::fs::remove_file(&dst).unwrap();
        std::fs::remove_dir_all(&target).unwrap();
    }
    let mbps = |d: Duration| total as f64 / d.as_secs_f64() / 1e6;
    let (w, r, c) = (
        median(w_times.clone()),
        median(r_times.clone()),
        median(cp_times.clone()),
    );
    println!("write (create, add, finish, commit incl. fsync and check): median {:?} = {:.0} MB/s (runs: {:?})", w, mbps(w), w_times);
    println!("read (open incl. checks, all chunks with crc32c):         median {:?} = {:.0} MB/s (runs: {:?})", r, mbps(r), r_times);
    println!("cp of a {} GiB file on the same fs:                          median {:?} = {:.0} MB/s (runs: {:?})", gib, c, mbps(c), cp_times);
    println!(
        "ratio to cp: write {:.2}x, read {:.2}x (target: within 1.5x)",
        w.as_secs_f64() / c.as_secs_f64(),
        r.as_secs_f64() / c.as_secs_f64()
    );
    println!(
        "peak RSS of this benchmark process (VmHWM): {} KiB",
        vm_hwm_kib()
    );
}
