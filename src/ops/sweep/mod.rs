//! `geoexp sweep`: expand a sweep into trials, run them (here or on Slurm), record them.
//!
//! - this file: expansion into [`SweepPlan`] (every trial loaded and validated before
//!   anything runs; a random search's draws), running one trial ([`run_trial`], paused at
//!   an epoch for successive halving), and the dry run's stage counts;
//! - [`record`]: the sweep folder `runs/sweeps/<id>/` — `trials.jsonl`, one status file per
//!   trial, `sweep.toml`, `summary.csv`, the heatmap;
//! - [`local`]: trials one after another in this process, or `--jobs N` child processes;
//! - `halving`: successive halving's rungs and promotions, run by `local` and `slurm`;
//! - [`slurm`]: an `sbatch --array` script whose tasks run `geoexp sweep --trial` (with
//!   halving, one array per rung, each followed by a job that closes the rung).
//!
//! Trials share stages through the cache like any two runs do: its per-key locks make two
//! trials that need the same stage at once compute it once. A trial's id is the hash of
//! its resolved config, and the sweep's id the hash of its trial ids, so expanding the
//! same sweep twice lands in the same folder and re-running it only runs what is missing.

mod halving;
pub use halving::monitor_history;
pub mod local;
pub mod record;
pub mod slurm;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::experiment::sweep::{Method, Point, Sweep, SweepProblem};
use crate::experiment::{ConfigError, ConfigErrors, LoadOptions, Loaded, MonitorMode, Origin};
use crate::graph::lock::KeyLock;
use crate::graph::{CollectingReporter, GraphError, Lookup, Manifest, Reporter, digest_value};
use crate::stages;

use super::run::{RunOptions, run_prepared};
use super::{OpError, Prepared, SWEEPS_DIR, plain_value as show_value};
use record::{TrialRecord, TrialState};

/// The most trials a sweep may make unless `--max-trials` says otherwise: far more than
/// anyone runs by hand, few enough that expanding and validating them all takes seconds.
pub const DEFAULT_MAX_TRIALS: u64 = 10_000;

/// What to expand.
#[derive(Clone, Debug, Default)]
pub struct SweepOptions {
    /// The experiment (its `[sweep]` table) and `--set` overrides applied to every trial.
    pub experiment: LoadOptions,
    /// `--grid key=v1,v2,...` flags, adding or replacing axes.
    pub grid: Vec<String>,
    /// `--seeds N`, replacing the table's `seeds`.
    pub seeds: Option<u64>,
    /// The most trials a sweep may make (`--max-trials`; [`DEFAULT_MAX_TRIALS`]).
    pub max_trials: u64,
    /// The runs directory.
    pub runs_dir: PathBuf,
}

/// One trial, as written to `trials.jsonl` and read back by `geoexp sweep --trial`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialSpec {
    /// Position in the sweep, from 0 (the Slurm array index).
    pub index: usize,
    /// Hash of the trial's resolved config.
    pub id: String,
    /// The swept values, by key path.
    pub values: BTreeMap<String, Value>,
    /// The experiment file, absolute, so a task started elsewhere finds it.
    pub experiment: PathBuf,
    /// `--set` flags given to the sweep.
    pub sets: Vec<String>,
}

