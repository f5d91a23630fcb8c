//! `geoexp sweep`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use comfy_table::{Table, presets::NOTHING};

use crate::experiment::LoadOptions;
use crate::ops::sweep::local::{LocalOptions, SweepEvents, run_local};
use crate::ops::sweep::record::{TrialRow, TrialState, ranked};
use crate::ops::sweep::slurm::{SlurmOptions, next_rung, status, submit};
use crate::ops::sweep::{
    SweepOptions, SweepPlan, TrialOutcome, TrialSpec, dry_run, expand, find_sweep, record,
    run_trial,
};

use super::console::{Console, format_duration};
use super::values::{self, number, plain as show_value};
use super::{Ctx, ExitStatus};

/// Run a grid or a random search of trials: the experiment's [sweep] table plus --grid
/// flags. Trials share every cached stage; each is an ordinary run with its own manifest.
/// The sweep is recorded under <runs>/sweeps/<sweep-id>/ (sweep.toml, summary.csv, and
/// heatmap.png for a two-axis grid), and running it again runs only what is missing or was
/// interrupted.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Values: a list in the file (\"train.lr\" = [1e-3, 3e-4]) or on the command line
(--grid train.lr=1e-3,3e-4), or range(start, stop, step) (stop excluded),
logspace(a, b, n) (n values from 10^a to 10^b), choice(v1, v2, ...).
In the [sweep] table, zip = [[\"train.lr\", \"train.batch_size\"]] pairs axes,
exclude = [{ \"train.lr\" = 1e-3, \"classes.spacing\" = 0.3 }] drops combinations and
seeds = N repeats every trial with seeds seed, seed+1, ...

Random search: method = \"random\", trials = N and seed = S (the sampling seed, default 0)
draw N distinct trials; an axis is then uniform(a, b), loguniform(a, b), int(a, b) (both
ends included) or a list to pick from. Draws keep 3 significant digits; --grid axes are
crossed with the drawn trials.

Successive halving: early_stop = { kind = \"halving\", min_epochs = 1, reduction = 3 }
trains every trial to min_epochs, then only the best third (by train.monitor) on to
3 × min_epochs, and so on up to train.epochs; the rest stop, resumable. On Slurm, one
array job per rung.

Exit status: 0 every trial finished, 1 a trial failed, 2 bad configuration or arguments.")]
pub struct Args {
    /// Experiment file (TOML) with a [sweep] table, or use --grid.
    #[arg(
        value_name = "EXPERIMENT",
        required_unless_present_any = ["trial", "status", "next_rung"]
    )]
    file: Option<PathBuf>,
    /// Override a value in every trial, e.g. `--set train.epochs=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Add or replace an axis, e.g. `--grid train.lr=1e-3,3e-4` (repeatable).
    #[arg(long, value_name = "KEY=V1,V2,...")]
    grid: Vec<String>,
    /// Repeat every trial with this many seeds (replaces the table's `seeds`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    seeds: Option<u64>,
    /// Refuse sweeps of more trials than this (counted before `exclude`, and before any
    /// is expanded).
    #[arg(long, value_name = "N", default_value_t = crate::ops::sweep::DEFAULT_MAX_TRIALS)]
    max_trials: u64,
    /// Show the trials and which stages each would compute or find cached; run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Trials at once (separate processes). With --executor slurm: the array's %N limit.
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,
    /// Stop at the first failed trial (running trials are stopped and resume next time).
    #[arg(long)]
    fail_fast: bool,
    /// Run trials that failed in an earlier invocation again (by default they are
    /// reported, not retried).
    #[arg(long)]
    rerun_failed: bool,
    /// When the trials are done, write the sweep's HTML report and each finished trial's
    /// (report.html in the sweep and run folders; see `geoexp report`). With --executor
    /// slurm, run `geoexp report --sweep ID` once the jobs finish.
    #[arg(long, conflicts_with = "dry_run")]
    report: bool,
    /// Where trials run.
    #[arg(long, value_enum, default_value = "local")]
    executor: Executor,
    /// Slurm partition.
    #[arg(long, help_heading = "Slurm")]
    partition: Option<String>,
    /// Slurm time limit per task, e.g. 02:00:00.
    #[arg(long, help_heading = "Slurm")]
    time: Option<String>,
    /// GPUs per task.
    #[arg(long, value_name = "N", help_heading = "Slurm")]
    gpus_per_task: Option<u32>,
    /// CPUs per task.
    #[arg(long, value_name = "N", help_heading = "Slurm")]
    cpus_per_task: Option<u32>,
    /// An extra #SBATCH line, e.g. --sbatch=--mem=16G (repeatable).
    #[arg(
        long = "sbatch",
        value_name = "OPTION",
        help_heading = "Slurm",
        allow_hyphen_values = true
    )]
    sbatch: Vec<String>,
    /// Write the sbatch script and trials, but do not submit.
    #[arg(long, help_heading = "Slurm")]
    no_submit: bool,
    /// Run one trial of an expanded sweep: what each Slurm task (and each --jobs child)
    /// runs.
    #[arg(long, num_args = 2, value_names = ["SWEEP_ID", "INDEX"], conflicts_with_all = ["file", "status", "dry_run"])]
    trial: Vec<String>,
    /// With --trial: pause the trial's training after epoch N (a rung of successive
    /// halving; the sweep passes it to its tasks).
    #[arg(long, value_name = "N", requires = "trial", hide = true)]
    stop_after_epoch: Option<u32>,
    /// Close rung K of a halving sweep on Slurm and submit the next (what the sweep's
    /// `halving.sbatch` job runs).
    #[arg(long, num_args = 2, value_names = ["SWEEP_ID", "K"], hide = true, conflicts_with_all = ["file", "status", "dry_run", "trial"])]
    next_rung: Vec<String>,
    /// Show a sweep's trials with their state, Slurm's view of its tasks, and the ranking;
    /// refreshes sweep.toml and summary.csv.
    #[arg(long, value_name = "SWEEP_ID", conflicts_with_all = ["file", "dry_run"])]
    status: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Executor {
    /// On this machine.
    Local,
    /// As a Slurm array job.
    Slurm,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    if let [id, index] = &args.trial[..] {
        return one_trial(id, index, args.stop_after_epoch, ctx);
    }
    if let [id, rung] = &args.next_rung[..] {
        return close_rung(id, rung, ctx);
    }
    if let Some(id) = &args.status {
        return show_status(id, ctx);
    }
    let Some(file) = args.file.clone() else {
        anyhow::bail!("an experiment file is required");
    };
    let plan = expand(&SweepOptions {
        experiment: LoadOptions {
            file,
            sets: args.sets.clone(),
            env: None,
            trial: Vec::new(),
        },
        grid: args.grid.clone(),
        seeds: args.seeds,
        max_trials: args.max_trials,
        runs_dir: ctx.global.runs_dir.clone(),
    })?;
    if args.dry_run {
        return show_dry_run(&plan, ctx);
    }
    let exe = std::env::current_exe().context("finding the geoexp binary for trial tasks")?;
    match args.executor {
        Executor::Slurm => {
            let report = submit(
                &plan,
                &SlurmOptions {
                    partition: args.partition,
                    time: args.time,
                    gpus_per_task: args.gpus_per_task,
                    cpus_per_task: args.cpus_per_task,
                    max_parallel: args.jobs.map(|j| j as usize),
                    extra: args.sbatch,
                    no_submit: args.no_submit,
                    rerun_failed: args.rerun_failed,
                    exe,
                },
            )?;
            let c = &ctx.reporter;
            c.line(&format!(
                "sweep {}: {}, {} to run, {} done before{}",
                plan.id,
                trials(plan.trials.len()),
                report.submitted,
                report.already_done,
                if report.skipped_failed > 0 {
                    format!(
                        ", {} failed before (left out; --rerun-failed retries)",
                        report.skipped_failed
                    )
                } else {
                    String::new()
                }
            ));
            c.line(&format!("script {}", report.record.script));
            match &report.record.job_id {
                Some(job) => c.line(&format!(
                    "submitted job {job} (array {}); follow it with: geoexp sweep --status {}",
                    report.record.array, plan.id
                )),
                None if report.submitted == 0 => c.line("nothing to submit"),
                None => c.line("not submitted (--no-submit)"),
            }
            if args.report {
                c.line(&format!(
                    "the report is written once the trials finish: geoexp report --sweep {}",
                    plan.id
                ));
            }
            Ok(ExitStatus::Success)
        }
        Executor::Local => {
            let events = Printer {
                console: &ctx.reporter,
                keys: plan.keys(),
                monitor: plan.monitor.clone(),
                parallel: args.jobs.unwrap_or(1) > 1,
            };
            ctx.reporter.line(&format!(
                "sweep {} → {}: {}",
                plan.id,
                plan.dir.display(),
                trials(plan.trials.len())
            ));
            let report = run_local(
                &plan,
                &LocalOptions {
                    jobs: args.jobs.unwrap_or(1) as usize,
                    fail_fast: args.fail_fast,
                    rerun_failed: args.rerun_failed,
                    exe,
                    quiet_children: ctx.global.quiet,
                },
                &ctx.reporter,
                &events,
            )?;
            if report.already_done > 0 {
                ctx.reporter.line(&format!(
                    "{} finished before and not run again",
                    trials(report.already_done)
                ));
            }
            print_summary(&plan, &report.rows, ctx);
            if args.report {
                write_reports(&plan, &report.rows, ctx)?;
            }
            if !report.skipped_failed.is_empty() {
                ctx.reporter.warn(&format!(
                    "{} failed in an earlier invocation and not retried (use --rerun-failed)",
                    trials(report.skipped_failed.len())
                ));
            }
            if report.stopped_early {
                ctx.reporter.warn(
                    "stopped at the first failure (--fail-fast); run the sweep again to go on",
                );
            }
            let failed = report
                .rows
                .iter()
                .any(|r| matches!(r.state, TrialState::Failed | TrialState::Interrupted));
            Ok(if failed {
                ExitStatus::Failure
            } else {
                ExitStatus::Success
            })
        }
    }
}

/// `--report`: each finished trial's run report, then the sweep's (which links to them).
fn write_reports(plan: &SweepPlan, rows: &[TrialRow], ctx: &Ctx) -> Result<()> {
    let runs = rows
        .iter()
        .filter(|r| r.state == TrialState::Ok)
        .filter_map(|r| r.record.as_ref()?.run.clone());
    let mut written = 0;
    for run in runs {
        super::report::write_run_report(&plan.runs_dir.join(run))?;
        written += 1;
    }
    if written > 0 {
        let plural = if written == 1 { "" } else { "s" };
        ctx.reporter
            .line(&format!("{written} run report{plural} written"));
    }
    let path = super::report::write_sweep_report(&plan.dir, &plan.runs_dir)?;
    super::report::print_written(ctx, &path);
    Ok(())
}

/// What one Slurm task or `--jobs` child does.
fn one_trial(id: &str, index: &str, stop_after: Option<u32>, ctx: &Ctx) -> Result<ExitStatus> {
    let runs_dir = &ctx.global.runs_dir;
    let dir = find_sweep(runs_dir, id)?;
    let trials = record::read_trials(&dir)?;
    let trial = index
        .parse::<usize>()
        .ok()
        .and_then(|i| trials.get(i))
        .with_context(|| {
            format!(
                "sweep {id} has trials 0 to {}; there is no trial `{index}`",
                trials.len().saturating_sub(1)
            )
        })?;
    ctx.reporter
        .line(&format!("trial {} {} of sweep {id}", trial.index, trial.id));
    match run_trial(&dir, runs_dir, trial, stop_after, &ctx.reporter)? {
        TrialOutcome::Paused(r) => {
            ctx.reporter.line(&format!(
                "trial {} paused after epoch {}",
                trial.index,
                r.rung_epochs.unwrap_or_default()
            ));
            Ok(ExitStatus::Success)
        }
        TrialOutcome::Ran(r) | TrialOutcome::AlreadyDone(r) => {
            ctx.reporter.line(&format!(
                "trial {} ok → {}",
                trial.index,
                r.run.unwrap_or_default()
            ));
            Ok(ExitStatus::Success)
        }
        TrialOutcome::Failed(r) => {
            ctx.reporter.warn(&format!(
                "trial {} failed: {}",
                trial.index,
                r.error.unwrap_or_default()
            ));
            Ok(ExitStatus::Failure)
        }
    }
}

fn close_rung(id: &str, rung: &str, ctx: &Ctx) -> Result<ExitStatus> {
    let runs_dir = &ctx.global.runs_dir;
    let dir = find_sweep(runs_dir, id)?;
    let rung: usize = rung
        .parse()
        .with_context(|| format!("--next-rung {id} {rung}: the rung is a number from 1"))?;
    let report = next_rung(&dir, runs_dir, rung)?;
    let (k, epochs) = report.rung;
    ctx.reporter.line(&format!(
        "rung {k} (epoch {epochs}): {} go on, {} stop{}",
        report.promoted,
        report.stopped,
        report
            .next_job
            .map(|j| format!("; submitted job {j} for rung {}", k + 1))
            .unwrap_or_default()
    ));
    Ok(ExitStatus::Success)
}

fn show_status(id: &str, ctx: &Ctx) -> Result<ExitStatus> {
    let dir = find_sweep(&ctx.global.runs_dir, id)?;
    let report = status(&dir, &ctx.global.runs_dir)?;
    let plan = &report.plan;
    let c = &ctx.reporter;
    let counts = record::counts(&report.rows);
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    c.line(&format!(
        "sweep {} ({}): {} trials: {}",
        plan.id,
        plan.name,
        plan.trials.len(),
        counts.join(", ")
    ));
    if let Some(s) = &report.slurm {
        c.line(&format!(
            "slurm job {} array {}",
            s.job_id.as_deref().unwrap_or("(not submitted)"),
            s.array
        ));
    }
    for p in &report.problems {
        c.warn(&format!("could not ask Slurm: {p}"));
    }
    let mut table = Table::new();
    table.load_style(NOTHING);
    let mut header = vec!["#".to_owned(), "trial".into(), "state".into()];
    if report.slurm.is_some() {
        header.push("slurm".into());
    }
    let halving = plan.definition.early_stop.is_some();
    if halving {
        header.push("epochs".into());
    }
    header.extend(plan.keys());
    header.push(plan.monitor.clone());
    header.push("run / error".into());
    table.set_header(header);
    for r in &report.rows {
        let mut row = vec![
            r.spec.index.to_string(),
            r.spec.id.clone(),
            r.state.to_string(),
        ];
        if report.slurm.is_some() {
            row.push(
                report
                    .tasks
                    .get(&r.spec.index)
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
            );
        }
        if halving {
            row.push(depth(r));
        }
        row.extend(values(&r.spec, &plan.keys()));
        row.push(
            r.score(&plan.monitor)
                .map(|v| number(&plan.monitor, v))
                .unwrap_or_default(),
        );
        row.push(run_or_error(r));
        table.add_row(row);
    }
    c.line(values::table_text(&table).trim_end());
    c.line(&format!(
        "record: {}",
        dir.join(record::SWEEP_FILE).display()
    ));
    let failed = report.rows.iter().any(|r| r.state == TrialState::Failed);
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn show_dry_run(plan: &SweepPlan, ctx: &Ctx) -> Result<ExitStatus> {
    let dry = dry_run(plan)?;
    let c = &ctx.reporter;
    c.line(&format!(
        "sweep {} → {}: {} trials",
        plan.id,
        plan.dir.display(),
        plan.trials.len()
    ));
    if let Some(d) = &plan.draws {
        c.line(&format!(
            "random search: {} drawn with sweep.seed {} ({} duplicate and {} excluded \
             candidates dropped)",
            trials(d.trials as usize),
            d.seed,
            d.duplicates,
            d.excluded
        ));
    }
    if let Some(h) = plan.definition.early_stop {
        let rungs: Vec<String> = h.rungs(plan.epochs).iter().map(u32::to_string).collect();
        let (budget, full) = h.epoch_budget(plan.trials.len(), plan.epochs);
        c.line(&format!(
            "successive halving: rungs at epochs {}, keeping 1 in {} at each; at most {budget} \
             epochs of training against {full} for every trial to the end",
            rungs.join(", "),
            h.reduction
        ));
    }
    let mut table = Table::new();
    table.load_style(NOTHING);
    let stage_names: Vec<String> = dry.stages.iter().map(|(s, _, _)| s.clone()).collect();
    let mut header = vec!["#".to_owned(), "trial".into(), "state".into()];
    header.extend(plan.keys());
    header.extend(stage_names.iter().cloned());
    table.set_header(header);
    for t in &dry.trials {
        let mut row = vec![
            t.spec.index.to_string(),
            t.spec.id.clone(),
            t.state.to_string(),
        ];
        row.extend(values(&t.spec, &plan.keys()));
        for name in &stage_names {
            let cached = t.stages.iter().find(|(s, _)| s == name).map(|(_, c)| *c);
            row.push(match cached {
                Some(true) => "cached".into(),
                Some(false) => "run".into(),
                None => "-".into(),
            });
        }
        table.add_row(row);
    }
    c.line(values::table_text(&table).trim_end());
    let total: usize = dry.stages.iter().map(|(_, _, m)| m).sum();
    let parts: Vec<String> = dry
        .stages
        .iter()
        .map(|(s, n, m)| {
            if m == n {
                format!("{s} {m}")
            } else {
                format!("{s} {m} (of {n}; {} cached)", n - m)
            }
        })
        .collect();
    c.line(&format!(
        "stages to compute: {} — {total} in all, each shared stage once{}",
        parts.join(", "),
        if plan.definition.early_stop.is_some() {
            " (with halving, train and evaluate finish only for the last rung's trials)"
        } else {
            ""
        }
    ));
    Ok(ExitStatus::Success)
}

/// How far a trial of successive halving trained: `all`, a rung's epochs, or `-`.
fn depth(r: &TrialRow) -> String {
    match r.depth() {
        u32::MAX => "all".to_owned(),
        0 => "-".to_owned(),
        n => n.to_string(),
    }
}

/// `1 trial`, `3 trials`.
fn trials(n: usize) -> String {
    format!("{n} trial{}", if n == 1 { "" } else { "s" })
}

fn values(spec: &TrialSpec, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| spec.values.get(k).map(show_value).unwrap_or_default())
        .collect()
}

fn run_or_error(r: &TrialRow) -> String {
    let Some(rec) = &r.record else {
        return String::new();
    };
    match r.state {
        TrialState::Failed => first_line(rec.error.as_deref().unwrap_or_default()),
        _ => rec.run.clone().unwrap_or_default(),
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() > 100 {
        format!("{}…", line.chars().take(100).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// The ranked table, then every failure again.
fn print_summary(plan: &SweepPlan, rows: &[TrialRow], ctx: &Ctx) {
    let c = &ctx.reporter;
    let keys = plan.keys();
    let mut table = Table::new();
    table.load_style(NOTHING);
    let test = "test/haversine_km_mean";
    let halving = plan.definition.early_stop.is_some();
    let mut header = vec!["rank".to_owned(), "trial".into(), "state".into()];
    if halving {
        header.push("epochs".into());
    }
    header.extend(keys.iter().cloned());
    header.push(plan.monitor.clone());
    header.push(test.into());
    header.push("run".into());
    table.set_header(header);
    for (rank, r) in ranked(plan, rows).into_iter().enumerate() {
        let mut row = vec![
            (rank + 1).to_string(),
            r.spec.id.clone(),
            r.state.to_string(),
        ];
        if halving {
            row.push(depth(r));
        }
        row.extend(values(&r.spec, &keys));
        row.push(
            r.score(&plan.monitor)
                .map(|v| number(&plan.monitor, v))
                .unwrap_or_default(),
        );
        row.push(r.metric(test).map(|v| number(test, v)).unwrap_or_default());
        row.push(
            r.record
                .as_ref()
                .and_then(|x| x.run.clone())
                .unwrap_or_default(),
        );
        table.add_row(row);
    }
    c.line(&format!(
        "ranked by {} ({} is better){}:",
        plan.monitor,
        if plan.monitor_max { "higher" } else { "lower" },
        if plan.definition.early_stop.is_some() {
            "; trials stopped early rank after those that trained further, by train.monitor \
             at the epoch they stopped"
        } else {
            ""
        }
    ));
    c.line(values::table_text(&table).trim_end());
    let failures: Vec<&TrialRow> = rows
        .iter()
        .filter(|r| r.state == TrialState::Failed)
        .collect();
    for r in &failures {
        c.warn(&format!(
            "trial {} {} ({}) failed: {}",
            r.spec.index,
            r.spec.id,
            r.spec.label(&keys),
            r.record
                .as_ref()
                .and_then(|x| x.error.clone())
                .unwrap_or_default()
        ));
    }
    c.line(&format!(
        "sweep {}: {} → {}",
        plan.id,
        record::counts(rows)
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        plan.dir.join(record::SWEEP_FILE).display()
    ));
}

/// Prints trial starts and ends as they happen.
struct Printer<'a> {
    console: &'a Console,
    keys: Vec<String>,
    monitor: String,
    parallel: bool,
}

impl SweepEvents for Printer<'_> {
    fn trial_started(&self, trial: &TrialSpec, position: usize, total: usize) {
        self.console.line(&format!(
            "── trial {} [{}] {} ({position}/{total}{})",
            trial.index,
            trial.id,
            trial.label(&self.keys),
            if self.parallel { ", started" } else { "" }
        ));
    }

    fn trial_finished(&self, trial: &TrialSpec, outcome: &TrialOutcome) {
        let r = outcome.record();
        let took = r
            .duration_s
            .map(|s| format_duration(std::time::Duration::from_secs_f64(s)))
            .unwrap_or_default();
        match outcome {
            TrialOutcome::Failed(_) => self.console.warn(&format!(
                "✗ trial {} [{}] {} failed: {}",
                trial.index,
                trial.id,
                trial.label(&self.keys),
                r.error.as_deref().unwrap_or_default()
            )),
            TrialOutcome::AlreadyDone(_) => self.console.line(&format!(
                "✓ trial {} [{}] done before → {}",
                trial.index,
                trial.id,
                r.run.as_deref().unwrap_or_default()
            )),
            TrialOutcome::Ran(_) => self.console.line(&format!(
                "✓ trial {} [{}] {} {}{} {took}",
                trial.index,
                trial.id,
                trial.label(&self.keys),
                r.metrics
                    .get(&self.monitor)
                    .map(|v| format!("{} {} ", self.monitor, number(&self.monitor, *v)))
                    .unwrap_or_default(),
                r.run
                    .as_deref()
                    .map(|x| format!("→ {x}"))
                    .unwrap_or_default(),
            )),
            TrialOutcome::Paused(_) => self.console.line(&format!(
                "⏸ trial {} [{}] {} trained to epoch {} {took}",
                trial.index,
                trial.id,
                trial.label(&self.keys),
                r.rung_epochs.unwrap_or_default()
            )),
        }
    }

    fn rung_finished(
        &self,
        rung: usize,
        epochs: u32,
        promoted: &[(TrialSpec, Option<f64>)],
        stopped: usize,
    ) {
        let on: Vec<String> = promoted
            .iter()
            .map(|(t, v)| {
                let value = v.map_or("-".to_owned(), |v| number(&self.monitor, v));
                format!("{} ({value})", t.index)
            })
            .collect();
        self.console.line(&format!(
            "rung {rung} (epoch {epochs}): {} go on by {} at that epoch: trials {}; {stopped} \
             stop",
            promoted.len(),
            self.monitor.strip_prefix("best_").unwrap_or(&self.monitor),
            on.join(", ")
        ));
    }
}
