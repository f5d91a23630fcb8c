//! A [`GeoNet`] from its description: what training starts from (seeded, with pretrained
//! backbone weights if any) and what a checkpoint's weights are restored into.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use super::{GeoNet, ModelError, init_seeded, load_pretrained};
use crate::vocab::{Fusion, Head, Kernels, Pooling};

/// What a network is: enough to rebuild it, with the same var names and shapes.
#[derive(Clone, Copy, Debug)]
pub struct NetSpec<'a> {
    /// Backbone name (one of [`crate::vocab::BACKBONES`]).
    pub backbone: &'a str,
    /// View fusion.
    pub fusion: Fusion,
    /// Head outputs: classes, or 2 for regression.
    pub outputs: usize,
    /// CPU kernels to run on.
    pub kernels: Kernels,
    /// The head on the fused features.
    pub head: &'a Head,
    /// A ViT's pooling (`None`: the family's default).
    pub pooling: Option<Pooling>,
}

/// A pretrained backbone's weights file.
#[derive(Clone, Copy, Debug)]
pub struct Pretrained<'a> {
    /// The file (safetensors, PyTorch or Lightning; see [`load_pretrained`]).
    pub path: &'a Path,
    /// The prefix of the backbone's tensors in it (`None`: inferred).
    pub prefix: Option<&'a str>,
}

/// Builds `spec` on `device` in f32, initialises every var from `seed`, then loads the
/// backbone's pretrained `weights`, if any.
///
/// # Errors
/// An unknown backbone, or weights that cannot be read or do not fit.
pub fn build_net(
    spec: &NetSpec<'_>,
    seed: u64,
    weights: Option<Pretrained<'_>>,
    device: &Device,
) -> Result<(VarMap, GeoNet), ModelError> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let net = GeoNet::from_spec(spec, vb)?;
    init_seeded(&varmap, seed)?;
    if let Some(w) = weights {
        load_pretrained(&varmap, w.path, "backbone.", w.prefix)?;
    }
    Ok((varmap, net))
}
