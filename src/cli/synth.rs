//! `geoexp synth`.

use std::path::PathBuf;

use anyhow::Result;

use crate::dataset::synth::SynthOptions;
use crate::ops::synth::{SynthRequest, synth};

use super::{Ctx, ExitStatus};

/// Write a synthetic dataset in the real on-disk layout: data.csv and
/// images/<uuid>/{0,90,180,270}.jpg. Locations lie on land inside the boundary, clustered
/// like towns and roads; each view's pixels vary smoothly with the location (sky, terrain,
/// palette, sea toward the coast), so a CNN can learn where it is. Deterministic by seed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder; must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of locations.
    #[arg(long, default_value_t = 1500)]
    locations: usize,
    /// Side of each square view in pixels.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=4096))]
    image_size: u32,
    /// Generator seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// ISO country code or GeoJSON file to sample inside.
    #[arg(long, default_value = "HR")]
    boundary: String,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    if args.locations == 0 {
        anyhow::bail!("--locations must be at least 1");
    }
    let started = std::time::Instant::now();
    let summary = synth(
        &SynthRequest {
            out: args.out.clone(),
            options: SynthOptions {
                locations: args.locations,
                image_size: args.image_size,
                seed: args.seed,
            },
            boundary: args.boundary,
        },
        &ctx.reporter,
    )?;
    ctx.reporter.line(&format!(
        "wrote {} locations ({} images) to {} in {}",
        summary.locations,
        summary.images,
        args.out.display(),
        super::console::format_duration(started.elapsed())
    ));
    Ok(ExitStatus::Success)
}
