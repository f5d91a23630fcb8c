//! A temporary project folder and a way to run `geoexp` in it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary working directory for one test.
pub struct TestEnv {
    dir: tempfile::TempDir,
}

/// What a command printed and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with everything printed unless the exit code is `code`.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `geoexp` with this folder as working directory and no inherited GEOEXP_* settings.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geoexp"));
        cmd.current_dir(self.path()).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("GEOEXP_") {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.cmd(args);
        cmd.envs(env.iter().copied());
        Run::from(cmd.output().unwrap())
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// A synthetic dataset in the real layout at `data/<name>`.
    pub fn synth(&self, name: &str, locations: usize, seed: u64) {
        self.run(&[
            "synth",
            "--out",
            &format!("data/{name}"),
            "--locations",
            &locations.to_string(),
            "--image-size",
            "16",
            "--seed",
            &seed.to_string(),
        ])
        .expect(0);
    }

    /// The single run folder of experiment `name` (panics unless exactly one).
    pub fn run_dir(&self, name: &str) -> PathBuf {
        let dirs: Vec<PathBuf> = fs::read_dir(self.path().join("runs").join(name))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs.into_iter().next().unwrap()
    }

    /// Entries (complete ones) of a stage in the cache.
    pub fn cache_entries(&self, stage: &str) -> Vec<String> {
        let Ok(dir) = fs::read_dir(self.path().join("runs/.cache").join(stage)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }
}

/// Training settings that keep a full run of a test experiment to about a second.
pub const FAST_TRAINING: &str =
    "\n[model]\nbackbone = \"tiny-cnn\"\n[train]\nimage_size = 16\nbatch_size = 8\nepochs = 1\n";

/// An experiment on a generated-in-cache synthetic dataset; `extra` is appended, then
/// [`FAST_TRAINING`] (so `extra` must not open `[model]` or `[train]`).
pub fn synthetic_experiment(locations: usize, extra: &str) -> String {
    format!(
        "name = \"t\"\nseed = 1\n[dataset]\nsynthetic = {{ locations = {locations}, image_size = 16, seed = 3 }}\n{extra}{FAST_TRAINING}"
    )
}

/// An experiment over real-layout directories; `extra` is appended.
pub fn dirs_experiment(dirs: &[&str], extra: &str) -> String {
    let list: Vec<String> = dirs.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "name = \"t\"\nseed = 1\n[dataset]\ndirs = [{}]\n{extra}{FAST_TRAINING}",
        list.join(", ")
    )
}

/// Final metrics of a [`FakeRun`] that reached the evaluate stage.
#[derive(Clone, Copy)]
pub struct FakeMetrics {
    pub km_mean: f64,
    pub km_median: f64,
    pub acc_25km: f64,
    pub acc: f64,
    pub best_val_km: f64,
    pub best_epoch: u32,
}

/// A run described by hand, written as a `manifest.toml` shaped like the real ones (config,
/// provenance, run, stages with keys, params, upstream keys, inputs, outputs and results,
/// versions), so `ls` and `diff` are tested on known manifests without training anything.
/// Stage keys are derived from what each stage reads, as real keys are.
#[derive(Clone, Copy)]
pub struct FakeRun {
    pub name: &'static str,
    pub id: &'static str,
    pub lr: f64,
    pub spacing: f64,
    /// `None`: the run stopped after the classes stage.
    pub metrics: Option<FakeMetrics>,
    pub geoexp: &'static str,
}

/// A readable, deterministic 64-hex-digit stand-in for a stage key.
fn fake_key(what: &str) -> String {
    let hex: String = what.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0<64}")[..64].to_owned()
}

