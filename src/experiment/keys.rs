//! Every key an experiment file may set: one table that drives unknown-key errors, "did you
//! mean" suggestions, provenance, and the README's reference (a test keeps them in sync).
//!
//! Defaults are not repeated here: they come from `Experiment::default()`.

use serde_json::Value;

use super::schema::{Experiment, SyntheticConfig};

/// One settable key.
#[derive(Clone, Copy, Debug)]
pub struct KeyDoc {
    /// Dotted key path.
    pub path: &'static str,
    /// Type, as shown to users.
    pub ty: &'static str,
    /// One-line meaning.
    pub doc: &'static str,
}

macro_rules! keys {
    ($($path:literal : $ty:literal => $doc:literal),* $(,)?) => {
        /// All settable keys, in reference order.
        pub const KEYS: &[KeyDoc] = &[$(KeyDoc { path: $path, ty: $ty, doc: $doc }),*];
    };
}

keys! {
    "name": "string" => "Experiment name (default: the experiment file's name without `.toml`); runs go to `runs/<name>/<run-id>/`. Letters, digits, `-`, `_`, `.`; not `sweeps`.",
    "seed": "integer" => "Seed for every random choice (split order, initialisation, shuffling).",
    "extends": "path" => "Base experiment file (relative to this file) whose values this file overrides; chains allowed.",
    "dataset.dirs": "list of paths" => "Dataset directories in the real layout (`data.csv` + `images/<uuid>/{0,90,180,270}.jpg`), relative to the file that sets them; merged in order.",
    "dataset.synthetic.locations": "integer" => "Generate a synthetic dataset of this many locations instead of reading `dirs`.",
    "dataset.synthetic.image_size": "integer" => "Side of each synthetic view in pixels.",
    "dataset.synthetic.seed": "integer" => "Seed of the synthetic generator.",
    "dataset.split.train": "float" => "Fraction of locations for training.",
    "dataset.split.val": "float" => "Fraction for validation (model selection).",
    "dataset.split.test": "float" => "Fraction for the final test; the three must sum to 1.",
    "dataset.fraction": "float" => "Fraction of all locations to use, in (0, 1]; subsampled before splitting.",
    "dataset.skip_bad_images": "bool" => "Drop locations with an unreadable or corrupt view (counted in the manifest) instead of failing.",
    "dataset.max_image_megapixels": "integer" => "Views declaring more pixels than this many million are bad views, refused from their header before decoding (a decompression bomb); unset: 64.",
    "classes.boundary": "string" => "ISO 3166 alpha-2 code of an embedded Natural Earth country (`HR`), or a GeoJSON file path.",
    "classes.kind": "grid | quadtree | clusters" => "How the country is cut into cells: squares of `spacing`, a quadtree that splits the squares holding many train locations, or k-means clusters of the train locations with Voronoi cells (see Geocells). Unset: `grid`.",
    "classes.spacing": "float" => "Grid cell side in degrees (0.7 → 36 cells on Croatia, 0.5 → 58, 0.3 → 131), the quadtree's root squares; at most 1,000,000 grid squares over the boundary's extent. Not used by `clusters`.",
    "classes.max_locations": "integer" => "Quadtree: a square with more train locations than this is split in four (unset: 120).",
    "classes.min_spacing": "float" => "Quadtree: splits stop before squares smaller than this side in degrees, at most `spacing` (unset: `spacing` / 8).",
    "classes.min_locations": "integer" => "Quadtree and clusters: cells with fewer train locations are not classes; their locations get the nearest class (unset: 1).",
    "classes.cells": "integer" => "Clusters: how many k-means clusters (seeded by `seed`), at most the number of train locations (unset: 60).",
    "classes.centroid": "geometric | clipped | weighted" => "Point that stands for a class: square centre, centre moved onto land, or mean of the cell's train locations.",
    "classes.crs": "string" => "Projected CRS (`EPSG:NNNN` or a `+proj` string) for regression targets and planar maths.",
    "model.task": "classification | regression" => "Predict a cell's class, or min-max scaled projected coordinates.",
    "model.backbone": "string" => "tiny-cnn; resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x8d (torchvision); clip-vit-b32, clip-vit-b16, clip-vit-l14, clip-vit-l14-336 (OpenAI CLIP vision towers); dinov2-s14, dinov2-b14.",
    "model.weights": "path" => "Pretrained backbone weights, relative to the file that sets it: safetensors, a PyTorch `.pth`/`.pt`/`.bin` state dict or a Lightning `.ckpt` (read by content, not extension).",
    "model.weights_prefix": "string" => "Prefix of the backbone's tensors in the weights file (`backbone.`, `module.`, `vision_model.`); unset: inferred from the names.",
    "model.pooling": "cls | mean" => "How a ViT's tokens become one vector per view: the class token (Hugging Face's pooler output), or the mean of the patch tokens after the final norm (PIGEON's). Unset: `cls`; CNNs always average-pool.",
    "model.fusion": "concat | mean" => "How the four views' features are combined: concatenated in view order 0, 90, 180, 270, or averaged.",
    "model.head": "\"linear\" | table" => "The head on the fused features: one linear layer, or `{ kind = \"mlp\", hidden = [1024], dropout = 0.1 }` (hidden linear + ReLU + dropout layers, then the output layer).",
    "model.feature_dtype": "f32 | f16" => "How the features stage stores embeddings (only used when the backbone never trains; see Frozen backbones).",
    "model.centroid": "geometric | clipped | weighted" => "Centroids a classification prediction averages, weighted by probability (default: `classes.centroid`).",
    "model.top_k": "integer" => "Average only the k most probable classes, renormalised (0: all classes).",
    "model.refine": "table" => "Retrieval refinement (classification): `{ top_cells = 5, neighbours = 16, temperature_km = 25.0, max_move_km = 100.0 }` (any key may be left out); the guess moves onto training locations in the top cells whose embeddings resemble the views (see Retrieval refinement). Unset: off.",
    "train.image_size": "integer" => "Side of the square network input in pixels.",
    "train.batch_size": "integer" => "Locations per batch (each has four views).",
    "train.epochs": "integer" => "Number of epochs.",
    "train.optimizer": "adam | adamw | sgd" => "Optimiser.",
    "train.lr": "float" => "Peak learning rate.",
    "train.weight_decay": "float" => "Weight decay.",
    "train.scheduler.kind": "constant | step | cosine | onecycle | plateau" => "Learning-rate schedule.",
    "train.scheduler.factor": "float" => "Decay multiplier (`step`, `plateau`).",
    "train.scheduler.patience": "integer" => "Epochs without improvement before decaying (`plateau`).",
    "train.scheduler.step_size": "integer" => "Epochs between decays (`step`).",
    "train.scheduler.min_lr": "float" => "Learning-rate floor (`cosine`, `plateau`).",
    "train.scheduler.pct_start": "float" => "Fraction of training spent warming up (`onecycle`, whose peak is `train.lr`).",
    "train.scheduler.warmup_epochs": "integer" => "Epochs of linear warm-up before the cosine decay (`cosine`).",
    "train.unfreeze_epoch": "integer" => "First epoch (0-based) in which the backbone trains; before it only the head does and batch-norm statistics stay fixed.",
    "train.unfreeze": "\"all\" | \"none\" | integer" => "What trains from `unfreeze_epoch` on: the whole backbone, nothing (a frozen backbone), or its last N blocks.",
    "train.backbone_lr": "float" => "Learning rate of the unfrozen backbone (default: `train.lr`); the schedule scales it like `lr`.",
    "train.momentum": "float" => "Momentum (`sgd`).",
    "train.label_smoothing": "float" => "Label smoothing ε of the cross entropy, in [0, 1) (classification).",
    "train.haversine_tau_km": "float" => "PIGEON-style haversine label smoothing: target ∝ exp(−(d(cᵢ, x) − d(c_true, x))/τ) with τ in km (0: off; classification).",
    "train.augment.crop_scale": "float" => "Random resized crop keeping at least this fraction of the area, in (0, 1] (1: off). Training only.",
    "train.augment.color_jitter": "float" => "Brightness, contrast and saturation vary by up to ± this fraction (0: off). Training only.",
    "train.augment.noise_std": "float" => "Standard deviation of Gaussian pixel noise on the 0..1 scale (0: off). Training only.",
    "train.device": "string" => "`cpu`, `cuda`, `cuda:N` or `auto`.",
    "train.kernels": "fast | reference" => "CPU kernels of conv, batch-norm and max-pool: geoexp's own (several times faster to train) or plain candle ops, the fallback. Results differ by float rounding, so it is part of the train stage's key.",
    "train.monitor": "string" => "Metric (`val/<name>` or `train/<name>`) that picks the best checkpoint and drives `plateau`.",
    "train.monitor_mode": "auto | min | max" => "Whether the monitor improves downwards or upwards; `auto` goes by its name (accuracies and scores up).",
    "train.precompute_features": "bool" => "When the backbone never trains and no augmentation is on, compute its embeddings once (the features stage) and train only the head on them; `false` runs the backbone every step (the same results up to float rounding, much slower).",
    "sweep": "table" => "What `geoexp sweep` runs: `\"key.path\" = [values...]`, plus `zip`, `exclude`, `seeds`; `method = \"random\"` with `trials`, `seed` and distributions; `early_stop` for successive halving (see Sweeps).",
}

