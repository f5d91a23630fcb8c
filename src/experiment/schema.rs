//! The experiment file's shape: serde structs with their defaults.
//!
//! Every struct denies unknown fields and defaults every field, so a single layer (a base
//! file, an override file) deserializes on its own and type errors are caught per file,
//! with its line numbers. The defaults here are the only source of default values: the
//! README's reference table and `geoexp plan` read them from `Experiment::default()`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::vocab::{FeatureDtype, Fusion, Head, Kernels, Pooling, RefineSettings, Task};

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
    /// Drop (and count) locations with an unreadable view instead of failing.
    pub skip_bad_images: bool,
    /// Views declaring more million pixels than this are bad views (unset: 64). Left out
    /// of the resolved config when unset, so run ids from before it existed stay the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_image_megapixels: Option<u64>,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            dirs: Vec::new(),
            synthetic: None,
            split: SplitConfig::default(),
            fraction: 1.0,
            skip_bad_images: false,
            max_image_megapixels: None,
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

/// How the boundary is cut into cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Squares of `spacing` degrees.
    #[default]
    Grid,
    /// The grid's squares, split where they hold more than `max_locations` train locations.
    Quadtree,
    /// `cells` k-means clusters of the train locations, with Voronoi cells.
    Clusters,
}

impl CellKind {
    /// Whether this is the default, the square grid.
    pub fn is_grid(&self) -> bool {
        *self == CellKind::Grid
    }

    /// `"grid"`, `"quadtree"` or `"clusters"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CellKind::Grid => "grid",
            CellKind::Quadtree => "quadtree",
            CellKind::Clusters => "clusters",
        }
    }
}

/// `classes.max_locations` when a quadtree leaves it unset.
pub const DEFAULT_MAX_LOCATIONS: usize = 120;
/// `classes.min_spacing` when a quadtree leaves it unset, as a fraction of `classes.spacing`
/// (three levels of splits).
pub const DEFAULT_MIN_SPACING_FRACTION: f64 = 0.125;
/// `classes.cells` when clusters leave it unset.
pub const DEFAULT_CLUSTERS: usize = 60;

/// `[classes]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassesConfig {
    /// ISO 3166 alpha-2 code of an embedded country, or a path to a GeoJSON file.
    pub boundary: String,
    /// How cells are cut. Left out of the resolved config while `grid`, as are the keys
    /// below while unset, so run ids from before they existed stay the same.
    #[serde(default, skip_serializing_if = "CellKind::is_grid")]
    pub kind: CellKind,
    /// Grid cell side in degrees (the quadtree's root squares).
    pub spacing: f64,
    /// Quadtree: a square with more train locations than this is split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_locations: Option<usize>,
    /// Quadtree: the smallest side a split may make, in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_spacing: Option<f64>,
    /// Quadtree and clusters: cells with fewer train locations are not classes (unset: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_locations: Option<usize>,
    /// Clusters: how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cells: Option<usize>,
    /// Which centroid represents a class.
    pub centroid: Centroid,
    /// Projected CRS for regression targets and planar maths.
    pub crs: String,
}

impl Default for ClassesConfig {
    fn default() -> Self {
        ClassesConfig {
            boundary: "HR".into(),
            kind: CellKind::Grid,
            spacing: 0.5,
            max_locations: None,
            min_spacing: None,
            min_locations: None,
            cells: None,
            centroid: Centroid::Weighted,
            crs: "EPSG:3766".into(),
        }
    }
}

impl ClassesConfig {
    /// `max_locations`, or its default.
    pub fn max_locations_or_default(&self) -> usize {
        self.max_locations.unwrap_or(DEFAULT_MAX_LOCATIONS)
    }

    /// `min_spacing`, or its default: `spacing` / 8.
    pub fn min_spacing_or_default(&self) -> f64 {
        self.min_spacing
            .unwrap_or(self.spacing * DEFAULT_MIN_SPACING_FRACTION)
    }

    /// `min_locations`, or its default: 1, every cell with a train location is a class.
    pub fn min_locations_or_default(&self) -> usize {
        self.min_locations.unwrap_or(1)
    }

