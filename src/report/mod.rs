//! Static HTML reports: one self-contained `report.html` per run and per sweep, for people
//! who would rather look than read.
//!
//! - [`run`]: a run folder — metrics, stages (key, hit or ran, time), training curves,
//!   maps, errors per class, the worst predictions with their views, the resolved config
//!   with provenance.
//! - [`sweep`]: a sweep folder — ranking, heatmap, parameters against the metric, rungs.
//! - [`html`] and [`svg`]: the page shell, tables, embedded images and charts.
//!
//! Images are embedded as data URIs and charts as inline SVG, so a report needs no
//! network and no other file. Reports are written atomically: a reader never sees half
//! of one.

pub mod html;
pub mod run;
pub mod svg;
pub mod sweep;

use std::path::{Path, PathBuf};

pub use run::run_report;
pub use sweep::sweep_report;

/// What a report is called in its run or sweep folder.
pub const REPORT_FILE: &str = "report.html";

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file did not parse.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The report could not be written.
    #[error(transparent)]
    Write(#[from] crate::graph::GraphError),
}

/// Writes `html` to `dir/report.html` atomically and returns the path.
///
/// # Errors
/// When the file cannot be written.
pub fn write_report(dir: &Path, html: &str) -> Result<PathBuf, ReportError> {
    let path = dir.join(REPORT_FILE);
    crate::graph::write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, ReportError> {
    let text = read(path)?;
    csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .enumerate()
        .map(|(i, row)| {
            row.map_err(|e| ReportError::Parse {
                path: path.to_path_buf(),
                message: format!("row {}: {e}", i + 1),
            })
        })
        .collect()
}
