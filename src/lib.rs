//! geoexp: declarative, content-cached image-geolocation experiments.
//!
//! An experiment file (TOML) is loaded in layers and validated ([`experiment`]), compiled
//! into a run graph of stages ([`stages`]) and executed by an ML-agnostic engine ([`graph`])
//! that caches every stage's output by a content hash of what it reads.
//!
//! | module         | owns                                                                 |
//! |----------------|----------------------------------------------------------------------|
//! | [`cli`]        | argument parsing, printing, exit codes (the only `anyhow` user)       |
//! | [`report`]     | self-contained HTML reports of a run or a sweep (charts, maps, tables) |
//! | [`ops`]        | what each command does, as plain functions over options structs       |
//! | [`experiment`] | schema, layered loading (figment), validation, provenance             |
//! | [`stages`]     | dataset, classes, images, features, train, evaluate, and their graph  |
//! | [`infer`]      | a checkpoint and views in, coordinates out; retrieval refinement      |
//! | [`train`]      | the training loop, optimisers, schedules, losses, metrics, checkpoints|
//! | [`model`]      | backbones (tiny-cnn, ResNet/ResNeXt, CLIP/DINOv2), fusion, heads, weights |
//! | [`vocab`]      | words every layer shares: views, backbone names, tasks, metric names |
//! | [`images`]     | decoding and resizing views into one memory-mapped tensor file        |
//! | [`dataset`]    | the on-disk dataset layout, CSVs, splits, the synthetic generator     |
//! | [`geo`]        | boundaries, grids, centroids, projections, haversine                  |
//! | [`track`]      | what people look at: maps, TensorBoard event files                    |
//! | [`serve`]      | the HTTP inference server (axum): models, uploads, limits             |
//! | [`graph`]      | stages, keys, fingerprints, cache, locks, plans, execution, manifests |
//!
//! Layers, top to bottom; a module imports only from modules of layers below its own
//! (`src/layering.rs` holds every `crate::` path to this block):
//!
//! ```text
//! cli
//! report
//! ops serve
//! stages
//! infer
//! train
//! model images dataset track experiment
//! geo graph
//! vocab
//! ```
//!
//! So the engine ([`graph`]) knows no geography, model or config; the training loop knows
//! no stage; [`serve`] and [`ops`] share what they both need from below, never each other.
//! Config types are [`experiment`]'s; where a config value and a domain value mean the same
//! thing they are one type in [`vocab`], and where code needs more than a user sets, the
//! module that needs it builds its own type from the config section (`from_config`).
//!
//! Files geoexp writes (under the runs directory, `runs/` by default):
//!
//! | path                                   | what                                              |
//! |----------------------------------------|---------------------------------------------------|
//! | `.cache/<stage>/<key>/`                | one stage's outputs, renamed into place when done  |
//! | `.cache/<stage>/<key>/record.toml`     | what went into the key, output hashes, results     |
//! | `.cache/<stage>/<key>/inputs.tsv`      | per-file input hashes (for `plan`'s reasons)       |
//! | `.cache/<stage>/.locks/<key>.lock`     | held while a process computes that entry           |
//! | `.cache/<stage>/.tmp/`                 | entries being written or removed; verify's scratch |
//! | `.cache/.live/<host>.<pid>.<n>.lock`   | a running process and the entries it will use      |
//! | `.cache/.gc.lock`                      | held by a `gc` pass                                |
//! | `.cache/fingerprints.tsv`              | file-hash memo by (path, size, mtime, inode, dev)  |
//! | `<name>/<run-id>/manifest.toml`        | deterministic record of a run                      |
//! | `<name>/<run-id>/execution.toml`       | volatile facts: times, host, hits and misses       |
//! | `<name>/<run-id>/executions/*.toml`    | the same, one per attempt (concurrent ones too)    |
//! | `<name>/<run-id>/<stage>`              | symlink to that stage's cache entry                |
//! | `<name>/<run-id>/events.out.tfevents.*`| hard links to the train/evaluate event files       |
//! | `<name>/<run-id>/checkpoints/`         | hard links to the `best` and `last` checkpoints    |
//! | `<name>/<run-id>/*.png`                | the stages' maps, retitled with experiment and run |
//! | `<name>/<run-id>/report.html`          | `geoexp report`'s page of the run                  |
//! | `.cache/train/.work/<key>/`            | a training in progress; resumed after a crash      |

#![warn(missing_docs)]

pub mod cli;
pub mod dataset;
pub mod experiment;
pub mod geo;
pub mod graph;
pub mod images;
pub mod infer;
pub mod model;
pub mod ops;
pub mod report;
pub mod serve;
pub mod stages;
pub mod track;
pub mod train;
pub mod vocab;

#[cfg(test)]
mod layering;