    /// `cells`, or its default.
    pub fn cells_or_default(&self) -> usize {
        self.cells.unwrap_or(DEFAULT_CLUSTERS)
    }
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Classification or regression.
    pub task: Task,
    /// Backbone name (one of [`crate::vocab::BACKBONES`]).
    pub backbone: String,
    /// Pretrained weights (safetensors, PyTorch or Lightning files), relative to the file
    /// that sets it.
    pub weights: Option<String>,
    /// The prefix of the backbone's tensors in the weights file (unset: inferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_prefix: Option<String>,
    /// How a ViT's tokens become one vector (unset: the family's default, `cls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// View fusion.
    pub fusion: Fusion,
    /// The head on the fused features. Left out of the resolved config while linear, so
    /// run ids from before heads had a choice stay the same.
    #[serde(default, skip_serializing_if = "Head::is_linear")]
    pub head: Head,
    /// How the features stage stores embeddings (left out while f32, as `head`).
    #[serde(default, skip_serializing_if = "FeatureDtype::is_f32")]
    pub feature_dtype: FeatureDtype,
    /// Which centroids a classification prediction averages (default: `classes.centroid`).
    pub centroid: Option<Centroid>,
    /// Average only the `top_k` most probable classes, renormalised (0: all).
    pub top_k: usize,
    /// Retrieval refinement of classification predictions (unset: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine: Option<RefineSettings>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            task: Task::Classification,
            backbone: "resnet18".into(),
            weights: None,
            weights_prefix: None,
            pooling: None,
            fusion: Fusion::Concat,
            head: Head::Linear,
            feature_dtype: FeatureDtype::F32,
            centroid: None,
            top_k: 0,
            refine: None,
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
            SchedulerKind::Cosine => &["min_lr", "warmup_epochs"],
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
    /// Epochs of linear warm-up before the cosine decay (`cosine`).
    pub warmup_epochs: u32,
}

impl SchedulerConfig {
    /// Every field besides `kind`, by name.
    pub const FIELDS: [&'static str; 6] = [
        "factor",
        "patience",
        "step_size",
        "min_lr",
        "pct_start",
        "warmup_epochs",
    ];
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
            warmup_epochs: 0,
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
    /// Which part of the backbone trains from `unfreeze_epoch` on.
    pub unfreeze: Unfreeze,
    /// Learning rate of the backbone once unfrozen (default: `lr`).
    pub backbone_lr: Option<f64>,
    /// Momentum (`sgd`).
    pub momentum: f64,
    /// Label smoothing ε of the cross entropy (classification).
    pub label_smoothing: f64,
    /// Haversine label smoothing temperature in km (classification; 0: off).
    pub haversine_tau_km: f64,
    /// Training-only augmentations.
    pub augment: AugmentConfig,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// Custom CPU kernels or plain candle ops.
    pub kernels: Kernels,
    /// Metric that picks the best checkpoint and drives `plateau`.
    pub monitor: String,
    /// Whether the monitor improves downwards or upwards.
    pub monitor_mode: MonitorMode,
    /// Whether a backbone that never trains gets a features stage (left out of the
    /// resolved config while true, so run ids from before it existed stay the same).
    #[serde(skip_serializing_if = "is_true")]
    pub precompute_features: bool,
}

fn is_true(b: &bool) -> bool {
    *b
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
            unfreeze: Unfreeze::All,
            backbone_lr: None,
            momentum: 0.9,
            label_smoothing: 0.0,
            haversine_tau_km: 0.0,
            augment: AugmentConfig::default(),
            device: "auto".into(),
            kernels: Kernels::Fast,
            monitor: "val/haversine_km_mean".into(),
            monitor_mode: MonitorMode::Auto,
            precompute_features: true,
        }
    }
}

/// How much of the backbone trains once unfrozen: `"all"`, `"none"` or the last N blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unfreeze {
    /// The whole backbone (`"all"`).
    All,
    /// Nothing: the backbone stays frozen (`"none"`), whatever `unfreeze_epoch` says.
    None,
    /// The last N residual blocks (an integer).
    Last(usize),
}

// `"all"` next to an integer needs hand-written serde: an untagged unit variant would
// expect `null`.
impl Serialize for Unfreeze {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Unfreeze::All => s.serialize_str("all"),
            Unfreeze::None => s.serialize_str("none"),
            Unfreeze::Last(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Unfreeze {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, Unexpected, Visitor};
        struct V;
        impl Visitor<'_> for V {
            type Value = Unfreeze;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"all\", \"none\" or a number of blocks")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Unfreeze, E> {
                match v {
                    "all" => Ok(Unfreeze::All),
                    "none" => Ok(Unfreeze::None),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Unfreeze, E> {
                usize::try_from(v)
                    .map(Unfreeze::Last)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Unfreeze, E> {
                let n =
                    u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))?;
                self.visit_u64(n)
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a larger or smaller monitored value is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorMode {
    /// From the metric's name: accuracies and scores up, losses and distances down.
    Auto,
    /// Smaller is better.
    Min,
    /// Larger is better.
    Max,
}

/// `[train.augment]`: applied to training batches only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Smallest area fraction a random resized crop keeps (1: no cropping).
    pub crop_scale: f64,
    /// Colour jitter strength: brightness, contrast and saturation vary by up to ± this.
    pub color_jitter: f64,
    /// Standard deviation of Gaussian pixel noise, on the 0..1 scale.
    pub noise_std: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            crop_scale: 1.0,
            color_jitter: 0.0,
            noise_std: 0.0,
        }
    }
}
