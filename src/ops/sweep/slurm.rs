//! `--executor slurm`: the sweep as one `sbatch --array` job.
//!
//! The script's task `i` runs `geoexp --runs-dir <abs> sweep --trial <sweep-id> i` on the
//! runs directory shared over the cluster's filesystem; tasks share stages through the
//! cache's lock files (owner host, pid and heartbeat, so they work across hosts, where
//! `flock` often does not). Only trials still to run are in the array. `--status` reads
//! the trials' status files, which are the truth about results, and asks `squeue` and
//! `sacct` about tasks that have none yet.
//!
//! Successive halving runs one array job per rung: each rung's array is followed by a
//! one-task job (`halving.sbatch`, `--dependency=afterany` on the array) that closes the
//! rung (`geoexp sweep --next-rung`: the same promotions as on one machine) and submits the
//! next rung's array with its own follower. The submitting process does not wait.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::graph::{GraphError, write_atomic};

use super::record::{self, SlurmRecord, TrialState};
use super::{OpError, SweepPlan};

/// The batch script's name in the sweep folder.
pub const SCRIPT_FILE: &str = "sweep.sbatch";
/// The script that closes a rung of successive halving and submits the next.
pub const HALVING_SCRIPT_FILE: &str = "halving.sbatch";
/// Task output folder in the sweep folder.
pub const SLURM_LOGS_DIR: &str = "slurm";

/// How to submit.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (e.g. `02:00:00`).
    pub time: Option<String>,
    /// `--gpus-per-task`.
    pub gpus_per_task: Option<u32>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// At most this many tasks at once (`%P`).
    pub max_parallel: Option<usize>,
    /// Extra `#SBATCH` lines, e.g. `--mem=16G` or `--account=geo`.
    pub extra: Vec<String>,
    /// Write the script only.
    pub no_submit: bool,
    /// Run trials that failed before again.
    pub rerun_failed: bool,
    /// The geoexp binary tasks run (absolute).
    pub exe: PathBuf,
}

/// What a Slurm submission did.
#[derive(Debug)]
pub struct SlurmReport {
    /// The record kept in `sweep.toml`.
    pub record: SlurmRecord,
    /// Trials in the array.
    pub submitted: usize,
    /// Trials already finished, left out.
    pub already_done: usize,
    /// Failed trials left out (no `--rerun-failed`).
    pub skipped_failed: usize,
}

/// Why Slurm could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// `sbatch` could not be started.
    #[error("cannot run `{command}`: {source} (is Slurm installed and on PATH?)")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// `sbatch` refused the job.
    #[error("`{command}` failed ({status}): {stderr}")]
    Refused {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        stderr: String,
    },
}

/// Writes the trials, the script and the log folder, then submits the script (unless
/// `no_submit`) and records the job in `sweep.toml`.
///
/// # Errors
/// When files cannot be written or `sbatch` fails.
pub fn submit(plan: &SweepPlan, options: &SlurmOptions) -> Result<SlurmReport, OpError> {
    record::write_trials(plan)?;
    let (todo, already_done, failed) = super::local::select(plan, options.rerun_failed);
    let indices: Vec<usize> = todo.iter().map(|t| t.index).collect();
    let array = array_spec(&indices, options.max_parallel);
    let logs = absolute(&plan.dir.join(SLURM_LOGS_DIR));
    std::fs::create_dir_all(&logs).map_err(GraphError::io("creating", &logs))?;
    let script_path = plan.dir.join(SCRIPT_FILE);
    let script = script(plan, options, &array, &logs);
    write_atomic(&script_path, script.as_bytes())?;
    let rungs = plan.definition.early_stop.map(|h| h.rungs(plan.epochs));
    if rungs.is_some() {
        let path = plan.dir.join(HALVING_SCRIPT_FILE);
        write_atomic(&path, halving_script(plan, options, &logs).as_bytes())?;
    }
    let mut rec = SlurmRecord {
        job_id: None,
        array: array.clone(),
        script: absolute(&script_path).display().to_string(),
        submitted_at: None,
        rung: rungs.as_ref().map(|_| 1),
        max_parallel: options.max_parallel,
    };
    if !todo.is_empty() && !options.no_submit {
        let first = rungs.as_deref().filter(|r| r.len() > 1).map(|r| r[0]);
        let job = submit_rung(&plan.dir, &array, first)?;
        if first.is_some() {
            submit_follower(&plan.dir, &job, 1)?;
        }
        rec.job_id = Some(job);
        rec.submitted_at = Some(crate::ops::run::now());
    }
    let rows = record::gather(plan);
    record::write_summary(plan, &rows, Some(&rec))?;
    Ok(SlurmReport {
        record: rec,
        submitted: todo.len(),
        already_done,
        skipped_failed: failed.len(),
    })
}

