//! The elementwise tail of a ViT linear layer, `y ← act(y + b)·s + r`, in one in-place pass
//! where the block is frozen.
//!
//! After each of a ViT layer's matrix products comes a bias add, and then, depending on the
//! product, the attention's query scale, CLIP's quick-gelu, DINOv2's layer scale or the
//! residual add. As candle ops that is two to five full passes per product, each allocating
//! a fresh output (fc1's is 39 MB for 64 CLIP B/32 images: above glibc's mmap ceiling, so every
//! pass page-faults it in zero-filled) and each single-threaded. A frozen block's products
//! are never differentiated, so there the whole tail runs in place on the product's own
//! buffer, in parallel: one pass, no allocation. Elsewhere (trainable blocks, other devices
//! and dtypes, [`Kernels::Reference`]) it is the composed ops, in the same order, so both are
//! one path and the fused one is pinned against it.

use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Result, Tensor, bail};
use rayon::prelude::*;

/// The activation between the bias and the scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Act {
    Identity,
    /// `x·σ(1.702x)`, CLIP's `quick_gelu`, with σ as `candle_nn::ops::sigmoid` computes it.
    QuickGelu,
    /// The exact `x·Φ(x)`, DINOv2's; never fused (candle's own op).
    GeluErf,
}

/// The factor after the activation.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scale<'a> {
    One,
    /// The attention's `head_dim^-½` on the queries.
    Scalar(f64),
    /// DINOv2's per-channel layer scale `[hidden]`.
    Channels(&'a Tensor),
}

impl<'a> Scale<'a> {
    /// A layer scale where there is one.
    pub(super) fn channels(scale: Option<&'a Tensor>) -> Self {
        scale.map_or(Scale::One, Scale::Channels)
    }
}

/// `x · wᵀ`, then `act(· + bias)·scale + residual`; `x` `[rows, in]`, `w` `[out, in]`.
/// `fused`: the caller's block is frozen and runs the fast kernels (the result carries no
/// gradient then, whatever `x` and `w` do).
pub(super) fn linear_tail(
    x: &Tensor,
    (w, bias): (&Tensor, &Tensor),
    act: Act,
    scale: Scale,
    residual: Option<&Tensor>,
    fused: bool,
) -> Result<Tensor> {
    let fused = fused
        && act != Act::GeluErf
        && x.device().is_cpu()
        && [x.dtype(), w.dtype(), bias.dtype()] == [DType::F32; 3]
        && residual.is_none_or(|r| r.dtype() == DType::F32);
    if !fused {
        return composed(&x.matmul(&w.t()?)?, bias, act, scale, residual);
    }
    // A fresh buffer no graph refers to, so it may be written in place.
    let y = x.detach().matmul(&w.detach().t()?)?;
    let (rows, cols) = y.dims2()?;
    let params = match scale {
        Scale::One => bias.detach().reshape((1, cols))?,
        Scale::Scalar(s) => Tensor::stack(
            &[bias.detach(), Tensor::full(s as f32, cols, bias.device())?],
            0,
        )?,
        Scale::Channels(s) => Tensor::stack(&[bias.detach(), s.detach()], 0)?,
    }
    .contiguous()?;
    let op = Tail { act, cols };
    match residual {
        Some(r) => {
            if r.dims() != [rows, cols] {
                bail!(
                    "linear tail: residual {:?} for a product {:?}",
                    r.dims(),
                    y.dims()
                )
            }
            y.inplace_op3(&params, &r.detach().contiguous()?, &op)?
        }
        None => y.inplace_op2(&params, &op)?,
    }
    Ok(y)
}

/// The tail as candle ops (differentiable; any device and dtype).
fn composed(
    y: &Tensor,
    bias: &Tensor,
    act: Act,
    scale: Scale,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let y = y.broadcast_add(bias)?;
    let y = match act {
        Act::Identity => y,
        Act::QuickGelu => (&y * candle_nn::ops::sigmoid(&(&y * 1.702)?)?)?,
        Act::GeluErf => y.gelu_erf()?,
    };
    let y = match scale {
        Scale::One => y,
        Scale::Scalar(s) => (y * s)?,
        Scale::Channels(s) => y.broadcast_mul(s)?,
    };
    match residual {
        Some(r) => y + r,
        None => Ok(y),
    }
}

/// The in-place pass over a contiguous f32 `[rows, cols]` product. Its sources: `params`
/// `[1 | 2, cols]` (the bias, then the scale if any) and, for the 2-source form, the residual.
struct Tail {
    act: Act,
    cols: usize,
}

