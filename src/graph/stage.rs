//! The `Stage` trait: the only thing the engine knows about the work it schedules.
//!
//! A stage declares everything that determines its output — the config values it reads
//! ([`Params`]), the files or digests it reads ([`Input`]) and the stages whose outputs it
//! reads — and a `run` function that writes into a fresh, empty directory. The engine turns
//! those declarations into a content-addressed key; anything a stage reads that it does not
//! declare would make the cache lie, so stages read configuration only from their own
//! params.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::events::{Progress, Tick};

/// Config values a stage reads, by key path (`classes.spacing`), in canonical order.
pub type Params = BTreeMap<String, Value>;

/// Flattens a serializable params struct into dotted key paths: a field renamed
/// `"dataset.split"` holding `{train, val, test}` becomes `dataset.split.train`, ... so
/// `plan` names the exact value that changed. Unset options (`null`) are left out.
pub fn params_of<T: serde::Serialize>(params: &T) -> Params {
    serde_json::to_value(params)
        .map(key_paths)
        .unwrap_or_default()
}

/// Flattens nested tables into dotted key paths (`{"train": {"lr": 1e-3}}` becomes
/// `train.lr = 1e-3`), the one spelling of a config value that stage params, `plan`, `ls`
/// and `diff` share. Arrays are values, not tables; unset options (`null`) and empty tables
/// are left out.
pub fn key_paths(value: Value) -> Params {
    fn flatten(prefix: &str, value: Value, out: &mut Params) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            Value::Null => {}
            other => {
                out.insert(prefix.to_owned(), other);
            }
        }
    }
    let mut out = Params::new();
    flatten("", value, &mut out);
    out
}

/// Whatever a stage returns as its error; the engine wraps it with the stage name.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Something a stage reads besides config values and upstream outputs.
#[derive(Clone, Debug)]
pub enum Input {
    /// Files under `root`, fingerprinted by content; `files` are relative to `root`.
    ///
    /// `root` itself is not part of the key (only `label` is), so a dataset that moves
    /// keeps its cache entries.
    Files {
        /// Stable name of this input in keys, records and `plan` output.
        label: String,
        /// Directory the files are relative to.
        root: PathBuf,
        /// Files to fingerprint, relative to `root`.
        files: Vec<PathBuf>,
    },
    /// A digest the stage computed itself, for something that is not a file (embedded data).
    Digest {
        /// Stable name of this input in keys, records and `plan` output.
        label: String,
        /// Hex digest of the content.
        digest: String,
    },
}

impl Input {
    /// The input's label.
    pub fn label(&self) -> &str {
        match self {
            Input::Files { label, .. } | Input::Digest { label, .. } => label,
        }
    }
}

/// What a finished stage reports besides its files.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Named results (`locations = 1500`, `classes = 55`): what follows from the stage's
    /// key alone. Recorded in the cache entry and copied into every manifest.
    pub results: BTreeMap<String, Value>,
    /// Facts of this attempt (`device`, epochs run after a resume): recorded in the cache
    /// entry's `created` table and in `execution.toml`, never in a manifest.
    pub facts: BTreeMap<String, Value>,
}

impl Outcome {
    /// Adds a named result.
    pub fn with(mut self, name: &str, value: impl ResultValue) -> Self {
        self.results.insert(name.to_owned(), value.into_value());
        self
    }

    /// Adds a fact of this attempt (see [`Outcome::facts`]).
    pub fn fact(mut self, name: &str, value: impl ResultValue) -> Self {
        self.facts.insert(name.to_owned(), value.into_value());
        self
    }
}

/// A value a stage reports. A non-finite float becomes the string `NaN`, `inf` or
/// `-inf`: JSON has no number for it (serde_json would make it null), and a record or
/// manifest must always be writable, whatever a diverging training measured.
pub trait ResultValue {
    /// The value as records and manifests hold it.
    fn into_value(self) -> Value;
}

impl ResultValue for f64 {
    fn into_value(self) -> Value {
        if self.is_finite() {
            Value::from(self)
        } else if self.is_nan() {
            Value::from("NaN")
        } else if self > 0.0 {
            Value::from("inf")
        } else {
            Value::from("-inf")
        }
    }
}

macro_rules! result_value_from {
    ($($t:ty),*) => {$(
        impl ResultValue for $t {
            fn into_value(self) -> Value {
                Value::from(self)
            }
        }
    )*};
}

result_value_from!(u32, u64, usize, i32, i64, bool, String, &str, Value);

