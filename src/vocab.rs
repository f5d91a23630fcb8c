//! The words every layer shares, each defined once: views, backbones (their families, input
//! sizes and pixel normalisation), tasks, fusions, poolings, kernels and metric names.
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

/// How a Vision Transformer turns its tokens into one feature vector (`model.pooling`). Both
/// read the last layer's tokens after the family's final LayerNorm (CLIP `post_layernorm`,
/// DINOv2 `layernorm`), applied to each token on its own. CNNs always average-pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The class token: Hugging Face's `pooler_output` (CLIP `post_layernorm(h[:, 0])`,
    /// DINOv2 `layernorm(h)[:, 0]`). The ViTs' default.
    Cls,
    /// The mean over the patch tokens, class token excluded: `mean_i norm(h[:, i])`, `i ≥ 1`.
    Mean,
}

/// The Vision-Transformer families geoexp builds, with Hugging Face's layouts and var names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VitFamily {
    /// OpenAI CLIP's vision tower (`CLIPVisionModel`, no visual projection): pre-LayerNorm on
    /// the embeddings, quick_gelu, LayerNorm eps 1e-5, patch conv without bias.
    Clip,
    /// Meta's DINOv2 (`Dinov2Model`): exact (erf) gelu, LayerNorm eps 1e-6, layer scale on
    /// both residual branches, patch conv with bias.
    Dinov2,
}

impl VitFamily {
    /// The family's name, as in messages: `clip`, `dinov2`.
    pub fn name(self) -> &'static str {
        match self {
            VitFamily::Clip => "clip",
            VitFamily::Dinov2 => "dinov2",
        }
    }

    /// Per-channel (RGB) mean and standard deviation of `[0, 1]` pixels the family was trained
    /// on: CLIP's own statistics, ImageNet's for DINOv2.
    pub fn normalisation(self) -> ([f32; 3], [f32; 3]) {
        match self {
            VitFamily::Clip => (CLIP_MEAN, CLIP_STD),
            VitFamily::Dinov2 => (IMAGENET_MEAN, IMAGENET_STD),
        }
    }
}

/// CLIP's pixel mean (RGB, of `[0, 1]` values; OpenAI's preprocessing).
#[allow(clippy::excessive_precision)] // OpenAI's published digits, kept verbatim
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's pixel standard deviation (RGB).
#[allow(clippy::excessive_precision)] // OpenAI's published digits, kept verbatim
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// ImageNet's pixel mean (RGB), which DINOv2 expects.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's pixel standard deviation (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The shape of a Vision Transformer: a patch embedding, `layers` pre-norm encoder layers of
/// `heads`-head self-attention and an MLP, a final LayerNorm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VitConfig {
    /// Which family (layout, names, activation, normalisation).
    pub family: VitFamily,
    /// Width of the tokens = the feature dimension.
    pub hidden: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Attention heads (`hidden` is a multiple).
    pub heads: usize,
    /// Width of the MLP's hidden layer.
    pub mlp: usize,
    /// Side of the square patches, in pixels.
    pub patch: usize,
    /// Image side the position embeddings were made for: they hold `(image / patch)²` patch
    /// positions (+ 1 for the class token). Other sides interpolate them bicubically.
    pub image: usize,
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
    /// A Vision Transformer (CLIP vision tower or DINOv2).
    Vit(VitConfig),
}

