//! Checkpoints: one safetensors file holding the model, the optimiser moments and — in
//! its `__metadata__` — everything else a resume or an inference needs, plus a TOML
//! sidecar with the same metadata for people and tools.
//!
//! Tensor names: model variables as in the network (`backbone.conv1.weight`,
//! `backbone.bn1.running_mean`, `head.weight`, ...), optimiser state under `optim.`.
//! The metadata key [`META_KEY`] holds [`CheckpointMeta`] as JSON. Both files are written
//! atomically (temporary file, fsync, rename), the tensors first, so a kill leaves the
//! previous checkpoint whole.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::graph::write_atomic;
use crate::images::ChannelStats;
use crate::model::NetSpec;
use crate::vocab::{Fusion, Head, Kernels, Pooling, Task};

use super::optimizer::Optimizer;
use super::policy::Slot;
use super::scheduler::SchedulerState;

/// The metadata entry holding [`CheckpointMeta`] as JSON.
pub const META_KEY: &str = "geoexp";
/// Prefix of optimiser-state tensors.
pub const OPTIM_PREFIX: &str = super::optimizer::STATE_PREFIX;

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{path}: {message}")]
    File {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A variable of the model has no tensor (or a different shape) in the file.
    #[error("{path}: tensor `{name}` {problem}")]
    Tensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Missing, or the shapes.
        problem: String,
    },
}

impl CheckpointError {
    fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        CheckpointError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Metrics of one finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (0-based).
    pub epoch: u32,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// `train/loss`, `val/haversine_km_mean`, ...
    pub metrics: BTreeMap<String, f64>,
}

/// What a model needs besides its weights to turn views into coordinates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Backbone name.
    pub backbone: String,
    /// View fusion (`concat` or `mean` in the metadata).
    pub fusion: Fusion,
    /// `classification` or `regression`.
    pub task: Task,
    /// Head outputs (classes, or 2).
    pub outputs: usize,
    /// Input side in pixels.
    pub image_size: u32,
    /// Per-channel normalisation (0..1 scale) fitted on the train split.
    pub normalisation: ChannelStats,
    /// The classes stage key the class indices refer to.
    pub classes_key: String,
    /// Projected CRS of the centroids and the regression targets.
    pub crs: String,
    /// Min-max scaling of projected coordinates: `[x_min, x_max, y_min, y_max]`.
    pub scaling: [f64; 4],
    /// Per class: `[lat, lon, x, y]` of the centroid predictions average.
    pub centroids: Vec<[f64; 4]>,
    /// Classes a prediction averages (0: all).
    pub top_k: usize,
    /// The head; left out of the metadata while linear, so older checkpoints read.
    #[serde(default, skip_serializing_if = "Head::is_linear")]
    pub head: Head,
    /// A ViT's pooling, when set (left out otherwise, as `head`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
}

/// Everything in a checkpoint besides tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Format version of this struct.
    pub format: u32,
    /// Last finished epoch (0-based).
    pub epoch: u32,
    /// Optimiser steps taken so far.
    pub step: u64,
    /// Experiment seed; the shuffles and augmentations of epoch `e` derive from
    /// (seed, e), so this and `epoch` are the whole RNG state.
    pub seed: u64,
    /// The monitored metric.
    pub monitor: String,
    /// Whether larger is better.
    pub monitor_max: bool,
    /// Best monitored value so far and its epoch.
    pub best: Option<(f64, u32)>,
    /// Scheduler state after this epoch.
    pub scheduler: SchedulerState,
    /// Metrics of every finished epoch.
    pub history: Vec<EpochRecord>,
    /// How to use the model.
    pub model: ModelInfo,
}

/// Current format version.
pub const FORMAT: u32 = 1;

/// Checkpoint files' extension.
pub const EXTENSION: &str = "safetensors";

/// Paths of a checkpoint named `name` (`best`, `last`) in `dir`.
pub fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.{EXTENSION}")),
        dir.join(format!("{name}.toml")),
    )
}

