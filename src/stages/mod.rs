//! The concrete stages of a geolocation experiment and the graph they form:
//!
//! ```text
//! dataset ──► classes ─────────────────────────────┐
//!    │                                              ▼
//!    └──► images(size) ──► [features(backbone)] ──► train ──► evaluate
//! ```
//!
//! - [`dataset`]: locations with splits, from real directories or the generator.
//! - [`classes`]: cells (grid, quadtree or clusters), centroids, per-location classes and
//!   projected coordinates.
//! - [`images`]: every view decoded once at the training size, with train-split statistics.
//! - [`features`]: only where the backbone never trains ([`features::route`]): every
//!   view's embedding, computed once; train and evaluate then read it instead of images.
//! - [`train`]: the network, fitted with checkpoints, metrics and TensorBoard events.
//! - [`evaluate`]: the best checkpoint on the test split, predictions and error maps.
//!
//! Building the graph also resolves what every stage needs from the outside world (the
//! boundary geometry, the CRS), so a bad boundary code or CRS fails before anything runs,
//! naming the key and where it was set.

pub mod classes;
pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod images;
pub mod train;

use std::sync::Arc;

use crate::dataset::{Fractions, Split, split};
use crate::experiment::{CellKind, Loaded, Origin};
use crate::geo::{Boundary, GeoError, ProjectionError, projection};
use crate::geo::{GridSpec, MAX_CLUSTERS};
use crate::graph::{Graph, GraphError};
use crate::model::{ModelError, NetSpec, Pretrained};
use crate::vocab::Head;

/// Label of the boundary-geometry input in keys and records.
pub const BOUNDARY_INPUT: &str = "boundary";

/// Why the graph could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `classes.boundary` does not resolve to a geometry.
    #[error("{origin}: key `classes.boundary`")]
    Boundary {
        /// Where it was set.
        origin: Origin,
        /// Why it failed.
        #[source]
        source: Box<GeoError>,
    },
    /// `classes.crs` is not a usable projection.
    #[error("{origin}: key `classes.crs`")]
    Crs {
        /// Where it was set.
        origin: Origin,
        /// Why it failed.
        #[source]
        source: Box<ProjectionError>,
    },
    /// `classes.spacing` makes too many grid squares over the boundary.
    #[error("{origin}: key `classes.spacing`")]
    Spacing {
        /// Where it was set.
        origin: Origin,
        /// Why it is refused.
        #[source]
        source: Box<GeoError>,
    },
    /// `classes.cells` asks for more clusters than can be made.
    #[error("{origin}: key `classes.cells`: {message}")]
    Clusters {
        /// Where it was set.
        origin: Origin,
        /// Why it is refused.
        message: String,
    },
    /// `model.weights` does not fit the backbone (or is not a weights file).
    #[error("{origin}: key `model.weights`")]
    Weights {
        /// Where it was set.
        origin: Origin,
        /// Why it does not fit.
        #[source]
        source: Box<ModelError>,
    },
    /// The synthetic dataset is too small for its split.
    #[error("{origin}: key `dataset.synthetic.locations`: {message}")]
    Split {
        /// Where it was set.
        origin: Origin,
        /// What the split gives.
        message: String,
    },
    /// The graph is malformed (a bug).
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// Limits an attempt sets on its stages without changing what they compute: they stop
/// short, resumably, and their keys stay those of the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Train to this epoch (1-based) of `train.epochs`, then pause.
    pub train_epochs: Option<u32>,
}

/// The run graph of a loaded experiment.
///
/// # Errors
/// When the boundary or CRS cannot be resolved.
pub fn build(loaded: &Loaded) -> Result<Graph, BuildError> {
    build_with(loaded, Budget::default())
}