/// Submits the trial array `array` (an sbatch `--array` spec) of the sweep in `dir`,
/// pausing its trainings after epoch `stop_after`; returns the job id.
fn submit_rung(dir: &Path, array: &str, stop_after: Option<u32>) -> Result<String, SlurmError> {
    let mut args = vec![
        format!("--array={array}"),
        absolute(&dir.join(SCRIPT_FILE)).display().to_string(),
    ];
    args.extend(stop_after.map(|e| e.to_string()));
    sbatch(&args)
}

/// Runs `sbatch --parsable args`; returns the job id (it prints `jobid` or `jobid;cluster`).
fn sbatch(args: &[String]) -> Result<String, SlurmError> {
    let mut all = vec!["--parsable".to_owned()];
    all.extend_from_slice(args);
    let out = run_command("sbatch", &all)?;
    Ok(out.trim().split(';').next().unwrap_or_default().to_owned())
}

/// Submits the job that closes rung `rung` once job `after` has ended.
fn submit_follower(dir: &Path, after: &str, rung: usize) -> Result<String, SlurmError> {
    sbatch(&[
        format!("--dependency=afterany:{after}"),
        absolute(&dir.join(HALVING_SCRIPT_FILE))
            .display()
            .to_string(),
        rung.to_string(),
    ])
}

/// What closing a rung on Slurm did.
#[derive(Debug)]
pub struct RungReport {
    /// The rung closed (from 1) and its epochs.
    pub rung: (usize, u32),
    /// Trials that go on.
    pub promoted: usize,
    /// Trials stopped.
    pub stopped: usize,
    /// The next rung's array job, if one was submitted.
    pub next_job: Option<String>,
}

/// Closes rung `rung` of a halving sweep submitted to Slurm (what `halving.sbatch` runs):
/// the same promotions as on one machine, then the next rung's array and its follower.
///
/// # Errors
/// When the sweep is not a halving one, the rung does not exist, files cannot be written
/// or `sbatch` fails.
pub fn next_rung(sweep_dir: &Path, runs_dir: &Path, rung: usize) -> Result<RungReport, OpError> {
    let plan = record::read_plan(sweep_dir, runs_dir)?;
    let Some(halving) = plan.definition.early_stop else {
        return Err(OpError::Usage(format!(
            "sweep {} has no sweep.early_stop: there are no rungs to close",
            plan.id
        )));
    };
    let rungs = halving.rungs(plan.epochs);
    let Some(&epochs) = rung.checked_sub(1).and_then(|i| rungs.get(i)) else {
        return Err(OpError::Usage(format!(
            "sweep {} has rungs 1 to {}; there is no rung {rung}",
            plan.id,
            rungs.len()
        )));
    };
    let reached: Vec<super::TrialSpec> = record::gather(&plan)
        .into_iter()
        .filter(|r| {
            r.state == TrialState::Ok
                || (r.state == TrialState::Paused
                    && r.record.as_ref().and_then(|x| x.rung_epochs) == Some(epochs))
        })
        .map(|r| r.spec)
        .collect();
    let (promoted, stopped) = super::halving::close_rung(&plan, halving, epochs, &reached)?;
    let mut rec = record::read_slurm(sweep_dir).unwrap_or_default();
    let mut next_job = None;
    if let Some(&next) = rungs.get(rung) {
        let indices: Vec<usize> = promoted
            .iter()
            .filter(|(t, _)| record::state_of(sweep_dir, runs_dir, &t.id) != TrialState::Ok)
            .map(|(t, _)| t.index)
            .collect();
        if !indices.is_empty() {
            let last = rung + 1 == rungs.len();
            let array = array_spec(&indices, rec.max_parallel);
            let job = submit_rung(sweep_dir, &array, (!last).then_some(next))?;
            if !last {
                submit_follower(sweep_dir, &job, rung + 1)?;
            }
            rec.array = array;
            rec.job_id = Some(job.clone());
            rec.rung = Some(rung + 1);
            rec.submitted_at = Some(crate::ops::run::now());
            next_job = Some(job);
        }
    }
    let rows = record::gather(&plan);
    record::write_summary(&plan, &rows, Some(&rec))?;
    Ok(RungReport {
        rung: (rung, epochs),
        promoted: promoted.len(),
        stopped,
        next_job,
    })
}

