//! Experiment files as a user meets them on the command line.

use std::fs;

use crate::common::{TestEnv, synthetic_experiment};

#[test]
fn an_unknown_key_exits_2_naming_file_line_and_suggestion_before_any_stage_runs() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &synthetic_experiment(20, "[classes]\nspcing = 0.3\n"),
    );
    let out = env.run(&["run", "exp.toml"]).expect(2);
    assert!(out.stderr.contains("exp.toml:6:1"), "{}", out.stderr);
    assert!(
        out.stderr.contains("did you mean `classes.spacing`?"),
        "{}",
        out.stderr
    );
    assert!(!env.path().join("runs").exists(), "nothing may be written");
}

#[test]
fn environment_and_set_overrides_land_in_the_manifest_with_their_provenance() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(20, ""));
    env.run_env(
        &["run", "exp.toml", "--set", "classes.spacing=0.7"],
        &[
            ("GEOEXP_TRAIN__LR", "1e-4"),
            ("GEOEXP_CLASSES__SPACING", "0.3"),
        ],
    )
    .expect(0);
    let manifest = fs::read_to_string(env.run_dir("t").join("manifest.toml")).unwrap();
    assert!(manifest.contains("lr = 0.0001"), "{manifest}");
    assert!(manifest.contains("spacing = 0.7"), "{manifest}");
    assert!(
        manifest.contains("\"train.lr\" = \"env GEOEXP_TRAIN__LR\""),
        "{manifest}"
    );
    assert!(
        manifest.contains("\"classes.spacing\" = \"--set classes.spacing=0.7\""),
        "{manifest}"
    );
}

#[test]
fn only_geoexp_variables_are_read_and_a_bad_one_is_named() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(20, ""));
    let not_utf8 = OsStr::from_bytes(b"caf\xe9");
    // A variable geoexp never reads cannot stop it, whatever its bytes.
    let out = env
        .cmd(&["plan", "exp.toml"])
        .env("FOO", not_utf8)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One of geoexp's is an error naming it, not a panic.
    let out = env
        .cmd(&["plan", "exp.toml"])
        .env("GEOEXP_TRAIN__LR", not_utf8)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("environment variable GEOEXP_TRAIN__LR: not valid UTF-8"),
        "{stderr}"
    );
    // A near miss is warned about, with the spelling that works.
    let out = env
        .run_env(
            &["plan", "exp.toml"],
            &[
                ("GEOEXP_TRAIN_LR", "1e-4"),
                ("GEOEXP_DATASET_SYNTHETIC_LOCATIONS", "30"),
            ],
        )
        .expect(0);
    assert!(
        out.stderr
            .contains("GEOEXP_TRAIN_LR is not read; did you mean GEOEXP_TRAIN__LR?"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("did you mean GEOEXP_DATASET__SYNTHETIC__LOCATIONS?"),
        "{}",
        out.stderr
    );
    // Logs to a pipe carry no colour codes.
    assert!(!out.stderr.contains('\u{1b}'), "{:?}", out.stderr);
}

#[test]
fn a_missing_experiment_file_is_a_clear_error() {
    let env = TestEnv::new();
    let out = env.run(&["plan", "nope.toml"]).expect(2);
    assert!(out.stderr.contains("nope.toml"), "{}", out.stderr);
}

#[test]
fn an_unknown_boundary_code_names_the_key_and_suggests() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &synthetic_experiment(20, "[classes]\nboundary = \"HX\"\n"),
    );
    let out = env.run(&["plan", "exp.toml"]).expect(2);
    assert!(out.stderr.contains("exp.toml:6:1"), "{}", out.stderr);
    assert!(out.stderr.contains("classes.boundary"), "{}", out.stderr);
    assert!(out.stderr.contains("HX"), "{}", out.stderr);
}

#[test]
fn a_geojson_boundary_path_is_resolved_against_the_experiment_file() {
    let env = TestEnv::new();
    let square = r#"{"type": "Polygon", "coordinates": [[[15.0, 44.0], [17.0, 44.0], [17.0, 46.0], [15.0, 46.0], [15.0, 44.0]]]}"#;
    env.write("exp/region.geojson", square);
    env.write(
        "exp/e.toml",
        &synthetic_experiment(
            40,
            "[classes]\nboundary = \"region.geojson\"\nspacing = 0.5\n",
        ),
    );
    env.run(&["run", "exp/e.toml"]).expect(0);
    let classes = fs::read_to_string(env.run_dir("t").join("classes/classes.csv")).unwrap();
    // A 2°×2° square at 0.5°: exactly 16 cells.
    assert_eq!(classes.lines().count(), 17, "{classes}");
}

#[test]
fn what_would_fail_inside_a_stage_is_refused_before_any_stage_runs() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, ""));
    for (set, needles) in [
        (
            "dataset.split.val=0.0,dataset.split.train=0.9",
            &["dataset.split.val", "must be > 0"][..],
        ),
        (
            "dataset.split.test=0.0,dataset.split.train=0.9",
            &["dataset.split.test", "must be > 0"][..],
        ),
        (
            "classes.spacing=1e-9",
            &[
                "classes.spacing",
                "grid squares",
                "more than the limit of 1000000",
            ][..],
        ),
        (
            "classes.spacing=0.001",
            &["classes.spacing", "more than the limit"][..],
        ),
        ("classes.spacing=1e308", &["classes.spacing", "1e308"][..]),
        (
            "dataset.synthetic.locations=1",
            &["dataset.synthetic.locations", "0 val", "0 test"][..],
        ),
        (
            "dataset.fraction=1e-300",
            &["dataset.synthetic.locations", "1e-300", "0 val"][..],
        ),
    ] {
        for cmd in ["plan", "run"] {
            let mut args = vec![cmd, "exp.toml"];
            for one in set.split(',') {
                args.extend(["--set", one]);
            }
            let out = env.run(&args).expect(2);
            for needle in needles {
                assert!(out.stderr.contains(needle), "{set}: {}", out.stderr);
            }
            assert!(out.stderr.len() < 1000, "{set}: {}", out.stderr);
        }
        assert!(!env.path().join("runs").exists(), "{set}: something ran");
    }
}

#[test]
fn a_real_dataset_too_small_for_its_split_fails_in_the_dataset_stage_before_training() {
    let env = TestEnv::new();
    env.synth("tiny", 2, 1);
    env.write(
        "exp.toml",
        &crate::common::dirs_experiment(&["data/tiny"], ""),
    );
    let out = env.run(&["run", "exp.toml"]).expect(1);
    assert!(
        out.stderr.contains("stage `dataset` failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("every split needs at least one"),
        "{}",
        out.stderr
    );
    assert!(!env.path().join("runs/.cache/train").exists());
}
