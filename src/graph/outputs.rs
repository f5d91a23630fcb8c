//! A cache entry's outputs: hashing them when the entry is committed, and checking them
//! against that record later — quickly at every cache hit, fully in `geoexp verify`.
//!
//! An output is a top-level file or directory of the entry. A file is recorded by its
//! blake3 and size; a directory by the blake3 of its sorted `path \0 hash \n` listing, its
//! total size and its file count. Outputs a stage declares volatile
//! ([`Stage::volatile_outputs`](super::Stage::volatile_outputs)) are hashed too, but only
//! their size is ever checked: their bytes legitimately differ from one attempt to the next.
//!
//! | check            | existence | size | blake3                                   |
//! |------------------|-----------|------|------------------------------------------|
//! | [`Depth::Quick`] | every     | every| deterministic outputs up to [`QUICK_HASH_LIMIT`] |
//! | [`Depth::Full`]  | every     | every| every deterministic output               |
//!
//! The quick check runs at every cache hit. It costs one `stat` per output file plus
//! hashing the small ones (CSVs, TOML, maps: well under a millisecond each at blake3's
//! ~1 GB/s on one core), so a damaged `locations.csv` or a truncated checkpoint is never
//! taken as a hit, while a multi-gigabyte image tensor is only re-hashed by `verify`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::GraphError;
use super::events::Tick;
use super::fingerprint::hash_path;

/// Deterministic outputs up to this size are re-hashed at every cache hit; larger ones
/// (checkpoints, image tensors) only have their size checked there.
pub const QUICK_HASH_LIMIT: u64 = 4 << 20;

/// Hash of one output: a file, or a directory summarised by its file count and digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputHash {
    /// blake3 of the file, or of the directory's sorted `path \0 hash` listing.
    pub blake3: String,
    /// Total size in bytes.
    pub bytes: u64,
    /// Number of files (directories only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Whether the stage declared this output volatile (its bytes depend on when or where
    /// the stage ran); only its size is checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volatile: bool,
}

/// How thoroughly [`check`] compares outputs with their record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Existence and sizes of everything, hashes of deterministic outputs up to
    /// [`QUICK_HASH_LIMIT`] (at every cache hit).
    Quick,
    /// Existence and sizes of everything, hashes of every deterministic output (`verify`).
    Full,
}

/// One output that does not match its record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputProblem {
    /// The output's name in the record (`best.safetensors`, `images`).
    pub output: String,
    /// The file (or directory) at fault.
    pub path: PathBuf,
    /// What is wrong, for people.
    pub problem: String,
}

impl std::fmt::Display for OutputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

