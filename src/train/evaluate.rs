//! Running a network over a split: predicted coordinates, per-sample errors and the
//! split's metrics. Used for validation during training and by the evaluate stage.

use std::collections::BTreeMap;

use candle_core::{D, Device, Tensor};

use crate::geo::{Projection, haversine_km};
use crate::graph::StageError;
use crate::images::{ChannelStats, ImageTensor};
use crate::model::GeoNet;

use super::checkpoint::ModelInfo;
use super::data::{Sample, batch_classes, batch_images, batch_targets};
use super::loss::{cross_entropy, mse};
use super::metrics::Evaluation;
use super::predict::{rank_of, weighted_centroid};

/// What turns a network's outputs into coordinates.
pub struct Predictor<'a> {
    /// The network.
    pub net: &'a GeoNet,
    /// Task, centroids, scaling, normalisation.
    pub info: &'a ModelInfo,
    /// Projected CRS of centroids and regression targets.
    pub projection: &'a dyn Projection,
    /// Where the network lives.
    pub device: &'a Device,
    /// Locations per forward pass.
    pub batch_size: usize,
}

/// One sample's prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Predicted latitude.
    pub lat: f64,
    /// Predicted longitude.
    pub lon: f64,
    /// Haversine error in km.
    pub error_km: f64,
    /// Most probable class (classification).
    pub class: Option<usize>,
    /// Rank of the true class, 0 = top-1 (classification).
    pub rank: Option<usize>,
}

impl Predictor<'_> {
    fn classification(&self) -> bool {
        self.info.task == "classification"
    }

    /// Predicts every sample, in order, and the split's metrics (with a loss comparable to
    /// the training loss, unsmoothed).
    ///
    /// # Errors
    /// A tensor operation or a projection failed.
    pub fn run(
        &self,
        images: &ImageTensor,
        stats: &ChannelStats,
        samples: &[Sample],
        country_km: f64,
    ) -> Result<(Vec<Prediction>, BTreeMap<String, f64>), StageError> {
        let mut eval = Evaluation::new(country_km);
        let mut out = Vec::with_capacity(samples.len());
        let refs: Vec<&Sample> = samples.iter().collect();
        for batch in refs.chunks(self.batch_size.max(1)) {
            let x = batch_images(images, batch, stats, None, self.device)?;
            let y = self.net.forward(&x, 0)?;
            let (loss, mut xy, ranks, classes) = if self.classification() {
                let targets = batch_classes(batch, self.device)?;
                let loss = cross_entropy(&y, &targets, 0.0)?.to_scalar::<f32>()?;
                let probs = candle_nn::ops::softmax(&y, D::Minus1)?.to_vec2::<f32>()?;
                let centroids: Vec<[f64; 2]> =
                    self.info.centroids.iter().map(|c| [c[2], c[3]]).collect();
                let xy: Vec<(f64, f64)> = probs
                    .iter()
                    .map(|p| {
                        let [x, y] = weighted_centroid(p, &centroids, self.info.top_k);
                        (x, y)
                    })
                    .collect();
                let ranks: Vec<usize> = probs
                    .iter()
                    .zip(batch)
                    .map(|(p, s)| rank_of(p, s.class))
                    .collect();
                let classes: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
                (loss, xy, Some(ranks), Some(classes))
            } else {
                let targets = batch_targets(batch, self.device)?;
                let loss = mse(&y, &targets)?.to_scalar::<f32>()?;
                let [x_min, x_max, y_min, y_max] = self.info.scaling;
                let xy = y
                    .to_dtype(candle_core::DType::F64)?
                    .to_vec2::<f64>()?
                    .iter()
                    .map(|v| {
                        (
                            x_min + v[0] * (x_max - x_min),
                            y_min + v[1] * (y_max - y_min),
                        )
                    })
                    .collect();
                (loss, xy, None, None)
            };
            eval.add_loss(f64::from(loss) * batch.len() as f64, batch.len());
            self.projection.inverse(&mut xy)?;
            for (i, (s, (lon, lat))) in batch.iter().zip(xy).enumerate() {
                let error_km = haversine_km(s.lat, s.lon, lat, lon);
                let rank = ranks.as_ref().map(|r| r[i]);
                eval.add(error_km, rank);
                out.push(Prediction {
                    lat,
                    lon,
                    error_km,
                    class: classes.as_ref().map(|c| c[i]),
                    rank,
                });
            }
        }
        Ok((out, eval.metrics()))
    }
}

fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

/// Length of the bounding box diagonal in km: the country scale `S` of the country score.
pub fn diagonal_km(min_lat: f64, min_lon: f64, max_lat: f64, max_lon: f64) -> f64 {
    haversine_km(min_lat, min_lon, max_lat, max_lon)
}

/// A scalar tensor (a loss) as f64.
///
/// # Errors
/// A tensor operation failed.
pub fn scalar(t: &Tensor) -> candle_core::Result<f64> {
    Ok(f64::from(
        t.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?,
    ))
}