/// Rows per rayon task: about 64 K elements for CLIP B's 768 columns.
fn rows_per_task(cols: usize) -> usize {
    ((1 << 16) / cols.max(1)).max(1)
}

impl Tail {
    fn run(&self, y: &mut [f32], params: &[f32], residual: Option<&[f32]>) {
        let cols = self.cols;
        let (bias, scale) = params.split_at(cols);
        let scale = (!scale.is_empty()).then_some(scale);
        let act = self.act;
        let task = rows_per_task(cols) * cols;
        // One loop per step over a row that stays in L1: each but the activation's
        // vectorises, which a single loop with the branches inside did not.
        let row = |y: &mut [f32], r: Option<&[f32]>| {
            for (v, b) in y.iter_mut().zip(bias) {
                *v += b;
            }
            if act == Act::QuickGelu {
                for v in y.iter_mut() {
                    *v *= 1.0 / (exp(-(*v * 1.702)) + 1.0);
                }
            }
            if let Some(s) = scale {
                for (v, s) in y.iter_mut().zip(s) {
                    *v *= s;
                }
            }
            if let Some(r) = r {
                for (v, r) in y.iter_mut().zip(r) {
                    *v += r;
                }
            }
        };
        match residual {
            Some(res) => y
                .par_chunks_mut(task)
                .zip(res.par_chunks(task))
                .for_each(|(y, res)| {
                    for (y, r) in y.chunks_mut(cols).zip(res.chunks(cols)) {
                        row(y, Some(r));
                    }
                }),
            None => y.par_chunks_mut(task).for_each(|y| {
                for y in y.chunks_mut(cols) {
                    row(y, None);
                }
            }),
        }
    }

    fn name(&self) -> &'static str {
        "linear-tail"
    }
}

/// `eˣ` in a form the compiler vectorises (libm's `expf` is a call per element: a third of
/// the fused pass's time): Cody–Waite reduction `x = n·ln2 + r` with `n` rounded by the
/// 1.5·2²³ trick, Cephes' degree-6 polynomial for `eʳ`, and `2ⁿ` built in the exponent bits.
/// Within 2 ulp of libm's on `[-87.3, 88.3]`; outside, it is the value at the nearer end
/// (finite, so the sigmoid saturates to 0 or 1 there as it should).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * r * r + r + 1.0;
    // `t`'s low mantissa bits hold n (|n| ≤ 127), so this is 2ⁿ for every clamped x.
    let n = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    p * f32::from_bits(((n + 127) << 23) as u32)
}

/// The f32 slice a contiguous layout covers, or an error naming what is wrong.
fn f32_slice<'a>(what: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => bail!("linear tail: the {what} must be a contiguous f32 tensor"),
    }
}

impl Tail {
    fn run_in_place(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        params: (&CpuStorage, &Layout),
        residual: Option<(&CpuStorage, &Layout)>,
    ) -> Result<()> {
        let params = f32_slice("bias and scale", params.0, params.1)?;
        let residual = residual
            .map(|(s, l)| f32_slice("residual", s, l))
            .transpose()?;
        let (CpuStorage::F32(y), Some((a, b))) = (dst, dst_l.contiguous_offsets()) else {
            bail!("linear tail: the product must be a contiguous f32 tensor")
        };
        let y = &mut y[a..b];
        if y.len() % self.cols != 0
            || !matches!(params.len() / self.cols, 1 | 2)
            || params.len() % self.cols != 0
            || residual.is_some_and(|r| r.len() != y.len())
        {
            bail!(
                "linear tail: {} product values, {} bias/scale values and {:?} residual values for {} columns",
                y.len(),
                params.len(),
                residual.map(<[f32]>::len),
                self.cols
            )
        }
        self.run(y, params, residual);
        Ok(())
    }
}

impl InplaceOp2 for Tail {
    fn name(&self) -> &'static str {
        Tail::name(self)
    }

    fn cpu_fwd(&self, y: &mut CpuStorage, yl: &Layout, p: &CpuStorage, pl: &Layout) -> Result<()> {
        self.run_in_place(y, yl, (p, pl), None)
    }
}

