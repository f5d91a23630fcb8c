//! End-to-end tests: they drive the real `geoexp` binary on tiny synthetic data.

mod browser;
mod common;
mod completions;
mod config;
mod dataset;
mod diff;
mod features;
mod gc;
mod geocells;
mod ls;
mod plan;
mod predict;
mod refine;
mod report;
mod run;
mod serve;
mod slurm;
mod snapshots;
mod sweep;
mod synth;
mod train;
mod verify;
