//! The features stage: every view's embedding, computed once.
//!
//! - [`Source::Frozen`]: a backbone that never trains gives every view the same embedding
//!   in every epoch of every trial, so it is computed here, before training, and `train`
//!   and `evaluate` run only the head on it. The graph has it when [`route`] says so: the
//!   backbone never trains (`train.unfreeze = "none"`, or `train.unfreeze_epoch` ≥
//!   `train.epochs`) and no training augmentation is on (an augmented view is a new image
//!   every epoch). Otherwise training reads images, as it always did.
//! - [`Source::Trained`]: with `model.refine` on a backbone that trains, the embeddings
//!   retrieval refinement compares come from the trained `best` checkpoint, after `train`
//!   (its key then covers everything about the network); only `evaluate` reads them.
//!
//! Reads: `model.backbone`, `model.weights` (by content) and `model.weights_prefix`,
//! `train.kernels` (the results differ by float rounding), `model.feature_dtype`, the seed
//! when no weights are given (the backbone is then the seeded initialisation), and the
//! images entry (views, normalisation).
//! Writes: `features.safetensors` (`[N, 4, D]`, see [`crate::train::features`]), and the
//! images entry's `index.csv` and `stats.toml`, so what reads the features needs nothing
//! else.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::experiment::{Experiment, Loaded, Unfreeze};
use crate::graph::{Input, Outcome, Params, Stage, StageContext, StageError, params_of};
use crate::images::ImageTensor;
use crate::infer::Model;
use crate::model::{NetSpec, Pretrained, build_net};
use crate::train::augment::is_active;
use crate::train::checkpoint;
use crate::train::device::select_device;
use crate::train::features::extract;
use crate::train::policy::Slot;
use crate::vocab::{FeatureDtype, Fusion, Head, Kernels, Pooling};

use super::images::{INDEX_FILE, STATS_FILE, TENSOR_FILE, normalisation, read_stats};

/// Name of the stage.
pub const NAME: &str = "features";
/// The embeddings.
pub const FEATURES_FILE: &str = "features.safetensors";
/// Locations per forward pass. Fixed, not `train.batch_size`: the batch could change the
/// last bits of the results, and the entry must not depend on a setting outside its key.
const BATCH: usize = 16;

/// What training reads per location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The features stage's embeddings: only the head runs per step.
    Features,
    /// The images: the backbone runs per step, for the reason given.
    Images(String),
}

/// Whether a run of `e` trains on precomputed features, and if not, why not.
pub fn route(e: &Experiment) -> Route {
    let t = &e.train;
    if !t.precompute_features {
        return Route::Images("train.precompute_features = false".into());
    }
    if t.unfreeze != Unfreeze::None && t.unfreeze_epoch < t.epochs {
        return Route::Images(format!(
            "the backbone trains from epoch {} on (train.unfreeze_epoch < train.epochs = {})",
            t.unfreeze_epoch, t.epochs
        ));
    }
    if is_active(&t.augment) {
        return Route::Images(
            "training augmentation is on (train.augment), so every epoch sees new images".into(),
        );
    }
    Route::Features
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Features => f.write_str(
                "train and evaluate read the features stage's embeddings: the backbone never \
                 trains, so only the head runs per step",
            ),
            Route::Images(why) => write!(
                f,
                "no features stage: train reads images and runs the backbone every step, \
                 because {why}"
            ),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
struct FeaturesParams {
    #[serde(rename = "model.backbone")]
    backbone: String,
    #[serde(rename = "model.weights_prefix")]
    weights_prefix: Option<String>,
    #[serde(rename = "model.pooling")]
    pooling: Option<Pooling>,
    #[serde(rename = "model.feature_dtype")]
    dtype: FeatureDtype,
    #[serde(rename = "train.kernels")]
    kernels: Kernels,
    /// Only without weights: the seeded initialisation is then the backbone.
    seed: Option<u64>,
}

/// Which backbone the embeddings come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The configured backbone (pretrained weights or seeded), which never trains.
    Frozen,
    /// The train stage's `best` checkpoint.
    Trained,
}

/// Computes every view's embedding once.
pub struct FeaturesStage {
    source: Source,
    params: FeaturesParams,
    weights: Option<PathBuf>,
    device: String,
}

