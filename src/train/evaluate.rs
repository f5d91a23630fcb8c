//! Running a network over a split: predicted coordinates, per-sample errors and the
//! split's metrics. Used for validation during training and by the evaluate stage.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::geo::{Projection, haversine_km};
use crate::model::GeoNet;
use crate::vocab::Task;

use super::checkpoint::ModelInfo;
use super::data::{Inputs, Sample, batch_classes, batch_targets};
use super::loss::{cross_entropy, mse};
use super::metrics::Evaluation;
use super::predict::{PredictError, rank_of, read_outputs};

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
    /// Keep each prediction's softmax row ([`Prediction::probs`]).
    pub keep_probs: bool,
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
    /// The softmax row (classification, with [`Predictor::keep_probs`]).
    pub probs: Option<Vec<f32>>,
}

impl Predictor<'_> {
    fn classification(&self) -> bool {
        self.info.task == Task::Classification
    }

    /// Predicts every sample, in order, and the split's metrics (with a loss comparable to
    /// the training loss, unsmoothed).
    ///
    /// # Errors
    /// A tensor operation or a projection failed.
    pub fn run(
        &self,
        inputs: &Inputs,
        samples: &[Sample],
        country_km: f64,
    ) -> Result<(Vec<Prediction>, BTreeMap<String, f64>), PredictError> {
        let mut eval = Evaluation::new(country_km);
        let mut out = Vec::with_capacity(samples.len());
        let refs: Vec<&Sample> = samples.iter().collect();
        for batch in refs.chunks(self.batch_size.max(1)) {
            let (y, loss) = self.forward(inputs, batch).map_err(PredictError::Forward)?;
            let outputs = read_outputs(self.info, self.projection, &y)?;
            let ranks: Option<Vec<usize>> = outputs.probs.as_ref().map(|probs| {
                probs
                    .iter()
                    .zip(batch)
                    .map(|(p, s)| rank_of(p, s.class))
                    .collect()
            });
            let classes: Option<Vec<usize>> = outputs
                .probs
                .as_ref()
                .map(|probs| probs.iter().map(|p| argmax(p)).collect());
            eval.add_loss(f64::from(loss) * batch.len() as f64, batch.len());
            for (i, (s, (lat, lon))) in batch.iter().zip(outputs.positions).enumerate() {
                let error_km = haversine_km(s.lat, s.lon, lat, lon);
                let rank = ranks.as_ref().map(|r| r[i]);
                eval.add(error_km, rank);
                out.push(Prediction {
                    lat,
                    lon,
                    error_km,
                    class: classes.as_ref().map(|c| c[i]),
                    rank,
                    probs: outputs
                        .probs
                        .as_ref()
                        .filter(|_| self.keep_probs)
                        .map(|p| p[i].clone()),
                });
            }
        }
        Ok((out, eval.metrics()))
    }
}

impl Predictor<'_> {
    /// The outputs for `batch` and their mean loss.
    fn forward(&self, inputs: &Inputs, batch: &[&Sample]) -> candle_core::Result<(Tensor, f32)> {
        let x = inputs.batch(batch, None, self.device)?;
        let y = self.net.forward(&x, 0)?;
        let loss = if self.classification() {
            cross_entropy(&y, &batch_classes(batch, self.device)?, 0.0)?
        } else {
            mse(&y, &batch_targets(batch, self.device)?)?
        };
        let loss = loss.to_scalar::<f32>()?;
        Ok((y, loss))
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
