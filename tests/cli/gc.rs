//! `geoexp cache` and `geoexp gc`: what is kept, what goes, budgets, bad input, and gc
//! racing a sweep.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::common::{TestEnv, synthetic_experiment};
use crate::sweep::{expected_counts, stage_runs};

/// Runs of one experiment: its run folders by the `train.lr` they were run with.
fn run_with_lr(env: &TestEnv, lr: &str) -> PathBuf {
    let out = env
        .run(&["run", "exp.toml", "--set", &format!("train.lr={lr}")])
        .expect(0);
    let line = out.stdout.lines().last().unwrap();
    let manifest = line.rsplit(' ').next().unwrap();
    env.path().join(manifest).parent().unwrap().to_path_buf()
}

/// Makes a run folder look `days` old (gc ages runs by their manifest).
fn age(run: &Path, days: u64) {
    let when = SystemTime::now() - Duration::from_secs(days * 86_400);
    fs::File::options()
        .write(true)
        .open(run.join("manifest.toml"))
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn label(run: &Path) -> String {
    format!("t/{}", run.file_name().unwrap().to_str().unwrap())
}

#[test]
fn gc_keeps_what_runs_reference_and_removes_the_rest() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(30, ""));
    let a = run_with_lr(&env, "1e-3");
    let b = run_with_lr(&env, "3e-4");
    assert_eq!(env.cache_entries("train").len(), 2);
    // Forget run b: its train and evaluate entries are referenced by no run now.
    fs::remove_dir_all(&b).unwrap();

    let table = env.run(&["cache"]).expect(0);
    let train = table
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("train"))
        .unwrap();
    let cells: Vec<&str> = train.split_whitespace().collect();
    assert_eq!(cells[1], "2", "{}", table.stdout);
    assert!(
        train.contains("1 ("),
        "one referenced, one not: {}",
        table.stdout
    );

    let json = env.run(&["cache", "--format", "json"]).expect(0);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let total = report["stages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(total["stage"], "total");
    assert_eq!(total["unreferenced"], 2, "{report}");

    let dry = env.run(&["gc", "--dry-run"]).expect(0);
    assert!(dry.stdout.contains("would remove entry"), "{}", dry.stdout);
    assert_eq!(
        env.cache_entries("train").len(),
        2,
        "a dry run removed something"
    );

    let done = env.run(&["gc"]).expect(0);
    assert_eq!(
        done.stdout.matches("removed entry").count(),
        2,
        "{}",
        done.stdout
    );
    assert_eq!(env.cache_entries("train").len(), 1);
    assert_eq!(env.cache_entries("evaluate").len(), 1);
    assert_eq!(env.cache_entries("dataset").len(), 1);
    env.run(&["verify", a.to_str().unwrap()]).expect(0);
    // Nothing left to do.
    let again = env.run(&["gc"]).expect(0);
    assert!(!again.stdout.contains("removed entry"), "{}", again.stdout);
}

#[test]
fn budgets_remove_the_oldest_unpinned_runs_first() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(30, ""));
    let old = run_with_lr(&env, "1e-3");
    let pinned = run_with_lr(&env, "3e-4");
    let young = run_with_lr(&env, "1e-4");
    age(&old, 40);
    age(&pinned, 50);

    // --older-than: the 40-day-old run goes, the pinned 50-day-old one stays.
    let out = env
        .run(&["gc", "--older-than", "30d", "--keep-runs", &label(&pinned)])
        .expect(0);
    assert!(
        out.stdout
            .contains(&format!("removed run       {}", label(&old))),
        "{}",
        out.stdout
    );
    assert!(!old.exists() && pinned.exists() && young.exists());
    assert_eq!(env.cache_entries("train").len(), 2);
    for run in [&pinned, &young] {
        env.run(&["verify", run.to_str().unwrap()]).expect(0);
    }

    // --max-size smaller than anything: every unpinned run goes, and gc says the
    // budget cannot be met.
    let out = env
        .run(&["gc", "--max-size", "1KiB", "--keep-runs", "t/*"])
        .expect(0);
    assert!(
        out.stdout.contains("still over --max-size"),
        "{}",
        out.stdout
    );
    assert!(young.exists());
    let out = env
        .run(&["gc", "--max-size", "1KiB", "--keep-runs", &label(&pinned)])
        .expect(0);
    assert!(!young.exists() && pinned.exists(), "{}", out.stdout);
    assert_eq!(env.cache_entries("train").len(), 1);
    env.run(&["verify", pinned.to_str().unwrap()]).expect(0);
}

