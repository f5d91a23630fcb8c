//! Training-step throughput of `GeoNet` on the CPU: locations/s (one location = 4 views) for
//! tiny-cnn and resnet18, with a frozen backbone and with full fine-tuning.
//!
//! `cargo bench --bench step`; env: `STEP_WARMUP` (default 2), `STEP_STEPS` (default 5),
//! `STEP_SIZE` (pixels, default 112), `STEP_BATCH` (locations, default 8),
//! `STEP_BACKBONES` (comma-separated, default `tiny-cnn,resnet18`).

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use geoexp::model::{Fusion, GeoNet, init_seeded};

const CLASSES: usize = 50;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> candle_core::Result<()> {
    let warmup = env("STEP_WARMUP", 2);
    let steps = env("STEP_STEPS", 5).max(1);
    let size = env("STEP_SIZE", 112);
    let batch = env("STEP_BATCH", 8);
    let backbones =
        std::env::var("STEP_BACKBONES").unwrap_or_else(|_| "tiny-cnn,resnet18".to_string());
    let dev = Device::Cpu;
    println!(
        "batch {batch} locations × 4 views, {size} px, {CLASSES} classes, {warmup} warmup + {steps} timed steps, {} threads",
        rayon::current_num_threads()
    );
    println!(
        "{:<12} {:<10} {:>10} {:>12}",
        "backbone", "mode", "s/step", "locations/s"
    );
    for backbone in backbones.split(',') {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let net = GeoNet::new(backbone, Fusion::Concat, CLASSES, vb)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        init_seeded(&varmap, 0).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let x = Tensor::randn(0f32, 1., (batch, 4, 3, size, size), &dev)?;
        let y = Tensor::new(
            (0..batch as u32)
                .map(|i| i % CLASSES as u32)
                .collect::<Vec<_>>(),
            &dev,
        )?;
        for (mode, trainable) in [("frozen", 0), ("full", net.backbone_blocks())] {
            let mut names = net.head_var_names();
            names.extend(net.trainable_var_names(trainable));
            let vars: Vec<Var> = {
                let data = varmap.data().lock().expect("var map lock");
                names.iter().map(|n| data[n].clone()).collect()
            };
            let mut opt = AdamW::new(vars, ParamsAdamW::default())?;
            let mut step = || -> candle_core::Result<()> {
                let logits = net.forward(&x, trainable)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
                opt.backward_step(&loss)
            };
            for _ in 0..warmup {
                step()?;
            }
            let t = Instant::now();
            for _ in 0..steps {
                step()?;
            }
            let per_step = t.elapsed().as_secs_f64() / steps as f64;
            println!(
                "{backbone:<12} {mode:<10} {per_step:>10.3} {:>12.2}",
                batch as f64 / per_step
            );
        }
    }
    Ok(())
}
