//! The words every layer shares, each defined once: views, backbones, tasks, fusions,
//! kernels and metric names.
//!
//! The experiment schema, the model, the training loop, inference and the dataset layout
//! all speak of these; keeping them here (a module that imports nothing of geoexp) lets
//! each of those import them without importing one another. A config value that means the
//! same thing as a domain value is one type here (`model.fusion` *is* a [`Fusion`]; the rule
//! for config and domain types is in the crate docs).

use serde::{Deserialize, Serialize};

/// Views per location.
pub const VIEWS: usize = 4;

/// The views' headings in degrees, in the order the model sees them.
pub const HEADINGS: [u16; VIEWS] = [0, 90, 180, 270];

/// What the network predicts (`model.task`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One of the grid classes; the position is the probability-weighted mean of class
    /// centroids.
    Classification,
    /// Two outputs: min-max scaled projected coordinates.
    Regression,
}

/// How the four views' features become one vector (`model.fusion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Concatenate in [`HEADINGS`] order → `4 · feature_dim`; the head can tell the
    /// headings apart.
    Concat,
    /// Average → `feature_dim`; invariant to which view is which.
    Mean,
}

/// Which implementation of conv, batch-norm and max-pool a model runs on the CPU
/// (`train.kernels`). Both compute the same functions; results differ by float rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// The model module's custom CPU kernels (`conv.rs`, `batch_norm.rs`, `maxpool.rs`).
    #[default]
    Fast,
    /// Plain candle ops: `conv2d`, `candle_nn::BatchNorm` and a max-pool composed of
    /// differentiable ops. Several times slower to train.
    Reference,
}

/// What a backbone name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// A four-conv network for tests and quick runs.
    TinyCnn,
    /// torchvision's ResNet/ResNeXt.
    ResNet {
        /// Bottleneck blocks (ResNet-50 and deeper, ResNeXt) rather than basic ones.
        bottleneck: bool,
        /// Blocks in each of the four stages.
        layers: [usize; 4],
        /// Groups of the 3×3 conv in bottlenecks (32 for ResNeXt).
        groups: usize,
        /// Channels per group (64 for ResNet; 4 or 8 for ResNeXt).
        width_per_group: usize,
    },
}

const fn resnet(bottleneck: bool, layers: [usize; 4], groups: usize, width: usize) -> Architecture {
    Architecture::ResNet {
        bottleneck,
        layers,
        groups,
        width_per_group: width,
    }
}

/// Every backbone geoexp builds (`model.backbone`), in the order shown to users.
pub const BACKBONES: [(&str, Architecture); 8] = [
    ("tiny-cnn", Architecture::TinyCnn),
    ("resnet18", resnet(false, [2, 2, 2, 2], 1, 64)),
    ("resnet34", resnet(false, [3, 4, 6, 3], 1, 64)),
    ("resnet50", resnet(true, [3, 4, 6, 3], 1, 64)),
    ("resnet101", resnet(true, [3, 4, 23, 3], 1, 64)),
    ("resnet152", resnet(true, [3, 8, 36, 3], 1, 64)),
    ("resnext50_32x4d", resnet(true, [3, 4, 6, 3], 32, 4)),
    ("resnext101_32x8d", resnet(true, [3, 4, 23, 3], 32, 8)),
];

/// The backbone names of [`BACKBONES`], in order.
pub fn backbone_names() -> impl Iterator<Item = &'static str> {
    BACKBONES.iter().map(|(name, _)| *name)
}

/// The architecture `name` stands for, if it is one of [`BACKBONES`].
pub fn architecture(name: &str) -> Option<Architecture> {
    BACKBONES.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// Every metric of a validation or test split, by name (`val/<name>`, `test/<name>`); the
/// training loop's metrics module computes them.
pub const SPLIT_METRICS: &[&str] = &[
    "loss",
    "acc",
    "acc_top5",
    "haversine_km_mean",
    "haversine_km_median",
    "acc_1km",
    "acc_5km",
    "acc_25km",
    "acc_100km",
    "geoguessr_score",
    "country_score",
];

/// Metrics of the training split (`train/<name>`).
pub const TRAIN_METRICS: &[&str] = &["loss", "acc"];

/// Metrics that exist only for classification (they need a true class).
pub const CLASSIFICATION_METRICS: &[&str] = &["acc", "acc_top5"];

/// Whether a larger value of the metric `name` is better, for the best checkpoint and the
/// `plateau` scheduler: true for accuracies and scores, false for losses and distances.
/// A split prefix (`val/acc`) is ignored.
pub fn monitor_mode_max(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.starts_with("acc") || base.ends_with("score")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backbone_names_are_unique_and_found() {
        let names: Vec<&str> = backbone_names().collect();
        for name in &names {
            assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{name}");
            assert!(architecture(name).is_some());
        }
        assert_eq!(architecture("resnet19"), None);
    }

    #[test]
    fn accuracies_and_scores_are_maximised_losses_and_distances_minimised() {
        for name in [
            "acc",
            "val/acc_top5",
            "val/acc_25km",
            "geoguessr_score",
            "test/country_score",
        ] {
            assert!(monitor_mode_max(name), "{name}");
        }
        for name in [
            "loss",
            "val/loss",
            "val/haversine_km_mean",
            "haversine_km_median",
        ] {
            assert!(!monitor_mode_max(name), "{name}");
        }
    }

    #[test]
    fn tasks_and_fusions_read_as_users_write_them() {
        #[derive(Deserialize)]
        struct T {
            task: Task,
            fusion: Fusion,
            kernels: Kernels,
        }
        let t: T =
            toml::from_str("task = \"regression\"\nfusion = \"mean\"\nkernels = \"reference\"")
                .unwrap();
        assert_eq!(
            (t.task, t.fusion, t.kernels),
            (Task::Regression, Fusion::Mean, Kernels::Reference)
        );
    }
}
