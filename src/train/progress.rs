//! What the training loop tells whoever watches it: typed [`FitEvent`]s, sent to a
//! [`FitObserver`]. The loop never prints; the train stage forwards the events to the
//! engine's reporter, and the CLI formats them (`cli/fit_report.rs`).

use std::path::PathBuf;

use super::checkpoint::EpochRecord;

/// One thing that happened in a training.
#[derive(Clone, Debug, PartialEq)]
pub enum FitEvent {
    /// A `last` checkpoint could not be read; it was set aside and training starts over.
    CannotResume {
        /// Why it could not be read.
        error: String,
        /// Where it was moved.
        kept_as: PathBuf,
    },
    /// Training continues from a `last` checkpoint.
    Resumed {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// Epochs it holds (it was written after this epoch, 1-based).
        epochs_done: u32,
    },
    /// The TensorBoard event file could not be continued; a new one starts.
    NewEventFile {
        /// Why it could not be continued.
        error: String,
    },
    /// An epoch starts.
    EpochStarted {
        /// Epoch, 0-based.
        epoch: u32,
        /// Epochs in all.
        epochs: u32,
        /// Steps (batches) in the epoch.
        steps: usize,
    },
    /// A training step finished.
    Step {
        /// Mean loss of the epoch so far.
        mean_loss: f64,
        /// Locations trained per second in this epoch so far.
        locations_per_second: f64,
    },
    /// An epoch was trained, validated and checkpointed.
    EpochFinished {
        /// Its metrics and last learning rate.
        record: EpochRecord,
        /// Epochs in all.
        epochs: u32,
        /// Wall time of the epoch, validation and checkpoints included.
        seconds: f64,
        /// Whether it is the best epoch so far (it was written as `best`).
        best: bool,
    },
}

/// Receives a training's events.
pub trait FitObserver {
    /// Handles one event.
    fn event(&self, event: FitEvent);
}

/// An observer that ignores everything.
pub struct Unobserved;

impl FitObserver for Unobserved {
    fn event(&self, _: FitEvent) {}
}
