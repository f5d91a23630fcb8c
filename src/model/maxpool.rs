//! The ResNet stem's max-pool (torch `MaxPool2d(kernel_size=3, stride=2, padding=1)`) with a
//! backward pass.
//!
//! candle 0.11's own `max_pool2d` has no padding and its backward fails when kernel != stride,
//! so on CPU this is a custom op. The forward takes each window's maximum and, when a backward
//! will follow, records where it was (one `u32` per output, kept by the op in the graph); the
//! backward routes each output's gradient to that input. Recomputing the argmax in the backward
//! instead cost as much as the forward again: 3 % of a ResNet-18 fine-tuning step. Ties: the
//! first maximum in row-major window order wins, NaN wins over numbers, like torch's CPU kernel.
//! Other devices use [`max_pool_3x3_s2_p1_composed`], built from differentiable candle ops.

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::dtype::{Float, Kernel, dispatch};

/// `[N, C, H, W]` → `[N, C, (H-1)/2+1, (W-1)/2+1]`, the 3×3 / stride 2 / padding 1 max-pool,
/// differentiable. Padding never wins (it counts as −∞).
pub fn max_pool_3x3_s2_p1(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h == 0 || w == 0 {
        bail!("max_pool_3x3_s2_p1: empty spatial dims {:?}", x.shape())
    }
    if u32::try_from(h * w).is_err() {
        bail!("max_pool_3x3_s2_p1: planes of {h}×{w} are too large")
    }
    match (x.device().is_cpu(), x.dtype()) {
        (true, candle_core::DType::F32 | candle_core::DType::F64) => {
            let x = x.contiguous()?;
            if x.track_op() {
                x.apply_op1(MaxPool::recording())
            } else {
                x.apply_op1_no_bwd(&MaxPool::default())
            }
        }
        _ => max_pool_3x3_s2_p1_composed(x),
    }
}

/// The same pool from candle ops that run (and backpropagate) on any device: pad with −∞ to an
/// even size, view rows and columns as pairs so that stride 2 becomes a plain index, and take the
/// elementwise maximum of the nine shifted windows. Slower and more memory-hungry than the CPU
/// kernel; gradients at exact ties are shared between the tied inputs (candle's `maximum`).
pub fn max_pool_3x3_s2_p1_composed(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if h == 0 || w == 0 {
        bail!("max_pool_3x3_s2_p1: empty spatial dims {:?}", x.shape())
    }
    let (ho, wo) = (out_len(h), out_len(w));
    // Padded lengths 2·out + 2: one −∞ in front (torch's padding), the rest behind so that every
    // window start 2i + d (d < 3) stays inside and the length is even.
    let (ph, pw) = (2 * ho + 2, 2 * wo + 2);
    let neg = |shape: (usize, usize, usize, usize)| {
        Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())
    };
    let x = Tensor::cat(&[&neg((n, c, 1, w))?, x, &neg((n, c, ph - 1 - h, w))?], 2)?;
    let x = Tensor::cat(
        &[&neg((n, c, ph, 1))?, &x, &neg((n, c, ph, pw - 1 - w))?],
        3,
    )?;
    // Row r = 2a + b ↦ (a, b): window row 2i + d is (a, b) = (i + d/2, d%2).
    let x = x.reshape((n, c, ph / 2, 2, pw / 2, 2))?;
    let mut out: Option<Tensor> = None;
    for dy in 0..3 {
        for dx in 0..3 {
            let win = x
                .narrow(2, dy / 2, ho)?
                .narrow(3, dy % 2, 1)?
                .narrow(4, dx / 2, wo)?
                .narrow(5, dx % 2, 1)?;
            out = Some(match out {
                None => win,
                Some(o) => o.maximum(&win)?,
            });
        }
    }
    match out {
        Some(o) => o.reshape((n, c, ho, wo)),
        None => unreachable!("the loop runs nine times"),
    }
}

/// Output length of a 3/2/1 pool along one axis of length `len ≥ 1`.
fn out_len(len: usize) -> usize {
    (len - 1) / 2 + 1
}

