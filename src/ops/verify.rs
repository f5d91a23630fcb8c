//! `geoexp verify`: does a run's cache still hold what its manifest says, and does a stage
//! reproduce?
//!
//! Every stage of the run is checked by [`graph::verify`](crate::graph::verify): record
//! present and readable, every deterministic output with its recorded blake3 (re-hashed in
//! parallel), volatile outputs with their recorded size; and every copy in the run folder
//! that is not a hard link of the entry's file is compared too. Nothing is modified unless
//! `evict` is set, which removes the entries found bad so the next `run` recomputes them.
//!
//! `recompute` rebuilds the run's graph from its experiment (the file the manifest names,
//! with the manifest's values for everything set by flags, variables or a sweep), checks
//! that the stage resolves to the manifest's key, runs it into a scratch directory on the
//! run's upstream entries, and compares every deterministic output and result.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::experiment::LoadOptions;
use crate::experiment::keys::lookup;
use crate::graph::live::{live_entries, register};
use crate::graph::outputs::OutputProblem;
use crate::graph::reason::{compare, input_changed};
use crate::graph::verify::{StageVerdict, bytes_to_verify, differences, recompute, verify_stage};
use crate::graph::{GraphError, Lookup, Manifest, Reporter, RunEvent, StageKey, Store};
use crate::stages::run_links;

use super::diff::{DiffError, resolve};
use super::{CACHE_DIR, OpError, Prepared};

/// What to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// A run folder, manifest, run id or prefix (as `diff` takes them).
    pub run: PathBuf,
    /// Where run ids are looked up.
    pub runs_dir: PathBuf,
    /// Remove the entries found bad.
    pub evict: bool,
    /// Recompute this stage and compare.
    pub recompute: Option<String>,
    /// The experiment file for `recompute`, instead of the one the manifest names.
    pub experiment: Option<PathBuf>,
}

/// What verification found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The run, as `name/id`.
    pub run: String,
    /// Its manifest.
    pub manifest: PathBuf,
    /// Every stage of the run, in the manifest's order of execution.
    pub stages: Vec<StageVerdict>,
    /// Entries removed by `evict`, as (stage, key).
    pub evicted: Vec<(String, StageKey)>,
    /// Bad stages `evict` left, as (stage, key, why).
    pub not_evicted: Vec<(String, StageKey, String)>,
    /// The recomputation, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recompute: Option<Recomputation>,
    /// Why the recomputation could not be done, when it could not (the checks above still
    /// hold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recompute_error: Option<RecomputeError>,
}

impl VerifyReport {
    /// Whether every stage verified and the recomputed stage (if any) reproduced.
    pub fn ok(&self) -> bool {
        self.stages.iter().all(StageVerdict::ok)
            && self.recompute_error.is_none()
            && self
                .recompute
                .as_ref()
                .is_none_or(|r| r.differences.is_empty())
    }
}

/// Why `--recompute` could not be done.
#[derive(Clone, Debug, Serialize)]
pub struct RecomputeError {
    /// The error, with its causes.
    pub message: String,
    /// Whether the stage itself failed (rather than the request: a changed key, a missing
    /// experiment file, upstream entries that do not verify).
    pub stage_failed: bool,
}

/// A stage computed again and compared with its entry.
#[derive(Clone, Debug, Serialize)]
pub struct Recomputation {
    /// Stage name.
    pub stage: String,
    /// Its key.
    pub key: StageKey,
    /// Outputs and results that differ; empty: reproduced.
    pub differences: Vec<String>,
    /// Seconds the stage took.
    pub seconds: f64,
}

