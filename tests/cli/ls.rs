//! `geoexp ls`: a table of runs, on known hand-written manifests.

use crate::common::{GOLF_LR_1E3, GOLF_LR_3E4, TestEnv, golf_runs};

#[test]
fn ls_lists_one_row_per_run_with_the_values_that_differ_and_the_final_metrics() {
    let env = golf_runs();
    let out = env.run(&["ls"]).expect(0);
    assert_eq!(
        out.stdout,
        " run                classes.spacing  train.lr  best_val/haversine_km_mean  test/haversine_km_mean  test/haversine_km_median  test/acc_25km  test/acc
 golf/a1b2c3d4e5f6  0.5              0.001                          17.25                   18.91                     10.40         0.8667    0.5200
 golf/a1f0e9d8c7b6  0.5              0.0003                         24.00                   25.50                     14.25         0.7800    0.5200
 golf/c0ffee000001  0.3              0.001
"
    );
    // The cache and the sweep records are not runs, and are not complained about.
    assert_eq!(out.stderr, "");
}

#[test]
fn ls_sorts_best_first_and_puts_runs_without_the_metric_last() {
    let env = golf_runs();
    let ids = |args: &[&str]| -> Vec<String> {
        let out = env.run(args).expect(0);
        out.stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    // Errors: smaller is better.
    assert_eq!(
        ids(&["ls", "--sort", "test/haversine_km_mean"]),
        [
            "golf/a1b2c3d4e5f6",
            "golf/a1f0e9d8c7b6",
            "golf/c0ffee000001"
        ]
    );
    // Accuracies: larger is better.
    assert_eq!(
        ids(&["ls", "--sort", "test/acc_25km"]),
        [
            "golf/a1b2c3d4e5f6",
            "golf/a1f0e9d8c7b6",
            "golf/c0ffee000001"
        ]
    );
    assert_eq!(
        ids(&["ls", "--sort", "best_epoch", "--metrics", "best_epoch"]),
        [
            "golf/a1f0e9d8c7b6",
            "golf/a1b2c3d4e5f6",
            "golf/c0ffee000001"
        ]
    );
    // A tie keeps the name/id order.
    assert_eq!(
        ids(&["ls", "--sort", "test/acc"]),
        [
            "golf/a1b2c3d4e5f6",
            "golf/a1f0e9d8c7b6",
            "golf/c0ffee000001"
        ]
    );
}

#[test]
fn ls_sort_adds_its_metric_as_a_column() {
    let env = golf_runs();
    let out = env
        .run(&[
            "ls",
            "runs/golf",
            "--metrics",
            "test/acc",
            "--sort",
            "locations",
        ])
        .expect(0);
    assert_eq!(
        out.stdout.lines().next().unwrap(),
        " run                classes.spacing  train.lr  test/acc  locations"
    );
}

#[test]
fn ls_only_changed_drops_the_metrics_equal_in_every_run() {
    let env = TestEnv::new();
    env.fake_run(&GOLF_LR_1E3);
    env.fake_run(&GOLF_LR_3E4);
    let out = env.run(&["ls", "--only-changed"]).expect(0);
    // test/acc is 0.52 in both runs; classes.spacing is 0.5 in both.
    assert_eq!(
        out.stdout,
        " run                train.lr  best_val/haversine_km_mean  test/haversine_km_mean  test/haversine_km_median  test/acc_25km
 golf/a1b2c3d4e5f6  0.001                          17.25                   18.91                     10.40         0.8667
 golf/a1f0e9d8c7b6  0.0003                         24.00                   25.50                     14.25         0.7800
"
    );
}

#[test]
fn ls_of_one_run_shows_only_its_metrics() {
    let env = golf_runs();
    let out = env.run(&["ls", "runs/golf/a1b2c3d4e5f6"]).expect(0);
    assert_eq!(
        out.stdout,
        " run                best_val/haversine_km_mean  test/haversine_km_mean  test/haversine_km_median  test/acc_25km  test/acc
 golf/a1b2c3d4e5f6                       17.25                   18.91                     10.40         0.8667    0.5200
"
    );
}

#[test]
fn ls_csv_carries_every_final_metric_unrounded() {
    let env = golf_runs();
    let out = env.run(&["ls", "--format", "csv"]).expect(0);
    assert_eq!(
        out.stdout,
        "name,id,classes.spacing,train.lr,best_val/haversine_km_mean,test/haversine_km_mean,test/haversine_km_median,test/acc_25km,test/acc,best_epoch,locations
golf,a1b2c3d4e5f6,0.5,0.001,17.25,18.912345,10.4,0.8666666666666667,0.52,7,150
golf,a1f0e9d8c7b6,0.5,0.0003,24.0,25.5,14.25,0.78,0.52,5,150
golf,c0ffee000001,0.3,0.001,,,,,,,
"
    );
}

#[test]
fn ls_json_has_one_object_per_run_with_nulls_for_missing_metrics() {
    let env = golf_runs();
    let out = env
        .run(&[
            "ls",
            "--format",
            "json",
            "--metrics",
            "test/haversine_km_mean,device",
        ])
        .expect(0);
    let runs: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        runs,
        serde_json::json!([
            {
                "name": "golf",
                "id": "a1b2c3d4e5f6",
                "dir": "runs/golf/a1b2c3d4e5f6",
                "config": {"classes.spacing": 0.5, "train.lr": 0.001},
                "metrics": {"test/haversine_km_mean": 18.912345, "device": "Cpu"}
            },
            {
                "name": "golf",
                "id": "a1f0e9d8c7b6",
                "dir": "runs/golf/a1f0e9d8c7b6",
                "config": {"classes.spacing": 0.5, "train.lr": 0.0003},
                "metrics": {"test/haversine_km_mean": 25.5, "device": "Cpu"}
            },
            {
                "name": "golf",
                "id": "c0ffee000001",
                "dir": "runs/golf/c0ffee000001",
                "config": {"classes.spacing": 0.3, "train.lr": 0.001},
                "metrics": {"test/haversine_km_mean": null, "device": null}
            }
        ])
    );
}

