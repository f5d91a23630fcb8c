//! The pieces of one optimiser step that the training loop and `benches/step.rs` share:
//! which vars a step updates, and the update itself.

use std::collections::BTreeSet;

use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;

use crate::model::GeoNet;

use super::optimizer::Optimizer;

/// Vars with their names, as the optimiser takes them.
pub type NamedVars = Vec<(String, Var)>;

/// Every var of `varmap` with its name, in name order.
///
/// # Errors
/// The var map's lock is poisoned.
pub fn named_vars(varmap: &VarMap) -> candle_core::Result<NamedVars> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
    let mut named: NamedVars = vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}

/// The vars a step with `trainable` backbone blocks updates, as (head, backbone), out of
/// [`named_vars`].
pub fn step_vars(
    all_vars: &[(String, Var)],
    net: &GeoNet,
    trainable: usize,
) -> (NamedVars, NamedVars) {
    let backbone_names: BTreeSet<String> = net.trainable_var_names(trainable).into_iter().collect();
    all_vars
        .iter()
        .filter(|(n, _)| n.starts_with("head.") || backbone_names.contains(n))
        .cloned()
        .partition(|(n, _)| n.starts_with("head."))
}

/// The part of a training step after the loss: backward, then one update of the head's and
/// one of the backbone's vars, each with its learning rate. `benches/step.rs` times this
/// same function.
///
/// # Errors
/// A tensor operation failed.
pub fn update(
    loss: &Tensor,
    optimizer: &mut Optimizer,
    (head, head_lr): (&[(String, Var)], f64),
    (backbone, backbone_lr): (&[(String, Var)], f64),
) -> candle_core::Result<()> {
    let grads = loss.backward()?;
    optimizer.step(&grads, head, head_lr)?;
    if !backbone.is_empty() {
        optimizer.step(&grads, backbone, backbone_lr)?;
    }
    Ok(())
}

/// The first variable (by name) holding a NaN or an infinity.
///
/// # Errors
/// A tensor operation failed.
pub fn first_non_finite(vars: &[(String, Var)]) -> candle_core::Result<Option<String>> {
    for (name, var) in vars {
        let t = var.as_tensor();
        // x - x is 0 for every finite x and NaN otherwise; the sum cannot overflow.
        let zero = t
            .sub(t)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        if zero != 0.0 {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}
