//! Backbones, four-view fusion and the head: everything between a batch of normalised images
//! and the logits (or regression outputs) a loss reads.
//!
//! | file            | owns                                                                      |
//! |-----------------|---------------------------------------------------------------------------|
//! | `backbone.rs`   | the [`Backbone`] trait, [`build_backbone`] / [`build_backbone_with`] (a name of `vocab::BACKBONES`, a pooling) |
//! | `tiny_cnn.rs`   | a small CNN fast enough for CPU runs and tests                            |
//! | `resnet.rs`     | ResNet 18/34/50/101/152, ResNeXt 50_32x4d / 101_32x8d, torchvision layout  |
//! | `vit.rs`        | ViTs, Hugging Face layout: CLIP vision towers (B/32, B/16, L/14, L/14-336), DINOv2 S/14, B/14; pooling, freezing |
//! | `bicubic.rs`    | torch's bicubic resize, for ViT position embeddings on other image sizes   |
//! | `batch_norm.rs` | BatchNorm (+ the ReLU after it) with fused CPU kernels                    |
//! | `conv.rs`       | conv as CPU custom ops: forward and both gradients on im2col + GEMM       |
//! | `conv_cpu.rs`   | the conv's CPU arithmetic: im2col, col2im, GEMMs over chunks of images    |
//! | `conv_bn.rs`    | conv + BatchNorm (+ ReLU) as one op on the CPU, forward and backward      |
//! | `maxpool.rs`    | the stem's 3×3 / stride 2 / padding 1 max-pool, with a backward pass      |
//! | `residual.rs`   | `relu(a + b)` ending each residual block, one op forward and backward     |
//! | `dtype.rs`      | the one f32/f64 dispatch every custom op above goes through               |
//! | `net.rs`        | [`GeoNet`]: backbone on all views as one batch, view fusion, the head      |
//! | `head.rs`       | the head: linear, or an MLP with seeded dropout                           |
//! | `build.rs`      | [`build_net`]: a [`GeoNet`] from a [`NetSpec`], seeded, pretrained weights |
//! | `init.rs`       | [`init_seeded`]: reproducible initialisation (candle's CPU RNG has no seed) |
//! | `weights/`      | [`load_pretrained`]: safetensors or PyTorch/Lightning checkpoints, prefix inferred |
//!
//! The custom kernels run on the CPU (their speed against PyTorch's is measured by
//! `benches/step.rs` and `benches/step_vs_torch.py`; figures in `benches/README.md`). Other
//! devices use candle's own ops, and so does `Kernels::Reference` (`train.kernels =
//! "reference"`), the fallback should a fast kernel ever be suspected. `kernel_tests.rs`
//! holds both to the same results; `tests.rs` covers the model as a whole, and both share
//! `test_support.rs`'s fixtures. `vit_tests.rs` holds the ViTs to PyTorch: tiny random
//! `transformers` models and their outputs in `tests/fixtures/vit/` (made by its
//! `make_fixtures.py`).
//!
//! Var names follow torchvision (`backbone.conv1.weight`, `backbone.layer1.0.downsample.1.running_var`,
//! `head.weight`), so pretrained files load without renaming and checkpoints are readable by torch.
//! ViTs follow Hugging Face (`backbone.encoder.layers.0.self_attn.q_proj.weight` for CLIP,
//! `backbone.encoder.layer.0.attention.attention.query.weight` for DINOv2), without the
//! `vision_model.` / `dinov2.` prefix checkpoints may have.
//!
//! Freezing: candle has no `requires_grad`. A backbone runs its first blocks with BatchNorm in eval
//! mode and `detach()`es their output, so backward stops there; the trainer optimises only
//! [`GeoNet::trainable_var_names`] (plus the head). BatchNorm running statistics are vars without
//! gradients, which optimisers skip. ViTs freeze the same way, block by block (embeddings, then
//! each encoder layer; the final norm trains with the last layer).
//!
//! This module must not read images, configs or datasets, nor know about losses or optimisers.

mod backbone;
mod batch_norm;
mod bicubic;
mod build;
mod conv;
mod conv_bn;
mod conv_cpu;
mod dtype;
mod head;
mod init;
mod linear_tail;
mod maxpool;
mod net;
mod residual;
mod resnet;
mod tiny_cnn;
mod vit;
mod weights;

