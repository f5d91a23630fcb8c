//! The command line: parsing, dispatch, error rendering and exit codes.
//!
//! Each subcommand is one file with `Args` and `run(args, &Ctx)`, which only turns flags
//! into an options struct for [`crate::ops`] and prints what comes back. This is the only
//! place that uses `anyhow` and prints.

mod args;
mod cache;
mod completions;
mod console;
mod diff;
mod fit_report;
mod gc;
mod ls;
mod man;
mod plan;
mod predict;
mod report;
mod run;
mod serve;
mod sweep;
mod synth;
mod values;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use args::{ExperimentArgs, GlobalArgs};

/// geoexp — declarative, content-cached image-geolocation experiments.
#[derive(Debug, Parser)]
#[command(name = "geoexp", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment: compile it into a run graph and execute the stages that are not
    /// cached.
    Run(run::Args),
    /// Show the run graph: each stage's key, whether it is cached, and if not, why.
    Plan(plan::Args),
    /// Run a grid or random search of trials that share cached stages, here or on Slurm.
    Sweep(sweep::Args),
    /// Write a synthetic dataset in the real on-disk layout (data.csv + images/).
    Synth(synth::Args),
    /// List runs: the config values that differ between them, and their final metrics.
    Ls(ls::Args),
    /// Compare two runs: config values, stage keys and why they changed, metrics, versions.
    Diff(diff::Args),
    /// Predict the locations of a directory of <uuid>/{0,90,180,270}.jpg folders with a
    /// trained checkpoint (CSV: uuid,latitude,longitude).
    Predict(predict::Args),
    /// Serve checkpoints over HTTP (upload page, prediction endpoints, OpenAPI).
    Serve(serve::Args),
    /// Show what the cache holds per stage: entries, size, referenced or not, trainings in
    /// progress.
    Cache(cache::Args),
    /// Remove cache entries no run references (and, when asked, the oldest runs).
    Gc(gc::Args),
    /// Write a self-contained HTML report of a run or a sweep.
    Report(report::Args),
    /// Print a shell completion script (bash, zsh, fish).
    Completions(completions::Args),
    /// Print the manual page, or write one per command into a folder.
    Man(man::Args),
    /// Check a run's cache entries against its manifest (re-hash every output), or
    /// recompute one of its stages and compare.
    Verify(verify::Args),
}

/// How the process ends. Documented in `--help`'s footer and README.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked.
    Success,
    /// The work itself failed: a stage returned an error.
    Failure,
    /// `diff --exit-code` found differences (as `diff` and `git diff --exit-code` exit 1).
    Different,
    /// The request was wrong (config, arguments) or geoexp hit an internal error.
    Error,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        match s {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure | ExitStatus::Different => ExitCode::from(1),
            ExitStatus::Error => ExitCode::from(2),
        }
    }
}

/// What every command gets besides its own flags.
pub struct Ctx {
    global: GlobalArgs,
    reporter: console::Console,
}

/// Parses the command line, runs the command, prints any error, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    let ctx = Ctx {
        reporter: console::Console::new(cli.global.quiet),
        global: cli.global,
    };
    let result = match cli.command {
        Command::Run(args) => run::run(args, &ctx),
        Command::Plan(args) => plan::run(args, &ctx),
        Command::Sweep(args) => sweep::run(args, &ctx),
        Command::Synth(args) => synth::run(args, &ctx),
        Command::Ls(args) => ls::run(args, &ctx),
        Command::Diff(args) => diff::run(args, &ctx),
        Command::Predict(args) => predict::run(args, &ctx),
        Command::Serve(args) => serve::run(args, &ctx),
        Command::Report(args) => report::run(args, &ctx),
        Command::Completions(args) => completions::run(args, &ctx),
        Command::Man(args) => man::run(args, &ctx),
        Command::Verify(args) => verify::run(args, &ctx),
        Command::Cache(args) => cache::run(args, &ctx),
        Command::Gc(args) => gc::run(args, &ctx),
    };
    match result {
        Ok(status) => status.into(),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            ctx.reporter.clear();
            eprintln!("error: {err:#}");
            let failure = err
                .downcast_ref::<crate::ops::OpError>()
                .is_some_and(crate::ops::OpError::is_stage_failure)
                || err
                    .downcast_ref::<crate::ops::verify::VerifyError>()
                    .is_some_and(crate::ops::verify::VerifyError::is_stage_failure)
                || err
                    .downcast_ref::<crate::ops::gc::GcError>()
                    .is_some_and(|e| matches!(e, crate::ops::gc::GcError::Removal { .. }));
            if failure {
                ExitStatus::Failure
            } else {
                ExitStatus::Error
            }
            .into()
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GEOEXP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("geoexp={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}