impl FakeRun {
    pub fn manifest(&self) -> String {
        let FakeRun {
            name,
            id,
            lr,
            spacing,
            geoexp,
            ..
        } = *self;
        let classes_key = fake_key(&format!("c{spacing}{geoexp}"));
        let train_key = fake_key(&format!("t{lr}{spacing}{geoexp}"));
        let eval_key = fake_key(&format!("e{lr}{spacing}{geoexp}"));
        let mut text = format!(
            r#"[config]
name = "{name}"
seed = 7

[config.classes]
boundary = "HR"
spacing = {spacing:?}

[config.train]
epochs = 8
lr = {lr:?}
monitor = "val/haversine_km_mean"

[provenance]
"classes.boundary" = "default"
"classes.spacing" = "exp.toml"
name = "exp.toml"
seed = "exp.toml"
"train.epochs" = "default"
"train.lr" = "--set train.lr={lr:?}"
"train.monitor" = "default"

[run]
experiment = "exp.toml"
id = "{id}"
name = "{name}"

[stages.classes]
key = "{classes_key}"
version = 1

[stages.classes.inputs.boundary]
digest = "{boundary}"
files = 0

[stages.classes.outputs."classes.csv"]
blake3 = "{classes_key}"
bytes = 2206

[stages.classes.params]
"classes.boundary" = "HR"
"classes.spacing" = {spacing:?}

[stages.classes.results]
cells = 58
classes = 45

[stages.classes.upstream]
"#,
            boundary = fake_key("boundary HR"),
        );
        if let Some(m) = self.metrics {
            text.push_str(&format!(
                r#"
[stages.evaluate]
key = "{eval_key}"
version = 1

[stages.evaluate.inputs]

[stages.evaluate.outputs."predictions.csv"]
blake3 = "{eval_key}"
bytes = 20307

[stages.evaluate.params]

[stages.evaluate.results]
best_epoch = {best_epoch}
locations = 150
"test/acc" = {acc:?}
"test/acc_25km" = {acc_25km:?}
"test/haversine_km_mean" = {km_mean:?}
"test/haversine_km_median" = {km_median:?}

[stages.evaluate.upstream]
classes = "{classes_key}"
train = "{train_key}"

[stages.train]
key = "{train_key}"
version = 1

[stages.train.inputs]

[stages.train.outputs."best.safetensors"]
blake3 = "{train_key}"
bytes = 1462356

[stages.train.params]
"train.epochs" = 8
"train.lr" = {lr:?}

[stages.train.results]
best_epoch = {best_epoch}
"best_val/haversine_km_mean" = {best_val_km:?}
device = "Cpu"
"last/val/loss" = 1.5

[stages.train.upstream]
classes = "{classes_key}"
"#,
                best_epoch = m.best_epoch,
                acc = m.acc,
                acc_25km = m.acc_25km,
                km_mean = m.km_mean,
                km_median = m.km_median,
                best_val_km = m.best_val_km,
            ));
        }
        text.push_str(&format!(
            "\n[versions]\nfeatures = \"\"\ngeoexp = \"{geoexp}\"\n"
        ));
        text
    }
}

impl TestEnv {
    /// Writes `runs/<name>/<id>/manifest.toml` for `run`; returns the run folder.
    pub fn fake_run(&self, run: &FakeRun) -> PathBuf {
        let rel = format!("runs/{}/{}/manifest.toml", run.name, run.id);
        self.write(&rel, &run.manifest())
            .parent()
            .unwrap()
            .to_path_buf()
    }
}

/// Three runs of `golf`: two trained ones differing in `train.lr`, and one with another
/// `classes.spacing` that stopped after the classes stage.
pub const GOLF_LR_1E3: FakeRun = FakeRun {
    name: "golf",
    id: "a1b2c3d4e5f6",
    lr: 1e-3,
    spacing: 0.5,
    metrics: Some(FakeMetrics {
        km_mean: 18.912345,
        km_median: 10.4,
        acc_25km: 0.8666666666666667,
        acc: 0.52,
        best_val_km: 17.25,
        best_epoch: 7,
    }),
    geoexp: "0.1.0",
};
pub const GOLF_LR_3E4: FakeRun = FakeRun {
    name: "golf",
    id: "a1f0e9d8c7b6",
    lr: 3e-4,
    spacing: 0.5,
    metrics: Some(FakeMetrics {
        km_mean: 25.5,
        km_median: 14.25,
        acc_25km: 0.78,
        acc: 0.52,
        best_val_km: 24.0,
        best_epoch: 5,
    }),
    geoexp: "0.1.0",
};
pub const GOLF_UNTRAINED: FakeRun = FakeRun {
    name: "golf",
    id: "c0ffee000001",
    lr: 1e-3,
    spacing: 0.3,
    metrics: None,
    geoexp: "0.1.0",
};

