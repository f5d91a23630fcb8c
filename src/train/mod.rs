//! Training: batches, augmentation, optimisers, schedules, losses, metrics, checkpoints
//! and the loop that ties them together.
//!
//! The loop is [`fit::fit`]: plain inputs in (settings, the image tensor or the features
//! stage's embeddings, samples, a work and an output directory), typed [`progress::FitEvent`]s out to an observer, and a
//! [`FitError`] when it stops. It knows nothing of the run graph; the train stage adapts
//! it (`stages/train.rs`).
//!
//! The loop, piece by piece:
//! - [`fit`]: the composition, and publishing the results into the output directory.
//! - [`resume`]: a fresh start, or the state a `last` checkpoint holds.
//! - [`epoch`]: one training epoch, and the validation pass after it.
//! - [`step`]: which vars a step updates, and the update (shared with `benches/step.rs`).
//! - [`policy`]: which checkpoints to write after an epoch (deciding only).
//! - [`checkpoint`]: safetensors checkpoints with their metadata; writing what the policy
//!   decided; checkpoint file names.
//! - [`event_log`]: the live TensorBoard file and the ledger that lets a resume continue it.
//! - [`history`]: the `metrics.csv` table.
//! - [`progress`]: the events the loop reports; [`error`]: why it stopped.
//!
//! What it is built from:
//! - [`data`]: samples per split, normalised and augmented batches (or embeddings), seeded
//!   shuffles.
//! - [`features`]: a frozen backbone's embeddings of every view, computed once, in one
//!   memory-mapped file.
//! - [`augment`]: random resized crop, colour jitter, Gaussian noise (train only).
//! - [`optimizer`], [`scheduler`]: Adam/AdamW/SGD with exportable state; lr schedules.
//! - [`loss`], [`predict`], [`metrics`]: losses, centroid-weighted predictions, metrics.
//! - [`evaluate`]: a network over a split → predictions and metrics.
//! - [`device`]: `train.device` → candle device.
//! - [`memory`]: allocator settings that keep a step's buffers mapped between steps.

mod adam_cpu;
pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod epoch;
pub mod error;
pub mod evaluate;
pub mod event_log;
pub mod features;
pub mod fit;
pub mod history;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod optimizer;
pub mod policy;
pub mod predict;
pub mod progress;
pub mod resume;
pub mod scheduler;
pub mod step;

pub use error::FitError;

#[cfg(test)]
mod kernel_steps;
