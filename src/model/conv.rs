//! A 2-D convolution (no bias) with fast CPU kernels for the forward and both gradients.
//!
//! candle 0.11's CPU conv transposes the input to NHWC on one thread, splits grouped convs
//! into per-group convs and a `cat`, and computes the input gradient with `conv_transpose2d`,
//! a naive loop, even when the input is data or detached. Here the forward and the backward
//! are one custom op each, im2col + GEMM as torch does on the CPU ([`super::conv_cpu`]), for
//! any stride, padding, dilation and groups, parallel over images. Input gradients are only
//! computed when the input is tracked (not for images or the output of frozen blocks).
//! What that bought is in `benches/README.md`.
//! Non-CPU devices, other dtypes and [`Kernels::Reference`] use candle's conv and backward.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};

use super::Kernels;
use super::conv_cpu::{self, Geometry};
use super::dtype::{Float, Kernel, dispatch};

/// Conv weights and settings, torchvision's `Conv2d(.., bias=False)`.
#[derive(Clone, Debug)]
pub struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
    kernels: Kernels,
}

impl Conv {
    /// `weight`: `[out, in / groups, k, k]`; fast kernels.
    pub fn new(weight: Tensor, stride: usize, padding: usize, groups: usize) -> Self {
        Self {
            weight,
            stride,
            padding,
            groups,
            kernels: Kernels::Fast,
        }
    }

    /// The same conv on `kernels`.
    pub fn with_kernels(self, kernels: Kernels) -> Self {
        Self { kernels, ..self }
    }

    /// `[N, in, H, W]` → `[N, out, H', W']`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.kernels {
            Kernels::Fast => conv2d(x, &self.weight, self.stride, self.padding, 1, self.groups),
            Kernels::Reference => self.reference(x),
        }
    }

    /// Like [`Conv::forward`]; `train == false` promises no backward will pass through (frozen
    /// blocks, whose output is detached), so no autograd graph is built.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match (train, self.kernels) {
            (true, _) => self.forward(x),
            // Detached inputs make `conv2d` skip the graph, so the inputs are not kept alive
            // with the output.
            (false, Kernels::Fast) => conv2d(
                &x.detach(),
                &self.weight.detach(),
                self.stride,
                self.padding,
                1,
                self.groups,
            ),
            (false, Kernels::Reference) => self.reference(x),
        }
    }

    fn reference(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.padding, self.stride, 1, self.groups)
    }

    /// The weight, and the fast CPU op with this conv's settings when it takes `x`.
    pub(super) fn fast_op(&self, x: &Tensor) -> Result<Option<(&Tensor, ConvOp)>> {
        let op = ConvOp {
            stride: self.stride,
            padding: self.padding,
            dilation: 1,
            groups: self.groups,
        };
        let fast = self.kernels == Kernels::Fast && op.handles(x, &self.weight)?;
        Ok(fast.then_some((&self.weight, op)))
    }
}

