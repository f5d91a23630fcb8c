//! The train stage: fits the network on the train split, selecting the best epoch on
//! validation, with checkpoints that survive a kill (see [`crate::train::fit`]). It adapts
//! the training loop to the engine: the work and output directories, progress bars, and
//! the loop's events passed on to the reporter.
//!
//! Reads: `seed`, `model.*` (the weights file by content), every `train.*` key except
//! `train.device` (where it runs does not change what it should compute), the classes
//! entry (locations' classes and projected coordinates, centroids, scaling) and either the
//! images entry (views and normalisation) or, when the backbone never trains, the features
//! entry (embeddings; see [`super::features::route`]).
//! Writes: `best.safetensors`/`best.toml`, `last.safetensors`/`last.toml`, `metrics.csv`
//! and the TensorBoard event file `train.events` (volatile: it carries wall times).
//! Results: the best epoch and its monitored value, the last epoch's metrics; the device
//! and the epochs this attempt ran are facts of the attempt (`execution.toml`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::experiment::{Centroid, Loaded, MonitorMode, TrainConfig};
use crate::geo::{Boundary, projection};
use crate::graph::{
    Input, Outcome, Params, Paused, Stage, StageContext, StageError, Tick, params_of,
};
use crate::images::ImageTensor;
use crate::track::tensorboard::HParamValue;
use crate::train::FitError;
use crate::train::checkpoint::ModelInfo;
use crate::train::data::Inputs;
use crate::train::data::Sample;
use crate::train::device::select_device;
use crate::train::evaluate::diagonal_km;
use crate::train::event_log::EVENTS_FILE;
use crate::train::features::FeatureTensor;
use crate::train::fit::{FitData, FitDirs, FitSettings, fit};
use crate::train::optimizer::OptimizerSettings;
use crate::train::progress::{FitEvent, FitObserver};
use crate::train::scheduler::ScheduleParams;
use crate::vocab::{Fusion, Head, Pooling, Task, monitor_mode_max};

use super::classes::{ScalingFile, read_centroids, read_classed_locations, read_scaling};
use super::features::{FEATURES_FILE, Route, route, weights_input};
use super::images::{StatsFile, TENSOR_FILE, normalisation, read_index, read_stats};

/// Name of the stage.
pub const NAME: &str = "train";
/// Label of the pretrained-weights input.
pub const WEIGHTS_INPUT: &str = "model.weights";

#[derive(Clone, Debug, Serialize)]
struct TrainParams {
    seed: u64,
    #[serde(rename = "model.task")]
    task: Task,
    #[serde(rename = "model.backbone")]
    backbone: String,
    #[serde(rename = "model.fusion")]
    fusion: Fusion,
    #[serde(rename = "model.head", skip_serializing_if = "Head::is_linear")]
    head: Head,
    #[serde(rename = "model.pooling", skip_serializing_if = "Option::is_none")]
    pooling: Option<Pooling>,
    #[serde(
        rename = "model.weights_prefix",
        skip_serializing_if = "Option::is_none"
    )]
    weights_prefix: Option<String>,
    #[serde(rename = "model.centroid")]
    centroid: Option<Centroid>,
    #[serde(rename = "model.top_k")]
    top_k: Option<usize>,
    train: TrainConfig,
}

/// Trains the network.
pub struct TrainStage {
    params: TrainParams,
    weights: Option<PathBuf>,
    device: String,
    boundary: Arc<Boundary>,
    /// Upstream settings shown beside the stage's own in TensorBoard's HParams tab, so
    /// sweep trials over `classes.spacing` compare there. They are in the upstream keys,
    /// so the events stay a function of this stage's key.
    upstream_hparams: Params,
    /// Pause after this epoch (a budget of the attempt, not part of the key).
    stop_after: Option<u32>,
    /// Whether it reads the features entry instead of images.
    features: bool,
}

/// Upstream settings written as hyperparameters (see [`TrainStage`]).
const UPSTREAM_HPARAMS: &[&str] = &[
    "classes.boundary",
    "classes.spacing",
    "classes.centroid",
    "classes.crs",
    "dataset.fraction",
];

