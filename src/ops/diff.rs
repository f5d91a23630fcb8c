//! `geoexp diff`: what differs between two runs, from their manifests.
//!
//! A run is named by its manifest file, its run folder, or its run id — whole, a unique
//! prefix, or `name/id` as `ls` prints it — looked up under the runs directory. The
//! comparison itself is [`graph::diff`](mod@crate::graph::diff), which knows nothing of what
//! results mean; here the results are narrowed to the runs' final metrics
//! ([`super::is_final_metric`]) unless all are asked for.

use std::path::{Path, PathBuf};

use crate::graph::manifest::MANIFEST_FILE;
use crate::graph::{GraphError, Manifest, ManifestDiff, diff as diff_manifests};
use crate::stages::evaluate;

use super::is_final_metric;
use super::ls::subfolders;

/// How many candidates an ambiguous run id error lists.
const LISTED_CANDIDATES: usize = 10;

/// What to compare.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// Run A (old): a manifest file, a run folder, or a run id.
    pub a: PathBuf,
    /// Run B (new), likewise.
    pub b: PathBuf,
    /// Where run ids are looked up.
    pub runs_dir: PathBuf,
    /// Compare every stage result, not only the final metrics.
    pub all_results: bool,
}

/// The two runs and what differs.
#[derive(Clone, Debug)]
pub struct DiffReport {
    /// Run A's manifest.
    pub a: PathBuf,
    /// Run B's manifest.
    pub b: PathBuf,
    /// The differences, A → B.
    pub diff: ManifestDiff,
}

/// Why two runs could not be compared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// The argument is no file, no folder and no run id under the runs directory.
    #[error(
        "{arg}: no such manifest, run folder or run id (run ids are looked up under {})",
        runs_dir.display()
    )]
    NotFound {
        /// The argument as given.
        arg: String,
        /// Where run ids were looked up.
        runs_dir: PathBuf,
    },
    /// The argument is a folder without a manifest.
    #[error("{}: no {MANIFEST_FILE} in this folder (is it a run folder?)", dir.display())]
    NoManifest {
        /// The folder.
        dir: PathBuf,
    },
    /// The run id prefix matches more than one run.
    #[error(
        "run id `{arg}` is ambiguous: it matches {}{}; give more of it, or name/id",
        .candidates.iter().take(LISTED_CANDIDATES).cloned().collect::<Vec<_>>().join(", "),
        if .candidates.len() > LISTED_CANDIDATES {
            format!(" and {} more", .candidates.len() - LISTED_CANDIDATES)
        } else {
            String::new()
        }
    )]
    Ambiguous {
        /// The argument as given.
        arg: String,
        /// The runs it matches, as `name/id`, sorted.
        candidates: Vec<String>,
    },
    /// A manifest could not be read or parsed (the message names the file).
    #[error(transparent)]
    Read(#[from] GraphError),
}

/// Compares two runs.
///
/// # Errors
/// When a run cannot be found, is ambiguous, or its manifest cannot be read.
pub fn diff(options: &DiffOptions) -> Result<DiffReport, DiffError> {
    let a = resolve(&options.a, &options.runs_dir)?;
    let b = resolve(&options.b, &options.runs_dir)?;
    let (ma, mb) = (Manifest::read(&a)?, Manifest::read(&b)?);
    let mut diff = diff_manifests(&ma, &mb);
    if !options.all_results {
        let evaluate_has = |key: &str| {
            [&ma, &mb].iter().any(|m| {
                m.stages
                    .get(evaluate::NAME)
                    .is_some_and(|s| s.results.contains_key(key))
            })
        };
        diff.results
            .retain(|r| is_final_metric(&r.stage, &r.key, evaluate_has));
    }
    Ok(DiffReport { a, b, diff })
}

/// The manifest a command-line argument names: the file itself, `manifest.toml` in the
/// folder, or the run whose id is (or starts with) the argument under `runs_dir` — under
/// `runs_dir/<name>/` only for `name/id`.
///
/// # Errors
/// When nothing matches, or a run id prefix matches several runs (they are listed).
pub fn resolve(arg: &Path, runs_dir: &Path) -> Result<PathBuf, DiffError> {
    if arg.is_file() {
        return Ok(arg.to_path_buf());
    }
    if arg.is_dir() {
        let manifest = arg.join(MANIFEST_FILE);
        return if manifest.is_file() {
            Ok(manifest)
        } else {
            Err(DiffError::NoManifest {
                dir: arg.to_path_buf(),
            })
        };
    }
    let not_found = || DiffError::NotFound {
        arg: arg.display().to_string(),
        runs_dir: runs_dir.to_path_buf(),
    };
    let text = arg.to_str().ok_or_else(not_found)?;
    let (name, prefix) = match text.split_once('/') {
        None => (None, text),
        Some((n, p)) if !n.is_empty() && !p.is_empty() && !p.contains('/') => (Some(n), p),
        Some(_) => return Err(not_found()),
    };
    if prefix.is_empty() || prefix.starts_with('.') {
        return Err(not_found());
    }
    let experiments = match name {
        Some(n) => vec![runs_dir.join(n)],
        None => subfolders(runs_dir, true).unwrap_or_default(),
    };
    let mut candidates: Vec<(String, bool, PathBuf)> = Vec::new();
    for exp in experiments {
        let Ok(runs) = subfolders(&exp, false) else {
            continue;
        };
        let exp_name = exp
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for run in runs {
            let Some(id) = run.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let manifest = run.join(MANIFEST_FILE);
            if id.starts_with(prefix) && manifest.is_file() {
                candidates.push((format!("{exp_name}/{id}"), id == prefix, manifest));
            }
        }
    }
    candidates.sort();
    let exact: Vec<_> = candidates.iter().filter(|c| c.1).collect();
    if let [only] = exact.as_slice() {
        return Ok(only.2.clone());
    }
    match candidates.len() {
        0 => Err(not_found()),
        1 => Ok(candidates.remove(0).2),
        _ => Err(DiffError::Ambiguous {
            arg: text.to_owned(),
            candidates: candidates.into_iter().map(|c| c.0).collect(),
        }),
    }
}