/// [`build`], with the stages held to `budget`.
///
/// # Errors
/// As [`build`].
pub fn build_with(loaded: &Loaded, budget: Budget) -> Result<Graph, BuildError> {
    let c = &loaded.experiment.classes;
    let spec = c.boundary.trim();
    let base = loaded.base_dir("classes.boundary");
    let boundary =
        Arc::new(
            Boundary::resolve(spec, &base).map_err(|source| BuildError::Boundary {
                origin: loaded.origin("classes.boundary"),
                source: Box::new(source),
            })?,
        );
    projection(c.crs.trim()).map_err(|source| BuildError::Crs {
        origin: loaded.origin("classes.crs"),
        source: Box::new(source),
    })?;
    // What would fail inside a stage, found now: a grid too fine to build, a synthetic
    // dataset too small for its split (a real one's size is checked by the dataset stage,
    // before anything is trained).
    if c.kind != CellKind::Clusters {
        GridSpec::covering(boundary.bbox(), c.spacing).map_err(|source| BuildError::Spacing {
            origin: loaded.origin("classes.spacing"),
            source: Box::new(source),
        })?;
    }
    check_weights(loaded)?;
    let d = &loaded.experiment.dataset;
    let clusters = (c.kind == CellKind::Clusters).then(|| c.cells_or_default());
    let too_many_clusters = |message: String| BuildError::Clusters {
        origin: loaded.origin("classes.cells"),
        message,
    };
    if let Some(n) = clusters.filter(|&n| n > MAX_CLUSTERS) {
        return Err(too_many_clusters(format!(
            "{n} clusters is more than the limit of {MAX_CLUSTERS}"
        )));
    }
    if let Some(s) = &d.synthetic {
        let fractions = Fractions {
            train: d.split.train,
            val: d.split.val,
        };
        let counts = split::counts(s.locations, fractions, d.fraction);
        if let Some(problem) = split::unusable(counts) {
            return Err(BuildError::Split {
                origin: loaded.origin("dataset.synthetic.locations"),
                message: format!(
                    "{} locations at dataset.fraction = {:?}: {problem}",
                    s.locations, d.fraction
                ),
            });
        }
        // A real dataset's train count is known once the dataset stage has read it; the
        // classes stage then refuses the same way, naming the key.
        if let Some(n) = clusters.filter(|&n| n > counts[0]) {
            return Err(too_many_clusters(format!(
                "{n} clusters, but the synthetic dataset has only {} train locations",
                counts[0]
            )));
        }
    }
    let mut graph = Graph::new();
    graph.add(Box::new(dataset::DatasetStage::new(
        loaded,
        Arc::clone(&boundary),
    )))?;
    graph.add(Box::new(classes::ClassesStage::new(
        loaded,
        Arc::clone(&boundary),
    )))?;
    graph.add(Box::new(images::ImagesStage::new(loaded)))?;
    let frozen = features::route(&loaded.experiment) == features::Route::Features;
    if frozen {
        graph.add(Box::new(features::FeaturesStage::new(
            loaded,
            features::Source::Frozen,
        )))?;
    }
    graph.add(Box::new(train::TrainStage::new(
        loaded,
        Arc::clone(&boundary),
        budget.train_epochs,
    )))?;
    // Refinement on a backbone that trains compares embeddings of the trained one.
    if !frozen && loaded.experiment.model.refine.is_some() {
        graph.add(Box::new(features::FeaturesStage::new(
            loaded,
            features::Source::Trained,
        )))?;
    }
    graph.add(Box::new(evaluate::EvaluateStage::new(loaded, boundary)))?;
    Ok(graph)
}

/// A weights file that does not fit the backbone (wrong family, missing or mis-shaped
/// tensors, not a state dict) is refused before any stage runs: only the file's names and
/// shapes are read, and the model is built without its weights.
fn check_weights(loaded: &Loaded) -> Result<(), BuildError> {
    let m = &loaded.experiment.model;
    let Some(weights) = &m.weights else {
        return Ok(());
    };
    let path = loaded.resolve_path("model.weights", weights);
    let spec = NetSpec {
        backbone: &m.backbone,
        fusion: m.fusion,
        outputs: 1,
        kernels: loaded.experiment.train.kernels,
        head: &Head::Linear,
        pooling: m.pooling,
    };
    let pretrained = Pretrained {
        path: &path,
        prefix: m.weights_prefix.as_deref(),
    };
    crate::model::check_weights(&spec, pretrained).map_err(|source| BuildError::Weights {
        origin: loaded.origin("model.weights"),
        source: Box::new(source),
    })
}

/// Files of a stage's cache entry that a run folder gets hard links to, as
/// (file in the entry, name in the run folder): what `tensorboard --logdir runs` and a
/// person look for. Event files get `tfevents` names only there, so TensorBoard lists
/// runs, not cache entries.
pub fn run_links(stage: &str) -> &'static [(&'static str, &'static str)] {
    match stage {
        train::NAME => &[
            (
                crate::train::event_log::EVENTS_FILE,
                "events.out.tfevents.train",
            ),
            ("best.safetensors", "checkpoints/best.safetensors"),
            ("best.toml", "checkpoints/best.toml"),
            ("last.safetensors", "checkpoints/last.safetensors"),
            ("last.toml", "checkpoints/last.toml"),
            (crate::train::history::METRICS_FILE, "metrics.csv"),
        ],
        evaluate::NAME => &[
            (evaluate::EVENTS_FILE, "events.out.tfevents.evaluate"),
            (evaluate::PREDICTIONS_FILE, "predictions.csv"),
            (evaluate::CELLS_FILE, "cells.csv"),
            (evaluate::METRICS_FILE, "test_metrics.toml"),
            (
                evaluate::GALLERY_FILE,
                "checkpoints/best.gallery.safetensors",
            ),
        ],
        _ => &[],
    }
}

/// Maps of a stage's cache entry that a run folder gets a copy of, retitled with the
/// experiment and run id (see [`crate::track::map::retitle`]), as (file in the entry, name
/// in the run folder).
pub fn run_maps(stage: &str) -> &'static [(&'static str, &'static str)] {
    match stage {
        dataset::NAME => &[(dataset::MAP_FILE, "locations.png")],
        classes::NAME => &[(classes::MAP_FILE, "class_map.png")],
        evaluate::NAME => &[(evaluate::ERROR_MAP_FILE, "error_map.png")],
        _ => &[],
    }
}

/// Index of a split in per-split arrays and map colours (train 0, val 1, test 2).
pub fn split_index(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Val => 1,
        Split::Test => 2,
    }
}
