//! `geoexp run`: execute the graph (or a prefix of it) and write the run's manifest.
//!
//! The run folder `runs/<name>/<run-id>/` gets `manifest.toml` (deterministic),
//! `execution.toml` (volatile) and one relative symlink per executed stage into the cache,
//! so `runs/golf/<id>/classes/classes.csv` is where a user expects it; hard links to the
//! files people open first (checkpoints, metrics, event files); and copies of the maps whose
//! titles name the experiment and run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::experiment::LoadOptions;
use crate::graph::live::register;
use crate::graph::lock::this_host;
use crate::graph::manifest::{EXECUTION_FILE, GEOEXP_VERSION_KEY, MANIFEST_FILE};
use crate::graph::{
    Execution, GEOEXP_VERSION, GraphError, Manifest, Reporter, RunEvent, RunInfo, StageExecution,
    StageManifest, StageRun, execute,
};
use crate::stages::Budget;

use super::{OpError, Prepared};

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The experiment and its overrides.
    pub experiment: LoadOptions,
    /// The runs directory (cache inside).
    pub runs_dir: PathBuf,
    /// Stop after this stage.
    pub until: Option<String>,
    /// Recompute these stages (and their downstream) even when cached.
    pub force: Vec<String>,
    /// The command line, for `execution.toml`.
    pub command: Vec<String>,
    /// Limits on this attempt that keep the run's keys (training pauses at an epoch).
    pub budget: Budget,
}

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    /// The run id.
    pub run_id: String,
    /// The run folder.
    pub run_dir: PathBuf,
    /// Executed stages, in order.
    pub stages: Vec<StageRun>,
    /// The manifest written.
    pub manifest: Manifest,
}

/// Runs an experiment.
///
/// # Errors
/// Config, build and stage errors; on a stage error `execution.toml` records the failure
/// and the previous manifest (if any) is left untouched. A stage that paused at
/// `options.budget` is the error [`GraphError::Paused`], recorded as such.
pub fn run(options: &RunOptions, reporter: &dyn Reporter) -> Result<RunReport, OpError> {
    let prepared = Prepared::with_budget(&options.experiment, &options.runs_dir, options.budget)?;
    run_prepared(&prepared, options, reporter)
}

/// Runs an experiment already loaded and built (a sweep trial checks its id first).
///
/// # Errors
/// As [`run`], less the loading errors.
pub fn run_prepared(
    prepared: &Prepared,
    options: &RunOptions,
    reporter: &dyn Reporter,
) -> Result<RunReport, OpError> {
    let started_at = now();
    let selection = prepared.selection(options.until.as_deref())?;
    let forced = prepared.forced(&options.force)?;
    let resolved = prepared.resolve(reporter)?;
    let run_id = prepared.run_id(&resolved);
    let run_dir = prepared.run_dir(&run_id);
    let selected: Vec<_> = resolved
        .into_iter()
        .filter(|r| selection.contains(&r.stage.name()))
        .collect();
    // Registered until the manifest is written, so a concurrent `gc` keeps every entry
    // this run uses (see `graph::live`).
    let run_label = format!("{}/{run_id}", prepared.loaded.experiment.name);
    let _registration = register(
        &prepared.store,
        selected.iter().map(|r| (r.stage.name(), &r.key)),
        Some(&run_label),
        |holder| {
            reporter.event(RunEvent::WaitingForGc {
                holder: holder.to_string(),
            });
        },
    )?;
    let result = execute(&selected, &prepared.store, &forced, reporter);
    let mut execution = Execution {
        started_at,
        finished_at: now(),
        host: this_host(),
        command: options.command.clone(),
        status: "ok".into(),
        error: None,
        stages: Vec::new(),
    };
    let stages = match result {
        Ok(stages) => stages,
        Err(err) => {
            execution.status = match err {
                GraphError::Paused { .. } => "paused",
                _ => "failed",
            }
            .into();
            execution.error = Some(crate::graph::error_chain(&err));
            // Best effort: the stage error matters more than a failure to record it.
            let _ = write_execution(&execution, &run_dir);
            return Err(err.into());
        }
    };
    execution.stages = stages.iter().map(StageExecution::of).collect();
    let manifest = Manifest {
        run: RunInfo {
            name: prepared.loaded.experiment.name.clone(),
            id: run_id.clone(),
            experiment: crate::experiment::error::display_path(&options.experiment.file),
        },
        versions: versions(),
        config: prepared.loaded.config(),
        provenance: prepared.loaded.provenance(),
        stages: stages
            .iter()
            .map(|s| (s.stage.clone(), StageManifest::of(s)))
            .collect(),
    };
    manifest.write(&run_dir.join(MANIFEST_FILE))?;
    write_execution(&execution, &run_dir)?;
    for s in &stages {
        link_stage(&run_dir, &s.stage, &s.entry.dir);
        for (file, name) in crate::stages::run_links(&s.stage) {
            link_file(&s.entry.dir.join(file), &run_dir.join(name));
        }
        for (file, name) in crate::stages::run_maps(&s.stage) {
            let title =
                crate::track::map::run_title(&manifest.run.name, &run_id, &s.stage, s.key.short());
            titled_map(&s.entry.dir.join(file), &run_dir.join(name), &title);
        }
    }
    Ok(RunReport {
        run_id,
        run_dir,
        stages,
        manifest,
    })
}

