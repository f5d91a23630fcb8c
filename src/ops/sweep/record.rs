//! The sweep folder `runs/sweeps/<id>/`.
//!
//! - `trials.jsonl`: the expanded trials, one JSON object per line, written once; tasks
//!   started by `geoexp sweep --trial` (Slurm, `--jobs`) read their trial from it;
//! - `trials/<trial-id>.toml`: each trial's status, written (atomically) only by the
//!   process running that trial, so concurrent tasks never write the same file;
//!   `trials/<trial-id>.lock` is held while it runs;
//! - `sweep.toml`, `summary.csv` and `heatmap.png`: gathered from the above by whoever
//!   coordinates the sweep (the `sweep` command, or `sweep --status`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::experiment::ConfigErrors;
use crate::graph::lock::{live_holder, this_host};
use crate::graph::manifest::{MANIFEST_FILE, to_toml_string};
use crate::graph::{GraphError, Manifest, write_atomic};

use super::{SweepPlan, TrialSpec, run_metrics};
use crate::ops::plain_value as show_value;
use crate::track::heatmap::Heatmap;

/// The expanded trials.
pub const TRIALS_FILE: &str = "trials.jsonl";
/// The sweep record.
pub const SWEEP_FILE: &str = "sweep.toml";
/// One row per trial.
pub const SUMMARY_FILE: &str = "summary.csv";
/// The monitored metric over a two-axis grid.
pub const HEATMAP_FILE: &str = "heatmap.png";
/// Per-trial status files and locks.
pub const STATUS_DIR: &str = "trials";
/// Output of trials run as child processes (`--jobs`).
pub const LOGS_DIR: &str = "logs";

/// Where a trial stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Never started.
    Pending,
    /// Running now (its lock is held by a live process).
    Running,
    /// Started, but its process is gone (a crash, Ctrl-C, a killed task): it runs again and
    /// training resumes from its `last` checkpoint.
    Interrupted,
    /// Finished; its run has a manifest.
    Ok,
    /// Failed; the record holds the error.
    Failed,
    /// Trained to a rung of successive halving; the sweep decides whether it goes on.
    Paused,
    /// Not among the best at a rung of successive halving: it trains no further.
    Stopped,
}

impl fmt::Display for TrialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrialState::Pending => "pending",
            TrialState::Running => "running",
            TrialState::Interrupted => "interrupted",
            TrialState::Ok => "ok",
            TrialState::Failed => "failed",
            TrialState::Paused => "paused",
            TrialState::Stopped => "stopped",
        })
    }
}

/// A trial's status file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Position in the sweep.
    pub index: usize,
    /// Trial id.
    pub id: String,
    /// Where it stands (`running` in the file means "started"; see [`state_of`]).
    pub state: TrialState,
    /// The run folder relative to the runs directory (`golf/<run-id>`), once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Final metrics of the run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// The error of a failed trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Host that ran it.
    pub host: String,
    /// Process that ran it.
    pub pid: u32,
    /// When it started.
    pub started_at: String,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Wall time in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Successive halving: the epochs trained when it paused or stopped at a rung.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung_epochs: Option<u32>,
    /// Successive halving: `train.monitor` at that epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung_value: Option<f64>,
    #[serde(skip)]
    started: Option<std::time::Instant>,
}

impl TrialRecord {
    /// A record for a trial starting now in this process.
    pub fn started(trial: &TrialSpec) -> TrialRecord {
        TrialRecord {
            index: trial.index,
            id: trial.id.clone(),
            state: TrialState::Running,
            run: None,
            metrics: BTreeMap::new(),
            error: None,
            host: this_host(),
            pid: std::process::id(),
            started_at: crate::ops::run::now(),
            finished_at: None,
            duration_s: None,
            rung_epochs: None,
            rung_value: None,
            started: Some(std::time::Instant::now()),
        }
    }

    fn finish(&mut self, state: TrialState) {
        self.state = state;
        self.finished_at = Some(crate::ops::run::now());
        self.duration_s = self.started.map(|t| t.elapsed().as_secs_f64());
    }

