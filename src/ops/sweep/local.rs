//! Running a sweep on this machine: one trial after another in this process (with the
//! usual progress bars), or `--jobs N` at once as child processes `geoexp sweep --trial`,
//! each writing its output to `logs/<trial-id>.log`. Children coordinate only through the
//! cache's per-key locks and their own trial locks, exactly as Slurm tasks do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::graph::{GraphError, Reporter};

use super::record::{self, TrialRecord, TrialRow, TrialState};
use super::{OpError, SweepPlan, TrialOutcome, TrialSpec, run_trial};

const POLL: Duration = Duration::from_millis(100);

/// How to run.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Trials at once (1: in this process).
    pub jobs: usize,
    /// Stop at the first failure (running children are stopped; they resume next time).
    pub fail_fast: bool,
    /// Run trials that failed before again.
    pub rerun_failed: bool,
    /// The geoexp binary to start children with.
    pub exe: PathBuf,
    /// Pass `--quiet` to children.
    pub quiet_children: bool,
}

/// What a sweep tells its caller as it goes.
pub trait SweepEvents: Sync {
    /// A trial is about to run (`position` counts from 1 among those that run now).
    fn trial_started(&self, trial: &TrialSpec, position: usize, total: usize);
    /// A trial ended (or turned out to be done already).
    fn trial_finished(&self, trial: &TrialSpec, outcome: &TrialOutcome);
    /// Rung `rung` (from 1) of successive halving ended at `epochs`: `promoted` (with their
    /// values) go on, `stopped` trials do not.
    fn rung_finished(
        &self,
        _rung: usize,
        _epochs: u32,
        _promoted: &[(TrialSpec, Option<f64>)],
        _stopped: usize,
    ) {
    }
}

/// What a local sweep did.
#[derive(Debug)]
pub struct LocalReport {
    /// Every trial's state afterwards.
    pub rows: Vec<TrialRow>,
    /// How many trials this invocation ran.
    pub ran: usize,
    /// Trials finished before, not run again.
    pub already_done: usize,
    /// Trials that failed before and were left alone (no `--rerun-failed`).
    pub skipped_failed: Vec<TrialSpec>,
    /// Whether `--fail-fast` stopped the sweep early.
    pub stopped_early: bool,
}

/// Which trials this invocation runs, and the failed ones it leaves.
pub fn select(plan: &SweepPlan, rerun_failed: bool) -> (Vec<TrialSpec>, usize, Vec<TrialSpec>) {
    let mut run = Vec::new();
    let mut done = 0;
    let mut failed = Vec::new();
    for row in record::gather(plan) {
        match row.state {
            TrialState::Ok => done += 1,
            TrialState::Failed if !rerun_failed => failed.push(row.spec),
            _ => run.push(row.spec),
        }
    }
    (run, done, failed)
}

/// Runs the trials that are missing, interrupted (or failed, with `rerun_failed`), then
/// writes the sweep record.
///
/// # Errors
/// When the sweep folder cannot be written or a child cannot be started.
pub fn run_local(
    plan: &SweepPlan,
    options: &LocalOptions,
    reporter: &dyn Reporter,
    events: &dyn SweepEvents,
) -> Result<LocalReport, OpError> {
    record::write_trials(plan)?;
    refresh(plan)?;
    if let Some(halving) = plan.definition.early_stop {
        return super::halving::run_halving(plan, halving, options, reporter, events);
    }
    let (todo, already_done, skipped_failed) = select(plan, options.rerun_failed);
    let (outcomes, stopped_early) = run_each(plan, &todo, None, options, reporter, events)?;
    LocalReport::written(
        plan,
        outcomes.len(),
        already_done,
        skipped_failed,
        stopped_early,
    )
}

impl LocalReport {
    /// Writes the sweep record and reports every trial's state with these counts.
    ///
    /// # Errors
    /// When the sweep record cannot be written.
    pub(super) fn written(
        plan: &SweepPlan,
        ran: usize,
        already_done: usize,
        skipped_failed: Vec<TrialSpec>,
        stopped_early: bool,
    ) -> Result<LocalReport, OpError> {
        refresh(plan)?;
        Ok(LocalReport {
            rows: record::gather(plan),
            ran,
            already_done,
            skipped_failed,
            stopped_early,
        })
    }
}

/// Runs `todo` (pausing each after epoch `stop_after`, if set), in this process or as
/// children; returns each trial's outcome, and whether `--fail-fast` stopped early.
///
/// # Errors
/// When the sweep folder cannot be written or a child cannot be started.
pub(super) fn run_each(
    plan: &SweepPlan,
    todo: &[TrialSpec],
    stop_after: Option<u32>,
    options: &LocalOptions,
    reporter: &dyn Reporter,
    events: &dyn SweepEvents,
) -> Result<(Outcomes, bool), OpError> {
    if options.jobs <= 1 {
        in_process(plan, todo, stop_after, options, reporter, events)
    } else {
        in_children(plan, todo, stop_after, options, events)
    }
}

/// Trials with what happened to them, in the order they ended.
pub(super) type Outcomes = Vec<(TrialSpec, TrialOutcome)>;

