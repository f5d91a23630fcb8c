//! Training-step time of geoexp on the CPU: the same calls `geoexp run` makes per batch
//! (`GeoNet::forward`, the classification loss and the accuracy's argmax, then
//! [`geoexp::train::step::update`]: backward and the project's AdamW on the head and on the
//! trainable backbone vars), on random inputs.
//!
//! `cargo bench --bench step`; env: `STEP_WARMUP` (default 2), `STEP_STEPS` (default 5),
//! `STEP_SIZE` (pixels, default 112 for the CNNs and 224 for the ViTs, whose patch must
//! divide it), `STEP_BATCH` (locations, default 8), `STEP_CLASSES` (default 55),
//! `STEP_BACKBONES` (comma-separated, default `tiny-cnn,resnet18`; any of
//! `geoexp::vocab::BACKBONES`, e.g. `clip-vit-b32,dinov2-s14`), `STEP_MODES`
//! (`frozen,full`), `STEP_KERNELS` (`fast` or `reference`), `STEP_PHASES` (set: also time
//! forward, backward and the optimiser of one more step apart), `STEP_DEVICE` (`train.device`'s
//! values, default `cpu`; `cuda` needs `--features cuda`). Threads: rayon's
//! (`RAYON_NUM_THREADS`, which candle reads too).
//!
//! Each result is also printed as a line `STEP <backbone> <mode> <mean s> <best s>`, which
//! `benches/step_vs_torch.py` reads to put it beside PyTorch's.

use std::time::Instant;

use candle_core::{D, DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use geoexp::experiment::Optimizer as OptimizerKind;
use geoexp::model::{GeoNet, init_seeded};
use geoexp::train::device::select_device;
use geoexp::train::evaluate::scalar;
use geoexp::train::loss::cross_entropy;
use geoexp::train::optimizer::{Optimizer, OptimizerSettings};
use geoexp::train::step::{NamedVars, named_vars, step_vars, update};
use geoexp::vocab::{Architecture, Fusion, Kernels, architecture};

mod support;

use support::{env, env_str, fail};

/// One more step with its phases timed apart: forward + loss, backward, optimiser.
fn phases(
    net: &GeoNet,
    x: &Tensor,
    y: &Tensor,
    trainable: usize,
    (head, body): (&NamedVars, &NamedVars),
) -> candle_core::Result<()> {
    let mut opt = Optimizer::new(OptimizerSettings::new(OptimizerKind::AdamW, 1e-2, 0.9));
    let t = Instant::now();
    let loss = cross_entropy(&net.forward(x, trainable)?, y, 0.0)?;
    let forward = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let grads = loss.backward()?;
    let backward = t.elapsed().as_secs_f64();
    // The first update creates the moments; time the second, as in every later step.
    opt.step(&grads, head, 1e-3)?;
    opt.step(&grads, body, 1e-3)?;
    let t = Instant::now();
    opt.step(&grads, head, 1e-3)?;
    opt.step(&grads, body, 1e-3)?;
    let update = t.elapsed().as_secs_f64();
    println!("  phases: forward {forward:.3} s, backward {backward:.3} s, optimiser {update:.3} s");
    Ok(())
}

fn main() -> candle_core::Result<()> {
    // As `fit` does.
    geoexp::train::memory::keep_freed_memory();
    let warmup = env("STEP_WARMUP", 2);
    let steps = env("STEP_STEPS", 5).max(1);
    let batch = env("STEP_BATCH", 8);
    let classes = env("STEP_CLASSES", 55);
    let backbones = env_str("STEP_BACKBONES", "tiny-cnn,resnet18");
    let modes = env_str("STEP_MODES", "frozen,full");
    let kernels = match env_str("STEP_KERNELS", "fast").as_str() {
        "fast" => Kernels::Fast,
        "reference" => Kernels::Reference,
        other => return Err(fail(format!("STEP_KERNELS={other}: fast or reference"))),
    };
    let dev = select_device(&env_str("STEP_DEVICE", "cpu")).map_err(fail)?;
    println!(
        "geoexp: batch {batch} locations × 4 views, {classes} classes, {kernels:?} kernels, {warmup} warmup + {steps} timed steps, {} threads, {dev:?}",
        rayon::current_num_threads()
    );
    println!(
        "{:<12} {:>4} {:<8} {:>10} {:>12} {:>12}",
        "backbone", "px", "mode", "s/step", "best s/step", "locations/s"
    );
    for backbone in backbones.split(',') {
        let vit = matches!(architecture(backbone), Some(Architecture::Vit(_)));
        let size = env("STEP_SIZE", if vit { 224 } else { 112 });
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let net =
            GeoNet::with_kernels(backbone, Fusion::Concat, classes, kernels, vb).map_err(fail)?;
        init_seeded(&varmap, 0).map_err(fail)?;
        let all_vars = named_vars(&varmap).map_err(fail)?;
        let x = Tensor::randn(0f32, 1., (batch, 4, 3, size, size), &dev)?;
        let y = Tensor::new(
            (0..batch as u32)
                .map(|i| i % classes as u32)
                .collect::<Vec<_>>(),
            &dev,
        )?;
        for mode in modes.split(',') {
            let trainable = match mode {
                "frozen" => 0,
                "full" => net.backbone_blocks(),
                other => return Err(fail(format!("STEP_MODES: unknown mode {other}"))),
            };
            let (head, body) = step_vars(&all_vars, &net, trainable);
            let mut opt = Optimizer::new(OptimizerSettings::new(OptimizerKind::AdamW, 1e-2, 0.9));
            let mut step = || -> candle_core::Result<f64> {
                let logits = net.forward(&x, trainable)?;
                let _correct = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
                let loss = cross_entropy(&logits, &y, 0.0)?;
                update(&loss, &mut opt, (&head, 1e-3), (&body, 1e-3))?;
                scalar(&loss)
            };
            for _ in 0..warmup {
                step()?;
            }
            let mut times = Vec::with_capacity(steps);
            for _ in 0..steps {
                let t = Instant::now();
                step()?;
                times.push(t.elapsed().as_secs_f64());
            }
            if std::env::var_os("STEP_PHASES").is_some() {
                phases(&net, &x, &y, trainable, (&head, &body))?;
            }
            let mean = times.iter().sum::<f64>() / steps as f64;
            let best = times.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{backbone:<12} {size:>4} {mode:<8} {mean:>10.3} {best:>12.3} {:>12.2}",
                batch as f64 / mean
            );
            println!("STEP {backbone} {mode} {mean:.4} {best:.4}");
        }
    }
    Ok(())
}
