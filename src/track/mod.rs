//! What a run leaves for people to look at.
//!
//! - [`map`]: PNG maps of locations, cells and centroids, and test errors, with legends.
//! - [`heatmap`]: a sweep's metric over a two-axis grid.
//! - [`text`]: the bitmap font those PNGs are labelled with.
//! - [`tensorboard`]: TensorBoard event files (scalars, images, hyperparameters), written
//!   and resumed without TensorFlow.

pub mod heatmap;
pub mod map;
pub mod tensorboard;
pub mod text;
