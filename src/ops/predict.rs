//! `geoexp predict`: a checkpoint and a directory of `<uuid>/{0,90,180,270}.jpg` folders in,
//! the competition's `uuid,latitude,longitude` CSV out.
//!
//! The model is named by a checkpoint file, a run folder (its `checkpoints/best`), a run id
//! (as `diff` takes them), or a name under a models directory (as `serve` lists them).
//! Folders whose views are missing or unreadable are reported and left out, or fail the
//! whole command with `strict`; a prediction is never made from a partial folder.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::geo::Boundary;
use crate::graph::manifest::MANIFEST_FILE;
use crate::graph::{Manifest, Progress, write_atomic};
use crate::infer::{InferError, Model, Skipped, folders, input, scan};
use crate::train::checkpoint::{EXTENSION, is_plain_name};
use crate::train::device::select_device;

use super::diff::resolve as resolve_run;

/// The run folder's sub-folder of checkpoint links.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// What to predict.
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// A checkpoint file, a run folder, a run id, or a name under `models_dir`.
    pub model: String,
    /// Where model names are looked up.
    pub models_dir: Option<PathBuf>,
    /// Where run ids are looked up.
    pub runs_dir: PathBuf,
    /// Which checkpoint of a run: `best` or `last`.
    pub checkpoint: String,
    /// The directory of `<uuid>/` folders (or a dataset directory).
    pub images: PathBuf,
    /// Where to write the CSV; `None` leaves writing to the caller.
    pub out: Option<PathBuf>,
    /// Move predictions outside the boundary to its nearest land point.
    pub snap_to_land: bool,
    /// The boundary to snap to (ISO code or GeoJSON); defaults to the run's.
    pub boundary: Option<String>,
    /// Fail on the first folder that cannot be predicted instead of skipping it.
    pub strict: bool,
    /// Locations per forward pass.
    pub batch_size: usize,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// Views declaring more million pixels than this are refused before decoding (their
    /// folder is skipped, or fails the run with `strict`).
    pub max_megapixels: u64,
}

/// One line of the output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// The folder's name.
    pub uuid: String,
    /// Predicted latitude.
    pub latitude: f64,
    /// Predicted longitude.
    pub longitude: f64,
}

/// What a prediction did.
#[derive(Debug)]
pub struct PredictReport {
    /// The checkpoint used.
    pub checkpoint: PathBuf,
    /// One row per predicted folder, sorted by uuid.
    pub rows: Vec<Row>,
    /// Folders left out, and why.
    pub skipped: Vec<Skipped>,
    /// Predictions moved onto land.
    pub snapped: usize,
}