/// `0-3,5,7-9%2`: the indices as ranges, with the concurrency limit.
pub fn array_spec(indices: &[usize], max_parallel: Option<usize>) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    let mut spec = parts.join(",");
    if let Some(p) = max_parallel.filter(|p| *p > 0) {
        let _ = write!(spec, "%{p}");
    }
    spec
}

fn script(plan: &SweepPlan, options: &SlurmOptions, array: &str, logs: &Path) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let mut line = |l: String| {
        s.push_str("#SBATCH ");
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("--job-name=geoexp-{}-{}", plan.name, plan.id));
    line(format!("--array={array}"));
    line(format!("--output={}/%A_%a.out", logs.display()));
    if let Some(g) = options.gpus_per_task {
        line(format!("--gpus-per-task={g}"));
    }
    if let Some(c) = options.cpus_per_task {
        line(format!("--cpus-per-task={c}"));
    }
    queue_lines(options).into_iter().for_each(line);
    let cwd = std::env::current_dir().unwrap_or_default();
    let _ = write!(
        s,
        "\n# Written by geoexp for sweep {id} ({n} trials; see trials.jsonl beside this file).\n\
         # Each task runs one trial; a task that finds its trial done exits at once.\n\
         set -euo pipefail\n\
         cd {cwd}\n\
         # A rung of successive halving passes the epoch to pause after as the argument.\n\
         exec {exe} --runs-dir {runs} sweep --trial {id} \"$SLURM_ARRAY_TASK_ID\" \
         ${{1:+--stop-after-epoch \"$1\"}}\n",
        id = plan.id,
        n = plan.trials.len(),
        cwd = shell_quote(&cwd.display().to_string()),
        exe = shell_quote(&options.exe.display().to_string()),
        runs = shell_quote(&absolute(&plan.runs_dir).display().to_string()),
    );
    s
}

/// The one-task job that closes a rung (its number the argument) and submits the next.
fn halving_script(plan: &SweepPlan, options: &SlurmOptions, logs: &Path) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let mut line = |l: String| {
        s.push_str("#SBATCH ");
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("--job-name=geoexp-{}-{}-rungs", plan.name, plan.id));
    line(format!("--output={}/rung_%j.out", logs.display()));
    line("--ntasks=1".into());
    queue_lines(options).into_iter().for_each(line);
    let cwd = std::env::current_dir().unwrap_or_default();
    let _ = write!(
        s,
        "\n# Written by geoexp for sweep {id}: closes a rung of successive halving once its \
         array has ended,\n# then submits the next rung's array and this script again.\n\
         set -euo pipefail\n\
         cd {cwd}\n\
         exec {exe} --runs-dir {runs} sweep --next-rung {id} \"$1\"\n",
        id = plan.id,
        cwd = shell_quote(&cwd.display().to_string()),
        exe = shell_quote(&options.exe.display().to_string()),
        runs = shell_quote(&absolute(&plan.runs_dir).display().to_string()),
    );
    s
}

/// The `#SBATCH` options every job of the sweep takes: partition, time, and the extra
/// lines (an account, memory).
fn queue_lines(options: &SlurmOptions) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(p) = &options.partition {
        lines.push(format!("--partition={p}"));
    }
    if let Some(t) = &options.time {
        lines.push(format!("--time={t}"));
    }
    for extra in &options.extra {
        let extra = extra.trim();
        lines.push(
            extra
                .strip_prefix("#SBATCH")
                .unwrap_or(extra)
                .trim()
                .to_owned(),
        );
    }
    lines
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    }
}

