//! `geoexp synth`: a synthetic dataset in the real on-disk layout, for trying geoexp (and
//! testing it) without downloading anything.
//!
//! The dataset is generated into a hidden sibling folder and renamed into place, so an
//! interrupted generation never leaves a half dataset, and an existing non-empty folder is
//! never written into.

use std::path::{Path, PathBuf};

use crate::dataset::DatasetError;
use crate::dataset::synth::{SynthOptions, SynthSummary, generate};
use crate::geo::Boundary;
use crate::graph::Progress;

use super::OpError;

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthRequest {
    /// Output folder (must not exist, or be empty).
    pub out: PathBuf,
    /// Generator options.
    pub options: SynthOptions,
    /// Boundary spec: ISO code or GeoJSON path.
    pub boundary: String,
}

/// Generates a dataset.
///
/// # Errors
/// When the output folder exists and is not empty, the boundary is unknown, or writing fails.
pub fn synth(request: &SynthRequest, progress: &dyn Progress) -> Result<SynthSummary, OpError> {
    let out = &request.out;
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map_err(DatasetError::io("reading", out))?
            .next()
            .is_none();
        if !empty {
            return Err(OpError::Usage(format!(
                "{} already exists and is not empty; choose a new folder (nothing was written)",
                out.display()
            )));
        }
    }
    let boundary = Boundary::resolve(&request.boundary, Path::new("."))?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Some(file) = parent.ancestors().find(|p| p.is_file()) {
        return Err(OpError::Usage(format!(
            "--out {}: {} is a file, so no folder can be made inside it",
            out.display(),
            file.display()
        )));
    }
    std::fs::create_dir_all(parent).map_err(DatasetError::io("creating", parent))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    let tmp = parent.join(format!(".{name}.partial.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let tick = progress.start("synth: generating views", request.options.locations as u64);
    let result = generate(&boundary, &request.options, &tmp, tick.as_ref());
    tick.finish();
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
    };
    if out.exists() {
        // Empty, checked above; rename cannot replace a directory that exists.
        std::fs::remove_dir(out).map_err(DatasetError::io("replacing", out))?;
    }
    std::fs::rename(&tmp, out).map_err(DatasetError::io("moving into place", out))?;
    Ok(summary)
}
