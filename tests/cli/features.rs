//! The features stage: a backbone that never trains is run once over every view, and the
//! head trains on its embeddings, with the results of training on the images.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{TestEnv, assert_matches_evaluate, predict, predicted, write_tiny};
use crate::sweep::stage_runs;

/// A frozen tiny-cnn with an MLP head (dropout on, so its seeded masks are compared too)
/// on a real-layout synthetic dataset at `data/d`.
fn frozen(env: &TestEnv, extra_train: &str) {
    write_tiny(
        env,
        "head = { kind = \"mlp\", hidden = [32], dropout = 0.2 }",
        &format!("unfreeze = \"none\"\n{extra_train}"),
    );
}

fn test_metrics(run: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(run.join("test_metrics.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

#[test]
fn a_frozen_backbone_trains_on_features_as_it_would_on_images() {
    let env = TestEnv::new();
    frozen(&env, "");
    let plan = env.run(&["plan", "exp.toml"]).expect(0);
    assert!(
        plan.stdout.contains("features  images")
            && plan.stdout.contains("read the features stage's embeddings"),
        "{}",
        plan.stdout
    );
    env.run(&["run", "exp.toml"]).expect(0);
    assert_eq!(env.cache_entries("features").len(), 1);
    let on_features = test_metrics(&env.run_dir("t"));

    // The same training on images: the backbone runs at every step instead.
    let images_plan = env
        .run(&[
            "plan",
            "exp.toml",
            "--set",
            "train.precompute_features=false",
        ])
        .expect(0);
    assert!(
        !images_plan.stdout.contains("features  ")
            && images_plan
                .stdout
                .contains("because train.precompute_features = false"),
        "{}",
        images_plan.stdout
    );
    std::fs::rename(env.path().join("runs/t"), env.path().join("features-run")).unwrap();
    env.run(&[
        "run",
        "exp.toml",
        "--set",
        "train.precompute_features=false",
    ])
    .expect(0);
    let on_images = test_metrics(&env.run_dir("t"));

    assert_eq!(
        on_features.keys().collect::<Vec<_>>(),
        on_images.keys().collect::<Vec<_>>()
    );
    for (k, a) in &on_features {
        let b = on_images[k];
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "{k}: {a} on features, {b} on images"
        );
    }
}

#[test]
fn a_checkpoint_trained_on_features_predicts_on_its_own() {
    let env = TestEnv::new();
    frozen(&env, "");
    env.run(&["run", "exp.toml"]).expect(0);
    let run = env.run_dir("t");
    let best = run.join("checkpoints/best.safetensors");
    predict(
        &env,
        best.to_str().unwrap(),
        "data/d/images",
        &["--out", "p.csv"],
    )
    .expect(0);
    assert_matches_evaluate(&run, &predicted(&env.path().join("p.csv")));
}

#[test]
fn a_head_sweep_computes_the_features_once() {
    let env = TestEnv::new();
    frozen(
        &env,
        "[sweep]\n\"train.lr\" = [3e-3, 1e-3]\n\"train.haversine_tau_km\" = [0, 75]\n",
    );
    let dry = env.run(&["sweep", "exp.toml", "--dry-run"]).expect(0);
    assert!(dry.stdout.contains("features 1"), "{}", dry.stdout);
    env.run(&["sweep", "exp.toml"]).expect(0);
    let counts = stage_runs(&env.path().join("runs"), "t");
    assert_eq!(counts.get("features"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("images"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("train"), Some(&4), "{counts:?}");
}

#[test]
fn augmentation_or_a_training_backbone_reads_images() {
    let env = TestEnv::new();
    frozen(&env, "augment = { noise_std = 0.05 }\n");
    let plan = env.run(&["plan", "exp.toml"]).expect(0);
    assert!(
        !plan.stdout.contains("features  ") && plan.stdout.contains("augmentation is on"),
        "{}",
        plan.stdout
    );
    let unfrozen = env
        .run(&["plan", "exp.toml", "--set", "train.unfreeze=\"all\""])
        .expect(0);
    assert!(
        unfrozen.stdout.contains("the backbone trains from epoch 0"),
        "{}",
        unfrozen.stdout
    );
}

#[test]
fn bad_model_settings_are_refused_before_anything_is_written() {
    let env = TestEnv::new();
    frozen(&env, "");
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--set", "model.pooling=\"mean\""],
            &["model.pooling", "ViT backbones only", "tiny-cnn"],
        ),
        (
            &["--set", "model.backbone=\"clip-vit-b33\""],
            &["did you mean `clip-vit-b32`", "dinov2: dinov2-s14"],
        ),
        (
            &["--set", "model.backbone=\"clip-vit-b32\""],
            &["train.image_size", "patch size 32"],
        ),
        (
            &["--set", "model.head={ kind = \"mlp\", hidden = [] }"],
            &["model.head", "hidden"],
        ),
    ];
    for (set, wanted) in cases {
        let mut args = vec!["run", "exp.toml"];
        args.extend_from_slice(set);
        let out = env.run(&args).expect(2);
        for w in wanted {
            assert!(
                out.stderr.contains(w),
                "{set:?}: no {w:?} in\n{}",
                out.stderr
            );
        }
    }
    assert!(!env.path().join("runs").exists());
}

#[test]
fn weights_that_do_not_fit_are_refused_before_anything_is_written() {
    let env = TestEnv::new();
    frozen(&env, "");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights");
    for (file, wanted) in [
        ("clip_pytorch_model.bin", "looks like a CLIP vision tower"),
        ("list.pt", "not a state dict"),
    ] {
        let path = fixtures.join(file);
        let set = format!("model.weights=\"{}\"", path.display());
        let out = env.run(&["run", "exp.toml", "--set", &set]).expect(2);
        assert!(
            out.stderr.contains("model.weights") && out.stderr.contains(wanted),
            "{file}: {}",
            out.stderr
        );
    }
    assert!(!env.path().join("runs").exists());
    // A Lightning checkpoint of a tiny-cnn (its backbone under `backbone.`) loads.
    let ckpt = fixtures.join("tiny_cnn_lightning.ckpt");
    let set = format!("model.weights=\"{}\"", ckpt.display());
    env.run(&["run", "exp.toml", "--set", &set]).expect(0);
}
