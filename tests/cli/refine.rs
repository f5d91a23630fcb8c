//! Retrieval refinement (`model.refine`): evaluate refines with the training embeddings,
//! ships them beside the checkpoint, and `predict` refines as evaluate did.

use std::collections::BTreeMap;

use crate::common::{TestEnv, assert_matches_evaluate, predict, predicted, train_tiny, write_tiny};

const REFINE: &str =
    "refine = { top_cells = 3, neighbours = 4, temperature_km = 30.0, max_move_km = 500.0 }";

fn test_metrics(run: &std::path::Path) -> BTreeMap<String, f64> {
    toml::from_str(&std::fs::read_to_string(run.join("test_metrics.toml")).unwrap()).unwrap()
}

#[test]
fn a_fine_tuned_model_is_refined_with_its_trained_embeddings_and_predict_agrees() {
    let env = TestEnv::new();
    let run = train_tiny(&env, REFINE);
    let metrics = test_metrics(&run);
    for k in [
        "haversine_km_mean",
        "unrefined_haversine_km_mean",
        "unrefined_haversine_km_median",
        "refined_moved",
    ] {
        assert!(metrics.contains_key(k), "no {k} in {metrics:?}");
    }
    assert!(
        metrics["refined_moved"] > 0.0,
        "refinement moved nothing: {metrics:?}"
    );
    // The trained backbone's embeddings come after training.
    let plan = env.run(&["plan", "exp.toml"]).expect(0);
    assert!(
        plan.stdout.contains("features  images, train"),
        "{}",
        plan.stdout
    );

    let gallery = run.join("checkpoints/best.gallery.safetensors");
    assert!(gallery.is_file());
    let best = run.join("checkpoints/best.safetensors");
    let best = best.to_str().unwrap();
    predict(&env, best, "data/d/images", &["--out", "refined.csv"]).expect(0);
    let refined = predicted(&env.path().join("refined.csv"));
    assert_matches_evaluate(&run, &refined);

    // Without the gallery beside it, the checkpoint predicts unrefined.
    std::fs::remove_file(&gallery).unwrap();
    predict(&env, best, "data/d/images", &["--out", "plain.csv"]).expect(0);
    assert_ne!(predicted(&env.path().join("plain.csv")), refined);
}

#[test]
fn changing_refinement_reruns_only_evaluate() {
    let env = TestEnv::new();
    train_tiny(&env, REFINE);
    let plan = env
        .run(&["plan", "exp.toml", "--set", "model.refine.top_cells=2"])
        .expect(2);
    // A key inside the table is not a key of its own: the table is set whole.
    assert!(plan.stderr.contains("model.refine"), "{}", plan.stderr);
    let plan = env
        .run(&[
            "plan",
            "exp.toml",
            "--set",
            "model.refine={ top_cells = 2, neighbours = 4, temperature_km = 30.0, max_move_km = 500.0 }",
        ])
        .expect(0);
    for line in plan.stdout.lines() {
        let will_run = line.contains("will run");
        if line.starts_with(" train") || line.starts_with(" features") {
            assert!(!will_run, "{line}\n{}", plan.stdout);
        }
        if line.starts_with(" evaluate") {
            assert!(will_run && line.contains("model.refine"), "{line}");
        }
    }
}

#[test]
fn a_frozen_backbone_refines_with_the_features_it_trained_on() {
    let env = TestEnv::new();
    write_tiny(&env, REFINE, "unfreeze = \"none\"\n");
    env.run(&["run", "exp.toml"]).expect(0);
    let run = env.run_dir("t");
    assert_eq!(env.cache_entries("features").len(), 1);
    let plan = env.run(&["plan", "exp.toml"]).expect(0);
    assert!(plan.stdout.contains("features  images "), "{}", plan.stdout);
    assert!(test_metrics(&run).contains_key("refined_moved"));
}

#[test]
fn bad_refinement_settings_are_refused_naming_the_key() {
    let env = TestEnv::new();
    env.write("exp.toml", &crate::common::synthetic_experiment(40, ""));
    for (set, wanted) in [
        (
            "model.refine={ top_cells = 0 }",
            "`top_cells` must be at least 1",
        ),
        (
            "model.refine={ temperature_km = -1.0 }",
            "`temperature_km` must be positive",
        ),
        ("model.refine={ radius = 3 }", "radius"),
    ] {
        let out = env.run(&["run", "exp.toml", "--set", set]).expect(2);
        assert!(
            out.stderr.contains("model.refine") && out.stderr.contains(wanted),
            "{set}: {}",
            out.stderr
        );
    }
    let regression = env
        .run(&[
            "run",
            "exp.toml",
            "--set",
            "model.refine={}",
            "--set",
            "model.task=\"regression\"",
        ])
        .expect(2);
    assert!(
        regression.stderr.contains("model.refine")
            && regression.stderr.contains("classification only"),
        "{}",
        regression.stderr
    );
    assert!(!env.path().join("runs").exists());
}