/// Index (within the `h × w` plane) of the maximum of the window for output `(oi, oj)`; first
/// maximum in row-major order wins, a NaN wins like torch.
#[inline]
fn argmax<T: Float>(plane: &[T], h: usize, w: usize, oi: usize, oj: usize) -> (usize, T) {
    // A window inside the plane, without NaN (by far the common case), in nine unrolled
    // comparisons; starting from its first element keeps the first of equal maxima.
    if oi >= 1 && oj >= 1 && 2 * oi + 1 < h && 2 * oj + 1 < w {
        let top = (2 * oi - 1) * w + 2 * oj - 1;
        let (mut idx, mut best) = (top, plane[top]);
        let mut nan = false;
        for r in 0..3 {
            for c in 0..3 {
                let i = top + r * w + c;
                let v = plane[i];
                nan |= v.is_nan();
                if v > best {
                    best = v;
                    idx = i;
                }
            }
        }
        if !nan {
            return (idx, best);
        }
    }
    // Window rows 2·oi − 1 ..= 2·oi + 1, clipped to the plane.
    let r0 = (2 * oi).saturating_sub(1);
    let r1 = (2 * oi + 2).min(h);
    let c0 = (2 * oj).saturating_sub(1);
    let c1 = (2 * oj + 2).min(w);
    let mut best = T::NEG_INFINITY;
    let mut idx = r0 * w + c0;
    for r in r0..r1 {
        let row = &plane[r * w..r * w + w];
        for (c, &v) in row.iter().enumerate().take(c1).skip(c0) {
            if v > best || v.is_nan() {
                best = v;
                idx = r * w + c;
                if v.is_nan() {
                    return (idx, best);
                }
            }
        }
    }
    (idx, best)
}

/// The pooled planes, and each output's argmax within its plane when `record`.
fn forward<T: Float>(
    x: &[T],
    planes: usize,
    h: usize,
    w: usize,
    record: bool,
) -> (Vec<T>, Vec<u32>) {
    let (ho, wo) = (out_len(h), out_len(w));
    let mut out = vec![T::zero(); planes * ho * wo];
    let mut idx = vec![0u32; if record { out.len() } else { 0 }];
    let mut idx_planes: Vec<&mut [u32]> = idx.chunks_mut(ho * wo).collect();
    idx_planes.resize_with(planes, || &mut []);
    out.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .zip(idx_planes)
        .for_each(|((o, plane), at)| {
            for oi in 0..ho {
                for oj in 0..wo {
                    let (i, v) = argmax(plane, h, w, oi, oj);
                    o[oi * wo + oj] = v;
                    if let Some(a) = at.get_mut(oi * wo + oj) {
                        // The plane size fits in u32 (checked by the caller).
                        *a = i as u32;
                    }
                }
            }
        });
    (out, idx)
}

/// The input gradient: each output's gradient added at its recorded argmax.
fn backward<T: Float>(grad: &[T], idx: &[u32], planes: usize, h: usize, w: usize) -> Vec<T> {
    let po = out_len(h) * out_len(w);
    let mut gx = vec![T::zero(); planes * h * w];
    gx.par_chunks_mut(h * w)
        .zip(grad.par_chunks(po).zip(idx.par_chunks(po)))
        .for_each(|(g, (go, at))| {
            for (&i, &v) in at.iter().zip(go) {
                g[i as usize] += v;
            }
        });
    gx
}

/// Forward op; its backward is [`MaxPoolGrad`], from the argmax recorded here.
#[derive(Default)]
struct MaxPool {
    /// Whether to record the argmax (a backward will follow).
    record: bool,
    argmax: OnceLock<Vec<u32>>,
}

impl MaxPool {
    fn recording() -> Self {
        Self {
            record: true,
            argmax: OnceLock::new(),
        }
    }
}

impl Kernel<1> for MaxPool {
    /// Planes, and their height and width.
    type Args = (usize, usize, usize);
    /// The output, and the argmax when recording.
    type Output = (CpuStorage, Vec<u32>);

    fn run<T: Float>(&self, [x]: [&[T]; 1], &(planes, h, w): &Self::Args) -> Result<Self::Output> {
        let (out, idx) = forward(x, planes, h, w, self.record);
        Ok((T::to_cpu_storage_owned(out), idx))
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool-3x3-s2-p1"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let shape = Shape::from((n, c, out_len(h), out_len(w)));
        let (out, idx) = dispatch("max_pool_3x3_s2_p1", self, [(s, l)], &(n * c, h, w))?;
        if self.record && self.argmax.set(idx).is_err() {
            bail!("max_pool_3x3_s2_p1: the op ran twice")
        }
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let Some(argmax) = self.argmax.get() else {
            bail!("max_pool_3x3_s2_p1: backward without a recorded forward")
        };
        let grad = grad_res.contiguous()?;
        let op = MaxPoolGrad {
            input: arg.dims4()?,
            argmax,
        };
        Ok(Some(grad.apply_op1_no_bwd(&op)?))
    }
}