/// `x` `[N, Cin, H, W]` ⊛ `w` `[Cout, Cin / groups, k, k]`; same result as candle's
/// `conv2d`, on the CPU with the fast kernels and backward described in the module docs.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
) -> Result<Tensor> {
    let op = ConvOp {
        stride,
        padding,
        dilation,
        groups,
    };
    if !op.handles(x, w)? {
        return x.conv2d(w, padding, stride, dilation, groups);
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    if x.track_op() || w.track_op() {
        x.apply_op2(&w, op)
    } else {
        x.apply_op2_no_bwd(&w, &op)
    }
}

/// The forward op; its backward is [`ConvBackward`].
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvOp {
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
}

impl ConvOp {
    /// Whether the CPU kernels take these operands (else candle's conv does).
    fn handles(&self, x: &Tensor, w: &Tensor) -> Result<bool> {
        let (_, _, kh, kw) = w.dims4()?;
        Ok(x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && w.dtype() == x.dtype()
            && x.rank() == 4
            && kh == kw)
    }

    pub(super) fn geometry(&self, x: &Layout, w: &Layout) -> Result<Geometry> {
        let (n, c, h, wd) = x.shape().dims4()?;
        let (cout, cg, k, k2) = w.shape().dims4()?;
        if k != k2 || cg * self.groups != c {
            bail!(
                "conv2d: kernel {:?} does not fit input {:?} with {} groups",
                w.shape(),
                x.shape(),
                self.groups
            )
        }
        let g = Geometry {
            n,
            c,
            h,
            w: wd,
            cout,
            k,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        };
        g.check()?;
        Ok(g)
    }
}

impl Kernel<2> for ConvOp {
    type Args = Geometry;
    type Output = CpuStorage;

    fn run<T: Float>(&self, [x, w]: [&[T]; 2], g: &Geometry) -> Result<CpuStorage> {
        Ok(T::to_cpu_storage_owned(conv_cpu::forward(x, w, g)))
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "conv2d-fast"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1, l2)?;
        let y = dispatch("conv2d", self, [(s1, l1), (s2, l2)], &g)?;
        Ok((y, Shape::from((g.n, g.cout, g.ho(), g.wo()))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let input_grad = x.track_op();
        let grad = grad.contiguous()?;
        let both = x.apply_op3_no_bwd(
            w,
            &grad,
            &ConvBackward {
                op: *self,
                input_grad,
            },
        )?;
        let nx = if input_grad { x.elem_count() } else { 0 };
        let gw = both.narrow(0, nx, w.elem_count())?.reshape(w.shape())?;
        let gx = if input_grad {
            Some(both.narrow(0, 0, nx)?.reshape(x.shape())?)
        } else {
            None
        };
        Ok((gx, Some(gw)))
    }
}

/// `(x, w, output gradient)` → the input gradient (if asked for) followed by the kernel
/// gradient, flat: a custom op has one output.
struct ConvBackward {
    op: ConvOp,
    input_grad: bool,
}

impl Kernel<3> for ConvBackward {
    type Args = Geometry;
    type Output = CpuStorage;

    fn run<T: Float>(&self, [x, w, dy]: [&[T]; 3], g: &Geometry) -> Result<CpuStorage> {
        let grads = conv_cpu::backward(x, w, dy, g, self.input_grad, &[]);
        Ok(T::to_cpu_storage_owned(grads))
    }
}

impl CustomOp3 for ConvBackward {
    fn name(&self) -> &'static str {
        "conv2d-fast-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.op.geometry(l1, l2)?;
        if l3.shape().dims4()? != (g.n, g.cout, g.ho(), g.wo()) {
            bail!(
                "conv2d backward: gradient {:?} does not match {g:?}",
                l3.shape()
            )
        }
        let out = dispatch("conv2d backward", self, [(s1, l1), (s2, l2), (s3, l3)], &g)?;
        let nx = if self.input_grad {
            g.n * g.c * g.h * g.w
        } else {
            0
        };
        Ok((out, Shape::from(nx + g.cout * g.c / g.groups * g.k * g.k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_support::{Tol, assert_each_close, flat, pattern, value_and_grads};
    use candle_core::{Device, Var};

    /// Values in [-0.5, 0.5).
    fn data(len: usize, salt: usize) -> Vec<f64> {
        pattern(len, salt, 1.0, 0.5)
    }

    /// Direct loops: y, and the gradients of Σ(y · r) with respect to x and w.
    #[allow(clippy::type_complexity)]
    fn naive(
        x: &[f64],
        w: &[f64],
        r: impl Fn(usize) -> f64,
        (n, cin, h, wd): (usize, usize, usize, usize),
        (cout, k, s, p, d, g): (usize, usize, usize, usize, usize, usize),
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let span = d * (k - 1) + 1;
        let (ho, wo) = ((h + 2 * p - span) / s + 1, (wd + 2 * p - span) / s + 1);
        let (cin_g, cout_g) = (cin / g, cout / g);
        let mut y = vec![0.0; n * cout * ho * wo];
        let (mut gx, mut gw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        for b in 0..n {
            for co in 0..cout {
                for oi in 0..ho {
                    for oj in 0..wo {
                        let yi = ((b * cout + co) * ho + oi) * wo + oj;
                        for c in 0..cin_g {
                            let ci = co / cout_g * cin_g + c;
                            for ki in 0..k {
                                for kj in 0..k {
                                    let (ii, ij) = (
                                        (oi * s + ki * d) as isize - p as isize,
                                        (oj * s + kj * d) as isize - p as isize,
                                    );
                                    if ii < 0 || ij < 0 || ii as usize >= h || ij as usize >= wd {
                                        continue;
                                    }
                                    let xi = ((b * cin + ci) * h + ii as usize) * wd + ij as usize;
                                    let wi = ((co * cin_g + c) * k + ki) * k + kj;
                                    y[yi] += x[xi] * w[wi];
                                    gx[xi] += w[wi] * r(yi);
                                    gw[wi] += x[xi] * r(yi);
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, gx, gw)
    }

    #[test]
    fn forward_and_gradients_match_direct_loops() -> Result<()> {
        // (cin, cout, k, stride, padding, dilation, groups, h, w); odd and even sizes, so some
        // input rows and columns are never read (candle 0.11's own backward fails when that
        // differs between height and width, as in 7×8).
        let cases = [
            (3, 4, 3, 1, 1, 1, 1, 7, 6),
            (3, 4, 3, 2, 1, 1, 1, 7, 8),
            (3, 5, 7, 2, 3, 1, 1, 9, 11),
            (4, 6, 1, 2, 0, 1, 1, 7, 6),
            (4, 6, 1, 1, 0, 1, 1, 5, 5),
            (4, 6, 3, 2, 1, 1, 2, 8, 9),
            (6, 6, 3, 1, 1, 1, 3, 5, 4),
            (2, 3, 3, 2, 0, 1, 1, 8, 7),
            (2, 4, 3, 1, 2, 2, 1, 7, 9),
            (4, 4, 3, 2, 0, 3, 4, 9, 8),
        ];
        for (cin, cout, k, s, p, d, g, h, wd) in cases {
            let (xv, wv) = (data(2 * cin * h * wd, 1), data(cout * cin / g * k * k, 2));
            let x = Var::from_vec(xv.clone(), (2, cin, h, wd), &Device::Cpu)?;
            let w = Var::from_vec(wv.clone(), (cout, cin / g, k, k), &Device::Cpu)?;
            let r = |y: &Tensor| Tensor::from_vec(data(y.elem_count(), 3), y.shape(), y.device());
            let (y, gs) = value_and_grads(|t| conv2d(&t[0], &t[1], s, p, d, g), &[x, w], r)?;
            let r = data(y.elem_count(), 3);
            let want = naive(&xv, &wv, |i| r[i], (2, cin, h, wd), (cout, k, s, p, d, g));
            for (what, a, b) in [
                ("y", &y, &want.0),
                ("dx", &gs[0], &want.1),
                ("dw", &gs[1], &want.2),
            ] {
                let what = format!("{what} k{k} s{s} p{p} d{d} g{g} {h}x{wd}");
                assert_each_close(&flat(a), b, Tol::Abs(1e-9), &what);
            }
        }
        Ok(())
    }

    #[test]
    fn a_data_input_gets_no_gradient() -> Result<()> {
        let x = Tensor::from_vec(data(2 * 3 * 6 * 6, 1), (2, 3, 6, 6), &Device::Cpu)?;
        let w = Var::from_vec(data(4 * 3 * 9, 2), (4, 3, 3, 3), &Device::Cpu)?;
        let g = conv2d(&x, &w, 2, 1, 1, 1)?.sum_all()?.backward()?;
        assert!(g.get(&x).is_none() && g.get(&w).is_some());
        Ok(())
    }
}