/// The documented key at `path`, if any.
pub fn find(path: &str) -> Option<&'static KeyDoc> {
    KEYS.iter().find(|k| k.path == path)
}

/// Whether `path` names a table that contains keys (`train`, `train.scheduler`).
pub fn is_table(path: &str) -> bool {
    KEYS.iter().any(|k| {
        k.path.len() > path.len()
            && k.path.starts_with(path)
            && k.path.as_bytes()[path.len()] == b'.'
    })
}

/// Whether `path` is a settable value (not a table); `sweep` counts as one.
pub fn is_leaf(path: &str) -> bool {
    find(path).is_some() && !is_table(path)
}

/// The candidate most similar to `word` (Jaro-Winkler ≥ 0.8), judged on `name(candidate)`.
pub fn closest<'a, T: Copy>(
    word: &str,
    candidates: impl IntoIterator<Item = T>,
    name: impl Fn(T) -> &'a str,
) -> Option<T> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name(c), word), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The closest known key to a mistyped `path`: first among its siblings, then any key
/// with the same last segment (a key set in the wrong section).
pub fn suggest(path: &str) -> Option<&'static str> {
    let (parent, last) = path.rsplit_once('.').unwrap_or(("", path));
    let prefix_len = if parent.is_empty() {
        0
    } else {
        parent.len() + 1
    };
    let siblings = KEYS.iter().filter_map(|k| {
        let p = k.path;
        let under_parent = parent.is_empty()
            || (p.starts_with(parent) && p.as_bytes().get(parent.len()) == Some(&b'.'));
        if !under_parent {
            return None;
        }
        let rest = &p[prefix_len..];
        Some(&p[..prefix_len + rest.find('.').unwrap_or(rest.len())])
    });
    closest(last, siblings, |s| &s[prefix_len..]).or_else(|| {
        KEYS.iter()
            .map(|k| k.path)
            .find(|p| p.rsplit('.').next() == Some(last) && *p != path)
    })
}

