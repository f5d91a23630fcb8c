//! What a run leaves for people to look at: map pictures now; TensorBoard event files
//! and training plots belong here too.
//!
//! - [`map`]: PNG maps of locations, cells and centroids.
//! - [`heatmap`]: a sweep's metric over a two-axis grid.

pub mod heatmap;
pub mod map;
pub mod tensorboard;
