//! [`GeoNet`]: a backbone run on the four views of each location as one batch, the views' features
//! fused ([`Fusion`]) and a head ([`Head`]).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::backbone::{Backbone, build_backbone_with};
use super::build::NetSpec;
use super::head::HeadLayers;
use super::{Kernels, ModelError};
use crate::vocab::{Fusion, Head, VIEWS};

/// Backbone + fusion + head.
pub struct GeoNet {
    backbone: Box<dyn Backbone>,
    fusion: Fusion,
    head: HeadLayers,
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
        let spec = NetSpec {
            backbone,
            fusion,
            outputs,
            kernels,
            head: &Head::Linear,
            pooling: None,
        };
        Self::from_spec(&spec, vb)
    }

    /// The net `spec` describes, its vars under `vb`.
    pub fn from_spec(spec: &NetSpec<'_>, vb: VarBuilder) -> std::result::Result<Self, ModelError> {
        if spec.outputs == 0 {
            return Err(ModelError::NoOutputs {
                outputs: spec.outputs,
            });
        }
        let backbone =
            build_backbone_with(spec.backbone, spec.kernels, spec.pooling, vb.pp("backbone"))?;
        let fused = match spec.fusion {
            Fusion::Concat => VIEWS * backbone.feature_dim(),
            Fusion::Mean => backbone.feature_dim(),
        };
        let head = HeadLayers::new(spec.head, fused, spec.outputs, vb.pp("head"))?;
        Ok(Self {
            backbone,
            fusion: spec.fusion,
            head,
        })
    }

    /// `x`: either views `[B, 4, 3, S, S]` (four per location, order 0/90/180/270) or the
    /// backbone's features of them `[B, 4, D]` (what the features stage stored). Views go
    /// through the backbone as ONE batch of 4·B (one pass instead of four keeps BatchNorm
    /// statistics over all views and the convs' matrices larger). The features `[B, 4, D]`
    /// are fused (concat → `[B, 4D]` in view order; mean → `[B, D]`) and the head applied →
    /// `[B, outputs]`. `trainable_blocks`: see [`Backbone::forward`]. No dropout: see
    /// [`GeoNet::forward_train`].
    pub fn forward(&self, x: &Tensor, trainable_blocks: usize) -> Result<Tensor> {
        self.forward_with(x, trainable_blocks, None)
    }

    /// [`GeoNet::forward`] in training: the head's dropout (if any) on, its masks drawn
    /// from `dropout_key` (one per step).
    pub fn forward_train(
        &self,
        x: &Tensor,
        trainable_blocks: usize,
        dropout_key: u64,
    ) -> Result<Tensor> {
        self.forward_with(x, trainable_blocks, Some(dropout_key))
    }

    fn forward_with(
        &self,
        x: &Tensor,
        trainable_blocks: usize,
        dropout_key: Option<u64>,
    ) -> Result<Tensor> {
        let feats = if x.rank() == 3 {
            x.clone()
        } else {
            self.features(x, trainable_blocks)?
        };
        let (b, v, d) = feats.dims3()?;
        if v != VIEWS {
            candle_core::bail!(
                "GeoNet expects {VIEWS} views per location, got input {:?}",
                x.shape()
            )
        }
        let fused = match self.fusion {
            Fusion::Concat => feats.reshape((b, v * d))?,
            Fusion::Mean => feats.mean(1)?,
        };
        self.head.forward(&fused, dropout_key)
    }

    /// The backbone's features of views `x` `[B, 4, 3, S, S]` → `[B, 4, D]`.
    pub fn features(&self, x: &Tensor, trainable_blocks: usize) -> Result<Tensor> {
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
        feats.reshape((b, v, d))
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

    /// The head's var names (`head.weight`, `head.bias` for a linear head).
    pub fn head_var_names(&self) -> Vec<String> {
        self.head.names().to_vec()
    }
}
