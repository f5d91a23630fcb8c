//! Errors of the run-graph engine.

use std::path::PathBuf;

use super::stage::StageError;

/// An error from the engine: cache I/O, locking, fingerprinting, or a failing stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Reading or writing a file or directory failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done ("reading", "creating", ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A stage's `inputs()` failed (e.g. a dataset directory cannot be listed).
    #[error("stage `{stage}`: listing its inputs")]
    Inputs {
        /// Stage name.
        stage: String,
        /// The stage's error.
        #[source]
        source: StageError,
    },
    /// A stage's `run` returned an error; nothing was committed to the cache.
    #[error("stage `{stage}` failed")]
    Stage {
        /// Stage name.
        stage: String,
        /// The stage's error.
        #[source]
        source: StageError,
    },
    /// A stage stopped short on purpose, at a budget its caller set ([`super::Paused`]);
    /// nothing was committed, and its work directory is kept for the next attempt.
    #[error("stage `{stage}` paused: {what}")]
    Paused {
        /// Stage name.
        stage: String,
        /// Where it stopped, as the stage says it.
        what: String,
    },
    /// A stage panicked: a bug in geoexp, reported as such.
    #[error(
        "stage `{stage}` panicked: {message} (this is a bug in geoexp; please report it with the experiment file)"
    )]
    Panic {
        /// Stage name.
        stage: String,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The graph itself is malformed (a bug in the code that builds it).
    #[error("invalid run graph: {0}")]
    Graph(String),
    /// A record could not be serialized.
    #[error("writing {}: {message}", path.display())]
    Encode {
        /// File being written.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file geoexp wrote (a manifest) could not be parsed back.
    #[error("reading {}: {message}", path.display())]
    Decode {
        /// File being read.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl GraphError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> GraphError {
        let path = path.into();
        move |source| GraphError::Io {
            action,
            path,
            source,
        }
    }
}

/// An error and its sources on one line, `outer: inner: innermost`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
