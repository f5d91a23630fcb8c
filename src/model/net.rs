//! [`GeoNet`]: a backbone run on the four views of each location as one batch, the views' features
//! fused ([`Fusion`]) and a linear head.

use candle_core::{Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

use super::backbone::{Backbone, build_backbone};
use super::{Kernels, ModelError};
use crate::vocab::{Fusion, VIEWS};

/// Backbone + fusion + linear head.
pub struct GeoNet {
    backbone: Box<dyn Backbone>,
    fusion: Fusion,
    head: Linear,
    head_names: Vec<String>,
}

impl GeoNet {
    /// Builds the net: backbone `backbone` (one of [`crate::vocab::BACKBONES`]) under `vb.pp("backbone")`,
    /// head `Linear(fused_dim → outputs)` under `vb.pp("head")` (`head.weight`, `head.bias`).
    /// Fast kernels; see [`GeoNet::with_kernels`].
    pub fn new(
        backbone: &str,
        fusion: Fusion,
        outputs: usize,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        Self::with_kernels(backbone, fusion, outputs, Kernels::Fast, vb)
    }

    /// [`GeoNet::new`] on a choice of kernels (same vars, same function).
    pub fn with_kernels(
        backbone: &str,
        fusion: Fusion,
        outputs: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        if outputs == 0 {
            return Err(ModelError::NoOutputs { outputs });
        }
        let backbone = build_backbone(backbone, kernels, vb.pp("backbone"))?;
        let fused = match fusion {
            Fusion::Concat => VIEWS * backbone.feature_dim(),
            Fusion::Mean => backbone.feature_dim(),
        };
        let head_vb = vb.pp("head");
        let head_names = ["weight", "bias"]
            .iter()
            .map(|n| format!("{}.{n}", head_vb.prefix()))
            .collect();
        let head = candle_nn::linear(fused, outputs, head_vb).map_err(|e| ModelError::Build {
            what: "head".to_string(),
            source: e,
        })?;
        Ok(Self {
            backbone,
            fusion,
            head,
            head_names,
        })
    }

    /// `x`: `[B, 4, 3, S, S]` (four views per location, order 0/90/180/270). Runs the backbone on
    /// all views as ONE batch of 4·B (one pass instead of four keeps BatchNorm statistics over all
    /// views and the convs' matrices larger), reshapes features to `[B, 4, D]`, fuses (concat →
    /// `[B, 4D]` in view order; mean → `[B, D]`) and applies the head → `[B, outputs]`.
    /// `trainable_blocks`: see [`Backbone::forward`].
    pub fn forward(&self, x: &Tensor, trainable_blocks: usize) -> Result<Tensor> {
        let (b, v, c, h, w) = x.dims5()?;
        if v != VIEWS {
            candle_core::bail!(
                "GeoNet expects {VIEWS} views per location, got input {:?}",
                x.shape()
            )
        }
        let feats = self
            .backbone
            .forward(&x.reshape((b * v, c, h, w))?, trainable_blocks)?;
        let d = feats.dim(1)?;
        let feats = feats.reshape((b, v, d))?;
        let fused = match self.fusion {
            Fusion::Concat => feats.reshape((b, v * d))?,
            Fusion::Mean => feats.mean(1)?,
        };
        self.head.forward(&fused)
    }

    /// The backbone (for its [`Backbone::blocks`] and feature size).
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// The fusion used.
    pub fn fusion(&self) -> Fusion {
        self.fusion
    }

    /// Number of backbone blocks, the largest useful `trainable_blocks`.
    pub fn backbone_blocks(&self) -> usize {
        self.backbone.blocks().len()
    }

    /// Var names (full, as in the VarMap, e.g. `backbone.layer4.1.conv2.weight`) belonging to the
    /// last `n` backbone blocks (all blocks if `n` is larger). Includes BatchNorm running
    /// statistics, which get no gradient. The head's vars are [`GeoNet::head_var_names`].
    pub fn trainable_var_names(&self, n: usize) -> Vec<String> {
        let blocks = self.backbone.block_var_names();
        let skip = blocks.len() - n.min(blocks.len());
        blocks[skip..].iter().flatten().cloned().collect()
    }

    /// The head's var names: `head.weight`, `head.bias`.
    pub fn head_var_names(&self) -> Vec<String> {
        self.head_names.clone()
    }
}
