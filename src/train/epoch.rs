//! One epoch: shuffled batches through the network, the loss, and an optimiser update per
//! step; then one validation pass over the val and test splits.
//!
//! Shuffles and augmentations derive from (seed, epoch), so an epoch trains the same
//! whether the run started fresh or resumed just before it.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::experiment::Unfreeze;
use crate::geo::LatLon;
use crate::model::GeoNet;
use crate::vocab::Task;

use super::FitError;
use super::augment::is_active;
use super::data::{BatchAugment, Sample, batch_classes, batch_targets, epoch_order};
use super::error::Divergence;
use super::evaluate::{Predictor, scalar};
use super::event_log::EventLog;
use super::fit::{FitData, FitSettings};
use super::loss::{cross_entropy, haversine_targets, mse, soft_cross_entropy};
use super::progress::{FitEvent, FitObserver};
use super::resume::State;
use super::step::{NamedVars, first_non_finite, named_vars, step_vars, update};

/// What every epoch of one training shares.
pub struct Epochs<'a> {
    settings: &'a FitSettings,
    data: &'a FitData<'a>,
    device: &'a Device,
    vars: NamedVars,
    centroids: Vec<LatLon>,
    steps: usize,
}

/// What training an epoch gave: `train/loss` (and `train/acc`), and the last step's lr.
pub struct Trained {
    /// The training split's metrics.
    pub metrics: BTreeMap<String, f64>,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
}

/// Running sums over an epoch's steps.
#[derive(Default)]
struct Tally {
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

impl<'a> Epochs<'a> {
    /// The epochs of training `state`'s network.
    ///
    /// # Errors
    /// The network's vars cannot be listed.
    pub fn new(
        settings: &'a FitSettings,
        data: &'a FitData<'a>,
        device: &'a Device,
        state: &State,
    ) -> Result<Epochs<'a>, FitError> {
        let vars = named_vars(&state.varmap).map_err(FitError::epoch(state.next_epoch()))?;
        let centroids = data
            .info
            .centroids
            .iter()
            .map(|c| LatLon {
                lat: c[0],
                lon: c[1],
            })
            .collect();
        Ok(Epochs {
            settings,
            data,
            device,
            vars,
            centroids,
            steps: steps_per_epoch(data.train.len(), settings.batch_size),
        })
    }

    /// Optimiser steps per epoch.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Trains epoch `epoch` (0-based), logging each step's loss and lr to `events`.
    ///
    /// # Errors
    /// A step failed, or the loss or the weights stopped being finite.
    pub fn train(
        &self,
        epoch: u32,
        state: &mut State,
        events: &mut EventLog,
        observer: &dyn FitObserver,
    ) -> Result<Trained, FitError> {
        let s = self.settings;
        let trainable = self.trainable_blocks(epoch, state.net.backbone_blocks());
        let (head, backbone) = step_vars(&self.vars, &state.net, trainable);
        let order = epoch_order(self.data.train.len(), s.seed, epoch);
        observer.event(FitEvent::EpochStarted {
            epoch,
            epochs: s.epochs,
            steps: self.steps,
        });
        let clock = Instant::now();
        let mut tally = Tally::default();
        let mut lr = s.lr;
        for (i, chunk) in order.chunks(s.batch_size).enumerate() {
            let step = epoch as usize * self.steps + i;
            lr = state.scheduler.lr(step);
            let batch: Vec<&Sample> = chunk.iter().map(|&j| &self.data.train[j]).collect();
            let (loss, correct) = self
                .loss(&state.net, &batch, epoch, step, trainable)
                .map_err(FitError::step(epoch, i))?;
            let loss_value = scalar(&loss).map_err(FitError::step(epoch, i))?;
            if !loss_value.is_finite() {
                let what = format!(
                    "the loss is {loss_value} at step {} of {} (learning rate {lr:.3e} then)",
                    i + 1,
                    self.steps
                );
                return Err(self.diverged(epoch, what));
            }
            let backbone_lr = lr * s.backbone_lr / s.lr;
            update(
                &loss,
                &mut state.optimizer,
                (&head, lr),
                (&backbone, backbone_lr),
            )
            .map_err(FitError::step(epoch, i))?;
            tally.loss_sum += loss_value * batch.len() as f64;
            tally.correct += correct;
            tally.seen += batch.len();
            events.scalar("lr", step as i64, lr);
            events.scalar("train/batch_loss", step as i64, loss_value);
            observer.event(FitEvent::Step {
                mean_loss: tally.loss_sum / tally.seen as f64,
                locations_per_second: tally.seen as f64 / clock.elapsed().as_secs_f64(),
            });
        }
        // A non-finite gradient in the epoch's last step leaves a finite loss but broken
        // weights: never checkpoint those. Only what this epoch updated can have broken (a
        // frozen backbone is checked for nothing every epoch).
        let updated: Vec<_> = head.iter().chain(&backbone).cloned().collect();
        if let Some(name) = first_non_finite(&updated).map_err(FitError::epoch(epoch))? {
            let what = format!("`{name}` holds NaN or infinite values after the epoch's last step");
            return Err(self.diverged(epoch, what));
        }
        Ok(Trained {
            metrics: tally.metrics(s.task),
            lr,
        })
    }

