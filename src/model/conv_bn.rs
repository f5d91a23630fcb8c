//! A conv followed by train-mode BatchNorm (and a ReLU) as one CPU op.
//!
//! As two ops, the conv's output gradient passed through candle's gradient store, which adds
//! every incoming gradient to a zero-filled tensor of its size: a fill on one thread and an
//! add, over every conv output of the network, in every step (about 5 % of a ResNet-50
//! fine-tuning step). Fused, the BatchNorm backward's input gradient goes straight into the
//! conv backward. The arithmetic is that of the two ops ([`super::conv_cpu`]'s forward, the
//! one-pass statistics and fused normalisation of [`super::batch_norm`], then the BatchNorm
//! and conv backwards), so the results are bit-identical to them.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};

use super::batch_norm::{
    BatchNorm, BnTrain, BnTrainGrad, bn_grad, check_batch, invstd, normalise, stats,
};
use super::conv::{Conv, ConvOp};
use super::conv_cpu::{self, Geometry};
use super::dtype::{Float, Kernel, dispatch};

/// `relu?(bn(conv(x)))` in train mode as one op, updating `bn`'s running statistics; `None`
/// when the conv does not run on the fast CPU kernels (the caller then runs the two ops).
pub(super) fn forward(
    conv: &Conv,
    bn: &BatchNorm,
    x: &Tensor,
    relu: bool,
) -> Result<Option<Tensor>> {
    let Some((w, op)) = conv.fast_op(x)? else {
        return Ok(None);
    };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    // One input for both: a custom op takes at most three.
    let gb = Tensor::cat(&[bn.weight(), bn.bias()], 0)?;
    let saved = Arc::new(OnceLock::new());
    let fused = ConvBn {
        conv: op,
        eps: bn.eps(),
        relu,
        saved: Arc::clone(&saved),
    };
    let y = if x.track_op() || w.track_op() || gb.track_op() {
        x.apply_op3(&w, &gb, fused)?
    } else {
        x.apply_op3_no_bwd(&w, &gb, &fused)?
    };
    let Some(s) = saved.get() else {
        bail!("conv+batch-norm: the forward kept no statistics")
    };
    bn.update_running(&s.bn.mean, &s.var, s.m)?;
    Ok(Some(y))
}

/// What the forward keeps for the backward: the conv's output and the batch statistics.
struct Saved {
    y: CpuStorage,
    bn: BnTrain,
    var: Vec<f64>,
    /// Values per channel.
    m: usize,
}

/// `(x, conv weight, [bn weight; bn bias])` → the normalised (and rectified) conv output.
struct ConvBn {
    conv: ConvOp,
    eps: f64,
    relu: bool,
    saved: Arc<OnceLock<Saved>>,
}

impl Kernel<3> for ConvBn {
    /// The conv's geometry and output shape.
    type Args = (Geometry, Shape);
    type Output = CpuStorage;

    fn run<T: Float>(
        &self,
        [x, w, gb]: [&[T]; 3],
        (g, shape): &(Geometry, Shape),
    ) -> Result<CpuStorage> {
        let (c, hw) = (g.cout, g.ho() * g.wo());
        if gb.len() != 2 * c {
            bail!(
                "conv+batch-norm: {} affine values for {c} channels",
                gb.len()
            )
        }
        let m = g.n * hw;
        check_batch(m, shape)?;
        let y = conv_cpu::forward(x, w, g);
        let (mean, var) = stats(&y, c, hw);
        let bn = BnTrain {
            mean,
            invstd: invstd(&var, self.eps),
            relu: self.relu,
        };
        let z = normalise(&y, &gb[..c], &gb[c..], &bn, hw);
        let saved = Saved {
            y: T::to_cpu_storage_owned(y),
            bn,
            var,
            m,
        };
        if self.saved.set(saved).is_err() {
            bail!("conv+batch-norm: the op ran twice")
        }
        Ok(T::to_cpu_storage_owned(z))
    }
}

impl CustomOp3 for ConvBn {
    fn name(&self) -> &'static str {
        "conv2d-batch-norm"
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
        let g = self.conv.geometry(l1, l2)?;
        let args = (g, Shape::from((g.n, g.cout, g.ho(), g.wo())));
        let z = dispatch(
            "conv+batch-norm",
            self,
            [(s1, l1), (s2, l2), (s3, l3)],
            &args,
        )?;
        Ok((z, args.1))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gb: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(saved) = self.saved.get() else {
            bail!("conv+batch-norm: backward without a forward")
        };
        let affine = gb.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let (gamma, beta) = affine.split_at(affine.len() / 2);
        let input_grad = x.track_op();
        let op = ConvBnGrad {
            conv: self.conv,
            y: &saved.y,
            gamma,
            bn: BnTrainGrad {
                mean: saved.bn.mean.clone(),
                invstd: saved.bn.invstd.clone(),
                gate: self.relu.then(|| saved.bn.affine(gamma, beta)),
            },
            input_grad,
        };
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &op)?;
        let nx = if input_grad { x.elem_count() } else { 0 };
        let nw = w.elem_count();
        let gx = input_grad
            .then(|| packed.narrow(0, 0, nx)?.reshape(x.shape()))
            .transpose()?;
        let gw = packed.narrow(0, nx, nw)?.reshape(w.shape())?;
        let ggb = packed.narrow(0, nx + nw, gb.elem_count())?;
        Ok((gx, Some(gw), Some(ggb)))
    }
}