impl Architecture {
    /// The family the architecture belongs to, for messages: `tiny-cnn`, `resnet` (ResNeXt
    /// included), `clip`, `dinov2`. [`backbone_families`] lists them all.
    pub fn family(&self) -> &'static str {
        match self {
            Architecture::TinyCnn => "tiny-cnn",
            Architecture::ResNet { .. } => "resnet",
            Architecture::Vit(v) => v.family.name(),
        }
    }

    /// The ViT's shape, or `None` for a CNN.
    pub fn vit(&self) -> Option<&VitConfig> {
        match self {
            Architecture::Vit(v) => Some(v),
            _ => None,
        }
    }

    /// Patch side of a ViT; `None` for CNNs, which take any image side.
    pub fn patch_size(&self) -> Option<usize> {
        self.vit().map(|v| v.patch)
    }

    /// The image side a ViT's position embeddings were made for (224 for CLIP, 336 for
    /// `clip-vit-l14-336`, 518 for DINOv2, whose Hugging Face preprocessing nonetheless crops
    /// 224); `None` for CNNs.
    pub fn native_image_size(&self) -> Option<usize> {
        self.vit().map(|v| v.image)
    }

    /// Whether square images of side `side` fit: any positive side for a CNN, a positive
    /// multiple of the patch side for a ViT.
    pub fn accepts_image_size(&self, side: usize) -> bool {
        side > 0 && self.patch_size().is_none_or(|p| side.is_multiple_of(p))
    }

    /// The pooling used when none is set: [`Pooling::Cls`] for ViTs; `None` for CNNs, which
    /// average-pool and take no pooling setting.
    pub fn default_pooling(&self) -> Option<Pooling> {
        self.vit().map(|_| Pooling::Cls)
    }

    /// Per-channel (RGB) mean and standard deviation of `[0, 1]` pixels the family expects
    /// ([`VitFamily::normalisation`]); `None` for CNNs (the data pipeline's own default).
    pub fn normalisation(&self) -> Option<([f32; 3], [f32; 3])> {
        self.vit().map(|v| v.family.normalisation())
    }
}

const fn resnet(bottleneck: bool, layers: [usize; 4], groups: usize, width: usize) -> Architecture {
    Architecture::ResNet {
        bottleneck,
        layers,
        groups,
        width_per_group: width,
    }
}

const fn clip(
    hidden: usize,
    layers: usize,
    heads: usize,
    patch: usize,
    image: usize,
) -> Architecture {
    Architecture::Vit(VitConfig {
        family: VitFamily::Clip,
        hidden,
        layers,
        heads,
        mlp: 4 * hidden,
        patch,
        image,
    })
}

const fn dinov2(hidden: usize, heads: usize) -> Architecture {
    Architecture::Vit(VitConfig {
        family: VitFamily::Dinov2,
        hidden,
        layers: 12,
        heads,
        mlp: 4 * hidden,
        patch: 14,
        image: 518,
    })
}

/// Every backbone geoexp builds (`model.backbone`), in the order shown to users.
///
/// The ViTs are Hugging Face's `openai/clip-vit-base-patch32`, `-base-patch16`,
/// `-large-patch14`, `-large-patch14-336` (also StreetCLIP's architecture) vision towers, and
/// `facebook/dinov2-small` / `-base`; their feature dimension is the hidden size (768, 768,
/// 1024, 1024, 384, 768).
pub const BACKBONES: [(&str, Architecture); 14] = [
    ("tiny-cnn", Architecture::TinyCnn),
    ("resnet18", resnet(false, [2, 2, 2, 2], 1, 64)),
    ("resnet34", resnet(false, [3, 4, 6, 3], 1, 64)),
    ("resnet50", resnet(true, [3, 4, 6, 3], 1, 64)),
    ("resnet101", resnet(true, [3, 4, 23, 3], 1, 64)),
    ("resnet152", resnet(true, [3, 8, 36, 3], 1, 64)),
    ("resnext50_32x4d", resnet(true, [3, 4, 6, 3], 32, 4)),
    ("resnext101_32x8d", resnet(true, [3, 4, 23, 3], 32, 8)),
    ("clip-vit-b32", clip(768, 12, 12, 32, 224)),
    ("clip-vit-b16", clip(768, 12, 12, 16, 224)),
    ("clip-vit-l14", clip(1024, 24, 16, 14, 224)),
    ("clip-vit-l14-336", clip(1024, 24, 16, 14, 336)),
    ("dinov2-s14", dinov2(384, 6)),
    ("dinov2-b14", dinov2(768, 12)),
];

/// The families of [`BACKBONES`] ([`Architecture::family`]), each once, in order.
pub fn backbone_families() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for (_, a) in &BACKBONES {
        if !out.contains(&a.family()) {
            out.push(a.family());
        }
    }
    out
}

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

