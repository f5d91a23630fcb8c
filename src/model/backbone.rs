//! The [`Backbone`] trait, and building one by name (the names and what they stand for are
//! [`crate::vocab::BACKBONES`]).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::batch_norm::BatchNorm;
use super::conv::Conv;
use super::resnet::{BlockKind, ResNet, ResNetConfig};
use super::tiny_cnn::TinyCnn;
use super::vit::Vit;
use super::{Kernels, ModelError};
use crate::vocab::{Architecture, Pooling, architecture};

/// A feature extractor: images in, one pooled feature vector per image out.
pub trait Backbone: Send + Sync {
    /// `x`: `[N, 3, S, S]` f32, normalised → pooled features `[N, feature_dim]` (CNNs: global
    /// average pool; ViTs: the [`Pooling`] they were built with; no classifier). ViTs need `S`
    /// to be a multiple of their patch size (an error otherwise).
    ///
    /// `trainable` = how many of the LAST blocks (see [`Backbone::blocks`]) are being trained:
    /// their BatchNorms run in train mode (batch statistics, running-statistics update); all
    /// earlier blocks run BatchNorm in eval mode (running statistics untouched) and their output
    /// is `detach()`ed before the first trainable block, so backward stops there. (ViTs have no
    /// BatchNorm; their frozen blocks may run on forward-only kernels.)
    /// `trainable == 0` → everything in eval mode and the output is detached (frozen backbone
    /// or inference). Values above the number of blocks mean all blocks.
    fn forward(&self, x: &Tensor, trainable: usize) -> candle_core::Result<Tensor>;

    /// Length of the feature vector per image.
    fn feature_dim(&self) -> usize;

    /// The blocks, input to output; each is a list of var-name prefixes relative to the
    /// backbone's VarBuilder. ResNets: the stem `["conv1", "bn1"]`, then one entry per residual
    /// block (`["layer1.0"]`, .., `["layer4.2"]`). ViTs: the embeddings (CLIP
    /// `["embeddings", "pre_layrnorm"]`), one entry per encoder layer, the last one with the
    /// final norm (`["encoder.layers.11", "post_layernorm"]`, `["encoder.layer.11", "layernorm"]`).
    fn blocks(&self) -> &[Vec<String>];

    /// Full var names (as in the VarMap, e.g. `backbone.layer1.0.conv1.weight`) of each block,
    /// in the order of [`Backbone::blocks`]. Includes BatchNorm running statistics.
    fn block_var_names(&self) -> &[Vec<String>];
}

/// Builds the backbone called `name` (one of [`crate::vocab::BACKBONES`]) on `kernels`, with
/// its vars under `vb` (torchvision names for CNNs, Hugging Face's for ViTs) and its family's
/// default pooling: [`build_backbone_with`]`(name, kernels, None, vb)`.
pub fn build_backbone(
    name: &str,
    kernels: Kernels,
    vb: VarBuilder,
) -> Result<Box<dyn Backbone>, ModelError> {
    build_backbone_with(name, kernels, None, vb)
}

/// [`build_backbone`] with a choice of `pooling` for ViTs (`None`: the family's default,
/// [`Pooling::Cls`]; see `vit.rs` for the definitions).
///
/// # Errors
/// An unknown name, a `Some` pooling for a CNN ([`ModelError::PoolingNotApplicable`]), or
/// vars that cannot be made.
pub fn build_backbone_with(
    name: &str,
    kernels: Kernels,
    pooling: Option<Pooling>,
    vb: VarBuilder,
) -> Result<Box<dyn Backbone>, ModelError> {
    let build = |e| ModelError::Build {
        what: format!("backbone {name}"),
        source: e,
    };
    let arch = architecture(name);
    if let (Some(a), Some(_)) = (arch, pooling)
        && a.vit().is_none()
    {
        return Err(ModelError::PoolingNotApplicable {
            backbone: name.to_string(),
            family: a.family(),
        });
    }
    match arch {
        Some(Architecture::TinyCnn) => Ok(Box::new(TinyCnn::new(kernels, vb).map_err(build)?)),
        Some(Architecture::ResNet {
            bottleneck,
            layers,
            groups,
            width_per_group,
        }) => {
            let block = if bottleneck {
                BlockKind::Bottleneck
            } else {
                BlockKind::Basic
            };
            let config = ResNetConfig {
                block,
                layers,
                groups,
                width_per_group,
            };
            Ok(Box::new(ResNet::new(&config, kernels, vb).map_err(build)?))
        }
        Some(Architecture::Vit(config)) => {
            let pooling = pooling.unwrap_or(Pooling::Cls);
            Ok(Box::new(
                Vit::new(name, &config, pooling, kernels, vb).map_err(build)?,
            ))
        }
        None => Err(ModelError::UnknownBackbone {
            name: name.to_string(),
        }),
    }
}

/// Shared by the backbones: which block index is the first trainable one.
pub(super) fn first_trainable(blocks: usize, trainable: usize) -> usize {
    blocks - trainable.min(blocks)
}

/// Records the full names of the vars a block creates, so [`Backbone::block_var_names`] needs no
/// VarMap (a VarBuilder cannot list what it made), and hands every layer the kernels to use.
pub(super) struct Names {
    pub names: Vec<String>,
    kernels: Kernels,
}

impl Names {
    pub fn new(kernels: Kernels) -> Self {
        Self {
            names: Vec::new(),
            kernels,
        }
    }

    /// A conv (no bias) under `vb`, torchvision's `Conv2d(.., bias=False)`; see [`conv_cfg`].
    pub fn conv(
        &mut self,
        cin: usize,
        cout: usize,
        k: usize,
        cfg: candle_nn::Conv2dConfig,
        vb: VarBuilder,
    ) -> candle_core::Result<Conv> {
        self.names.push(format!("{}.weight", vb.prefix()));
        let conv = candle_nn::conv2d_no_bias(cin, cout, k, cfg, vb)?;
        Ok(
            Conv::new(conv.weight().clone(), cfg.stride, cfg.padding, cfg.groups)
                .with_kernels(self.kernels),
        )
    }

    /// A BatchNorm under `vb`: torchvision's `weight`, `bias`, `running_mean`, `running_var`
    /// (eps 1e-5, momentum 0.1, like torch).
    pub fn bn(&mut self, c: usize, vb: VarBuilder) -> candle_core::Result<BatchNorm> {
        let p = vb.prefix();
        for n in ["weight", "bias", "running_mean", "running_var"] {
            self.names.push(format!("{p}.{n}"));
        }
        Ok(BatchNorm::new(c, vb)?.with_kernels(self.kernels))
    }
}

/// Conv settings from stride, padding and groups (dilation 1).
pub(super) fn conv_cfg(stride: usize, padding: usize, groups: usize) -> candle_nn::Conv2dConfig {
    candle_nn::Conv2dConfig {
        padding,
        stride,
        dilation: 1,
        groups,
        cudnn_fwd_algo: None,
    }
}
