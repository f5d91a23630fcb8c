//! Why a stage is not a cache hit: a typed diff against the nearest cached entry.
//!
//! "Nearest" is the entry of the same stage whose key material differs in the fewest
//! components (ties: the most recently created), so `plan` can say "classes.spacing
//! 0.5 → 0.3" instead of "not cached". The same component-wise comparison ([`compare`])
//! tells [`diff`](mod@super::diff) why a stage's key differs between two runs' manifests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::{InputFingerprint, KeyMaterial, StageKey};
use super::store::{Entry, INPUTS_FILE};

/// How many file names an [`RerunReason::InputChanged`] lists per category.
const LISTED_FILES: usize = 5;

/// One reason a stage must run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RerunReason {
    /// No entry of this stage exists at all.
    NeverRun,
    /// The user asked for it (`--force`).
    Forced,
    /// A config value the stage reads differs.
    ParamChanged {
        /// Key path.
        key: String,
        /// Value in the nearest entry (absent: not read then).
        old: Option<Value>,
        /// Value now (absent: no longer read).
        new: Option<Value>,
    },
    /// An input's content differs.
    InputChanged {
        /// Input label.
        label: String,
        /// Files added (first few).
        added: Vec<String>,
        /// Files removed (first few).
        removed: Vec<String>,
        /// Files whose content changed (first few).
        modified: Vec<String>,
        /// Total number of added, removed and modified files.
        counts: [usize; 3],
    },
    /// An upstream stage's key differs (it ran or will run with other inputs).
    UpstreamChanged {
        /// Upstream stage name.
        stage: String,
    },
    /// The stage's implementation version differs.
    StageVersionChanged {
        /// Version in the nearest entry.
        old: u32,
        /// Version now.
        new: u32,
    },
    /// geoexp's version differs.
    GeoexpVersionChanged {
        /// Version in the nearest entry.
        old: String,
        /// Version now.
        new: String,
    },
}

impl fmt::Display for RerunReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| match v {
            Some(v) => v.to_string(),
            None => "(unset)".to_owned(),
        };
        match self {
            RerunReason::NeverRun => write!(f, "never run before"),
            RerunReason::Forced => write!(f, "forced"),
            RerunReason::ParamChanged { key, old, new } => {
                write!(f, "{key} {} → {}", show(old), show(new))
            }
            RerunReason::InputChanged {
                label,
                added,
                removed,
                modified,
                counts,
            } => {
                write!(f, "input `{label}` changed:")?;
                let parts = [
                    ("added", added, counts[0]),
                    ("removed", removed, counts[1]),
                    ("modified", modified, counts[2]),
                ];
                let mut first = true;
                for (what, names, n) in parts {
                    if n == 0 {
                        continue;
                    }
                    let more = if n > names.len() {
                        format!(" and {} more", n - names.len())
                    } else {
                        String::new()
                    };
                    write!(
                        f,
                        "{} {n} {what} ({}{more})",
                        if first { "" } else { ";" },
                        names.join(", ")
                    )?;
                    first = false;
                }
                if first {
                    write!(f, " different content")?;
                }
                Ok(())
            }
            RerunReason::UpstreamChanged { stage } => write!(f, "upstream `{stage}` changed"),
            RerunReason::StageVersionChanged { old, new } => {
                write!(f, "stage implementation v{old} → v{new}")
            }
            RerunReason::GeoexpVersionChanged { old, new } => {
                write!(f, "geoexp {old} → {new}")
            }
        }
    }
}

/// The parts of a stage's key material that can differ between two records of the same
/// stage, borrowed from wherever they are kept: a cache entry's [`KeyMaterial`] or a
/// manifest's [`StageManifest`](super::StageManifest). One comparison ([`compare`]) serves
/// `plan` (current material against the nearest cached entry) and `diff` (two runs).
#[derive(Clone, Copy, Debug)]
pub struct MaterialView<'a> {
    /// geoexp version that went into the key (`None` when the record does not say).
    pub geoexp_version: Option<&'a str>,
    /// Stage implementation version.
    pub stage_version: u32,
    /// Config values read, by key path.
    pub params: &'a BTreeMap<String, Value>,
    /// Upstream stage name → key.
    pub upstream: &'a BTreeMap<String, StageKey>,
    /// Input label → fingerprint.
    pub inputs: &'a BTreeMap<String, InputFingerprint>,
}

impl<'a> From<&'a KeyMaterial> for MaterialView<'a> {
    fn from(m: &'a KeyMaterial) -> Self {
        MaterialView {
            geoexp_version: Some(&m.geoexp_version),
            stage_version: m.stage_version,
            params: &m.params,
            upstream: &m.upstream,
            inputs: &m.inputs,
        }
    }
}

