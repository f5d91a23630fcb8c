//! Training: batches, augmentation, optimisers, schedules, losses, metrics, checkpoints
//! and the loop that ties them together.
//!
//! - [`data`]: samples per split, normalised and augmented batches, seeded shuffles.
//! - [`augment`]: random resized crop, colour jitter, Gaussian noise (train only).
//! - [`optimizer`], [`scheduler`]: Adam/AdamW/SGD with exportable state; lr schedules.
//! - [`loss`], [`predict`], [`metrics`]: losses, centroid-weighted predictions, metrics.
//! - [`evaluate`]: a network over a split → predictions and metrics.
//! - [`checkpoint`]: safetensors checkpoints with their metadata.
//! - [`device`]: `train.device` → candle device.
//! - [`memory`]: allocator settings that keep a step's buffers mapped between steps.
//! - [`fit`]: the loop, with resume.

mod adam_cpu;
pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod fit;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod optimizer;
pub mod predict;
pub mod scheduler;

#[cfg(test)]
mod kernel_steps;