pub use backbone::{Backbone, build_backbone, build_backbone_with};
pub use batch_norm::BatchNorm;
pub use build::{NetSpec, Pretrained, build_net, check_weights};
pub use conv::{Conv, conv2d};
pub use init::init_seeded;
pub use maxpool::{max_pool_3x3_s2_p1, max_pool_3x3_s2_p1_composed};
pub use net::GeoNet;
pub use resnet::{BlockKind, ResNet, ResNetConfig};
pub use tiny_cnn::TinyCnn;
pub use vit::Vit;
pub use weights::{IGNORED_TENSORS, load_pretrained};

use std::path::PathBuf;

use crate::vocab::{BACKBONES, Kernels, backbone_names};

/// Everything that can go wrong building, initialising or loading a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The backbone name is not one of `vocab::BACKBONES`.
    #[error("unknown backbone `{name}`; known backbones: {}", backbone_names().collect::<Vec<_>>().join(", "))]
    UnknownBackbone {
        /// The name asked for.
        name: String,
    },
    /// A pooling was set for a backbone that does not take one (a CNN).
    #[error(
        "pooling applies to ViT backbones only ({}); `{backbone}` is a {family} backbone, which average-pools",
        vit_families().join(", ")
    )]
    PoolingNotApplicable {
        /// The backbone name.
        backbone: String,
        /// Its family (`resnet`, `tiny-cnn`).
        family: &'static str,
    },
    /// A head needs at least one output.
    #[error("the head needs at least one output, got {outputs}")]
    NoOutputs {
        /// The number of outputs asked for.
        outputs: usize,
    },
    /// Building a part of the model failed (a var with a clashing shape, an allocation, ..).
    #[error("building {what}")]
    Build {
        /// Which part: `backbone resnet18`, `head`, ..
        what: String,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// Writing one var failed.
    #[error("setting tensor `{name}`")]
    SetVar {
        /// The var's full name in the VarMap.
        name: String,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// A weights file could not be read or parsed, or one of its tensors could not be read.
    #[error("reading weights file {}", path.display())]
    ReadWeights {
        /// The file.
        path: PathBuf,
        /// candle's error (I/O, safetensors, zip, pickle, an unsupported dtype), with the tensor's
        /// name as context where one was being read.
        #[source]
        source: candle_core::Error,
    },
    /// The weights file is in none of the formats read (safetensors, PyTorch zip checkpoints).
    #[error(
        "weights file {} is neither safetensors nor a PyTorch checkpoint: {what}",
        path.display()
    )]
    UnknownWeightsFormat {
        /// The file.
        path: PathBuf,
        /// What it looks like instead: its first bytes, a Git LFS pointer, a zip without
        /// `data.pkl`, a plain pickle, ..
        what: String,
    },
    /// The weights file is in PyTorch's legacy (pre-1.6, non-zip) serialization.
    #[error(
        "weights file {} is in PyTorch's legacy (pre-1.6, non-zip) format, which is not read here; \
         re-save it with torch >= 1.6: `torch.save(torch.load(\"old.pth\"), \"new.pth\")`",
        path.display()
    )]
    LegacyTorchFormat {
        /// The file.
        path: PathBuf,
    },
    /// The PyTorch file holds no state dict: a whole pickled module, a list, a dict of other
    /// values, ..
    #[error(
        "weights file {} holds {found}, not a state dict; \
         save the weights with `torch.save(model.state_dict(), path)`",
        path.display()
    )]
    NotAStateDict {
        /// The file.
        path: PathBuf,
        /// What it holds instead.
        found: String,
    },
    /// `model.weights_prefix` selects no tensor the backbone needs, where another prefix would.
    #[error(
        "weights file {}: `model.weights_prefix = \"{prefix}\"` selects {under} tensor(s), none \
         of them one the backbone needs; its names fit the prefix `{suggestion}` (set \
         `model.weights_prefix = \"{suggestion}\"`, or leave it unset to infer it)",
        path.display()
    )]
    PrefixMismatch {
        /// The file.
        path: PathBuf,
        /// The prefix given (normalised: empty, or ending in `.`).
        prefix: String,
        /// How many of the file's tensors start with it.
        under: usize,
        /// The prefix inferred from the names.
        suggestion: String,
    },
    /// Not one tensor the backbone needs is in the file, under any prefix: weights for another
    /// kind of model.
    #[error("{}", wrong_family(path, guess.as_deref(), seen, expected.as_deref(), examples))]
    WrongFamily {
        /// The file.
        path: PathBuf,
        /// What the file holds, guessed from marker names (`a CLIP vision tower`), if known.
        guess: Option<String>,
        /// File tensor names shown: the markers behind `guess`, or the file's names.
        seen: Box<[String]>,
        /// What the backbone is, guessed the same way from its var names (`torchvision ResNet`).
        expected: Option<String>,
        /// A few names the backbone needs (relative to its var prefix).
        examples: Box<[String]>,
    },
    /// The weights file lacks tensors the model needs.
    #[error(
        "weights file {} lacks {} tensor(s) the model needs: {} ({prefix})",
        path.display(), names.len(), list(names)
    )]
    MissingTensors {
        /// The file.
        path: PathBuf,
        /// Names as they would appear in the file (with the file's prefix, without the model's).
        names: Vec<String>,
        /// The part of the file read (boxed: keeps `ModelError` small).
        prefix: Box<FilePrefix>,
    },
    /// A tensor in the weights file has another shape than the model's var.
    #[error(
        "tensor `{name}` in {} has shape {found:?}, the model expects {expected:?} ({prefix})",
        path.display()
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// Name as in the file.
        name: String,
        /// The var's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
        /// The part of the file read (boxed: keeps `ModelError` small).
        prefix: Box<FilePrefix>,
    },
    /// The weights file has tensors the model does not (usually: another architecture).
    #[error(
        "weights file {} has {} tensor(s) the model does not (another architecture?): {} ({prefix})",
        path.display(), names.len(), list(names)
    )]
    UnexpectedTensors {
        /// The file.
        path: PathBuf,
        /// Names as in the file.
        names: Vec<String>,
        /// The part of the file read (boxed: keeps `ModelError` small).
        prefix: Box<FilePrefix>,
    },
}

