//! Images: decoding every view once into one memory-mapped u8 tensor file, and the
//! channel statistics training normalises with.
//!
//! - [`decode`]: one JPEG/PNG file → `side×side` RGB, torchvision `Resize` + `CenterCrop`
//!   geometry, JPEGs decoded at a reduced DCT scale.
//! - [`tensor_file`]: all views of all locations in one safetensors file, `[N, 4, S, S, 3]`
//!   U8, written streaming and in parallel; [`ImageTensor`] maps it read-only.
//! - [`stats`]: per-channel mean and std over the training split.
//!
//! Source images are only read. This module knows nothing of datasets, splits or stages:
//! callers hand it paths and location indices.

pub mod decode;
mod error;
pub mod stats;
pub mod tensor_file;
#[cfg(test)]
mod test_images;

pub use decode::{
    DecodeOptions, JpegMode, MAX_SIDE, Resample, decode_bytes_into, decode_view, decode_view_into,
};
pub use error::ImagesError;
pub use stats::{ChannelStats, channel_stats};
pub use tensor_file::{
    BuildOptions, BuildSummary, ImageTensor, TENSOR_NAME, build_tensor_file, build_tensor_file_with,
};