impl FeaturesStage {
    /// The stage for `loaded`, embedding with `source`'s backbone.
    pub fn new(loaded: &Loaded, source: Source) -> FeaturesStage {
        let e = &loaded.experiment;
        let weights = e
            .model
            .weights
            .as_ref()
            .map(|w| loaded.resolve_path("model.weights", w));
        let trained = source == Source::Trained;
        FeaturesStage {
            source,
            params: FeaturesParams {
                backbone: e.model.backbone.clone(),
                weights_prefix: e.model.weights_prefix.clone(),
                pooling: e.model.pooling,
                dtype: e.model.feature_dtype,
                kernels: e.train.kernels,
                seed: (weights.is_none() && !trained).then_some(e.seed),
            },
            // The train key already covers the weights a trained backbone started from.
            weights: weights.filter(|_| !trained),
            device: e.train.device.clone(),
        }
    }
}

impl Stage for FeaturesStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn upstream(&self) -> Vec<&'static str> {
        match self.source {
            Source::Frozen => vec![super::images::NAME],
            Source::Trained => vec![super::images::NAME, super::train::NAME],
        }
    }

    fn params(&self) -> Params {
        params_of(&self.params)
    }

    fn inputs(&self) -> Result<Vec<Input>, StageError> {
        Ok(weights_input(self.weights.as_deref()))
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        let images_dir = ctx.upstream_dir(super::images::NAME)?;
        let device = select_device(&self.device)?;
        let p = &self.params;
        let images = ImageTensor::open(&images_dir.join(TENSOR_FILE))?;
        let (net, stats) = match self.source {
            Source::Frozen => {
                let stats = normalisation(&p.backbone, read_stats(images_dir)?.stats);
                // The head is not used; it is built only because the net is built whole.
                let spec = NetSpec {
                    backbone: &p.backbone,
                    fusion: Fusion::Mean,
                    outputs: 1,
                    kernels: p.kernels,
                    head: &Head::Linear,
                    pooling: p.pooling,
                };
                let weights = self.weights.as_deref().map(|path| Pretrained {
                    path,
                    prefix: p.weights_prefix.as_deref(),
                });
                (
                    build_net(&spec, p.seed.unwrap_or(0), weights, &device)?.1,
                    stats,
                )
            }
            Source::Trained => {
                let train_dir = ctx.upstream_dir(super::train::NAME)?;
                let (best, _) = checkpoint::paths(train_dir, Slot::Best.name());
                let model = Model::open_with(&best, &device, p.kernels)?;
                let stats = model.info().normalisation;
                (model.into_net(), stats)
            }
        };
        let out = ctx.out_dir();
        let tick = ctx.progress("embedding views", images.len() as u64);
        let summary = extract(
            &net,
            (&images, &stats),
            BATCH,
            p.dtype,
            &device,
            &out.join(FEATURES_FILE),
            tick.as_ref(),
        )?;
        tick.finish();
        for file in [INDEX_FILE, STATS_FILE] {
            std::fs::copy(images_dir.join(file), out.join(file))
                .map_err(|e| format!("copying {}: {e}", images_dir.join(file).display()))?;
        }
        Ok(Outcome::default()
            .with("locations", summary.locations)
            .with("dim", summary.dim)
            .with("bytes", summary.bytes))
    }
}

/// The weights file as a stage input (hashed by content), if there is one.
pub fn weights_input(weights: Option<&Path>) -> Vec<Input> {
    weights
        .iter()
        .map(|w| Input::Files {
            label: super::train::WEIGHTS_INPUT.into(),
            root: w.parent().map(Path::to_path_buf).unwrap_or_default(),
            files: w.file_name().map(PathBuf::from).into_iter().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_backbone_that_never_trains_without_augmentation_gets_features() {
        let mut e = Experiment::default();
        assert!(matches!(route(&e), Route::Images(why) if why.contains("unfreeze_epoch")));
        e.train.unfreeze_epoch = e.train.epochs;
        assert_eq!(route(&e), Route::Features);
        e.train.unfreeze_epoch = 0;
        e.train.unfreeze = Unfreeze::None;
        assert_eq!(route(&e), Route::Features);
        e.train.augment.noise_std = 0.1;
        assert!(matches!(route(&e), Route::Images(why) if why.contains("augmentation")));
        e.train.augment.noise_std = 0.0;
        e.train.precompute_features = false;
        assert!(matches!(route(&e), Route::Images(why) if why.contains("precompute_features")));
    }
}
