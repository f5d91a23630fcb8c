//! Fixtures shared by the model's tests (and `train::kernel_steps`, which trains on the kernels):
//! deterministic and seeded inputs, tensor read-back, tolerance checks, gradients of a
//! weighted sum, and BatchNorms with chosen affine values.

use candle_core::{Device, Result, Tensor, Var, WithDType};
use candle_nn::{VarBuilder, VarMap};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{BatchNorm, Kernels};

/// `len` values `u·scale − shift` for `u` in `[0, 1)` in a scrambled order set by `salt`:
/// fixed data without an RNG, so a failing value can be worked out by hand. Computed in `T`,
/// not rounded from f64, so f32 tests see the values they always have.
pub fn pattern<T: WithDType>(len: usize, salt: usize, scale: f64, shift: f64) -> Vec<T> {
    let (scale, shift) = (T::from_f64(scale), T::from_f64(shift));
    (0..len)
        .map(|i| {
            let u = T::from_f64(((i * 7919 + salt * 104729) % 1009) as f64) / T::from_f64(1009.0);
            u * scale - shift
        })
        .collect()
}

/// An f32 tensor of `shape` uniform in `[-1, 1)` from `rng`.
pub fn random(rng: &mut ChaCha8Rng, shape: &[usize]) -> Result<Tensor> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// For [`value_and_grads`]: weights shaped like the output, [`random`] from `seed`.
pub fn seeded(seed: u64) -> impl Fn(&Tensor) -> Result<Tensor> {
    move |y| random(&mut ChaCha8Rng::seed_from_u64(seed), y.dims())
}

/// The values of `t`, flattened.
pub fn flat<T: WithDType>(t: &Tensor) -> Vec<T> {
    t.flatten_all()
        .and_then(|t| t.to_vec1())
        .unwrap_or_else(|e| panic!("a {:?} tensor: {e}", T::DTYPE))
}

/// The var `name` of `vm`.
pub fn var(vm: &VarMap, name: &str) -> Var {
    vm.data().lock().expect("var map lock")[name].clone()
}

/// Error bound for [`assert_each_close`].
#[derive(Clone, Copy, Debug)]
pub enum Tol {
    /// `|a − b| < tol`.
    Abs(f64),
    /// `|a − b| < tol · (1 + |b|)`.
    Rel(f64),
}

/// Fails unless `a` and `b` are equally long and every `a[i]` is within `tol` of `b[i]`.
pub fn assert_each_close(a: &[f64], b: &[f64], tol: Tol, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (u, v) in a.iter().zip(b) {
        let bound = match tol {
            Tol::Abs(t) => t,
            Tol::Rel(t) => t * (1.0 + v.abs()),
        };
        assert!((u - v).abs() < bound, "{what}: {u} vs {v}");
    }
}

/// Relative error [`assert_close`] allows in f32.
pub const TOLERANCE: f32 = 1e-4;

/// Fails unless f32 tensors `a` and `b` have one shape and `a` equals `b` within
/// [`TOLERANCE`] of `b`'s largest magnitude (at least 1e-3: a gradient that is zero up to
/// cancellation, like a batch-norm's over two values, is rounding noise in both).
pub fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (a, b) = (flat::<f32>(a), flat::<f32>(b));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(u, v)| (u - v).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= TOLERANCE * scale,
        "{what}: max error {worst} vs largest value {scale}"
    );
}

/// `y = f(inputs)` and the gradients of Σ(y · r(y)) with respect to each input: a fixed `r`
/// weights every output differently, so that a gradient routed to the wrong place shows.
pub fn value_and_grads(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Var],
    r: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Vec<Tensor>)> {
    let ts: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts)?;
    let grads = (&y * &r(&y)?)?.sum_all()?.backward()?;
    let gs = inputs
        .iter()
        .map(|v| grads.get(v).cloned().expect("every input has a gradient"))
        .collect();
    Ok((y, gs))
}

/// A BatchNorm over `weight.dim(0)` channels on `kernels`, in `weight`'s dtype, its vars in
/// the returned VarMap; weight and bias set to the given values (away from torch's 1 and 0,
/// so that gradients through them show).
pub fn batch_norm(weight: &Tensor, bias: &Tensor, kernels: Kernels) -> Result<(VarMap, BatchNorm)> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, weight.dtype(), &Device::Cpu);
    let bn = BatchNorm::new(weight.dim(0)?, vb)?.with_kernels(kernels);
    var(&vm, "weight").set(weight)?;
    var(&vm, "bias").set(bias)?;
    Ok((vm, bn))
}