#[test]
fn interrupted_trainings_and_abandoned_temporaries_go_live_ones_stay() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(30, ""));
    let run = run_with_lr(&env, "1e-3");
    let cache = env.path().join("runs/.cache");
    // A training whose process is gone, and a temporary of a dead process.
    let work = cache.join("train/.work").join("a".repeat(64));
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("last.safetensors"), "x").unwrap();
    let dead_tmp = cache.join("train/.tmp").join(format!(
        "{}.{}.{}.deadbeef",
        "b".repeat(64),
        gethost(),
        i32::MAX - 3
    ));
    fs::create_dir_all(&dead_tmp).unwrap();
    fs::write(dead_tmp.join("best.safetensors"), "half").unwrap();
    let table = env.run(&["cache"]).expect(0);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("train") && l.ends_with("1 (1 B)")),
        "{}",
        table.stdout
    );
    let out = env.run(&["gc"]).expect(0);
    assert!(out.stdout.contains("removed training"), "{}", out.stdout);
    assert!(out.stdout.contains("removed temporary"), "{}", out.stdout);
    assert!(!work.exists() && !dead_tmp.exists());
    env.run(&["verify", run.to_str().unwrap()]).expect(0);
}

/// This machine's host name as geoexp writes it into temporary names.
fn gethost() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn bad_input_is_a_clear_error_and_removes_nothing() {
    let env = TestEnv::new();
    let out = env.run(&["gc", "--runs-dir", "nowhere"]).expect(2);
    assert!(
        out.stderr.contains("nowhere: no such runs directory"),
        "{}",
        out.stderr
    );
    let out = env.run(&["cache", "--runs-dir", "nowhere"]).expect(2);
    assert!(
        out.stderr.contains("no such runs directory"),
        "{}",
        out.stderr
    );
    let out = env.run(&["gc", "--max-size", "lots"]).expect(2);
    assert!(out.stderr.contains("--max-size"), "{}", out.stderr);
    let out = env.run(&["gc", "--older-than", "soon"]).expect(2);
    assert!(out.stderr.contains("--older-than"), "{}", out.stderr);

    env.write("exp.toml", &synthetic_experiment(30, ""));
    let a = run_with_lr(&env, "1e-3");
    let b = run_with_lr(&env, "3e-4");
    let out = env.run(&["gc", "--keep-runs", "t/[oops"]).expect(2);
    assert!(out.stderr.contains("--keep-runs t/[oops"), "{}", out.stderr);

    // A corrupt manifest: gc cannot tell what run b used, so it refuses to remove
    // entries unless forced; a dry run says what it would do and warns.
    fs::write(b.join("manifest.toml"), "[run\nname = ").unwrap();
    let out = env.run(&["gc"]).expect(2);
    assert!(out.stderr.contains("cannot be read"), "{}", out.stderr);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(env.cache_entries("train").len(), 2);
    let dry = env.run(&["gc", "--dry-run"]).expect(0);
    assert!(dry.stderr.contains("unreadable manifest"), "{}", dry.stderr);
    let forced = env.run(&["gc", "--force"]).expect(0);
    assert_eq!(
        forced.stdout.matches("removed entry").count(),
        2,
        "{}",
        forced.stdout
    );
    env.run(&["verify", a.to_str().unwrap()]).expect(0);
}

#[test]
fn gc_in_a_loop_beside_a_sweep_neither_fails_it_nor_makes_it_recompute() {
    let env = TestEnv::new();
    let grid = "[sweep]\n\"train.lr\" = [1e-3, 3e-4]\n\"classes.spacing\" = [0.5, 0.7]\n";
    env.write(
        "exp.toml",
        &synthetic_experiment(60, grid).replace("epochs = 1", "epochs = 3"),
    );
    // Garbage for gc to collect meanwhile: another experiment's run, forgotten.
    env.write(
        "other.toml",
        &synthetic_experiment(20, "").replace("name = \"t\"", "name = \"o\""),
    );
    env.run(&["run", "other.toml"]).expect(0);
    fs::remove_dir_all(env.path().join("runs/o")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let gc_loop = {
        let stop = Arc::clone(&stop);
        let mut cmd = env.cmd(&["gc"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        std::thread::spawn(move || {
            let mut passes = 0;
            let mut removed = 0;
            while !stop.load(Ordering::SeqCst) {
                let out = cmd.output().unwrap();
                assert!(
                    out.status.success(),
                    "gc failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                removed += String::from_utf8_lossy(&out.stdout)
                    .matches("removed entry")
                    .count();
                passes += 1;
            }
            (passes, removed)
        })
    };
    let sweep = env
        .cmd(&["sweep", "exp.toml", "--jobs", "2"])
        .output()
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let (passes, removed) = gc_loop.join().unwrap();
    assert!(
        sweep.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&sweep.stdout),
        String::from_utf8_lossy(&sweep.stderr)
    );
    assert!(passes >= 2, "gc ran {passes} times");
    assert!(
        removed >= 5,
        "gc removed only {removed} entries: the forgotten run's"
    );
    // Each stage computed once: nothing gc removed had to be made again.
    assert_eq!(stage_runs(&env.path().join("runs"), "t"), expected_counts());
    for run in fs::read_dir(env.path().join("runs/t")).unwrap() {
        let run = run.unwrap().path();
        env.run(&["verify", run.to_str().unwrap()]).expect(0);
    }
}