/// Hashes the outputs in `dir` (its top-level files and directories, less `skip`), marking
/// those named in `volatile`.
///
/// # Errors
/// When an output cannot be read.
pub fn hash_outputs(
    dir: &Path,
    skip: &[&str],
    volatile: &[&str],
) -> Result<BTreeMap<String, OutputHash>, GraphError> {
    let mut out = BTreeMap::new();
    let listing = fs::read_dir(dir).map_err(GraphError::io("reading", dir))?;
    for entry in listing {
        let entry = entry.map_err(GraphError::io("reading", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let path = entry.path();
        let mut hash = if path.is_dir() {
            let files = walk(&path)?;
            let hashed: Vec<(String, String)> = files
                .par_iter()
                .map(|(rel, _)| Ok((rel.clone(), hash_path(&path.join(rel))?)))
                .collect::<Result<_, GraphError>>()?;
            OutputHash {
                blake3: listing_digest(&hashed),
                bytes: files.iter().map(|f| f.1).sum(),
                files: Some(files.len() as u64),
                volatile: false,
            }
        } else {
            OutputHash {
                blake3: hash_path(&path)?,
                bytes: entry.metadata().map(|m| m.len()).unwrap_or(0),
                files: None,
                volatile: false,
            }
        };
        hash.volatile = volatile.contains(&name.as_str());
        out.insert(name, hash);
    }
    Ok(out)
}

/// Bytes [`check`] would hash at `depth`: what a progress bar counts.
pub fn bytes_to_hash(outputs: &BTreeMap<String, OutputHash>, depth: Depth) -> u64 {
    outputs
        .values()
        .filter(|o| hashes(o, depth))
        .map(|o| o.bytes)
        .sum()
}

/// Compares the outputs in `dir` with their record at `depth`; every mismatch is listed,
/// in output-name order. `tick` advances by the bytes hashed.
pub fn check(
    dir: &Path,
    outputs: &BTreeMap<String, OutputHash>,
    depth: Depth,
    tick: &dyn Tick,
) -> Vec<OutputProblem> {
    let mut problems: Vec<OutputProblem> = outputs
        .par_iter()
        .filter_map(|(name, recorded)| {
            check_one(&dir.join(name), recorded, depth, tick).map(|problem| OutputProblem {
                output: name.clone(),
                path: dir.join(name),
                problem,
            })
        })
        .collect();
    problems.sort_by(|a, b| a.output.cmp(&b.output));
    problems
}

fn hashes(recorded: &OutputHash, depth: Depth) -> bool {
    !recorded.volatile && (depth == Depth::Full || recorded.bytes <= QUICK_HASH_LIMIT)
}

/// What is wrong with one output, if anything.
fn check_one(path: &Path, recorded: &OutputHash, depth: Depth, tick: &dyn Tick) -> Option<String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("missing".into()),
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    let size_problem = |bytes: u64| {
        format!(
            "{bytes} bytes, but the record says {} (truncated or replaced)",
            recorded.bytes
        )
    };
    let found = match recorded.files {
        Some(count) => {
            if !meta.is_dir() {
                return Some("a file where the record has a directory".into());
            }
            let files = match walk(path) {
                Ok(f) => f,
                Err(e) => return Some(super::error_chain(&e)),
            };
            if files.len() as u64 != count {
                return Some(format!(
                    "holds {} files, but the record says {count}",
                    files.len()
                ));
            }
            let bytes: u64 = files.iter().map(|f| f.1).sum();
            if bytes != recorded.bytes {
                return Some(size_problem(bytes));
            }
            if !hashes(recorded, depth) {
                return None;
            }
            let hashed: Result<Vec<(String, String)>, GraphError> = files
                .par_iter()
                .map(|(rel, bytes)| {
                    let h = hash_path(&path.join(rel))?;
                    tick.inc(*bytes);
                    Ok((rel.clone(), h))
                })
                .collect();
            match hashed {
                Ok(h) => listing_digest(&h),
                Err(e) => return Some(super::error_chain(&e)),
            }
        }
        None => {
            if !meta.is_file() {
                return Some("not a regular file".into());
            }
            if meta.len() != recorded.bytes {
                return Some(size_problem(meta.len()));
            }
            if !hashes(recorded, depth) {
                return None;
            }
            let h = match hash_path(path) {
                Ok(h) => h,
                Err(e) => return Some(super::error_chain(&e)),
            };
            tick.inc(meta.len());
            h
        }
    };
    // The record is user-editable text: take characters, not bytes.
    let short = |h: &str| h.chars().take(12).collect::<String>();
    (found != recorded.blake3).then(|| {
        format!(
            "content differs from the record (blake3 {}…, recorded {}…)",
            short(&found),
            short(&recorded.blake3)
        )
    })
}

/// The digest of a directory: blake3 over its files' sorted `path \0 hash \n` lines.
fn listing_digest(hashed: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = hashed.iter().collect();
    sorted.sort();
    let mut h = blake3::Hasher::new();
    for (rel, hash) in sorted {
        h.update(rel.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// Every file under `root` as (path relative to `root`, size).
fn walk(root: &Path) -> Result<Vec<(String, u64)>, GraphError> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<(), GraphError> {
        for entry in fs::read_dir(dir).map_err(GraphError::io("reading", dir))? {
            let entry = entry.map_err(GraphError::io("reading", dir))?;
            let path = entry.path();
            if path.is_dir() {
                go(root, &path, out)?;
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, entry.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(root, root, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::NoTick;

    fn entry() -> (tempfile::TempDir, BTreeMap<String, OutputHash>) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.csv"), "x,y\n1,2\n").unwrap();
        fs::write(dir.path().join("run.events"), "wall time 1").unwrap();
        fs::create_dir(dir.path().join("images")).unwrap();
        fs::write(dir.path().join("images/1.jpg"), "jpeg").unwrap();
        let outputs = hash_outputs(dir.path(), &[], &["run.events"]).unwrap();
        (dir, outputs)
    }

    #[test]
    fn an_untouched_entry_passes_both_checks() {
        let (dir, outputs) = entry();
        assert!(outputs["run.events"].volatile);
        assert!(!outputs["a.csv"].volatile);
        assert_eq!(outputs["images"].files, Some(1));
        for depth in [Depth::Quick, Depth::Full] {
            assert_eq!(check(dir.path(), &outputs, depth, &NoTick), []);
        }
    }

    #[test]
    fn a_flipped_byte_in_a_small_file_is_found_even_by_the_quick_check() {
        let (dir, outputs) = entry();
        fs::write(dir.path().join("a.csv"), "x,y\n1,3\n").unwrap();
        let problems = check(dir.path(), &outputs, Depth::Quick, &NoTick);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].output, "a.csv");
        assert!(
            problems[0].problem.contains("content differs"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_volatile_output_is_checked_by_size_only() {
        let (dir, outputs) = entry();
        fs::write(dir.path().join("run.events"), "wall time 2").unwrap();
        assert_eq!(check(dir.path(), &outputs, Depth::Full, &NoTick), []);
        fs::write(dir.path().join("run.events"), "wall").unwrap();
        let problems = check(dir.path(), &outputs, Depth::Full, &NoTick);
        assert!(problems[0].problem.contains("4 bytes"), "{problems:?}");
    }

    #[test]
    fn missing_files_and_directories_that_changed_are_named() {
        let (dir, outputs) = entry();
        fs::remove_file(dir.path().join("a.csv")).unwrap();
        fs::write(dir.path().join("images/2.jpg"), "more").unwrap();
        let problems = check(dir.path(), &outputs, Depth::Quick, &NoTick);
        let named: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.output.as_str(), p.problem.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("a.csv", "missing"),
                ("images", "holds 2 files, but the record says 1")
            ]
        );
    }

    #[test]
    fn large_outputs_are_hashed_only_by_the_full_check() {
        let (dir, mut outputs) = entry();
        // Pretend a.csv is big: same size, other content, and a record above the limit.
        let big = outputs.get_mut("a.csv").unwrap();
        big.bytes = QUICK_HASH_LIMIT + 1;
        let data = vec![7u8; (QUICK_HASH_LIMIT + 1) as usize];
        fs::write(dir.path().join("a.csv"), &data).unwrap();
        assert_eq!(check(dir.path(), &outputs, Depth::Quick, &NoTick), []);
        let full = check(dir.path(), &outputs, Depth::Full, &NoTick);
        assert!(full[0].problem.contains("content differs"), "{full:?}");
        // The volatile event file is never hashed.
        assert_eq!(
            bytes_to_hash(&outputs, Depth::Full),
            QUICK_HASH_LIMIT + 1 + 4
        );
    }
}
