//! A checkpoint turned back into a model that answers: weights restored, projection ready,
//! and the network's raw outputs read as positions (and class probabilities).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::geo::{Projection, projection};
use crate::model::{Fusion, GeoNet, Kernels};
use crate::train::checkpoint::{self, ModelInfo};
use crate::train::fit::build_net_with;
use crate::train::predict::{Outputs, before, read_outputs};

use super::InferError;

/// Classification or regression, as the checkpoint says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    /// Softmax over grid cells; the position is the weighted mean of class centroids.
    Classification,
    /// Two outputs: min-max scaled projected coordinates.
    Regression,
}

/// A trained network with everything needed to turn views into coordinates.
pub struct Model {
    net: GeoNet,
    info: ModelInfo,
    projection: Box<dyn Projection>,
    device: Device,
    path: PathBuf,
    epoch: u32,
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
    /// describes and restores every weight.
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
        let fusion = if info.fusion == "mean" {
            Fusion::Mean
        } else {
            Fusion::Concat
        };
        let (varmap, net) = build_net_with(&info, fusion, kernels, loaded.meta.seed, None, device)
            .map_err(|e| InferError::Build {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        checkpoint::restore_vars(path, &varmap, &loaded.model)?;
        let projection = projection(&info.crs).map_err(|e| InferError::Build {
            path: path.to_path_buf(),
            message: format!("CRS {}: {e}", info.crs),
        })?;
        Ok(Model {
            net,
            info,
            projection,
            device: device.clone(),
            path: path.to_path_buf(),
            epoch: loaded.meta.epoch,
        })
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
    pub fn task(&self) -> TaskKind {
        if self.info.task == "classification" {
            TaskKind::Classification
        } else {
            TaskKind::Regression
        }
    }

    /// Side of the square views the network takes.
    pub fn side(&self) -> u32 {
        self.info.image_size
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
        let outputs = self.read(&self.forward(x)?)?;
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

/// A small untrained classification checkpoint for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};

    use candle_core::Device;

    use crate::images::ChannelStats;
    use crate::model::Fusion;
    use crate::train::checkpoint::{self, CheckpointMeta, FORMAT, ModelInfo};
    use crate::train::fit::build_net;
    use crate::train::scheduler::SchedulerState;

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
            fusion: "concat".into(),
            task: "classification".into(),
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
        };
        let (varmap, _) = build_net(&info, Fusion::Concat, seed, None, &Device::Cpu).unwrap();
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
        checkpoint::save(dir, name, &varmap, Vec::new(), &meta).unwrap();
        dir.join(format!("{name}.safetensors"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_answers_with_positions_and_ranked_classes() {
        let dir = tempfile::tempdir().unwrap();
        let path = testing::write_checkpoint(dir.path(), "m", 3);
        let model = Model::open(&path, &Device::Cpu).unwrap();
        assert_eq!(
            (model.task(), model.side()),
            (TaskKind::Classification, testing::SIDE)
        );
        let side = testing::SIDE as usize;
        let location: Vec<u8> = (0..4 * side * side * 3)
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        let x = super::super::input::batch(
            &[&location, &location],
            testing::SIDE,
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
