//! Dataset errors: each names the file and line, or the uuid and folder, at fault.

use std::path::PathBuf;

/// How many offending items an error lists before summarising.
pub const LISTED: usize = 5;

/// Something wrong with a dataset on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A dataset directory has no `data.csv`.
    #[error("{}: no data.csv in this dataset directory (expected data.csv next to images/)", dir.display())]
    MissingCsv {
        /// The dataset directory.
        dir: PathBuf,
    },
    /// A path that must be a regular file is something else.
    #[error("{}: is {kind}, not a file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A dataset directory has neither `images/` nor `data/`.
    #[error("{}: no images/ (or data/) folder of <uuid>/{{0,90,180,270}}.jpg views", dir.display())]
    MissingImageRoot {
        /// The dataset directory.
        dir: PathBuf,
    },
    /// The CSV is malformed.
    #[error("{}:{line}: {message}", file.display())]
    Csv {
        /// The CSV file.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A required column is missing.
    #[error("{}: no `{column}` column (columns found: {})", file.display(), found.join(", "))]
    MissingColumn {
        /// The CSV file.
        file: PathBuf,
        /// The missing column.
        column: &'static str,
        /// The header as read.
        found: Vec<String>,
    },
    /// A value cannot be parsed or is out of range.
    #[error("{}:{line}: uuid {uuid:?}: {column} {value:?} {problem}", file.display())]
    BadValue {
        /// The CSV file.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// The row's uuid.
        uuid: String,
        /// The column.
        column: &'static str,
        /// The raw value.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A uuid appears twice (in one CSV or across dataset directories).
    #[error("uuid {uuid:?} is listed twice: {}:{} and {}:{}", first.0.display(), first.1, second.0.display(), second.1)]
    DuplicateUuid {
        /// The uuid.
        uuid: String,
        /// First occurrence (file, line).
        first: (PathBuf, u64),
        /// Second occurrence (file, line).
        second: (PathBuf, u64),
    },
    /// CSV rows whose image folder does not exist.
    #[error("{}: {count} row(s) have no image folder under {}: {}", file.display(), root.display(), examples.join("; "))]
    MissingFolders {
        /// The CSV file.
        file: PathBuf,
        /// The image root searched.
        root: PathBuf,
        /// How many rows.
        count: usize,
        /// The first few, as `line N: uuid`.
        examples: Vec<String>,
    },
    /// Image folders lacking some of the four views.
    #[error("{}: {count} location(s) lack view images: {}", root.display(), examples.join("; "))]
    MissingViews {
        /// The image root.
        root: PathBuf,
        /// How many locations.
        count: usize,
        /// The first few, as `uuid: missing 90, 270`.
        examples: Vec<String>,
    },
    /// No location survived.
    #[error("the dataset has no locations ({0})")]
    Empty(String),
    /// An I/O error on a named path.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something else, with its own message (image encoding, boundary sampling).
    #[error("{0}")]
    Other(String),
}

impl DatasetError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> DatasetError {
        let path = path.into();
        move |source| DatasetError::Io {
            action,
            path,
            source,
        }
    }
}
