//! Image errors: each names the image or tensor file at fault, so a bad view among
//! hundreds of thousands can be found and removed.

use std::path::PathBuf;

/// Something wrong with an image file or an image tensor file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImagesError {
    /// A file could not be opened.
    #[error("cannot open {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file could be opened but not read (or mapped).
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An image file is not a decodable JPEG or PNG.
    #[error("{}: cannot decode image: {reason}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What went wrong: "not a JPEG or PNG", "truncated", or the decoder's message.
        reason: String,
    },
    /// An image decodes to zero pixels.
    #[error("{}: image has no pixels ({width}×{height})", path.display())]
    Empty {
        /// The image file.
        path: PathBuf,
        /// Width as stored.
        width: u32,
        /// Height as stored.
        height: u32,
    },
    /// An image declares more pixels than geoexp decodes (a decompression bomb, or a
    /// panorama far beyond any view); refused before decoding.
    #[error(
        "{}: image declares {width}×{height} pixels, more than the limit of {max} megapixels",
        path.display()
    )]
    TooLarge {
        /// The image file.
        path: PathBuf,
        /// Width as declared.
        width: u32,
        /// Height as declared.
        height: u32,
        /// The limit, in megapixels.
        max: u64,
    },
    /// A tensor file is not what [`crate::images::ImageTensor`] expects.
    #[error("{}: not an image tensor file: {problem}", path.display())]
    Format {
        /// The tensor file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A file could not be written (or renamed into place).
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The requested output side is unusable; no file is involved yet.
    #[error("image side must be between 1 and {max} pixels, got {side}")]
    Side {
        /// The requested side.
        side: u32,
        /// The largest supported side.
        max: u32,
    },
}
