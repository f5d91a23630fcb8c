//! BatchNorm with fused CPU kernels, same vars and semantics as `candle_nn::BatchNorm`
//! (torch's: batch statistics in train mode, biased variance for normalising, unbiased for the
//! running variance, momentum 0.1, eps 1e-5).
//!
//! candle's train-mode BatchNorm is a dozen broadcast ops (transpose, copy, mean, sub, sqr,
//! mean, div, sqrt, mul, add, ..) each a pass over the activation, and as many again in
//! backward; in a ResNet fine-tuning step on the CPU that was a large share of the time. Here
//! the statistics are one pass, the normalisation one pass, and the backward two (per-channel
//! sums, then the input gradient). A ReLU that follows is fused into the same passes
//! ([`BatchNorm::forward_t_relu`]), and eval mode is one pass without a graph. After a conv,
//! [`BatchNorm::forward_conv_t`] trains both as one op ([`super::conv_bn`]). Other devices
//! and [`Kernels::Reference`] use candle's BatchNorm.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, Var,
    WithDType, bail,
};
use candle_nn::{ModuleT, VarBuilder};
use rayon::prelude::*;

use super::Kernels;
use super::conv::Conv;
use super::dtype::{Float, Kernel, dispatch};

/// A BatchNorm over dimension 1 of an `[N, C, H, W]` tensor, vars `weight`, `bias`,
/// `running_mean`, `running_var` (torchvision's names).
#[derive(Clone, Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
    /// candle's own, sharing the same vars: the path for non-CPU devices, other dtypes and
    /// [`Kernels::Reference`].
    fallback: candle_nn::BatchNorm,
    kernels: Kernels,
}

impl BatchNorm {
    /// Creates (or fetches) the four vars under `vb` with torch's defaults: weight 1, bias 0,
    /// running mean 0, running variance 1; eps 1e-5, momentum 0.1.
    pub fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        use candle_nn::Init::Const;
        let running_mean = vb.get_with_hints(c, "running_mean", Const(0.))?;
        let running_var = vb.get_with_hints(c, "running_var", Const(1.))?;
        let weight = vb.get_with_hints(c, "weight", Const(1.))?;
        let bias = vb.get_with_hints(c, "bias", Const(0.))?;
        let (eps, momentum) = (1e-5, 0.1);
        let fallback = candle_nn::BatchNorm::new_with_momentum(
            c,
            running_mean.clone(),
            running_var.clone(),
            weight.clone(),
            bias.clone(),
            eps,
            momentum,
        )?;
        Ok(Self {
            weight,
            bias,
            // From a VarMap these are vars already and `from_tensor` shares their storage, so
            // updates land in the VarMap (and in `fallback`, which does the same).
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps,
            momentum,
            fallback,
            kernels: Kernels::Fast,
        })
    }

    /// The same BatchNorm (same vars) on `kernels`.
    pub fn with_kernels(self, kernels: Kernels) -> Self {
        Self { kernels, ..self }
    }

    /// `train`: normalise with the batch's statistics and update the running ones; else
    /// normalise with the running statistics (left untouched). `train == false` promises no
    /// backward passes through (frozen blocks, inference), as for [`super::Conv::forward_t`].
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_fused(x, train, false)
    }

    /// `relu(forward_t(x, train))`, in the same pass on the fast kernels: one op less in the
    /// graph, whose backward in candle is half a dozen passes over the activation.
    pub fn forward_t_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_fused(x, train, true)
    }

    fn forward_fused(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        if !self.fuses(x) {
            let y = self.fallback.forward_t(x, train)?;
            return if relu { y.relu() } else { Ok(y) };
        }
        if train {
            self.forward_train(x, relu)
        } else {
            self.forward_eval(x, relu)
        }
    }

    /// y = x·scale + shift with per-channel scale and shift, in one pass without a graph.
    fn forward_eval(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let f64s = |t: &Tensor| t.to_dtype(DType::F64)?.to_vec1::<f64>();
        let (w, b) = (f64s(&self.weight)?, f64s(&self.bias)?);
        let rm = f64s(self.running_mean.as_tensor())?;
        let rv = f64s(self.running_var.as_tensor())?;
        let scale: Vec<f64> = w
            .iter()
            .zip(&rv)
            .map(|(w, v)| w / (v + self.eps).sqrt())
            .collect();
        let shift = b
            .iter()
            .zip(&rm)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        x.contiguous()?
            .apply_op1_no_bwd(&BnEval(Affine { scale, shift, relu }))
    }

    /// `relu?(self(conv(x)))`: in train mode on the fast CPU kernels one op (the
    /// `conv_bn` module), which keeps the conv's output and its gradient out of candle's
    /// graph; otherwise the conv, then this BatchNorm.
    pub fn forward_conv_t(
        &self,
        conv: &Conv,
        x: &Tensor,
        train: bool,
        relu: bool,
    ) -> Result<Tensor> {
        if train
            && self.fuses(x)
            && let Some(y) = super::conv_bn::forward(conv, self, x, relu)?
        {
            return Ok(y);
        }
        self.forward_fused(&conv.forward_t(x, train)?, train, relu)
    }

    /// Whether the fused CPU kernels take `x` (else candle's BatchNorm does).
    fn fuses(&self, x: &Tensor) -> bool {
        self.kernels == Kernels::Fast
            && x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && x.rank() == 4
            && self.weight.dtype() == x.dtype()
    }

    pub(super) fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub(super) fn bias(&self) -> &Tensor {
        &self.bias
    }

    pub(super) fn eps(&self) -> f64 {
        self.eps
    }

    /// Moves the running statistics towards a batch's `mean` and biased `var` over `m` values
    /// per channel (the variance is stored unbiased, as torch does).
    pub(super) fn update_running(&self, mean: &[f64], var: &[f64], m: usize) -> Result<()> {
        let mom = self.momentum;
        let upd = |run: &Var, batch: &[f64], factor: f64| -> Result<()> {
            let batch = Tensor::new(batch, run.device())?.to_dtype(run.dtype())?;
            run.set(&((run.as_detached_tensor() * (1.0 - mom))? + (batch * (mom * factor))?)?)
        };
        upd(&self.running_mean, mean, 1.0)?;
        upd(&self.running_var, var, m as f64 / (m as f64 - 1.0))
    }

    fn forward_train(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (n, c, h, w) = x.dims4()?;
        let m = n * h * w;
        check_batch(m, x.shape())?;
        let (mean, var) = match &*x.storage_and_layout().0 {
            Storage::Cpu(s) => dispatch("batch-norm", &Stats, [(s, x.layout())], &(c, h * w))?,
            _ => bail!("batch-norm: unexpected storage"),
        };
        self.update_running(&mean, &var, m)?;
        let invstd = invstd(&var, self.eps);
        x.apply_op3(&self.weight, &self.bias, BnTrain { mean, invstd, relu })
    }
}