/// The metadata of checkpoint `name` in `dir`, from its TOML sidecar (no tensor is read).
///
/// # Errors
/// The sidecar is missing or does not parse.
pub fn read_sidecar(dir: &Path, name: &str) -> Result<CheckpointMeta, CheckpointError> {
    let (_, sidecar) = paths(dir, name);
    let text = std::fs::read_to_string(&sidecar).map_err(|e| CheckpointError::file(&sidecar, e))?;
    toml::from_str(&text).map_err(|e| CheckpointError::file(&sidecar, e.message()))
}

/// Whether `name` can be a checkpoint's or served model's name: letters, digits, `-`, `_`
/// and `.`, not starting with a dot. Anything else (separators, `..`, an absolute path)
/// could name a file elsewhere.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl ModelInfo {
    /// The network this describes, on `kernels`.
    pub fn net_spec(&self, kernels: Kernels) -> NetSpec<'_> {
        NetSpec {
            backbone: &self.backbone,
            fusion: self.fusion,
            outputs: self.outputs,
            kernels,
            head: &self.head,
            pooling: self.pooling,
        }
    }
}

/// Which of a model's vars a checkpoint holds.
#[derive(Clone, Copy, Debug)]
pub enum Vars<'a> {
    /// All of them: a checkpoint that stands alone.
    All,
    /// Only these (the head's, while the frozen backbone is the same at every epoch and
    /// rebuilt on a resume); [`complete`] adds the rest once training is done.
    Only(&'a [String]),
}

/// Writes the checkpoints of `slots` (as the checkpoint policy decided) into `dir`: the
/// model's `vars`, the optimiser's state and `meta`.
///
/// # Errors
/// When the optimiser state cannot be copied or a file cannot be written.
pub fn write(
    dir: &Path,
    slots: &[Slot],
    (varmap, vars): (&VarMap, Vars<'_>),
    optimizer: &Optimizer,
    meta: &CheckpointMeta,
) -> Result<(), super::FitError> {
    if slots.is_empty() {
        return Ok(());
    }
    let optim = optimizer
        .state_tensors()
        .map_err(|e| super::FitError::OptimizerState(Box::new(e)))?;
    for slot in slots {
        save_vars(dir, slot.name(), (varmap, vars), optim.clone(), meta)?;
    }
    Ok(())
}

/// Writes the checkpoint `name` into `dir`: model vars, `optim` tensors and `meta`.
///
/// # Errors
/// When a tensor cannot be copied to the CPU or a file cannot be written.
pub fn save(
    dir: &Path,
    name: &str,
    varmap: &VarMap,
    optim: Vec<(String, Tensor)>,
    meta: &CheckpointMeta,
) -> Result<(), CheckpointError> {
    save_vars(dir, name, (varmap, Vars::All), optim, meta)
}

fn save_vars(
    dir: &Path,
    name: &str,
    (varmap, only): (&VarMap, Vars<'_>),
    optim: Vec<(String, Tensor)>,
    meta: &CheckpointMeta,
) -> Result<(), CheckpointError> {
    let (tensors_path, sidecar_path) = paths(dir, name);
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    {
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| CheckpointError::file(&tensors_path, "variable map lock poisoned"))?;
        for (n, v) in vars.iter() {
            if let Vars::Only(names) = only
                && !names.contains(n)
            {
                continue;
            }
            let t = v
                .as_tensor()
                .to_device(&Device::Cpu)
                .map_err(|e| CheckpointError::file(&tensors_path, e))?;
            tensors.insert(n.clone(), t);
        }
    }
    for (n, t) in optim {
        let t = t
            .to_device(&Device::Cpu)
            .map_err(|e| CheckpointError::file(&tensors_path, e))?;
        let name = if n.starts_with(OPTIM_PREFIX) {
            n
        } else {
            format!("{OPTIM_PREFIX}{n}")
        };
        tensors.insert(name, t);
    }
    write_tensors(&tensors_path, &tensors, meta)?;
    let sidecar = toml::to_string(meta).map_err(|e| CheckpointError::file(&sidecar_path, e))?;
    write_atomic(&sidecar_path, sidecar.as_bytes())
        .map_err(|e| CheckpointError::file(&sidecar_path, crate::graph::error_chain(&e)))?;
    Ok(())
}

/// Adds to the checkpoint at `path` every var of `varmap` it lacks (see [`Vars::Only`]),
/// so it stands alone. Rewritten atomically; the sidecar is unchanged.
///
/// # Errors
/// When the checkpoint cannot be read or written.
pub fn complete(path: &Path, varmap: &VarMap) -> Result<(), CheckpointError> {
    let loaded = load(path, &Device::Cpu)?;
    let mut tensors: BTreeMap<String, Tensor> = loaded.model.into_iter().collect();
    let before = tensors.len();
    {
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| CheckpointError::file(path, "variable map lock poisoned"))?;
        for (n, v) in vars.iter() {
            if !tensors.contains_key(n) {
                let t = v
                    .as_tensor()
                    .to_device(&Device::Cpu)
                    .map_err(|e| CheckpointError::file(path, e))?;
                tensors.insert(n.clone(), t);
            }
        }
    }
    if tensors.len() == before {
        return Ok(());
    }
    tensors.extend(loaded.optim);
    write_tensors(path, &tensors, &loaded.meta)
}

