//! Checking a run's cache entries against its manifest, and recomputing a stage to prove
//! it reproduces: the engine half of `geoexp verify`.
//!
//! [`verify_stage`] never modifies the cache. [`recompute`] runs a stage into a scratch
//! directory under `.cache/<stage>/.tmp/` (removed when done, and swept like any abandoned
//! temporary if the process dies) with a scratch work directory, so it neither resumes
//! from nor disturbs a training in progress.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::dag::Resolved;
use super::error::GraphError;
use super::events::{Progress, Tick};
use super::fingerprint::hash_path;
use super::key::StageKey;
use super::manifest::StageManifest;
use super::outputs::{Depth, OutputHash, OutputProblem, check, hash_outputs};
use super::stage::StageContext;
use super::store::{Entry, INPUTS_FILE, Lookup, RECORD_FILE, Store};

/// One stage of a run, checked.
#[derive(Clone, Debug, Serialize)]
pub struct StageVerdict {
    /// Stage name.
    pub stage: String,
    /// Its key, from the manifest.
    pub key: StageKey,
    /// The entry's directory.
    pub dir: PathBuf,
    /// Outputs the record lists.
    pub outputs: usize,
    /// Their total size.
    pub bytes: u64,
    /// Everything that does not hold; empty when the entry is sound.
    pub problems: Vec<OutputProblem>,
    /// Whether the entry fails against its own record (unreadable, or an output that does
    /// not match): what `verify --evict` removes.
    pub entry_damaged: bool,
}