    /// Backbone blocks that train in `epoch`: none before `train.unfreeze_epoch`.
    fn trainable_blocks(&self, epoch: u32, blocks: usize) -> usize {
        if epoch < self.settings.unfreeze_epoch {
            return 0;
        }
        match self.settings.unfreeze {
            Unfreeze::All => blocks,
            Unfreeze::None => 0,
            Unfreeze::Last(n) => n.min(blocks),
        }
    }

    /// The batch's loss, and how many of its locations the network classed right.
    fn loss(
        &self,
        net: &GeoNet,
        batch: &[&Sample],
        epoch: u32,
        step: usize,
        trainable: usize,
    ) -> candle_core::Result<(Tensor, usize)> {
        let s = self.settings;
        let augment = is_active(&s.augment).then_some(BatchAugment {
            config: &s.augment,
            seed: s.seed,
            epoch,
        });
        let x = self.data.inputs.batch(batch, augment, self.device)?;
        let y = net.forward_train(&x, trainable, dropout_key(s.seed, step))?;
        if s.task == Task::Regression {
            return Ok((mse(&y, &batch_targets(batch, self.device)?)?, 0));
        }
        let predicted = y.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
        let correct = predicted
            .iter()
            .zip(batch)
            .filter(|(p, s)| **p as usize == s.class)
            .count();
        let loss = if s.haversine_tau_km > 0.0 {
            let truth: Vec<LatLon> = batch
                .iter()
                .map(|s| LatLon {
                    lat: s.lat,
                    lon: s.lon,
                })
                .collect();
            let classes: Vec<usize> = batch.iter().map(|s| s.class).collect();
            let soft = haversine_targets(&self.centroids, &truth, &classes, s.haversine_tau_km);
            let soft = Tensor::from_vec(soft, (batch.len(), self.centroids.len()), self.device)?;
            soft_cross_entropy(&y, &soft)?
        } else {
            cross_entropy(&y, &batch_classes(batch, self.device)?, s.label_smoothing)?
        };
        Ok((loss, correct))
    }

    /// The training split's metrics after `epoch`, with those of the val and test splits.
    ///
    /// # Errors
    /// Predicting a split failed.
    pub fn validate(
        &self,
        net: &GeoNet,
        epoch: u32,
        mut metrics: BTreeMap<String, f64>,
    ) -> Result<BTreeMap<String, f64>, FitError> {
        let predictor = Predictor {
            net,
            info: &self.data.info,
            projection: self.data.projection,
            device: self.device,
            batch_size: self.settings.batch_size,
            keep_probs: false,
        };
        for (split, samples) in [("val", &self.data.val), ("test", &self.data.test)] {
            if samples.is_empty() {
                continue;
            }
            let d = self.data;
            let (_, m) = predictor
                .run(d.inputs, samples, d.country_km)
                .map_err(|source| FitError::Evaluate {
                    split,
                    epoch: epoch + 1,
                    source,
                })?;
            for (k, v) in m {
                metrics.insert(format!("{split}/{k}"), v);
            }
        }
        Ok(metrics)
    }

    fn diverged(&self, epoch: u32, what: String) -> FitError {
        FitError::Diverged(Divergence {
            epoch,
            epochs: self.settings.epochs,
            what,
            lr: self.settings.lr,
            backbone_lr: self.settings.backbone_lr,
        })
    }
}

impl Tally {
    fn metrics(&self, task: Task) -> BTreeMap<String, f64> {
        let seen = self.seen.max(1) as f64;
        let mut metrics = BTreeMap::from([("train/loss".to_owned(), self.loss_sum / seen)]);
        if task == Task::Classification {
            metrics.insert("train/acc".to_owned(), self.correct as f64 / seen);
        }
        metrics
    }
}

/// The key a training step's dropout masks derive from: (seed, step), so a resumed run
/// drops what an uninterrupted one does.
fn dropout_key(seed: u64, step: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(&(step as u64).to_le_bytes());
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().unwrap_or_default())
}

/// Optimiser steps in an epoch of `locations` in batches of `batch_size` (at least one).
pub fn steps_per_epoch(locations: usize, batch_size: usize) -> usize {
    locations.div_ceil(batch_size).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_batch_is_a_step_and_an_empty_split_still_one() {
        assert_eq!(steps_per_epoch(10, 4), 3);
        assert_eq!(steps_per_epoch(8, 4), 2);
        assert_eq!(steps_per_epoch(0, 4), 1);
    }

    #[test]
    fn the_train_metrics_are_means_over_locations() {
        let tally = Tally {
            loss_sum: 3.0,
            correct: 1,
            seen: 4,
        };
        let m = tally.metrics(Task::Classification);
        assert_eq!(m["train/loss"], 0.75);
        assert_eq!(m["train/acc"], 0.25);
        assert!(!tally.metrics(Task::Regression).contains_key("train/acc"));
    }
}
