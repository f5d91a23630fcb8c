//! What each command does, as library functions the CLI calls with plain options.
//!
//! - [`run`]: load, build, resolve, execute, write the manifest.
//! - [`plan`]: load, build, resolve, and say what would run and why.
//! - [`sweep`]: expand a sweep into trials; run them here or on Slurm; record them.
//! - [`synth`]: write a synthetic dataset in the real layout.
//! - [`ls`]: a table of the runs under a folder, from their manifests.
//! - [`diff`]: what differs between two runs, from their manifests.
//! - [`predict`]: a checkpoint over a directory of view folders → `uuid,latitude,longitude`.
//! - [`verify`]: a run's cache entries against its manifest; a stage recomputed and compared.
//! - [`gc`]: what the cache holds (`cache`), and removing what no run needs (`gc`).
//!
//! Nothing here prints: progress and stage events go to a [`crate::graph::Reporter`].

pub mod diff;
pub mod gc;
pub mod ls;
pub mod plan;
pub mod predict;
pub mod run;
pub mod sweep;
pub mod synth;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::experiment::{ConfigErrors, LoadOptions, Loaded, load};
use crate::graph::{
    Fingerprinter, Graph, GraphError, Reporter, Resolved, Store, digest_value, resolve,
};
use crate::stages::{Budget, BuildError, build_with};

/// The cache folder inside the runs directory.
pub const CACHE_DIR: &str = ".cache";
/// The folder of sweep records inside the runs directory (not runs themselves).
pub const SWEEPS_DIR: &str = "sweeps";

/// The metrics `ls` shows by default, after the train stage's `best_<monitor>`: the test
/// error of the best checkpoint, which is what runs are compared by.
pub const DEFAULT_METRICS: [&str; 4] = [
    "test/haversine_km_mean",
    "test/haversine_km_median",
    "test/acc_25km",
    "test/acc",
];

/// Whether a stage result is one of a run's *final metrics*, which `ls` and `diff` show:
/// every result of the evaluate stage (the best checkpoint scored on the test split), and
/// the train stage's `best_*` results (the monitored value at the best epoch, and that
/// epoch) unless evaluate reports the same name (`best_epoch`), as `evaluate_has` says.
pub fn is_final_metric(stage: &str, key: &str, evaluate_has: impl Fn(&str) -> bool) -> bool {
    use crate::stages::{evaluate, train};
    stage == evaluate::NAME
        || (stage == train::NAME && key.starts_with("best_") && !evaluate_has(key))
}