/// Train mode needs more than one value per channel (`m` of them) to have a variance.
pub(super) fn check_batch(m: usize, shape: &Shape) -> Result<()> {
    if m < 2 {
        bail!("batch-norm in train mode needs more than one value per channel, got {shape:?}")
    }
    Ok(())
}

/// `1 / sqrt(var + eps)` per channel.
pub(super) fn invstd(var: &[f64], eps: f64) -> Vec<f64> {
    var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect()
}

/// `(Σ f(xᵢ, yᵢ).0, Σ f(xᵢ, yᵢ).1)` over two equally long slices, in f64 with eight
/// interleaved accumulators: the compiler may not reorder float additions, so one
/// accumulator would be one long chain of dependent adds (latency-bound); eight vectorise.
/// The order is fixed, so is the result.
#[inline]
fn sums<T: WithDType>(xs: &[T], ys: &[T], f: impl Fn(T, T) -> (f64, f64)) -> (f64, f64) {
    let (mut a, mut b) = ([0f64; 8], [0f64; 8]);
    let (mut xc, mut yc) = (xs.chunks_exact(8), ys.chunks_exact(8));
    for (x, y) in (&mut xc).zip(&mut yc) {
        for l in 0..8 {
            let (u, v) = f(x[l], y[l]);
            a[l] += u;
            b[l] += v;
        }
    }
    for (l, (x, y)) in xc.remainder().iter().zip(yc.remainder()).enumerate() {
        let (u, v) = f(*x, *y);
        a[l] += u;
        b[l] += v;
    }
    (a.iter().sum(), b.iter().sum())
}

