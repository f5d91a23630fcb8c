//! Feature-extraction throughput of geoexp on the CPU (images/s): the frozen backbone forward
//! the features stage runs per batch in `geoexp::train::features::extract`
//! (`GeoNet::features(x, 0)`: no gradient, batch norm in eval mode, ViTs on candle's fused
//! forward-only softmax and LayerNorm), then the copy of the features out to a `Vec<f32>`.
//! The net is built as the stage builds it (`geoexp::model::build_net`, mean fusion, one
//! output, the family's default pooling) with seeded random weights; the inputs are random
//! normalised views `[B/4, 4, 3, S, S]`. Not timed: decoding and normalising the images
//! (`batch_views`, the decode bench's business) and writing the file.
//!
//! `cargo bench --bench features`; env: `GEOEXP_BENCH_BACKBONES` (comma-separated, default
//! `resnet50,clip-vit-b32`), `GEOEXP_BENCH_SIZE` (pixels, default 224), `GEOEXP_BENCH_BATCH`
//! (images per batch, a multiple of 4, default 64: the stage's 16 locations × 4 views),
//! `GEOEXP_BENCH_WARMUP` (default 1), `GEOEXP_BENCH_ITERS` (timed batches, default 5),
//! `GEOEXP_BENCH_KERNELS` (`fast` or `reference`). Threads: `RAYON_NUM_THREADS`, which candle
//! reads for its own pools too (unset: one per core); `benches/features_vs_torch.py` sets it
//! and gives PyTorch the same number.
//!
//! Each result is also printed as a line `FEATURES <backbone> <mean s/batch> <best s/batch>`,
//! which `benches/features_vs_torch.py` reads to put it beside PyTorch's
//! (`benches/torch_features.py`).

use std::time::Instant;

use candle_core::{Device, Tensor};
use geoexp::model::{NetSpec, build_net};
use geoexp::vocab::{Fusion, Head, Kernels, VIEWS};

mod support;

use support::{env, env_str, fail};

fn main() -> candle_core::Result<()> {
    let backbones = env_str("GEOEXP_BENCH_BACKBONES", "resnet50,clip-vit-b32");
    let size = env("GEOEXP_BENCH_SIZE", 224);
    let batch = env("GEOEXP_BENCH_BATCH", 64);
    let warmup = env("GEOEXP_BENCH_WARMUP", 1);
    let iters = env("GEOEXP_BENCH_ITERS", 5).max(1);
    let kernels = match env_str("GEOEXP_BENCH_KERNELS", "fast").as_str() {
        "fast" => Kernels::Fast,
        "reference" => Kernels::Reference,
        other => {
            return Err(fail(format!(
                "GEOEXP_BENCH_KERNELS={other}: fast or reference"
            )));
        }
    };
    if batch == 0 || !batch.is_multiple_of(VIEWS) {
        return Err(fail(format!(
            "GEOEXP_BENCH_BATCH={batch}: a positive multiple of {VIEWS} (images per batch)"
        )));
    }
    let dev = Device::Cpu;
    // As `extract` does before its first batch.
    geoexp::train::memory::keep_freed_memory();
    println!(
        "geoexp: {batch} images per batch ({} locations × {VIEWS} views), {size} px, {kernels:?} kernels, {warmup} warm-up + {iters} timed batches, {} threads (candle: {})",
        batch / VIEWS,
        rayon::current_num_threads(),
        candle_core::utils::get_num_threads(),
    );
    println!(
        "{:<16} {:>5} {:>10} {:>12} {:>10} {:>12}",
        "backbone", "dim", "s/batch", "best s/batch", "images/s", "best img/s"
    );
    for backbone in backbones.split(',') {
        let spec = NetSpec {
            backbone,
            fusion: Fusion::Mean,
            outputs: 1,
            kernels,
            head: &Head::Linear,
            pooling: None,
        };
        let (_varmap, net) = build_net(&spec, 0, None, &dev).map_err(fail)?;
        let x = Tensor::randn(0f32, 1., (batch / VIEWS, VIEWS, 3, size, size), &dev)?;
        // As `extract` does per batch (it flattens and copies the features out).
        let forward = || -> candle_core::Result<usize> {
            Ok(net.features(&x, 0)?.flatten_all()?.to_vec1::<f32>()?.len())
        };
        for _ in 0..warmup {
            forward()?;
        }
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            let values = forward()?;
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(values, batch * net.backbone().feature_dim());
        }
        let mean = times.iter().sum::<f64>() / iters as f64;
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{backbone:<16} {:>5} {mean:>10.3} {best:>12.3} {:>10.2} {:>12.2}",
            net.backbone().feature_dim(),
            batch as f64 / mean,
            batch as f64 / best
        );
        println!("FEATURES {backbone} {mean:.4} {best:.4}");
    }
    Ok(())
}
