//! Executing resolved stages against the cache.
//!
//! For each stage in order: a complete entry is a hit; otherwise take the key's lock,
//! look again (another process may have finished it while we waited), run the stage into
//! a temporary directory, and commit. A failing or panicking stage commits nothing and
//! stops the run; its downstream stages do not run.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::dag::Resolved;
use super::error::{GraphError, error_chain};
use super::events::{Reporter, RunEvent};
use super::key::StageKey;
use super::lock::this_host;
use super::plan::{PlanStatus, why};
use super::reason::RerunReason;
use super::stage::{Paused, StageContext};
use super::store::{Creation, Entry, Lookup, Record, Store};

/// How a stage's entry was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageStatus {
    /// Found in the cache.
    Hit,
    /// Computed by this process.
    Ran,
}

/// One executed stage.
#[derive(Clone, Debug)]
pub struct StageRun {
    /// Stage name.
    pub stage: String,
    /// Its key.
    pub key: StageKey,
    /// Hit or ran.
    pub status: StageStatus,
    /// Wall time spent on this stage by this process (waiting included).
    pub duration: Duration,
    /// The completed entry.
    pub entry: Entry,
}

/// Runs `resolved` in order. Stages named in `forced` run even when cached, replacing
/// their entries.
///
/// # Errors
/// The first stage failure, panic, or cache I/O error.
pub fn execute(
    resolved: &[Resolved<'_>],
    store: &Store,
    forced: &BTreeSet<&str>,
    reporter: &dyn Reporter,
) -> Result<Vec<StageRun>, GraphError> {
    let mut done: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut runs = Vec::new();
    for r in resolved {
        let name = r.stage.name();
        let started = Instant::now();
        let force = forced.contains(name);
        let (status, entry) = match (force, store.lookup(name, &r.key)) {
            (false, Lookup::Found(entry)) => (StageStatus::Hit, *entry),
            (_, lookup) => {
                if let Lookup::Corrupt(problem) = lookup {
                    reporter.event(RunEvent::CorruptEntry {
                        stage: name.to_owned(),
                        problem,
                    });
                }
                run_locked(r, store, force, &done, reporter)?
            }
        };
        if status == StageStatus::Hit {
            reporter.event(RunEvent::Hit {
                stage: name.to_owned(),
                key: r.key.clone(),
                duration: started.elapsed(),
            });
        }
        done.insert(name.to_owned(), entry.dir.clone());
        runs.push(StageRun {
            stage: name.to_owned(),
            key: r.key.clone(),
            status,
            duration: started.elapsed(),
            entry,
        });
    }
    Ok(runs)
}

fn run_locked(
    r: &Resolved<'_>,
    store: &Store,
    force: bool,
    done: &BTreeMap<String, PathBuf>,
    reporter: &dyn Reporter,
) -> Result<(StageStatus, Entry), GraphError> {
    let name = r.stage.name();
    let _lock = store.lock(name, &r.key, |owner| {
        reporter.event(RunEvent::Waiting {
            stage: name.to_owned(),
            holder: owner.to_string(),
        });
    })?;
    if !force && let Lookup::Found(entry) = store.lookup(name, &r.key) {
        return Ok((StageStatus::Hit, *entry));
    }
    let reasons = if force {
        vec![RerunReason::Forced]
    } else {
        match why(r, store) {
            PlanStatus::WillRun { reasons, .. } => reasons,
            PlanStatus::Cached => Vec::new(),
        }
    };
    reporter.event(RunEvent::Started {
        stage: name.to_owned(),
        key: r.key.clone(),
        reasons,
    });
    let pending = store.begin(name, &r.key)?;
    let upstream = r
        .stage
        .upstream()
        .into_iter()
        .filter_map(|u| done.get(u).map(|d| (u.to_owned(), d.clone())))
        .collect();
    let work_dir = store.work_dir(name, &r.key);
    if force {
        // A forced run starts over rather than resuming what an earlier attempt left.
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    let ctx = StageContext::new(name, pending.dir().to_path_buf(), upstream, reporter)
        .with_work_dir(work_dir.clone())
        .with_key(&r.key);
    let clock = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| r.stage.run(&ctx)));
    let duration = clock.elapsed();
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(source)) if source.is::<Paused>() => {
            let what = source.to_string();
            reporter.event(RunEvent::Paused {
                stage: name.to_owned(),
                what: what.clone(),
            });
            return Err(GraphError::Paused {
                stage: name.to_owned(),
                what,
            });
        }
        Ok(Err(source)) => {
            let err = GraphError::Stage {
                stage: name.to_owned(),
                source,
            };
            reporter.event(RunEvent::Failed {
                stage: name.to_owned(),
                error: error_chain(&err),
            });
            return Err(err);
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            let err = GraphError::Panic {
                stage: name.to_owned(),
                message,
            };
            reporter.event(RunEvent::Failed {
                stage: name.to_owned(),
                error: err.to_string(),
            });
            return Err(err);
        }
    };
    let record = Record {
        key: r.key.clone(),
        material: r.material.clone(),
        outputs: pending.hash_outputs(r.stage.volatile_outputs())?,
        results: outcome.results,
        created: Creation {
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            host: this_host(),
            duration_s: duration.as_secs_f64(),
            facts: outcome.facts,
        },
    };
    let dir = pending.commit(&record, &r.inputs_tsv())?;
    // Leftovers are harmless (the key is committed, so no attempt will read them again).
    let _ = std::fs::remove_dir_all(&work_dir);
    reporter.event(RunEvent::Finished {
        stage: name.to_owned(),
        key: r.key.clone(),
        duration,
    });
    Ok((StageStatus::Ran, Entry { dir, record }))
}
