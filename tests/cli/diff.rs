//! `geoexp diff`: what differs between two runs, on known hand-written manifests.

use serde_json::json;

use crate::common::{FakeRun, GOLF_LR_1E3, golf_runs};

const LR_DIFF: &str = "\
config
  train.lr  0.001 → 0.0003
stages
  train     key changed: train.lr 0.001 → 0.0003
  evaluate  key changed: upstream `train` changed
metrics
  best_val/haversine_km_mean  17.25 → 24.00  (+6.75, +39.1%)
  best_epoch                  7 → 5  (-2, -28.6%)
  test/acc_25km               0.8667 → 0.7800  (-0.08667, -10.0%)
  test/haversine_km_mean      18.91 → 25.50  (+6.59, +34.8%)
  test/haversine_km_median    10.40 → 14.25  (+3.85, +37.0%)
";

#[test]
fn diff_shows_changed_values_stage_causes_and_metric_deltas() {
    let env = golf_runs();
    let out = env.run(&["diff", "a1b2c3d4e5f6", "a1f0e9d8c7b6"]).expect(0);
    assert_eq!(out.stdout, LR_DIFF);
    assert_eq!(out.stderr, "");
}

#[test]
fn diff_reports_a_stage_only_one_run_has_and_all_results_on_request() {
    let env = golf_runs();
    let out = env
        .run(&["diff", "a1b2", "c0ffee", "--all-results"])
        .expect(0);
    assert_eq!(
        out.stdout,
        "\
config
  classes.spacing  0.5 → 0.3
stages
  classes   key changed: classes.spacing 0.5 → 0.3
  train     only in A
  evaluate  only in A
metrics
  best_epoch (train)          7 → (none)
  best_val/haversine_km_mean  17.25 → (none)
  device                      Cpu → (none)
  last/val/loss               1.500 → (none)
  best_epoch (evaluate)       7 → (none)
  locations                   150 → (none)
  test/acc                    0.5200 → (none)
  test/acc_25km               0.8667 → (none)
  test/haversine_km_mean      18.91 → (none)
  test/haversine_km_median    10.40 → (none)
"
    );
    let reversed = env.run(&["diff", "c0ffee", "a1b2"]).expect(0);
    assert!(
        reversed.stdout.contains("  train     only in B\n"),
        "{}",
        reversed.stdout
    );
}

#[test]
fn diff_reports_a_geoexp_release_under_versions_and_as_each_stage_s_cause() {
    let env = golf_runs();
    env.fake_run(&FakeRun {
        id: "b0b000000002",
        geoexp: "0.2.0",
        ..GOLF_LR_1E3
    });
    let out = env.run(&["diff", "a1b2", "b0b0"]).expect(0);
    assert_eq!(
        out.stdout,
        "\
stages
  classes   key changed: geoexp 0.1.0 → 0.2.0
  train     key changed: geoexp 0.1.0 → 0.2.0 (and 1 more)
  evaluate  key changed: geoexp 0.1.0 → 0.2.0 (and 2 more)
versions
  geoexp  0.1.0 → 0.2.0
"
    );
}

#[test]
fn diff_of_identical_runs_says_no_differences_and_exits_0() {
    let env = golf_runs();
    for args in [
        ["diff", "a1b2", "a1b2"].as_slice(),
        &["diff", "a1b2", "a1b2", "--exit-code"],
        // The same run named by its manifest, its folder and name/id.
        &[
            "diff",
            "runs/golf/a1b2c3d4e5f6/manifest.toml",
            "runs/golf/a1b2c3d4e5f6",
            "--exit-code",
        ],
        &["diff", "golf/a1b2c3d4e5f6", "golf/a1b2", "--exit-code"],
    ] {
        let out = env.run(args).expect(0);
        assert_eq!(out.stdout, "no differences\n", "{args:?}");
    }
}

#[test]
fn diff_exit_code_makes_differences_exit_1() {
    let env = golf_runs();
    let out = env.run(&["diff", "a1b2", "a1f0", "--exit-code"]).expect(1);
    assert_eq!(out.stdout, LR_DIFF);
    let json = env
        .run(&["diff", "a1b2", "a1f0", "--exit-code", "--format", "json"])
        .expect(1);
    assert!(json.stdout.starts_with('{'), "{}", json.stdout);
}

#[test]
fn diff_json_is_the_typed_diff() {
    let env = golf_runs();
    let out = env
        .run(&["diff", "a1b2", "a1f0", "--format", "json"])
        .expect(0);
    let d: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        d["config"],
        json!([{"key": "train.lr", "old": 0.001, "new": 0.0003}])
    );
    let stages: Vec<_> = d["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].clone(), s["change"].clone(), s["cause"].clone()))
        .collect();
    assert_eq!(
        stages,
        [
            (
                json!("train"),
                json!("key_changed"),
                json!({"reason": "param_changed", "key": "train.lr", "old": 0.001, "new": 0.0003})
            ),
            (
                json!("evaluate"),
                json!("key_changed"),
                json!({"reason": "upstream_changed", "stage": "train"})
            ),
        ]
    );
    let km = d["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "test/haversine_km_mean")
        .unwrap();
    assert_eq!(km["stage"], "evaluate");
    assert_eq!(km["old"], 18.912345);
    assert_eq!(km["new"], 25.5);
    assert_eq!(km["delta"], 25.5 - 18.912345);
    assert_eq!(km["relative"], (25.5 - 18.912345) / 18.912345);
    assert_eq!(d["versions"], json!([]));
    let same = env
        .run(&["diff", "a1b2", "a1b2", "--format", "json"])
        .expect(0);
    let same: serde_json::Value = serde_json::from_str(&same.stdout).unwrap();
    assert_eq!(
        same,
        json!({"config": [], "stages": [], "results": [], "versions": []})
    );
}

#[test]
fn diff_resolves_a_run_id_prefix_under_the_runs_dir() {
    let env = golf_runs();
    std::fs::rename(env.path().join("runs"), env.path().join("elsewhere")).unwrap();
    let out = env
        .run(&["--runs-dir", "elsewhere", "diff", "a1b", "a1f"])
        .expect(0);
    assert_eq!(out.stdout, LR_DIFF);
}

#[test]
fn diff_with_an_ambiguous_run_id_lists_the_candidates() {
    let env = golf_runs();
    let out = env.run(&["diff", "a1", "c0ffee"]).expect(2);
    assert_eq!(
        out.stderr,
        "error: run id `a1` is ambiguous: it matches golf/a1b2c3d4e5f6, golf/a1f0e9d8c7b6; give more of it, or name/id\n"
    );
}

#[test]
fn diff_of_a_missing_run_is_an_error_naming_it() {
    let env = golf_runs();
    let out = env.run(&["diff", "runs/golf/nope", "a1f0"]).expect(2);
    assert_eq!(
        out.stderr,
        "error: runs/golf/nope: no such manifest, run folder or run id (run ids are looked up under runs)\n"
    );
    let out = env.run(&["diff", "a1b2", "runs/golf"]).expect(2);
    assert_eq!(
        out.stderr,
        "error: runs/golf: no manifest.toml in this folder (is it a run folder?)\n"
    );
}

#[test]
fn diff_of_a_corrupt_manifest_is_an_error_naming_the_file() {
    let env = golf_runs();
    env.write("runs/golf/bad000000000/manifest.toml", "[run\n");
    let out = env.run(&["diff", "a1b2", "bad0"]).expect(2);
    assert!(
        out.stderr.starts_with(
            "error: reading runs/golf/bad000000000/manifest.toml: TOML parse error at line 1"
        ),
        "{}",
        out.stderr
    );
}
