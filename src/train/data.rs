//! What training reads: the samples of each split (tensor row, class, position, scaled
//! target) and their batches: normalised, optionally augmented views from the image
//! tensor, or the features stage's embeddings of them.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::experiment::AugmentConfig;
use crate::images::{ChannelStats, ImageTensor};
use crate::vocab::VIEWS;

use super::augment::{augment, view_rng};
use super::features::FeatureTensor;

/// What a network reads per location.
#[derive(Debug)]
pub enum Inputs {
    /// The four views, decoded, with the train split's statistics to normalise them.
    Images {
        /// Every view.
        tensor: ImageTensor,
        /// Normalisation.
        stats: ChannelStats,
    },
    /// The frozen backbone's features of the four views (the features stage's output).
    Features(FeatureTensor),
}

impl Inputs {
    /// Rows (locations).
    pub fn len(&self) -> usize {
        match self {
            Inputs::Images { tensor, .. } => tensor.len(),
            Inputs::Features(f) => f.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch of `samples`: views `[B, 4, 3, S, S]` ([`batch_images`]) or features
    /// `[B, 4, D]`; [`crate::model::GeoNet::forward`] takes either.
    ///
    /// # Errors
    /// When the tensor cannot be created, or augmentation is asked of features.
    pub fn batch(
        &self,
        samples: &[&Sample],
        augmentation: Option<BatchAugment<'_>>,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        match self {
            Inputs::Images { tensor, stats } => {
                batch_images(tensor, samples, stats, augmentation, device)
            }
            Inputs::Features(_) if augmentation.is_some() => {
                candle_core::bail!("augmentation needs images, not precomputed features")
            }
            Inputs::Features(f) => {
                let rows: Vec<usize> = samples.iter().map(|s| s.row).collect();
                f.batch(&rows, device)
            }
        }
    }
}

/// One location as training sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Location id.
    pub uuid: String,
    /// Row in the image tensor.
    pub row: usize,
    /// Class index.
    pub class: usize,
    /// True latitude.
    pub lat: f64,
    /// True longitude.
    pub lon: f64,
    /// Min-max scaled projected coordinates (the regression target).
    pub target: [f64; 2],
}

/// Augmentation of one batch: the config and the (seed, epoch) its RNGs derive from.
#[derive(Clone, Copy, Debug)]
pub struct BatchAugment<'a> {
    /// What to apply.
    pub config: &'a AugmentConfig,
    /// Experiment seed.
    pub seed: u64,
    /// Epoch (so each epoch sees different augmentations).
    pub epoch: u32,
}

/// `[B, 4, 3, S, S]` f32: the four views of each sample, scaled to 0..1, augmented if asked,
/// then normalised by the train-split channel statistics.
///
/// # Errors
/// When the tensor cannot be created on `device`.
pub fn batch_images(
    images: &ImageTensor,
    samples: &[&Sample],
    stats: &ChannelStats,
    augmentation: Option<BatchAugment<'_>>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let rows: Vec<usize> = samples.iter().map(|s| s.row).collect();
    batch_views(images, &rows, stats, augmentation, device)
}

/// [`batch_images`] of tensor rows `rows`.
///
/// # Errors
/// When the tensor cannot be created on `device`.
pub fn batch_views(
    images: &ImageTensor,
    rows: &[usize],
    stats: &ChannelStats,
    augmentation: Option<BatchAugment<'_>>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let side = images.side() as usize;
    let plane = side * side;
    let mut out = vec![0f32; rows.len() * VIEWS * 3 * plane];
    out.par_chunks_mut(3 * plane)
        .enumerate()
        .for_each(|(i, chw)| {
            let row = rows[i / VIEWS];
            let view = i % VIEWS;
            let hwc = images.view(row, view);
            let mut img: Vec<f32> = hwc.iter().map(|&v| f32::from(v) / 255.0).collect();
            if let Some(a) = augmentation {
                let mut rng = view_rng(a.seed, a.epoch, row, view);
                augment(&mut img, side, a.config, &mut rng);
            }
            stats.normalise_into(&img, chw);
        });
    Tensor::from_vec(out, (rows.len(), VIEWS, 3, side, side), device)
}

/// Class indices `[B]` (u32).
///
/// # Errors
/// When the tensor cannot be created.
pub fn batch_classes(samples: &[&Sample], device: &Device) -> candle_core::Result<Tensor> {
    let classes: Vec<u32> = samples.iter().map(|s| s.class as u32).collect();
    Tensor::from_vec(classes, samples.len(), device)
}

/// Scaled regression targets `[B, 2]` (f32).
///
/// # Errors
/// When the tensor cannot be created.
pub fn batch_targets(samples: &[&Sample], device: &Device) -> candle_core::Result<Tensor> {
    let t: Vec<f32> = samples
        .iter()
        .flat_map(|s| [s.target[0] as f32, s.target[1] as f32])
        .collect();
    Tensor::from_vec(t, (samples.len(), 2), device)
}

/// The order of training samples in `epoch`: a seeded shuffle, so a resumed run sees the
/// same batches as an uninterrupted one.
pub fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut h = blake3::Hasher::new();
    h.update(b"geoexp shuffle");
    h.update(&seed.to_le_bytes());
    h.update(&epoch.to_le_bytes());
    let mut rng = rand_chacha::ChaCha8Rng::from_seed(*h.finalize().as_bytes());
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_seeded_per_epoch() {
        assert_eq!(epoch_order(50, 1, 0), epoch_order(50, 1, 0));
        assert_ne!(epoch_order(50, 1, 0), epoch_order(50, 1, 1));
        assert_ne!(epoch_order(50, 1, 0), epoch_order(50, 2, 0));
        let mut sorted = epoch_order(50, 1, 3);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