impl TrainStage {
    /// The stage for `loaded`, pausing after epoch `stop_after` if set.
    pub fn new(loaded: &Loaded, boundary: Arc<Boundary>, stop_after: Option<u32>) -> TrainStage {
        let e = &loaded.experiment;
        let classification = e.model.task == Task::Classification;
        TrainStage {
            params: TrainParams {
                seed: e.seed,
                task: e.model.task,
                backbone: e.model.backbone.clone(),
                fusion: e.model.fusion,
                head: e.model.head.clone(),
                pooling: e.model.pooling,
                weights_prefix: e.model.weights_prefix.clone(),
                centroid: classification.then(|| e.model.centroid.unwrap_or(e.classes.centroid)),
                top_k: classification.then_some(e.model.top_k),
                train: e.train.clone(),
            },
            weights: e
                .model
                .weights
                .as_ref()
                .map(|w| loaded.resolve_path("model.weights", w)),
            device: e.train.device.clone(),
            boundary,
            upstream_hparams: {
                let config = loaded.config();
                UPSTREAM_HPARAMS
                    .iter()
                    .filter_map(|k| {
                        crate::experiment::keys::lookup(&config, k)
                            .map(|v| ((*k).to_owned(), v.clone()))
                    })
                    .collect()
            },
            stop_after,
            features: route(e) == Route::Features,
        }
    }

    /// The upstream entry training reads per location.
    fn inputs_stage(&self) -> &'static str {
        if self.features {
            super::features::NAME
        } else {
            super::images::NAME
        }
    }

    fn settings(&self) -> FitSettings {
        let p = &self.params;
        let t = &p.train;
        let monitor_max = match t.monitor_mode {
            MonitorMode::Auto => monitor_mode_max(&t.monitor),
            MonitorMode::Min => false,
            MonitorMode::Max => true,
        };
        FitSettings {
            seed: p.seed,
            epochs: t.epochs,
            batch_size: t.batch_size,
            task: p.task,
            fusion: p.fusion,
            kernels: t.kernels,
            lr: t.lr,
            backbone_lr: t.backbone_lr.unwrap_or(t.lr),
            unfreeze_epoch: t.unfreeze_epoch,
            unfreeze: t.unfreeze,
            optimizer: OptimizerSettings::new(t.optimizer, t.weight_decay, t.momentum),
            scheduler: (
                t.scheduler.kind,
                ScheduleParams::from_config(&t.scheduler, monitor_max),
            ),
            monitor: t.monitor.clone(),
            monitor_max,
            label_smoothing: t.label_smoothing,
            haversine_tau_km: t.haversine_tau_km,
            augment: t.augment.clone(),
            weights: self.weights.clone(),
            weights_prefix: p.weights_prefix.clone(),
            stop_after: self.stop_after,
            hparams: hparams(
                &self
                    .upstream_hparams
                    .clone()
                    .into_iter()
                    .chain(self.params())
                    .collect(),
            ),
        }
    }
}

/// The key's params as TensorBoard hyperparameters.
fn hparams(params: &Params) -> BTreeMap<String, HParamValue> {
    params
        .iter()
        .filter_map(|(k, v)| {
            let value = match v {
                Value::Number(n) => HParamValue::Number(n.as_f64()?),
                Value::Bool(b) => HParamValue::Bool(*b),
                Value::String(s) => HParamValue::Text(s.clone()),
                _ => return None,
            };
            Some((k.clone(), value))
        })
        .collect()
}