/// A test folder with the three [`GOLF_LR_1E3`], [`GOLF_LR_3E4`], [`GOLF_UNTRAINED`] runs
/// under `runs/`, plus a cache entry and a sweep record that are not runs.
pub fn golf_runs() -> TestEnv {
    let env = TestEnv::new();
    for run in [GOLF_LR_1E3, GOLF_LR_3E4, GOLF_UNTRAINED] {
        env.fake_run(&run);
    }
    env.write("runs/.cache/classes/x/record.toml", "not a run\n");
    env.write("runs/sweeps/s1/manifest.toml", "not a run either\n");
    env
}

/// Trains a tiny model on a real-layout synthetic dataset at `data/d` (60 locations, 16 px
/// views): experiment `t`, `extra_model` appended to its `[model]` table. Returns the run
/// folder; its `predictions.csv` is the evaluate stage's answer on the test split.
pub fn train_tiny(env: &TestEnv, extra_model: &str) -> PathBuf {
    write_tiny(env, extra_model, "");
    env.run(&["run", "exp.toml"]).expect(0);
    env.run_dir("t")
}

/// Writes [`train_tiny`]'s experiment as `exp.toml` (and its dataset, once), with
/// `extra_model` and `extra_train` appended to its `[model]` and `[train]` tables.
pub fn write_tiny(env: &TestEnv, extra_model: &str, extra_train: &str) {
    if !env.path().join("data/d").is_dir() {
        env.synth("d", 60, 4);
    }
    env.write(
        "exp.toml",
        &format!(
            "name = \"t\"\nseed = 2\n[dataset]\ndirs = [\"data/d\"]\n[classes]\nspacing = 0.7\n\
             [model]\nbackbone = \"tiny-cnn\"\n{extra_model}\n\
             [train]\nimage_size = 16\nbatch_size = 8\nepochs = 2\nlr = 3e-3\ndevice = \"cpu\"\n\
             {extra_train}"
        ),
    );
}

/// `geoexp predict MODEL --images IMAGES EXTRA...`.
pub fn predict(env: &TestEnv, model: &str, images: &str, extra: &[&str]) -> Run {
    let mut args = vec!["predict", model, "--images", images];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// Checks `got` holds the evaluate stage's prediction for every test location of the run
/// in `run_dir`.
pub fn assert_matches_evaluate(
    run_dir: &Path,
    got: &std::collections::BTreeMap<String, (f64, f64)>,
) {
    let evaluated = csv_rows(&run_dir.join("predictions.csv"));
    assert!(!evaluated.is_empty());
    for row in evaluated {
        let (lat, lon) = got[&row["uuid"]];
        let want: (f64, f64) = (
            row["pred_lat"].parse().unwrap(),
            row["pred_lon"].parse().unwrap(),
        );
        // Batches of another size may round the last float bits differently.
        assert!(
            (lat - want.0).abs() < 1e-6 && (lon - want.1).abs() < 1e-6,
            "{}: predict {lat},{lon} vs evaluate {want:?}",
            row["uuid"]
        );
    }
}

/// Rows of a CSV file as maps from column name to value.
pub fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// `uuid → (lat, lon)` of a `geoexp predict` CSV.
pub fn predicted(path: &Path) -> std::collections::BTreeMap<String, (f64, f64)> {
    csv_rows(path)
        .into_iter()
        .map(|r| {
            let at = (
                r["latitude"].parse().unwrap(),
                r["longitude"].parse().unwrap(),
            );
            (r["uuid"].clone(), at)
        })
        .collect()
}