    /// Marks the trial finished with its run.
    pub fn finish_ok(&mut self, run_dir: &Path, runs_dir: &Path, manifest: &Manifest) {
        self.run = Some(
            run_dir
                .strip_prefix(runs_dir)
                .unwrap_or(run_dir)
                .display()
                .to_string(),
        );
        self.metrics = run_metrics(manifest);
        self.error = None;
        self.finish(TrialState::Ok);
    }

    /// Marks the trial paused at a rung of `epochs`.
    pub fn finish_paused(&mut self, epochs: u32) {
        self.rung_epochs = Some(epochs);
        self.error = None;
        self.finish(TrialState::Paused);
    }

    /// Marks the trial failed.
    pub fn finish_failed(&mut self, error: &str) {
        self.error = Some(error.to_owned());
        self.finish(TrialState::Failed);
    }

    /// Whether the run it names still has its manifest.
    pub fn manifest_exists(&self, runs_dir: &Path) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| runs_dir.join(r).join(MANIFEST_FILE).is_file())
    }

    /// Writes the status file atomically.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn write(&self, sweep_dir: &Path) -> Result<(), GraphError> {
        let path = status_path(sweep_dir, &self.id);
        let text = toml::to_string(self).map_err(|e| GraphError::Encode {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes())
    }
}

/// A trial whose config does not load.
#[derive(Debug)]
pub struct InvalidTrial {
    /// Its index.
    pub index: usize,
    /// Its values, `key=value ...`.
    pub values: String,
    /// What is wrong.
    pub errors: ConfigErrors,
}

/// The lock held while a trial runs.
pub fn lock_path(sweep_dir: &Path, id: &str) -> PathBuf {
    sweep_dir.join(STATUS_DIR).join(format!("{id}.lock"))
}

fn status_path(sweep_dir: &Path, id: &str) -> PathBuf {
    sweep_dir.join(STATUS_DIR).join(format!("{id}.toml"))
}

/// A trial's status file, if it has one that parses.
pub fn read_trial(sweep_dir: &Path, id: &str) -> Option<TrialRecord> {
    let text = std::fs::read_to_string(status_path(sweep_dir, id)).ok()?;
    toml::from_str(&text).ok()
}

/// Where a trial stands: its status file, with "started" told apart into running (lock
/// held by a live process) and interrupted, and "ok" downgraded to pending when its run's
/// manifest is gone.
pub fn state_of(sweep_dir: &Path, runs_dir: &Path, id: &str) -> TrialState {
    match read_trial(sweep_dir, id) {
        None => TrialState::Pending,
        Some(r) => match r.state {
            TrialState::Running | TrialState::Interrupted => {
                if live_holder(&lock_path(sweep_dir, id)).is_some() {
                    TrialState::Running
                } else {
                    TrialState::Interrupted
                }
            }
            TrialState::Ok if !r.manifest_exists(runs_dir) => TrialState::Pending,
            other => other,
        },
    }
}

