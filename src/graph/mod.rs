//! The run-graph engine: stages, content-hash keys, the cache, locks, plans, execution and
//! manifests.
//!
//! This module is ML- and geography-agnostic: it imports nothing from `geo`, `stages`,
//! `dataset` or candle. [`Stage`] is its only contact point with the work it schedules.
//!
//! - [`stage`]: the `Stage` trait, its inputs and context.
//! - [`key`]: what goes into a stage key, and its canonical encoding.
//! - [`fingerprint`]: content hashes of input files, memoised by file identity.
//! - [`store`]: the cache (`runs/.cache/<stage>/<key>/record.toml`), atomic commits.
//! - [`outputs`]: an entry's output hashes, checked quickly at hits and fully by `verify`.
//! - [`lock`]: per-key lock files that work across processes and hosts.
//! - [`live`]: which entries running processes are about to use, so `gc` keeps them.
//! - [`dag`]: the graph and key resolution.
//! - [`reason`], [`plan`](mod@plan): why a stage would run.
//! - [`executor`]: running stages; emits [`events::RunEvent`]s, never prints.
//! - [`manifest`]: `manifest.toml` and `execution.toml`.
//! - [`diff`](mod@diff): what differs between two runs' manifests, by key path.
//! - [`verify`]: a run's entries checked against its manifest; a stage recomputed.

pub mod dag;
pub mod diff;
pub mod error;
pub mod events;
pub mod executor;
pub mod fingerprint;
pub mod key;
pub mod live;
pub mod lock;
pub mod manifest;
pub mod outputs;
pub mod plan;
pub mod reason;
pub mod stage;
pub mod store;
pub mod verify;

pub use dag::{Graph, Resolved, resolve};
pub use diff::{
    ManifestDiff, ResultChange, StageChange, StageDiff, ValueChange, VersionChange, diff,
};
pub use error::{GraphError, error_chain};
pub use events::{CollectingReporter, NoTick, Progress, Reporter, RunEvent, Tick};
pub use executor::{StageRun, StageStatus, execute};
pub use fingerprint::Fingerprinter;
pub use key::{GEOEXP_VERSION, KeyMaterial, StageKey, digest_value};
pub use manifest::{Execution, Manifest, RunInfo, StageExecution, StageManifest};
pub use plan::{PlanEntry, PlanStatus, plan};
pub use reason::{MaterialView, RerunReason};
pub use stage::{
    Input, Outcome, Params, Paused, ResultValue, Stage, StageContext, StageError, key_paths,
    params_of,
};
pub use store::{Lookup, Store, write_atomic};

#[cfg(test)]
mod tests;
