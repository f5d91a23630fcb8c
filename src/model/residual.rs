//! `relu(a + b)`, the end of every residual block, as one CPU op.
//!
//! As two candle ops it is an add, a ReLU and, in backward, the ReLU's mask built from
//! half a dozen full passes (zeros, compare, cast, multiply, accumulate). Here it is one
//! pass forward and one backward (the mask comes from the saved output), and one node less
//! in the graph.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType, bail};
use rayon::prelude::*;

use super::Kernels;
use super::dtype::{Float, Kernel, dispatch};

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
        a.apply_op2(&b, AddRelu::Forward)
    } else {
        a.apply_op2_no_bwd(&b, &AddRelu::Forward)
    }
}

/// Elements per rayon task: big enough to amortise it, small enough to balance.
const CHUNK: usize = 1 << 16;

/// `f(a[i], b[i])` for every `i`, in parallel, written once (so not zero-filled first).
fn map2<T: WithDType>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let mut out = Box::<[T]>::new_uninit_slice(a.len());
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| {
            for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                o.write(f(*a, *b));
            }
        });
    // SAFETY: the chunks cover `out` (same length and chunking as `a`), each element written.
    unsafe { out.assume_init() }.into_vec()
}

/// The two passes, each an elementwise map of two same-shaped tensors.
#[derive(Clone, Copy)]
enum AddRelu {
    /// `(a, b)` → `relu(a + b)`; its backward is [`AddRelu::Gate`].
    Forward,
    /// `(output, output gradient)` → the gradient of both summands: passed where the output
    /// is positive.
    Gate,
}

impl Kernel<2> for AddRelu {
    type Args = ();
    type Output = CpuStorage;

    fn run<T: Float>(&self, [a, b]: [&[T]; 2], _: &()) -> Result<CpuStorage> {
        let out = match self {
            AddRelu::Forward => map2(a, b, |a, b| {
                let s = a + b;
                if s > T::zero() { s } else { T::zero() }
            }),
            AddRelu::Gate => map2(a, b, |y, g| if y > T::zero() { g } else { T::zero() }),
        };
        Ok(T::to_cpu_storage_owned(out))
    }
}

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        match self {
            AddRelu::Forward => "add-relu",
            AddRelu::Gate => "add-relu-grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        if l1.shape() != l2.shape() {
            bail!(
                "{name}: shapes {:?} and {:?} differ",
                l1.shape(),
                l2.shape()
            )
        }
        let y = dispatch(name, self, [(s1, l1), (s2, l2)], &())?;
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if let AddRelu::Gate = self {
            bail!("add_relu: the gradient pass has no gradient")
        }
        let g = res
            .detach()
            .apply_op2_no_bwd(&grad.detach().contiguous()?, &AddRelu::Gate)?;
        Ok((a.track_op().then(|| g.clone()), b.track_op().then_some(g)))
    }
}
