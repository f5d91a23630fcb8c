//! Benchmark of `geoexp ls` over ten thousand runs.
//!
//! Writes `GEOEXP_BENCH_RUNS` (default 10,000) manifests shaped like a real run of
//! `experiments/golf.toml` (`benches/ls_manifest.toml`, ~10 KB: the full config, provenance,
//! five stages with params, inputs, outputs and results) into a temp runs directory, under
//! two experiment names, varying `train.lr`, `classes.spacing`, `seed`, the stage keys and
//! every metric. Then times, best and median of `GEOEXP_BENCH_REPEATS` (default 5) after a
//! warm-up (so the files are in the page cache): `ops::ls` with the default columns sorted
//! by a metric, `ops::ls` with every final metric (what csv and json print), the same on one
//! thread, and the `geoexp ls` binary end to end. Target on 2 cores: well under 2 s.
//! `GEOEXP_BENCH_DIR=DIR` writes the runs there and keeps them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use geoexp::graph::Manifest;
use geoexp::graph::manifest::MANIFEST_FILE;
use geoexp::ops::ls::{LsOptions, MetricSelection, ls};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{Value, json};

const TEMPLATE: &str = include_str!("ls_manifest.toml");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hex(rng: &mut ChaCha8Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

/// Run `i`: the template with its own values, keys and metrics.
fn manifest(template: &Manifest, i: usize) -> Manifest {
    let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
    let mut m = template.clone();
    let lr = [1e-3, 3e-4, 1e-4, 3e-5][i % 4];
    let spacing = [0.3, 0.4, 0.5, 0.7][(i / 4) % 4];
    let seed = (i / 16) as u64;
    let name = if i.is_multiple_of(2) { "golf" } else { "hotel" };
    m.run.name = name.into();
    m.run.id = hex(&mut rng, 12);
    m.config["name"] = json!(name);
    m.config["seed"] = json!(seed);
    m.config["train"]["lr"] = json!(lr);
    m.config["classes"]["spacing"] = json!(spacing);
    for (stage, s) in m.stages.iter_mut() {
        s.key = geoexp::graph::StageKey::parse(&hex(&mut rng, 64)).unwrap_or(s.key.clone());
        if s.params.contains_key("seed") {
            s.params.insert("seed".into(), json!(seed));
        }
        match stage.as_str() {
            "train" => {
                s.params.insert("train.lr".into(), json!(lr));
            }
            "classes" => {
                s.params.insert("classes.spacing".into(), json!(spacing));
            }
            _ => {}
        }
        for v in s.results.values_mut() {
            if let Value::Number(n) = v
                && let Some(x) = n.as_f64()
                && n.is_f64()
            {
                *v = json!(x * rng.random_range(0.5..1.5));
            }
        }
    }
    m
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

fn report(what: &str, runs: usize, (best, median): (Duration, Duration)) {
    println!(
        "{what}: best {:.0} ms, median {:.0} ms → {:.0} runs/s",
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        runs as f64 / best.as_secs_f64()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = env_usize("GEOEXP_BENCH_RUNS", 10_000);
    let repeats = env_usize("GEOEXP_BENCH_REPEATS", 5).max(1);
    let template: Manifest = toml::from_str(TEMPLATE)?;
    let tmp = tempfile::tempdir()?;
    // GEOEXP_BENCH_DIR keeps the runs (to try `geoexp ls` on them, or profile it).
    let runs = match std::env::var_os("GEOEXP_BENCH_DIR") {
        Some(dir) => Path::new(&dir).to_path_buf(),
        None => tmp.path().join("runs"),
    };

    let t = Instant::now();
    (0..n).into_par_iter().try_for_each(|i| {
        let m = manifest(&template, i);
        m.write(&runs.join(&m.run.name).join(&m.run.id).join(MANIFEST_FILE))
    })?;
    let bytes: u64 = walk_bytes(&runs);
    println!(
        "wrote {n} manifests ({:.1} MB, {:.1} KB each) in {:.1} s",
        bytes as f64 / 1e6,
        bytes as f64 / n as f64 / 1e3,
        t.elapsed().as_secs_f64()
    );

    let options = LsOptions {
        dir: runs.clone(),
        metrics: MetricSelection::Default,
        sort: Some("test/haversine_km_mean".into()),
        only_changed: false,
    };
    let (best, median, listing) = time(repeats, || ls(&options));
    let listing = listing?;
    println!(
        "ops::ls: {} rows, config columns {:?}, {} metric columns",
        listing.rows.len(),
        listing.config_columns,
        listing.metric_columns.len()
    );
    report(
        &format!(
            "ops::ls, default columns, --sort ({} threads)",
            rayon::current_num_threads()
        ),
        n,
        (best, median),
    );

    let all = LsOptions {
        metrics: MetricSelection::AllFinal,
        sort: None,
        ..options.clone()
    };
    let (best, median, _) = time(repeats, || ls(&all));
    report("ops::ls, every final metric (csv/json)", n, (best, median));

    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let (best, median, _) = time(repeats, || one.install(|| ls(&options)));
    report("ops::ls on 1 thread", n, (best, median));

    // Where the time goes: reading the files, and parsing them as TOML without keeping
    // anything.
    let paths: Vec<_> = listing
        .rows
        .iter()
        .map(|r| r.dir.join(MANIFEST_FILE))
        .collect();
    let (best, median, _) = time(repeats, || {
        paths
            .par_iter()
            .map(|p| std::fs::read_to_string(p).map(|t| t.len()).unwrap_or(0))
            .sum::<usize>()
    });
    report("  of which reading the files", n, (best, median));
    let (best, median, _) = time(repeats, || {
        paths
            .par_iter()
            .filter(|p| {
                std::fs::read_to_string(p)
                    .ok()
                    .and_then(|t| toml::from_str::<serde::de::IgnoredAny>(&t).ok())
                    .is_some()
            })
            .count()
    });
    report("  of which reading and parsing the TOML", n, (best, median));

    let bin = env!("CARGO_BIN_EXE_geoexp");
    for format in ["table", "csv"] {
        let (best, median, status) = time(repeats, || {
            Command::new(bin)
                .args(["ls", "--format", format])
                .arg(&runs)
                .stdout(Stdio::null())
                .status()
        });
        if !status?.success() {
            return Err(format!("geoexp ls --format {format} failed").into());
        }
        report(
            &format!("geoexp ls --format {format} (binary)"),
            n,
            (best, median),
        );
    }
    println!("target: 10,000 runs well under 2 s on 2 cores");
    Ok(())
}

fn walk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_bytes(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
