//! A checkpoint turned back into a model that answers: weights restored, projection ready,
//! and the network's raw outputs read as positions (and class probabilities).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::geo::{Projection, projection};
use crate::model::{GeoNet, build_net};
use crate::train::checkpoint::{self, ModelInfo};
use crate::train::predict::{Outputs, before, read_outputs};
use crate::vocab::{Kernels, Task};

use super::InferError;
use super::gallery;
use super::refine::{Gallery, RefineSettings, refine_batch};

/// A trained network with everything needed to turn views into coordinates.
pub struct Model {
    net: GeoNet,
    info: ModelInfo,
    projection: Box<dyn Projection>,
    device: Device,
    path: PathBuf,
    epoch: u32,
    /// The gallery shipped beside the checkpoint, when there is one.
    refinement: Option<(Gallery, RefineSettings)>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("backbone", &self.info.backbone)
            .field("task", &self.info.task)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// One location's answer, for people and programs outside geoexp.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Answer {
    /// Predicted latitude.
    pub latitude: f64,
    /// Predicted longitude.
    pub longitude: f64,
    /// The most probable classes, best first (empty for regression).
    pub top_classes: Vec<ClassScore>,
}

/// One class of an [`Answer`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassScore {
    /// Class index (a row of the run's `classes.csv`).
    pub class: usize,
    /// Softmax probability.
    pub probability: f32,
    /// The class centroid's latitude.
    pub latitude: f64,
    /// The class centroid's longitude.
    pub longitude: f64,
}

impl Model {
    /// Loads the checkpoint at `path` onto `device`: builds the network its metadata
    /// describes and restores every weight. When the gallery file beside it exists
    /// ([`gallery::path_for`]), predictions are refined with it.
    ///
    /// # Errors
    /// Unreadable or foreign checkpoints, unknown backbones, missing tensors, bad CRS.
    pub fn open(path: &Path, device: &Device) -> Result<Model, InferError> {
        Self::open_with(path, device, Kernels::Fast)
    }

