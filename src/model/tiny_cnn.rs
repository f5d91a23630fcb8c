//! `tiny-cnn`: four conv 3×3 / stride 2 + BatchNorm + ReLU blocks (16, 32, 64, 128 channels) and a
//! global average pool → 128 features. Small enough to train on a CPU in seconds, so tests and
//! quick experiments exercise the real training path.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::Kernels;
use super::backbone::{Backbone, Names, conv_cfg, first_trainable};
use super::batch_norm::BatchNorm;
use super::conv::Conv;

/// Channels of the four blocks; the last is the feature dimension.
const CHANNELS: [usize; 4] = [16, 32, 64, 128];

/// One conv + BN + ReLU block, vars `block{i}.conv.weight` and `block{i}.bn.*`.
struct Block {
    conv: Conv,
    bn: BatchNorm,
}

/// The `tiny-cnn` backbone.
pub struct TinyCnn {
    blocks: Vec<Block>,
    prefixes: Vec<Vec<String>>,
    var_names: Vec<Vec<String>>,
}

impl TinyCnn {
    /// Builds the network with its vars under `vb`.
    pub fn new(kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        let mut blocks = Vec::new();
        let mut prefixes = Vec::new();
        let mut var_names = Vec::new();
        let mut cin = 3;
        for (i, &cout) in CHANNELS.iter().enumerate() {
            let name = format!("block{i}");
            let vb = vb.pp(&name);
            let mut names = Names::new(kernels);
            blocks.push(Block {
                conv: names.conv(cin, cout, 3, conv_cfg(2, 1, 1), vb.pp("conv"))?,
                bn: names.bn(cout, vb.pp("bn"))?,
            });
            prefixes.push(vec![name]);
            var_names.push(names.names);
            cin = cout;
        }
        Ok(Self {
            blocks,
            prefixes,
            var_names,
        })
    }
}

impl Backbone for TinyCnn {
    fn forward(&self, x: &Tensor, trainable: usize) -> Result<Tensor> {
        let first = first_trainable(self.blocks.len(), trainable);
        let mut x = x.clone();
        for (i, b) in self.blocks.iter().enumerate() {
            if i == first && i > 0 {
                x = x.detach();
            }
            let train = i >= first;
            x = b.bn.forward_conv_t(&b.conv, &x, train, true)?;
        }
        let x = x.mean((2, 3))?;
        Ok(if trainable == 0 { x.detach() } else { x })
    }

    fn feature_dim(&self) -> usize {
        CHANNELS[CHANNELS.len() - 1]
    }

    fn blocks(&self) -> &[Vec<String>] {
        &self.prefixes
    }

    fn block_var_names(&self) -> &[Vec<String>] {
        &self.var_names
    }
}