/// How retrieval refinement searches and votes (`model.refine`; the method is
/// `infer::refine`'s).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefineSettings {
    /// How many of the most probable cells to search (≥ 1).
    pub top_cells: usize,
    /// How many of the most similar training locations each cell contributes (≥ 1).
    pub neighbours: usize,
    /// Length scale of the vote's distance kernel `exp(−d / temperature_km)`, in kilometres
    /// (positive and finite).
    pub temperature_km: f64,
    /// The refined guess may lie at most this far from the classifier's own guess, in
    /// kilometres (positive; `inf` for no limit).
    pub max_move_km: f64,
}

impl RefineSettings {
    /// The first setting that breaks its rule, as (name, rule, value).
    pub fn broken_rule(&self) -> Option<(&'static str, &'static str, String)> {
        if self.top_cells == 0 {
            return Some(("top_cells", "at least 1", self.top_cells.to_string()));
        }
        if self.neighbours == 0 {
            return Some(("neighbours", "at least 1", self.neighbours.to_string()));
        }
        if self.temperature_km <= 0.0 || !self.temperature_km.is_finite() {
            let value = self.temperature_km.to_string();
            return Some(("temperature_km", "positive and finite", value));
        }
        if self.max_move_km.is_nan() || self.max_move_km <= 0.0 {
            let value = self.max_move_km.to_string();
            return Some(("max_move_km", "positive (inf for no limit)", value));
        }
        None
    }
}

impl Default for RefineSettings {
    fn default() -> Self {
        RefineSettings {
            top_cells: 5,
            neighbours: 16,
            temperature_km: 25.0,
            max_move_km: 100.0,
        }
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
    fn vit_helpers_describe_patches_sizes_families_and_normalisation() {
        let arch = |n| architecture(n).expect(n);
        assert_eq!(
            backbone_families(),
            ["tiny-cnn", "resnet", "clip", "dinov2"]
        );
        assert_eq!(arch("resnext50_32x4d").family(), "resnet");
        assert_eq!(arch("clip-vit-l14-336").family(), "clip");
        for (name, patch, image, hidden) in [
            ("clip-vit-b32", 32, 224, 768),
            ("clip-vit-b16", 16, 224, 768),
            ("clip-vit-l14", 14, 224, 1024),
            ("clip-vit-l14-336", 14, 336, 1024),
            ("dinov2-s14", 14, 518, 384),
            ("dinov2-b14", 14, 518, 768),
        ] {
            let a = arch(name);
            assert_eq!(a.patch_size(), Some(patch), "{name}");
            assert_eq!(a.native_image_size(), Some(image), "{name}");
            assert_eq!(a.vit().map(|v| v.hidden), Some(hidden), "{name}");
            assert_eq!(a.default_pooling(), Some(Pooling::Cls), "{name}");
            assert!(a.accepts_image_size(image) && a.accepts_image_size(patch));
            assert!(!a.accepts_image_size(image + 1) && !a.accepts_image_size(0));
        }
        for cnn in ["tiny-cnn", "resnet50"] {
            let a = arch(cnn);
            assert_eq!(
                (a.patch_size(), a.native_image_size(), a.default_pooling()),
                (None, None, None)
            );
            assert_eq!(a.normalisation(), None);
            assert!(a.accepts_image_size(225));
        }
        assert_eq!(
            arch("clip-vit-b16").normalisation(),
            Some((CLIP_MEAN, CLIP_STD))
        );
        assert_eq!(
            arch("dinov2-b14").normalisation(),
            Some(([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
        );
    }

    #[test]
    fn poolings_read_as_users_write_them() {
        #[derive(Deserialize)]
        struct T {
            a: Pooling,
            b: Pooling,
        }
        let t: T = toml::from_str("a = \"cls\"\nb = \"mean\"").unwrap();
        assert_eq!((t.a, t.b), (Pooling::Cls, Pooling::Mean));
        assert!(toml::from_str::<T>("a = \"max\"\nb = \"mean\"").is_err());
        assert_eq!(serde_json::to_string(&Pooling::Mean).unwrap(), "\"mean\"");
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