/// Writes `execution.toml` (the latest attempt) and a copy under `executions/` named by
/// the attempt's start, host and pid, so two attempts at the same run (started at once, or
/// one after the other) each keep their record.
fn write_execution(execution: &Execution, run_dir: &Path) -> Result<(), crate::graph::GraphError> {
    let name = format!(
        "{}.{}.{}.toml",
        execution.started_at.replace(':', ""),
        execution.host,
        std::process::id()
    );
    execution.write(&run_dir.join(EXECUTIONS_DIR).join(name))?;
    execution.write(&run_dir.join(EXECUTION_FILE))
}

/// The folder of a run's execution records, one per attempt.
pub const EXECUTIONS_DIR: &str = "executions";

/// Versions recorded in manifests: geoexp and the optional features it was built with.
pub fn versions() -> BTreeMap<String, String> {
    let mut features = Vec::new();
    if cfg!(feature = "proj") {
        features.push("proj");
    }
    BTreeMap::from([
        (GEOEXP_VERSION_KEY.to_owned(), GEOEXP_VERSION.to_owned()),
        ("features".to_owned(), features.join(",")),
    ])
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Points `run_dir/<stage>` at the stage's cache entry with a relative symlink, replacing
/// an older link atomically. Links are a convenience: failing to make one is not an error.
fn link_stage(run_dir: &Path, stage: &str, entry: &Path) {
    let Some(target) = relative(run_dir, entry) else {
        return;
    };
    let link = run_dir.join(stage);
    let tmp = run_dir.join(format!(".{stage}.link.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(&target, &tmp).is_ok() {
        let _ = std::fs::rename(&tmp, &link);
    }
    let _ = std::fs::remove_file(&tmp);
}

/// Hard-links `entry_file` at `link` (replacing an older link atomically), or copies it
/// where hard links are impossible. A convenience like the stage links: best effort.
fn link_file(entry_file: &Path, link: &Path) {
    let (Some(dir), Some(name)) = (link.parent(), link.file_name()) else {
        return;
    };
    if !entry_file.is_file() || std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(
        ".{}.link.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if same_file(entry_file, link) {
        return;
    }
    let _ = std::fs::remove_file(&tmp);
    let made =
        std::fs::hard_link(entry_file, &tmp).is_ok() || std::fs::copy(entry_file, &tmp).is_ok();
    if made {
        let _ = std::fs::rename(&tmp, link);
    }
    // Renaming one hard link of a file onto another of the same file succeeds and does
    // nothing (POSIX), which would leave `tmp` behind.
    let _ = std::fs::remove_file(&tmp);
}

/// Writes a copy of the map PNG `entry_file` at `path` whose title names the experiment
/// and run, which the cache entry (shared by every run that hits it) cannot. Best effort,
/// like the links: a map that cannot be read or written is left out.
fn titled_map(entry_file: &Path, path: &Path, title: &str) {
    let Ok(bytes) = std::fs::read(entry_file) else {
        return;
    };
    if let Ok(png) = crate::track::map::retitle(&bytes, title) {
        let _ = crate::graph::write_atomic(path, &png);
    }
}

/// Whether `a` and `b` are the same file (hard links of one inode).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// `to` relative to the directory `from` (both absolute or both relative to the same place).
fn relative(from: &Path, to: &Path) -> Option<PathBuf> {
    let from: Vec<_> = from.components().collect();
    let to_parts: Vec<_> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 && from.first() != to_parts.first() {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to_parts[common..] {
        out.push(part.as_os_str());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_links_are_relative_to_the_run_folder() {
        let rel = relative(
            Path::new("runs/golf/abc"),
            Path::new("runs/.cache/classes/k"),
        );
        assert_eq!(rel.unwrap(), PathBuf::from("../../.cache/classes/k"));
    }
}