fn write_tensors(
    tensors_path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    meta: &CheckpointMeta,
) -> Result<(), CheckpointError> {
    let json = serde_json::to_string(meta).map_err(|e| CheckpointError::file(tensors_path, e))?;
    let bytes = safetensors::serialize(tensors, Some(HashMap::from([(META_KEY.to_owned(), json)])))
        .map_err(|e| CheckpointError::file(tensors_path, e))?;
    // With the OS's reason (a full disk, a file too large), not only "writing".
    write_atomic(tensors_path, &bytes)
        .map_err(|e| CheckpointError::file(tensors_path, crate::graph::error_chain(&e)))
}

/// A checkpoint read back.
pub struct Loaded {
    /// Model tensors by variable name.
    pub model: HashMap<String, Tensor>,
    /// Optimiser tensors, by their full `optim.` names.
    pub optim: HashMap<String, Tensor>,
    /// Its metadata.
    pub meta: CheckpointMeta,
}

/// Reads a checkpoint's tensors (onto `device`) and metadata.
///
/// # Errors
/// When the file is unreadable, not safetensors, or has no geoexp metadata.
pub fn load(path: &Path, device: &Device) -> Result<Loaded, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::file(path, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| CheckpointError::file(path, format!("not a safetensors file: {e}")))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| {
            CheckpointError::file(path, "no geoexp metadata: not a geoexp checkpoint")
        })?;
    let meta: CheckpointMeta = serde_json::from_str(json)
        .map_err(|e| CheckpointError::file(path, format!("metadata: {e}")))?;
    if meta.format != FORMAT {
        return Err(CheckpointError::file(
            path,
            format!(
                "checkpoint format {} (this geoexp reads {FORMAT})",
                meta.format
            ),
        ));
    }
    let all = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| CheckpointError::file(path, e))?;
    let (mut model, mut optim) = (HashMap::new(), HashMap::new());
    for (n, t) in all {
        if n.starts_with(OPTIM_PREFIX) {
            optim.insert(n, t);
        } else {
            model.insert(n, t);
        }
    }
    Ok(Loaded { model, optim, meta })
}

/// Copies checkpoint tensors into every variable of `varmap`; a variable without a tensor
/// of its shape is an error naming it.
///
/// # Errors
/// A missing or mis-shaped tensor, or a failed copy.
pub fn restore_vars(
    path: &Path,
    varmap: &VarMap,
    model: &HashMap<String, Tensor>,
) -> Result<(), CheckpointError> {
    restore_some_vars(path, (varmap, Vars::All), model)
}

