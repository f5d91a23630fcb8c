//! `geoexp run`.

use anyhow::Result;

use crate::ops::run::{RunOptions, run as run_experiment};

use super::{Ctx, ExitStatus, ExperimentArgs};

/// Run an experiment: every stage that is not cached runs; then the run's manifest is
/// written to <runs>/<name>/<run-id>/manifest.toml.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 done, 1 a stage failed, 2 bad configuration or arguments.")]
pub struct Args {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Stop after this stage (and the stages it needs).
    #[arg(long, value_name = "STAGE")]
    until: Option<String>,
    /// Recompute this stage and everything after it, even when cached (repeatable).
    #[arg(long, value_name = "STAGE")]
    force: Vec<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let options = RunOptions {
        experiment: args.experiment.load_options(),
        runs_dir: ctx.global.runs_dir.clone(),
        until: args.until,
        force: args.force,
        command: std::env::args().collect(),
    };
    let report = run_experiment(&options, &ctx.reporter)?;
    ctx.reporter.line(&format!(
        "run {} → {}",
        report.run_id,
        report.run_dir.join("manifest.toml").display()
    ));
    Ok(ExitStatus::Success)
}
