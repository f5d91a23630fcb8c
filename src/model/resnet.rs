//! ResNet 18/34/50/101/152 and ResNeXt 50_32x4d / 101_32x8d with torchvision's layout and var
//! names (He et al. 2015, "Deep Residual Learning"; Xie et al. 2016, "Aggregated Residual
//! Transformations"), without the final `fc`.
//!
//! Written here rather than taken from candle-transformers because that one cannot be
//! fine-tuned: its BatchNorm is eval-only and its stem max-pool has no working backward.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::Kernels;
use super::backbone::{Backbone, Names, conv_cfg, first_trainable};
use super::batch_norm::BatchNorm;
use super::conv::Conv;
use super::maxpool::{max_pool_3x3_s2_p1, max_pool_3x3_s2_p1_composed};
use super::residual::add_relu;

/// Which residual block a ResNet uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convs (ResNet 18/34), expansion 1.
    Basic,
    /// 1×1 → 3×3 (grouped for ResNeXt) → 1×1 (ResNet 50+ and ResNeXt), expansion 4.
    Bottleneck,
}

/// Architecture of one ResNet variant (torchvision's `ResNet(block, layers, groups,
/// width_per_group)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Residual block type.
    pub block: BlockKind,
    /// Blocks in each of the four stages.
    pub layers: [usize; 4],
    /// Groups of the 3×3 conv in bottlenecks (32 for ResNeXt).
    pub groups: usize,
    /// Channels per group (64 for ResNet; 4 or 8 for ResNeXt).
    pub width_per_group: usize,
}

impl ResNetConfig {
    fn expansion(&self) -> usize {
        match self.block {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// conv + BatchNorm, the unit every block is made of.
struct ConvBn {
    conv: Conv,
    bn: BatchNorm,
}

impl ConvBn {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_conv_t(&self.conv, x, train, false)
    }

    /// `relu(forward(x))`, fused where the kernels allow.
    fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_conv_t(&self.conv, x, train, true)
    }
}

/// One entry of [`Backbone::blocks`].
enum Block {
    /// `conv1` 7×7/2, `bn1`, ReLU, max-pool 3×3/2 (the composed one on reference kernels).
    Stem(ConvBn, Kernels),
    /// A residual block: its conv+BN stages in order, and the optional downsample shortcut
    /// (`downsample.0` conv 1×1, `downsample.1` BN).
    Residual {
        convs: Vec<ConvBn>,
        downsample: Option<ConvBn>,
        kernels: Kernels,
    },
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Block::Stem(cb, kernels) => {
                let x = cb.forward_relu(x, train)?;
                match kernels {
                    Kernels::Fast => max_pool_3x3_s2_p1(&x),
                    Kernels::Reference => max_pool_3x3_s2_p1_composed(&x),
                }
            }
            Block::Residual {
                convs,
                downsample,
                kernels,
            } => {
                let mut y = x.clone();
                let last = convs.len() - 1;
                for (i, cb) in convs.iter().enumerate() {
                    y = if i < last {
                        cb.forward_relu(&y, train)?
                    } else {
                        cb.forward(&y, train)?
                    };
                }
                let shortcut = match downsample {
                    Some(d) => d.forward(x, train)?,
                    None => x.clone(),
                };
                add_relu(&y, &shortcut, *kernels)
            }
        }
    }
}

/// A ResNet / ResNeXt backbone.
pub struct ResNet {
    blocks: Vec<Block>,
    prefixes: Vec<Vec<String>>,
    var_names: Vec<Vec<String>>,
    feature_dim: usize,
}

impl ResNet {
    /// Builds `config` with its vars under `vb`, named like torchvision.
    pub fn new(config: &ResNetConfig, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        let mut blocks = Vec::new();
        let mut prefixes = Vec::new();
        let mut var_names = Vec::new();

        let mut names = Names::new(kernels);
        blocks.push(Block::Stem(
            ConvBn {
                conv: names.conv(3, 64, 7, conv_cfg(2, 3, 1), vb.pp("conv1"))?,
                bn: names.bn(64, vb.pp("bn1"))?,
            },
            kernels,
        ));
        prefixes.push(vec!["conv1".to_string(), "bn1".to_string()]);
        var_names.push(names.names);

        let expansion = config.expansion();
        let mut cin = 64;
        for (stage, &count) in config.layers.iter().enumerate() {
            let planes = 64 << stage;
            for i in 0..count {
                // torchvision (v1.5): the stride sits on the 3×3 conv of each stage's first block.
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let prefix = format!("layer{}.{i}", stage + 1);
                let vb = vb.pp(&prefix);
                let mut names = Names::new(kernels);
                let cout = planes * expansion;
                let mut conv_bn = |n: usize, ci, co, k, s, p, g| -> Result<ConvBn> {
                    Ok(ConvBn {
                        conv: names.conv(
                            ci,
                            co,
                            k,
                            conv_cfg(s, p, g),
                            vb.pp(format!("conv{n}")),
                        )?,
                        bn: names.bn(co, vb.pp(format!("bn{n}")))?,
                    })
                };
                let convs = match config.block {
                    BlockKind::Basic => vec![
                        conv_bn(1, cin, planes, 3, stride, 1, 1)?,
                        conv_bn(2, planes, planes, 3, 1, 1, 1)?,
                    ],
                    BlockKind::Bottleneck => {
                        let width = planes * config.width_per_group / 64 * config.groups;
                        vec![
                            conv_bn(1, cin, width, 1, 1, 0, 1)?,
                            conv_bn(2, width, width, 3, stride, 1, config.groups)?,
                            conv_bn(3, width, cout, 1, 1, 0, 1)?,
                        ]
                    }
                };
                let downsample = if stride != 1 || cin != cout {
                    let d = vb.pp("downsample");
                    Some(ConvBn {
                        conv: names.conv(cin, cout, 1, conv_cfg(stride, 0, 1), d.pp("0"))?,
                        bn: names.bn(cout, d.pp("1"))?,
                    })
                } else {
                    None
                };
                blocks.push(Block::Residual {
                    convs,
                    downsample,
                    kernels,
                });
                prefixes.push(vec![prefix]);
                var_names.push(names.names);
                cin = cout;
            }
        }
        Ok(Self {
            blocks,
            prefixes,
            var_names,
            feature_dim: cin,
        })
    }
}

impl Backbone for ResNet {
    fn forward(&self, x: &Tensor, trainable: usize) -> Result<Tensor> {
        let first = first_trainable(self.blocks.len(), trainable);
        let mut x = x.clone();
        for (i, b) in self.blocks.iter().enumerate() {
            if i == first && i > 0 {
                x = x.detach();
            }
            x = b.forward(&x, i >= first)?;
        }
        let x = x.mean((2, 3))?;
        Ok(if trainable == 0 { x.detach() } else { x })
    }

    fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    fn blocks(&self) -> &[Vec<String>] {
        &self.prefixes
    }

    fn block_var_names(&self) -> &[Vec<String>] {
        &self.var_names
    }
}