/// A unit of cached work in the run graph.
///
/// # The manifest contract
///
/// A run's `manifest.toml` must be the same bytes for the same experiment on the same
/// inputs with the same code: on two machines, in two runs directories, cold, cached, or
/// killed and resumed. A stage keeps its part of that promise by
///
/// - reporting as [`Outcome::results`] only what follows from its key (counts, metrics),
///   and everything about *this attempt* (device, epochs run since a resume, timings) as
///   [`Outcome::facts`], which go to `execution.toml`;
/// - writing outputs whose bytes follow from its key alone (no time, host, pid or
///   random file name inside them, nor in a checkpoint's metadata), except
/// - outputs that are volatile by nature (TensorBoard event files carry wall times, and
///   TensorBoard needs them), which it names in [`Stage::volatile_outputs`]. The cache
///   entry's record hashes every output; a manifest lists volatile outputs by name only,
///   and `geoexp verify` checks their size, not their hash.
///
/// Bookkeeping that only a resume needs (an event file's length) belongs in the stage's
/// work directory, not in an output. `geoexp verify --recompute STAGE` and the
/// byte-identity tests (`tests/cli/run.rs`, `tests/cli/train.rs`) hold every stage to this.
pub trait Stage: Send + Sync {
    /// Stage name: also the cache folder name and the `--until`/`--force` argument.
    fn name(&self) -> &'static str;
    /// Implementation version; bump it when the code changes what the stage produces.
    fn version(&self) -> u32;
    /// Names of the stages whose outputs this one reads.
    fn upstream(&self) -> Vec<&'static str>;
    /// Exactly the config values this stage reads.
    fn params(&self) -> Params;
    /// Files and digests this stage reads. May list directories, so it can fail.
    fn inputs(&self) -> Result<Vec<Input>, StageError>;
    /// Does the work, writing every output under `ctx.out_dir()`.
    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError>;
    /// Top-level outputs whose bytes depend on when or where the stage ran (see the
    /// manifest contract above); every other output must be deterministic.
    fn volatile_outputs(&self) -> &'static [&'static str] {
        &[]
    }
}

/// What a stage returns, boxed as its error, when it stops short on purpose: at a budget
/// its caller set (a training asked to stop after some epoch). Its work directory is kept,
/// as after a failure, so the next attempt at the same key continues it; the executor
/// reports it as paused, not failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct Paused {
    /// Where it stopped, e.g. `after epoch 2 of 8`.
    pub what: String,
}

/// What a running stage gets from the engine.
pub struct StageContext<'a> {
    pub(crate) out_dir: PathBuf,
    pub(crate) upstream: BTreeMap<String, PathBuf>,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) stage: &'static str,
    pub(crate) work_dir: Option<PathBuf>,
    pub(crate) key: Option<super::key::StageKey>,
}

impl<'a> StageContext<'a> {
    /// Builds a context by hand, for running a stage outside the executor (tests, tools).
    pub fn new(
        stage: &'static str,
        out_dir: PathBuf,
        upstream: BTreeMap<String, PathBuf>,
        progress: &'a dyn Progress,
    ) -> Self {
        StageContext {
            out_dir,
            upstream,
            progress,
            stage,
            work_dir: None,
            key: None,
        }
    }

    /// Tells the stage the key it runs under, for text people read in its outputs (a
    /// map's title). The key follows from the inputs, so such outputs stay deterministic.
    pub fn with_key(mut self, key: &super::key::StageKey) -> Self {
        self.key = Some(key.clone());
        self
    }

    /// `"<stage> <first 12 hex digits of the key>"`, or the stage name alone when the
    /// context was built without a key: how a map's title names what drew it.
    pub fn label(&self) -> String {
        match &self.key {
            Some(key) => format!("{} {}", self.stage, key.short()),
            None => self.stage.to_owned(),
        }
    }

    /// Gives the stage a directory that survives a crash of this attempt (see
    /// [`StageContext::work_dir`]).
    pub fn with_work_dir(mut self, dir: PathBuf) -> Self {
        self.work_dir = Some(dir);
        self
    }

    /// A directory, created on first use, that the next attempt at the same key finds as
    /// this one left it — for work worth resuming after a crash or kill (training). The
    /// engine removes it once the entry is committed. A context built by hand without
    /// one gets a `.work` folder beside the output directory.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn work_dir(&self) -> Result<PathBuf, StageError> {
        let dir = self
            .work_dir
            .clone()
            .unwrap_or_else(|| self.out_dir.with_extension("work"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("creating work directory {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// The fresh directory the stage writes into; it becomes the cache entry on success.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The completed cache entry of an upstream stage.
    ///
    /// # Errors
    /// When `name` was not declared in [`Stage::upstream`]: a bug in the stage.
    pub fn upstream_dir(&self, name: &str) -> Result<&Path, StageError> {
        self.upstream
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| {
                format!(
                    "stage `{}` read the output of `{name}` without declaring it upstream",
                    self.stage
                )
                .into()
            })
    }

    /// Reports one of the stage's own events (see [`Progress::stage_event`]).
    pub fn emit(&self, event: &dyn std::any::Any) {
        self.progress.stage_event(self.stage, event);
    }

    /// Starts a progress bar for a long step of this stage.
    pub fn progress(&self, label: &str, total: u64) -> Box<dyn Tick> {
        self.progress
            .start(&format!("{}: {label}", self.stage), total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_results_stay_writable_as_toml() {
        let outcome = Outcome::default()
            .with("loss", f64::NAN)
            .with("up", f64::INFINITY)
            .with("down", f64::NEG_INFINITY)
            .with("km", 12.5)
            .with("n", 3usize);
        let text = toml::to_string(&outcome.results).unwrap();
        assert_eq!(
            text,
            "down = \"-inf\"\nkm = 12.5\nloss = \"NaN\"\nn = 3\nup = \"inf\"\n"
        );
    }
}