    /// Like [`Model::open`] on a choice of CPU kernels (the evaluate stage follows the run's
    /// `train.kernels`).
    ///
    /// # Errors
    /// As [`Model::open`].
    pub fn open_with(path: &Path, device: &Device, kernels: Kernels) -> Result<Model, InferError> {
        let loaded = checkpoint::load(path, device)?;
        let info = loaded.meta.model;
        let (varmap, net) = build_net(&info.net_spec(kernels), loaded.meta.seed, None, device)
            .map_err(|e| InferError::Build {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        checkpoint::restore_vars(path, &varmap, &loaded.model)?;
        let projection = projection(&info.crs).map_err(|e| InferError::Build {
            path: path.to_path_buf(),
            message: format!("CRS {}: {e}", info.crs),
        })?;
        let gallery = gallery::path_for(path);
        let refinement = if gallery.is_file() && info.task == Task::Classification {
            Some(gallery::read(&gallery)?)
        } else {
            None
        };
        Ok(Model {
            net,
            info,
            projection,
            device: device.clone(),
            path: path.to_path_buf(),
            epoch: loaded.meta.epoch,
            refinement,
        })
    }

    /// The network, for running it another way (the features stage embeds with it).
    pub fn into_net(self) -> GeoNet {
        self.net
    }

    /// Whether predictions are refined with a gallery.
    pub fn refines(&self) -> bool {
        self.refinement.is_some()
    }

    /// What the checkpoint says about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The epoch the checkpoint was written after (0-based).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The device the network lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The network.
    pub fn net(&self) -> &GeoNet {
        &self.net
    }

    /// The projection of centroids and regression targets.
    pub fn projection(&self) -> &dyn Projection {
        self.projection.as_ref()
    }

    /// Classification or regression.
    pub fn task(&self) -> Task {
        self.info.task
    }

    /// Side of the square views the network takes.
    pub fn side(&self) -> u32 {
        self.info.image_size
    }

    /// How views for this network are decoded: its side, with its family's resize filter
    /// (as the images stage decoded the training views).
    pub fn decode_options(&self) -> crate::images::DecodeOptions {
        crate::images::DecodeOptions::new(self.side())
            .with_resample(crate::images::Resample::for_backbone(&self.info.backbone))
    }

    /// The raw outputs (logits or scaled coordinates) for `x`: `[B, 4, 3, S, S]`,
    /// normalised; BatchNorm in eval mode.
    ///
    /// # Errors
    /// A tensor operation failed (wrong shape, device).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, InferError> {
        Ok(self.net.forward(x, 0)?)
    }

    /// Reads raw outputs `y` `[B, outputs]` as positions.
    ///
    /// # Errors
    /// A tensor operation or the inverse projection failed.
    pub fn read(&self, y: &Tensor) -> Result<Outputs, InferError> {
        Ok(read_outputs(&self.info, self.projection.as_ref(), y)?)
    }

    /// Positions and the `top` most probable classes for a normalised batch.
    ///
    /// # Errors
    /// As [`Model::forward`] and [`Model::read`].
    pub fn predict(&self, x: &Tensor, top: usize) -> Result<Vec<Answer>, InferError> {
        let Some((gallery, settings)) = &self.refinement else {
            let outputs = self.read(&self.forward(x)?)?;
            return Ok(self.answers(outputs, top));
        };
        let features = self.net.features(x, 0)?;
        let mut outputs = self.read(&self.net.forward(&features, 0)?)?;
        let queries = features.mean(1)?.flatten_all()?.to_vec1::<f32>()?;
        if let Some(probs) = &outputs.probs {
            let refined = refine_batch(gallery, &queries, probs, &outputs.positions, settings);
            for (p, r) in outputs.positions.iter_mut().zip(refined) {
                *p = (r.lat, r.lon);
            }
        }
        Ok(self.answers(outputs, top))
    }

    /// Turns read outputs into answers carrying the `top` most probable classes.
    pub fn answers(&self, outputs: Outputs, top: usize) -> Vec<Answer> {
        let Outputs { positions, probs } = outputs;
        positions
            .into_iter()
            .enumerate()
            .map(|(i, (latitude, longitude))| Answer {
                latitude,
                longitude,
                top_classes: probs
                    .as_ref()
                    .map(|p| top_classes(&p[i], &self.info.centroids, top))
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// The `top` most probable classes of one softmax row, ties to the lower index.
fn top_classes(probs: &[f32], centroids: &[[f64; 4]], top: usize) -> Vec<ClassScore> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| before(probs, a, b));
    order
        .into_iter()
        .take(top)
        .map(|class| {
            let c = centroids.get(class).copied().unwrap_or([f64::NAN; 4]);
            ClassScore {
                class,
                probability: probs[class],
                latitude: c[0],
                longitude: c[1],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::checkpoint::testing::{SIDE, write_checkpoint};

    #[test]
    fn a_checkpoint_answers_with_positions_and_ranked_classes() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_checkpoint(dir.path(), "m", 3);
        let model = Model::open(&path, &Device::Cpu).unwrap();
        assert_eq!((model.task(), model.side()), (Task::Classification, SIDE));
        let side = SIDE as usize;
        let location: Vec<u8> = (0..4 * side * side * 3)
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        let x = super::super::input::batch(
            &[&location, &location],
            SIDE,
            &model.info().normalisation,
            &Device::Cpu,
        )
        .unwrap();
        let answers = model.predict(&x, 2).unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0], answers[1], "same views, same answer");
        let a = &answers[0];
        assert_eq!(a.top_classes.len(), 2);
        assert!(a.top_classes[0].probability >= a.top_classes[1].probability);
        // The weighted mean of three centroids lies within their bounding box.
        assert!((43.5..=45.8).contains(&a.latitude), "{a:?}");
        assert!((14.4..=16.4).contains(&a.longitude), "{a:?}");
    }

    #[test]
    fn top_classes_are_ordered_by_probability_then_index() {
        let centroids = [
            [45.0, 15.0, 0.0, 0.0],
            [44.0, 16.0, 0.0, 0.0],
            [43.0, 17.0, 0.0, 0.0],
        ];
        let top = top_classes(&[0.25, 0.5, 0.25], &centroids, 2);
        let got: Vec<(usize, f32, f64)> = top
            .iter()
            .map(|c| (c.class, c.probability, c.latitude))
            .collect();
        assert_eq!(got, vec![(1, 0.5, 44.0), (0, 0.25, 45.0)]);
        assert_eq!(top_classes(&[0.25, 0.5, 0.25], &centroids, 9).len(), 3);
    }
}
