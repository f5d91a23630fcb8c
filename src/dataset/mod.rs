//! Datasets on disk: the real layout, `data.csv`, merging, splitting, `locations.csv`, and
//! the synthetic generator that writes the same layout.
//!
//! - [`layout`]: `data.csv` + `images/<uuid>/{0,90,180,270}.jpg`, listed in place.
//! - [`data_csv`]: columns by header name, every value checked.
//! - [`index`](mod@index): merging directories, checking rows against images.
//! - [`split`]: seeded, listing-order-independent train/val/test assignment.
//! - [`locations`]: the `locations.csv` the dataset stage writes.
//!
//! Source directories are never modified, copied or moved.

pub mod data_csv;
pub mod error;
pub mod index;
pub mod layout;
pub mod locations;
pub mod split;
pub mod synth;

pub use error::DatasetError;
pub use index::{Indexed, Source, index};
pub use layout::DirLayout;
pub use locations::{LOCATIONS_FILE, Location, read_locations, write_locations};
pub use split::{Fractions, Split};
