//! `geoexp predict`: a trained checkpoint over a folder of `<uuid>/{0,90,180,270}.jpg`.

use std::fs;
use std::path::Path;

use crate::common::{TestEnv, assert_matches_evaluate, predict, predicted, train_tiny};

fn folders(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn predictions_match_the_evaluate_stage_in_the_competition_format() {
    let env = TestEnv::new();
    let run_dir = train_tiny(&env, "");
    let run = predict(
        &env,
        run_dir.to_str().unwrap(),
        "data/d/images",
        &["--out", "pred.csv"],
    )
    .expect(0);
    assert!(
        run.stdout.contains("predicted 60 location(s)"),
        "{}",
        run.stdout
    );
    let text = env.read("pred.csv");
    assert_eq!(text.lines().next(), Some("uuid,latitude,longitude"));
    let got = predicted(&env.path().join("pred.csv"));
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        folders(&env.path().join("data/d/images"))
    );
    let uuids: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let mut sorted = uuids.clone();
    sorted.sort();
    assert_eq!(uuids, sorted, "rows are sorted by uuid");
    assert_matches_evaluate(&run_dir, &got);

    // The dataset directory itself works too (its images/ folder is used), and without
    // --out the CSV goes to stdout alone.
    let stdout = predict(&env, run_dir.to_str().unwrap(), "data/d", &[]).expect(0);
    assert_eq!(stdout.stdout, text);

    // --out naming a folder says so.
    std::fs::create_dir(env.path().join("outdir")).unwrap();
    let out = predict(
        &env,
        run_dir.to_str().unwrap(),
        "data/d",
        &["--out", "outdir"],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("outdir: is a folder"), "{}", out.stderr);
}

#[test]
fn the_model_can_be_a_checkpoint_file_a_run_id_or_a_name_under_models() {
    let env = TestEnv::new();
    let run_dir = train_tiny(&env, "");
    let reference = predict(&env, run_dir.to_str().unwrap(), "data/d", &[])
        .expect(0)
        .stdout;
    let id = run_dir.file_name().unwrap().to_str().unwrap();
    fs::create_dir(env.path().join("models")).unwrap();
    fs::copy(
        run_dir.join("checkpoints/best.safetensors"),
        env.path().join("models/tiny.safetensors"),
    )
    .unwrap();
    let best = run_dir.join("checkpoints/best.safetensors");
    for model in [best.to_str().unwrap(), &id[..6], "tiny"] {
        let out = predict(&env, model, "data/d", &["--models", "models"]).expect(0);
        assert_eq!(out.stdout, reference, "{model}");
    }
    let missing = predict(&env, "nothing", "data/d", &["--models", "models"]).expect(2);
    assert!(
        missing
            .stderr
            .contains("nothing: no checkpoint file, run folder, run id or model in models"),
        "{}",
        missing.stderr
    );
    let not_images = env
        .run(&[
            "predict", "tiny", "--models", "models", "--images", "exp.toml",
        ])
        .expect(2);
    assert!(
        not_images.stderr.contains("exp.toml: not a directory"),
        "{}",
        not_images.stderr
    );
}

#[test]
fn incomplete_and_unreadable_folders_are_listed_and_skipped_or_fail_with_strict() {
    let env = TestEnv::new();
    let run_dir = train_tiny(&env, "");
    let images = env.path().join("images");
    fs::create_dir(&images).unwrap();
    let source = env.path().join("data/d/images");
    let uuids = folders(&source);
    for uuid in &uuids[..3] {
        fs::create_dir(images.join(uuid)).unwrap();
        for h in [0, 90, 180, 270] {
            let name = format!("{h}.jpg");
            fs::copy(source.join(uuid).join(&name), images.join(uuid).join(&name)).unwrap();
        }
    }
    fs::remove_file(images.join(&uuids[1]).join("180.jpg")).unwrap();
    fs::write(images.join(&uuids[2]).join("90.jpg"), b"not a jpeg").unwrap();
    let run = predict(&env, run_dir.to_str().unwrap(), "images", &["-o", "p.csv"]).expect(0);
    assert!(
        run.stderr
            .contains(&format!("skipped {}: no view for heading 180", uuids[1])),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("skipped {}: ", uuids[2])) && run.stderr.contains("90.jpg"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("predicted 1 location(s)") && run.stdout.contains("skipped 2"));
    assert_eq!(
        predicted(&env.path().join("p.csv"))
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        [uuids[0].clone()]
    );

    fs::write(env.path().join("p.csv"), "kept").unwrap();
    let strict = predict(
        &env,
        run_dir.to_str().unwrap(),
        "images",
        &["-o", "p.csv", "--strict"],
    )
    .expect(2);
    assert!(
        strict
            .stderr
            .contains(&format!("{}: no view for heading 180", uuids[1])),
        "{}",
        strict.stderr
    );
    assert_eq!(
        env.read("p.csv"),
        "kept",
        "a failed prediction leaves the old file alone"
    );
}

#[test]
fn snapping_moves_every_prediction_onto_the_given_land() {
    let env = TestEnv::new();
    let run_dir = train_tiny(&env, "");
    // A 0.1° island far from every prediction: each one must land on its edge.
    env.write(
        "island.geojson",
        r#"{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
            "coordinates": [[[13.0, 42.0], [13.1, 42.0], [13.1, 42.1], [13.0, 42.1], [13.0, 42.0]]]}}"#,
    );
    let run = predict(
        &env,
        run_dir.to_str().unwrap(),
        "data/d",
        &[
            "-o",
            "p.csv",
            "--snap-to-land",
            "--boundary",
            "island.geojson",
        ],
    )
    .expect(0);
    assert!(run.stdout.contains("60 moved onto land"), "{}", run.stdout);
    for (uuid, (lat, lon)) in predicted(&env.path().join("p.csv")) {
        assert!(
            (42.0 - 1e-9..=42.1 + 1e-9).contains(&lat)
                && (13.0 - 1e-9..=13.1 + 1e-9).contains(&lon),
            "{uuid}: {lat},{lon}"
        );
    }
    // The run's own boundary (Croatia) is the default; its predictions are on land already
    // or moved there.
    let own = predict(
        &env,
        run_dir.to_str().unwrap(),
        "data/d",
        &["--snap-to-land"],
    )
    .expect(0);
    assert!(own.stderr.contains("moved onto land"), "{}", own.stderr);
}

#[test]
fn a_regression_checkpoint_predicts_like_its_evaluate_stage() {
    let env = TestEnv::new();
    let run_dir = train_tiny(&env, "task = \"regression\"");
    predict(&env, run_dir.to_str().unwrap(), "data/d", &["-o", "p.csv"]).expect(0);
    assert_matches_evaluate(&run_dir, &predicted(&env.path().join("p.csv")));
}
