//! Why a stage is not a cache hit: a typed diff against the nearest cached entry.
//!
//! "Nearest" is the entry of the same stage whose key material differs in the fewest
//! components (ties: the most recently created), so `plan` can say "classes.spacing
//! 0.5 → 0.3" instead of "not cached".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::KeyMaterial;
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

/// The entry nearest to `material` among `entries`, with the reasons they differ.
/// `files` holds the current per-file hashes of each file input, by label.
pub fn explain<'e>(
    entries: &'e [Entry],
    material: &KeyMaterial,
    files: &BTreeMap<String, Vec<(PathBuf, String)>>,
) -> (Option<&'e Entry>, Vec<RerunReason>) {
    let nearest = entries.iter().min_by(|a, b| {
        distance(&a.record.material, material)
            .cmp(&distance(&b.record.material, material))
            // Newer first among equals: reverse the timestamp order.
            .then_with(|| b.record.created.at.cmp(&a.record.created.at))
    });
    let Some(nearest) = nearest else {
        return (None, vec![RerunReason::NeverRun]);
    };
    let old = &nearest.record.material;
    let mut reasons = Vec::new();
    if old.geoexp_version != material.geoexp_version {
        reasons.push(RerunReason::GeoexpVersionChanged {
            old: old.geoexp_version.clone(),
            new: material.geoexp_version.clone(),
        });
    }
    if old.stage_version != material.stage_version {
        reasons.push(RerunReason::StageVersionChanged {
            old: old.stage_version,
            new: material.stage_version,
        });
    }
    let keys: BTreeSet<&String> = old.params.keys().chain(material.params.keys()).collect();
    for key in keys {
        let (o, n) = (old.params.get(key), material.params.get(key));
        if o != n {
            reasons.push(RerunReason::ParamChanged {
                key: key.clone(),
                old: o.cloned(),
                new: n.cloned(),
            });
        }
    }
    let labels: BTreeSet<&String> = old.inputs.keys().chain(material.inputs.keys()).collect();
    let mut old_files = None;
    for label in labels {
        if old.inputs.get(label) == material.inputs.get(label) {
            continue;
        }
        let old_files = old_files.get_or_insert_with(|| read_inputs(nearest));
        reasons.push(input_change(
            label,
            old_files.get(label.as_str()),
            files.get(label.as_str()),
        ));
    }
    let ups: BTreeSet<&String> = old
        .upstream
        .keys()
        .chain(material.upstream.keys())
        .collect();
    for up in ups {
        if old.upstream.get(up) != material.upstream.get(up) {
            reasons.push(RerunReason::UpstreamChanged { stage: up.clone() });
        }
    }
    (Some(nearest), reasons)
}

fn distance(a: &KeyMaterial, b: &KeyMaterial) -> usize {
    fn count<K: Ord, V: PartialEq>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> usize {
        let keys: BTreeSet<&K> = a.keys().chain(b.keys()).collect();
        keys.into_iter().filter(|k| a.get(k) != b.get(k)).count()
    }
    usize::from(a.stage_version != b.stage_version)
        + usize::from(a.geoexp_version != b.geoexp_version)
        + count(&a.params, &b.params)
        + count(&a.inputs, &b.inputs)
        + count(&a.upstream, &b.upstream)
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
