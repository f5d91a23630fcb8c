//! Inference: a checkpoint and some views in, coordinates out. Shared by the evaluate
//! stage, `geoexp predict` and `geoexp serve`, so all three give the same answer for the
//! same checkpoint and images.
//!
//! | file         | owns                                                                     |
//! |--------------|--------------------------------------------------------------------------|
//! | `model.rs`   | [`Model`]: a checkpoint loaded and restored; outputs read as positions   |
//! | `input.rs`   | decoding files or uploads; the normalised `[B, 4, 3, S, S]` batch         |
//! | `folders.rs` | a directory of `<uuid>/{0,90,180,270}.jpg` folders, and what is skipped   |
//! | `refine.rs`  | PIGEON-style retrieval refinement: a guess moved onto voted training data |
//! | `gallery.rs` | the refinement gallery file a checkpoint ships with                       |
//!
//! Checkpoints are self-contained ([`crate::train::checkpoint::ModelInfo`]): backbone,
//! normalisation, CRS, scaling and class centroids travel with the weights, so nothing
//! here reads an experiment file or a cache.

pub mod folders;
pub mod gallery;
pub mod input;
pub mod model;
pub mod refine;

use std::path::PathBuf;

pub use folders::{Folders, Skipped, ViewFolder, scan};
pub use model::{Answer, ClassScore, Model};

/// Why a prediction could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// The checkpoint could not be read.
    #[error(transparent)]
    Checkpoint(#[from] crate::train::checkpoint::CheckpointError),
    /// The checkpoint describes a model that cannot be built here.
    #[error("{}: {message}", path.display())]
    Build {
        /// The checkpoint.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A tensor operation failed.
    #[error("running the model: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The checkpoint's refinement gallery could not be read.
    #[error(transparent)]
    Gallery(#[from] gallery::GalleryError),
    /// Outputs could not be read as positions.
    #[error(transparent)]
    Predict(#[from] crate::train::predict::PredictError),
    /// A view could not be decoded.
    #[error(transparent)]
    Image(#[from] crate::images::ImagesError),
    /// The images path is not a directory.
    #[error("{}: not a directory of <uuid>/{{0,90,180,270}}.jpg folders", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A directory could not be listed.
    #[error("{message}")]
    Listing {
        /// The listing error, naming the directory.
        message: String,
    },
}
