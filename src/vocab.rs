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

/// What sits between the fused view features and the outputs (`model.head`).
///
/// Written `"linear"`, or `{ kind = "mlp", hidden = [1024], dropout = 0.1 }`: hidden layers
/// of those widths, each a linear layer, ReLU and dropout, then the output layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Head {
    /// One linear layer.
    #[default]
    Linear,
    /// A multilayer perceptron.
    Mlp {
        /// Widths of the hidden layers, input side first.
        hidden: Vec<usize>,
        /// Dropout probability after each hidden layer, in training only.
        dropout: f64,
    },
}

impl Head {
    /// Whether this is the plain linear head (left out of configs and checkpoints, so
    /// those made before heads had a choice keep their bytes).
    pub fn is_linear(&self) -> bool {
        *self == Head::Linear
    }
}

/// The table form of an MLP head.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MlpTable {
    kind: String,
    #[serde(default = "default_hidden")]
    hidden: Vec<usize>,
    #[serde(default)]
    dropout: f64,
}

fn default_hidden() -> Vec<usize> {
    vec![1024]
}

// A bare string next to a table needs hand-written serde, as `train.unfreeze` does.
impl Serialize for Head {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Head::Linear => s.serialize_str("linear"),
            Head::Mlp { hidden, dropout } => MlpTable {
                kind: "mlp".into(),
                hidden: hidden.clone(),
                dropout: *dropout,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Head {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, Unexpected, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Head;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"linear\" or a table { kind = \"mlp\", hidden = [..], dropout = .. }")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Head, E> {
                match v {
                    "linear" => Ok(Head::Linear),
                    "mlp" => Ok(Head::Mlp {
                        hidden: default_hidden(),
                        dropout: 0.0,
                    }),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Head, M::Error> {
                let t = MlpTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                match t.kind.as_str() {
                    "mlp" => Ok(Head::Mlp {
                        hidden: t.hidden,
                        dropout: t.dropout,
                    }),
                    "linear" if t.hidden == default_hidden() && t.dropout == 0.0 => {
                        Ok(Head::Linear)
                    }
                    other => Err(M::Error::invalid_value(
                        Unexpected::Str(other),
                        &"kind = \"mlp\"",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// How the features stage stores embeddings (`model.feature_dtype`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureDtype {
    /// 32-bit floats: what the backbone computed.
    #[default]
    F32,
    /// 16-bit floats: half the disk and memory, rounded to about three decimal digits.
    F16,
}

impl FeatureDtype {
    /// Whether this is the default, f32.
    pub fn is_f32(&self) -> bool {
        *self == FeatureDtype::F32
    }
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
    fn heads_read_as_a_word_or_a_table_and_write_back_the_same() {
        #[derive(Deserialize, Serialize)]
        struct M {
            head: Head,
        }
        let read = |t: &str| toml::from_str::<M>(t).map(|m| m.head);
        assert_eq!(read("head = \"linear\"").unwrap(), Head::Linear);
        let mlp = Head::Mlp {
            hidden: vec![256, 64],
            dropout: 0.1,
        };
        assert_eq!(
            read("head = { kind = \"mlp\", hidden = [256, 64], dropout = 0.1 }").unwrap(),
            mlp
        );
        assert_eq!(
            read("head = { kind = \"mlp\" }").unwrap(),
            Head::Mlp {
                hidden: vec![1024],
                dropout: 0.0
            }
        );
        let text = toml::to_string(&M { head: mlp.clone() }).unwrap();
        assert_eq!(read(&text).unwrap(), mlp);
        assert!(read("head = \"transformer\"").is_err());
        assert!(read("head = { kind = \"mlp\", width = 3 }").is_err());
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