/// [`restore_vars`] of the vars `vars` names only.
///
/// # Errors
/// As [`restore_vars`].
pub fn restore_some_vars(
    path: &Path,
    (varmap, only): (&VarMap, Vars<'_>),
    model: &HashMap<String, Tensor>,
) -> Result<(), CheckpointError> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| CheckpointError::file(path, "variable map lock poisoned"))?;
    let mut names: Vec<&String> = vars
        .keys()
        .filter(|n| match only {
            Vars::All => true,
            Vars::Only(names) => names.contains(n),
        })
        .collect();
    names.sort();
    for n in names {
        let var = &vars[n];
        let t = model.get(n).ok_or_else(|| CheckpointError::Tensor {
            path: path.to_path_buf(),
            name: n.clone(),
            problem: "is missing".into(),
        })?;
        if t.dims() != var.dims() {
            return Err(CheckpointError::Tensor {
                path: path.to_path_buf(),
                name: n.clone(),
                problem: format!(
                    "has shape {:?}, the model expects {:?}",
                    t.dims(),
                    var.dims()
                ),
            });
        }
        var.set(t).map_err(|e| CheckpointError::file(path, e))?;
    }
    Ok(())
}

/// A small untrained classification checkpoint for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};

    use candle_core::Device;

    use super::{CheckpointMeta, FORMAT, ModelInfo, paths, save};
    use crate::images::ChannelStats;
    use crate::model::build_net;
    use crate::train::scheduler::SchedulerState;
    use crate::vocab::{Fusion, Head, Kernels, Task};

    /// Side of the test model's views.
    pub const SIDE: u32 = 8;

    /// Writes `<dir>/<name>.safetensors`: tiny-cnn, three classes around Zagreb, weights
    /// from `seed`.
    pub fn write_checkpoint(dir: &Path, name: &str, seed: u64) -> PathBuf {
        let crs = "EPSG:3766";
        let lat_lon = [(45.8, 15.9), (45.3, 14.4), (43.5, 16.4)];
        let mut xy: Vec<(f64, f64)> = lat_lon.iter().map(|&(lat, lon)| (lon, lat)).collect();
        crate::geo::projection(crs)
            .unwrap()
            .forward(&mut xy)
            .unwrap();
        let centroids = lat_lon
            .iter()
            .zip(&xy)
            .map(|(&(lat, lon), &(x, y))| [lat, lon, x, y])
            .collect();
        let info = ModelInfo {
            backbone: "tiny-cnn".into(),
            fusion: Fusion::Concat,
            task: Task::Classification,
            outputs: 3,
            image_size: SIDE,
            normalisation: ChannelStats {
                mean: [0.5; 3],
                std: [0.25; 3],
            },
            classes_key: String::new(),
            crs: crs.into(),
            scaling: [0.0, 1.0, 0.0, 1.0],
            centroids,
            top_k: 0,
            head: Head::Linear,
            pooling: None,
        };
        let spec = info.net_spec(Kernels::Fast);
        let (varmap, _) = build_net(&spec, seed, None, &Device::Cpu).unwrap();
        let meta = CheckpointMeta {
            format: FORMAT,
            epoch: 0,
            step: 0,
            seed,
            monitor: "val/haversine_km_mean".into(),
            monitor_max: false,
            best: None,
            scheduler: SchedulerState {
                epochs_done: 0,
                plateau_lr: 1e-3,
                best: None,
                bad_epochs: 0,
            },
            history: Vec::new(),
            model: info,
        };
        save(dir, name, &varmap, Vec::new(), &meta).unwrap();
        paths(dir, name).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_operating_system_reason() {
        let dir = tempfile::tempdir().unwrap();
        let written = testing::write_checkpoint(dir.path(), "m", 1);
        let loaded = load(&written, &Device::Cpu).unwrap();
        // A "directory" that is a file: creating it fails, and the message says why.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "x").unwrap();
        let err = save(
            &blocked.join("sub"),
            "last",
            &VarMap::new(),
            Vec::new(),
            &loaded.meta,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("last.safetensors"), "{err}");
        assert!(err.contains("Not a directory"), "{err}");
    }
}