/// A run's final metrics (see [`is_final_metric`]) from its evaluate and train results.
pub fn final_metrics(
    evaluate: Option<BTreeMap<String, Value>>,
    train: Option<BTreeMap<String, Value>>,
) -> BTreeMap<String, Value> {
    let mut out = evaluate.unwrap_or_default();
    for (k, v) in train.into_iter().flatten() {
        if k.starts_with("best_") && !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    out
}

/// A config value as someone typed it: strings bare, numbers round-trip, arrays as JSON.
pub fn plain_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The experiment configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The graph could not be built (boundary, CRS).
    #[error(transparent)]
    Build(Box<BuildError>),
    /// A stage failed, or the cache could not be used.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A command-line argument names something that does not exist.
    #[error("{0}")]
    Usage(String),
    /// A dataset could not be generated or read.
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    /// A boundary could not be loaded.
    #[error(transparent)]
    Geo(#[from] crate::geo::GeoError),
    /// Some sweep trials do not load; all of them are listed.
    #[error("{}", invalid_trials(.0))]
    InvalidTrials(Vec<sweep::record::InvalidTrial>),
    /// Slurm could not be asked to run a sweep.
    #[error(transparent)]
    Slurm(#[from] sweep::slurm::SlurmError),
}

fn invalid_trials(trials: &[sweep::record::InvalidTrial]) -> String {
    let mut out = format!(
        "{} of the sweep's trials are invalid; nothing was run:",
        trials.len()
    );
    for t in trials {
        out.push_str(&format!(
            "\n  trial {} ({}): {}",
            t.index, t.values, t.errors
        ));
    }
    out
}

impl From<BuildError> for OpError {
    fn from(e: BuildError) -> Self {
        OpError::Build(Box::new(e))
    }
}

impl OpError {
    /// Whether the error is a failure of the work itself — a stage failed, or the machine
    /// did (a full disk, an I/O error while writing the cache or a run folder) — rather
    /// than of the request (configuration, arguments, inputs that cannot be read); the CLI
    /// maps this to exit status 1, the request's errors to 2.
    pub fn is_stage_failure(&self) -> bool {
        matches!(
            self,
            OpError::Graph(
                GraphError::Stage { .. }
                    | GraphError::Panic { .. }
                    | GraphError::Io { .. }
                    | GraphError::Encode { .. }
            )
        )
    }
}

/// The message of a graph error caused by a bad argument, without the "invalid run graph" prefix.
fn usage(e: GraphError) -> String {
    match e {
        GraphError::Graph(message) => message,
        other => other.to_string(),
    }
}

/// An experiment ready to plan or run: loaded, built, and its whole graph resolved.
pub struct Prepared {
    /// The loaded experiment.
    pub loaded: Loaded,
    /// Its run graph.
    pub graph: Graph,
    /// The cache.
    pub store: Store,
    /// The runs directory.
    pub runs_dir: PathBuf,
}

impl Prepared {
    /// Loads and builds an experiment against the runs directory `runs_dir`.
    ///
    /// # Errors
    /// Config and build errors.
    pub fn new(experiment: &LoadOptions, runs_dir: &Path) -> Result<Prepared, OpError> {
        Self::with_budget(experiment, runs_dir, Budget::default())
    }

    /// [`Prepared::new`], with the stages held to `budget`.
    ///
    /// # Errors
    /// Config and build errors.
    pub fn with_budget(
        experiment: &LoadOptions,
        runs_dir: &Path,
        budget: Budget,
    ) -> Result<Prepared, OpError> {
        let loaded = load(experiment)?;
        let graph = build_with(&loaded, budget)?;
        Ok(Prepared {
            loaded,
            graph,
            store: Store::new(runs_dir.join(CACHE_DIR)),
            runs_dir: runs_dir.to_path_buf(),
        })
    }

    /// Resolves every stage's key (fingerprinting inputs).
    ///
    /// # Errors
    /// When inputs cannot be listed or read.
    pub fn resolve(&self, reporter: &dyn Reporter) -> Result<Vec<Resolved<'_>>, OpError> {
        let fingerprinter = Fingerprinter::with_memo(self.store.memo_path());
        Ok(resolve(
            &self.graph,
            &self.graph.names(),
            &fingerprinter,
            reporter,
        )?)
    }

    /// The stages `--until` selects (all when `None`).
    ///
    /// # Errors
    /// When `until` names no stage.
    pub fn selection(&self, until: Option<&str>) -> Result<Vec<&'static str>, OpError> {
        match until {
            None => Ok(self.graph.names()),
            Some(name) => self
                .graph
                .until(name)
                .map_err(|e| OpError::Usage(format!("--until {name}: {}", usage(e)))),
        }
    }

    /// The stages `--force` names, with everything downstream of them.
    ///
    /// # Errors
    /// When a name is not a stage.
    pub fn forced(
        &self,
        force: &[String],
    ) -> Result<std::collections::BTreeSet<&'static str>, OpError> {
        let mut out = std::collections::BTreeSet::new();
        for name in force {
            let down = self
                .graph
                .downstream(name)
                .map_err(|e| OpError::Usage(format!("--force {name}: {}", usage(e))))?;
            out.extend(down);
        }
        Ok(out)
    }

    /// The run id: a hash of the resolved config and every stage's input fingerprints, so
    /// the same experiment on changed data is a new run.
    pub fn run_id(&self, resolved: &[Resolved<'_>]) -> String {
        let inputs: BTreeMap<&str, Value> = resolved
            .iter()
            .map(|r| {
                let fps: BTreeMap<&String, &String> = r
                    .material
                    .inputs
                    .iter()
                    .map(|(k, v)| (k, &v.digest))
                    .collect();
                (r.stage.name(), json!(fps))
            })
            .collect();
        let digest = digest_value(&json!({ "config": self.loaded.config(), "inputs": inputs }));
        digest[..12].to_owned()
    }

    /// Where a run's manifest goes.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.runs_dir
            .join(&self.loaded.experiment.name)
            .join(run_id)
    }
}
