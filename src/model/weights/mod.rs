//! Pretrained weights: a local file loaded into the backbone's vars. Downloading is someone
//! else's job; this only reads a path.
//!
//! The format is told by the file's first bytes, not its name ([`formats`]): safetensors, or a
//! PyTorch zip checkpoint (`torch.save`, torch ≥ 1.6: torchvision `.pth` state dicts, Hugging
//! Face `pytorch_model.bin`, DataParallel `.pt`, Lightning `.ckpt` with the state dict under
//! `state_dict`), read with candle's pickle reader. Legacy (pre-1.6) torch files, whole pickled
//! modules and other pickles are errors saying what the file holds and how to re-save it.
//!
//! The backbone's vars are matched to the file's tensors under a prefix ([`prefix`]): the one
//! given (`model.weights_prefix`), or else the one that makes the most var names appear
//! (`""` for torchvision, `backbone.` for a Lightning module's backbone, `module.` for
//! DataParallel, `vision_model.` for a Hugging Face CLIP, `dinov2.` for DINOv2). Tensors
//! outside the prefix are ignored (a CLIP's text tower, a Lightning module's head); under it,
//! every one must be a var of the same shape, bar [`IGNORED_TENSORS`].
//!
//! | file         | owns                                                                  |
//! |--------------|-----------------------------------------------------------------------|
//! | `mod.rs`     | [`load_pretrained`]: matching names and shapes, then setting the vars  |
//! | `formats.rs` | telling formats apart, listing a file's tensors, reading their data    |
//! | `prefix.rs`  | the prefix: normalised, inferred; guessing a file's model family       |

mod formats;
mod prefix;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use candle_core::Var;
use candle_nn::VarMap;

use super::{FilePrefix, ModelError};

/// File tensors (named relative to the file's prefix) that may be left unused, as patterns
/// `start*`, `*end` or a whole name: torchvision's ImageNet classifier (`fc.*`), BatchNorm's
/// step counters (`*.num_batches_tracked`), and what Hugging Face vision models hold beyond
/// the encoder (`embeddings.position_ids`, DINOv2's `embeddings.mask_token` for masked
/// training, a ViT's `pooler.*`). A var of one of these names still loads from the file.
pub const IGNORED_TENSORS: [&str; 5] = [
    "fc.*",
    "*.num_batches_tracked",
    "embeddings.position_ids",
    "embeddings.mask_token",
    "pooler.*",
];

/// Whether `name` (relative to the file's prefix) is one of [`IGNORED_TENSORS`].
fn ignored(name: &str) -> bool {
    IGNORED_TENSORS.iter().any(|p| {
        if let Some(end) = p.strip_prefix('*') {
            name.ends_with(end)
        } else if let Some(start) = p.strip_suffix('*') {
            name.starts_with(start)
        } else {
            name == *p
        }
    })
}

/// Loads the weights file `path` into the vars of `varmap` whose names start with
/// `var_prefix` (e.g. `"backbone."`). Returns how many tensors were loaded.
///
/// `file_prefix` is what the backbone's tensors are named under in the file
/// (`model.weights_prefix`; `""` for none, a missing trailing `.` is added); `None` infers it:
/// each file name that is a var name (relative to `var_prefix`), or ends with `.` and one,
/// proposes what comes before, and the prefix proposed for the most var names wins (ties: the
/// shortest).
///
/// Under that prefix, every var must be in the file with the exact shape, and the file must
/// hold nothing else but [`IGNORED_TENSORS`]; tensors outside it are ignored. Values are
/// converted to each var's dtype. The whole file is checked on the CPU before any var is set:
/// on error, every var keeps its value.
///
/// # Errors
/// [`ModelError::ReadWeights`], [`ModelError::UnknownWeightsFormat`],
/// [`ModelError::LegacyTorchFormat`] or [`ModelError::NotAStateDict`] when the file cannot be
/// read as a state dict; [`ModelError::WrongFamily`] when no var is in it under any prefix;
/// [`ModelError::PrefixMismatch`] when only another prefix than `file_prefix` fits;
/// [`ModelError::MissingTensors`], [`ModelError::UnexpectedTensors`],
/// [`ModelError::ShapeMismatch`] naming the tensors that do not fit.
pub fn load_pretrained(
    varmap: &VarMap,
    path: &Path,
    var_prefix: &str,
    file_prefix: Option<&str>,
) -> Result<usize, ModelError> {
    let mut file = formats::WeightsFile::open(path)?;
    let vars = varmap
        .data()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // By name relative to `var_prefix`: the full name and the var.
    let wanted: BTreeMap<&str, (&str, &Var)> = vars
        .iter()
        .filter_map(|(full, var)| {
            full.strip_prefix(var_prefix)
                .map(|rel| (rel, (full.as_str(), var)))
        })
        .collect();
    let shapes: BTreeMap<&str, &[usize]> = wanted
        .iter()
        .map(|(rel, (_, var))| (*rel, var.dims()))
        .collect();
    let matched = match_names(&file, path, &shapes, file_prefix)?;

    // Everything read and converted on the CPU before the first var is set.
    let mut values = Vec::with_capacity(wanted.len());
    for (rel, (full, var)) in &wanted {
        let name = &matched[*rel];
        let t = file.load(name)?;
        let t = t
            .to_dtype(var.dtype())
            .map_err(|e| ModelError::ReadWeights {
                path: path.to_path_buf(),
                source: e.context(format!("converting tensor `{name}` to {:?}", var.dtype())),
            })?;
        values.push((*full, *var, t));
    }
    for (full, var, t) in values {
        t.to_device(var.device())
            .and_then(|t| var.set(&t))
            .map_err(|e| ModelError::SetVar {
                name: full.to_string(),
                source: e,
            })?;
    }
    Ok(wanted.len())
}

