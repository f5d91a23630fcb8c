//! `geoexp verify`, and the checks a cache hit makes: damaged entries are named and never
//! used.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{TestEnv, synthetic_experiment};

/// A finished tiny run; returns its run folder.
fn finished_run(env: &TestEnv) -> PathBuf {
    env.write("exp.toml", &synthetic_experiment(40, ""));
    env.run(&["run", "exp.toml"]).expect(0);
    env.run_dir("t")
}

/// The cache entry of `stage` (the only one).
fn entry(env: &TestEnv, stage: &str) -> PathBuf {
    let keys = env.cache_entries(stage);
    assert_eq!(keys.len(), 1, "{stage}: {keys:?}");
    env.path().join("runs/.cache").join(stage).join(&keys[0])
}

#[test]
fn a_clean_run_verifies_and_each_kind_of_damage_is_named() {
    let env = TestEnv::new();
    let run = finished_run(&env);
    let run_arg = run.to_str().unwrap();
    let ok = env.run(&["verify", run_arg]).expect(0);
    assert!(ok.stdout.contains("all 5 stages verified"), "{}", ok.stdout);

    // A flipped byte.
    let tensor = entry(&env, "images").join("images.safetensors");
    let mut bytes = fs::read(&tensor).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&tensor, &bytes).unwrap();
    let bad = env.run(&["verify", run_arg]).expect(1);
    assert!(bad.stdout.contains("images"), "{}", bad.stdout);
    assert!(bad.stdout.contains("images.safetensors"), "{}", bad.stdout);
    assert!(bad.stdout.contains("content differs"), "{}", bad.stdout);
    assert!(
        bad.stdout.contains("1 of 5 stages do not verify"),
        "{}",
        bad.stdout
    );
    bytes[middle] ^= 0x40;
    fs::write(&tensor, &bytes).unwrap();

    // A deleted output.
    let metrics = entry(&env, "train").join("metrics.csv");
    let saved = fs::read(&metrics).unwrap();
    fs::remove_file(&metrics).unwrap();
    let bad = env.run(&["verify", run_arg]).expect(1);
    assert!(
        bad.stdout.contains("metrics.csv: missing"),
        "{}",
        bad.stdout
    );
    fs::write(&metrics, saved).unwrap();

    // A garbled record.
    let record = entry(&env, "classes").join("record.toml");
    let saved = fs::read(&record).unwrap();
    fs::write(&record, "key = [").unwrap();
    let bad = env.run(&["verify", run_arg, "--format", "json"]).expect(1);
    let report: serde_json::Value = serde_json::from_str(&bad.stdout).unwrap();
    let classes = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "classes")
        .unwrap();
    assert_eq!(classes["problems"][0]["output"], "record.toml", "{report}");
    fs::write(&record, saved).unwrap();

    // Volatile outputs are checked by size: an event file rewritten with other wall
    // times but the same length is fine, a shorter one is not.
    let events = entry(&env, "train").join("train.events");
    let len = fs::metadata(&events).unwrap().len();
    fs::write(&events, vec![0u8; len as usize]).unwrap();
    env.run(&["verify", run_arg]).expect(0);
    fs::write(&events, b"short").unwrap();
    let bad = env.run(&["verify", run_arg]).expect(1);
    assert!(bad.stdout.contains("train.events"), "{}", bad.stdout);
}

#[test]
fn evict_removes_bad_entries_and_the_next_run_recomputes_them() {
    let env = TestEnv::new();
    let run = finished_run(&env);
    let manifest = fs::read(run.join("manifest.toml")).unwrap();
    let best = entry(&env, "train").join("best.safetensors");
    let mut bytes = fs::read(&best).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&best, &bytes).unwrap();
    let id = run.file_name().unwrap().to_str().unwrap().to_owned();
    let out = env.run(&["verify", &id[..6], "--evict"]).expect(1);
    assert!(out.stdout.contains("evicted train"), "{}", out.stdout);
    assert!(env.cache_entries("train").is_empty());
    let again = env.run(&["run", "exp.toml"]).expect(0);
    assert!(
        again
            .stdout
            .lines()
            .any(|l| l.starts_with("train") && l.contains(" miss ")),
        "{}",
        again.stdout
    );
    assert_eq!(fs::read(run.join("manifest.toml")).unwrap(), manifest);
    env.run(&["verify", &id]).expect(0);
}

