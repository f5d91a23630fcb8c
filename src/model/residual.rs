//! `relu(a + b)`, the end of every residual block, as one CPU op.
//!
//! As two candle ops it is an add, a ReLU and, in backward, the ReLU's mask built from
//! half a dozen full passes (zeros, compare, cast, multiply, accumulate). Here it is one
//! pass forward and one backward (the mask comes from the saved output), and one node less
//! in the graph.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::Kernels;

/// `relu(a + b)` for same-shaped tensors; differentiable in both.
pub fn add_relu(a: &Tensor, b: &Tensor, kernels: Kernels) -> Result<Tensor> {
    let fast = kernels == Kernels::Fast
        && a.device().is_cpu()
        && matches!(a.dtype(), DType::F32 | DType::F64)
        && b.dtype() == a.dtype()
        && a.shape() == b.shape();
    if !fast {
        return (a + b)?.relu();
    }
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    if a.track_op() || b.track_op() {
        a.apply_op2(&b, AddRelu)
    } else {
        a.apply_op2_no_bwd(&b, &AddRelu)
    }
}

/// The contiguous slice a layout covers.
fn slice<'a, T>(v: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("add_relu: expected a contiguous tensor"),
    }
}

/// Elements per rayon task: big enough to amortise it, small enough to balance.
const CHUNK: usize = 1 << 16;

fn forward<T: candle_core::WithDType>(a: &[T], b: &[T]) -> Vec<T> {
    // Written once, so not zero-filled first.
    let mut y = Box::<[T]>::new_uninit_slice(a.len());
    y.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(y, (a, b))| {
            for ((y, a), b) in y.iter_mut().zip(a).zip(b) {
                let s = *a + *b;
                y.write(if s > T::zero() { s } else { T::zero() });
            }
        });
    // SAFETY: the chunks cover `y` (same length and chunking as `a`), each element written.
    unsafe { y.assume_init() }.into_vec()
}

/// The gradient passed where the output is positive.
fn gate<T: candle_core::WithDType>(y: &[T], g: &[T]) -> Vec<T> {
    let mut out = Box::<[T]>::new_uninit_slice(y.len());
    out.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(o, (y, g))| {
            for ((o, y), g) in o.iter_mut().zip(y).zip(g) {
                o.write(if *y > T::zero() { *g } else { T::zero() });
            }
        });
    // SAFETY: the chunks cover `out` (same length and chunking as `y`), each element written.
    unsafe { out.assume_init() }.into_vec()
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!(
                "add_relu: shapes {:?} and {:?} differ",
                l1.shape(),
                l2.shape()
            )
        }
        let y = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                CpuStorage::F32(forward(slice(a, l1)?, slice(b, l2)?))
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                CpuStorage::F64(forward(slice(a, l1)?, slice(b, l2)?))
            }
            (a, _) => bail!("add_relu: unsupported dtype {:?}", a.dtype()),
        };
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = res
            .detach()
            .apply_op2_no_bwd(&grad.detach().contiguous()?, &AddReluGrad)?;
        Ok((a.track_op().then(|| g.clone()), b.track_op().then_some(g)))
    }
}

/// `(output, output gradient)` → the gradient of both summands.
struct AddReluGrad;

impl CustomOp2 for AddReluGrad {
    fn name(&self) -> &'static str {
        "add-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!(
                "add_relu backward: shapes {:?} and {:?} differ",
                l1.shape(),
                l2.shape()
            )
        }
        let g = match (s1, s2) {
            (CpuStorage::F32(y), CpuStorage::F32(g)) => {
                CpuStorage::F32(gate(slice(y, l1)?, slice(g, l2)?))
            }
            (CpuStorage::F64(y), CpuStorage::F64(g)) => {
                CpuStorage::F64(gate(slice(y, l1)?, slice(g, l2)?))
            }
            (y, _) => bail!("add_relu backward: unsupported dtype {:?}", y.dtype()),
        };
        Ok((g, l1.shape().clone()))
    }
}
