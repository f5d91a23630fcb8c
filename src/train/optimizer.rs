//! Adam, AdamW and SGD with momentum, with the exact update rules of `torch.optim`, and state
//! that goes into (and comes back out of) a safetensors checkpoint.
//!
//! candle-nn's own `AdamW` keeps its moments inside private `Var`s in the order the vars were
//! given, so it can neither be checkpointed nor survive a change in the var list (unfreezing
//! the backbone adds vars mid-run). This optimiser keys its state by var *name* instead and
//! creates it lazily on a var's first gradient, which is also what PyTorch does.
//!
//! It owns the update maths only: the learning rate comes in on every [`Optimizer::step`]
//! (the scheduler decides it), and which vars train is decided by the caller's var list and
//! by which vars have gradients.
//!
//! All maths is done with tensor ops on the parameters' own device and dtype, so it runs
//! unchanged on CPU, CUDA and Metal; nothing is copied to the host during a step. Adam and
//! AdamW on contiguous f32 CPU tensors instead take a bit-identical in-place path
//! (`adam_cpu`).
//!
//! # Checkpoint layout
//!
//! [`Optimizer::state_tensors`] writes, for every var that has been stepped at least once:
//!
//! | name                          | shape        | present for          |
//! |-------------------------------|--------------|----------------------|
//! | `optim.<var>.step`            | scalar, F64  | all kinds            |
//! | `optim.<var>.exp_avg`         | var's shape  | `adam`, `adamw`      |
//! | `optim.<var>.exp_avg_sq`      | var's shape  | `adam`, `adamw`      |
//! | `optim.<var>.momentum_buffer` | var's shape  | `sgd` with momentum  |
//!
//! The step count is an F64 scalar on the CPU (exact for any realistic count, and F64 is not
//! available on every accelerator); PyTorch likewise keeps `step` as a tensor.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use crate::experiment::Optimizer as OptimizerKind;

/// Prefix of every optimiser entry in a checkpoint.
/// Prefix of every optimiser-state tensor name.
pub const STATE_PREFIX: &str = "optim.";
const STEP: &str = "step";
const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";
const MOMENTUM_BUFFER: &str = "momentum_buffer";

/// Hyperparameters of an [`Optimizer`] (everything except the learning rate, which the
/// scheduler passes to every step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerSettings {
    /// Which update rule.
    pub kind: OptimizerKind,
    /// L2 penalty added to the gradient (`adam`, `sgd`) or decoupled decay (`adamw`).
    pub weight_decay: f64,
    /// Momentum factor μ (`sgd` only); 0 disables the buffer, as in PyTorch.
    pub momentum: f64,
    /// Decay of the first moment (`adam`, `adamw`).
    pub beta1: f64,
    /// Decay of the second moment (`adam`, `adamw`).
    pub beta2: f64,
    /// Added to the denominator for numerical stability (`adam`, `adamw`).
    pub eps: f64,
}