#[test]
fn ls_md_is_a_github_table_with_metrics_aligned_right() {
    let env = golf_runs();
    let out = env
        .run(&[
            "ls",
            "--format",
            "md",
            "--metrics",
            "test/haversine_km_mean,test/acc_25km",
        ])
        .expect(0);
    assert_eq!(
        out.stdout,
        "| run | classes.spacing | train.lr | test/haversine_km_mean | test/acc_25km |
|---|---|---|---:|---:|
| golf/a1b2c3d4e5f6 | 0.5 | 0.001 | 18.91 | 0.8667 |
| golf/a1f0e9d8c7b6 | 0.5 | 0.0003 | 25.50 | 0.7800 |
| golf/c0ffee000001 | 0.3 | 0.001 |  |  |
"
    );
}

#[test]
fn ls_with_an_unknown_metric_lists_the_available_ones() {
    let env = golf_runs();
    let out = env
        .run(&["ls", "--metrics", "test/haversine_km_maen"])
        .expect(2);
    assert!(
        out.stderr.contains(
            "--metrics test/haversine_km_maen: no listed run has a result named `test/haversine_km_maen` (did you mean `test/haversine_km_mean`?); available: best_epoch, best_val/haversine_km_mean, cells, classes, device, last/val/loss, locations, test/acc,"
        ),
        "{}",
        out.stderr
    );
    let out = env.run(&["ls", "--sort", "speed"]).expect(2);
    assert!(
        out.stderr.contains("--sort speed: no listed run"),
        "{}",
        out.stderr
    );
}

#[test]
fn ls_reads_the_runs_dir_by_default() {
    let env = golf_runs();
    std::fs::rename(env.path().join("runs"), env.path().join("elsewhere")).unwrap();
    let by_flag = env.run(&["--runs-dir", "elsewhere", "ls"]).expect(0);
    assert_eq!(by_flag.stdout.lines().count(), 4, "{}", by_flag.stdout);
    let by_env = env
        .run_env(
            &["ls", "--format", "csv"],
            &[("GEOEXP_RUNS_DIR", "elsewhere")],
        )
        .expect(0);
    assert_eq!(by_env.stdout.lines().count(), 4, "{}", by_env.stdout);
}

#[test]
fn ls_of_a_folder_without_runs_says_so_and_succeeds() {
    let env = TestEnv::new();
    env.write("runs/.cache/classes/x/record.toml", "");
    let out = env.run(&["ls"]).expect(0);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "no runs under runs\n");
}

#[test]
fn ls_of_a_missing_folder_is_an_error_naming_it() {
    let env = TestEnv::new();
    let out = env.run(&["ls", "nowhere"]).expect(2);
    assert_eq!(out.stderr, "error: nowhere: no such folder\n");
}

#[test]
fn ls_skips_a_corrupt_manifest_with_a_warning_naming_it() {
    let env = golf_runs();
    env.write("runs/golf/bad000000000/manifest.toml", "[run\nid = 1\n");
    let out = env.run(&["ls", "--format", "csv"]).expect(0);
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("skipping runs/golf/bad000000000/manifest.toml: unreadable manifest"),
        "{}",
        out.stderr
    );
}