/// Per-channel mean and biased variance of a contiguous `[N, C, HW]` buffer, in f64 and one
/// pass: sums of `x − K` and `(x − K)²` around the channel's first value `K`. The pass is
/// memory-bound, so a second one for the variance would cost as much again; shifting by a
/// value of the channel keeps the subtraction `E[(x−K)²] − E[x−K]²` well conditioned (its
/// relative error grows with ((mean − K) / std)², which a sample of the channel keeps small).
pub(super) fn stats<T: WithDType>(x: &[T], c: usize, hw: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / (c * hw);
    let m = (n * hw) as f64;
    let plane = move |b: usize, ch: usize| &x[(b * c + ch) * hw..(b * c + ch + 1) * hw];
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let k = plane(0, ch).first().map_or(0.0, |v| v.to_f64());
            let (s1, s2) = (0..n).fold((0.0, 0.0), |(s1, s2), b| {
                let (a, q) = sums(plane(b, ch), plane(b, ch), |v, _| {
                    let d = v.to_f64() - k;
                    (d, d * d)
                });
                (s1 + a, s2 + q)
            });
            let shift = s1 / m;
            (k + shift, (s2 / m - shift * shift).max(0.0))
        })
        .unzip()
}

/// [`stats`] as a kernel, for the train-mode forward.
struct Stats;

impl Kernel<1> for Stats {
    /// Channels, and values per channel and image.
    type Args = (usize, usize);
    type Output = (Vec<f64>, Vec<f64>);

    fn run<T: Float>(&self, [x]: [&[T]; 1], &(c, hw): &(usize, usize)) -> Result<Self::Output> {
        Ok(stats(x, c, hw))
    }
}

/// Train-mode normalisation with the batch statistics computed beforehand, optionally
/// followed by a ReLU.
pub(super) struct BnTrain {
    pub mean: Vec<f64>,
    pub invstd: Vec<f64>,
    pub relu: bool,
}

impl BnTrain {
    /// The per-channel map the forward applies, for weight `w` and bias `b`.
    pub(super) fn affine(&self, w: &[f64], b: &[f64]) -> Affine {
        let scale: Vec<f64> = self.invstd.iter().zip(w).map(|(i, w)| i * w).collect();
        let shift = b
            .iter()
            .zip(&self.mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Affine {
            scale,
            shift,
            relu: self.relu,
        }
    }
}

pub(super) fn per_channel<T: WithDType>(t: &[T]) -> Vec<f64> {
    t.iter().map(|v| v.to_f64()).collect()
}

/// `y = x·scale[c] + shift[c]`, then `max(y, 0)` if `relu`.
#[derive(Clone, Debug)]
pub(super) struct Affine {
    scale: Vec<f64>,
    shift: Vec<f64>,
    relu: bool,
}

impl Affine {
    /// Channel `ch`'s map in the tensor's precision, so that the pass over the activation
    /// vectorises.
    fn channel<T: WithDType>(&self, ch: usize) -> Channel<T> {
        Channel {
            scale: T::from_f64(self.scale[ch]),
            shift: T::from_f64(self.shift[ch]),
            relu: self.relu,
        }
    }

    fn run<T: WithDType>(&self, x: &[T], hw: usize) -> Vec<T> {
        let c = self.scale.len();
        // Written once, so not zero-filled first.
        let mut y = Box::<[T]>::new_uninit_slice(x.len());
        y.par_chunks_mut(hw)
            .zip(x.par_chunks(hw))
            .enumerate()
            .for_each(|(plane, (y, x))| {
                let map = self.channel::<T>(plane % c);
                for (y, x) in y.iter_mut().zip(x) {
                    y.write(map.apply(*x));
                }
            });
        // SAFETY: the planes cover `y` (same length and chunking as `x`), each element written.
        unsafe { y.assume_init() }.into_vec()
    }
}

/// One channel of an [`Affine`].
#[derive(Clone, Copy)]
struct Channel<T> {
    scale: T,
    shift: T,
    relu: bool,
}

impl<T: WithDType> Channel<T> {
    /// The output for `x`. The backward recomputes it to find where the ReLU passed the
    /// gradient, so both must use this one expression.
    #[inline]
    fn apply(&self, x: T) -> T {
        let y = x * self.scale + self.shift;
        if self.relu && y <= T::zero() {
            T::zero()
        } else {
            y
        }
    }

    /// `g`, or 0 where the ReLU after this map cut: where [`Channel::apply`]'s `y ≤ 0` (a
    /// select on the same expression, so that the backward's passes vectorise).
    #[inline]
    fn gate(&self, x: T, g: T) -> T {
        if self.relu && x * self.scale + self.shift <= T::zero() {
            T::zero()
        } else {
            g
        }
    }
}

pub(super) fn normalise<T: WithDType>(
    x: &[T],
    w: &[T],
    b: &[T],
    op: &BnTrain,
    hw: usize,
) -> Vec<T> {
    op.affine(&per_channel(w), &per_channel(b)).run(x, hw)
}

/// Eval-mode BatchNorm (and ReLU) with the running statistics folded into the map.
struct BnEval(Affine);

impl Kernel<1> for BnEval {
    /// Values per channel and image.
    type Args = usize;
    type Output = CpuStorage;