impl OptimizerSettings {
    /// PyTorch's defaults for `kind` (betas 0.9/0.999, eps 1e-8) with the given weight decay
    /// and SGD momentum.
    pub fn new(kind: OptimizerKind, weight_decay: f64, momentum: f64) -> Self {
        OptimizerSettings {
            kind,
            weight_decay,
            momentum,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// An optimiser state that could not be exported or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptimizerError {
    /// An entry whose name is not one this optimiser kind writes.
    #[error("unknown optimiser state entry `{name}`")]
    UnknownEntry {
        /// Full tensor name.
        name: String,
    },
    /// An entry this optimiser kind needs is absent.
    #[error("missing optimiser state entry `{name}`")]
    MissingEntry {
        /// Full tensor name.
        name: String,
    },
    /// An entry with the wrong shape.
    #[error("optimiser state entry `{name}` has shape {found:?}, expected {expected:?}")]
    Misshaped {
        /// Full tensor name.
        name: String,
        /// The shape it should have.
        expected: Vec<usize>,
        /// The shape it has.
        found: Vec<usize>,
    },
    /// A step count that is not a whole, non-negative number.
    #[error("optimiser state entry `{name}` holds {value}, not a step count")]
    BadStep {
        /// Full tensor name.
        name: String,
        /// The value found.
        value: f64,
    },
    /// A tensor operation failed (reading, moving or converting an entry).
    #[error("optimiser state entry `{name}`")]
    Tensor {
        /// Full tensor name.
        name: String,
        /// What candle reported.
        #[source]
        source: candle_core::Error,
    },
}

/// Per-var state. The CPU Adam path updates the moments in place, so these tensors are never
/// shared: [`Optimizer::state_tensors`] hands out copies and [`Optimizer::load_state`] takes
/// copies.
#[derive(Debug, Default)]
struct ParamState {
    /// Number of updates this var has received (Adam's bias correction uses it).
    step: u64,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
    momentum_buffer: Option<Tensor>,
}

/// Adam, AdamW or SGD with state keyed by var name; see the [module docs](self).
#[derive(Debug)]
pub struct Optimizer {
    settings: OptimizerSettings,
    // BTreeMap so exported state comes out in a stable order.
    state: BTreeMap<String, ParamState>,
}

impl Optimizer {
    /// An optimiser with no state yet.
    pub fn new(settings: OptimizerSettings) -> Self {
        Optimizer {
            settings,
            state: BTreeMap::new(),
        }
    }

    /// The hyperparameters.
    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// The number of updates the var `name` has received (0 if never stepped).
    pub fn steps_of(&self, name: &str) -> u64 {
        self.state.get(name).map_or(0, |s| s.step)
    }

    /// One update of the named vars with learning rate `lr`; vars without a gradient in
    /// `grads` are skipped (e.g. BN running stats, frozen vars) and their state is untouched.
    ///
    /// An existing state whose shape differs from its var's is an error naming the var,
    /// rather than a broadcast surprise.
    pub fn step(
        &mut self,
        grads: &GradStore,
        vars: &[(String, Var)],
        lr: f64,
    ) -> candle_core::Result<()> {
        for (name, var) in vars {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let state = self.state.entry(name.clone()).or_default();
            check_state_shape(name, var, state)?;
            // Detached so the update builds no autograd graph around the parameters; it shares
            // the var's storage, so an in-place update moves the var.
            let param = var.as_tensor().detach();
            let grad = grad.detach();
            let next = match self.settings.kind {
                OptimizerKind::Adam => adam(&self.settings, state, &param, grad, lr, false)?,
                OptimizerKind::AdamW => adam(&self.settings, state, &param, grad, lr, true)?,
                OptimizerKind::Sgd => Some(sgd(&self.settings, state, &param, grad, lr)?),
            };
            if let Some(next) = next {
                var.set(&next)?;
            }
        }
        Ok(())
    }

    /// The state as named tensors for a safetensors checkpoint, in name order; the layout is
    /// in the [module docs](self). Vars that were never stepped have no entries.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>, OptimizerError> {
        let mut out = Vec::new();
        for (var, state) in &self.state {
            let step_name = entry_name(var, STEP);
            let step = Tensor::new(state.step as f64, &Device::Cpu).map_err(|source| {
                OptimizerError::Tensor {
                    name: step_name.clone(),
                    source,
                }
            })?;
            out.push((step_name, step));
            for (field, tensor) in [
                (EXP_AVG, &state.exp_avg),
                (EXP_AVG_SQ, &state.exp_avg_sq),
                (MOMENTUM_BUFFER, &state.momentum_buffer),
            ] {
                if let Some(t) = tensor {
                    let name = entry_name(var, field);
                    // A snapshot: the live tensor changes in place at the next step.
                    let copy = t.copy().map_err(|source| OptimizerError::Tensor {
                        name: name.clone(),
                        source,
                    })?;
                    out.push((name, copy));
                }
            }
        }
        Ok(out)
    }

    /// Replaces the state with what [`Optimizer::state_tensors`] produced, moving the tensors
    /// to `device`. Entries that do not start with `optim.` are ignored (a checkpoint also
    /// holds the model's vars); among the rest, an unknown name, a missing entry or a
    /// mis-shaped one is an error naming it, and the current state is left unchanged.
    ///
    /// Shapes are checked for consistency within a var's entries; call
    /// [`Optimizer::check_vars`] to also check them against the model.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<(), OptimizerError> {
        let fields: &[&str] = match self.settings.kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => &[EXP_AVG, EXP_AVG_SQ],
            OptimizerKind::Sgd if self.settings.momentum != 0.0 => &[MOMENTUM_BUFFER],
            OptimizerKind::Sgd => &[],
        };
        // Group the entries by var first, so a missing entry can be named precisely.
        let mut by_var: BTreeMap<&str, BTreeMap<&str, &Tensor>> = BTreeMap::new();
        // Sorted, so the first error reported does not depend on hash order.
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        for name in names {
            let Some(rest) = name.strip_prefix(STATE_PREFIX) else {
                continue;
            };
            let known = [STEP].iter().chain(fields).find_map(|field| {
                rest.strip_suffix(field)
                    .and_then(|v| v.strip_suffix('.'))
                    .filter(|v| !v.is_empty())
                    .map(|v| (v, *field))
            });
            let Some((var, field)) = known else {
                return Err(OptimizerError::UnknownEntry { name: name.clone() });
            };
            by_var.entry(var).or_default().insert(field, &tensors[name]);
        }

