//! The fast kernels against candle's own ops ([`Kernels::Reference`]) on randomised shapes.
//! Whole training steps on both are compared in `train/kernel_steps.rs`.
//!
//! Shapes are drawn from a seeded ChaCha RNG, so a failure names a case that reproduces.
//! Errors are relative to the reference tensor's largest magnitude (1e-4 in f32).

use candle_core::{Result, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::residual::add_relu;
use super::test_support::{assert_close, batch_norm, random, seeded, value_and_grads, var};
use super::{Kernels, conv2d};
use super::{max_pool_3x3_s2_p1, max_pool_3x3_s2_p1_composed};

#[test]
fn conv_forward_and_both_gradients_match_candles_on_random_shapes() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for case in 0..40 {
        let n = rng.random_range(1..4);
        let g = [1, 1, 2, 3][rng.random_range(0..4)];
        let (cin, cout) = (g * rng.random_range(1..4), g * rng.random_range(1..4));
        let k: usize = [1, 2, 3, 5][rng.random_range(0..4)];
        let (s, d) = (rng.random_range(1..4), rng.random_range(1..3));
        let span = d * (k - 1) + 1;
        let p = rng.random_range(0..=(span / 2).min(2));
        let h = span.saturating_sub(2 * p).max(1) + rng.random_range(0..7);
        // candle's own backward needs the same number of unread rows and columns.
        let w = h + s * rng.random_range(0..2);
        let x = Var::from_tensor(&random(&mut rng, &[n, cin, h, w])?)?;
        let k_ = Var::from_tensor(&random(&mut rng, &[cout, cin / g, k, k])?)?;
        let what = format!("case {case}: n{n} c{cin}→{cout} k{k} s{s} p{p} d{d} g{g} {h}×{w}");
        let ours = value_and_grads(
            |t| conv2d(&t[0], &t[1], s, p, d, g),
            &[x.clone(), k_.clone()],
            seeded(1),
        )?;
        let theirs = value_and_grads(|t| t[0].conv2d(&t[1], p, s, d, g), &[x, k_], seeded(1))?;
        assert_close(&ours.0, &theirs.0, &format!("{what} y"));
        assert_close(&ours.1[0], &theirs.1[0], &format!("{what} dx"));
        assert_close(&ours.1[1], &theirs.1[1], &format!("{what} dw"));
    }
    Ok(())
}

#[test]
fn fused_batch_norm_relu_matches_candles_batch_norm_then_relu() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for case in 0..12 {
        let (n, c) = (rng.random_range(1..4), rng.random_range(1..6));
        let (h, w) = (rng.random_range(1..6), rng.random_range(2..6));
        let relu = case % 2 == 0;
        let x = Var::from_tensor(&random(&mut rng, &[n, c, h, w])?)?;
        let (wv, bv) = (random(&mut rng, &[c])?, random(&mut rng, &[c])?);
        let what = format!("case {case}: {n}×{c}×{h}×{w} relu {relu}");
        let mut results = Vec::new();
        for kernels in [Kernels::Fast, Kernels::Reference] {
            let (vm, bn) = batch_norm(&wv, &bv, kernels)?;
            let vars = [x.clone(), var(&vm, "weight"), var(&vm, "bias")];
            let f = |t: &[Tensor]| {
                if relu {
                    bn.forward_t_relu(&t[0], true)
                } else {
                    bn.forward_t(&t[0], true)
                }
            };
            let (y, gs) = value_and_grads(f, &vars, seeded(2))?;
            let running = [
                var(&vm, "running_mean").as_tensor().clone(),
                var(&vm, "running_var").as_tensor().clone(),
            ];
            results.push((y, gs, running));
        }
        let (ours, theirs) = (&results[0], &results[1]);
        assert_close(&ours.0, &theirs.0, &format!("{what} y"));
        for (i, name) in ["dx", "dweight", "dbias"].iter().enumerate() {
            assert_close(&ours.1[i], &theirs.1[i], &format!("{what} {name}"));
        }
        for (i, name) in ["running mean", "running var"].iter().enumerate() {
            assert_close(&ours.2[i], &theirs.2[i], &format!("{what} {name}"));
        }
    }
    Ok(())
}

#[test]
fn add_relu_matches_an_add_then_a_relu() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for case in 0..6 {
        let shape = [rng.random_range(1..4), rng.random_range(1..5), 3, 4];
        let a = Var::from_tensor(&random(&mut rng, &shape)?)?;
        let b = Var::from_tensor(&random(&mut rng, &shape)?)?;
        let vars = [a, b];
        let ours = value_and_grads(|t| add_relu(&t[0], &t[1], Kernels::Fast), &vars, seeded(3))?;
        let theirs = value_and_grads(|t| (&t[0] + &t[1])?.relu(), &vars, seeded(3))?;
        assert_close(&ours.0, &theirs.0, &format!("case {case} y"));
        assert_close(&ours.1[0], &theirs.1[0], &format!("case {case} da"));
        assert_close(&ours.1[1], &theirs.1[1], &format!("case {case} db"));
    }
    Ok(())
}

#[test]
fn max_pool_kernel_matches_the_composed_candle_ops_on_random_shapes() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for case in 0..10 {
        let shape = [
            rng.random_range(1..3),
            rng.random_range(1..4),
            rng.random_range(1..12),
            rng.random_range(1..12),
        ];
        let x = Var::from_tensor(&random(&mut rng, &shape)?)?;
        let vars = [x];
        let ours = value_and_grads(|t| max_pool_3x3_s2_p1(&t[0]), &vars, seeded(4))?;
        let theirs = value_and_grads(|t| max_pool_3x3_s2_p1_composed(&t[0]), &vars, seeded(4))?;
        assert_close(&ours.0, &theirs.0, &format!("case {case} {shape:?} y"));
        assert_close(
            &ours.1[0],
            &theirs.1[0],
            &format!("case {case} {shape:?} dx"),
        );
    }
    Ok(())
}