    fn run<T: Float>(&self, [x]: [&[T]; 1], &hw: &usize) -> Result<CpuStorage> {
        Ok(T::to_cpu_storage_owned(self.0.run(x, hw)))
    }
}

impl CustomOp1 for BnEval {
    fn name(&self) -> &'static str {
        "batch-norm-eval"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l.shape().dims4()?;
        if c != self.0.scale.len() {
            bail!("batch-norm: {c} channels, expected {}", self.0.scale.len())
        }
        let y = dispatch("batch-norm", self, [(s, l)], &(h * w))?;
        Ok((y, l.shape().clone()))
    }
}

impl Kernel<3> for BnTrain {
    /// Values per channel and image.
    type Args = usize;
    type Output = CpuStorage;

    fn run<T: Float>(&self, [x, w, b]: [&[T]; 3], &hw: &usize) -> Result<CpuStorage> {
        Ok(T::to_cpu_storage_owned(normalise(x, w, b, self, hw)))
    }
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
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
        let (_, _, h, w) = l1.shape().dims4()?;
        let y = dispatch("batch-norm", self, [(s1, l1), (s2, l2), (s3, l3)], &(h * w))?;
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, wd) = x.dims4()?;
        let len = n * c * h * wd;
        let grad = grad.contiguous()?;
        let gate = if self.relu {
            let f64s = |t: &Tensor| t.to_dtype(DType::F64)?.to_vec1::<f64>();
            Some(self.affine(&f64s(w)?, &f64s(b)?))
        } else {
            None
        };
        let packed = x.detach().apply_op3_no_bwd(
            &grad.detach(),
            &w.detach().contiguous()?,
            &BnTrainGrad {
                mean: self.mean.clone(),
                invstd: self.invstd.clone(),
                gate,
            },
        )?;
        let dx = x
            .track_op()
            .then(|| packed.narrow(0, 0, len)?.reshape(x.shape()))
            .transpose()?;
        Ok((
            dx,
            Some(packed.narrow(0, len, c)?),
            Some(packed.narrow(0, len + c, c)?),
        ))
    }
}

/// `(x, grad, weight)` → `[dx (flattened), dweight (C), dbias (C)]` in one buffer, since a
/// custom op has one output.
pub(super) struct BnTrainGrad {
    pub mean: Vec<f64>,
    pub invstd: Vec<f64>,
    /// The forward's map when a ReLU followed: the gradient only passes where it was positive.
    pub gate: Option<Affine>,
}

impl BnTrainGrad {
    /// Channel `ch`'s ReLU gate (a map that never cuts when no ReLU followed).
    fn gate<T: WithDType>(&self, ch: usize) -> Channel<T> {
        match &self.gate {
            Some(a) => a.channel(ch),
            None => Channel {
                scale: T::one(),
                shift: T::zero(),
                relu: false,
            },
        }
    }
}

pub(super) fn bn_grad<T: WithDType>(
    x: &[T],
    g: &[T],
    w: &[f64],
    op: &BnTrainGrad,
    hw: usize,
) -> Vec<T> {
    let c = w.len();
    let n = x.len() / (c * hw);
    let m = (n * hw) as f64;
    let plane = |b: usize, ch: usize| (b * c + ch) * hw..(b * c + ch + 1) * hw;
    // Per channel: Σg (= dbias) and Σg·x̂ (= dweight).
    let (db, dw): (Vec<f64>, Vec<f64>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, inv) = (op.mean[ch], op.invstd[ch]);
            let gate = op.gate::<T>(ch);
            let (mut sg, mut sgx) = (0.0, 0.0);
            for b in 0..n {
                let r = plane(b, ch);
                let (a, bx) = sums(&x[r.clone()], &g[r], |xv, gv| {
                    let gv = gate.gate(xv, gv).to_f64();
                    (gv, gv * (xv.to_f64() - mean))
                });
                sg += a;
                sgx += bx * inv;
            }
            (sg, sgx)
        })
        .unzip();
    // Every element is written below, so the buffer is not zero-filled first.
    let mut out = Box::<[T]>::new_uninit_slice(x.len() + 2 * c);
    let (dx, rest) = out.split_at_mut(x.len());
    // dx = w·invstd/M · (M·g − Σg − x̂·Σg·x̂) = α·g + β·x + γ per channel.
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dx)| {
        let ch = p % c;
        let (mean, inv) = (op.mean[ch], op.invstd[ch]);
        let k = w[ch] * inv / m;
        let alpha = T::from_f64(k * m);
        let beta = T::from_f64(-k * dw[ch] * inv);
        let gamma = T::from_f64(k * (dw[ch] * inv * mean - db[ch]));
        let gate = op.gate::<T>(ch);
        let r = p * hw..(p + 1) * hw;
        for ((d, xv), gv) in dx.iter_mut().zip(&x[r.clone()]).zip(&g[r]) {
            d.write(alpha * gate.gate(*xv, *gv) + beta * *xv + gamma);
        }
    });
    for ch in 0..c {
        rest[ch].write(T::from_f64(dw[ch]));
        rest[c + ch].write(T::from_f64(db[ch]));
    }
    // SAFETY: the planes cover `dx` (same chunking as `x`) and the loop above `rest`.
    unsafe { out.assume_init() }.into_vec()
}