impl Stage for TrainStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 2: upstream class and dataset settings among the HParams.
        // 3: `train.kernels`, and the fast kernels' conv forward is geoexp's own.
        // 4: the fast kernels' BatchNorm statistics take one pass (last-bit differences).
        // 5: checkpoints no longer name the event file; device and epochs run are facts.
        5
    }

    fn volatile_outputs(&self) -> &'static [&'static str] {
        &[EVENTS_FILE]
    }

    fn upstream(&self) -> Vec<&'static str> {
        vec![super::classes::NAME, self.inputs_stage()]
    }

    fn params(&self) -> Params {
        let mut p = params_of(&self.params);
        p.remove("train.device");
        p
    }

    fn inputs(&self) -> Result<Vec<Input>, StageError> {
        Ok(weights_input(self.weights.as_deref()))
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        let classes_dir = ctx.upstream_dir(super::classes::NAME)?;
        let inputs_dir = ctx.upstream_dir(self.inputs_stage())?;
        let device = select_device(&self.device)?;
        let p = &self.params;
        let setup = Setup::read(classes_dir, inputs_dir, &p.backbone, p.centroid)?;
        let info = setup.info(&ModelChoice {
            backbone: &p.backbone,
            task: p.task,
            fusion: p.fusion,
            head: &p.head,
            pooling: p.pooling,
            top_k: p.top_k.unwrap_or(0),
        });
        let projection = projection(&info.crs)?;
        let b = self.boundary.bbox();
        let class_map = std::fs::read(classes_dir.join(super::classes::MAP_FILE))
            .ok()
            .and_then(|png| png_size(&png).map(|(w, h)| (png, w, h)));
        let data = FitData {
            inputs: &setup.inputs,
            train: setup.split(crate::dataset::Split::Train),
            val: setup.split(crate::dataset::Split::Val),
            test: setup.split(crate::dataset::Split::Test),
            info,
            projection: projection.as_ref(),
            country_km: diagonal_km(b.min_lat, b.min_lon, b.max_lat, b.max_lon),
            class_map,
        };
        if data.train.is_empty() || data.val.is_empty() {
            return Err(format!(
                "training needs train and val locations; this dataset has {} and {}",
                data.train.len(),
                data.val.len()
            )
            .into());
        }
        let settings = self.settings();
        let work = ctx.work_dir()?;
        let dirs = FitDirs {
            work: &work,
            out: ctx.out_dir(),
        };
        let summary = match fit(&settings, &data, &device, dirs, &StageObserver::new(ctx)) {
            Err(e @ FitError::Paused { .. }) => {
                return Err(Box::new(Paused {
                    what: e.to_string(),
                }));
            }
            other => other?,
        };
        let mut outcome = Outcome::default()
            .with("best_epoch", summary.best.1)
            .with(&format!("best_{}", settings.monitor), summary.best.0)
            .fact("device", format!("{device:?}"))
            .fact("epochs_run_by_this_attempt", summary.epochs_run);
        for (k, v) in &summary.last.metrics {
            outcome = outcome.with(&format!("last/{k}"), *v);
        }
        Ok(outcome)
    }
}

/// Shows the training loop's steps as a progress bar per epoch and passes its other events
/// to the engine's reporter.
struct StageObserver<'c, 'a> {
    ctx: &'c StageContext<'a>,
    bar: RefCell<Option<EpochBar>>,
}

/// The running epoch's progress bar, its steps and the steps done.
type EpochBar = (Box<dyn Tick>, usize, usize);

impl<'c, 'a> StageObserver<'c, 'a> {
    fn new(ctx: &'c StageContext<'a>) -> Self {
        StageObserver {
            ctx,
            bar: RefCell::new(None),
        }
    }
}

impl FitObserver for StageObserver<'_, '_> {
    fn event(&self, event: FitEvent) {
        match event {
            FitEvent::EpochStarted {
                epoch,
                epochs,
                steps,
            } => {
                let label = format!("epoch {}/{epochs}", epoch + 1);
                let tick = self.ctx.progress(&label, steps as u64);
                *self.bar.borrow_mut() = Some((tick, steps, 0));
            }
            FitEvent::Step {
                mean_loss,
                locations_per_second,
            } => {
                let mut bar = self.bar.borrow_mut();
                if let Some((tick, steps, done)) = bar.as_mut() {
                    tick.inc(1);
                    tick.message(&format!(
                        "loss {mean_loss:.4}  {locations_per_second:.1} loc/s"
                    ));
                    *done += 1;
                    if done == steps {
                        tick.finish();
                        *bar = None;
                    }
                }
            }
            other => self.ctx.emit(&other),
        }
    }
}

/// What training and evaluation read from the classes entry and the images (or features)
/// entry.
pub struct Setup {
    /// Every location's views or embeddings.
    pub inputs: Inputs,
    stats: StatsFile,
    scaling: ScalingFile,
    centroids: Vec<[f64; 4]>,
    classes_key: String,
    samples: Vec<(crate::dataset::Split, Sample)>,
}