fn run_command(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| SlurmError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(SlurmError::Refused {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Per array index, what Slurm says about the task: `squeue -t all` knows queued, running
/// and recently finished tasks; `sacct` (where accounting is enabled) is asked only when
/// squeue no longer knows the job. What could not be asked is in the second value.
pub fn task_states(job_id: &str) -> (BTreeMap<usize, String>, Vec<String>) {
    let mut states = BTreeMap::new();
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let squeue = run_command(
        "squeue",
        &args(&["-h", "-r", "-t", "all", "-j", job_id, "-o", "%i %T"]),
    );
    match &squeue {
        Ok(out) => {
            for line in out.lines() {
                let mut cols = line.split_whitespace();
                if let (Some(id), Some(state)) = (cols.next(), cols.next())
                    && let Some(index) = array_index(id)
                {
                    states.insert(index, state.to_owned());
                }
            }
            if !states.is_empty() {
                return (states, Vec::new());
            }
        }
        // A job that aged out of the controller makes squeue say "Invalid job id".
        Err(SlurmError::Refused { stderr, .. }) if stderr.contains("Invalid job id") => {}
        Err(_) => {}
    }
    let mut problems = Vec::new();
    match run_command(
        "sacct",
        &args(&["-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode"]),
    ) {
        Ok(out) => {
            for line in out.lines() {
                let cols: Vec<&str> = line.split('|').collect();
                if let [id, state, code, ..] = cols[..]
                    && let Some(index) = array_index(id)
                {
                    let state = state.split_whitespace().next().unwrap_or(state);
                    let shown = if code == "0:0" {
                        state.to_owned()
                    } else {
                        format!("{state} (exit {code})")
                    };
                    states.insert(index, shown);
                }
            }
        }
        Err(e) => {
            if let Err(q) = squeue {
                problems.push(q.to_string());
            }
            problems.push(format!("job {job_id} has left the queue and {e}"));
        }
    }
    (states, problems)
}

/// `123_4` → 4. Pending ranges (`123_[5-7%2]`) are left out: they have no status yet.
fn array_index(job: &str) -> Option<usize> {
    job.split_once('_')?.1.parse().ok()
}

/// The sweep record refreshed from the trials' status files and Slurm.
#[derive(Debug)]
pub struct StatusReport {
    /// The plan read back from `trials.jsonl` and `sweep.toml`.
    pub plan: SweepPlan,
    /// Every trial.
    pub rows: Vec<record::TrialRow>,
    /// The submission, if the sweep was submitted to Slurm.
    pub slurm: Option<SlurmRecord>,
    /// Slurm's view of each array task, by index.
    pub tasks: BTreeMap<usize, String>,
    /// What could not be asked of Slurm.
    pub problems: Vec<String>,
}

/// Gathers a sweep's state and rewrites `sweep.toml`, `summary.csv` and the heatmap.
///
/// # Errors
/// When the sweep folder cannot be read or written.
pub fn status(sweep_dir: &Path, runs_dir: &Path) -> Result<StatusReport, OpError> {
    let plan = super::record::read_plan(sweep_dir, runs_dir)?;
    let rows = record::gather(&plan);
    let slurm = record::read_slurm(sweep_dir);
    let (tasks, problems) = match slurm.as_ref().and_then(|s| s.job_id.as_deref()) {
        Some(job) => task_states(job),
        None => (BTreeMap::new(), Vec::new()),
    };
    record::write_summary(&plan, &rows, slurm.as_ref())?;
    Ok(StatusReport {
        plan,
        rows,
        slurm,
        tasks,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_compress_runs_of_indices() {
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[0, 2, 3, 4, 7], None), "0,2-4,7");
        assert_eq!(array_spec(&[5], Some(0)), "5");
    }

    #[test]
    fn array_task_ids_give_their_index() {
        assert_eq!(array_index("1234_7"), Some(7));
        assert_eq!(array_index("1234_[5-7%2]"), None);
        assert_eq!(array_index("1234"), None);
    }

    #[test]
    fn paths_with_spaces_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
