//! Flags shared by several commands, defined once.

use std::path::PathBuf;

use clap::Args;

use crate::experiment::LoadOptions;

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output (-v info, -vv debug, -vvv trace); or set GEOEXP_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors: no progress bars, no per-stage lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Runs directory: manifests under <runs>/<name>/<run-id>/, the cache under <runs>/.cache/.
    #[arg(
        long,
        global = true,
        env = "GEOEXP_RUNS_DIR",
        default_value = "runs",
        value_name = "DIR"
    )]
    pub runs_dir: PathBuf,
}

/// The experiment file and its overrides.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// Experiment file (TOML).
    #[arg(value_name = "EXPERIMENT")]
    pub file: PathBuf,
    /// Override a value, e.g. `--set train.lr=3e-4` (repeatable; applied after the file and
    /// GEOEXP_SECTION__KEY environment variables).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl ExperimentArgs {
    /// What the experiment loader needs.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            file: self.file.clone(),
            sets: self.sets.clone(),
            env: None,
            trial: Vec::new(),
        }
    }
}

/// `--format text|json`, for commands whose report is text for people or JSON for programs.
#[derive(Debug, Args)]
pub struct ReportFormat {
    /// Output format: text for people, json for programs.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// How a report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text.
    Text,
    /// Pretty JSON.
    Json,
}
