//! Benchmark of `geoexp gc --dry-run` (and `geoexp cache`) over a large runs directory.
//!
//! Writes `GEOEXP_BENCH_RUNS` (default 10,000) manifests shaped like a real run of
//! `experiments/golf.toml` (`benches/ls_manifest.toml`, with their own stage keys), and a
//! cache of five stages × as many entries (50,000 by default), each entry a folder with
//! a `record.toml` and four small output files, as real entries have. A fifth of the runs'
//! manifests are then deleted, so their 10,000 entries are unreferenced. Then times, best
//! and median of `GEOEXP_BENCH_REPEATS` (default 5) after a warm-up (files in the page
//! cache): `ops::gc::gc` as a dry run, `ops::gc::cache`, and the `geoexp gc --dry-run`
//! binary end to end. Target on 2 cores: under 2 s. `GEOEXP_BENCH_DIR=DIR` keeps the runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use geoexp::graph::manifest::MANIFEST_FILE;
use geoexp::graph::{Manifest, StageKey};
use geoexp::ops::gc::{GcOptions, cache, gc};
use rayon::prelude::*;

const TEMPLATE: &str = include_str!("ls_manifest.toml");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The key of run `i`'s entry of `stage`.
fn key(stage: &str, i: usize) -> StageKey {
    let hex = blake3::hash(format!("{stage}/{i}").as_bytes()).to_hex();
    StageKey::parse(hex.as_str()).expect("a blake3 hex digest is a key")
}

fn time<T>(repeats: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut out = f();
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        out = f();
        times.push(t.elapsed());
    }
    times.sort();
    (times[0], times[times.len() / 2], out)
}

fn report(what: &str, (best, median): (Duration, Duration)) {
    println!(
        "{what}: best {:.0} ms, median {:.0} ms",
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = env_usize("GEOEXP_BENCH_RUNS", 10_000);
    let repeats = env_usize("GEOEXP_BENCH_REPEATS", 5).max(1);
    let template: Manifest = toml::from_str(TEMPLATE)?;
    let tmp = tempfile::tempdir()?;
    let runs = match std::env::var_os("GEOEXP_BENCH_DIR") {
        Some(dir) => Path::new(&dir).to_path_buf(),
        None => tmp.path().join("runs"),
    };
    let stages: Vec<String> = template.stages.keys().cloned().collect();

    let t = Instant::now();
    (0..n).into_par_iter().try_for_each(|i| {
        let mut m = template.clone();
        m.run.id = key("run", i).as_str()[..12].to_owned();
        for (stage, s) in &mut m.stages {
            s.key = key(stage, i);
        }
        m.write(&runs.join(&m.run.name).join(&m.run.id).join(MANIFEST_FILE))
    })?;
    let record = "key = \"…\"\n".repeat(60);
    (0..n).into_par_iter().try_for_each(|i| {
        for stage in &stages {
            let dir = runs.join(".cache").join(stage).join(key(stage, i).as_str());
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("record.toml"), &record)?;
            for (file, size) in [
                ("a.csv", 900),
                ("b.csv", 3000),
                ("c.png", 7000),
                ("d.toml", 200),
            ] {
                std::fs::write(dir.join(file), vec![b'x'; size])?;
            }
        }
        Ok::<_, std::io::Error>(())
    })?;
    // Forget a fifth of the runs: their entries become garbage.
    let forgotten = n / 5;
    for i in 0..forgotten {
        let id = key("run", i).as_str()[..12].to_owned();
        std::fs::remove_dir_all(runs.join(&template.run.name).join(id))?;
    }
    println!(
        "wrote {n} manifests ({forgotten} then removed) and {} cache entries in {:.1} s",
        n * stages.len(),
        t.elapsed().as_secs_f64()
    );

    let options = GcOptions {
        runs_dir: runs.clone(),
        dry_run: true,
        ..GcOptions::default()
    };
    let (best, median, result) = time(repeats, || gc(&options));
    let result = result?;
    println!(
        "gc --dry-run would remove {} entries ({} bytes) of {} runs' cache",
        result.removed.len(),
        result.freed,
        n - forgotten
    );
    report(
        &format!(
            "ops::gc::gc dry run ({} threads)",
            rayon::current_num_threads()
        ),
        (best, median),
    );
    let (best, median, _) = time(repeats, || cache(&runs));
    report("ops::gc::cache", (best, median));

    let bin = env!("CARGO_BIN_EXE_geoexp");
    for args in [&["gc", "--dry-run"][..], &["cache"][..]] {
        let (best, median, status) = time(repeats, || {
            Command::new(bin)
                .args(args)
                .arg("--runs-dir")
                .arg(&runs)
                .stdout(Stdio::null())
                .status()
        });
        if !status?.success() {
            return Err(format!("geoexp {} failed", args.join(" ")).into());
        }
        report(
            &format!("geoexp {} (binary)", args.join(" ")),
            (best, median),
        );
    }
    println!("target: gc --dry-run over 10,000 manifests and 50,000 entries under 2 s on 2 cores");
    Ok(())
}