impl TrialSpec {
    /// What to load to get this trial's experiment.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            file: self.experiment.clone(),
            sets: self.sets.clone(),
            env: None,
            trial: self
                .values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// `key=value` pairs in the sweep's key order, for people.
    pub fn label(&self, keys: &[String]) -> String {
        keys.iter()
            .filter_map(|k| self.values.get(k).map(|v| format!("{k}={}", show_value(v))))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// An expanded sweep.
#[derive(Clone, Debug)]
pub struct SweepPlan {
    /// Hash of the experiment name and trial ids.
    pub id: String,
    /// The experiment's name.
    pub name: String,
    /// `runs/sweeps/<id>/`.
    pub dir: PathBuf,
    /// The runs directory.
    pub runs_dir: PathBuf,
    /// The definition after `--grid` and `--seeds`.
    pub definition: Sweep,
    /// The metric trials are ranked by (`train.monitor`), as the train stage reports it.
    pub monitor: String,
    /// Whether larger is better for it.
    pub monitor_max: bool,
    /// `train.monitor` itself, as each epoch's metrics name it (successive halving's rungs
    /// compare it).
    pub monitor_key: String,
    /// `train.epochs` (the last rung of successive halving).
    pub epochs: u32,
    /// The trials, in expansion order.
    pub trials: Vec<TrialSpec>,
    /// How a random search drew its points (not kept in the sweep record).
    pub draws: Option<Draws>,
}

/// How a random search drew its points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draws {
    /// Points drawn (`sweep.trials`).
    pub trials: u64,
    /// The sampling seed (`sweep.seed`).
    pub seed: u64,
    /// Candidates dropped as equal to an earlier one.
    pub duplicates: u64,
    /// Candidates dropped by `exclude`.
    pub excluded: u64,
}

impl SweepPlan {
    /// The sweep's keys in display order.
    pub fn keys(&self) -> Vec<String> {
        self.definition.keys()
    }
}

/// Expands a sweep and loads and validates every trial; nothing runs.
///
/// # Errors
/// Config errors of the base experiment, of `--grid` flags, or of any trial (each named
/// by its index and values), and a sweep with no axes.
pub fn expand(options: &SweepOptions) -> Result<SweepPlan, OpError> {
    let base = crate::experiment::load(&options.experiment)?;
    let in_table = |problems| base.sweep_errors(problems);
    let mut definition = Sweep::from_table(&base.experiment.sweep).map_err(in_table)?;
    let mut problems = Vec::new();
    for raw in &options.grid {
        if let Err(p) = definition.apply_grid(raw) {
            problems.push(ConfigError::invalid(
                Origin::Grid(raw.clone()),
                &p.key,
                p.message,
            ));
        }
    }
    if let Some(n) = options.seeds {
        definition.seeds = n.max(1);
    }
    if !problems.is_empty() {
        return Err(ConfigErrors(problems).into());
    }
    if definition.is_empty() {
        return Err(OpError::Usage(format!(
            "{}: nothing to sweep: add a [sweep] table (e.g. \"train.lr\" = [1e-3, 3e-4]) or --grid KEY=V1,V2",
            crate::experiment::error::display_path(&options.experiment.file)
        )));
    }
    let expansion = definition
        .expand(base.experiment.seed, options.max_trials)
        .map_err(in_table)?;
    let draws = (definition.method == Method::Random).then(|| Draws {
        trials: definition.trials.unwrap_or(0),
        seed: definition.seed.unwrap_or(0),
        duplicates: expansion.duplicates,
        excluded: expansion.excluded,
    });
    let points = expansion.points;
    if let Some(h) = definition.early_stop {
        let epochs = base.experiment.train.epochs;
        let mut problems = Vec::new();
        if h.min_epochs > epochs {
            problems.push(SweepProblem {
                key: "sweep.early_stop".into(),
                message: format!(
                    "min_epochs = {} is more than train.epochs = {epochs}: no trial could stop early",
                    h.min_epochs
                ),
            });
        }
        if definition.axes.iter().any(|a| a.key == "train.epochs") {
            problems.push(SweepProblem {
                key: "sweep.early_stop".into(),
                message: "the rungs need one train.epochs for every trial; it cannot be an axis \
                          too"
                .into(),
            });
        }
        if !problems.is_empty() {
            return Err(in_table(problems).into());
        }
    }
    let experiment = options
        .experiment
        .file
        .canonicalize()
        .unwrap_or_else(|_| options.experiment.file.clone());
    let loaded = load_trials(&options.experiment, &points)?;
    let mut trials = Vec::with_capacity(points.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, (point, loaded)) in points.iter().zip(&loaded).enumerate() {
        let id = trial_id(loaded);
        if let Some(first) = seen.insert(id.clone(), index) {
            return Err(OpError::Usage(format!(
                "trials {first} and {index} resolve to the same configuration ({id}); \
                 a swept value changes nothing"
            )));
        }
        trials.push(TrialSpec {
            index,
            id,
            values: point.iter().cloned().collect(),
            experiment: experiment.clone(),
            sets: options.experiment.sets.clone(),
        });
    }
    let t = &base.experiment.train;
    let monitor_max = match t.monitor_mode {
        MonitorMode::Auto => crate::vocab::monitor_mode_max(&t.monitor),
        MonitorMode::Max => true,
        MonitorMode::Min => false,
    };
    let ids: Vec<&String> = trials.iter().map(|t| &t.id).collect();
    let id = digest_value(&json!({ "name": base.experiment.name, "trials": ids }))[..12].to_owned();
    Ok(SweepPlan {
        dir: options.runs_dir.join(SWEEPS_DIR).join(&id),
        id,
        name: base.experiment.name.clone(),
        runs_dir: options.runs_dir.clone(),
        definition,
        monitor: format!("best_{}", t.monitor),
        monitor_max,
        monitor_key: t.monitor.clone(),
        epochs: t.epochs,
        trials,
        draws,
    })
}

/// Loads every trial, in parallel; all problems of all trials are reported together.
fn load_trials(base: &LoadOptions, points: &[Point]) -> Result<Vec<Loaded>, OpError> {
    use rayon::prelude::*;
    let results: Vec<Result<Loaded, ConfigErrors>> = points
        .par_iter()
        .map(|point| {
            crate::experiment::load(&LoadOptions {
                trial: point.clone(),
                ..base.clone()
            })
        })
        .collect();
    let mut loaded = Vec::with_capacity(results.len());
    let mut invalid = Vec::new();
    for (index, (result, point)) in results.into_iter().zip(points).enumerate() {
        match result {
            Ok(l) => loaded.push(l),
            Err(errors) => {
                let values: Vec<String> = point
                    .iter()
                    .map(|(k, v)| format!("{k}={}", show_value(v)))
                    .collect();
                invalid.push(record::InvalidTrial {
                    index,
                    values: values.join(" "),
                    errors,
                });
            }
        }
    }
    if invalid.is_empty() {
        Ok(loaded)
    } else {
        Err(OpError::InvalidTrials(invalid))
    }
}

/// A trial's id: the hash of its resolved config.
pub fn trial_id(loaded: &Loaded) -> String {
    digest_value(&loaded.config())[..12].to_owned()
}

/// What happened to a trial this time.
#[derive(Clone, Debug)]
pub enum TrialOutcome {
    /// It ran (or found everything cached) and recorded its run.
    Ran(TrialRecord),
    /// It had finished before; nothing was done.
    AlreadyDone(TrialRecord),
    /// It failed; the record holds the error.
    Failed(TrialRecord),
    /// It trained to the epoch budget it was given (a rung of successive halving), and
    /// paused there.
    Paused(TrialRecord),
}

impl TrialOutcome {
    /// The trial's record.
    pub fn record(&self) -> &TrialRecord {
        match self {
            TrialOutcome::Ran(r)
            | TrialOutcome::AlreadyDone(r)
            | TrialOutcome::Failed(r)
            | TrialOutcome::Paused(r) => r,
        }
    }
}

/// Runs one trial under its lock and records the result in its status file. A trial that
/// another process is running is waited for; one already finished is not run again. With
/// `stop_after`, training pauses after that epoch ([`TrialOutcome::Paused`]).
///
/// # Errors
/// Only when the sweep folder cannot be written; the trial's own failure is an
/// [`TrialOutcome::Failed`].
pub fn run_trial(
    sweep_dir: &Path,
    runs_dir: &Path,
    trial: &TrialSpec,
    stop_after: Option<u32>,
    reporter: &dyn Reporter,
) -> Result<TrialOutcome, OpError> {
    let _lock = KeyLock::acquire(&record::lock_path(sweep_dir, &trial.id), |owner| {
        reporter.say(&format!(
            "trial {} ({}) is being run by {owner}; waiting",
            trial.index, trial.id
        ));
    })?;
    if let Some(done) = record::read_trial(sweep_dir, &trial.id)
        .filter(|r| r.state == TrialState::Ok && r.manifest_exists(runs_dir))
    {
        return Ok(TrialOutcome::AlreadyDone(done));
    }
    let mut rec = TrialRecord::started(trial);
    rec.write(sweep_dir)?;
    let budget = crate::stages::Budget {
        train_epochs: stop_after,
    };
    let result = (|| {
        let prepared = Prepared::with_budget(&trial.load_options(), runs_dir, budget)?;
        let id = trial_id(&prepared.loaded);
        if id != trial.id {
            return Err(OpError::Usage(format!(
                "trial {} now resolves to {id}, not {}: the experiment file, its `extends` chain \
                 or GEOEXP_* variables changed since the sweep was expanded; run `geoexp sweep` again",
                trial.index, trial.id
            )));
        }
        let options = RunOptions {
            experiment: trial.load_options(),
            runs_dir: runs_dir.to_path_buf(),
            until: None,
            force: Vec::new(),
            command: std::env::args().collect(),
            budget,
        };
        run_prepared(&prepared, &options, reporter)
    })();
    match result {
        Err(OpError::Graph(GraphError::Paused { .. })) => {
            rec.finish_paused(stop_after.unwrap_or_default());
            rec.write(sweep_dir)?;
            Ok(TrialOutcome::Paused(rec))
        }
        Ok(report) => {
            rec.finish_ok(&report.run_dir, runs_dir, &report.manifest);
            rec.write(sweep_dir)?;
            Ok(TrialOutcome::Ran(rec))
        }
        Err(err) => {
            rec.finish_failed(&crate::graph::error_chain(&err));
            rec.write(sweep_dir)?;
            Ok(TrialOutcome::Failed(rec))
        }
    }
}

/// The numeric final metrics of a run (see [`super::is_final_metric`]).
pub fn run_metrics(manifest: &Manifest) -> BTreeMap<String, f64> {
    let results = |name: &str| manifest.stages.get(name).map(|s| s.results.clone());
    super::final_metrics(
        results(stages::evaluate::NAME),
        results(stages::train::NAME),
    )
    .into_iter()
    .filter_map(|(k, v)| Some((k, v.as_f64()?)))
    .collect()
}

/// Per trial, its stages and whether each is cached; per stage, how many distinct entries
/// the sweep needs and how many of those must be computed.
#[derive(Debug)]
pub struct DryRun {
    /// One row per trial.
    pub trials: Vec<DryRunTrial>,
    /// Stage name → (distinct entries needed, of which not cached), in graph order.
    pub stages: Vec<(String, usize, usize)>,
}

/// One trial in a dry run.
#[derive(Debug)]
pub struct DryRunTrial {
    /// The trial.
    pub spec: TrialSpec,
    /// Its state in the sweep record.
    pub state: TrialState,
    /// Stage name and whether it is cached.
    pub stages: Vec<(String, bool)>,
}

/// Resolves every trial's stage keys against the cache without running anything.
///
/// # Errors
/// Build and input-listing errors.
pub fn dry_run(plan: &SweepPlan) -> Result<DryRun, OpError> {
    let mut order: Vec<String> = Vec::new();
    let mut needed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut trials = Vec::new();
    let silent = CollectingReporter::default();
    for spec in &plan.trials {
        let prepared = Prepared::new(&spec.load_options(), &plan.runs_dir)?;
        let resolved = prepared.resolve(&silent)?;
        let mut stages = Vec::new();
        for r in &resolved {
            let name = r.stage.name().to_owned();
            if !order.contains(&name) {
                order.push(name.clone());
            }
            let cached = matches!(prepared.store.lookup(&name, &r.key), Lookup::Found(_));
            needed
                .entry(name.clone())
                .or_default()
                .insert(r.key.as_str().to_owned());
            if !cached {
                missing
                    .entry(name.clone())
                    .or_default()
                    .insert(r.key.as_str().to_owned());
            }
            stages.push((name, cached));
        }
        trials.push(DryRunTrial {
            state: record::state_of(&plan.dir, &plan.runs_dir, &spec.id),
            spec: spec.clone(),
            stages,
        });
    }
    let stages = order
        .into_iter()
        .map(|name| {
            let n = needed.get(&name).map_or(0, BTreeSet::len);
            let m = missing.get(&name).map_or(0, BTreeSet::len);
            (name, n, m)
        })
        .collect();
    Ok(DryRun { trials, stages })
}

/// Finds a sweep folder from an id, an id prefix, or a path.
///
/// # Errors
/// When nothing or more than one sweep matches.
pub fn find_sweep(runs_dir: &Path, what: &str) -> Result<PathBuf, OpError> {
    let as_path = Path::new(what);
    if as_path.join(record::TRIALS_FILE).is_file() {
        return Ok(as_path.to_path_buf());
    }
    let root = runs_dir.join(SWEEPS_DIR);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(what))
                .map(|e| e.path())
                .filter(|p| p.join(record::TRIALS_FILE).is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(OpError::Usage(format!(
            "no sweep `{what}` under {}",
            root.display()
        ))),
        _ => Err(OpError::Usage(format!(
            "`{what}` matches several sweeps: {}",
            found
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