/// The families of ViT backbones (`clip`, `dinov2`), for messages.
fn vit_families() -> Vec<&'static str> {
    let mut out = Vec::new();
    for (_, a) in &BACKBONES {
        if a.vit().is_some() && !out.contains(&a.family()) {
            out.push(a.family());
        }
    }
    out
}

/// Which part of a weights file was matched to the backbone's vars: the tensors whose names
/// start with `name`. Shown in the errors about those tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePrefix {
    /// The prefix: empty, or ending in `.`.
    pub name: String,
    /// Whether it was inferred from the names (rather than set by `model.weights_prefix`).
    pub inferred: bool,
}

impl std::fmt::Display for FilePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.name.as_str(), self.inferred) {
            ("", true) => write!(
                f,
                "names read as they are, no prefix inferred; `model.weights_prefix` sets one"
            ),
            (p, true) => write!(
                f,
                "tensors under the prefix `{p}`, inferred from the names; \
                 `model.weights_prefix` sets another"
            ),
            ("", false) => write!(f, "names read as they are: `model.weights_prefix` is empty"),
            (p, false) => write!(
                f,
                "tensors under the prefix `{p}` set by `model.weights_prefix`"
            ),
        }
    }
}

/// [`ModelError::WrongFamily`]'s message.
fn wrong_family(
    path: &std::path::Path,
    guess: Option<&str>,
    seen: &[String],
    expected: Option<&str>,
    examples: &[String],
) -> String {
    let file = match guess {
        Some(g) => format!(
            "weights file {} looks like {g} ({})",
            path.display(),
            list(seen)
        ),
        None => format!(
            "weights file {} holds none of the tensors the model's backbone needs, under any \
             prefix (its names: {})",
            path.display(),
            list(seen)
        ),
    };
    let model = match (expected, examples.is_empty()) {
        (_, true) => "the model has no backbone vars to load".to_string(),
        (Some(e), false) => format!(
            "the model's backbone expects {e} names such as {}",
            list(examples)
        ),
        (None, false) => format!(
            "the model's backbone expects names such as {}",
            list(examples)
        ),
    };
    match guess {
        Some(_) => format!("{file}, but {model}"),
        None => format!("{file}; {model}"),
    }
}

/// Joins names for an error message, cut after a few so a wrong architecture does not print
/// hundreds of lines.
fn list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(", and {} more", names.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vit_tests;