/// Why verification could not be done (as opposed to finding problems, which a report
/// holds).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The run cannot be found or its manifest read.
    #[error(transparent)]
    Run(#[from] DiffError),
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// The experiment could not be loaded or built again for `--recompute`.
    #[error(
        "--recompute: the run's experiment {file} (a path relative to where the run was \
         started; pass --experiment FILE to name it)"
    )]
    Experiment {
        /// The experiment file.
        file: String,
        /// Why.
        #[source]
        source: Box<OpError>,
    },
    /// The stage no longer resolves to the manifest's key.
    #[error(
        "--recompute {stage}: the experiment now gives this stage another key ({reasons}), so it \
         cannot be recomputed as it was"
    )]
    KeyChanged {
        /// Stage name.
        stage: String,
        /// What differs.
        reasons: String,
    },
    /// An upstream entry does not verify.
    #[error("--recompute {stage}: its upstream stage `{upstream}` does not verify (see above)")]
    Upstream {
        /// The stage to recompute.
        stage: String,
        /// The upstream stage at fault.
        upstream: String,
    },
    /// The cache could not be used, or the recomputed stage failed.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl VerifyError {
    /// Whether the work failed (a recomputed stage), rather than the request.
    pub fn is_stage_failure(&self) -> bool {
        matches!(
            self,
            VerifyError::Graph(GraphError::Stage { .. } | GraphError::Panic { .. })
        )
    }
}

