//! Adam/AdamW's update of an f32 parameter on the CPU, in place.
//!
//! As tensor ops the update is a dozen passes over every parameter, each allocating a
//! tensor and each a barrier-synchronised parallel loop in candle: 7 % of a ResNet-18
//! fine-tuning step. Copying the four buffers out, updating them and setting the results
//! back still left a third of that, mostly serial copies. Here it is three parallel
//! in-place passes (first moment, second moment, parameter) over candle's own storage, with
//! no allocation after the first step. Every element goes through exactly the f32
//! operations, in the same order, that [`super::optimizer`]'s tensor version applies
//! (candle's `affine(a, b)` is `x·a + b` with `a` and `b` rounded to f32), so the two give
//! bit-identical results.

use candle_core::{CpuStorage, DType, InplaceOp3, Layout, Result, Tensor, bail};
use rayon::prelude::*;

/// The scalars of one update, as the tensor version uses them.
#[derive(Clone, Copy, Debug)]
pub(super) struct AdamStep {
    /// `1 − lr·wd` for AdamW's decoupled decay, else 1 (and `l2` carries the decay).
    pub shrink: Option<f64>,
    /// Adam's L2 weight decay added to the gradient.
    pub l2: Option<f64>,
    pub beta1: f64,
    pub beta2: f64,
    /// `1 / sqrt(1 − β₂ᵗ)`.
    pub inv_bias2_sqrt: f64,
    pub eps: f64,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f64,
}

/// Whether the in-place passes take `t`: a contiguous f32 CPU tensor.
fn fits(t: &Tensor) -> bool {
    t.dtype() == DType::F32 && t.device().is_cpu() && t.is_contiguous()
}

/// Updates `param` and its moments `m`, `v` in place, creating the moments (zeros, then
/// overwritten as by the tensor version's first step) when neither exists yet. `None` when a
/// tensor is not a contiguous f32 CPU one, the sizes differ or only one moment exists: the
/// caller then takes the tensor path. `param` must not share storage with `grad`.
pub(super) fn step(
    param: &Tensor,
    grad: &Tensor,
    (m, v): (&mut Option<Tensor>, &mut Option<Tensor>),
    s: &AdamStep,
) -> Option<Result<()>> {
    let n = param.elem_count();
    let takes = |t: &Tensor| fits(t) && t.elem_count() == n;
    let fresh = match (&*m, &*v) {
        (Some(a), Some(b)) if takes(a) && takes(b) => false,
        (None, None) => true,
        _ => return None,
    };
    if !takes(param) || !takes(grad) {
        return None;
    }
    let f = |x: f64| x as f32;
    let l2 = s.l2.map(f);
    let first = Moment {
        decay: f(s.beta1),
        keep: f(1.0 - s.beta1),
        square: false,
        l2,
        fresh,
    };
    let second = Moment {
        decay: f(s.beta2),
        keep: f(1.0 - s.beta2),
        square: true,
        l2,
        fresh,
    };
    let apply = Apply {
        shrink: s.shrink.map(f),
        inv_b2: f(s.inv_bias2_sqrt),
        eps: f(s.eps),
        step_size: f(s.step_size),
    };
    Some((|| {
        let (mt, vt) = match (&*m, &*v) {
            (Some(a), Some(b)) => (a.clone(), b.clone()),
            _ => (param.zeros_like()?, param.zeros_like()?),
        };
        // The moments read the parameter before it moves.
        mt.inplace_op3(grad, param, &first)?;
        vt.inplace_op3(grad, param, &second)?;
        param.inplace_op3(&mt, &vt, &apply)?;
        (*m, *v) = (Some(mt), Some(vt));
        Ok(())
    })())
}

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// The contiguous f32 slice a layout covers.
fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => bail!("adam: {what} is not a contiguous f32 tensor"),
    }
}

fn f32s_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => bail!("adam: {what} is not a contiguous f32 tensor"),
    }
}

/// A moment's update from `(gradient, parameter)`: `m·decay + g·keep`, with `g²` for the
/// second moment and Adam's L2 term added to `g` first.
struct Moment {
    decay: f32,
    keep: f32,
    square: bool,
    l2: Option<f32>,
    fresh: bool,
}

impl InplaceOp3 for Moment {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        g: &CpuStorage,
        gl: &Layout,
        p: &CpuStorage,
        pl: &Layout,
    ) -> Result<()> {
        let (g, p) = (f32s(g, gl, "gradient")?, f32s(p, pl, "parameter")?);
        let m = f32s_mut(dst, dst_l, "moment")?;
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(p.par_chunks(CHUNK)))
            .for_each(|(m, (g, p))| {
                for ((m, g), p) in m.iter_mut().zip(g).zip(p) {
                    let mut g = *g;
                    if let Some(a) = self.l2 {
                        g += *p * a + 0.0;
                    }
                    // Grouped as the tensor version: `grad.sqr().affine(1 − β₂, 0)`.
                    let new = if self.square {
                        (g * g) * self.keep + 0.0
                    } else {
                        g * self.keep + 0.0
                    };
                    *m = if self.fresh {
                        new
                    } else {
                        (*m * self.decay + 0.0) + new
                    };
                }
            });
        Ok(())
    }
}

/// The parameter's update from `(m, v)`.
struct Apply {
    shrink: Option<f32>,
    inv_b2: f32,
    eps: f32,
    step_size: f32,
}

impl InplaceOp3 for Apply {
    fn name(&self) -> &'static str {
        "adam-apply"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        m: &CpuStorage,
        ml: &Layout,
        v: &CpuStorage,
        vl: &Layout,
    ) -> Result<()> {
        let (m, v) = (f32s(m, ml, "first moment")?, f32s(v, vl, "second moment")?);
        let p = f32s_mut(dst, dst_l, "parameter")?;
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(p, (m, v))| {
                for ((p, m), v) in p.iter_mut().zip(m).zip(v) {
                    let mut x = *p;
                    if let Some(a) = self.shrink {
                        x = x * a + 0.0;
                    }
                    let denom = v.sqrt() * self.inv_b2 + self.eps;
                    *p = x - (*m * self.step_size + 0.0) / denom;
                }
            });
        Ok(())
    }
}
