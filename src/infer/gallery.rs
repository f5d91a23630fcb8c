//! The refinement gallery a checkpoint ships with: its training locations' embeddings,
//! classes and positions, and the refinement settings, in one safetensors file beside the
//! checkpoint (`best.safetensors` → `best.gallery.safetensors`).
//!
//! Tensors: `embeddings` F32 `[M, D]` (each location's four view embeddings averaged),
//! `classes` U32 `[M]`, `positions` F64 `[M, 2]` (latitude, longitude); metadata `format =
//! geoexp-gallery/1` and `refine` (the settings as JSON). [`Model::open`](super::Model::open)
//! loads it when it is there, and `predict` and `serve` then refine as `evaluate` did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::refine::{Gallery, RefineSettings};
use crate::graph::write_atomic;

/// What a gallery file's name adds to its checkpoint's stem.
pub const SUFFIX: &str = ".gallery";
/// Value of the `format` metadata entry.
pub const FORMAT: &str = "geoexp-gallery/1";

/// Why a gallery file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("refinement gallery {}: {message}", path.display())]
pub struct GalleryError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The training locations of a gallery, as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GalleryData {
    /// `[M, D]` row-major embeddings.
    pub embeddings: Vec<f32>,
    /// `D`.
    pub dim: usize,
    /// Class per location.
    pub classes: Vec<usize>,
    /// (latitude, longitude) per location.
    pub positions: Vec<(f64, f64)>,
}

/// The gallery file of checkpoint `checkpoint` (`x.safetensors` → `x.gallery.safetensors`).
pub fn path_for(checkpoint: &Path) -> PathBuf {
    let stem = checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = checkpoint
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    checkpoint.with_file_name(format!("{stem}{SUFFIX}{ext}"))
}

/// Writes `data` and `settings` to `path` (atomically).
///
/// # Errors
/// When the data is inconsistent or the file cannot be written.
pub fn write(
    path: &Path,
    data: &GalleryData,
    settings: &RefineSettings,
) -> Result<(), GalleryError> {
    let fail = |message: String| GalleryError {
        path: path.to_path_buf(),
        message,
    };
    let m = data.classes.len();
    let classes: Vec<u32> = data.classes.iter().map(|&c| c as u32).collect();
    let positions: Vec<f64> = data.positions.iter().flat_map(|&(a, b)| [a, b]).collect();
    let tensors = || -> candle_core::Result<Vec<(&'static str, Tensor)>> {
        Ok(vec![
            (
                "embeddings",
                Tensor::from_slice(&data.embeddings, (m, data.dim), &Device::Cpu)?,
            ),
            ("classes", Tensor::from_vec(classes, m, &Device::Cpu)?),
            (
                "positions",
                Tensor::from_vec(positions, (m, 2), &Device::Cpu)?,
            ),
        ])
    };
    let tensors = tensors().map_err(|e| fail(e.to_string()))?;
    let settings = serde_json::to_string(settings).map_err(|e| fail(e.to_string()))?;
    let meta = HashMap::from([
        ("format".to_owned(), FORMAT.to_owned()),
        ("refine".to_owned(), settings),
    ]);
    let bytes = safetensors::serialize(tensors, Some(meta)).map_err(|e| fail(e.to_string()))?;
    write_atomic(path, &bytes).map_err(|e| fail(crate::graph::error_chain(&e)))
}

/// Reads the gallery file at `path`.
///
/// # Errors
/// When it cannot be read, is not a gallery file, or its data is unusable.
pub fn read(path: &Path) -> Result<(Gallery, RefineSettings), GalleryError> {
    let fail = |message: String| GalleryError {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| fail(format!("not a safetensors file: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(fail(format!("not a {FORMAT} file")));
    }
    let settings: RefineSettings = meta
        .get("refine")
        .ok_or_else(|| fail("no refinement settings".into()))
        .and_then(|s| serde_json::from_str(s).map_err(|e| fail(format!("settings: {e}"))))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| fail(e.to_string()))?;
    let get = |name: &str| {
        tensors
            .get(name)
            .ok_or_else(|| fail(format!("no `{name}` tensor")))
    };
    let read = || -> candle_core::Result<GalleryData> {
        let embeddings = get("embeddings").map_err(|e| candle_core::Error::Msg(e.message))?;
        let dim = embeddings.dim(1)?;
        let positions = get("positions")
            .map_err(|e| candle_core::Error::Msg(e.message))?
            .to_vec2::<f64>()?;
        Ok(GalleryData {
            embeddings: embeddings.flatten_all()?.to_vec1::<f32>()?,
            dim,
            classes: get("classes")
                .map_err(|e| candle_core::Error::Msg(e.message))?
                .to_vec1::<u32>()?
                .into_iter()
                .map(|c| c as usize)
                .collect(),
            positions: positions.into_iter().map(|p| (p[0], p[1])).collect(),
        })
    };
    let data = read().map_err(|e| fail(e.to_string()))?;
    let gallery = Gallery::new(data.embeddings, data.dim, data.classes, data.positions)
        .map_err(|e| fail(e.to_string()))?;
    settings.validate().map_err(|e| fail(e.to_string()))?;
    Ok((gallery, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gallery_round_trips_beside_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("best.safetensors");
        let path = path_for(&checkpoint);
        assert_eq!(path, dir.path().join("best.gallery.safetensors"));
        let data = GalleryData {
            embeddings: vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8],
            dim: 2,
            classes: vec![0, 1, 1],
            positions: vec![(45.0, 15.0), (44.0, 16.0), (44.1, 16.1)],
        };
        let settings = RefineSettings {
            top_cells: 2,
            ..RefineSettings::default()
        };
        write(&path, &data, &settings).unwrap();
        let (gallery, read_settings) = read(&path).unwrap();
        assert_eq!(read_settings, settings);
        assert_eq!((gallery.len(), gallery.dim()), (3, 2));
        assert_eq!(gallery.rows_of(1).len(), 2);
    }

    #[test]
    fn another_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gallery.safetensors");
        std::fs::write(&path, b"not safetensors").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("x.gallery.safetensors"), "{err}");
    }
}
