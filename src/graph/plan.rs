//! `plan`: for each resolved stage, cached or not, and if not, why.

use std::collections::BTreeSet;

use super::dag::Resolved;
use super::key::StageKey;
use super::reason::{RerunReason, explain};
use super::store::{Lookup, Store};

/// What would happen to one stage.
#[derive(Clone, Debug)]
pub struct PlanEntry {
    /// Stage name.
    pub stage: String,
    /// Its key.
    pub key: StageKey,
    /// The stages it reads from.
    pub upstream: Vec<String>,
    /// Cached or not.
    pub status: PlanStatus,
}

/// Whether a stage would run.
#[derive(Clone, Debug)]
pub enum PlanStatus {
    /// A complete entry exists.
    Cached,
    /// The stage would run.
    WillRun {
        /// Why.
        reasons: Vec<RerunReason>,
        /// Key of the nearest existing entry the reasons compare against.
        nearest: Option<StageKey>,
    },
}

impl PlanStatus {
    /// Whether the stage is a cache hit.
    pub fn is_cached(&self) -> bool {
        matches!(self, PlanStatus::Cached)
    }
}

/// Decides, for every resolved stage, whether it is cached; stages in `forced` always run.
pub fn plan(resolved: &[Resolved<'_>], store: &Store, forced: &BTreeSet<&str>) -> Vec<PlanEntry> {
    resolved
        .iter()
        .map(|r| {
            let name = r.stage.name();
            let status = if forced.contains(name) {
                PlanStatus::WillRun {
                    reasons: vec![RerunReason::Forced],
                    nearest: None,
                }
            } else {
                match store.lookup(name, &r.key) {
                    Lookup::Found(_) => PlanStatus::Cached,
                    Lookup::Missing | Lookup::Corrupt(_) => why(r, store),
                }
            };
            PlanEntry {
                stage: name.to_owned(),
                key: r.key.clone(),
                upstream: r.stage.upstream().into_iter().map(str::to_owned).collect(),
                status,
            }
        })
        .collect()
}

/// The reasons a resolved stage is not cached, against the nearest entry in `store`.
pub fn why(r: &Resolved<'_>, store: &Store) -> PlanStatus {
    let entries = store.entries(r.stage.name());
    let (nearest, reasons) = explain(&entries, &r.material, &r.files);
    PlanStatus::WillRun {
        reasons,
        nearest: nearest.map(|e| e.record.key.clone()),
    }
}
