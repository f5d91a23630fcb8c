//! `geoexp plan`: keys, cached or not, and why.

use crate::common::{TestEnv, synthetic_experiment};

#[test]
fn a_changed_spacing_reruns_classes_only_and_says_why() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, ""));
    let fresh = env.run(&["plan", "exp.toml"]).expect(0);
    assert!(
        fresh.stdout.contains("never run before"),
        "{}",
        fresh.stdout
    );
    env.run(&["run", "exp.toml", "--until", "classes"])
        .expect(0);
    let out = env
        .run(&["plan", "exp.toml", "--set", "classes.spacing=0.3"])
        .expect(0);
    let dataset = out.stdout.lines().find(|l| l.contains("dataset")).unwrap();
    assert!(dataset.contains("cached"), "{}", out.stdout);
    assert!(
        out.stdout.contains("classes.spacing 0.5 → 0.3"),
        "{}",
        out.stdout
    );
    // Planning runs nothing.
    assert_eq!(env.cache_entries("classes").len(), 1);
}

#[test]
fn a_value_no_stage_reads_changes_no_key() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let out = env
        .run(&["plan", "exp.toml", "--set", "train.device=cpu"])
        .expect(0);
    assert_eq!(out.stdout.matches("cached").count(), 5, "{}", out.stdout);
}

#[test]
fn a_changed_split_reruns_the_dataset_and_everything_downstream() {
    let env = TestEnv::new();
    env.write("exp.toml", &synthetic_experiment(40, ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let out = env
        .run(&[
            "plan",
            "exp.toml",
            "--set",
            "dataset.split.train=0.7",
            "--set",
            "dataset.split.val=0.2",
        ])
        .expect(0);
    assert!(
        out.stdout.contains("dataset.split.train 0.8 → 0.7"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("upstream `dataset` changed"),
        "{}",
        out.stdout
    );
}