impl InplaceOp3 for Tail {
    fn name(&self) -> &'static str {
        Tail::name(self)
    }

    fn cpu_fwd(
        &self,
        y: &mut CpuStorage,
        yl: &Layout,
        p: &CpuStorage,
        pl: &Layout,
        r: &CpuStorage,
        rl: &Layout,
    ) -> Result<()> {
        self.run_in_place(y, yl, (p, pl), Some((r, rl)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn inputs() -> Result<(Tensor, Tensor, Tensor, Tensor, Tensor)> {
        let dev = Device::Cpu;
        // Enough rows for several rayon tasks, and values across the activation's range.
        let x = (Tensor::randn(0f32, 1., (300, 24), &dev)? * 3.)?;
        let w = Tensor::randn(0f32, 1., (40, 24), &dev)?;
        let b = Tensor::randn(0f32, 1., 40, &dev)?;
        let s = Tensor::randn(0f32, 1., 40, &dev)?;
        let r = Tensor::randn(0f32, 1., (300, 40), &dev)?;
        Ok((x, w, b, s, r))
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn the_fused_pass_is_the_composed_ops() -> Result<()> {
        let (x, w, b, s, r) = inputs()?;
        for act in [Act::Identity, Act::QuickGelu] {
            for scale in [Scale::One, Scale::Scalar(0.125), Scale::Channels(&s)] {
                for residual in [None, Some(&r)] {
                    let fused = linear_tail(&x, (&w, &b), act, scale, residual, true)?;
                    let composed = linear_tail(&x, (&w, &b), act, scale, residual, false)?;
                    // Bit for bit but for the activation's exp (a few ulp of values up to ~100).
                    let tolerance = if act == Act::Identity { 0.0 } else { 2e-5 };
                    let diff = max_diff(&fused, &composed)?;
                    assert!(
                        diff <= tolerance,
                        "{act:?} {scale:?} residual {}: {diff}",
                        residual.is_some()
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_saturates_finitely() {
        let mut worst = 0f32;
        for i in 0..=1_000_000 {
            let x = -87.3 + 175.6 * i as f32 / 1e6;
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst <= 2.0 * f32::EPSILON, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1e4) > 0.0 && exp(-1e4) < 1e-37);
        assert!(exp(1e4).is_finite() && exp(1e4) > 1e38);
        // The sigmoid built on it saturates where it should.
        let sigmoid = |v: f32| 1.0 / (exp(-v) + 1.0);
        assert_eq!(sigmoid(1e4), 1.0);
        assert!(sigmoid(-1e4) < 1e-37);
    }

    #[test]
    fn the_composed_tail_is_bias_then_activation_then_scale_then_residual() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, -2.]], &dev)?;
        let w = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev)?;
        let b = Tensor::new(&[0.5f32, 1.], &dev)?;
        let s = Tensor::new(&[2f32, 3.], &dev)?;
        let r = Tensor::new(&[[10f32, 20.]], &dev)?;
        let qg = |t: f32| t / (1. + (-1.702 * t).exp());
        for fused in [false, true] {
            let y = linear_tail(
                &x,
                (&w, &b),
                Act::QuickGelu,
                Scale::Channels(&s),
                Some(&r),
                fused,
            )?
            .to_vec2::<f32>()?;
            let want = [qg(1.5) * 2. + 10., qg(-1.) * 3. + 20.];
            for (got, want) in y[0].iter().zip(want) {
                assert!((got - want).abs() < 1e-5, "fused {fused}: {got} vs {want}");
            }
        }
        Ok(())
    }

    #[test]
    fn f64_and_gelu_erf_take_the_composed_ops() -> Result<()> {
        let (x, w, b, _, r) = inputs()?;
        let (x64, w64, b64) = (
            x.to_dtype(DType::F64)?,
            w.to_dtype(DType::F64)?,
            b.to_dtype(DType::F64)?,
        );
        let y = linear_tail(&x64, (&w64, &b64), Act::QuickGelu, Scale::One, None, true)?;
        assert_eq!(y.dtype(), DType::F64);
        let erf = linear_tail(&x, (&w, &b), Act::GeluErf, Scale::One, Some(&r), true)?;
        let want = ((x.matmul(&w.t()?)?.broadcast_add(&b)?.gelu_erf()?) + &r)?;
        assert_eq!(max_diff(&erf, &want)?, 0.0);
        Ok(())
    }

    #[test]
    fn a_residual_of_the_wrong_shape_is_an_error() -> Result<()> {
        let (x, w, b, _, _) = inputs()?;
        let r = Tensor::zeros((299, 40), DType::F32, &Device::Cpu)?;
        let err = linear_tail(&x, (&w, &b), Act::Identity, Scale::One, Some(&r), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("residual [299, 40]"), "{err}");
        Ok(())
    }
}