/// Why a prediction run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PredictError {
    /// The model argument names nothing.
    #[error(
        "{arg}: no checkpoint file, run folder, run id{} by that name",
        models_dir.as_ref().map_or(String::new(), |d| format!(" or model in {}", d.display()))
    )]
    NoModel {
        /// The argument.
        arg: String,
        /// Where names were looked up.
        models_dir: Option<PathBuf>,
    },
    /// A folder was found but holds no checkpoint.
    #[error("{}: no checkpoint {file} (expected a run folder or a folder of checkpoints)", dir.display())]
    NoCheckpoint {
        /// The folder.
        dir: PathBuf,
        /// The file looked for.
        file: String,
    },
    /// A run id could not be resolved.
    #[error(transparent)]
    Run(#[from] super::diff::DiffError),
    /// `--snap-to-land` without a boundary to snap to.
    #[error(
        "--snap-to-land needs a boundary: {} is not inside a run folder, so pass --boundary (an ISO code such as HR, or a GeoJSON file)",
        checkpoint.display()
    )]
    NoBoundary {
        /// The checkpoint.
        checkpoint: PathBuf,
    },
    /// The boundary could not be loaded.
    #[error("boundary {spec}: {message}")]
    Boundary {
        /// The spec.
        spec: String,
        /// Why.
        message: String,
    },
    /// `strict` and a folder could not be predicted.
    #[error("{}/{}: {}", root.display(), skipped.uuid, skipped.reason)]
    Strict {
        /// The image root.
        root: PathBuf,
        /// The folder.
        skipped: Skipped,
    },
    /// Nothing could be predicted.
    #[error("{}: no folder with all four views to predict{}", dir.display(), skipped_note(*skipped))]
    Nothing {
        /// The images directory.
        dir: PathBuf,
        /// Folders skipped.
        skipped: usize,
    },
    /// Loading the model or predicting failed.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The device is unavailable.
    #[error(transparent)]
    Device(#[from] crate::train::device::DeviceError),
    /// Writing the CSV failed.
    #[error("{}: {message}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

fn skipped_note(skipped: usize) -> String {
    if skipped == 0 {
        String::new()
    } else {
        format!(" ({skipped} skipped)")
    }
}

/// Predicts every folder under `options.images`.
///
/// # Errors
/// See [`PredictError`].
pub fn predict(
    options: &PredictOptions,
    progress: &dyn Progress,
) -> Result<PredictReport, PredictError> {
    let (checkpoint, manifest) = resolve_checkpoint(options)?;
    let boundary = if options.snap_to_land {
        Some(snap_boundary(options, &checkpoint, manifest.as_deref())?)
    } else {
        None
    };
    let device = select_device(&options.device)?;
    let model = Model::open(&checkpoint, &device)?;
    let found = scan(&options.images, None)?;
    let strict = |skipped: &Skipped| PredictError::Strict {
        root: found.root.clone(),
        skipped: skipped.clone(),
    };
    if options.strict
        && let Some(first) = found.skipped.first()
    {
        return Err(strict(first));
    }
    let mut skipped = found.skipped.clone();
    let mut rows = Vec::with_capacity(found.folders.len());
    let mut snapped = 0;
    let tick = progress.start("predict", found.folders.len() as u64);
    for chunk in found.folders.chunks(options.batch_size.max(1)) {
        let opts = model
            .decode_options()
            .with_max_megapixels(options.max_megapixels);
        let (ready, unreadable) = folders::decode(chunk, opts);
        if options.strict
            && let Some(first) = unreadable.first()
        {
            return Err(strict(first));
        }
        skipped.extend(unreadable);
        if !ready.is_empty() {
            let views: Vec<&[u8]> = ready.iter().map(|(_, v)| v.as_slice()).collect();
            let x = input::batch(
                &views,
                model.side(),
                &model.info().normalisation,
                model.device(),
            )
            .map_err(InferError::from)?;
            for ((folder, _), answer) in ready.iter().zip(model.predict(&x, 0)?) {
                let (mut lat, mut lon) = (answer.latitude, answer.longitude);
                if let Some(b) = &boundary
                    && !b.contains(lat, lon)
                {
                    (lat, lon) = b.nearest_point(lat, lon);
                    snapped += 1;
                }
                rows.push(Row {
                    uuid: folder.uuid.clone(),
                    latitude: lat,
                    longitude: lon,
                });
            }
        }
        tick.inc(chunk.len() as u64);
    }
    tick.finish();
    if rows.is_empty() {
        return Err(PredictError::Nothing {
            dir: options.images.clone(),
            skipped: skipped.len(),
        });
    }
    rows.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    skipped.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    if let Some(out) = &options.out {
        if out.is_dir() {
            return Err(PredictError::Write {
                path: out.clone(),
                message: "is a folder; give the CSV file to write, e.g. predictions.csv".into(),
            });
        }
        let mut bytes = Vec::new();
        write_csv(&rows, &mut bytes).map_err(|e| PredictError::Write {
            path: out.clone(),
            message: e.to_string(),
        })?;
        write_atomic(out, &bytes).map_err(|e| PredictError::Write {
            path: out.clone(),
            message: crate::graph::error_chain(&e),
        })?;
    }
    Ok(PredictReport {
        checkpoint,
        rows,
        skipped,
        snapped,
    })
}

/// Writes `uuid,latitude,longitude` and one line per row, in that column order.
///
/// # Errors
/// When the writer fails.
pub fn write_csv(rows: &[Row], out: impl std::io::Write) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    for row in rows {
        w.serialize(row)?;
    }
    w.flush()?;
    Ok(())
}

