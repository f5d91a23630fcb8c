//! Pretrained weights: a local safetensors file with torchvision/timm tensor names loaded into the
//! backbone's vars. Downloading is someone else's job; this only reads a path.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::ModelError;

/// Loads `path` (safetensors, torchvision/timm layout: no `backbone.` prefix) into the vars of
/// `varmap` whose names start with `prefix` (e.g. `"backbone."`). Returns how many tensors were
/// loaded.
///
/// `fc.*` (the ImageNet classifier) and `*.num_batches_tracked` are ignored. Every var under
/// `prefix` must be in the file with the exact shape, and the file must hold nothing else; a
/// mismatch is an error naming the tensors (extra or missing layers usually mean the file is
/// for another architecture). Nothing is written unless the whole file matches.
pub fn load_pretrained(varmap: &VarMap, path: &Path, prefix: &str) -> Result<usize, ModelError> {
    let read_err = |e| ModelError::ReadWeights {
        path: path.to_path_buf(),
        source: e,
    };
    // On the CPU first: the file is checked completely before anything reaches the device.
    let mut file: HashMap<String, Tensor> =
        candle_core::safetensors::load(path, &Device::Cpu).map_err(read_err)?;
    file.retain(|name, _| !name.starts_with("fc.") && !name.ends_with(".num_batches_tracked"));

    let vars = varmap
        .data()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let wanted: BTreeSet<(&str, &String)> = vars
        .keys()
        .filter_map(|full| full.strip_prefix(prefix).map(|rel| (rel, full)))
        .collect();

    let missing: Vec<String> = wanted
        .iter()
        .filter(|(rel, _)| !file.contains_key(*rel))
        .map(|(rel, _)| rel.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(ModelError::MissingTensors {
            path: path.to_path_buf(),
            names: missing,
        });
    }
    let known: BTreeSet<&str> = wanted.iter().map(|(rel, _)| *rel).collect();
    let mut unexpected: Vec<String> = file
        .keys()
        .filter(|name| !known.contains(name.as_str()))
        .cloned()
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(ModelError::UnexpectedTensors {
            path: path.to_path_buf(),
            names: unexpected,
        });
    }
    for (rel, full) in &wanted {
        let (expected, found) = (vars[*full].dims(), file[*rel].dims());
        if expected != found {
            return Err(ModelError::ShapeMismatch {
                path: path.to_path_buf(),
                name: rel.to_string(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            });
        }
    }
    for (rel, full) in &wanted {
        let var = &vars[*full];
        let set = || -> candle_core::Result<()> {
            let t = file[*rel].to_dtype(var.dtype())?.to_device(var.device())?;
            var.set(&t)
        };
        set().map_err(|e| ModelError::SetVar {
            name: full.to_string(),
            source: e,
        })?;
    }
    Ok(wanted.len())
}