/// Writes `trials.jsonl` (and creates the folder) unless it already holds these trials.
///
/// # Errors
/// When the folder cannot be written.
pub fn write_trials(plan: &SweepPlan) -> Result<(), GraphError> {
    let path = plan.dir.join(TRIALS_FILE);
    let mut text = String::new();
    for t in &plan.trials {
        let line = serde_json::to_string(t).map_err(|e| GraphError::Encode {
            path: path.clone(),
            message: e.to_string(),
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    for dir in [STATUS_DIR, LOGS_DIR] {
        let dir = plan.dir.join(dir);
        std::fs::create_dir_all(&dir).map_err(GraphError::io("creating", &dir))?;
    }
    write_atomic(&path, text.as_bytes())
}

/// Reads `trials.jsonl`.
///
/// # Errors
/// When it is missing or a line does not parse (named by line number).
pub fn read_trials(sweep_dir: &Path) -> Result<Vec<TrialSpec>, GraphError> {
    let path = sweep_dir.join(TRIALS_FILE);
    let text = std::fs::read_to_string(&path).map_err(GraphError::io("reading", &path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| GraphError::Encode {
                path: path.clone(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// One trial in the gathered record.
#[derive(Clone, Debug)]
pub struct TrialRow {
    /// The trial.
    pub spec: TrialSpec,
    /// Where it stands.
    pub state: TrialState,
    /// Its status file, if any.
    pub record: Option<TrialRecord>,
}

impl TrialRow {
    /// The value of `metric`, if the trial has it.
    pub fn metric(&self, metric: &str) -> Option<f64> {
        self.record.as_ref()?.metrics.get(metric).copied()
    }

    /// How far it trained, for ranking: a finished trial all the way, one paused or stopped
    /// at a rung of successive halving that rung's epochs, any other not at all.
    pub fn depth(&self) -> u32 {
        match self.state {
            TrialState::Ok => u32::MAX,
            TrialState::Paused | TrialState::Stopped => self
                .record
                .as_ref()
                .and_then(|r| r.rung_epochs)
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// What it is ranked by among trials of its depth: the run's `monitor` when finished,
    /// `train.monitor` at its rung when paused or stopped.
    pub fn score(&self, monitor: &str) -> Option<f64> {
        match self.state {
            TrialState::Paused | TrialState::Stopped => self.record.as_ref()?.rung_value,
            _ => self.metric(monitor),
        }
    }
}

/// Every trial's current state, in sweep order.
pub fn gather(plan: &SweepPlan) -> Vec<TrialRow> {
    plan.trials
        .iter()
        .map(|spec| TrialRow {
            state: state_of(&plan.dir, &plan.runs_dir, &spec.id),
            record: read_trial(&plan.dir, &spec.id),
            spec: spec.clone(),
        })
        .collect()
}

/// Trials ranked best first: those that trained further first (finished, then by the
/// rung successive halving stopped them at), then by the monitored metric at that depth;
/// those without it keep sweep order after the others of their depth.
pub fn ranked<'a>(plan: &SweepPlan, rows: &'a [TrialRow]) -> Vec<&'a TrialRow> {
    let mut out: Vec<&TrialRow> = rows.iter().collect();
    out.sort_by(|a, b| {
        let by_score = match (a.score(&plan.monitor), b.score(&plan.monitor)) {
            (Some(x), Some(y)) => {
                let o = x.total_cmp(&y);
                if plan.monitor_max { o.reverse() } else { o }
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        b.depth().cmp(&a.depth()).then(by_score)
    });
    out
}

/// Slurm submission details kept in `sweep.toml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlurmRecord {
    /// `sbatch --parsable`'s job id (absent with `--no-submit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The array indices submitted, in sbatch syntax.
    pub array: String,
    /// The script.
    pub script: String,
    /// When it was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<String>,
    /// Successive halving: the rung (from 1) this array job trains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<usize>,
    /// The array's concurrency limit (`--jobs`), kept for the later rungs' arrays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
}

/// The head of `sweep.toml`, as [`write_summary`] writes it.
#[derive(Deserialize)]
struct SweepHead {
    id: String,
    name: String,
    definition: crate::experiment::sweep::Sweep,
    monitor: String,
    mode: String,
    #[serde(default)]
    epochs: u32,
}

/// Reads a sweep back from its folder (`sweep.toml` and `trials.jsonl`), for `--status`.
///
/// # Errors
/// When either file is missing or does not parse.
pub fn read_plan(sweep_dir: &Path, runs_dir: &Path) -> Result<SweepPlan, GraphError> {
    let path = sweep_dir.join(SWEEP_FILE);
    let text = std::fs::read_to_string(&path).map_err(GraphError::io("reading", &path))?;
    let encode = |message: String| GraphError::Encode {
        path: path.clone(),
        message,
    };
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| encode(e.message().to_owned()))?;
    let head: SweepHead = table
        .remove("sweep")
        .ok_or_else(|| encode("no [sweep] table".into()))?
        .try_into()
        .map_err(|e: toml::de::Error| encode(e.message().to_owned()))?;
    Ok(SweepPlan {
        id: head.id,
        name: head.name,
        dir: sweep_dir.to_path_buf(),
        runs_dir: runs_dir.to_path_buf(),
        definition: head.definition,
        monitor_key: head
            .monitor
            .strip_prefix("best_")
            .unwrap_or(&head.monitor)
            .to_owned(),
        monitor: head.monitor,
        monitor_max: head.mode == "max",
        epochs: head.epochs,
        trials: read_trials(sweep_dir)?,
        draws: None,
    })
}

/// Reads the Slurm part of an existing `sweep.toml`, if any.
pub fn read_slurm(sweep_dir: &Path) -> Option<SlurmRecord> {
    let text = std::fs::read_to_string(sweep_dir.join(SWEEP_FILE)).ok()?;
    let value: toml::Table = toml::from_str(&text).ok()?;
    value.get("slurm")?.clone().try_into().ok()
}

/// Writes `sweep.toml`, `summary.csv` and, for a two-axis grid, `heatmap.png`.
///
/// # Errors
/// When a file cannot be written.
pub fn write_summary(
    plan: &SweepPlan,
    rows: &[TrialRow],
    slurm: Option<&SlurmRecord>,
) -> Result<(), GraphError> {
    let keys = plan.keys();
    let trials: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut t = json!({
                "index": r.spec.index,
                "id": r.spec.id,
                "status": r.state.to_string(),
                "values": r.spec.values,
            });
            if let Some(rec) = &r.record {
                if let Some(run) = &rec.run {
                    t["run"] = json!(run);
                }
                if !rec.metrics.is_empty() {
                    t["metrics"] = json!(rec.metrics);
                }
                if let Some(epochs) = rec.rung_epochs {
                    t["rung_epochs"] = json!(epochs);
                }
                if let Some(value) = rec.rung_value {
                    t["rung_value"] = json!(value);
                }
                if let (TrialState::Failed, Some(e)) = (r.state, &rec.error) {
                    t["error"] = json!(e);
                }
            }
            t
        })
        .collect();
    let best = ranked(plan, rows)
        .first()
        .filter(|r| r.metric(&plan.monitor).is_some())
        .map(|r| r.spec.id.clone());
    let first = plan.trials.first();
    let mut record = json!({
        "sweep": {
            "id": plan.id,
            "name": plan.name,
            "experiment": first.map(|t| t.experiment.display().to_string()),
            "sets": first.map(|t| t.sets.clone()).unwrap_or_default(),
            "definition": plan.definition,
            "keys": keys,
            "monitor": plan.monitor,
            "mode": if plan.monitor_max { "max" } else { "min" },
            "epochs": plan.epochs,
            "best": best,
            "counts": counts(rows),
        },
        "trials": trials,
    });
    if let Some(slurm) = slurm {
        record["slurm"] = json!(slurm);
    }
    let path = plan.dir.join(SWEEP_FILE);
    write_atomic(&path, to_toml_string(&record, &path)?.as_bytes())?;
    write_csv(plan, rows)?;
    write_heatmap(plan, rows)
}

/// How many trials are in each state.
pub fn counts(rows: &[TrialRow]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry(r.state.to_string()).or_insert(0) += 1;
    }
    out
}

fn write_csv(plan: &SweepPlan, rows: &[TrialRow]) -> Result<(), GraphError> {
    let path = plan.dir.join(SUMMARY_FILE);
    let keys = plan.keys();
    let mut metrics: Vec<String> = rows
        .iter()
        .filter_map(|r| r.record.as_ref())
        .flat_map(|r| r.metrics.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // The monitored metric first: it is what the rows are ranked by.
    metrics.sort_by_key(|m| m != &plan.monitor);
    let encode = |e: csv::Error| GraphError::Encode {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["rank", "index", "trial", "status", "run"]
        .map(str::to_owned)
        .to_vec();
    header.extend(keys.iter().cloned());
    let halving = plan.definition.early_stop.is_some();
    if halving {
        header.extend(["rung_epochs".to_owned(), "rung_value".to_owned()]);
    }
    header.extend(metrics.iter().cloned());
    header.push("error".into());
    w.write_record(&header).map_err(encode)?;
    for (rank, r) in ranked(plan, rows).into_iter().enumerate() {
        let rec = r.record.as_ref();
        let mut line = vec![
            (rank + 1).to_string(),
            r.spec.index.to_string(),
            r.spec.id.clone(),
            r.state.to_string(),
            rec.and_then(|x| x.run.clone()).unwrap_or_default(),
        ];
        line.extend(
            keys.iter()
                .map(|k| r.spec.values.get(k).map(show_value).unwrap_or_default()),
        );
        if halving {
            let rung = |f: fn(&TrialRecord) -> Option<String>| rec.and_then(f).unwrap_or_default();
            line.push(rung(|x| x.rung_epochs.map(|e| e.to_string())));
            line.push(rung(|x| x.rung_value.map(|v| v.to_string())));
        }
        line.extend(
            metrics
                .iter()
                .map(|m| r.metric(m).map(|x| x.to_string()).unwrap_or_default()),
        );
        line.push(
            rec.filter(|x| x.state == TrialState::Failed)
                .and_then(|x| x.error.clone())
                .unwrap_or_default(),
        );
        w.write_record(&line).map_err(encode)?;
    }
    let bytes = w.into_inner().map_err(|e| GraphError::Encode {
        path: path.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&path, &bytes)
}

/// For a grid of exactly two crossed axes, the monitored metric per cell (averaged over
/// seeds); any other shape, a random search included, has none.
pub fn heatmap<'a>(plan: &'a SweepPlan, rows: &[TrialRow]) -> Option<Heatmap<'a>> {
    let d = &plan.definition;
    let grid = d.method == crate::experiment::sweep::Method::Grid;
    if !grid || d.axes.len() != 2 || !d.zip.is_empty() {
        return None;
    }
    let (y_axis, x_axis) = (&d.axes[0], &d.axes[1]);
    let mut sums = vec![vec![(0.0, 0usize); x_axis.values.len()]; y_axis.values.len()];
    for r in rows {
        let at = |axis: &crate::experiment::sweep::Axis| {
            let v = r.spec.values.get(&axis.key)?;
            axis.values
                .iter()
                .position(|w| crate::experiment::sweep::same_value(v, w))
        };
        if let (Some(y), Some(x), Some(m)) = (at(y_axis), at(x_axis), r.metric(&plan.monitor)) {
            sums[y][x].0 += m;
            sums[y][x].1 += 1;
        }
    }
    let cells: Vec<Vec<Option<f64>>> = sums
        .iter()
        .map(|row| {
            row.iter()
                .map(|&(s, n)| (n > 0).then(|| s / n as f64))
                .collect()
        })
        .collect();
    let labels = |a: &crate::experiment::sweep::Axis| -> Vec<String> {
        a.values.iter().map(show_value).collect()
    };
    Some(Heatmap {
        title: &plan.monitor,
        x_key: &x_axis.key,
        x_labels: labels(x_axis),
        y_key: &y_axis.key,
        y_labels: labels(y_axis),
        cells,
        higher_is_better: plan.monitor_max,
    })
}

/// Draws [`heatmap`] to `heatmap.png`, when the sweep has one.
fn write_heatmap(plan: &SweepPlan, rows: &[TrialRow]) -> Result<(), GraphError> {
    let Some(map) = heatmap(plan, rows) else {
        return Ok(());
    };
    let path = plan.dir.join(HEATMAP_FILE);
    crate::track::heatmap::draw_heatmap(&path, &map).map_err(|e| GraphError::Encode {
        path,
        message: e.to_string(),
    })
}
