//! A few training steps on the fast kernels give the reference kernels' losses, and the
//! fast path run twice gives identical results: the model's kernels seen through the
//! project's own loss and optimiser (`model/kernel_tests.rs` checks each kernel alone).

use candle_core::{D, DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::experiment::Optimizer as Kind;
use crate::model::test_support::flat;
use crate::model::{GeoNet, init_seeded};
use crate::vocab::{Fusion, Kernels};

use super::loss::cross_entropy;
use super::optimizer::{Optimizer, OptimizerSettings};
use super::step::{named_vars, step_vars, update};

/// Losses of `steps` training steps (the project's loss and AdamW, all blocks trainable),
/// and the head's weights after them.
fn train(backbone: &str, kernels: Kernels, steps: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let classes = 5;
    let net = GeoNet::with_kernels(backbone, Fusion::Concat, classes, kernels, vb)
        .expect("known backbone");
    init_seeded(&varmap, 3).expect("init");
    let vars = named_vars(&varmap).expect("vars");
    let (head, body) = step_vars(&vars, &net, net.backbone_blocks());
    let mut opt = Optimizer::new(OptimizerSettings::new(Kind::AdamW, 1e-2, 0.9));
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let v: Vec<f32> = (0..2 * 4 * 3 * 32 * 32)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let x = Tensor::from_vec(v, (2, 4, 3, 32, 32), &Device::Cpu)?;
    let y = Tensor::new(&[1u32, 3], &Device::Cpu)?;
    let mut losses = Vec::new();
    for _ in 0..steps {
        let logits = net.forward(&x, net.backbone_blocks())?;
        let loss = cross_entropy(&logits, &y, 0.0)?;
        update(&loss, &mut opt, (&head, 1e-3), (&body, 1e-3))?;
        losses.push(loss.to_scalar::<f32>()?);
    }
    let head_w = varmap.data().lock().expect("lock")["head.weight"]
        .as_tensor()
        .clone();
    Ok((losses, flat::<f32>(&head_w.max(D::Minus1)?)))
}

#[test]
fn a_few_training_steps_give_the_reference_losses() -> Result<()> {
    for backbone in ["tiny-cnn", "resnet18"] {
        let (fast, _) = train(backbone, Kernels::Fast, 3)?;
        let (reference, _) = train(backbone, Kernels::Reference, 3)?;
        for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                "{backbone} step {i}: fast {a}, reference {b} (all: {fast:?} vs {reference:?})"
            );
        }
        // The steps did train: the loss moved.
        assert!(fast[0] != fast[2], "{backbone}: {fast:?}");
    }
    Ok(())
}

#[test]
fn the_fast_path_gives_identical_results_run_to_run() -> Result<()> {
    for backbone in ["tiny-cnn", "resnet18"] {
        let first = train(backbone, Kernels::Fast, 2)?;
        let second = train(backbone, Kernels::Fast, 2)?;
        assert_eq!(first, second, "{backbone}");
    }
    Ok(())
}