#[test]
fn recompute_reproduces_every_stage_of_a_run() {
    let env = TestEnv::new();
    let run = finished_run(&env);
    let run_arg = run.to_str().unwrap();
    for stage in ["dataset", "classes", "images", "train", "evaluate"] {
        let out = env
            .run(&["verify", run_arg, "--recompute", stage])
            .expect(0);
        assert!(
            out.stdout.contains(&format!("recompute {stage} "))
                && out.stdout.contains("reproduced"),
            "{stage}: {}",
            out.stdout
        );
    }
    // Recomputing writes nothing into the cache.
    let tmp = env.path().join("runs/.cache/train/.tmp");
    let left = fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "scratch left in {tmp:?}");
}

#[test]
fn recompute_notices_a_changed_output_and_a_changed_experiment() {
    let env = TestEnv::new();
    let run = finished_run(&env);
    let run_arg = run.to_str().unwrap();
    // A record whose hash no longer matches what the stage makes: the "recorded" output
    // was not what the code produces.
    let record_path = entry(&env, "classes").join("record.toml");
    let record = fs::read_to_string(&record_path).unwrap();
    let mut table: toml::Table = toml::from_str(&record).unwrap();
    table["outputs"]["classes.csv"]["blake3"] = toml::Value::String("0".repeat(64));
    fs::write(&record_path, toml::to_string(&table).unwrap()).unwrap();
    let out = env
        .run(&["verify", run_arg, "--recompute", "classes"])
        .expect(1);
    assert!(out.stdout.contains("NOT reproduced"), "{}", out.stdout);
    assert!(out.stdout.contains("  classes.csv"), "{}", out.stdout);
    fs::write(&record_path, record).unwrap();

    // The experiment file changed since: the stage no longer has the run's key.
    let text = env.read("exp.toml").replace("seed = 1", "seed = 2");
    env.write("exp.toml", &text);
    let out = env
        .run(&["verify", run_arg, "--recompute", "train"])
        .expect(2);
    assert!(out.stderr.contains("another key"), "{}", out.stderr);
    assert!(out.stderr.contains("seed"), "{}", out.stderr);
    let out = env
        .run(&["verify", run_arg, "--recompute", "nope"])
        .expect(2);
    assert!(out.stderr.contains("has no stage `nope`"), "{}", out.stderr);
}

#[test]
fn a_damaged_entry_is_never_a_cache_hit() {
    let env = TestEnv::new();
    let run = finished_run(&env);
    let manifest = fs::read(run.join("manifest.toml")).unwrap();
    let hit_or_miss = |out: &str, stage: &str| -> &'static str {
        let line = out
            .lines()
            .find(|l| l.starts_with(stage) && (l.contains(" hit ") || l.contains(" miss ")))
            .unwrap_or_else(|| panic!("{stage}: {out}"));
        if line.contains(" hit ") {
            "hit"
        } else {
            "miss"
        }
    };

    // A truncated checkpoint (size differs), a deleted metrics table, a deleted image
    // index, and an edited locations table of the same size: each is a miss with a
    // warning naming the file, and the run ends with the same manifest.
    type Damage = fn(&Path);
    let cases: [(&str, &str, Damage); 4] = [
        ("train", "best.safetensors", |p| {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..1000]).unwrap();
        }),
        ("train", "metrics.csv", |p| fs::remove_file(p).unwrap()),
        ("images", "index.csv", |p| fs::remove_file(p).unwrap()),
        ("dataset", "locations.csv", |p| {
            // Every latitude's first digit after the point moved by one (same size).
            let text = fs::read_to_string(p).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            for line in lines.iter_mut().skip(1) {
                let mut cols: Vec<String> = line.split(',').map(str::to_owned).collect();
                let (int, frac) = cols[1].split_once('.').unwrap();
                let d = frac.as_bytes()[0] - b'0';
                cols[1] = format!("{int}.{}{}", (d + 1) % 10, &frac[1..]);
                *line = cols.join(",");
            }
            fs::write(p, lines.join("\n") + "\n").unwrap();
        }),
    ];
    for (stage, file, damage) in cases {
        damage(&entry(&env, stage).join(file));
        let out = env.run(&["run", "exp.toml"]).expect(0);
        assert_eq!(
            hit_or_miss(&out.stdout, stage),
            "miss",
            "{file}: {}",
            out.stdout
        );
        assert!(out.stderr.contains(file), "{file}: {}", out.stderr);
        assert_eq!(
            fs::read(run.join("manifest.toml")).unwrap(),
            manifest,
            "{file}"
        );
        env.run(&["verify", run.to_str().unwrap()]).expect(0);
    }
}
