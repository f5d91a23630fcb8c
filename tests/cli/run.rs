//! `geoexp run`: caching, manifests, outputs, failures.

use std::fs;
use std::time::{Duration, SystemTime};

use crate::common::{TestEnv, dirs_experiment, synthetic_experiment};

const CLASSES_HEADER: &str = "class,cell,col,row,min_lon,min_lat,max_lon,max_lat,land_area_deg2,centroid_lat,centroid_lon,centroid_x,centroid_y,geometric_lat,geometric_lon,geometric_x,geometric_y,clipped_lat,clipped_lon,clipped_x,clipped_y,weighted_lat,weighted_lon,weighted_x,weighted_y,is_true_centroid,n_train,n_val,n_test";
const RICH_STATIC_HEADER: &str = "uuid,latitude,longitude,polygon_index,centroid_lng,centroid_lat,is_true_centroid,crs_y,crs_x,crs_centroid_y,crs_centroid_x,split,class";

#[test]
fn a_second_run_is_all_cache_hits_with_a_byte_identical_manifest() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(60, ""));
    let first = env
        .run(&["run", "exp.toml", "--until", "classes"])
        .expect(0);
    assert!(first.stdout.contains("dataset    miss"), "{}", first.stdout);
    assert!(first.stdout.contains("classes    miss"), "{}", first.stdout);
    let run_dir = env.run_dir("t");
    let manifest = fs::read(run_dir.join("manifest.toml")).unwrap();
    let second = env
        .run(&["run", "exp.toml", "--until", "classes"])
        .expect(0);
    assert!(
        second.stdout.contains("dataset    hit"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("classes    hit"),
        "{}",
        second.stdout
    );
    assert_eq!(fs::read(run_dir.join("manifest.toml")).unwrap(), manifest);
    let execution = fs::read_to_string(run_dir.join("execution.toml")).unwrap();
    assert!(execution.contains("status = \"hit\""), "{execution}");
}

#[test]
fn reruns_leave_no_hidden_link_files_and_keep_each_execution_record() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(30, ""));
    for _ in 0..3 {
        env.run(&["run", "exp.toml"]).expect(0);
    }
    let run_dir = env.run_dir("t");
    let mut hidden = Vec::new();
    for dir in [run_dir.clone(), run_dir.join("checkpoints")] {
        for e in fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                hidden.push(name);
            }
        }
    }
    assert_eq!(hidden, Vec::<String>::new());
    // Each attempt keeps its own execution record beside the latest.
    assert_eq!(fs::read_dir(run_dir.join("executions")).unwrap().count(), 3);
    assert!(run_dir.join("checkpoints/best.safetensors").is_file());
    assert!(run_dir.join("events.out.tfevents.train").is_file());
}

#[test]
fn a_run_writes_every_output_with_the_documented_schemas() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(80, ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let run = env.run_dir("t");
    for file in [
        "dataset/locations.csv",
        "dataset/locations.png",
        "dataset/synthetic/data.csv",
        "classes/classes.csv",
        "classes/rich_static.csv",
        "classes/scaling.toml",
        "classes/class_map.png",
    ] {
        assert!(run.join(file).is_file(), "missing {file}");
    }
    let classes = fs::read_to_string(run.join("classes/classes.csv")).unwrap();
    assert_eq!(classes.lines().next(), Some(CLASSES_HEADER));
    let rich = fs::read_to_string(run.join("classes/rich_static.csv")).unwrap();
    assert_eq!(rich.lines().next(), Some(RICH_STATIC_HEADER));
    assert_eq!(rich.lines().count(), 81);
    // Every location has a class that exists in classes.csv.
    let class_ids: Vec<String> = classes
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split(',')
                .next()
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
        })
        .collect();
    for line in rich.lines().skip(1) {
        let class = line.rsplit(',').next().unwrap();
        assert!(
            class_ids.iter().any(|c| c == class),
            "class {class} of {line}"
        );
    }
    let manifest = fs::read_to_string(run.join("manifest.toml")).unwrap();
    for needle in [
        "[stages.dataset]",
        "[stages.classes]",
        "locations = 80",
        "geoexp = ",
        "[provenance]",
    ] {
        assert!(manifest.contains(needle), "{needle} not in\n{manifest}");
    }
}