/// `(x, conv weight, output gradient)` → the input gradient (if asked for), the conv weight's,
/// then the BatchNorm weight's and bias's, flat: a custom op has one output.
struct ConvBnGrad<'a> {
    conv: ConvOp,
    /// The forward's conv output.
    y: &'a CpuStorage,
    gamma: &'a [f64],
    bn: BnTrainGrad,
    input_grad: bool,
}

impl Kernel<3> for ConvBnGrad<'_> {
    type Args = Geometry;
    type Output = CpuStorage;

    fn run<T: Float>(&self, [x, w, dz]: [&[T]; 3], g: &Geometry) -> Result<CpuStorage> {
        let y = match T::cpu_storage_as_slice(self.y) {
            Ok(y) if y.len() == dz.len() => y,
            _ => bail!(
                "conv+batch-norm backward: the saved output is not {} {:?} values",
                dz.len(),
                T::DTYPE
            ),
        };
        // [dy | dγ | dβ], then dy through the conv.
        let bn = bn_grad(y, dz, self.gamma, &self.bn, g.ho() * g.wo());
        let (dy, tail) = bn.split_at(y.len());
        let grads = conv_cpu::backward(x, w, dy, g, self.input_grad, tail);
        Ok(T::to_cpu_storage_owned(grads))
    }
}

impl CustomOp3 for ConvBnGrad<'_> {
    fn name(&self) -> &'static str {
        "conv2d-batch-norm-backward"
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
        let g = self.conv.geometry(l1, l2)?;
        let out_len = g.n * g.cout * g.ho() * g.wo();
        if l3.shape().elem_count() != out_len {
            bail!(
                "conv+batch-norm backward: gradient {:?} does not match {g:?}",
                l3.shape()
            )
        }
        let inputs = [(s1, l1), (s2, l2), (s3, l3)];
        let out = dispatch("conv+batch-norm backward", self, inputs, &g)?;
        let nx = if self.input_grad {
            g.n * g.c * g.h * g.w
        } else {
            0
        };
        let nw = g.cout * g.c / g.groups * g.k * g.k;
        Ok((out, Shape::from(nx + nw + 2 * g.cout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_support::{batch_norm, flat, pattern, value_and_grads, var};
    use crate::vocab::Kernels;
    use candle_core::{Device, Var};

    /// Values in [-0.7, 1.3).
    fn data(len: usize, salt: usize) -> Vec<f32> {
        pattern(len, salt, 2.0, 0.7)
    }

    /// Output, gradients (x, conv weight, bn weight, bn bias) and running statistics of
    /// `relu?(bn(conv(x)))`, fused or as the two ops.
    fn run(fused: bool, relu: bool, groups: usize, stride: usize) -> Result<Vec<Vec<f32>>> {
        let dev = Device::Cpu;
        let (n, cin, cout, h) = (3, 4, 6, 7);
        let affine = |salt| Tensor::from_vec(data(cout, salt), cout, &dev);
        let (vm, bn) = batch_norm(&affine(4)?, &affine(5)?, Kernels::Fast)?;
        let x = Var::from_vec(data(n * cin * h * h, 1), (n, cin, h, h), &dev)?;
        let wv = data(cout * cin / groups * 9, 2);
        let w = Var::from_vec(wv, (cout, cin / groups, 3, 3), &dev)?;
        let conv = Conv::new(w.as_tensor().clone(), stride, 1, groups);
        let f = |t: &[Tensor]| {
            if fused {
                let z = forward(&conv, &bn, &t[0], relu)?;
                Ok(z.expect("the fast kernels take f32"))
            } else {
                let y = conv.forward(&t[0])?;
                if relu {
                    bn.forward_t_relu(&y, true)
                } else {
                    bn.forward_t(&y, true)
                }
            }
        };
        let r = |z: &Tensor| Tensor::from_vec(data(z.elem_count(), 3), z.shape(), &dev);
        let inputs = [x, w, var(&vm, "weight"), var(&vm, "bias")];
        let (z, grads) = value_and_grads(f, &inputs, r)?;
        let mut out = vec![flat(&z)];
        out.extend(grads.iter().map(flat));
        out.push(flat(&var(&vm, "running_mean")));
        out.push(flat(&var(&vm, "running_var")));
        Ok(out)
    }

    #[test]
    fn fused_equals_the_conv_then_the_batch_norm_bit_for_bit() -> Result<()> {
        for (relu, groups, stride) in [(true, 1, 1), (false, 1, 2), (true, 2, 2), (false, 2, 1)] {
            assert_eq!(
                run(true, relu, groups, stride)?,
                run(false, relu, groups, stride)?,
                "relu {relu}, groups {groups}, stride {stride}"
            );
        }
        Ok(())
    }
}