/// Checks, without reading any tensor's data, that the weights file `path` fits vars of
/// these names (relative to the backbone) and shapes, exactly as [`load_pretrained`] would;
/// returns how many tensors it would load.
///
/// # Errors
/// As [`load_pretrained`].
pub fn check_pretrained(
    path: &Path,
    vars: &[(String, Vec<usize>)],
    file_prefix: Option<&str>,
) -> Result<usize, ModelError> {
    let file = formats::WeightsFile::open(path)?;
    let shapes: BTreeMap<&str, &[usize]> = vars
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    Ok(match_names(&file, path, &shapes, file_prefix)?.len())
}

/// The file tensor for each var (by name relative to the backbone, with its shape): under
/// the given or inferred prefix, every var present with its shape and nothing else but
/// [`IGNORED_TENSORS`].
fn match_names(
    file: &formats::WeightsFile,
    path: &Path,
    wanted: &BTreeMap<&str, &[usize]>,
    file_prefix: Option<&str>,
) -> Result<BTreeMap<String, String>, ModelError> {
    let wanted_names: BTreeSet<&str> = wanted.keys().copied().collect();
    let owned: Vec<String> = file.names().map(String::from).collect();
    let names: Vec<&str> = owned.iter().map(String::as_str).collect();
    let cover = prefix::coverage(names.iter().copied(), &wanted_names);
    let wrong_family = || {
        let (guess, seen) = prefix::guess_file(&names);
        let (expected, examples) = prefix::guess_model(&wanted_names);
        ModelError::WrongFamily {
            path: path.to_path_buf(),
            guess,
            seen: seen.into(),
            expected,
            examples: examples.into(),
        }
    };
    let (prefix, inferred) = match file_prefix.map(prefix::normalise) {
        Some(given) if cover.get(given.as_str()).copied().unwrap_or(0) > 0 => (given, false),
        Some(given) => {
            return Err(match prefix::best(&cover) {
                Some(suggestion) => ModelError::PrefixMismatch {
                    path: path.to_path_buf(),
                    under: names.iter().filter(|n| n.starts_with(&given)).count(),
                    prefix: given,
                    suggestion: suggestion.to_string(),
                },
                None => wrong_family(),
            });
        }
        None => match prefix::best(&cover) {
            Some(p) => (p.to_string(), true),
            None => return Err(wrong_family()),
        },
    };

    let used = FilePrefix {
        name: prefix,
        inferred,
    };
    let prefix = used.name.as_str();

    // The file's tensors under the prefix, by name relative to it.
    let under: BTreeMap<&str, &str> = names
        .iter()
        .filter_map(|n| n.strip_prefix(prefix).map(|rel| (rel, *n)))
        .collect();
    let missing: Vec<String> = wanted_names
        .iter()
        .filter(|rel| !under.contains_key(*rel))
        .map(|rel| format!("{prefix}{rel}"))
        .collect();
    if !missing.is_empty() {
        return Err(ModelError::MissingTensors {
            path: path.to_path_buf(),
            names: missing,
            prefix: Box::new(used.clone()),
        });
    }
    let unexpected: Vec<String> = under
        .iter()
        .filter(|(rel, _)| !wanted.contains_key(*rel) && !ignored(rel))
        .map(|(_, full)| full.to_string())
        .collect();
    if !unexpected.is_empty() {
        return Err(ModelError::UnexpectedTensors {
            path: path.to_path_buf(),
            names: unexpected,
            prefix: Box::new(used.clone()),
        });
    }
    for (rel, expected) in wanted {
        let found = file.shape(under[rel])?;
        if *expected != found {
            return Err(ModelError::ShapeMismatch {
                path: path.to_path_buf(),
                name: under[rel].to_string(),
                expected: expected.to_vec(),
                found: found.to_vec(),
                prefix: Box::new(used.clone()),
            });
        }
    }
    Ok(wanted
        .keys()
        .map(|rel| (rel.to_string(), under[rel].to_string()))
        .collect())
}

#[cfg(test)]
mod tests;
