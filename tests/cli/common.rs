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
