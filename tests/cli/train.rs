//! Training end to end: the full graph on tiny synthetic data with `tiny-cnn`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use geoexp::track::tensorboard::read_scalars;

use crate::common::TestEnv;

/// 60 locations at 16 px, a few epochs of tiny-cnn: about a second per run.
fn experiment(epochs: u32, extra_train: &str) -> String {
    format!(
        "name = \"t\"\nseed = 5\n[dataset]\nsynthetic = {{ locations = 60, image_size = 16, seed = 2 }}\n\
         [classes]\nspacing = 0.7\n[model]\nbackbone = \"tiny-cnn\"\n\
         [train]\nimage_size = 16\nbatch_size = 8\nepochs = {epochs}\nlr = 3e-3\ndevice = \"cpu\"\n{extra_train}"
    )
}

/// The tensors of a checkpoint by name.
fn checkpoint_tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    out.sort();
    out
}

fn metrics_csv(run_dir: &Path) -> String {
    fs::read_to_string(run_dir.join("metrics.csv")).unwrap()
}

fn work_dirs(env: &TestEnv) -> Vec<PathBuf> {
    fs::read_dir(env.path().join("runs/.cache/train/.work"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// Starts `run exp.toml` and SIGKILLs it as soon as its first `last` checkpoint is on
/// disk; returns the training's work folder.
fn kill_after_first_checkpoint(env: &TestEnv) -> PathBuf {
    let mut child = env
        .cmd(&["run", "exp.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let work = loop {
        if let Some(d) = work_dirs(env)
            .into_iter()
            .find(|d| d.join("last.safetensors").is_file())
        {
            break d;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "training finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    work
}

/// A view of the first location of the synthetic dataset `data/d`.
fn first_view(env: &TestEnv, heading: u16) -> PathBuf {
    fs::read_dir(env.path().join("data/d/images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join(format!("{heading}.jpg"))
}

/// The run id a `geoexp run` printed on its last line.
fn printed_run_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("run ")?
                .split_once(' ')
                .map(|(id, _)| id.to_owned())
        })
        .unwrap_or_else(|| panic!("no run line in {stdout}"))
}

#[test]
fn a_full_run_trains_evaluates_and_reruns_from_cache_with_the_same_manifest() {
    let env = TestEnv::new();
    env.write("exp.toml", &experiment(3, ""));
    let first = env.run(&["run", "exp.toml"]).expect(0);
    for stage in ["dataset", "classes", "images", "train", "evaluate"] {
        assert!(
            first
                .stdout
                .lines()
                .any(|l| l.starts_with(stage) && l.contains("miss")),
            "{stage}: {}",
            first.stdout
        );
    }
    assert!(first.stdout.contains("epoch   3/3"), "{}", first.stdout);
    assert!(
        first.stdout.contains("train-mean baseline"),
        "{}",
        first.stdout
    );
    let run_dir = env.run_dir("t");
    let manifest = fs::read(run_dir.join("manifest.toml")).unwrap();
    let text = String::from_utf8_lossy(&manifest);
    for key in [
        "\"test/haversine_km_mean\"",
        "\"test/baseline_km_mean\"",
        "\"test/acc_25km\"",
        "\"test/geoguessr_score\"",
        "\"test/country_score\"",
        "best_epoch",
    ] {
        assert!(text.contains(key), "{key} missing from\n{text}");
    }
    for file in [
        "events.out.tfevents.train",
        "events.out.tfevents.evaluate",
        "checkpoints/best.safetensors",
        "checkpoints/best.toml",
        "checkpoints/last.safetensors",
        "metrics.csv",
        "predictions.csv",
        "error_map.png",
    ] {
        assert!(
            run_dir.join(file).is_file(),
            "{file} missing in {run_dir:?}"
        );
    }
    assert!(work_dirs(&env).is_empty(), "work dir left behind");
    // The tensor names the README documents for Python users.
    let names: Vec<String> = checkpoint_tensors(&run_dir.join("checkpoints/best.safetensors"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for name in [
        "head.weight",
        "backbone.block0.conv.weight",
        "backbone.block0.bn.running_mean",
        "optim.head.weight.exp_avg",
        "optim.head.weight.exp_avg_sq",
        "optim.head.weight.step",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }

    let again = env.run(&["run", "exp.toml"]).expect(0);
    assert_eq!(again.stdout.matches(" hit ").count(), 5, "{}", again.stdout);
    assert_eq!(fs::read(run_dir.join("manifest.toml")).unwrap(), manifest);
}

#[test]
fn a_changed_learning_rate_reuses_data_stages_and_retrains() {
    let env = TestEnv::new();
    env.write("exp.toml", &experiment(3, ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let out = env
        .run(&["run", "exp.toml", "--set", "train.lr=1e-3"])
        .expect(0);
    let status = |stage: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(stage) && (l.contains(" hit ") || l.contains(" miss ")))
            .unwrap_or_else(|| panic!("{stage}: {}", out.stdout))
            .to_owned()
    };
    for stage in ["dataset", "classes", "images"] {
        assert!(status(stage).contains(" hit "), "{}", out.stdout);
    }
    for stage in ["train", "evaluate"] {
        assert!(status(stage).contains(" miss "), "{}", out.stdout);
    }
    assert!(status("train").contains("train.lr"), "{}", out.stdout);
}

#[test]
fn training_is_deterministic_on_cpu() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &experiment(
            3,
            "augment = { crop_scale = 0.6, color_jitter = 0.2, noise_std = 0.02 }\n",
        ),
    );
    env.run(&["run", "exp.toml", "--runs-dir", "a"]).expect(0);
    env.run(&["run", "exp.toml", "--runs-dir", "b"]).expect(0);
    let dir = |r: &str| {
        let base = env.path().join(r).join("t");
        fs::read_dir(base).unwrap().next().unwrap().unwrap().path()
    };
    assert_eq!(metrics_csv(&dir("a")), metrics_csv(&dir("b")));
    assert_eq!(
        checkpoint_tensors(&dir("a").join("checkpoints/last.safetensors")),
        checkpoint_tensors(&dir("b").join("checkpoints/last.safetensors"))
    );
}

#[test]
fn a_killed_training_resumes_from_last_and_ends_like_an_uninterrupted_run() {
    let env = TestEnv::new();
    env.write("exp.toml", &experiment(6, ""));
    env.run(&["run", "exp.toml", "--runs-dir", "whole"])
        .expect(0);
    let whole = {
        let base = env.path().join("whole/t");
        fs::read_dir(base).unwrap().next().unwrap().unwrap().path()
    };

    // Kill the second process as soon as its first `last` checkpoint is on disk.
    kill_after_first_checkpoint(&env);
    assert!(
        env.cache_entries("train").is_empty(),
        "a killed run committed"
    );

    let resumed = env.run(&["run", "exp.toml"]).expect(0);
    assert!(
        resumed.stdout.contains("resuming from"),
        "{}",
        resumed.stdout
    );
    let run_dir = env.run_dir("t");
    // The manifest contract: killed and resumed, the same bytes as uninterrupted; how
    // many epochs this attempt ran is a fact of the execution.
    assert_eq!(
        fs::read_to_string(run_dir.join("manifest.toml")).unwrap(),
        fs::read_to_string(whole.join("manifest.toml")).unwrap()
    );
    for name in [
        "best.safetensors",
        "best.toml",
        "last.safetensors",
        "last.toml",
    ] {
        assert_eq!(
            fs::read(run_dir.join("checkpoints").join(name)).unwrap(),
            fs::read(whole.join("checkpoints").join(name)).unwrap(),
            "{name}"
        );
    }
    let execution = fs::read_to_string(run_dir.join("execution.toml")).unwrap();
    assert!(
        execution.contains("epochs_run_by_this_attempt = "),
        "{execution}"
    );
    assert_eq!(metrics_csv(&run_dir), metrics_csv(&whole));
    assert_eq!(
        checkpoint_tensors(&run_dir.join("checkpoints/last.safetensors")),
        checkpoint_tensors(&whole.join("checkpoints/last.safetensors"))
    );
    // The resumed event file holds each epoch's metrics once, as the whole run's does.
    let tags = |dir: &Path| {
        let mut s: Vec<(String, i64)> = read_scalars(&dir.join("events.out.tfevents.train"))
            .unwrap()
            .into_iter()
            .filter(|(tag, _, _)| tag.starts_with("val/"))
            .map(|(tag, step, _)| (tag, step))
            .collect();
        s.sort();
        s
    };
    assert_eq!(tags(&run_dir), tags(&whole));
}

#[test]
fn a_diverging_training_stops_at_once_with_exit_1_and_keeps_its_finite_epochs() {
    let env = TestEnv::new();
    env.write("exp.toml", &experiment(3, ""));
    // At once: the first steps already overflow.
    let out = env
        .run(&["run", "exp.toml", "--set", "train.lr=1e6"])
        .expect(1);
    assert!(
        out.stderr
            .contains("training diverged in epoch 1 of 3: the loss is NaN at step"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("train.lr = 1000000"), "{}", out.stderr);
    assert!(out.stderr.contains("Nothing was kept"), "{}", out.stderr);
    assert!(env.cache_entries("train").is_empty());
    let run = env.run_dir("t");
    let execution = fs::read_to_string(run.join("execution.toml")).unwrap();
    assert!(execution.contains("status = \"failed\""), "{execution}");

    // Later: the head trains fine in epoch 1, the backbone blows up once unfrozen. Epoch 1
    // stays resumable, and a rerun resumes from it (and diverges again, as it must).
    let diverge_later = [
        "run",
        "exp.toml",
        "--set",
        "train.backbone_lr=1e9",
        "--set",
        "train.unfreeze_epoch=1",
    ];
    let out = env.run(&diverge_later).expect(1);
    assert!(
        out.stderr.contains("training diverged in epoch 2 of 3"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("train.backbone_lr = 1000000000"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Epoch 1 is kept"), "{}", out.stderr);
    let kept: Vec<_> = work_dirs(&env)
        .into_iter()
        .filter(|d| d.join("last.safetensors").is_file())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let again = env.run(&diverge_later).expect(1);
    assert!(
        again.stdout.contains("resuming from") && again.stdout.contains("after epoch 1"),
        "{}",
        again.stdout
    );
}

#[test]
fn an_unreadable_last_checkpoint_is_set_aside_and_training_starts_over() {
    let env = TestEnv::new();
    env.write("exp.toml", &experiment(4, ""));
    env.run(&["run", "exp.toml", "--runs-dir", "whole"])
        .expect(0);
    let work = kill_after_first_checkpoint(&env);
    fs::write(work.join("last.safetensors"), b"not a checkpoint").unwrap();
    let out = env.run(&["run", "exp.toml"]).expect(0);
    assert!(
        out.stdout.contains("cannot resume") && out.stdout.contains("starts over"),
        "{}",
        out.stdout
    );
    let manifest = |dir: &Path| fs::read_to_string(dir.join("manifest.toml")).unwrap();
    let whole = fs::read_dir(env.path().join("whole/t"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(manifest(&env.run_dir("t")), manifest(&whole));
}

#[test]
fn event_files_hold_the_epoch_metrics_and_every_step_lr() {
    let env = TestEnv::new();
    env.write("exp.toml", &experiment(3, ""));
    env.run(&["run", "exp.toml"]).expect(0);
    let run_dir = env.run_dir("t");
    let scalars = read_scalars(&run_dir.join("events.out.tfevents.train")).unwrap();
    let csv = metrics_csv(&run_dir);
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = rows.headers().unwrap().iter().map(str::to_owned).collect();
    for (epoch, row) in rows.records().enumerate() {
        let row = row.unwrap();
        for (name, value) in header.iter().zip(row.iter()).skip(2) {
            let want: f64 = value.parse().unwrap();
            let got = scalars
                .iter()
                .find(|(t, s, _)| t == name && *s == epoch as i64)
                .unwrap_or_else(|| panic!("{name} at epoch {epoch} missing"));
            assert!(
                (got.2 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{name}: {} vs {want}",
                got.2
            );
        }
    }
    let lr_steps = scalars.iter().filter(|(t, _, _)| t == "lr").count();
    // 60 locations → 48 train → 6 batches of 8, three epochs.
    assert_eq!(lr_steps, 18);
    for tag in [
        "train/loss",
        "train/acc",
        "val/haversine_km_mean",
        "test/acc_top5",
    ] {
        assert!(scalars.iter().any(|(t, _, _)| t == tag), "{tag}");
    }
}

#[test]
fn a_frozen_backbone_keeps_its_initial_weights_and_batch_norm_statistics() {
    let env = TestEnv::new();
    // Frozen for both epochs: only the head may change.
    env.write("exp.toml", &experiment(2, "unfreeze_epoch = 2\n"));
    env.run(&["run", "exp.toml", "--runs-dir", "frozen"])
        .expect(0);
    env.write("exp.toml", &experiment(2, ""));
    env.run(&["run", "exp.toml", "--runs-dir", "free"])
        .expect(0);
    let load = |r: &str| {
        let base = env.path().join(r).join("t");
        let dir = fs::read_dir(base).unwrap().next().unwrap().unwrap().path();
        fs::read(dir.join("checkpoints/last.safetensors")).unwrap()
    };
    let (frozen, free) = (load("frozen"), load("free"));
    let frozen = safetensors::SafeTensors::deserialize(&frozen).unwrap();
    let free = safetensors::SafeTensors::deserialize(&free).unwrap();
    // Same seed → same initial weights; training the backbone must change them.
    let init = geoexp_init_backbone();
    let mut compared = 0;
    for (name, initial) in &init {
        let f = frozen.tensor(name).unwrap();
        assert_eq!(f.data(), initial.as_slice(), "{name} changed while frozen");
        compared += 1;
    }
    assert!(compared > 0);
    let changed = init
        .iter()
        .any(|(name, initial)| free.tensor(name).unwrap().data() != initial.as_slice());
    assert!(changed, "an unfrozen backbone did not train");
}

/// The seeded initial backbone tensors of the test experiment (seed 5, tiny-cnn), as
/// bytes, from the library's own initialisation.
fn geoexp_init_backbone() -> Vec<(String, Vec<u8>)> {
    init_tensors()
        .into_iter()
        .filter(|(n, _)| n.starts_with("backbone."))
        .collect()
}

fn init_tensors() -> Vec<(String, Vec<u8>)> {
    use candle_nn::{VarBuilder, VarMap};
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &candle_core::Device::Cpu);
    // Initial values derive from (seed, variable name), so the head size is irrelevant.
    let _net =
        geoexp::model::GeoNet::new("tiny-cnn", geoexp::vocab::Fusion::Concat, 2, vb).unwrap();
    geoexp::model::init_seeded(&varmap, 5).unwrap();
    let vars = varmap.data().lock().unwrap();
    vars.iter()
        .map(|(n, v)| {
            let t = v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let bytes = t.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), bytes)
        })
        .collect()
}

#[test]
fn cuda_in_a_cpu_build_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &experiment(3, "").replace("\"cpu\"", "\"cuda:0\""),
    );
    // Known before anything runs: a configuration error naming the key, nothing computed.
    let out = env.run(&["run", "exp.toml"]).expect(2);
    assert!(out.stderr.contains("--features cuda"), "{}", out.stderr);
    assert!(out.stderr.contains("exp.toml:"), "{}", out.stderr);
    assert!(out.stderr.contains("train.device"), "{}", out.stderr);
    assert!(!env.path().join("runs").exists());
}

#[test]
fn a_corrupt_view_names_its_file_unless_bad_images_are_skipped() {
    let env = TestEnv::new();
    env.synth("d", 40, 4);
    let victim = first_view(&env, 90);
    fs::write(&victim, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    env.write(
        "exp.toml",
        &crate::common::dirs_experiment(&["data/d"], "[classes]\nspacing = 0.7\n"),
    );
    let out = env.run(&["run", "exp.toml"]).expect(1);
    let uuid = victim
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    assert!(
        out.stderr.contains(&format!("{uuid}/90.jpg")),
        "{}",
        out.stderr
    );
    assert!(env.cache_entries("images").is_empty());

    let out = env
        .run(&["run", "exp.toml", "--set", "dataset.skip_bad_images=true"])
        .expect(0);
    let manifest_path = out
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("run ")?
                .split_once(" → ")
                .map(|(_, p)| p.to_owned())
        })
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let manifest = fs::read_to_string(env.path().join(manifest_path)).unwrap();
    assert!(manifest.contains("dropped_bad_images = 1"), "{manifest}");
}

#[test]
fn a_decompression_bomb_view_is_refused_by_its_header() {
    let env = TestEnv::new();
    env.synth("d", 40, 4);
    let victim = first_view(&env, 180);
    // The view's own bytes, with a frame header claiming 30000×30000 pixels.
    let mut bytes = fs::read(&victim).unwrap();
    let at = (0..bytes.len() - 1)
        .find(|&i| bytes[i] == 0xFF && (0xC0..=0xC2).contains(&bytes[i + 1]))
        .unwrap();
    bytes[at + 5..at + 9].copy_from_slice(&[0x75, 0x30, 0x75, 0x30]);
    fs::write(&victim, &bytes).unwrap();
    env.write(
        "exp.toml",
        &crate::common::dirs_experiment(&["data/d"], "[classes]\nspacing = 0.7\n"),
    );
    let out = env.run(&["run", "exp.toml"]).expect(1);
    assert!(out.stderr.contains("180.jpg"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("30000×30000 pixels, more than the limit of 64 megapixels"),
        "{}",
        out.stderr
    );
    // The limit is the experiment's to raise; the bomb is then refused for holding too
    // few bytes for what it declares, still before decoding.
    let out = env
        .run(&[
            "run",
            "exp.toml",
            "--set",
            "dataset.max_image_megapixels=1000",
        ])
        .expect(1);
    assert!(
        out.stderr
            .contains("truncated: it declares 30000×30000 pixels"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&["run", "exp.toml", "--set", "dataset.skip_bad_images=true"])
        .expect(0);
    let run_id = printed_run_id(&out.stdout);
    // predict leaves the folder out, naming why.
    let out = env
        .run(&["predict", &run_id, "--images", "data/d"])
        .expect(0);
    assert!(out.stderr.contains("megapixels"), "{}", out.stderr);
}

#[test]
fn a_training_paused_at_an_epoch_has_that_epochs_metrics_and_continues_to_the_same_run() {
    let env = TestEnv::new();
    env.write(
        "exp.toml",
        &experiment(4, "scheduler = { kind = \"cosine\" }\n"),
    );
    env.run(&["run", "exp.toml", "--runs-dir", "whole"])
        .expect(0);
    let whole = {
        let base = env.path().join("whole/t");
        fs::read_dir(base).unwrap().next().unwrap().unwrap().path()
    };

    let paused = env
        .run(&["run", "exp.toml", "--stop-after-epoch", "2"])
        .expect(0);
    assert!(
        paused
            .stdout
            .contains("train      paused: stopped after epoch 2 of 4, as asked"),
        "{}",
        paused.stdout
    );
    assert!(paused.stdout.contains("run paused: running it again"));
    assert!(
        env.cache_entries("train").is_empty(),
        "a paused run committed"
    );
    let run_dir = env.path().join("runs/t");
    let run_dir = fs::read_dir(run_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!run_dir.join("manifest.toml").exists());
    let execution = fs::read_to_string(run_dir.join("execution.toml")).unwrap();
    assert!(execution.contains("status = \"paused\""), "{execution}");
    // The epochs trained so far are exactly the first two of the whole run, cosine
    // schedule (which depends on train.epochs) included.
    let [work] = &work_dirs(&env)[..] else {
        panic!("one work folder")
    };
    let whole_rows: Vec<String> = metrics_csv(&whole).lines().map(str::to_owned).collect();
    assert_eq!(
        metrics_csv(work).lines().collect::<Vec<_>>(),
        whole_rows[..3]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );

    // A smaller budget than what is done trains nothing more.
    let again = env
        .run(&["run", "exp.toml", "--stop-after-epoch", "1"])
        .expect(0);
    assert!(
        again.stdout.contains("paused: stopped after epoch 2 of 4")
            && !again.stdout.contains("epoch   3/4"),
        "{}",
        again.stdout
    );

    let resumed = env.run(&["run", "exp.toml"]).expect(0);
    assert!(
        resumed.stdout.contains("after epoch 2") && !resumed.stdout.contains("epoch   2/4"),
        "{}",
        resumed.stdout
    );
    assert_eq!(
        fs::read_to_string(run_dir.join("manifest.toml")).unwrap(),
        fs::read_to_string(whole.join("manifest.toml")).unwrap()
    );
    assert_eq!(metrics_csv(&run_dir), metrics_csv(&whole));
}
