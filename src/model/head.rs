//! The head on the fused view features ([`Head`]): one linear layer, or an MLP whose hidden
//! layers are linear + ReLU + dropout.
//!
//! Var names: a linear head is `head.weight`/`head.bias` (as before heads had a choice, so
//! old checkpoints load); an MLP is `head.hidden.{i}.weight`/`.bias` and `head.out.*`.
//!
//! Dropout masks come from a seeded ChaCha stream per (key, layer), not candle's RNG (which
//! cannot be seeded): a training step's masks are a function of its key, so a resumed run
//! trains exactly as an uninterrupted one.

use candle_core::{Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ModelError;
use crate::vocab::Head;

/// The head's layers.
pub(super) struct HeadLayers {
    hidden: Vec<Linear>,
    out: Linear,
    dropout: f64,
    names: Vec<String>,
}

impl HeadLayers {
    /// Builds `head` from `inputs` fused features to `outputs`, its vars under `vb`.
    pub fn new(
        head: &Head,
        inputs: usize,
        outputs: usize,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        let mut names = Vec::new();
        let mut linear = |cin: usize, cout: usize, vb: VarBuilder| {
            names.extend(["weight", "bias"].map(|n| format!("{}.{n}", vb.prefix())));
            candle_nn::linear(cin, cout, vb).map_err(|source| ModelError::Build {
                what: "head".to_owned(),
                source,
            })
        };
        let (hidden, out, dropout) = match head {
            Head::Linear => (Vec::new(), linear(inputs, outputs, vb)?, 0.0),
            Head::Mlp { hidden, dropout } => {
                let mut layers = Vec::with_capacity(hidden.len());
                let mut cin = inputs;
                for (i, &width) in hidden.iter().enumerate() {
                    layers.push(linear(cin, width, vb.pp("hidden").pp(i))?);
                    cin = width;
                }
                (layers, linear(cin, outputs, vb.pp("out"))?, *dropout)
            }
        };
        Ok(HeadLayers {
            hidden,
            out,
            dropout,
            names,
        })
    }

    /// `x`: `[B, inputs]` → `[B, outputs]`. `dropout_key`: a training step's key (dropout
    /// on, masks drawn from it); `None` in evaluation.
    pub fn forward(&self, x: &Tensor, dropout_key: Option<u64>) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, layer) in self.hidden.iter().enumerate() {
            x = layer.forward(&x)?.relu()?;
            if let Some(key) = dropout_key.filter(|_| self.dropout > 0.0) {
                x =
                    x.broadcast_mul(&dropout_mask(x.dims2()?, self.dropout, key, i, x.device())?)?;
            }
        }
        self.out.forward(&x)
    }

    /// Full var names of every layer.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// `[B, W]` f32 of 0 (dropped, probability `p`) and `1 / (1 − p)` (kept), drawn from
/// (`key`, `layer`).
fn dropout_mask(
    (b, w): (usize, usize),
    p: f64,
    key: u64,
    layer: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut h = blake3::Hasher::new();
    h.update(b"geoexp dropout v1\0");
    h.update(&key.to_le_bytes());
    h.update(&(layer as u64).to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(*h.finalize().as_bytes());
    let keep = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = (0..b * w)
        .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
        .collect();
    Tensor::from_vec(mask, (b, w), device)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;

    fn mlp(dropout: f64) -> (VarMap, HeadLayers) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let head = Head::Mlp {
            hidden: vec![64, 32],
            dropout,
        };
        let layers = HeadLayers::new(&head, 16, 3, vb.pp("head")).unwrap();
        (varmap, layers)
    }

    #[test]
    fn an_mlp_names_its_layers_and_maps_inputs_to_outputs() {
        let (varmap, head) = mlp(0.0);
        assert_eq!(
            head.names(),
            [
                "head.hidden.0.weight",
                "head.hidden.0.bias",
                "head.hidden.1.weight",
                "head.hidden.1.bias",
                "head.out.weight",
                "head.out.bias"
            ]
        );
        let data = varmap.data().lock().unwrap();
        assert_eq!(data["head.hidden.0.weight"].dims(), [64, 16]);
        assert_eq!(data["head.out.weight"].dims(), [3, 32]);
        drop(data);
        let x = Tensor::ones((5, 16), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(head.forward(&x, None).unwrap().dims(), [5, 3]);
    }

    #[test]
    fn dropout_is_seeded_by_the_key_and_off_in_evaluation() {
        let (_, head) = mlp(0.5);
        let x = Tensor::ones((8, 16), DType::F32, &Device::Cpu).unwrap();
        let run = |key| head.forward(&x, key).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(run(Some(7)), run(Some(7)));
        assert_ne!(run(Some(7)), run(Some(8)));
        assert_ne!(run(Some(7)), run(None));
        assert_eq!(run(None), run(None));
    }

    #[test]
    fn a_mask_keeps_about_one_minus_p_and_rescales() {
        let m = dropout_mask((100, 100), 0.25, 1, 0, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let kept = m.iter().filter(|&&v| v > 0.0).count();
        assert!((7_000..8_000).contains(&kept), "{kept} of 10000 kept");
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    }
}
