//! The images stage: every view decoded once, resized to `train.image_size`, in one
//! memory-mapped tensor file that every trial with that image size shares.
//!
//! Reads: `train.image_size`, `dataset.skip_bad_images`, the resize filter of
//! `model.backbone`'s family (bilinear for CNNs, bicubic for ViTs), the dataset stage's
//! `locations.csv` and the view files it names (their content is already in the dataset
//! key, so it is not fingerprinted again).
//! Writes: `images.safetensors` (u8 `[N, 4, S, S, 3]`, locations in `locations.csv` order
//! minus dropped ones), `index.csv` (row → uuid, split), `stats.toml` (per-channel mean and
//! std over the train split, on the 0..1 scale) and, when locations were dropped,
//! `dropped.csv` (uuid, reason).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::{LOCATIONS_FILE, Location, Split, read_locations};
use crate::experiment::Loaded;
use crate::graph::{Input, Outcome, Params, Stage, StageContext, StageError, params_of};
use crate::images::{
    BuildOptions, ChannelStats, DecodeOptions, ImageTensor, Resample, build_tensor_file_with,
    channel_stats,
};

use super::dataset::{SYNTHETIC_DIR, SYNTHETIC_SOURCE};

/// Name of the stage.
pub const NAME: &str = "images";
/// The tensor file.
pub const TENSOR_FILE: &str = "images.safetensors";
/// Row → location.
pub const INDEX_FILE: &str = "index.csv";
/// Normalisation statistics.
pub const STATS_FILE: &str = "stats.toml";
/// Locations dropped for a bad view.
pub const DROPPED_FILE: &str = "dropped.csv";

#[derive(Clone, Debug, Serialize)]
struct ImagesParams {
    #[serde(rename = "train.image_size")]
    image_size: u32,
    #[serde(rename = "dataset.skip_bad_images")]
    skip_bad_images: bool,
    /// In the key only when set, so entries made before it existed keep theirs.
    #[serde(rename = "dataset.max_image_megapixels")]
    max_image_megapixels: Option<u64>,
    /// The resize filter, from `model.backbone`'s family: `bicubic` for the ViTs, in the
    /// key only then (bilinear, the CNNs', is what entries were always made with).
    resample: Option<&'static str>,
}

/// Decodes and resizes every view.
pub struct ImagesStage {
    params: ImagesParams,
    /// Configured dataset directory (the `source` column) → where it is.
    roots: BTreeMap<String, PathBuf>,
}

impl ImagesStage {
    /// The stage for `loaded`.
    pub fn new(loaded: &Loaded) -> ImagesStage {
        let e = &loaded.experiment;
        ImagesStage {
            params: ImagesParams {
                image_size: e.train.image_size,
                skip_bad_images: e.dataset.skip_bad_images,
                max_image_megapixels: e.dataset.max_image_megapixels,
                resample: (Resample::for_backbone(&e.model.backbone) == Resample::Bicubic)
                    .then_some("bicubic"),
            },
            roots: e
                .dataset
                .dirs
                .iter()
                .map(|d| (d.clone(), loaded.resolve_path("dataset.dirs", d)))
                .collect(),
        }
    }

    fn view_paths(&self, dataset_dir: &Path, l: &Location) -> Result<[PathBuf; 4], StageError> {
        let root = if l.source == SYNTHETIC_SOURCE {
            dataset_dir.join(SYNTHETIC_DIR)
        } else {
            self.roots.get(&l.source).cloned().ok_or_else(|| {
                format!(
                    "location {} comes from {:?}, which is not among dataset.dirs",
                    l.uuid, l.source
                )
            })?
        };
        Ok(l.views().map(|v| root.join(v)))
    }
}

