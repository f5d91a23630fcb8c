//! `geoexp sweep`: expansion, shared stages, concurrency, resumption, failure policies.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{TestEnv, synthetic_experiment};

const GRID: &str = "[sweep]\n\"train.lr\" = [1e-3, 3e-4]\n\"classes.spacing\" = [0.5, 0.7]\n";

/// How many times each stage ran (not hit) over every run of experiment `name`.
pub fn stage_runs(runs: &Path, name: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for run in fs::read_dir(runs.join(name)).unwrap() {
        let text = fs::read_to_string(run.unwrap().path().join("execution.toml")).unwrap();
        let exec: toml::Table = toml::from_str(&text).unwrap();
        for stage in exec["stages"].as_array().unwrap() {
            if stage["status"].as_str() == Some("ran") {
                *counts
                    .entry(stage["stage"].as_str().unwrap().to_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    counts
}

pub fn expected_counts() -> BTreeMap<String, usize> {
    [
        ("dataset", 1),
        ("classes", 2),
        ("images", 1),
        ("train", 4),
        ("evaluate", 4),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The only sweep folder.
fn sweep_dir(env: &TestEnv) -> std::path::PathBuf {
    let dirs: Vec<_> = fs::read_dir(env.path().join("runs/sweeps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

fn sweep_record(env: &TestEnv) -> toml::Table {
    toml::from_str(&fs::read_to_string(sweep_dir(env).join("sweep.toml")).unwrap()).unwrap()
}

fn statuses(record: &toml::Table) -> Vec<String> {
    record["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_two_by_two_sweep_computes_shared_stages_once_and_records_every_trial() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, GRID));

    let dry = env.run(&["sweep", "exp.toml", "--dry-run"]).expect(0);
    assert!(
        dry.stdout
            .contains("stages to compute: dataset 1, classes 2, images 1, train 4, evaluate 4"),
        "{}",
        dry.stdout
    );
    assert!(
        !env.path().join("runs/t").exists(),
        "a dry run ran something"
    );

    let out = env.run(&["sweep", "exp.toml"]).expect(0);
    assert_eq!(stage_runs(&env.path().join("runs"), "t"), expected_counts());
    assert!(
        out.stdout
            .contains("ranked by best_val/haversine_km_mean (lower is better)")
    );
    let record = sweep_record(&env);
    assert_eq!(statuses(&record), ["ok"; 4]);
    assert_eq!(record["sweep"]["keys"].as_array().unwrap().len(), 2);
    let dir = sweep_dir(&env);
    let summary = fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 5, "{summary}");
    assert!(summary.starts_with(
        "rank,index,trial,status,run,classes.spacing,train.lr,best_val/haversine_km_mean,"
    ));
    // Ranked: the monitored metric never gets worse down the file.
    let metric: Vec<f64> = summary
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(7).unwrap().parse().unwrap())
        .collect();
    assert!(metric.windows(2).all(|w| w[0] <= w[1]), "{metric:?}");
    assert!(
        fs::read(dir.join("heatmap.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    for t in record["trials"].as_array().unwrap() {
        let run = env.path().join("runs").join(t["run"].as_str().unwrap());
        assert!(run.join("manifest.toml").is_file(), "{}", run.display());
    }

    // Dry run again: everything is cached; a real run again runs nothing.
    let dry = env.run(&["sweep", "exp.toml", "--dry-run"]).expect(0);
    assert!(
        dry.stdout.contains("train 0 (of 4; 4 cached)"),
        "{}",
        dry.stdout
    );
    let again = env.run(&["sweep", "exp.toml"]).expect(0);
    assert!(
        again
            .stdout
            .contains("4 trials finished before and not run again"),
        "{}",
        again.stdout
    );
    assert_eq!(stage_runs(&env.path().join("runs"), "t"), expected_counts());
}

#[test]
fn expanding_the_same_sweep_twice_gives_the_same_trials_in_the_same_order() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, GRID));
    let first = env.run(&["sweep", "exp.toml", "--dry-run"]).expect(0);
    let second = env.run(&["sweep", "exp.toml", "--dry-run"]).expect(0);
    assert_eq!(first.stdout, second.stdout);
    // The same grid given as flags is the same sweep.
    let flags = env
        .run(&[
            "sweep",
            "exp.toml",
            "--dry-run",
            "--grid",
            "train.lr=1e-3,3e-4",
            "--grid",
            "classes.spacing=range(0.5, 0.8, 0.2)",
        ])
        .expect(0);
    assert_eq!(first.stdout, flags.stdout);
    // A trial of a sweep is the same run as `geoexp run` with those values.
    let changed = env
        .run(&["sweep", "exp.toml", "--dry-run", "--grid", "train.lr=1e-3"])
        .expect(0);
    assert_eq!(
        changed.stdout.lines().count(),
        first.stdout.lines().count() - 2
    );
    assert_ne!(first.stdout.lines().next(), changed.stdout.lines().next());
}

#[test]
fn a_bad_value_in_one_trial_stops_the_sweep_before_anything_runs() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, GRID));
    let out = env
        .run(&["sweep", "exp.toml", "--grid", "train.batch_size=8,0"])
        .expect(2);
    assert!(out.stderr.contains("trial"), "{}", out.stderr);
    assert!(out.stderr.contains("train.batch_size=0"), "{}", out.stderr);
    assert!(!env.path().join("runs").exists());

    let out = env
        .run(&["sweep", "exp.toml", "--grid", "train.lrr=1e-3"])
        .expect(2);
    assert!(
        out.stderr.contains("did you mean `train.lr`"),
        "{}",
        out.stderr
    );

    env.write("plain.toml", &synthetic_experiment(40, ""));
    let out = env.run(&["sweep", "plain.toml"]).expect(2);
    assert!(out.stderr.contains("nothing to sweep"), "{}", out.stderr);
}

#[test]
fn concurrent_sweeps_with_jobs_compute_each_shared_stage_once() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, GRID));
    // Two invocations at once, each with two children: four processes race for the same
    // dataset, classes and images entries and for the same trials.
    let spawn = || {
        env.cmd(&["sweep", "exp.toml", "--jobs", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(stage_runs(&env.path().join("runs"), "t"), expected_counts());
    assert_eq!(env.cache_entries("train").len(), 4);
    assert_eq!(statuses(&sweep_record(&env)), ["ok"; 4]);
    let logs = fs::read_dir(sweep_dir(&env).join("logs")).unwrap().count();
    assert!(logs >= 4, "one log per trial child, got {logs}");
}

/// How many trials of the runs directory's sweeps have `state` in their status file.
fn trials_in_state(env: &TestEnv, state: &str) -> usize {
    fs::read_dir(env.path().join("runs/sweeps"))
        .into_iter()
        .flatten()
        .flat_map(|d| {
            fs::read_dir(d.unwrap().path().join("trials"))
                .into_iter()
                .flatten()
        })
        .filter(|f| {
            fs::read_to_string(f.as_ref().unwrap().path())
                .is_ok_and(|t| t.contains(&format!("state = \"{state}\"")))
        })
        .count()
}

#[test]
fn a_sweep_killed_midway_resumes_only_what_is_missing() {
    let env = TestEnv::new();
    let experiment = synthetic_experiment(60, GRID).replace("epochs = 1", "epochs = 6");
    env.write("exp.toml", &experiment);
    let mut child = env
        .cmd(&["sweep", "exp.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the first trial is recorded and the second is training.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = trials_in_state(&env, "ok");
        let training = fs::read_dir(env.path().join("runs/.cache/train/.work"))
            .is_ok_and(|mut d| d.next().is_some());
        if done >= 1 && training {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended first");
        assert!(Instant::now() < deadline, "no trial finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let status = env.run(&["sweep", "--status", &sweep_id(&env)]).expect(0);
    assert!(status.stdout.contains("interrupted"), "{}", status.stdout);

    let resumed = env.run(&["sweep", "exp.toml"]).expect(0);
    assert!(
        resumed.stdout.contains("finished before and not run again"),
        "{}",
        resumed.stdout
    );
    assert_eq!(statuses(&sweep_record(&env)), ["ok"; 4]);
    assert_eq!(env.cache_entries("train").len(), 4);
    assert_eq!(stage_runs(&env.path().join("runs"), "t"), expected_counts());
}

fn sweep_id(env: &TestEnv) -> String {
    sweep_dir(env)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn failed_trials_are_reported_as_they_happen_and_retried_only_when_asked() {
    let env = TestEnv::new();
    env.synth("good", 40, 2);
    env.write("data/bad/data.csv", "uuid,latitude,longitude\n");
    let experiment = crate::common::dirs_experiment(
        &["data/good"],
        "[sweep]\n\"dataset.dirs\" = [[\"data/bad\"], [\"data/good\"]]\n\"train.lr\" = [1e-3, 3e-4]\n",
    );
    env.write("exp.toml", &experiment);

    // --fail-fast: the first trial fails and nothing after it runs.
    let out = env.run(&["sweep", "exp.toml", "--fail-fast"]).expect(1);
    assert!(out.stderr.contains("trial 0 ["), "{}", out.stderr);
    assert!(out.stderr.contains("data/bad"), "{}", out.stderr);
    assert!(out.stderr.contains("--fail-fast"), "{}", out.stderr);
    assert_eq!(
        statuses(&sweep_record(&env)),
        ["failed", "pending", "pending", "pending"]
    );

    // Without it: the other bad trial fails, the good ones run; failures are repeated in
    // the summary, and the earlier failure is not retried.
    let out = env.run(&["sweep", "exp.toml"]).expect(1);
    assert_eq!(
        statuses(&sweep_record(&env)),
        ["failed", "failed", "ok", "ok"]
    );
    assert_eq!(out.stderr.matches("trial 1 ").count(), 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("1 trial failed in an earlier invocation"),
        "{}",
        out.stderr
    );

    // Mend the data: --rerun-failed runs the two failed trials, and only them.
    fs::remove_dir_all(env.path().join("data/bad")).unwrap();
    env.synth("bad", 40, 5);
    let out = env.run(&["sweep", "exp.toml", "--rerun-failed"]).expect(0);
    assert!(
        out.stdout.contains("2 trials finished before"),
        "{}",
        out.stdout
    );
    assert_eq!(statuses(&sweep_record(&env)), ["ok"; 4]);
}

#[test]
fn trial_tasks_run_one_trial_of_an_expanded_sweep() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, GRID));
    env.run(&[
        "sweep",
        "exp.toml",
        "--executor",
        "slurm",
        "--no-submit",
        "--jobs",
        "2",
    ])
    .expect(0);
    let dir = sweep_dir(&env);
    let script = fs::read_to_string(dir.join("sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2"), "{script}");
    assert!(script.contains("sweep --trial"), "{script}");
    assert!(
        dir.join("slurm").is_dir(),
        "log folder exists before submission"
    );
    assert_eq!(
        fs::read_to_string(dir.join("trials.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );

    let id = sweep_id(&env);
    let out = env.run(&["sweep", "--trial", &id, "2"]).expect(0);
    assert!(out.stdout.contains("trial 2 ok"), "{}", out.stdout);
    let out = env.run(&["sweep", "--trial", &id, "9"]).expect(2);
    assert!(out.stderr.contains("no trial `9`"), "{}", out.stderr);
    let status = env.run(&["sweep", "--status", &id[..6]]).expect(0);
    assert!(
        status.stdout.contains("1 ok, 3 pending"),
        "{}",
        status.stdout
    );

    // The experiment changed since expansion: the task refuses rather than run another config.
    env.write(
        "exp.toml",
        &synthetic_experiment(40, GRID).replace("epochs = 1", "epochs = 2"),
    );
    let out = env.run(&["sweep", "--trial", &id, "1"]).expect(1);
    assert!(
        out.stderr.contains("changed since the sweep was expanded"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_sweep_too_large_to_expand_is_refused_by_its_count_at_once() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(20, ""));
    // Refused by counting, not by running out of memory expanding 10^12 trials.
    let out = env
        .run(&[
            "sweep",
            "exp.toml",
            "--dry-run",
            "--grid",
            "train.lr=range(1, 1001, 1)",
            "--grid",
            "train.batch_size=range(1, 1001, 1)",
            "--grid",
            "train.epochs=range(1, 1001, 1)",
            "--grid",
            "seed=range(1, 1001, 1)",
        ])
        .expect(2);
    assert!(
        out.stderr.contains("1000000000000 trials"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--max-trials"), "{}", out.stderr);
    let out = env
        .run(&[
            "sweep",
            "exp.toml",
            "--dry-run",
            "--grid",
            "train.lr=1e-3,3e-4,1e-4",
            "--max-trials",
            "2",
        ])
        .expect(2);
    assert!(out.stderr.contains("3 trials"), "{}", out.stderr);
}

const RANDOM: &str = "[sweep]\nmethod = \"random\"\ntrials = 3\nseed = 2\n\"train.lr\" = \"loguniform(1e-4, 1e-2)\"\n\"train.batch_size\" = [8, 16]\n";

/// The values of column `key` in a dry run's trial table.
fn column(dry: &str, key: &str) -> Vec<String> {
    let mut lines = dry.lines().skip_while(|l| !l.trim_start().starts_with('#'));
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let at = header.iter().position(|h| *h == key).unwrap();
    lines
        .take_while(|l| !l.starts_with("stages"))
        .map(|l| l.split_whitespace().nth(at).unwrap().to_owned())
        .collect()
}

#[test]
fn a_random_search_draws_the_same_trials_every_time_and_grid_flags_cross_them() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, RANDOM));
    let first = env.run(&["sweep", "exp.toml", "--dry-run"]).expect(0);
    assert!(
        first.stdout.contains(
            "random search: 3 trials drawn with sweep.seed 2 (0 duplicate and 0 excluded \
             candidates dropped)"
        ),
        "{}",
        first.stdout
    );
    assert_eq!(
        first.stdout,
        env.run(&["sweep", "exp.toml", "--dry-run"])
            .expect(0)
            .stdout
    );
    let lrs = column(&first.stdout, "train.lr");
    assert_eq!(lrs.len(), 3);
    for lr in &lrs {
        let x: f64 = lr.parse().unwrap();
        assert!((1e-4..=1e-2).contains(&x), "{lr}");
    }
    let crossed = env
        .run(&[
            "sweep",
            "exp.toml",
            "--dry-run",
            "--grid",
            "classes.spacing=0.5,0.7",
        ])
        .expect(0);
    let crossed_lrs = column(&crossed.stdout, "train.lr");
    let expected: Vec<String> = lrs.iter().flat_map(|lr| [lr.clone(), lr.clone()]).collect();
    assert_eq!(crossed_lrs, expected, "{}", crossed.stdout);
    assert_eq!(
        column(&crossed.stdout, "classes.spacing"),
        ["0.5", "0.7", "0.5", "0.7", "0.5", "0.7"]
    );

    let out = env.run(&["sweep", "exp.toml"]).expect(0);
    assert!(out.stdout.contains("ranked by"), "{}", out.stdout);
    let record = sweep_record(&env);
    assert_eq!(statuses(&record), ["ok"; 3]);
    assert_eq!(
        record["sweep"]["definition"]["method"].as_str(),
        Some("random")
    );
    assert!(!sweep_dir(&env).join("heatmap.png").exists());
    let again = env.run(&["sweep", "exp.toml"]).expect(0);
    assert!(
        again
            .stdout
            .contains("3 trials finished before and not run again"),
        "{}",
        again.stdout
    );
}

#[test]
fn random_search_settings_that_do_not_fit_stop_before_anything_runs() {
    let env = TestEnv::new();
    let cases = [
        (
            "[sweep]\nmethod = \"random\"\n\"train.lr\" = \"uniform(1e-4, 1e-2)\"\n",
            "sweep.trials",
            "needs trials = N",
        ),
        (
            "[sweep]\n\"train.lr\" = \"loguniform(1e-4, 1e-2)\"\n",
            "sweep.\"train.lr\"",
            "set method = \"random\"",
        ),
        (
            "[sweep]\nmethod = \"random\"\ntrials = 2\n\"train.lr\" = \"loguniform(1e-2, 1e-4)\"\n",
            "sweep.\"train.lr\"",
            "the low bound must be below the high one",
        ),
        (
            "[sweep]\nmethod = \"random\"\ntrials = 2\n\"train.lr\" = \"gauss(1, 2)\"\n",
            "sweep.\"train.lr\"",
            "\"loguniform(a, b)\"",
        ),
        (
            "[sweep]\nmethod = \"random\"\ntrials = 3\n\"train.batch_size\" = [8, 16]\n",
            "sweep.trials",
            "the axes have only 2 distinct combinations",
        ),
        (
            "[sweep]\nmethod = \"random\"\ntrials = 2\n\"train.batch_size\" = \"uniform(8, 16)\"\n",
            "sweep.\"train.batch_size\"",
            "value 8.0",
        ),
    ];
    for (table, key, says) in cases {
        env.write("exp.toml", &synthetic_experiment(40, table));
        let out = env.run(&["sweep", "exp.toml", "--dry-run"]).expect(2);
        assert!(out.stderr.contains("exp.toml:"), "{table}\n{}", out.stderr);
        assert!(out.stderr.contains(key), "{table}\n{}", out.stderr);
        assert!(out.stderr.contains(says), "{table}\n{}", out.stderr);
    }
    assert!(!env.path().join("runs").exists());
}

pub const HALVING: &str = "[sweep]\nmethod = \"random\"\ntrials = 9\nseed = 4\n\"train.lr\" = \"loguniform(1e-4, 1e-1)\"\nearly_stop = { kind = \"halving\", min_epochs = 1, reduction = 3 }\n";

/// `summary.csv` without its wall-time-free but run-specific columns: what two runs of the
/// same sweep must agree on.
pub fn summary(env: &TestEnv, runs: &str) -> String {
    let dir = fs::read_dir(env.path().join(runs).join("sweeps"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::read_to_string(dir.join("summary.csv")).unwrap()
}

/// Epoch lines a sweep's output shows, per `epoch N/M` label.
fn epochs_trained(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.starts_with("train      epoch "))
        .count()
}

#[test]
fn halving_promotes_the_same_trials_in_sequence_and_with_jobs_and_replays_without_training() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, HALVING));
    let set = ["--set", "train.epochs=4"];
    let dry = env
        .run(&["sweep", "exp.toml", "--dry-run", set[0], set[1]])
        .expect(0);
    assert!(dry.stdout.contains("9 trials"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains(
            "successive halving: rungs at epochs 1, 3, 4, keeping 1 in 3 at each; at most 16 \
             epochs of training against 36 for every trial to the end"
        ),
        "{}",
        dry.stdout
    );

    let seq = env.run(&["sweep", "exp.toml", set[0], set[1]]).expect(0);
    // Rungs at 1, 3 and 4 epochs: 9 trials train 1 epoch, 3 go on to 3, 1 to 4.
    assert_eq!(epochs_trained(&seq.stdout), 9 + 3 * 2 + 1, "{}", seq.stdout);
    assert!(
        seq.stdout.contains("rung 1 (epoch 1): 3 go on"),
        "{}",
        seq.stdout
    );
    assert!(
        seq.stdout.contains("rung 2 (epoch 3): 1 go on"),
        "{}",
        seq.stdout
    );
    assert!(seq.stdout.contains("1 ok, 8 stopped"), "{}", seq.stdout);
    let record = sweep_record(&env);
    let stopped_at: Vec<i64> = record["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.get("rung_epochs").and_then(toml::Value::as_integer))
        .collect();
    let mut counts = BTreeMap::new();
    for e in &stopped_at {
        *counts.entry(*e).or_insert(0) += 1;
    }
    assert_eq!(counts, BTreeMap::from([(1, 6), (3, 2)]), "{stopped_at:?}");

    let jobs = env
        .run(&[
            "sweep",
            "exp.toml",
            set[0],
            set[1],
            "--jobs",
            "2",
            "--runs-dir",
            "jobs",
        ])
        .expect(0);
    assert_eq!(
        summary(&env, "jobs"),
        summary(&env, "runs"),
        "{}",
        jobs.stdout
    );

    // Again: every trial is at its rung already, so the same promotions, no epoch trained.
    let again = env.run(&["sweep", "exp.toml", set[0], set[1]]).expect(0);
    assert_eq!(epochs_trained(&again.stdout), 0, "{}", again.stdout);
    assert_eq!(summary(&env, "runs"), summary(&env, "jobs"));

    // A stopped trial's value at its rung is that epoch of a full-length run.
    let trial = record["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t.get("rung_epochs").and_then(toml::Value::as_integer) == Some(3))
        .unwrap();
    let lr = trial["values"]["train.lr"].as_float().unwrap();
    let value = trial["rung_value"].as_float().unwrap();
    env.run(&[
        "run",
        "exp.toml",
        set[0],
        set[1],
        "--set",
        &format!("train.lr={lr}"),
        "--runs-dir",
        "full",
    ])
    .expect(0);
    let full = fs::read_dir(env.path().join("full/t"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let csv = fs::read_to_string(full.join("metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "val/haversine_km_mean")
        .unwrap();
    let at_3: f64 = csv
        .lines()
        .nth(3)
        .unwrap()
        .split(',')
        .nth(col)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(at_3, value);

    // Without early_stop, the same trials go on from their checkpoints to the end.
    env.write(
        "full.toml",
        &synthetic_experiment(
            60,
            &HALVING.replace(
                "early_stop = { kind = \"halving\", min_epochs = 1, reduction = 3 }\n",
                "",
            ),
        ),
    );
    let rest = env.run(&["sweep", "full.toml", set[0], set[1]]).expect(0);
    // The six stopped at epoch 1 train 3 more; the two stopped at 3, one more.
    assert_eq!(epochs_trained(&rest.stdout), 6 * 3 + 2, "{}", rest.stdout);
    assert!(rest.stdout.contains("9 ok"), "{}", rest.stdout);
}

#[test]
fn halving_settings_that_do_not_fit_stop_before_anything_runs() {
    let env = TestEnv::new();
    let cases = [
        (
            "early_stop = { kind = \"halving\", min_epochs = 5 }\n",
            "min_epochs = 5 is more than train.epochs = 4",
        ),
        (
            "early_stop = { kind = \"hyperband\" }\n",
            "kind must be \"halving\"",
        ),
        (
            "early_stop = { kind = \"halving\", rungs = 3 }\n",
            "unknown field `rungs`",
        ),
        (
            "early_stop = { kind = \"halving\", reduction = 1 }\n",
            "reduction must be a whole number ≥ 2",
        ),
    ];
    for (line, says) in cases {
        let table = format!("[sweep]\n\"train.lr\" = [1e-3, 3e-4]\n{line}");
        env.write("exp.toml", &synthetic_experiment(40, &table));
        let out = env
            .run(&["sweep", "exp.toml", "--dry-run", "--set", "train.epochs=4"])
            .expect(2);
        assert!(out.stderr.contains("exp.toml:"), "{line}\n{}", out.stderr);
        assert!(
            out.stderr.contains("sweep.early_stop"),
            "{line}\n{}",
            out.stderr
        );
        assert!(out.stderr.contains(says), "{line}\n{}", out.stderr);
    }
    env.write(
        "exp.toml",
        &synthetic_experiment(
            40,
            "[sweep]\n\"train.lr\" = [1e-3, 3e-4]\nearly_stop = { kind = \"halving\" }\n",
        ),
    );
    assert!(!env.path().join("runs/t").exists());

    // On Slurm, each rung's array is followed by a job that closes the rung.
    let out = env
        .run(&[
            "sweep",
            "exp.toml",
            "--set",
            "train.epochs=4",
            "--executor",
            "slurm",
            "--no-submit",
        ])
        .expect(0);
    let script = fs::read_to_string(sweep_dir(&env).join("halving.sbatch")).unwrap();
    assert!(
        script.contains("sweep --next-rung"),
        "{}\n{script}",
        out.stdout
    );
    let trials = fs::read_to_string(sweep_dir(&env).join("sweep.sbatch")).unwrap();
    assert!(trials.contains("--stop-after-epoch"), "{trials}");
}

#[test]
fn a_halving_sweep_killed_in_a_rung_resumes_to_the_same_promotions() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, HALVING));
    let set = ["--set", "train.epochs=4"];
    env.run(&["sweep", "exp.toml", set[0], set[1], "--runs-dir", "whole"])
        .expect(0);

    let mut child = env
        .cmd(&["sweep", "exp.toml", set[0], set[1]])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once three trials have reached the first rung.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let paused = trials_in_state(&env, "paused");
        if paused >= 3 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended first");
        assert!(Instant::now() < deadline, "no trial paused");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let resumed = env.run(&["sweep", "exp.toml", set[0], set[1]]).expect(0);
    assert!(
        resumed.stdout.contains("1 ok, 8 stopped"),
        "{}",
        resumed.stdout
    );
    assert_eq!(summary(&env, "runs"), summary(&env, "whole"));
}