/// The default value of a key as shown in the reference: from `Experiment::default()`,
/// or, for keys inside an optional table, the value used once that table is set.
pub fn default_text(path: &str) -> String {
    let mut filled = Experiment::default();
    let value = serde_json::to_value(&filled).unwrap_or(Value::Null);
    if let Some(v) = lookup(&value, path).filter(|v| !v.is_null()) {
        return render(v);
    }
    filled.dataset.synthetic = Some(SyntheticConfig::default());
    let value = serde_json::to_value(&filled).unwrap_or(Value::Null);
    match lookup(&value, path).filter(|v| !v.is_null()) {
        Some(v) if !path.starts_with("dataset.synthetic.") => render(v),
        Some(v) => format!("{} (when `synthetic` is set)", render(v)),
        None => "(unset)".to_owned(),
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

/// The value at a dotted `path` inside a JSON object.
pub fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(value, |v, segment| v.as_object()?.get(segment))
}

/// The experiment-file reference as a Markdown table (embedded in README.md).
pub fn reference_markdown() -> String {
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for k in KEYS {
        let text = default_text(k.path);
        let (value, note) = text.split_at(text.find(" (when").unwrap_or(text.len()));
        let default = if k.path == "name" {
            "the file's name".to_owned()
        } else if value == "(unset)" {
            "unset".to_owned()
        } else {
            format!("`{value}`{note}")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            k.path,
            k.ty.replace('|', "\\|"),
            default,
            k.doc.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_filled_experiment_is_documented_and_vice_versa() {
        let mut e = Experiment::default();
        e.dataset.synthetic = Some(SyntheticConfig::default());
        e.model.weights = Some("w.safetensors".into());
        e.model.weights_prefix = Some("backbone.".into());
        e.model.pooling = Some(crate::vocab::Pooling::Mean);
        e.train.precompute_features = false;
        e.model.refine = Some(crate::vocab::RefineSettings::default());
        e.model.feature_dtype = crate::vocab::FeatureDtype::F16;
        e.model.head = crate::vocab::Head::Mlp {
            hidden: vec![8],
            dropout: 0.0,
        };
        e.dataset.max_image_megapixels = Some(64);
        e.classes.kind = super::super::schema::CellKind::Quadtree;
        e.classes.max_locations = Some(120);
        e.classes.min_spacing = Some(0.05);
        e.classes.min_locations = Some(5);
        e.classes.cells = Some(60);
        e.extends = Some("base.toml".into());
        let mut leaves = Vec::new();
        fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
            match v.as_object() {
                // The head is one key whose value may be a table.
                Some(map) if !matches!(prefix, "sweep" | "model.head" | "model.refine") => {
                    for (k, v) in map {
                        let p = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&p, v, out);
                    }
                }
                _ => out.push(prefix.to_owned()),
            }
        }
        walk("", &serde_json::to_value(&e).unwrap(), &mut leaves);
        leaves.push("extends".into()); // never serialized: resolved while loading
        leaves.sort();
        let mut documented: Vec<String> = KEYS.iter().map(|k| k.path.to_owned()).collect();
        documented.sort();
        assert_eq!(leaves, documented);
    }

    #[test]
    fn a_typo_suggests_the_sibling_key() {
        assert_eq!(suggest("classes.spcing"), Some("classes.spacing"));
        assert_eq!(suggest("train.lrr"), Some("train.lr"));
        assert_eq!(suggest("trian"), Some("train"));
    }

    #[test]
    fn a_key_in_the_wrong_section_suggests_the_right_one() {
        assert_eq!(suggest("train.spacing"), Some("classes.spacing"));
    }

    #[test]
    fn tables_and_leaves_are_told_apart() {
        assert!(is_table("train"));
        assert!(is_table("train.scheduler"));
        assert!(!is_table("train.lr"));
        assert!(is_leaf("train.lr"));
        assert!(is_leaf("sweep"));
        assert!(!is_leaf("train"));
    }

    #[test]
    fn the_readme_reference_matches_the_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (start_tag, end_tag) = ("<!-- keys:start -->\n", "<!-- keys:end -->");
        let start = readme
            .find(start_tag)
            .expect("README has the keys:start marker")
            + start_tag.len();
        let end = readme
            .find(end_tag)
            .expect("README has the keys:end marker");
        let expected = reference_markdown();
        if readme[start..end] != expected {
            if std::env::var_os("GEOEXP_BLESS").is_some() {
                let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
                std::fs::write(path, updated).unwrap();
            } else {
                panic!(
                    "README.md's experiment-file reference is out of date; regenerate it with\n  GEOEXP_BLESS=1 cargo test --lib readme_reference\n--- expected\n{expected}"
                );
            }
        }
    }

    #[test]
    fn defaults_come_from_the_schema() {
        assert_eq!(default_text("classes.spacing"), "0.5");
        assert_eq!(default_text("classes.boundary"), "\"HR\"");
        assert!(default_text("dataset.synthetic.locations").starts_with("1500"));
        assert_eq!(default_text("model.weights"), "(unset)");
    }
}
