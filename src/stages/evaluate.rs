//! The evaluate stage: the `best` checkpoint (by `train.monitor`, not the last one) on the
//! test split, against the baseline that always predicts the train-set mean location.
//!
//! Reads: `train.kernels`, `model.refine`, the train entry's `best` checkpoint, the
//! classes entry, and the images entry or, where training read embeddings, the features
//! entry (and with `model.refine`, the features entry in any case).
//! Writes: `predictions.csv` (uuid, true and predicted lat/lon, km error), `cells.csv`
//! (per true class: count, mean and median km), `error_map.png`, `metrics.toml`, and the
//! TensorBoard event file `evaluate.events` (test metrics, the error map, the HParams
//! session end; volatile, as it carries wall times). With `model.refine`, predictions are
//! refined (see [`crate::infer::refine`]), `metrics.toml` adds the unrefined mean and
//! median and the fraction moved, and `gallery.safetensors` holds the training embeddings
//! that `predict` and `serve` refine with (linked beside the run's checkpoints).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dataset::Split;
use crate::experiment::{Centroid, Loaded};
use crate::geo::{Boundary, haversine_km};
use crate::graph::{
    Input, Outcome, Params, Stage, StageContext, StageError, params_of, write_atomic,
};
use crate::infer::Model;
use crate::infer::gallery::{GalleryData, write as write_gallery};
use crate::infer::refine::{Gallery, RefineSettings, refine_batch};
use crate::track::map::{ErrorLine, MapText, draw_errors};
use crate::track::tensorboard::EventWriter;
use crate::train::checkpoint;
use crate::train::data::Sample;
use crate::train::device::select_device;
use crate::train::evaluate::{Prediction, Predictor, diagonal_km};
use crate::train::features::FeatureTensor;
use crate::train::metrics::Evaluation;
use crate::train::policy::Slot;
use crate::vocab::Kernels;
use crate::vocab::VIEWS;

use super::features::{Route, route};
use super::train::Setup;

/// Name of the stage.
pub const NAME: &str = "evaluate";
/// Per-location predictions.
pub const PREDICTIONS_FILE: &str = "predictions.csv";
/// Per-class errors.
pub const CELLS_FILE: &str = "cells.csv";
/// Map of the test errors.
pub const ERROR_MAP_FILE: &str = "error_map.png";
/// Test metrics.
pub const METRICS_FILE: &str = "metrics.toml";
/// The refinement gallery (with `model.refine`).
pub const GALLERY_FILE: &str = "gallery.safetensors";
/// Tag prefix of the best checkpoint's test metrics in TensorBoard (the train stage logs
/// `test/*` for every epoch; these are the final ones, at the best epoch's step).
pub const EVENT_PREFIX: &str = "evaluate/";
/// TensorBoard events (not named `*tfevents*`; see [`crate::train::event_log::EVENTS_FILE`]).
pub const EVENTS_FILE: &str = "evaluate.events";

/// Evaluates the best checkpoint on the test split.
pub struct EvaluateStage {
    /// The upstream entry the test locations' views or embeddings come from.
    inputs_stage: &'static str,
    device: String,
    batch_size: usize,
    params: EvaluateParams,
    boundary: Arc<Boundary>,
}

#[derive(Clone, Debug, Serialize)]
struct EvaluateParams {
    /// The kernels differ in float rounding, so the predictions depend on them.
    #[serde(rename = "train.kernels")]
    kernels: Kernels,
    /// In the key only when set, so entries made before it existed keep theirs.
    #[serde(rename = "model.refine", skip_serializing_if = "Option::is_none")]
    refine: Option<RefineSettings>,
}

impl EvaluateStage {
    /// The stage for `loaded`.
    pub fn new(loaded: &Loaded, boundary: Arc<Boundary>) -> EvaluateStage {
        EvaluateStage {
            inputs_stage: match route(&loaded.experiment) {
                Route::Features => super::features::NAME,
                Route::Images(_) => super::images::NAME,
            },
            device: loaded.experiment.train.device.clone(),
            batch_size: loaded.experiment.train.batch_size,
            params: EvaluateParams {
                kernels: loaded.experiment.train.kernels,
                refine: loaded.experiment.model.refine,
            },
            boundary,
        }
    }
}

/// A row of `predictions.csv`: one test location.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictionRow {
    /// Location id.
    pub uuid: String,
    /// True latitude.
    pub true_lat: f64,
    /// True longitude.
    pub true_lon: f64,
    /// Predicted latitude.
    pub pred_lat: f64,
    /// Predicted longitude.
    pub pred_lon: f64,
    /// Haversine error in km.
    pub error_km: f64,
    /// The class of the true position.
    pub true_class: usize,
    /// The predicted class (none for regression).
    pub pred_class: Option<usize>,
}

/// A row of `cells.csv`: one true class's test errors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellRow {
    /// The class.
    pub class: usize,
    /// Its centroid's latitude.
    pub centroid_lat: f64,
    /// Its centroid's longitude.
    pub centroid_lon: f64,
    /// Test locations in it.
    pub locations: usize,
    /// Their mean error in km.
    pub mean_km: f64,
    /// Their median error in km.
    pub median_km: f64,
}

