//! Experiment files: schema, layered loading, validation.
//!
//! - [`schema`]: the serde structs and their defaults (the only source of defaults).
//! - [`keys`]: the documented key table behind unknown-key errors and the README reference.
//! - [`load`](mod@load): defaults < `extends` chain < file < `GEOEXP_*` < `--set`, with provenance.
//! - [`sweep`]: the `[sweep]` table and `--grid` flags expanded into trial points.
//! - [`sample`]: a random search's distributions and seeded draws.
//! - [`validate`]: ranges and consistency, before any stage runs.
//! - [`error`]: errors that name the file and line, variable, or flag at fault.
//!
//! This module reads configuration only; it knows nothing of stages, geography or models.
//! The words it shares with them (tasks, fusions, backbone and metric names) are
//! [`crate::vocab`]'s.

pub mod error;
pub mod keys;
pub mod load;
pub mod sample;
pub mod schema;
pub mod sweep;
pub mod validate;

pub use error::{ConfigError, ConfigErrorKind, ConfigErrors, Origin};
pub use load::{LoadOptions, Loaded, load};
pub use schema::{
    AugmentConfig, CellKind, Centroid, ClassesConfig, DatasetConfig, Experiment, ModelConfig,
    MonitorMode, Optimizer, SchedulerConfig, SchedulerKind, SplitConfig, SyntheticConfig,
    TrainConfig, Unfreeze,
};

#[cfg(test)]
mod tests;