/// Rewrites `sweep.toml` and `summary.csv` from the trials' status files, so they are
/// current while the sweep runs (`--status`, a killed sweep).
pub(super) fn refresh(plan: &SweepPlan) -> Result<(), GraphError> {
    let rows = record::gather(plan);
    record::write_summary(plan, &rows, record::read_slurm(&plan.dir).as_ref())
}

fn in_process(
    plan: &SweepPlan,
    todo: &[TrialSpec],
    stop_after: Option<u32>,
    options: &LocalOptions,
    reporter: &dyn Reporter,
    events: &dyn SweepEvents,
) -> Result<(Outcomes, bool), OpError> {
    let mut outcomes = Vec::new();
    for (i, trial) in todo.iter().enumerate() {
        events.trial_started(trial, i + 1, todo.len());
        let outcome = run_trial(&plan.dir, &plan.runs_dir, trial, stop_after, reporter)?;
        refresh(plan)?;
        events.trial_finished(trial, &outcome);
        let failed = matches!(outcome, TrialOutcome::Failed(_));
        outcomes.push((trial.clone(), outcome));
        if options.fail_fast && failed {
            return Ok((outcomes, i + 1 < todo.len()));
        }
    }
    Ok((outcomes, false))
}

fn in_children(
    plan: &SweepPlan,
    todo: &[TrialSpec],
    stop_after: Option<u32>,
    options: &LocalOptions,
    events: &dyn SweepEvents,
) -> Result<(Outcomes, bool), OpError> {
    let mut queue = todo.iter().enumerate();
    let mut running: Vec<(TrialSpec, Child)> = Vec::new();
    let mut outcomes = Vec::new();
    let mut stop = false;
    loop {
        while !stop && running.len() < options.jobs {
            let Some((i, trial)) = queue.next() else {
                break;
            };
            events.trial_started(trial, i + 1, todo.len());
            running.push((trial.clone(), spawn(plan, trial, stop_after, options)?));
        }
        if running.is_empty() {
            break;
        }
        let mut j = 0;
        while j < running.len() {
            let status = running[j]
                .1
                .try_wait()
                .map_err(GraphError::io("waiting for", &options.exe))?;
            let Some(status) = status else {
                j += 1;
                continue;
            };
            let (trial, _) = running.swap_remove(j);
            let outcome = child_outcome(plan, &trial, stop_after, status);
            refresh(plan)?;
            events.trial_finished(&trial, &outcome);
            if options.fail_fast && matches!(outcome, TrialOutcome::Failed(_)) {
                stop = true;
            }
            outcomes.push((trial, outcome));
        }
        if stop {
            // Stopped children leave their trials interrupted: the next sweep resumes them.
            for (_, child) in &mut running {
                let _ = child.kill();
            }
            for (_, mut child) in running.drain(..) {
                let _ = child.wait();
            }
            break;
        }
        std::thread::sleep(POLL);
    }
    Ok((outcomes, stop))
}

fn spawn(
    plan: &SweepPlan,
    trial: &TrialSpec,
    stop_after: Option<u32>,
    options: &LocalOptions,
) -> Result<Child, OpError> {
    let log = log_path(&plan.dir, &trial.id);
    // Appended to: a trial of successive halving runs once per rung, and its log keeps all.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(GraphError::io("creating", &log))?;
    let err = file.try_clone().map_err(GraphError::io("creating", &log))?;
    let mut cmd = Command::new(&options.exe);
    cmd.arg("--runs-dir").arg(&plan.runs_dir);
    if options.quiet_children {
        cmd.arg("--quiet");
    }
    cmd.args(["sweep", "--trial", &plan.id, &trial.index.to_string()]);
    if let Some(epochs) = stop_after {
        cmd.arg("--stop-after-epoch").arg(epochs.to_string());
    }
    cmd.stdin(Stdio::null()).stdout(file).stderr(err);
    Ok(cmd
        .spawn()
        .map_err(GraphError::io("starting", &options.exe))?)
}

/// Where a child's output goes.
pub fn log_path(sweep_dir: &Path, id: &str) -> PathBuf {
    sweep_dir.join(record::LOGS_DIR).join(format!("{id}.log"))
}

/// The outcome a child recorded; a child that died without recording one failed.
fn child_outcome(
    plan: &SweepPlan,
    trial: &TrialSpec,
    stop_after: Option<u32>,
    status: std::process::ExitStatus,
) -> TrialOutcome {
    match record::read_trial(&plan.dir, &trial.id) {
        Some(r) if r.state == TrialState::Ok => TrialOutcome::Ran(r),
        Some(r) if r.state == TrialState::Failed => TrialOutcome::Failed(r),
        // An older record's pause (an earlier rung) is no outcome of this child.
        Some(r) if r.state == TrialState::Paused && r.rung_epochs == stop_after => {
            TrialOutcome::Paused(r)
        }
        other => {
            let mut r = other.unwrap_or_else(|| TrialRecord::started(trial));
            r.finish_failed(&format!(
                "its process ended ({status}) without recording a result; see {}",
                log_path(&plan.dir, &trial.id).display()
            ));
            TrialOutcome::Failed(r)
        }
    }
}