impl Stage for EvaluateStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 2: error_map.png has a title, headline, legend, colour ramp and scale bar.
        2
    }

    fn volatile_outputs(&self) -> &'static [&'static str] {
        &[EVENTS_FILE]
    }

    fn upstream(&self) -> Vec<&'static str> {
        let mut upstream = vec![super::classes::NAME, self.inputs_stage, super::train::NAME];
        if self.params.refine.is_some() && self.inputs_stage != super::features::NAME {
            upstream.push(super::features::NAME);
        }
        upstream
    }

    fn params(&self) -> Params {
        params_of(&self.params)
    }

    fn inputs(&self) -> Result<Vec<Input>, StageError> {
        Ok(Vec::new())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        let train_dir = ctx.upstream_dir(super::train::NAME)?;
        let device = select_device(&self.device)?;
        let (best_path, _) = checkpoint::paths(train_dir, Slot::Best.name());
        let best = Model::open_with(&best_path, &device, self.params.kernels)?;
        let info = best.info();
        let setup = Setup::read(
            ctx.upstream_dir(super::classes::NAME)?,
            ctx.upstream_dir(self.inputs_stage)?,
            &info.backbone,
            Some(Centroid::Weighted),
        )?;
        let b = self.boundary.bbox();
        let country_km = diagonal_km(b.min_lat, b.min_lon, b.max_lat, b.max_lon);
        let test = setup.split(Split::Test);
        if test.is_empty() {
            return Err("the test split is empty; nothing to evaluate".into());
        }
        let projection = best.projection();
        let predictor = Predictor {
            net: best.net(),
            info,
            projection,
            device: &device,
            batch_size: self.batch_size,
            keep_probs: self.params.refine.is_some(),
        };
        let (mut predictions, mut metrics) = predictor.run(&setup.inputs, &test, country_km)?;
        let out = ctx.out_dir();
        if let Some(settings) = &self.params.refine {
            let features = FeatureTensor::open(
                &ctx.upstream_dir(super::features::NAME)?
                    .join(super::features::FEATURES_FILE),
            )?;
            let gallery = gallery_data(&features, &setup.split(Split::Train));
            write_gallery(&out.join(GALLERY_FILE), &gallery, settings)?;
            let gallery = Gallery::new(
                gallery.embeddings,
                gallery.dim,
                gallery.classes,
                gallery.positions,
            )?;
            metrics = refine_predictions(
                &gallery,
                settings,
                (&features, &test),
                &mut predictions,
                (&metrics, country_km),
            );
        }
        let baseline = train_mean_baseline(&setup.split(Split::Train), &test, projection)?;
        metrics.insert("baseline_km_mean".into(), baseline);
        write_predictions(&out.join(PREDICTIONS_FILE), &test, &predictions)?;
        write_cells(&out.join(CELLS_FILE), &test, &predictions, &info.centroids)?;
        let lines: Vec<ErrorLine> = test
            .iter()
            .zip(&predictions)
            .map(|(s, p)| ErrorLine {
                truth: (s.lat, s.lon),
                predicted: (p.lat, p.lon),
                error_km: p.error_km,
            })
            .collect();
        let map = out.join(ERROR_MAP_FILE);
        let km = |name: &str| metrics.get(name).copied().unwrap_or(f64::NAN);
        let text = MapText {
            title: format!("Test errors · {}", ctx.label()),
            headline: format!(
                "{} test locations, mean {:.1} km, median {:.1} km (best epoch {})",
                lines.len(),
                km("haversine_km_mean"),
                km("haversine_km_median"),
                best.epoch()
            ),
        };
        draw_errors(&map, self.boundary.shape(), &lines, &text)?;
        write_atomic(
            &out.join(METRICS_FILE),
            toml::to_string(&metrics)?.as_bytes(),
        )?;
        write_events(out, &metrics, &map, best.epoch())?;
        let mut outcome = Outcome::default()
            .with("best_epoch", best.epoch())
            .with("locations", test.len());
        for (k, v) in metrics {
            outcome = outcome.with(&format!("test/{k}"), v);
        }
        Ok(outcome)
    }
}

/// A location's embedding: the mean of its four views'.
fn location_embedding(features: &FeatureTensor, row: usize) -> Vec<f32> {
    let (dim, views) = (features.dim(), features.row(row));
    (0..dim)
        .map(|d| views.iter().skip(d).step_by(dim).sum::<f32>() / VIEWS as f32)
        .collect()
}

/// The training locations' embeddings, classes and positions.
fn gallery_data(features: &FeatureTensor, train: &[Sample]) -> GalleryData {
    GalleryData {
        embeddings: train
            .iter()
            .flat_map(|s| location_embedding(features, s.row))
            .collect(),
        dim: features.dim(),
        classes: train.iter().map(|s| s.class).collect(),
        positions: train.iter().map(|s| (s.lat, s.lon)).collect(),
    }
}

