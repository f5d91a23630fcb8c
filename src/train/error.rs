//! [`FitError`]: why a training stopped, with the epoch and step where that helps.

use std::path::PathBuf;

use crate::model::ModelError;
use crate::track::tensorboard::TensorboardError;

use super::checkpoint::CheckpointError;
use super::optimizer::OptimizerError;
use super::predict::PredictError;

/// Everything that can stop [`super::fit::fit`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FitError {
    /// The network could not be built or its pretrained weights loaded.
    #[error("building the network")]
    Model(#[from] ModelError),
    /// The `last` checkpoint was read but its optimiser state does not fit.
    #[error("resuming from {}", path.display())]
    Resume {
        /// The checkpoint.
        path: PathBuf,
        /// What did not fit.
        #[source]
        source: Box<OptimizerError>,
    },
    /// A tensor operation of a training step failed.
    #[error("epoch {epoch}, step {step}")]
    Step {
        /// Epoch, 1-based as printed.
        epoch: u32,
        /// Step within the epoch, 1-based.
        step: usize,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// A tensor operation between steps failed (checking or reading the weights).
    #[error("after epoch {epoch}")]
    Epoch {
        /// Epoch, 1-based as printed.
        epoch: u32,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// Predicting a validation or test split failed.
    #[error("evaluating the {split} split after epoch {epoch}")]
    Evaluate {
        /// `val` or `test`.
        split: &'static str,
        /// Epoch, 1-based as printed.
        epoch: u32,
        /// What failed.
        #[source]
        source: PredictError,
    },
    /// The loss or the weights stopped being finite.
    #[error("{0}")]
    Diverged(Divergence),
    /// `train.monitor` names a metric this run does not compute.
    #[error("train.monitor {monitor:?} is not a metric of this run (it has: {})", available.join(", "))]
    UnknownMonitor {
        /// The configured monitor.
        monitor: String,
        /// The metrics the run has.
        available: Vec<String>,
    },
    /// Writing or reading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Saving the optimiser's state failed.
    #[error("saving the optimiser state")]
    OptimizerState(#[source] Box<OptimizerError>),
    /// The TensorBoard event file could not be written.
    #[error(transparent)]
    Events(#[from] TensorboardError),
    /// A file could not be linked into the output directory.
    #[error("{what} {}", path.display())]
    File {
        /// What was being done: `writing`, `linking`, ..
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the work directory could not be written.
    #[error(transparent)]
    Write(#[from] crate::graph::GraphError),
    /// Training stopped at the budget it was given (`FitSettings::stop_after`), resumable.
    #[error("stopped after epoch {done} of {epochs}, as asked")]
    Paused {
        /// Epochs trained so far.
        done: u32,
        /// `train.epochs`.
        epochs: u32,
    },
    /// `train.epochs` asked for no epoch.
    #[error("training ran no epoch (train.epochs is 0?)")]
    NoEpoch,
}

/// Where and how a training diverged, and what of it was kept.
#[derive(Debug)]
pub struct Divergence {
    /// Epoch, 0-based.
    pub epoch: u32,
    /// Epochs the run was to train.
    pub epochs: u32,
    /// What was not finite: the loss at a step, or a variable.
    pub what: String,
    /// `train.lr`.
    pub lr: f64,
    /// `train.backbone_lr` (equal to `lr` when unset).
    pub backbone_lr: f64,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backbone = if self.backbone_lr == self.lr {
            String::new()
        } else {
            format!(", train.backbone_lr = {}", self.backbone_lr)
        };
        write!(
            f,
            "training diverged in epoch {} of {}: {}. A learning rate too high for this model \
             and batch size is the usual cause (train.lr = {}{backbone}): lower it, or warm up \
             with train.scheduler. ",
            self.epoch + 1,
            self.epochs,
            self.what,
            self.lr,
        )?;
        match self.epoch {
            0 => write!(f, "Nothing was kept (it diverged in the first epoch)."),
            1 => write!(
                f,
                "Epoch 1 is kept in the `last` checkpoint, and running this experiment again \
                 resumes from there."
            ),
            n => write!(
                f,
                "Epochs 1 to {n} are kept in the `last` checkpoint, and running this \
                 experiment again resumes from there."
            ),
        }
    }
}

impl FitError {
    /// `source` as the failure of step `step` (0-based) of epoch `epoch` (0-based).
    pub(super) fn step(epoch: u32, step: usize) -> impl FnOnce(candle_core::Error) -> FitError {
        move |source| FitError::Step {
            epoch: epoch + 1,
            step: step + 1,
            source,
        }
    }

    /// `source` as a failure between the steps of epoch `epoch` (0-based).
    pub(super) fn epoch(epoch: u32) -> impl FnOnce(candle_core::Error) -> FitError {
        move |source| FitError::Epoch {
            epoch: epoch + 1,
            source,
        }
    }

    /// `source` as a failure writing `path`.
    pub(super) fn file(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> FitError {
        let path = path.to_path_buf();
        move |source| FitError::File { what, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn divergence(epoch: u32, backbone_lr: f64) -> String {
        FitError::Diverged(Divergence {
            epoch,
            epochs: 5,
            what: "the loss is NaN at step 2 of 4".into(),
            lr: 0.1,
            backbone_lr,
        })
        .to_string()
    }

    #[test]
    fn divergence_says_what_was_kept_and_what_to_change() {
        assert_eq!(
            divergence(0, 0.1),
            "training diverged in epoch 1 of 5: the loss is NaN at step 2 of 4. A learning \
             rate too high for this model and batch size is the usual cause (train.lr = 0.1): \
             lower it, or warm up with train.scheduler. Nothing was kept (it diverged in the \
             first epoch)."
        );
        assert!(divergence(1, 0.01).contains(
            "(train.lr = 0.1, train.backbone_lr = 0.01): lower it, or warm up with \
             train.scheduler. Epoch 1 is kept in the `last` checkpoint"
        ));
        assert!(divergence(3, 0.1).ends_with(
            "Epochs 1 to 3 are kept in the `last` checkpoint, and running this experiment \
             again resumes from there."
        ));
    }

    #[test]
    fn step_errors_name_epoch_and_step_one_based() {
        let e = FitError::step(2, 6)(candle_core::Error::Msg("boom".into()));
        let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert_eq!(chain, "epoch 3, step 7: boom");
    }
}
