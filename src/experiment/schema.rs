//! The experiment file's shape: serde structs with their defaults.
//!
//! Every struct denies unknown fields and defaults every field, so a single layer (a base
//! file, an override file) deserializes on its own and type errors are caught per file,
//! with its line numbers. The defaults here are the only source of default values: the
//! README's reference table and `geoexp plan` read them from `Experiment::default()`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole experiment, as resolved from all layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Experiment {
    /// Name: the folder under `runs/` its runs go to.
    pub name: String,
    /// Seed for every random choice (split, initialisation, shuffling).
    pub seed: u64,
    /// A base experiment file this one extends (resolved while loading; not part of the
    /// resolved config).
    #[serde(skip_serializing)]
    pub extends: Option<String>,
    /// Where locations and images come from.
    pub dataset: DatasetConfig,
    /// How the country is cut into classes.
    pub classes: ClassesConfig,
    /// The network.
    pub model: ModelConfig,
    /// Optimisation.
    pub train: TrainConfig,
    /// Hyperparameter grid for `geoexp sweep`: key path → list of values.
    pub sweep: BTreeMap<String, Value>,
}

impl Default for Experiment {
    fn default() -> Self {
        Experiment {
            name: "experiment".into(),
            seed: 0,
            extends: None,
            dataset: DatasetConfig::default(),
            classes: ClassesConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            sweep: BTreeMap::new(),
        }
    }
}

/// `[dataset]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// Dataset directories in the real layout (`data.csv` + `images/<uuid>/<view>.jpg`),
    /// relative to the file that sets them.
    pub dirs: Vec<String>,
    /// Generate a synthetic dataset instead of reading `dirs`.
    pub synthetic: Option<SyntheticConfig>,
    /// Split fractions.
    pub split: SplitConfig,
    /// Fraction of all locations to use (subsampled before splitting).
    pub fraction: f64,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            dirs: Vec::new(),
            synthetic: None,
            split: SplitConfig::default(),
            fraction: 1.0,
        }
    }
}

/// `[dataset.synthetic]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Number of locations.
    pub locations: usize,
    /// Side of each (square) view in pixels.
    pub image_size: u32,
    /// Generator seed.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            locations: 1500,
            image_size: 64,
            seed: 0,
        }
    }
}

/// `[dataset.split]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Training fraction.
    pub train: f64,
    /// Validation fraction.
    pub val: f64,
    /// Test fraction.
    pub test: f64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            train: 0.8,
            val: 0.1,
            test: 0.1,
        }
    }
}

/// Which point of a cell stands for its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Centroid {
    /// Centre of the square.
    Geometric,
    /// Centre of the square, moved to the nearest land in the cell when it is at sea.
    Clipped,
    /// Mean position of the cell's training locations.
    Weighted,
}

/// `[classes]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassesConfig {
    /// ISO 3166 alpha-2 code of an embedded country, or a path to a GeoJSON file.
    pub boundary: String,
    /// Grid cell side in degrees.
    pub spacing: f64,
    /// Which centroid represents a class.
    pub centroid: Centroid,
    /// Projected CRS for regression targets and planar maths.
    pub crs: String,
}

impl Default for ClassesConfig {
    fn default() -> Self {
        ClassesConfig {
            boundary: "HR".into(),
            spacing: 0.5,
            centroid: Centroid::Weighted,
            crs: "EPSG:3766".into(),
        }
    }
}

/// What the network predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One of the grid classes.
    Classification,
    /// Min-max scaled projected coordinates.
    Regression,
}

/// How the four views' features are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Concatenate in view order 0, 90, 180, 270.
    Concat,
    /// Average.
    Mean,
}

/// Backbone names geoexp knows.
pub const BACKBONES: &[&str] = &[
    "tiny-cnn",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
];

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Classification or regression.
    pub task: Task,
    /// Backbone name (one of [`BACKBONES`]).
    pub backbone: String,
    /// Pretrained weights (safetensors), relative to the file that sets it.
    pub weights: Option<String>,
    /// View fusion.
    pub fusion: Fusion,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            task: Task::Classification,
            backbone: "resnet18".into(),
            weights: None,
            fusion: Fusion::Concat,
        }
    }
}

/// Optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Adam.
    Adam,
    /// AdamW (decoupled weight decay).
    AdamW,
    /// SGD with momentum.
    Sgd,
}

/// Learning-rate schedule kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    /// Fixed learning rate.
    Constant,
    /// Multiply by `factor` every `step_size` epochs.
    Step,
    /// Cosine annealing from `lr` to `min_lr` over all epochs.
    Cosine,
    /// One-cycle: warm up to `lr` for `pct_start` of training, then anneal.
    OneCycle,
    /// Multiply by `factor` after `patience` epochs without improvement of the monitor.
    Plateau,
}

impl SchedulerKind {
    /// The scheduler fields this kind reads (others must not be set).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            SchedulerKind::Constant => &[],
            SchedulerKind::Step => &["step_size", "factor"],
            SchedulerKind::Cosine => &["min_lr"],
            SchedulerKind::OneCycle => &["pct_start"],
            SchedulerKind::Plateau => &["factor", "patience", "min_lr"],
        }
    }
}

/// `[train.scheduler]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Which schedule.
    pub kind: SchedulerKind,
    /// Multiplier applied on a decay (`step`, `plateau`).
    pub factor: f64,
    /// Epochs without improvement before decaying (`plateau`).
    pub patience: u32,
    /// Epochs between decays (`step`).
    pub step_size: u32,
    /// Floor of the learning rate (`cosine`, `plateau`).
    pub min_lr: f64,
    /// Fraction of training spent warming up (`onecycle`).
    pub pct_start: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            kind: SchedulerKind::Plateau,
            factor: 0.5,
            patience: 2,
            step_size: 5,
            min_lr: 0.0,
            pct_start: 0.3,
        }
    }
}

/// `[train]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Side of the square network input in pixels.
    pub image_size: u32,
    /// Locations per batch (each has four views).
    pub batch_size: usize,
    /// Number of epochs.
    pub epochs: u32,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub scheduler: SchedulerConfig,
    /// First epoch in which the backbone is trained (before it, only the head).
    pub unfreeze_epoch: u32,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// Metric that picks the best checkpoint and drives `plateau`.
    pub monitor: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            image_size: 112,
            batch_size: 16,
            epochs: 12,
            optimizer: Optimizer::AdamW,
            lr: 2e-4,
            weight_decay: 1e-2,
            scheduler: SchedulerConfig::default(),
            unfreeze_epoch: 0,
            device: "auto".into(),
            monitor: "val/haversine_km_mean".into(),
        }
    }
}