#[test]
fn real_layout_directories_are_merged_and_read_in_place() {
    let env = TestEnv::new();
    env.synth("a", 30, 1);
    env.synth("b", 25, 2);
    let before = env.read("data/a/data.csv");
    env.write("exp.toml", &dirs_experiment(&["data/a", "data/b"], ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let run = env.run_dir("t");
    let locations = fs::read_to_string(run.join("dataset/locations.csv")).unwrap();
    assert_eq!(locations.lines().count(), 56);
    assert!(locations.contains(",data/a,images/"));
    assert!(locations.contains(",data/b,images/"));
    assert_eq!(
        env.read("data/a/data.csv"),
        before,
        "source directories are never modified"
    );
    assert!(!run.join("dataset/synthetic").exists());
}

#[test]
fn touching_inputs_keeps_every_key_and_changing_one_reruns_and_names_it() {
    let env = TestEnv::new();
    env.synth("a", 20, 1);
    env.write("exp.toml", &dirs_experiment(&["data/a"], ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let csv = env.path().join("data/a/data.csv");
    let f = fs::File::options().write(true).open(&csv).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let touched = env.run(&["run", "exp.toml"]).expect(0);
    assert!(
        touched.stdout.contains("dataset    hit"),
        "{}",
        touched.stdout
    );
    assert!(
        touched.stdout.contains("classes    hit"),
        "{}",
        touched.stdout
    );

    let text = env.read("data/a/data.csv");
    let mut lines: Vec<&str> = text.lines().collect();
    let last = lines.pop().unwrap().to_owned();
    let mut cols: Vec<&str> = last.split(',').collect();
    cols[2] = "45.1";
    let changed = cols.join(",");
    lines.push(&changed);
    env.write("data/a/data.csv", &(lines.join("\n") + "\n"));
    let plan = env.run(&["plan", "exp.toml"]).expect(0);
    assert!(
        plan.stdout.contains("input `data/a` changed"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("1 modified (data.csv)"),
        "{}",
        plan.stdout
    );
    let rerun = env.run(&["run", "exp.toml"]).expect(0);
    assert!(rerun.stdout.contains("dataset    miss"), "{}", rerun.stdout);
    // Changed data is a new run.
    assert_eq!(fs::read_dir(env.path().join("runs/t")).unwrap().count(), 2);
}

#[test]
fn force_recomputes_a_stage_and_what_follows_it_only() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let forced = env
        .run(&["run", "exp.toml", "--force", "classes"])
        .expect(0);
    assert!(
        forced.stdout.contains("dataset    hit"),
        "{}",
        forced.stdout
    );
    assert!(
        forced.stdout.contains("classes    miss"),
        "{}",
        forced.stdout
    );
    assert!(forced.stdout.contains("forced"), "{}", forced.stdout);
    assert_eq!(env.cache_entries("classes").len(), 1);
}

#[test]
fn an_unknown_stage_is_a_usage_error_listing_the_stages() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(20, ""));
    let out = env.run(&["run", "exp.toml", "--until", "clases"]).expect(2);
    assert!(out.stderr.contains("dataset, classes"), "{}", out.stderr);
    assert!(env.cache_entries("dataset").is_empty(), "nothing ran");
}

#[test]
fn a_failing_stage_exits_1_commits_nothing_and_records_the_failure() {
    let env = TestEnv::new();
    // One cell covers all of Croatia: a single class cannot train a classifier.
    env.write(
        "exp.toml",
        &synthetic_experiment(30, "[classes]\nspacing = 20.0\n"),
    );
    let out = env.run(&["run", "exp.toml"]).expect(1);
    assert!(
        out.stderr.contains("stage `classes` failed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("at least 2 classes"), "{}", out.stderr);
    assert_eq!(
        env.cache_entries("dataset").len(),
        1,
        "the dataset stage did finish"
    );
    assert!(env.cache_entries("classes").is_empty());
    let run = env.run_dir("t");
    assert!(!run.join("manifest.toml").exists());
    let execution = fs::read_to_string(run.join("execution.toml")).unwrap();
    assert!(execution.contains("status = \"failed\""), "{execution}");
}

#[test]
fn the_same_experiment_in_two_runs_directories_has_the_same_keys_and_manifest_bytes() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(20, ""));
    env.run(&["run", "exp.toml", "--runs-dir", "r1"]).expect(0);
    env.run(&["run", "exp.toml", "--runs-dir", "r2"]).expect(0);
    // Two cold runs (two trainings, two event files with their own wall times): the
    // manifests are the same bytes, event files listed by name only.
    let manifest = |d: &str| {
        let base = env.path().join(d).join("t");
        let run = fs::read_dir(base).unwrap().next().unwrap().unwrap().path();
        fs::read_to_string(run.join("manifest.toml")).unwrap()
    };
    let (m1, m2) = (manifest("r1"), manifest("r2"));
    assert_eq!(m1, m2);
    assert!(m1.contains("volatile_outputs = [\"train.events\"]"), "{m1}");
    assert!(!m1.contains("epochs_run_by_this_attempt"), "{m1}");
    let keys = |d: &str| {
        let mut k: Vec<String> = fs::read_dir(env.path().join(d).join(".cache/classes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys("r1"), keys("r2"));
}

#[test]
fn two_processes_needing_the_same_stage_compute_it_once() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(400, ""));
    let children: Vec<_> = (0..2)
        .map(|_| {
            env.cmd(&["run", "exp.toml"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    let misses = outputs
        .iter()
        .filter(|o| o.contains("dataset    miss"))
        .count();
    assert_eq!(misses, 1, "{outputs:?}");
    assert_eq!(env.cache_entries("dataset").len(), 1);
    let manifests: Vec<Vec<u8>> = (0..2)
        .map(|_| fs::read(env.run_dir("t").join("manifest.toml")).unwrap())
        .collect();
    assert_eq!(manifests[0], manifests[1]);
}

#[test]
fn a_process_killed_mid_stage_leaves_no_entry_and_the_next_run_recovers() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        "name = \"t\"\n[dataset]\nsynthetic = { locations = 4000, image_size = 48 }\n",
    );
    let mut child = env
        .cmd(&["run", "exp.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp = env.path().join("runs/.cache/dataset/.tmp");
    let started = std::time::Instant::now();
    let mut caught = false;
    while started.elapsed() < Duration::from_secs(60) {
        let writing = fs::read_dir(&tmp)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.path().join("synthetic/images").is_dir())
            })
            .unwrap_or(false);
        if writing {
            child.kill().unwrap();
            caught = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait().unwrap();
    assert!(
        caught,
        "the stage finished before it could be killed; make it bigger"
    );
    assert!(
        env.cache_entries("dataset").is_empty(),
        "a half entry looks complete"
    );
    let out = env
        .run(&["run", "exp.toml", "--until", "dataset"])
        .expect(0);
    assert!(out.stdout.contains("dataset    miss"), "{}", out.stdout);
    assert_eq!(env.cache_entries("dataset").len(), 1);
    let leftovers = fs::read_dir(&tmp).unwrap().count();
    assert_eq!(leftovers, 0, "the dead process's temporary was swept");
}

#[test]
fn a_failure_to_write_is_the_works_failure_exit_1_not_a_configuration_error() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(20, ""));
    // The experiment's run folder cannot be made: a file is in its way.
    env.write("runs/t", "in the way");
    let out = env
        .run(&["run", "exp.toml", "--until", "classes"])
        .expect(1);
    assert!(out.stderr.contains("runs/t"), "{}", out.stderr);
    assert!(out.stderr.contains("Not a directory"), "{}", out.stderr);
}

#[test]
fn the_quick_start_run_id_stays_what_readme_shows() {
    // A run id hashes the resolved config: a new key that shows up in it (even unset)
    // renames every existing run. README quotes golf's id; change both on purpose only.
    let env = TestEnv::new();
    let golf = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/golf.toml"
    ))
    .unwrap();
    env.write("experiments/golf.toml", &golf);
    env.run(&["run", "experiments/golf.toml", "--until", "dataset", "-q"])
        .expect(0);
    let ids: Vec<String> = fs::read_dir(env.path().join("runs/golf"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids, ["f69ca77dd78d"]);
}