        let mut state = BTreeMap::new();
        for (var, entries) in by_var {
            let step_name = entry_name(var, STEP);
            let step_tensor = entries
                .get(STEP)
                .ok_or_else(|| OptimizerError::MissingEntry {
                    name: step_name.clone(),
                })?;
            let step = read_step(&step_name, step_tensor)?;
            let mut param = ParamState {
                step,
                ..ParamState::default()
            };
            let mut shape: Option<(String, Vec<usize>)> = None;
            for &field in fields {
                let name = entry_name(var, field);
                let t = entries
                    .get(field)
                    .ok_or_else(|| OptimizerError::MissingEntry { name: name.clone() })?;
                match &shape {
                    Some((_, expected)) if expected.as_slice() != t.dims() => {
                        return Err(OptimizerError::Misshaped {
                            name,
                            expected: expected.clone(),
                            found: t.dims().to_vec(),
                        });
                    }
                    Some(_) => {}
                    None => shape = Some((name.clone(), t.dims().to_vec())),
                }
                // A copy even on the same device: the state is updated in place.
                let t = t
                    .to_device(device)
                    .and_then(|t| t.copy())
                    .map_err(|source| OptimizerError::Tensor {
                        name: name.clone(),
                        source,
                    })?;
                match field {
                    EXP_AVG => param.exp_avg = Some(t),
                    EXP_AVG_SQ => param.exp_avg_sq = Some(t),
                    _ => param.momentum_buffer = Some(t),
                }
            }
            state.insert(var.to_string(), param);
        }
        self.state = state;
        Ok(())
    }

    /// Checks that every restored state belongs to one of `vars` and has its shape, so a
    /// checkpoint from another model fails when it is loaded, not at the first step.
    pub fn check_vars(&self, vars: &[(String, Var)]) -> Result<(), OptimizerError> {
        let shapes: HashMap<&str, &[usize]> = vars
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_tensor().dims()))
            .collect();
        for (var, state) in &self.state {
            let Some(expected) = shapes.get(var.as_str()) else {
                return Err(OptimizerError::UnknownEntry {
                    name: entry_name(var, STEP),
                });
            };
            for (field, t) in [
                (EXP_AVG, &state.exp_avg),
                (EXP_AVG_SQ, &state.exp_avg_sq),
                (MOMENTUM_BUFFER, &state.momentum_buffer),
            ] {
                if let Some(t) = t
                    && t.dims() != *expected
                {
                    return Err(OptimizerError::Misshaped {
                        name: entry_name(var, field),
                        expected: expected.to_vec(),
                        found: t.dims().to_vec(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn entry_name(var: &str, field: &str) -> String {
    format!("{STATE_PREFIX}{var}.{field}")
}

fn read_step(name: &str, t: &Tensor) -> Result<u64, OptimizerError> {
    if !t.dims().is_empty() {
        return Err(OptimizerError::Misshaped {
            name: name.to_string(),
            expected: Vec::new(),
            found: t.dims().to_vec(),
        });
    }
    let value = t
        .to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .map_err(|source| OptimizerError::Tensor {
            name: name.to_string(),
            source,
        })?;
    if value < 0.0 || value.fract() != 0.0 || !value.is_finite() {
        return Err(OptimizerError::BadStep {
            name: name.to_string(),
            value,
        });
    }
    Ok(value as u64)
}

fn check_state_shape(name: &str, var: &Var, state: &ParamState) -> candle_core::Result<()> {
    let dims = var.as_tensor().dims();
    for (field, t) in [
        (EXP_AVG, &state.exp_avg),
        (EXP_AVG_SQ, &state.exp_avg_sq),
        (MOMENTUM_BUFFER, &state.momentum_buffer),
    ] {
        if let Some(t) = t
            && t.dims() != dims
        {
            candle_core::bail!(
                "optimiser state `{}` has shape {:?} but the var has {:?}",
                entry_name(name, field),
                t.dims(),
                dims
            );
        }
    }
    Ok(())
}

/// `torch.optim.Adam` / `AdamW` (amsgrad off), one parameter; returns the new parameter, or
/// `None` when `param` (and with it the var) was updated in place.
fn adam(
    s: &OptimizerSettings,
    state: &mut ParamState,
    param: &Tensor,
    mut grad: Tensor,
    lr: f64,
    decoupled: bool,
) -> candle_core::Result<Option<Tensor>> {
    let t = (state.step + 1) as f64;
    let fused = super::adam_cpu::AdamStep {
        shrink: (decoupled && s.weight_decay != 0.0).then_some(1.0 - lr * s.weight_decay),
        l2: (!decoupled && s.weight_decay != 0.0).then_some(s.weight_decay),
        beta1: s.beta1,
        beta2: s.beta2,
        inv_bias2_sqrt: 1.0 / (1.0 - s.beta2.powf(t)).sqrt(),
        eps: s.eps,
        step_size: lr / (1.0 - s.beta1.powf(t)),
    };
    let moments = (&mut state.exp_avg, &mut state.exp_avg_sq);
    if let Some(done) = super::adam_cpu::step(param, &grad, moments, &fused) {
        done?;
        state.step += 1;
        return Ok(None);
    }
    let mut param = param.clone();
    if s.weight_decay != 0.0 {
        if decoupled {
            // AdamW shrinks the parameter before the Adam step, independently of the moments.
            param = param.affine(1.0 - lr * s.weight_decay, 0.0)?;
        } else {
            // Adam's weight decay is plain L2: it enters the gradient and so the moments.
            grad = (grad + param.affine(s.weight_decay, 0.0)?)?;
        }
    }
    state.step += 1;
    let m = match &state.exp_avg {
        Some(m) => (m.affine(s.beta1, 0.0)? + grad.affine(1.0 - s.beta1, 0.0)?)?,
        None => grad.affine(1.0 - s.beta1, 0.0)?,
    };
    let g2 = grad.sqr()?.affine(1.0 - s.beta2, 0.0)?;
    let v = match &state.exp_avg_sq {
        Some(v) => (v.affine(s.beta2, 0.0)? + g2)?,
        None => g2,
    };
    // powi would truncate counts beyond i32; powf is exact enough and never wraps.
    let t = state.step as f64;
    let bias1 = 1.0 - s.beta1.powf(t);
    let bias2_sqrt = (1.0 - s.beta2.powf(t)).sqrt();
    // Same grouping as PyTorch: denom = sqrt(v)/sqrt(bc2) + eps, step = lr/bc1.
    let denom = v.sqrt()?.affine(1.0 / bias2_sqrt, s.eps)?;
    let update = (m.affine(lr / bias1, 0.0)? / denom)?;
    let next = (param - update)?;
    state.exp_avg = Some(m);
    state.exp_avg_sq = Some(v);
    Ok(Some(next))
}

/// `torch.optim.SGD` (dampening 0, no Nesterov), one parameter; returns the new parameter.
fn sgd(
    s: &OptimizerSettings,
    state: &mut ParamState,
    param: &Tensor,
    mut grad: Tensor,
    lr: f64,
) -> candle_core::Result<Tensor> {
    if s.weight_decay != 0.0 {
        grad = (grad + param.affine(s.weight_decay, 0.0)?)?;
    }
    state.step += 1;
    if s.momentum != 0.0 {
        // PyTorch seeds the buffer with the first gradient itself, not μ·0 + g.
        let buf = match &state.momentum_buffer {
            Some(b) => (b.affine(s.momentum, 0.0)? + &grad)?,
            None => grad.clone(),
        };
        grad = buf.clone();
        state.momentum_buffer = Some(buf);
    }
    param - grad.affine(lr, 0.0)?
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f32 = 1e-6;

    fn settings(kind: OptimizerKind, weight_decay: f64, momentum: f64) -> OptimizerSettings {
        OptimizerSettings {
            kind,
            weight_decay,
            momentum,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    fn var(name: &str, values: [f32; 2]) -> (String, Var) {
        (name.to_string(), Var::new(&values, &Device::Cpu).unwrap())
    }

    /// Gradients of loss = sum(w * c), whose gradient is exactly `c`.
    fn grads_of(w: &Var, c: [f32; 2]) -> GradStore {
        let c = Tensor::new(&c, &Device::Cpu).unwrap();
        (w.as_tensor() * c)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    }

    fn values(v: &Var) -> Vec<f32> {
        v.as_tensor().to_vec1::<f32>().unwrap()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < TOL, "got {got:?}, want {want:?}");
        }
    }

    /// Two steps with gradients (1, -2) then (0.5, 0.5), lr 0.1, from w = (1, 2).
    fn two_steps(opt: &mut Optimizer) -> Vec<Vec<f32>> {
        let vars = vec![var("w", [1.0, 2.0])];
        let mut out = Vec::new();
        for c in [[1.0, -2.0], [0.5, 0.5]] {
            let g = grads_of(&vars[0].1, c);
            opt.step(&g, &vars, 0.1).unwrap();
            out.push(values(&vars[0].1));
        }
        out
    }

    #[test]
    fn sgd_with_momentum_and_weight_decay_matches_hand_computation() {
        let mut opt = Optimizer::new(settings(OptimizerKind::Sgd, 0.1, 0.9));
        let w = two_steps(&mut opt);
        // step 1: g = c + wd·w = (1 + 0.1, -2 + 0.2) = (1.1, -1.8); b = g
        //         w = (1 - 0.1·1.1, 2 + 0.1·1.8) = (0.89, 2.18)
        assert_close(&w[0], &[0.89, 2.18]);
        // step 2: g = (0.5 + 0.089, 0.5 + 0.218) = (0.589, 0.718)
        //         b = 0.9·(1.1, -1.8) + g = (0.99 + 0.589, -1.62 + 0.718) = (1.579, -0.902)
        //         w = (0.89 - 0.1579, 2.18 + 0.0902) = (0.7321, 2.2702)
        assert_close(&w[1], &[0.7321, 2.2702]);
        assert_eq!(opt.steps_of("w"), 2);
    }

    #[test]
    fn sgd_without_momentum_keeps_no_buffer() {
        let mut opt = Optimizer::new(settings(OptimizerKind::Sgd, 0.0, 0.0));
        let w = two_steps(&mut opt);
        // w = (1, 2) - 0.1·(1, -2) = (0.9, 2.2); then - 0.1·(0.5, 0.5) = (0.85, 2.15)
        assert_close(&w[0], &[0.9, 2.2]);
        assert_close(&w[1], &[0.85, 2.15]);
        let names: Vec<String> = opt
            .state_tensors()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["optim.w.step"]);
    }

    #[test]
    fn adam_with_l2_weight_decay_matches_hand_computation() {
        let mut opt = Optimizer::new(settings(OptimizerKind::Adam, 0.1, 0.0));
        let w = two_steps(&mut opt);
        // step 1: g = (1.1, -1.8) (c + 0.1·w). After bias correction m̂ = g, v̂ = g², so the
        //         update is lr·g/(|g| + 1e-8) = ±0.1·(1 - ~1e-8):
        //         w = (1 - 0.1, 2 + 0.1) = (0.9, 2.1)
        assert_close(&w[0], &[0.9, 2.1]);
        // step 2: g = (0.5 + 0.09, 0.5 + 0.21) = (0.59, 0.71)
        //   m = 0.9·0.1·(1.1, -1.8) + 0.1·g = (0.099 + 0.059, -0.162 + 0.071) = (0.158, -0.091)
        //   v = 0.999·0.001·(1.21, 3.24) + 0.001·(0.3481, 0.5041)
        //     = (0.00120879 + 0.0003481, 0.00323676 + 0.0005041) = (0.00155689, 0.00374086)
        //   bc1 = 1 - 0.81 = 0.19; bc2 = 1 - 0.998001 = 0.001999
        //   m̂ = (0.831578947, -0.478947368)
        //   v̂ = (0.778834417, 1.871365683); sqrt = (0.882515959, 1.367978612)
        //   update = 0.1·m̂/sqrt(v̂) = (0.094228, -0.035011)
        //   w = (0.9 - 0.094228, 2.1 + 0.035011) = (0.805772, 2.135011)
        assert_close(&w[1], &[0.805_772, 2.135_011]);
    }

    #[test]
    fn adamw_decays_the_weights_outside_the_moments() {
        let mut opt = Optimizer::new(settings(OptimizerKind::AdamW, 0.1, 0.0));
        let w = two_steps(&mut opt);
        // step 1: w ← w·(1 - 0.1·0.1) = (0.99, 1.98); g = (1, -2) so the Adam step is ±0.1:
        //         w = (0.89, 2.08)
        assert_close(&w[0], &[0.89, 2.08]);
        // step 2: w ← (0.89, 2.08)·0.99 = (0.8811, 2.0592); g = (0.5, 0.5)
        //   m = 0.09·(1, -2) + 0.05 = (0.14, -0.13)
        //   v = 0.000999·(1, 4) + 0.001·0.25 = (0.001249, 0.004246)
        //   m̂ = m/0.19 = (0.736842105, -0.684210526)
        //   v̂ = v/0.001999 = (0.624812406, 2.124062031); sqrt = (0.790450761, 1.457416152)
        //   update = 0.1·m̂/sqrt(v̂) = (0.093218, -0.046947)
        //   w = (0.8811 - 0.093218, 2.0592 + 0.046947) = (0.787882, 2.106147)
        assert_close(&w[1], &[0.787_882, 2.106_147]);
    }

    #[test]
    fn the_fused_cpu_adam_is_bit_identical_to_the_tensor_ops() {
        // A non-contiguous gradient takes the tensor path; a contiguous one the fused pass.
        for (kind, wd) in [(OptimizerKind::Adam, 0.1), (OptimizerKind::AdamW, 0.05)] {
            let mut runs = Vec::new();
            for strided in [false, true] {
                let mut opt = Optimizer::new(settings(kind, wd, 0.0));
                let init: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
                let w = Var::from_vec(init, (3, 4), &Device::Cpu).unwrap();
                let vars = vec![("w".to_string(), w.clone())];
                for step in 0..4 {
                    let g: Vec<f32> = (0..12).map(|i| ((i * 7 + step) as f32).cos()).collect();
                    let g = if strided {
                        let t = Tensor::from_vec(g, (4, 3), &Device::Cpu).unwrap();
                        t.t().unwrap()
                    } else {
                        Tensor::from_vec(g, (4, 3), &Device::Cpu)
                            .unwrap()
                            .t()
                            .unwrap()
                            .contiguous()
                            .unwrap()
                    };
                    assert_eq!(g.is_contiguous(), !strided);
                    let mut grads = w.as_tensor().sum_all().unwrap().backward().unwrap();
                    grads.insert(w.as_tensor(), g);
                    opt.step(&grads, &vars, 0.01 * (step + 1) as f64).unwrap();
                }
                runs.push(
                    w.as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                );
            }
            assert_eq!(runs[0], runs[1], "{kind:?}");
        }
    }

    #[test]
    fn saved_and_loaded_state_is_not_moved_by_later_steps() {
        // The CPU path updates the moments in place: neither a saved snapshot nor the tensors
        // a state was loaded from may change with it.
        let moment = |m: &HashMap<String, Tensor>| m["optim.w.exp_avg"].to_vec1::<f32>().unwrap();
        let mut opt = Optimizer::new(settings(OptimizerKind::AdamW, 0.0, 0.0));
        let vars = vec![var("w", [1.0, 2.0])];
        opt.step(&grads_of(&vars[0].1, [1.0, 1.0]), &vars, 0.1)
            .unwrap();
        let saved = to_map(opt.state_tensors().unwrap());
        let before = moment(&saved);
        let mut resumed = Optimizer::new(settings(OptimizerKind::AdamW, 0.0, 0.0));
        resumed.load_state(&saved, &Device::Cpu).unwrap();
        for o in [&mut opt, &mut resumed] {
            o.step(&grads_of(&vars[0].1, [3.0, -1.0]), &vars, 0.1)
                .unwrap();
        }
        assert_eq!(moment(&saved), before);
        assert_ne!(moment(&to_map(opt.state_tensors().unwrap())), before);
    }

    #[test]
    fn vars_without_gradients_are_skipped() {
        let mut opt = Optimizer::new(settings(OptimizerKind::AdamW, 0.1, 0.0));
        let vars = vec![var("a", [1.0, 2.0]), var("frozen", [3.0, 4.0])];
        // Only `a` takes part in the loss, so `frozen` has no gradient.
        let g = grads_of(&vars[0].1, [1.0, 1.0]);
        opt.step(&g, &vars, 0.1).unwrap();
        assert_eq!(values(&vars[1].1), [3.0, 4.0]);
        assert_eq!(opt.steps_of("frozen"), 0);
        assert_eq!(opt.steps_of("a"), 1);
    }

    fn to_map(entries: Vec<(String, Tensor)>) -> HashMap<String, Tensor> {
        entries.into_iter().collect()
    }

    #[test]
    fn state_round_trips_and_training_continues_identically() {
        for kind in [
            OptimizerKind::Adam,
            OptimizerKind::AdamW,
            OptimizerKind::Sgd,
        ] {
            let s = settings(kind, 0.1, 0.9);
            // Uninterrupted: two steps.
            let mut full = Optimizer::new(s);
            let expected = two_steps(&mut full)[1].clone();

            // Interrupted: one step, export, fresh optimiser, import, one more step.
            let vars = vec![var("w", [1.0, 2.0])];
            let mut first = Optimizer::new(s);
            first
                .step(&grads_of(&vars[0].1, [1.0, -2.0]), &vars, 0.1)
                .unwrap();
            let saved = to_map(first.state_tensors().unwrap());
            let mut resumed = Optimizer::new(s);
            resumed.load_state(&saved, &Device::Cpu).unwrap();
            resumed.check_vars(&vars).unwrap();
            assert_eq!(resumed.steps_of("w"), 1);
            resumed
                .step(&grads_of(&vars[0].1, [0.5, 0.5]), &vars, 0.1)
                .unwrap();
            assert_eq!(values(&vars[0].1), expected, "{kind:?}");
        }
    }

    #[test]
    fn adam_state_has_the_documented_names() {
        let mut opt = Optimizer::new(settings(OptimizerKind::Adam, 0.0, 0.0));
        let vars = vec![var("head.weight", [1.0, 2.0])];
        opt.step(&grads_of(&vars[0].1, [1.0, 1.0]), &vars, 0.1)
            .unwrap();
        let state = opt.state_tensors().unwrap();
        let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "optim.head.weight.step",
                "optim.head.weight.exp_avg",
                "optim.head.weight.exp_avg_sq"
            ]
        );
        assert_eq!(state[0].1.to_scalar::<f64>().unwrap(), 1.0);
    }

    fn adam_state() -> HashMap<String, Tensor> {
        let mut opt = Optimizer::new(settings(OptimizerKind::Adam, 0.0, 0.0));
        let vars = vec![var("w", [1.0, 2.0])];
        opt.step(&grads_of(&vars[0].1, [1.0, 1.0]), &vars, 0.1)
            .unwrap();
        to_map(opt.state_tensors().unwrap())
    }

    #[test]
    fn loading_a_missing_entry_names_it() {
        let mut state = adam_state();
        state.remove("optim.w.exp_avg_sq");
        let mut opt = Optimizer::new(settings(OptimizerKind::Adam, 0.0, 0.0));
        let err = opt.load_state(&state, &Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, OptimizerError::MissingEntry { name } if name == "optim.w.exp_avg_sq"),
            "{err}"
        );
    }

    #[test]
    fn loading_an_entry_of_another_optimiser_kind_names_it() {
        // Adam state into SGD with momentum: `exp_avg` is not an SGD entry.
        let state = adam_state();
        let mut opt = Optimizer::new(settings(OptimizerKind::Sgd, 0.0, 0.9));
        let err = opt.load_state(&state, &Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, OptimizerError::UnknownEntry { name } if name == "optim.w.exp_avg"),
            "{err}"
        );
    }

    #[test]
    fn loading_a_misshaped_entry_names_it() {
        let mut state = adam_state();
        state.insert(
            "optim.w.exp_avg_sq".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        let mut opt = Optimizer::new(settings(OptimizerKind::Adam, 0.0, 0.0));
        let err = opt.load_state(&state, &Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, OptimizerError::Misshaped { name, .. } if name == "optim.w.exp_avg_sq"),
            "{err}"
        );
    }

    #[test]
    fn state_for_a_var_of_another_shape_is_rejected_by_check_vars() {
        let state = adam_state();
        let mut opt = Optimizer::new(settings(OptimizerKind::Adam, 0.0, 0.0));
        opt.load_state(&state, &Device::Cpu).unwrap();
        let vars = vec![(
            "w".to_string(),
            Var::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap(),
        )];
        let err = opt.check_vars(&vars).unwrap_err();
        assert!(matches!(err, OptimizerError::Misshaped { .. }), "{err}");
        // And a step with that state fails instead of broadcasting.
        let g = vars[0].1.as_tensor().sum_all().unwrap().backward().unwrap();
        let err = opt.step(&g, &vars, 0.1).unwrap_err();
        assert!(err.to_string().contains("optim.w.exp_avg"), "{err}");
    }

    #[test]
    fn non_optimiser_entries_are_ignored_but_a_bad_step_count_is_not() {
        let mut state = adam_state();
        state.insert(
            "head.weight".into(),
            Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
        );
        let mut opt = Optimizer::new(settings(OptimizerKind::Adam, 0.0, 0.0));
        opt.load_state(&state, &Device::Cpu).unwrap();
        state.insert(
            "optim.w.step".into(),
            Tensor::new(1.5f64, &Device::Cpu).unwrap(),
        );
        let err = opt.load_state(&state, &Device::Cpu).unwrap_err();
        assert!(matches!(err, OptimizerError::BadStep { .. }), "{err}");
    }
}
