//! `geoexp report`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::ops::diff::resolve;
use crate::ops::sweep::find_sweep;
use crate::report::{run_report, sweep_report, write_report};

use super::{Ctx, ExitStatus};

/// Write a self-contained HTML report of a run (metrics, stages, training curves, maps,
/// errors per class, the worst predictions with their views, the resolved config) or of a
/// sweep (ranking, heatmap, parameters against the metric, rungs).
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["run", "sweep"]))]
#[command(after_help = "\
A run is a manifest file, a run folder, or a run id: whole, a unique prefix, or name/id as \
`geoexp ls` prints it. A sweep is its id, a unique prefix, or its folder.

The report is written atomically to report.html in the run or sweep folder; it embeds its \
images and charts, so it opens anywhere without a network. `geoexp run --report` and \
`geoexp sweep --report` write it when they finish.

Exit status: 0 written, 2 the run or sweep cannot be found or read.")]
pub struct Args {
    /// The run: a run folder, its manifest, or a run id (prefix).
    #[arg(value_name = "RUN", conflicts_with = "sweep")]
    run: Option<PathBuf>,
    /// Report on this sweep instead.
    #[arg(long, value_name = "SWEEP_ID")]
    sweep: Option<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let path = match (&args.run, &args.sweep) {
        (_, Some(sweep)) => {
            let dir = find_sweep(&ctx.global.runs_dir, sweep)?;
            write_sweep_report(&dir, &ctx.global.runs_dir)?
        }
        (Some(run), None) => {
            let manifest = resolve(run, &ctx.global.runs_dir)?;
            write_run_report(manifest.parent().unwrap_or(Path::new(".")))?
        }
        (None, None) => unreachable!("clap requires RUN or --sweep"),
    };
    print_written(ctx, &path);
    Ok(ExitStatus::Success)
}

/// Writes `run_dir/report.html`.
pub(super) fn write_run_report(run_dir: &Path) -> Result<PathBuf> {
    let html = run_report(run_dir)
        .with_context(|| format!("writing the report of {}", run_dir.display()))?;
    Ok(write_report(run_dir, &html)?)
}

/// Writes `sweep_dir/report.html`.
pub(super) fn write_sweep_report(sweep_dir: &Path, runs_dir: &Path) -> Result<PathBuf> {
    let html = sweep_report(sweep_dir, runs_dir)
        .with_context(|| format!("writing the report of sweep {}", sweep_dir.display()))?;
    Ok(write_report(sweep_dir, &html)?)
}

/// `report → <path> (<size>)`.
pub(super) fn print_written(ctx: &Ctx, path: &Path) {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    ctx.reporter.line(&format!(
        "report → {} ({})",
        path.display(),
        bytesize::ByteSize::b(size).display().si()
    ));
}