/// Refines `predictions` of `test` in place and returns the split's metrics for them: the
/// loss and class ranks are the classifier's, the distances the refined ones; plus the
/// unrefined mean and median and the fraction of locations moved.
fn refine_predictions(
    gallery: &Gallery,
    settings: &RefineSettings,
    (features, test): (&FeatureTensor, &[Sample]),
    predictions: &mut [Prediction],
    (plain, country_km): (&BTreeMap<String, f64>, f64),
) -> BTreeMap<String, f64> {
    let queries: Vec<f32> = test
        .iter()
        .flat_map(|s| location_embedding(features, s.row))
        .collect();
    let probs: Vec<&[f32]> = predictions
        .iter()
        .map(|p| p.probs.as_deref().unwrap_or_default())
        .collect();
    let plains: Vec<(f64, f64)> = predictions.iter().map(|p| (p.lat, p.lon)).collect();
    let refined = refine_batch(gallery, &queries, &probs, &plains, settings);
    let mut eval = Evaluation::new(country_km);
    let mut moved = 0;
    for ((p, s), r) in predictions.iter_mut().zip(test).zip(refined) {
        moved += usize::from(!r.kept_plain);
        (p.lat, p.lon) = (r.lat, r.lon);
        p.error_km = haversine_km(s.lat, s.lon, r.lat, r.lon);
        eval.add(p.error_km, p.rank);
    }
    if let Some(loss) = plain.get("loss") {
        eval.add_loss(loss * test.len() as f64, test.len());
    }
    let mut metrics = eval.metrics();
    for k in ["haversine_km_mean", "haversine_km_median"] {
        if let Some(v) = plain.get(k) {
            metrics.insert(format!("unrefined_{k}"), *v);
        }
    }
    metrics.insert(
        "refined_moved".into(),
        moved as f64 / test.len().max(1) as f64,
    );
    metrics
}

/// Mean test error of always predicting the train locations' mean position (averaged in
/// the projected CRS, where a mean is a point on the map).
fn train_mean_baseline(
    train: &[Sample],
    test: &[Sample],
    projection: &dyn crate::geo::Projection,
) -> Result<f64, StageError> {
    let mut pts: Vec<(f64, f64)> = train.iter().map(|s| (s.lon, s.lat)).collect();
    projection.forward(&mut pts)?;
    let n = pts.len().max(1) as f64;
    let mean = pts
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let mut centre = [mean];
    projection.inverse(&mut centre)?;
    let (lon, lat) = centre[0];
    Ok(test
        .iter()
        .map(|s| haversine_km(s.lat, s.lon, lat, lon))
        .sum::<f64>()
        / test.len().max(1) as f64)
}

fn write_predictions(
    path: &Path,
    samples: &[Sample],
    predictions: &[Prediction],
) -> Result<(), StageError> {
    let mut w = csv::Writer::from_path(path)?;
    for (s, p) in samples.iter().zip(predictions) {
        w.serialize(PredictionRow {
            uuid: s.uuid.clone(),
            true_lat: s.lat,
            true_lon: s.lon,
            pred_lat: p.lat,
            pred_lon: p.lon,
            error_km: p.error_km,
            true_class: s.class,
            pred_class: p.class,
        })?;
    }
    w.flush()?;
    Ok(())
}

fn write_cells(
    path: &Path,
    samples: &[Sample],
    predictions: &[Prediction],
    centroids: &[[f64; 4]],
) -> Result<(), StageError> {
    let mut by_class: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (s, p) in samples.iter().zip(predictions) {
        by_class.entry(s.class).or_default().push(p.error_km);
    }
    let mut w = csv::Writer::from_path(path)?;
    for (class, mut errors) in by_class {
        errors.sort_by(f64::total_cmp);
        let n = errors.len();
        let median = if n % 2 == 1 {
            errors[n / 2]
        } else {
            (errors[n / 2 - 1] + errors[n / 2]) / 2.0
        };
        let c = centroids.get(class).copied().unwrap_or([f64::NAN; 4]);
        w.serialize(CellRow {
            class,
            centroid_lat: c[0],
            centroid_lon: c[1],
            locations: n,
            mean_km: errors.iter().sum::<f64>() / n as f64,
            median_km: median,
        })?;
    }
    w.flush()?;
    Ok(())
}

fn write_events(
    out: &Path,
    metrics: &BTreeMap<String, f64>,
    map: &Path,
    epoch: u32,
) -> Result<(), StageError> {
    let mut events = EventWriter::create_at(&out.join(EVENTS_FILE))?;
    for (k, v) in metrics {
        events.scalar(&format!("{EVENT_PREFIX}{k}"), i64::from(epoch), *v);
    }
    let png = std::fs::read(map)?;
    let (w, h) = image::image_dimensions(map)?;
    events.image("maps/test_errors", i64::from(epoch), &png, w, h);
    events.hparams_end(true);
    events.flush()?;
    Ok(())
}
