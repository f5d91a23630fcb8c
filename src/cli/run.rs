//! `geoexp run`.

use anyhow::Result;

use crate::graph::GraphError;
use crate::ops::OpError;
use crate::ops::run::{RunOptions, run as run_experiment};
use crate::stages::Budget;

use super::{Ctx, ExitStatus, ExperimentArgs};

/// Run an experiment: every stage that is not cached runs; then the run's manifest is
/// written to <runs>/<name>/<run-id>/manifest.toml.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 done (or paused by --stop-after-epoch), 1 a stage failed or the machine did (a full disk, an I/O \
                  error), 2 bad configuration, arguments or inputs (nothing ran)."
)]
pub struct Args {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Stop after this stage (and the stages it needs).
    #[arg(long, value_name = "STAGE")]
    until: Option<String>,
    /// Recompute this stage and everything after it, even when cached (repeatable).
    #[arg(long, value_name = "STAGE")]
    force: Vec<String>,
    /// Train to epoch N of train.epochs, then pause, keeping the training's checkpoint:
    /// running again (without it, or with a larger N) continues from there, with no epoch
    /// recomputed. Stage keys do not change; the manifest is written once the run
    /// completes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    stop_after_epoch: Option<u32>,
    /// Also write the run's HTML report (report.html in the run folder; see `geoexp report`).
    #[arg(long)]
    report: bool,
}

/// The headline of an evaluated run: test error against the train-mean baseline.
fn test_summary(manifest: &crate::graph::Manifest) -> Option<String> {
    let r = &manifest.stages.get(crate::stages::evaluate::NAME)?.results;
    let get = |k: &str| r.get(k).and_then(serde_json::Value::as_f64);
    let mean = get("test/haversine_km_mean")?;
    let baseline = get("test/baseline_km_mean")?;
    Some(format!(
        "test       mean {mean:.1} km, median {:.1} km, within 25 km {:.1}%, GeoGuessr score {:.0} (train-mean baseline: mean {baseline:.1} km)",
        get("test/haversine_km_median")?,
        100.0 * get("test/acc_25km")?,
        get("test/geoguessr_score")?,
    ))
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let options = RunOptions {
        experiment: args.experiment.load_options(),
        runs_dir: ctx.global.runs_dir.clone(),
        until: args.until,
        force: args.force,
        command: std::env::args().collect(),
        budget: Budget {
            train_epochs: args.stop_after_epoch,
        },
    };
    let report = match run_experiment(&options, &ctx.reporter) {
        Err(OpError::Graph(GraphError::Paused { .. })) => {
            ctx.reporter.line(
                "run paused: running it again (without --stop-after-epoch, or with a larger N) \
                 continues from there; its manifest is written when it completes",
            );
            return Ok(ExitStatus::Success);
        }
        other => other?,
    };
    if let Some(line) = test_summary(&report.manifest) {
        ctx.reporter.line(&line);
    }
    ctx.reporter.line(&format!(
        "run {} → {}",
        report.run_id,
        report.run_dir.join("manifest.toml").display()
    ));
    if args.report {
        let path = super::report::write_run_report(&report.run_dir)?;
        super::report::print_written(ctx, &path);
    }
    Ok(ExitStatus::Success)
}
