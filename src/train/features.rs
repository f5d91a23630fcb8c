//! Embeddings computed once: every view's pooled backbone features, in one memory-mapped
//! tensor file that a head-only training reads instead of images.
//!
//! Layout: one safetensors tensor named `features`, dtype `F32` or `F16`, shape
//! `[N, 4, D]` (location, view 0/90/180/270, feature), C order, rows in the image tensor's
//! order; metadata `format = geoexp-features/1`. Python's `safetensors.numpy.load_file`
//! reads it as is.
//!
//! [`extract`] runs a frozen backbone exactly as training runs it with no block trainable
//! (batch norm in eval mode), so a head trained on these features is the head trained on
//! the images, up to float rounding.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use half::f16;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::graph::Tick;
use crate::images::{ChannelStats, ImageTensor};
use crate::model::GeoNet;
use crate::vocab::{FeatureDtype, VIEWS};

use super::data::batch_views;

/// The tensor's name in the file.
pub const TENSOR_NAME: &str = "features";
/// Value of the `format` metadata entry.
pub const FORMAT: &str = "geoexp-features/1";

/// Why a features file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeaturesError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a features file of this layout.
    #[error("{}: not a geoexp features file: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The backbone failed on a batch.
    #[error("computing the features of locations {first}..{end}: {source}")]
    Forward {
        /// First row of the batch.
        first: usize,
        /// One past its last row.
        end: usize,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
}

/// What [`extract`] wrote.
#[derive(Clone, Copy, Debug)]
pub struct ExtractSummary {
    /// Locations (rows).
    pub locations: usize,
    /// Features per view.
    pub dim: usize,
    /// Size of the file.
    pub bytes: u64,
}

/// Runs `net`'s backbone (frozen) over every location of `images` (normalised by `stats`),
/// `batch` locations at a time, and writes their features to `out` in `dtype`. Calls
/// `tick.inc` per location.
///
/// # Errors
/// The backbone failed, or the file could not be written.
pub fn extract(
    net: &GeoNet,
    (images, stats): (&ImageTensor, &ChannelStats),
    batch: usize,
    dtype: FeatureDtype,
    device: &Device,
    out: &Path,
    tick: &dyn Tick,
) -> Result<ExtractSummary, FeaturesError> {
    // Every batch allocates and frees the same activations; keep them in the heap.
    super::memory::keep_freed_memory();
    let n = images.len();
    let dim = net.backbone().feature_dim();
    let io = |source| FeaturesError::Io {
        path: out.to_path_buf(),
        source,
    };
    let file = File::create(out).map_err(io)?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let header = header(n, dim, dtype);
    writer.write_all(&header).map_err(io)?;
    let rows: Vec<usize> = (0..n).collect();
    for chunk in rows.chunks(batch.max(1)) {
        let (first, end) = (chunk[0], chunk[chunk.len() - 1] + 1);
        let forward = || -> candle_core::Result<Vec<f32>> {
            let x = batch_views(images, chunk, stats, None, device)?;
            net.features(&x, 0)?.flatten_all()?.to_vec1::<f32>()
        };
        let values = forward().map_err(|source| FeaturesError::Forward { first, end, source })?;
        match dtype {
            FeatureDtype::F32 => {
                for v in values {
                    writer.write_all(&v.to_le_bytes()).map_err(io)?;
                }
            }
            FeatureDtype::F16 => {
                for v in values {
                    writer
                        .write_all(&f16::from_f32(v).to_le_bytes())
                        .map_err(io)?;
                }
            }
        }
        tick.inc(chunk.len() as u64);
    }
    writer.flush().map_err(io)?;
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(ExtractSummary {
        locations: n,
        dim,
        bytes: header.len() as u64 + (n * VIEWS * dim * bytes_per(dtype)) as u64,
    })
}

fn bytes_per(dtype: FeatureDtype) -> usize {
    match dtype {
        FeatureDtype::F32 => 4,
        FeatureDtype::F16 => 2,
    }
}

