//! `geoexp predict`.

use std::path::PathBuf;

use anyhow::Result;

use crate::ops::predict::{PredictOptions, predict, write_csv};

use super::{Ctx, ExitStatus};

/// Predict where the photos of each `<uuid>/{0,90,180,270}.jpg` folder were taken, with a
/// trained checkpoint, and write the competition CSV `uuid,latitude,longitude` (sorted by
/// uuid).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
MODEL is a checkpoint file (.safetensors), a run folder (runs/golf/<run-id>, whose \
checkpoints/best is used), a run id or unique prefix (looked up under --runs-dir), or a \
model name under --models. Folders with a missing or unreadable view are listed on stderr \
and left out; --strict makes them an error instead.

Exit status: 0 done, 2 bad arguments, an unusable model, or (with --strict) a folder that \
cannot be predicted.")]
pub struct Args {
    /// Checkpoint file, run folder, run id, or model name under --models.
    #[arg(value_name = "MODEL")]
    model: String,
    /// Directory of <uuid>/{0,90,180,270}.jpg folders (or a dataset directory with
    /// data.csv and images/).
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Write the CSV here (replaced atomically) instead of to stdout.
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Where model names are looked up, as `geoexp serve --models`.
    #[arg(long, env = "GEOEXP_SERVE_MODELS", value_name = "DIR")]
    models: Option<PathBuf>,
    /// Which checkpoint of a run: best (by train.monitor) or last.
    #[arg(long, default_value = "best", value_parser = ["best", "last"])]
    checkpoint: String,
    /// Move predictions that fall outside the boundary (in the sea, abroad) to the nearest
    /// point on land.
    #[arg(long)]
    snap_to_land: bool,
    /// The boundary for --snap-to-land: an ISO country code (HR) or a GeoJSON file
    /// [default: the run's classes.boundary].
    #[arg(long, value_name = "SPEC", requires = "snap_to_land")]
    boundary: Option<String>,
    /// Fail on a folder that cannot be predicted instead of skipping it.
    #[arg(long)]
    strict: bool,
    /// Locations per forward pass.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Device: cpu, cuda, cuda:N, or auto (CUDA when built with it and present).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Refuse views that declare more than this many million pixels (their folder is
    /// skipped), before decoding them.
    #[arg(long, default_value_t = crate::images::decode::MAX_PIXELS / 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_megapixels: u64,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let to_stdout = args.out.is_none();
    let report = predict(
        &PredictOptions {
            model: args.model,
            models_dir: args.models,
            runs_dir: ctx.global.runs_dir.clone(),
            checkpoint: args.checkpoint,
            images: args.images,
            out: args.out.clone(),
            snap_to_land: args.snap_to_land,
            boundary: args.boundary,
            strict: args.strict,
            batch_size: args.batch_size as usize,
            device: args.device,
            max_megapixels: args.max_megapixels,
        },
        &ctx.reporter,
    )?;
    ctx.reporter.clear();
    for s in &report.skipped {
        ctx.reporter
            .warn(&format!("skipped {}: {}", s.uuid, s.reason));
    }
    if to_stdout {
        write_csv(&report.rows, std::io::stdout().lock())?;
    }
    let mut summary = format!(
        "predicted {} location(s) with {}",
        report.rows.len(),
        report.checkpoint.display()
    );
    if !report.skipped.is_empty() {
        summary.push_str(&format!(", skipped {}", report.skipped.len()));
    }
    if args.snap_to_land {
        summary.push_str(&format!(", {} moved onto land", report.snapped));
    }
    if let Some(out) = &args.out {
        summary.push_str(&format!(" → {}", out.display()));
    }
    if to_stdout {
        // stdout is the CSV; the summary must not end up in it.
        if !ctx.global.quiet {
            eprintln!("{summary}");
        }
    } else {
        ctx.reporter.line(&summary);
    }
    Ok(ExitStatus::Success)
}