impl StageVerdict {
    /// Whether every check held.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Bytes [`verify_stage`] will hash for `stage` (for a progress bar's total); 0 when its
/// record cannot be read.
pub fn bytes_to_verify(store: &Store, stage: &str, key: &StageKey) -> u64 {
    match store.read_entry(stage, key) {
        Lookup::Found(entry) => super::outputs::bytes_to_hash(&entry.record.outputs, Depth::Full),
        _ => 0,
    }
}

/// Checks the entry of `stage` named by a manifest: the record is present, readable and
/// for this key; every output the manifest lists has the manifest's hash in the record;
/// and every output in the record is on disk with its recorded hash (deterministic
/// outputs) or size (volatile ones). `tick` advances by the bytes hashed.
pub fn verify_stage(
    store: &Store,
    stage: &str,
    manifest: &StageManifest,
    tick: &dyn Tick,
) -> StageVerdict {
    let dir = store.entry_dir(stage, &manifest.key);
    let mut verdict = StageVerdict {
        stage: stage.to_owned(),
        key: manifest.key.clone(),
        dir: dir.clone(),
        outputs: 0,
        bytes: 0,
        problems: Vec::new(),
        entry_damaged: false,
    };
    let problem = |output: &str, path: PathBuf, problem: String| OutputProblem {
        output: output.to_owned(),
        path,
        problem,
    };
    let entry = match store.read_entry(stage, &manifest.key) {
        Lookup::Found(entry) => entry,
        Lookup::Missing => {
            verdict.problems.push(problem(
                "",
                dir,
                "the cache entry is missing (removed by `geoexp gc` or by hand)".into(),
            ));
            return verdict;
        }
        Lookup::Corrupt(why) => {
            verdict
                .problems
                .push(problem(RECORD_FILE, dir.join(RECORD_FILE), why));
            verdict.entry_damaged = true;
            return verdict;
        }
    };
    let record = &entry.record;
    verdict.outputs = record.outputs.len();
    verdict.bytes = record.outputs.values().map(|o| o.bytes).sum();
    for (name, listed) in &manifest.outputs {
        match record.outputs.get(name) {
            None => verdict.problems.push(problem(
                name,
                dir.join(RECORD_FILE),
                format!("the manifest lists output `{name}`, but the record does not"),
            )),
            Some(recorded) if recorded.blake3 != listed.blake3 => {
                verdict.problems.push(problem(
                    name,
                    dir.join(RECORD_FILE),
                    format!(
                        "the record's hash of `{name}` differs from the manifest's (the entry was \
                         replaced by another computation)"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for name in &manifest.volatile_outputs {
        if !record.outputs.contains_key(name) {
            verdict.problems.push(problem(
                name,
                dir.join(RECORD_FILE),
                format!("the manifest lists output `{name}`, but the record does not"),
            ));
        }
    }
    let damage = check(&entry.dir, &record.outputs, Depth::Full, tick);
    verdict.entry_damaged = !damage.is_empty();
    verdict.problems.extend(damage);
    verdict
}

/// A stage computed again into a scratch directory.
pub struct Recomputed {
    /// Hashes of what it wrote.
    pub outputs: BTreeMap<String, OutputHash>,
    /// Its results.
    pub results: BTreeMap<String, Value>,
    scratch: PathBuf,
}

impl Recomputed {
    /// Where it wrote its outputs.
    pub fn dir(&self) -> PathBuf {
        self.scratch.join("out")
    }
}

impl Drop for Recomputed {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// Runs the stage `r` again into a scratch directory, reading the `upstream` entries
/// (stage name → entry directory), and hashes what it wrote.
///
/// # Errors
/// When the scratch directory cannot be made, the stage fails or panics, or its outputs
/// cannot be read.
pub fn recompute(
    r: &Resolved<'_>,
    store: &Store,
    upstream: BTreeMap<String, PathBuf>,
    progress: &dyn Progress,
) -> Result<Recomputed, GraphError> {
    let name = r.stage.name();
    // From here on the scratch directory is removed however this ends (see `Drop`).
    let mut again = Recomputed {
        outputs: BTreeMap::new(),
        results: BTreeMap::new(),
        scratch: store.scratch_dir(name, "verify")?,
    };
    let out = again.dir();
    fs::create_dir_all(&out).map_err(GraphError::io("creating", &out))?;
    let ctx = StageContext::new(name, out.clone(), upstream, progress)
        .with_work_dir(again.scratch.join("work"))
        .with_key(&r.key);
    let outcome = match catch_unwind(AssertUnwindSafe(|| r.stage.run(&ctx))) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(source)) => {
            return Err(GraphError::Stage {
                stage: name.to_owned(),
                source,
            });
        }
        Err(_) => {
            return Err(GraphError::Panic {
                stage: name.to_owned(),
                message: "while recomputing it".into(),
            });
        }
    };
    let outputs = hash_outputs(
        &out,
        &[RECORD_FILE, INPUTS_FILE],
        r.stage.volatile_outputs(),
    )?;
    again.outputs = outputs;
    again.results = outcome.results;
    Ok(again)
}

/// Where a recomputed stage differs from its entry: each deterministic output whose hash
/// differs or that only one of them has (for a directory, the files inside it that
/// differ), then each result that differs. Empty: reproduced.
pub fn differences(entry: &Entry, again: &Recomputed) -> Vec<String> {
    let recorded = &entry.record.outputs;
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        recorded.keys().chain(again.outputs.keys()).collect();
    for name in names {
        match (recorded.get(name), again.outputs.get(name)) {
            (Some(a), _) if a.volatile => {}
            (_, Some(b)) if b.volatile => {}
            (Some(a), Some(b)) if a.blake3 == b.blake3 => {}
            (Some(a), Some(_)) if a.files.is_some() => {
                let inner = differing_files(&entry.dir.join(name), &again.dir().join(name));
                if inner.is_empty() {
                    out.push(format!("{name}/ differs"));
                }
                out.extend(inner.into_iter().map(|f| format!("{name}/{f}")));
            }
            (Some(_), Some(_)) => out.push(name.clone()),
            (Some(_), None) => out.push(format!("{name} (not written again)")),
            (None, Some(_)) => out.push(format!("{name} (new)")),
            (None, None) => {}
        }
    }
    let keys: std::collections::BTreeSet<&String> = entry
        .record
        .results
        .keys()
        .chain(again.results.keys())
        .collect();
    for k in keys {
        let (a, b) = (entry.record.results.get(k), again.results.get(k));
        if a != b {
            let show = |v: Option<&Value>| v.map_or("(none)".to_owned(), Value::to_string);
            out.push(format!("result {k}: {} → {}", show(a), show(b)));
        }
    }
    out
}

/// Files (relative paths) whose content differs between two directories, or that only one
/// of them has.
fn differing_files(a: &Path, b: &Path) -> Vec<String> {
    let list = |root: &Path| -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(root) {
                    out.insert(rel.to_string_lossy().into_owned(), hash_path(&path).ok());
                }
            }
        }
        out
    };
    let (la, lb) = (list(a), list(b));
    let names: std::collections::BTreeSet<&String> = la.keys().chain(lb.keys()).collect();
    names
        .into_iter()
        .filter(|n| la.get(*n) != lb.get(*n))
        .cloned()
        .collect()
}