impl Kernel<3> for BnTrainGrad {
    /// Values per channel and image.
    type Args = usize;
    type Output = CpuStorage;

    fn run<T: Float>(&self, [x, g, w]: [&[T]; 3], &hw: &usize) -> Result<CpuStorage> {
        Ok(T::to_cpu_storage_owned(bn_grad(
            x,
            g,
            &per_channel(w),
            self,
            hw,
        )))
    }
}

impl CustomOp3 for BnTrainGrad {
    fn name(&self) -> &'static str {
        "batch-norm-train-grad"
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
        let (n, c, h, w) = l1.shape().dims4()?;
        let inputs = [(s1, l1), (s2, l2), (s3, l3)];
        let out = dispatch("batch-norm backward", self, inputs, &(h * w))?;
        Ok((out, Shape::from(n * c * h * w + 2 * c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_support::{Tol, assert_each_close, batch_norm, flat, pattern, var};
    use candle_core::Device;

    /// Values in [-1, 2).
    fn data(len: usize, salt: usize) -> Vec<f64> {
        pattern(len, salt, 3.0, 1.0)
    }

    fn close(a: &Tensor, b: &Tensor, what: &str) {
        assert_each_close(&flat(a), &flat(b), Tol::Rel(1e-9), what);
    }

    #[test]
    fn matches_candles_batch_norm_in_train_mode_with_gradients_and_in_eval_mode() -> Result<()> {
        let dev = Device::Cpu;
        let (n, c, h, w) = (3, 4, 5, 3);
        let weight = Tensor::new(&[0.5f64, 1.5, -1.0, 2.0], &dev)?;
        let bias = Tensor::new(&[0.1f64, -0.2, 0.3, 0.0], &dev)?;
        let (ours_vm, ours) = batch_norm(&weight, &bias, Kernels::Fast)?;
        let (ref_vm, _) = batch_norm(&weight, &bias, Kernels::Fast)?;
        let v = |name| var(&ref_vm, name).as_tensor().clone();
        let reference = candle_nn::BatchNorm::new_with_momentum(
            c,
            v("running_mean"),
            v("running_var"),
            v("weight"),
            v("bias"),
            1e-5,
            0.1,
        )?;
        let x = Var::from_vec(data(n * c * h * w, 1), (n, c, h, w), &dev)?;
        let r = Tensor::from_vec(data(n * c * h * w, 2), (n, c, h, w), &dev)?;
        for train in [true, false, true] {
            let a = ours.forward_t(&x, train)?;
            let b = reference.forward_t(&x, train)?;
            close(&a, &b, "y");
            if !train {
                // Eval mode promises no backward (frozen blocks, inference) and builds no graph.
                assert!(a.backward()?.get(&x).is_none());
                continue;
            }
            let ga = (a * &r)?.sum_all()?.backward()?;
            let gb = (b * &r)?.sum_all()?.backward()?;
            close(ga.get(&x).expect("dx"), gb.get(&x).expect("dx"), "dx");
            for name in ["weight", "bias"] {
                let g1 = ga.get(&var(&ours_vm, name)).expect("ours");
                let g2 = gb.get(&var(&ref_vm, name)).expect("reference");
                close(g1, g2, name);
            }
            for name in ["running_mean", "running_var"] {
                close(
                    var(&ours_vm, name).as_tensor(),
                    var(&ref_vm, name).as_tensor(),
                    name,
                );
            }
        }
        Ok(())
    }
}