/// What a training chose about the model, beside what the entries say.
pub struct ModelChoice<'a> {
    /// Backbone name.
    pub backbone: &'a str,
    /// Classification or regression.
    pub task: Task,
    /// View fusion.
    pub fusion: Fusion,
    /// The head.
    pub head: &'a Head,
    /// A ViT's pooling.
    pub pooling: Option<Pooling>,
    /// Classes a prediction averages (0: all).
    pub top_k: usize,
}

impl Setup {
    /// Joins the classes entry's locations with the rows of `inputs_dir`, an images entry
    /// or a features entry (whichever holds its tensor file), with `centroid` centroids
    /// (default: weighted), for a network with backbone `backbone` (whose family may bring
    /// its own normalisation).
    ///
    /// # Errors
    /// When an entry's file is unreadable or the two disagree.
    pub fn read(
        classes_dir: &Path,
        inputs_dir: &Path,
        backbone: &str,
        centroid: Option<Centroid>,
    ) -> Result<Setup, StageError> {
        let scaling = read_scaling(classes_dir)?;
        let located = read_classed_locations(classes_dir)?;
        let by_uuid: HashMap<&str, &super::classes::ClassedLocation> =
            located.iter().map(|l| (l.uuid.as_str(), l)).collect();
        let centroids = read_centroids(classes_dir, centroid.unwrap_or(Centroid::Weighted))?;
        let mut stats = read_stats(inputs_dir)?;
        stats.stats = normalisation(backbone, stats.stats);
        let features = inputs_dir.join(FEATURES_FILE);
        let inputs = if features.is_file() {
            Inputs::Features(FeatureTensor::open(&features)?)
        } else {
            Inputs::Images {
                tensor: ImageTensor::open(&inputs_dir.join(TENSOR_FILE))?,
                stats: stats.stats,
            }
        };
        let index = read_index(inputs_dir)?;
        if index.len() != inputs.len() {
            return Err(format!(
                "{}: {} rows, but the tensor holds {} locations",
                inputs_dir.join(super::images::INDEX_FILE).display(),
                index.len(),
                inputs.len()
            )
            .into());
        }
        let (sx, sy) = (
            (scaling.x_max - scaling.x_min).max(f64::EPSILON),
            (scaling.y_max - scaling.y_min).max(f64::EPSILON),
        );
        let samples = index
            .iter()
            .map(|row| {
                let l = by_uuid
                    .get(row.uuid.as_str())
                    .ok_or_else(|| format!("location {} has images but no class", row.uuid))?;
                Ok((
                    l.split,
                    Sample {
                        uuid: l.uuid.clone(),
                        row: row.row,
                        class: l.class,
                        lat: l.latitude,
                        lon: l.longitude,
                        target: [
                            (l.crs_x - scaling.x_min) / sx,
                            (l.crs_y - scaling.y_min) / sy,
                        ],
                    },
                ))
            })
            .collect::<Result<Vec<_>, StageError>>()?;
        Ok(Setup {
            inputs,
            stats,
            scaling,
            centroids,
            classes_key: classes_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            samples,
        })
    }

    /// What a checkpoint of the model `choice` describes says about it.
    pub fn info(&self, choice: &ModelChoice<'_>) -> ModelInfo {
        let classification = choice.task == Task::Classification;
        let s = &self.scaling;
        ModelInfo {
            backbone: choice.backbone.to_owned(),
            fusion: choice.fusion,
            task: choice.task,
            outputs: if classification {
                self.centroids.len()
            } else {
                2
            },
            image_size: self.stats.image_size,
            normalisation: self.stats.stats,
            classes_key: self.classes_key.clone(),
            crs: s.crs.clone(),
            scaling: [s.x_min, s.x_max, s.y_min, s.y_max],
            centroids: self.centroids.clone(),
            top_k: choice.top_k,
            head: choice.head.clone(),
            pooling: choice.pooling,
        }
    }

    /// The samples of `split`, in tensor order.
    pub fn split(&self, split: crate::dataset::Split) -> Vec<Sample> {
        self.samples
            .iter()
            .filter(|(s, _)| *s == split)
            .map(|(_, sample)| sample.clone())
            .collect()
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let w = u32::from_be_bytes(png.get(16..20)?.try_into().ok()?);
    let h = u32::from_be_bytes(png.get(20..24)?.try_into().ok()?);
    Some((w, h))
}