/// Verifies a run.
///
/// # Errors
/// When the run cannot be found or read, or `--recompute` cannot be done (see
/// [`VerifyError`]). Problems found in the cache are not errors: they are in the report.
pub fn verify(
    options: &VerifyOptions,
    reporter: &dyn Reporter,
) -> Result<VerifyReport, VerifyError> {
    let manifest_path = resolve(&options.run, &options.runs_dir)?;
    let manifest = Manifest::read(&manifest_path).map_err(DiffError::from)?;
    let run_dir = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let store = Store::new(runs_dir_of(&run_dir, &options.runs_dir).join(CACHE_DIR));
    if let Some(stage) = &options.recompute
        && !manifest.stages.contains_key(stage)
    {
        return Err(VerifyError::Usage(format!(
            "--recompute {stage}: the run has no stage `{stage}` (it has {})",
            manifest
                .stages
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let order = execution_order(&manifest);
    // Registered, so a `gc` beside us does not remove what we check. A cache we may not
    // write (a reviewer's read-only view) is still verified, only without that guard.
    let registration = register(
        &store,
        order.iter().map(|s| (s.as_str(), &manifest.stages[s].key)),
        None,
        |holder| {
            reporter.event(RunEvent::WaitingForGc {
                holder: holder.to_string(),
            });
        },
    )
    .map_err(|e| tracing::warn!("verifying without registering (a gc could interfere): {e}"))
    .ok();
    let total: u64 = order
        .iter()
        .map(|s| bytes_to_verify(&store, s, &manifest.stages[s].key))
        .sum();
    let tick = reporter.start("verify: hashing bytes", total);
    let stages: Vec<StageVerdict> = {
        use rayon::prelude::*;
        order
            .par_iter()
            .map(|s| {
                let mut verdict = verify_stage(&store, s, &manifest.stages[s], tick.as_ref());
                if verdict.outputs > 0 {
                    verdict
                        .problems
                        .extend(run_copies(&store, s, &manifest, &run_dir));
                }
                verdict
            })
            .collect()
    };
    tick.finish();
    let mut report = VerifyReport {
        run: format!("{}/{}", manifest.run.name, manifest.run.id),
        manifest: manifest_path,
        stages,
        evicted: Vec::new(),
        not_evicted: Vec::new(),
        recompute: None,
        recompute_error: None,
    };
    if let Some(stage) = &options.recompute {
        match recompute_stage(stage, &manifest, &report, &store, options, reporter) {
            Ok(r) => report.recompute = Some(r),
            Err(e) => {
                report.recompute_error = Some(RecomputeError {
                    message: crate::graph::error_chain(&e),
                    stage_failed: e.is_stage_failure(),
                });
            }
        }
    }
    if options.evict {
        let others = live_entries(&store, registration.as_ref().map(|r| r.path()));
        for v in report.stages.iter().filter(|v| !v.ok()) {
            let key = v.key.clone();
            let keep = |why: &str| (v.stage.clone(), key.clone(), why.to_owned());
            if !v.entry_damaged {
                if v.dir.exists() {
                    report.not_evicted.push(keep(
                        "the entry matches its own record (another run recomputed it, or only \
                         a copy in the run folder differs); run the experiment again to refresh \
                         this run",
                    ));
                }
                continue;
            }
            if others
                .entries
                .contains(&(v.stage.clone(), key.as_str().to_owned()))
            {
                report
                    .not_evicted
                    .push(keep("a running process uses it; try again when it is done"));
                continue;
            }
            let _lock = store.lock(&v.stage, &key, |_| {})?;
            store.remove_entry(&v.stage, &key)?;
            report.evicted.push((v.stage.clone(), key));
        }
    }
    Ok(report)
}

/// The runs directory of a run folder (`<runs>/<name>/<id>`), or `fallback` when the
/// folder is not laid out that way.
fn runs_dir_of(run_dir: &Path, fallback: &Path) -> PathBuf {
    run_dir
        .parent()
        .and_then(Path::parent)
        .filter(|d| d.join(CACHE_DIR).is_dir())
        .map_or_else(|| fallback.to_path_buf(), Path::to_path_buf)
}

/// The manifest's stages, upstream before downstream.
fn execution_order(manifest: &Manifest) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut left: Vec<&String> = manifest.stages.keys().collect();
    while !left.is_empty() {
        // Each pass takes every stage whose upstream is done, in name order: the graph's
        // own order for geoexp's stages.
        let ready: Vec<String> = left
            .iter()
            .filter(|s| {
                manifest.stages[**s]
                    .upstream
                    .keys()
                    .all(|u| order.contains(u) || !manifest.stages.contains_key(u))
            })
            .map(|s| (*s).clone())
            .collect();
        if ready.is_empty() {
            // A cycle cannot come from geoexp; keep the rest in name order.
            order.extend(left.drain(..).cloned());
            break;
        }
        left.retain(|s| !ready.contains(s));
        order.extend(ready);
    }
    order
}

/// Copies of the entry's files in the run folder (where hard links were impossible) that
/// differ from their record.
fn run_copies(
    store: &Store,
    stage: &str,
    manifest: &Manifest,
    run_dir: &Path,
) -> Vec<OutputProblem> {
    let Lookup::Found(entry) = store.read_entry(stage, &manifest.stages[stage].key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (file, name) in run_links(stage) {
        let (copy, original) = (run_dir.join(name), entry.dir.join(file));
        let (Ok(c), Some(recorded)) = (std::fs::metadata(&copy), entry.record.outputs.get(*file))
        else {
            continue;
        };
        let same_inode =
            std::fs::metadata(&original).is_ok_and(|o| o.ino() == c.ino() && o.dev() == c.dev());
        if same_inode {
            continue;
        }
        let differs = if recorded.volatile {
            c.len() != recorded.bytes
        } else {
            crate::graph::fingerprint::hash_path(&copy).map_or(true, |h| h != recorded.blake3)
        };
        if differs {
            out.push(OutputProblem {
                output: (*file).to_owned(),
                path: copy,
                problem: "this copy in the run folder differs from the cache entry's record".into(),
            });
        }
    }
    out
}

fn recompute_stage(
    stage: &str,
    manifest: &Manifest,
    report: &VerifyReport,
    store: &Store,
    options: &VerifyOptions,
    reporter: &dyn Reporter,
) -> Result<Recomputation, VerifyError> {
    let wanted = &manifest.stages[stage];
    for up in upstream_closure(manifest, stage) {
        if report.stages.iter().any(|v| v.stage == up && !v.ok()) {
            return Err(VerifyError::Upstream {
                stage: stage.to_owned(),
                upstream: up,
            });
        }
    }
    let entry = match store.read_entry(stage, &wanted.key) {
        Lookup::Found(entry) => entry,
        Lookup::Missing | Lookup::Corrupt(_) => {
            return Err(VerifyError::Usage(format!(
                "--recompute {stage}: its cache entry has no readable record to compare with \
                 (run the experiment again to recompute it)"
            )));
        }
    };
    // Where a stage runs is not in its key, but its numbers depend on it: recompute where
    // the entry was computed (the CPU unless it recorded another device).
    let on_cpu = entry
        .record
        .created
        .facts
        .get("device")
        .and_then(|d| d.as_str())
        .is_none_or(|d| d.starts_with("Cpu"));
    let load = load_options(manifest, options.experiment.as_deref(), on_cpu);
    let file = crate::experiment::error::display_path(&load.file);
    let prepared =
        Prepared::new(&load, store.root().parent().unwrap_or(Path::new("."))).map_err(|e| {
            VerifyError::Experiment {
                file: file.clone(),
                source: Box::new(e),
            }
        })?;
    let selection = prepared
        .selection(Some(stage))
        .map_err(|e| VerifyError::Usage(e.to_string()))?;
    let resolved = prepared
        .resolve(reporter)
        .map_err(|e| VerifyError::Experiment {
            file,
            source: Box::new(e),
        })?;
    let r = resolved
        .iter()
        .filter(|r| selection.contains(&r.stage.name()))
        .find(|r| r.stage.name() == stage)
        .ok_or_else(|| VerifyError::Usage(format!("--recompute {stage}: no such stage")))?;
    if r.key != wanted.key {
        let reasons = compare(
            &wanted.material(manifest.geoexp_version()),
            &(&r.material).into(),
            input_changed,
        );
        return Err(VerifyError::KeyChanged {
            stage: stage.to_owned(),
            reasons: reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let upstream: BTreeMap<String, PathBuf> = r
        .material
        .upstream
        .iter()
        .map(|(name, key)| (name.clone(), store.entry_dir(name, key)))
        .collect();
    let clock = std::time::Instant::now();
    let again = recompute(r, store, upstream, reporter)?;
    Ok(Recomputation {
        stage: stage.to_owned(),
        key: wanted.key.clone(),
        differences: differences(&entry, &again),
        seconds: clock.elapsed().as_secs_f64(),
    })
}

/// Every stage `stage` reads from, directly or not.
fn upstream_closure(manifest: &Manifest, stage: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut todo: Vec<String> = manifest.stages[stage].upstream.keys().cloned().collect();
    while let Some(s) = todo.pop() {
        if out.contains(&s) {
            continue;
        }
        if let Some(m) = manifest.stages.get(&s) {
            todo.extend(m.upstream.keys().cloned());
        }
        out.push(s);
    }
    out
}

/// How to load the run's experiment again: its file, plus the manifest's value of every
/// key that a flag, a variable or a sweep set (those layers are not in the file). Values
/// from files and defaults come from loading the file itself.
fn load_options(manifest: &Manifest, experiment: Option<&Path>, on_cpu: bool) -> LoadOptions {
    let from_outside = |label: &str| {
        label.starts_with("--set ")
            || label.starts_with("env ")
            || label.starts_with("--grid ")
            || label == "sweep"
    };
    let mut trial: Vec<(String, serde_json::Value)> = manifest
        .provenance
        .iter()
        .filter(|(_, label)| from_outside(label))
        .filter_map(|(key, _)| lookup(&manifest.config, key).map(|v| (key.clone(), v.clone())))
        .collect();
    if on_cpu {
        trial.push(("train.device".into(), serde_json::Value::from("cpu")));
    }
    LoadOptions {
        file: experiment.map_or_else(
            || PathBuf::from(&manifest.run.experiment),
            Path::to_path_buf,
        ),
        sets: Vec::new(),
        env: Some(Vec::new()),
        trial,
    }
}

/// The report's problems as lines: `stage key-prefix: file: what`.
pub fn problem_lines(report: &VerifyReport) -> Vec<String> {
    report
        .stages
        .iter()
        .flat_map(|v| {
            v.problems
                .iter()
                .map(move |p| format!("{} {}: {p}", v.stage, v.key.short()))
        })
        .collect()
}