/// The checkpoint file `options.model` names, and the manifest of the run it belongs to
/// (when it belongs to one).
fn resolve_checkpoint(
    options: &PredictOptions,
) -> Result<(PathBuf, Option<PathBuf>), PredictError> {
    let arg = Path::new(&options.model);
    let file = format!("{}.{EXTENSION}", options.checkpoint);
    if arg.is_file() {
        let manifest = arg
            .parent()
            .and_then(Path::parent)
            .map(|run| run.join(MANIFEST_FILE))
            .filter(|m| m.is_file());
        return Ok((arg.to_path_buf(), manifest));
    }
    if arg.is_dir() {
        return checkpoint_in(arg, &file);
    }
    if let Some(dir) = &options.models_dir
        && let Some(path) = model_file(dir, &options.model)
    {
        return Ok((path, None));
    }
    match resolve_run(arg, &options.runs_dir) {
        Ok(manifest) => {
            let run = manifest.parent().unwrap_or(Path::new("."));
            checkpoint_in(run, &file)
        }
        Err(super::diff::DiffError::NotFound { .. }) => Err(PredictError::NoModel {
            arg: options.model.clone(),
            models_dir: options.models_dir.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// `file` in a run folder's `checkpoints/`, or in `dir` itself (a folder of checkpoints).
fn checkpoint_in(dir: &Path, file: &str) -> Result<(PathBuf, Option<PathBuf>), PredictError> {
    let manifest = dir.join(MANIFEST_FILE);
    let in_run = dir.join(CHECKPOINTS_DIR).join(file);
    if in_run.is_file() {
        return Ok((in_run, manifest.is_file().then_some(manifest)));
    }
    let direct = dir.join(file);
    if direct.is_file() {
        return Ok((direct, None));
    }
    Err(PredictError::NoCheckpoint {
        dir: dir.to_path_buf(),
        file: if manifest.is_file() {
            format!("{CHECKPOINTS_DIR}/{file}")
        } else {
            file.to_owned()
        },
    })
}

/// `<dir>/<name>.safetensors` when `name` is a plain name and the file exists.
fn model_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let path = dir.join(format!("{name}.{EXTENSION}"));
    (is_plain_name(name) && path.is_file()).then_some(path)
}

/// The boundary to snap to: `--boundary`, else the run's `classes.boundary` (a relative
/// GeoJSON path is relative to the experiment file, as when the run was made).
fn snap_boundary(
    options: &PredictOptions,
    checkpoint: &Path,
    manifest: Option<&Path>,
) -> Result<Boundary, PredictError> {
    let (spec, base) = match (&options.boundary, manifest) {
        (Some(spec), _) => (spec.clone(), PathBuf::from(".")),
        (None, Some(m)) => {
            let run = Manifest::read(m).map_err(|e| PredictError::Boundary {
                spec: "of the run".into(),
                message: e.to_string(),
            })?;
            let spec = run
                .config
                .pointer("/classes/boundary")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| PredictError::NoBoundary {
                    checkpoint: checkpoint.to_path_buf(),
                })?
                .to_owned();
            let base = Path::new(&run.run.experiment)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            (spec, base)
        }
        (None, None) => {
            return Err(PredictError::NoBoundary {
                checkpoint: checkpoint.to_path_buf(),
            });
        }
    };
    Boundary::resolve(&spec, &base).map_err(|e| PredictError::Boundary {
        spec,
        message: e.to_string(),
    })
}