/// Output gradient → input gradient (of shape `input`), scattering each output's gradient to
/// its argmax.
struct MaxPoolGrad<'a> {
    input: (usize, usize, usize, usize),
    argmax: &'a [u32],
}

impl Kernel<1> for MaxPoolGrad<'_> {
    type Args = ();
    type Output = CpuStorage;

    fn run<T: Float>(&self, [grad]: [&[T]; 1], _: &()) -> Result<CpuStorage> {
        let (n, c, h, w) = self.input;
        let gx = backward(grad, self.argmax, n * c, h, w);
        Ok(T::to_cpu_storage_owned(gx))
    }
}

impl CustomOp1 for MaxPoolGrad<'_> {
    fn name(&self) -> &'static str {
        "max-pool-3x3-s2-p1-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = self.input;
        if l.shape().dims4()? != (n, c, out_len(h), out_len(w))
            || l.shape().elem_count() != self.argmax.len()
        {
            bail!(
                "max_pool_3x3_s2_p1 backward: gradient shape {:?} does not match input {:?}",
                l.shape(),
                self.input
            )
        }
        let out = dispatch("max_pool_3x3_s2_p1 backward", self, [(s, l)], &())?;
        Ok((out, Shape::from(self.input)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_support::flat;
    use candle_core::{Device, Var};

    /// Straightforward reference: every window position checked against the padded bounds.
    fn naive(x: &[f32], h: usize, w: usize) -> Vec<f32> {
        let (ho, wo) = (out_len(h), out_len(w));
        let mut out = Vec::new();
        for oi in 0..ho {
            for oj in 0..wo {
                let mut m = f32::NEG_INFINITY;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let (r, c) = ((2 * oi + dy) as isize - 1, (2 * oj + dx) as isize - 1);
                        if r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < w {
                            m = m.max(x[r as usize * w + c as usize]);
                        }
                    }
                }
                out.push(m);
            }
        }
        out
    }

    /// Distinct values in a scrambled order, so no window has a tie.
    fn distinct(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 37) % 101) as f32 * 0.5 + (i as f32) * 1e-3)
            .collect()
    }

    #[test]
    fn forward_matches_a_naive_reference_on_odd_and_even_sizes() -> Result<()> {
        for (h, w) in [(1, 1), (2, 3), (7, 7), (8, 9), (8, 8), (5, 12)] {
            let v = distinct(2 * 3 * h * w);
            let x = Tensor::from_vec(v.clone(), (2, 3, h, w), &Device::Cpu)?;
            let y = max_pool_3x3_s2_p1(&x)?;
            assert_eq!(y.dims4()?, (2, 3, out_len(h), out_len(w)));
            let got = flat::<f32>(&y);
            let want: Vec<f32> = v.chunks(h * w).flat_map(|p| naive(p, h, w)).collect();
            assert_eq!(got, want, "size {h}x{w}");
        }
        Ok(())
    }

    #[test]
    fn gradient_goes_to_the_argmax_and_ties_go_to_the_first() -> Result<()> {
        // 3×3 plane → 2×2 output. Windows (padding 1): out(0,0) reads rows 0..1, cols 0..1;
        // out(0,1) rows 0..1, cols 1..2; out(1,0) rows 1..2, cols 0..1; out(1,1) rows 1..2, cols 1..2.
        // The centre (1,1) = 9 is the max of all four windows → gradient 1+2+3+4 = 10 there.
        let x = Var::from_vec(
            vec![1f32, 2., 3., 4., 9., 5., 6., 7., 8.],
            (1, 1, 3, 3),
            &Device::Cpu,
        )?;
        let g = Tensor::from_vec(vec![1f32, 2., 3., 4.], (1, 1, 2, 2), &Device::Cpu)?;
        let loss = (max_pool_3x3_s2_p1(&x)? * &g)?.sum_all()?;
        let grads = loss.backward()?;
        let gx = flat::<f32>(grads.get(&x).expect("x has a gradient"));
        assert_eq!(gx, vec![0., 0., 0., 0., 10., 0., 0., 0., 0.]);

        // All equal: each window's first in-bounds element takes its gradient, like torch.
        let x = Var::from_vec(vec![0f32; 9], (1, 1, 3, 3), &Device::Cpu)?;
        let loss = (max_pool_3x3_s2_p1(&x)? * &g)?.sum_all()?;
        let grads = loss.backward()?;
        let gx = flat::<f32>(grads.get(&x).expect("x has a gradient"));
        // out(0,0) → (0,0); out(0,1) → (0,1); out(1,0) → (1,0); out(1,1) → (1,1).
        assert_eq!(gx, vec![1., 2., 0., 3., 4., 0., 0., 0., 0.]);
        Ok(())
    }

    #[test]
    fn a_nan_wins_its_windows_and_takes_their_gradient() -> Result<()> {
        // 5×5 → 3×3; the NaN at (1, 1) lies in the windows of outputs (0..=1, 0..=1): three
        // at the border and the interior window (1, 1), each with larger values too.
        let mut v: Vec<f32> = (0..25).map(|i| i as f32).collect();
        v[6] = f32::NAN;
        let x = Var::from_vec(v, (1, 1, 5, 5), &Device::Cpu)?;
        let y = max_pool_3x3_s2_p1(&x)?;
        let out = flat::<f32>(&y);
        let nan: Vec<bool> = out.iter().map(|v| v.is_nan()).collect();
        assert_eq!(
            nan,
            [true, true, false, true, true, false, false, false, false]
        );
        let gx = y.sum_all()?.backward()?;
        let gx = flat::<f32>(gx.get(&x).expect("gradient"));
        assert_eq!(gx[6], 4.0, "the NaN takes its four windows' gradient");
        assert_eq!(gx.iter().sum::<f32>(), 9.0);
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        let (h, w) = (7, 8);
        let v: Vec<f64> = distinct(2 * h * w).into_iter().map(f64::from).collect();
        let weights: Vec<f64> = (0..2 * out_len(h) * out_len(w))
            .map(|i| (i % 5) as f64 - 1.5)
            .collect();
        let wt = Tensor::from_vec(weights, (1, 2, out_len(h), out_len(w)), &Device::Cpu)?;
        let f = |v: &[f64]| -> Result<f64> {
            let x = Tensor::from_vec(v.to_vec(), (1, 2, h, w), &Device::Cpu)?;
            (max_pool_3x3_s2_p1(&x)? * &wt)?
                .sum_all()?
                .to_scalar::<f64>()
        };
        let x = Var::from_vec(v.clone(), (1, 2, h, w), &Device::Cpu)?;
        let grads = (max_pool_3x3_s2_p1(&x)? * &wt)?.sum_all()?.backward()?;
        let gx = flat::<f64>(grads.get(&x).expect("x has a gradient"));
        let eps = 1e-4;
        for i in 0..v.len() {
            let (mut a, mut b) = (v.clone(), v.clone());
            a[i] += eps;
            b[i] -= eps;
            let num = (f(&a)? - f(&b)?) / (2. * eps);
            assert!(
                (num - gx[i]).abs() < 1e-6,
                "element {i}: numeric {num}, analytic {}",
                gx[i]
            );
        }
        Ok(())
    }

    #[test]
    fn composed_fallback_equals_the_cpu_kernel_forward_and_backward() -> Result<()> {
        for (h, w) in [(7, 7), (8, 9), (4, 4), (1, 3)] {
            let v = distinct(2 * 3 * h * w);
            let x = Var::from_vec(v, (2, 3, h, w), &Device::Cpu)?;
            let wt = Tensor::arange(0f32, (2 * 3 * out_len(h) * out_len(w)) as f32, &Device::Cpu)?
                .reshape((2, 3, out_len(h), out_len(w)))?;
            let a = max_pool_3x3_s2_p1(&x)?;
            let b = max_pool_3x3_s2_p1_composed(&x)?;
            assert_eq!(flat::<f32>(&a), flat::<f32>(&b), "forward {h}x{w}");
            let ga = (a * &wt)?.sum_all()?.backward()?;
            let gb = (b * &wt)?.sum_all()?.backward()?;
            let ga = flat::<f32>(ga.get(&x).expect("gradient"));
            let gb = flat::<f32>(gb.get(&x).expect("gradient"));
            assert_eq!(ga, gb, "backward {h}x{w}");
        }
        Ok(())
    }
}