/// The safetensors header (length prefix included), padded to 8 bytes so the data is
/// aligned.
fn header(n: usize, dim: usize, dtype: FeatureDtype) -> Vec<u8> {
    let bytes = n * VIEWS * dim * bytes_per(dtype);
    let dtype = match dtype {
        FeatureDtype::F32 => "F32",
        FeatureDtype::F16 => "F16",
    };
    let mut json = format!(
        r#"{{"__metadata__":{{"format":"{FORMAT}"}},"{TENSOR_NAME}":{{"dtype":"{dtype}","shape":[{n},{VIEWS},{dim}],"data_offsets":[0,{bytes}]}}}}"#
    )
    .into_bytes();
    while (8 + json.len()) % 8 != 0 {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out
}

/// A features file, memory-mapped.
pub struct FeatureTensor {
    mmap: Mmap,
    path: PathBuf,
    offset: usize,
    len: usize,
    dim: usize,
    dtype: FeatureDtype,
}

impl FeatureTensor {
    /// Opens and checks the file at `path`.
    ///
    /// # Errors
    /// Unreadable, or not a features file.
    pub fn open(path: &Path) -> Result<Self, FeaturesError> {
        let format = |message: String| FeaturesError::Format {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(|source| FeaturesError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: cache entries are never modified after they are committed; the map is
        // read-only.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|source| FeaturesError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (header_len, meta) =
            SafeTensors::read_metadata(&mmap).map_err(|e| format(e.to_string()))?;
        let found = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .cloned();
        if found.as_deref() != Some(FORMAT) {
            return Err(format(format!("format {found:?}, expected {FORMAT:?}")));
        }
        let info = meta
            .info(TENSOR_NAME)
            .ok_or_else(|| format(format!("no tensor named {TENSOR_NAME:?}")))?;
        let dtype = match info.dtype {
            Dtype::F32 => FeatureDtype::F32,
            Dtype::F16 => FeatureDtype::F16,
            other => return Err(format(format!("dtype {other:?}"))),
        };
        let &[len, views, dim] = info.shape.as_slice() else {
            return Err(format(format!(
                "shape {:?}, expected [N, 4, D]",
                info.shape
            )));
        };
        if views != VIEWS {
            return Err(format(format!(
                "{views} views per location, expected {VIEWS}"
            )));
        }
        Ok(FeatureTensor {
            offset: 8 + header_len + info.data_offsets.0,
            mmap,
            path: path.to_path_buf(),
            len,
            dim,
            dtype,
        })
    }

    /// Locations (rows).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Features per view.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Row `i`'s `4 · D` values, as f32.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn row(&self, i: usize) -> Vec<f32> {
        assert!(i < self.len, "row {i} of {}", self.len);
        let per = bytes_per(self.dtype);
        let n = VIEWS * self.dim;
        let start = self.offset + i * n * per;
        let bytes = &self.mmap[start..start + n * per];
        match self.dtype {
            FeatureDtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            FeatureDtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }

    /// `[B, 4, D]` f32: rows `rows` on `device`.
    ///
    /// # Errors
    /// When the tensor cannot be created.
    pub fn batch(&self, rows: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        let values: Vec<f32> = rows.iter().flat_map(|&r| self.row(r)).collect();
        Tensor::from_vec(values, (rows.len(), VIEWS, self.dim), device)
    }
}

impl std::fmt::Debug for FeatureTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureTensor")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("dim", &self.dim)
            .field("dtype", &self.dtype)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, values: &[f32], n: usize, dim: usize, dtype: FeatureDtype) {
        let mut bytes = header(n, dim, dtype);
        for v in values {
            match dtype {
                FeatureDtype::F32 => bytes.extend(v.to_le_bytes()),
                FeatureDtype::F16 => bytes.extend(f16::from_f32(*v).to_le_bytes()),
            }
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn rows_read_back_in_both_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let (n, dim) = (3, 2);
        let values: Vec<f32> = (0..n * VIEWS * dim).map(|i| i as f32 * 0.5).collect();
        for dtype in [FeatureDtype::F32, FeatureDtype::F16] {
            let path = dir.path().join("f.safetensors");
            write(&path, &values, n, dim, dtype);
            let t = FeatureTensor::open(&path).unwrap();
            assert_eq!((t.len(), t.dim()), (3, 2));
            assert_eq!(t.row(1), values[8..16]);
            let b = t.batch(&[2, 0], &Device::Cpu).unwrap();
            assert_eq!(b.dims(), [2, VIEWS, 2]);
            let flat = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(flat[..8], values[16..24]);
            assert_eq!(flat[8..], values[..8]);
        }
    }

    #[test]
    fn the_header_is_aligned_and_readable_by_safetensors() {
        let h = header(5, 7, FeatureDtype::F32);
        assert_eq!(h.len() % 8, 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.safetensors");
        write(&path, &vec![1.0; 5 * VIEWS * 7], 5, 7, FeatureDtype::F32);
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor(TENSOR_NAME).unwrap().shape(), [5, VIEWS, 7]);
    }

    #[test]
    fn another_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.safetensors");
        let t = Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&std::collections::HashMap::from([("x", t)]), &path)
            .unwrap();
        let err = FeatureTensor::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("images.safetensors") && err.contains("not a geoexp features file"),
            "{err}"
        );
    }
}
