//! A [`GeoNet`] from its description: what training starts from (seeded, with pretrained
//! backbone weights if any) and what a checkpoint's weights are restored into.

use std::path::Path;

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::weights::check_pretrained;
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

/// Checks that `weights` fit the backbone of `spec`, without building its weights or
/// reading the file's data: what [`build_net`] would refuse, found before anything runs.
///
/// # Errors
/// As [`load_pretrained`].
pub fn check_weights(spec: &NetSpec<'_>, weights: Pretrained<'_>) -> Result<(), ModelError> {
    let recorder = Recorder::default();
    let shapes = Arc::clone(&recorder.shapes);
    let vb = VarBuilder::from_backend(Box::new(recorder), DType::F32, Device::Cpu);
    GeoNet::from_spec(spec, vb)?;
    let vars: Vec<(String, Vec<usize>)> = shapes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .filter_map(|(n, s)| Some((n.strip_prefix("backbone.")?.to_owned(), s.clone())))
        .collect();
    check_pretrained(weights.path, &vars, weights.prefix).map(|_| ())
}

/// A VarBuilder backend that notes each var's name and shape and hands out zeros, which
/// the allocator maps lazily: building a large model this way costs next to nothing.
#[derive(Default)]
struct Recorder {
    shapes: Shapes,
}

/// Var names and shapes, in the order they were made.
type Shapes = Arc<Mutex<Vec<(String, Vec<usize>)>>>;

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.shapes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((name.to_owned(), s.dims().to_vec()));
        Tensor::zeros(s, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("`{name}` has no shape to build it with")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}
