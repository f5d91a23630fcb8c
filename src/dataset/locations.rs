//! `locations.csv`: the dataset stage's output, one row per kept location.
//!
//! Columns: `uuid, latitude, longitude, split, source, view_0, view_90, view_180,
//! view_270`. `source` is the dataset directory as configured (or `synthetic`); view paths
//! are relative to it, so the file stays valid when a dataset directory moves.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::DatasetError;
use super::split::Split;

/// File name of the dataset stage's location table.
pub const LOCATIONS_FILE: &str = "locations.csv";

/// One kept location.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Location id.
    pub uuid: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// Its split.
    pub split: Split,
    /// The dataset directory it came from, as configured.
    pub source: String,
    /// View at heading 0°, relative to `source`.
    pub view_0: String,
    /// View at heading 90°.
    pub view_90: String,
    /// View at heading 180°.
    pub view_180: String,
    /// View at heading 270°.
    pub view_270: String,
}

impl Location {
    /// The four view paths, in heading order.
    pub fn views(&self) -> [&str; 4] {
        [&self.view_0, &self.view_90, &self.view_180, &self.view_270]
    }
}

/// Writes `locations` (already in output order).
///
/// # Errors
/// When the file cannot be written.
pub fn write_locations(path: &Path, locations: &[Location]) -> Result<(), DatasetError> {
    let mut w = csv::Writer::from_path(path)
        .map_err(|e| DatasetError::Other(format!("{}: {e}", path.display())))?;
    for l in locations {
        w.serialize(l)
            .map_err(|e| DatasetError::Other(format!("{}: {e}", path.display())))?;
    }
    w.flush().map_err(DatasetError::io("writing", path))
}

/// Reads a `locations.csv`.
///
/// # Errors
/// When the file cannot be read or a row does not parse (naming the line).
pub fn read_locations(path: &Path) -> Result<Vec<Location>, DatasetError> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| DatasetError::Other(format!("{}: {e}", path.display())))?;
    r.deserialize()
        .map(|row| {
            row.map_err(|e| DatasetError::Csv {
                file: path.to_path_buf(),
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })
        })
        .collect()
}
