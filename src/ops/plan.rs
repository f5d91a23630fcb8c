//! `geoexp plan`: the graph, each stage's key, cached or not, and why not.

use std::path::PathBuf;

use crate::experiment::LoadOptions;
use crate::graph::{PlanEntry, Reporter, plan as plan_stages};
use crate::stages::features::{Route, route};

use super::{OpError, Prepared};

/// What to plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// The experiment and its overrides.
    pub experiment: LoadOptions,
    /// The runs directory (cache inside).
    pub runs_dir: PathBuf,
    /// Plan only up to this stage.
    pub until: Option<String>,
    /// Stages that would be forced.
    pub force: Vec<String>,
}

/// The plan of a run.
#[derive(Debug)]
pub struct PlanReport {
    /// The run id the run would have.
    pub run_id: String,
    /// Its folder.
    pub run_dir: PathBuf,
    /// Every selected stage, in execution order.
    pub entries: Vec<PlanEntry>,
    /// Whether training reads embeddings or images, and why.
    pub route: Route,
}

/// Plans an experiment without running anything.
///
/// # Errors
/// Config, build and input-listing errors.
pub fn plan(options: &PlanOptions, reporter: &dyn Reporter) -> Result<PlanReport, OpError> {
    let prepared = Prepared::new(&options.experiment, &options.runs_dir)?;
    let selection = prepared.selection(options.until.as_deref())?;
    let forced = prepared.forced(&options.force)?;
    let resolved = prepared.resolve(reporter)?;
    let run_id = prepared.run_id(&resolved);
    let selected: Vec<_> = resolved
        .into_iter()
        .filter(|r| selection.contains(&r.stage.name()))
        .collect();
    Ok(PlanReport {
        route: route(&prepared.loaded.experiment),
        run_dir: prepared.run_dir(&run_id),
        run_id,
        entries: plan_stages(&selected, &prepared.store, &forced),
    })
}