/// One component in which two [`MaterialView`]s differ, in the order reasons are reported.
enum Difference<'a> {
    GeoexpVersion,
    StageVersion,
    Param(&'a String),
    Input(&'a String),
    Upstream(&'a String),
}

/// Every differing component of `old` and `new`: versions, then params, inputs and
/// upstream keys, each by sorted name.
fn differences<'a>(old: &MaterialView<'a>, new: &MaterialView<'a>) -> Vec<Difference<'a>> {
    fn changed<'a, V: PartialEq>(
        a: &'a BTreeMap<String, V>,
        b: &'a BTreeMap<String, V>,
    ) -> impl Iterator<Item = &'a String> {
        let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        names.into_iter().filter(|k| a.get(*k) != b.get(*k))
    }
    let mut out = Vec::new();
    if old.geoexp_version != new.geoexp_version {
        out.push(Difference::GeoexpVersion);
    }
    if old.stage_version != new.stage_version {
        out.push(Difference::StageVersion);
    }
    out.extend(changed(old.params, new.params).map(Difference::Param));
    out.extend(changed(old.inputs, new.inputs).map(Difference::Input));
    out.extend(changed(old.upstream, new.upstream).map(Difference::Upstream));
    out
}

/// The reasons `old` and `new` give different keys, in the order of the key table:
/// geoexp version, stage version, params, inputs, upstream keys. `input_change` builds the
/// reason for an input whose fingerprint differs (given its label): `plan` lists the files
/// that changed, a comparison of two manifests, which hold no file lists, only the label.
pub fn compare(
    old: &MaterialView<'_>,
    new: &MaterialView<'_>,
    mut input_change: impl FnMut(&str) -> RerunReason,
) -> Vec<RerunReason> {
    differences(old, new)
        .into_iter()
        .map(|d| match d {
            Difference::GeoexpVersion => RerunReason::GeoexpVersionChanged {
                old: old.geoexp_version.unwrap_or("(unknown)").to_owned(),
                new: new.geoexp_version.unwrap_or("(unknown)").to_owned(),
            },
            Difference::StageVersion => RerunReason::StageVersionChanged {
                old: old.stage_version,
                new: new.stage_version,
            },
            Difference::Param(key) => RerunReason::ParamChanged {
                key: key.clone(),
                old: old.params.get(key).cloned(),
                new: new.params.get(key).cloned(),
            },
            Difference::Input(label) => input_change(label),
            Difference::Upstream(stage) => RerunReason::UpstreamChanged {
                stage: stage.clone(),
            },
        })
        .collect()
}

/// An input reason without per-file detail, for when only the fingerprints are known.
pub fn input_changed(label: &str) -> RerunReason {
    RerunReason::InputChanged {
        label: label.to_owned(),
        added: Vec::new(),
        removed: Vec::new(),
        modified: Vec::new(),
        counts: [0; 3],
    }
}

/// The entry nearest to `material` among `entries`, with the reasons they differ.
/// `files` holds the current per-file hashes of each file input, by label.
pub fn explain<'e>(
    entries: &'e [Entry],
    material: &KeyMaterial,
    files: &BTreeMap<String, Vec<(PathBuf, String)>>,
) -> (Option<&'e Entry>, Vec<RerunReason>) {
    let distance = |e: &Entry| differences(&(&e.record.material).into(), &material.into()).len();
    let nearest = entries.iter().min_by(|a, b| {
        distance(a)
            .cmp(&distance(b))
            // Newer first among equals: reverse the timestamp order.
            .then_with(|| b.record.created.at.cmp(&a.record.created.at))
    });
    let Some(nearest) = nearest else {
        return (None, vec![RerunReason::NeverRun]);
    };
    let mut old_files = None;
    let reasons = compare(
        &(&nearest.record.material).into(),
        &material.into(),
        |label| {
            let old_files = old_files.get_or_insert_with(|| read_inputs(nearest));
            input_change(label, old_files.get(label), files.get(label))
        },
    );
    (Some(nearest), reasons)
}

fn read_inputs(entry: &Entry) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let Ok(text) = fs::read_to_string(entry.dir.join(INPUTS_FILE)) else {
        return out;
    };
    for line in text.lines() {
        let mut cols = line.splitn(3, '\t');
        if let (Some(label), Some(path), Some(hash)) = (cols.next(), cols.next(), cols.next()) {
            out.entry(label.to_owned())
                .or_default()
                .insert(path.to_owned(), hash.to_owned());
        }
    }
    out
}

fn input_change(
    label: &str,
    old: Option<&BTreeMap<String, String>>,
    new: Option<&Vec<(PathBuf, String)>>,
) -> RerunReason {
    let empty = BTreeMap::new();
    let old = old.unwrap_or(&empty);
    let new: BTreeMap<String, &String> = new
        .map(|files| {
            files
                .iter()
                .map(|(p, h)| (p.display().to_string(), h))
                .collect()
        })
        .unwrap_or_default();
    let added: Vec<String> = new
        .keys()
        .filter(|p| !old.contains_key(*p))
        .cloned()
        .collect();
    let removed: Vec<String> = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .cloned()
        .collect();
    let modified: Vec<String> = new
        .iter()
        .filter(|(p, h)| old.get(*p).is_some_and(|o| o != **h))
        .map(|(p, _)| p.clone())
        .collect();
    let counts = [added.len(), removed.len(), modified.len()];
    let first = |mut v: Vec<String>| {
        v.truncate(LISTED_FILES);
        v
    };
    RerunReason::InputChanged {
        label: label.to_owned(),
        added: first(added),
        removed: first(removed),
        modified: first(modified),
        counts,
    }
}