impl Stage for ImagesStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn upstream(&self) -> Vec<&'static str> {
        vec![super::dataset::NAME]
    }

    fn params(&self) -> Params {
        params_of(&self.params)
    }

    fn inputs(&self) -> Result<Vec<Input>, StageError> {
        Ok(Vec::new())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        let dataset_dir = ctx.upstream_dir(super::dataset::NAME)?;
        let locations = read_locations(&dataset_dir.join(LOCATIONS_FILE))?;
        let views = locations
            .iter()
            .map(|l| self.view_paths(dataset_dir, l))
            .collect::<Result<Vec<_>, _>>()?;
        let out = ctx.out_dir();
        let tick = ctx.progress("decoding views", locations.len() as u64);
        let mut decode = DecodeOptions::new(self.params.image_size);
        if self.params.resample.is_some() {
            decode = decode.with_resample(Resample::Bicubic);
        }
        if let Some(mp) = self.params.max_image_megapixels {
            decode = decode.with_max_megapixels(mp);
        }
        let build = BuildOptions {
            decode,
            skip_bad: self.params.skip_bad_images,
            ..BuildOptions::new(self.params.image_size)
        };
        let summary =
            build_tensor_file_with(&views, &out.join(TENSOR_FILE), &build, tick.as_ref())?;
        tick.finish();
        let kept: Vec<&Location> = summary.kept.iter().map(|&i| &locations[i]).collect();
        write_index(&out.join(INDEX_FILE), &kept)?;
        if !summary.dropped.is_empty() {
            let mut w = csv::Writer::from_path(out.join(DROPPED_FILE))?;
            w.write_record(["uuid", "reason"])?;
            for (i, err) in &summary.dropped {
                w.write_record([locations[*i].uuid.as_str(), &err.to_string()])?;
            }
            w.flush()?;
            tracing::warn!(
                "{} location(s) dropped for unreadable views (dataset.skip_bad_images); see {DROPPED_FILE}",
                summary.dropped.len()
            );
        }
        let tensor = ImageTensor::open(&out.join(TENSOR_FILE))?;
        let train: Vec<usize> = kept
            .iter()
            .enumerate()
            .filter(|(_, l)| l.split == Split::Train)
            .map(|(i, _)| i)
            .collect();
        if train.is_empty() {
            return Err("no training location is left to compute normalisation statistics".into());
        }
        let stats = channel_stats(&tensor, &train);
        std::fs::write(
            out.join(STATS_FILE),
            toml::to_string(&StatsFile {
                image_size: self.params.image_size,
                locations: kept.len(),
                stats,
            })?,
        )?;
        Ok(Outcome::default()
            .with("locations", kept.len())
            .with("dropped_bad_images", summary.dropped.len())
            .with("bytes", summary.bytes))
    }
}

/// `stats.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsFile {
    /// Side of every view.
    pub image_size: u32,
    /// Rows of the tensor.
    pub locations: usize,
    /// Train-split channel statistics.
    pub stats: ChannelStats,
}

/// The normalisation a network with backbone `backbone` reads its views with: its
/// family's own statistics (CLIP's, ImageNet's for DINOv2), or else the train split's
/// `stats`.
pub fn normalisation(backbone: &str, stats: ChannelStats) -> ChannelStats {
    match crate::vocab::architecture(backbone).and_then(|a| a.normalisation()) {
        Some((mean, std)) => ChannelStats { mean, std },
        None => stats,
    }
}

/// One row of `index.csv`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexRow {
    /// Row in the tensor file.
    pub row: usize,
    /// Location id.
    pub uuid: String,
    /// Its split.
    pub split: Split,
}

fn write_index(path: &Path, kept: &[&Location]) -> Result<(), StageError> {
    let mut w = csv::Writer::from_path(path)?;
    for (row, l) in kept.iter().enumerate() {
        w.serialize(IndexRow {
            row,
            uuid: l.uuid.clone(),
            split: l.split,
        })?;
    }
    w.flush()?;
    Ok(())
}

/// Reads an images entry's `index.csv`.
///
/// # Errors
/// When the file cannot be read or parsed.
pub fn read_index(dir: &Path) -> Result<Vec<IndexRow>, StageError> {
    let path = dir.join(INDEX_FILE);
    let mut r = csv::Reader::from_path(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    r.deserialize()
        .map(|row| row.map_err(|e| format!("{}: {e}", path.display()).into()))
        .collect()
}

/// Reads an images entry's `stats.toml`.
///
/// # Errors
/// When the file cannot be read or parsed.
pub fn read_stats(dir: &Path) -> Result<StatsFile, StageError> {
    let path = dir.join(STATS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}
