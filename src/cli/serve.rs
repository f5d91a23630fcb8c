//! `geoexp serve`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use bytesize::ByteSize;

use crate::serve::{DEFAULT_PORT, ServeConfig, serve};

use super::{Ctx, ExitStatus};

/// Serve checkpoints over HTTP: upload street-view photos, get coordinates and the most
/// probable grid cells back. GET / is an upload page; GET /openapi.json describes the API.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Endpoints:
  GET  /models                                   names of the checkpoints in --models
  GET  /model/NAME                               backbone, task, class centroids
  POST /model/NAME/predict-images                multipart `images` files, one answer each
  POST /model/NAME/predict-cardinal-images       files named 0, 90, 180, 270: one answer
  POST /model/NAME/predict-directory             {\"dataset_directory_path\": DIR under --data-root}

A model NAME is <NAME>.safetensors in --models (copy a run's checkpoints/best.safetensors \
there); new files are served without a restart. Nothing outside --models and --data-root is \
read. Every flag can also be set with its GEOEXP_SERVE_* variable.")]
pub struct Args {
    /// Directory of checkpoints (<name>.safetensors).
    #[arg(long, env = "GEOEXP_SERVE_MODELS", value_name = "DIR")]
    models: PathBuf,
    /// Address to listen on; 0.0.0.0 opens the server to the network.
    #[arg(long, env = "GEOEXP_SERVE_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0: any free port; the address is printed).
    #[arg(long, env = "GEOEXP_SERVE_PORT", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// The only directory tree predict-directory may read [default: predict-directory
    /// disabled].
    #[arg(long, env = "GEOEXP_SERVE_DATA_ROOT", value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Most locations in one forward pass: concurrent requests to a model are batched up
    /// to this.
    #[arg(long, env = "GEOEXP_SERVE_BATCH_SIZE", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Largest uploaded file (e.g. 20MiB, 500KB, 1048576).
    #[arg(
        long,
        env = "GEOEXP_SERVE_MAX_UPLOAD",
        default_value = "20MiB",
        value_name = "SIZE"
    )]
    max_upload: ByteSize,
    /// Most files in one request.
    #[arg(long, env = "GEOEXP_SERVE_MAX_FILES", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_files: u32,
    /// Most models kept in memory; the least recently used is unloaded first.
    #[arg(long, env = "GEOEXP_SERVE_MAX_MODELS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_models: u32,
    /// Most probable classes listed in each answer.
    #[arg(long, env = "GEOEXP_SERVE_TOP_CLASSES", default_value_t = 5)]
    top_classes: u32,
    /// Requests decoded at once [default: the number of CPU cores].
    #[arg(long, env = "GEOEXP_SERVE_WORKERS", value_parser = clap::value_parser!(u32).range(1..))]
    workers: Option<u32>,
    /// Device: cpu, cuda, cuda:N, or auto (CUDA when built with it and present).
    #[arg(long, env = "GEOEXP_SERVE_DEVICE", default_value = "auto")]
    device: String,
    /// Refuse images that declare more than this many million pixels (400), before
    /// decoding them.
    #[arg(long, env = "GEOEXP_SERVE_MAX_MEGAPIXELS", default_value_t = crate::images::decode::MAX_PIXELS / 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_megapixels: u64,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let mut config = ServeConfig::new(args.models);
    config.host = args.host;
    config.port = args.port;
    config.data_root = args.data_root;
    config.batch_size = args.batch_size as usize;
    config.max_upload_bytes = args.max_upload.as_u64();
    config.max_files = args.max_files as usize;
    config.max_models = args.max_models as usize;
    config.top_classes = args.top_classes as usize;
    config.workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        |w| w as usize,
    );
    config.device = args.device;
    config.max_megapixels = args.max_megapixels;
    let models_dir = config.models_dir.clone();
    serve(&config, |addr| {
        // Always printed (even with -q): scripts and tests read the address from it.
        println!(
            "serving {} on http://{addr}/ (Ctrl-C stops)",
            models_dir.display()
        );
        if !ctx.global.quiet && !addr.ip().is_loopback() {
            ctx.reporter.warn(
                "warning: listening beyond loopback; anyone who can reach this port can use the models",
            );
        }
    })?;
    Ok(ExitStatus::Success)
}
