//! `manifest.toml` (deterministic) and `execution.toml` (volatile) of a run.
//!
//! The manifest holds only what determines or describes the run's results — resolved
//! config, provenance, stage keys, input fingerprints, output hashes, results, versions —
//! with sorted keys and round-trip-exact floats, so the same experiment on the same inputs
//! with the same code yields the same bytes, and `git diff` of two manifests is a review.
//! Everything that varies from one execution to the next (times, hosts, cache hits) goes
//! to `execution.toml`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::GraphError;
use super::executor::{StageRun, StageStatus};
use super::key::{InputFingerprint, StageKey};
use super::reason::MaterialView;
use super::store::{Creation, OutputHash, write_atomic};

/// File name of a run's manifest.
pub const MANIFEST_FILE: &str = "manifest.toml";
/// File name of a run's execution record.
pub const EXECUTION_FILE: &str = "execution.toml";
/// The entry of `[versions]` that holds geoexp's own version.
pub const GEOEXP_VERSION_KEY: &str = "geoexp";

/// Identity of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Experiment name.
    pub name: String,
    /// Run id (hash of the resolved config and input fingerprints).
    pub id: String,
    /// The experiment file, as given on the command line.
    pub experiment: String,
}

/// One stage in a manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageManifest {
    /// Its key.
    pub key: StageKey,
    /// Implementation version.
    pub version: u32,
    /// Config values it read.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Upstream keys.
    #[serde(default)]
    pub upstream: BTreeMap<String, StageKey>,
    /// Input fingerprints.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputFingerprint>,
    /// Hashes of the deterministic outputs.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputHash>,
    /// Names of the outputs whose bytes depend on when or where the stage ran (event
    /// files): their hashes are in the cache entry's record, not here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volatile_outputs: Vec<String>,
    /// Results (counts, metrics).
    #[serde(default)]
    pub results: BTreeMap<String, Value>,
}

impl StageManifest {
    /// The manifest view of an executed stage: its record less everything volatile.
    pub fn of(run: &StageRun) -> StageManifest {
        let record = &run.entry.record;
        let (volatile, outputs): (BTreeMap<_, _>, BTreeMap<_, _>) = record
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(_, v)| v.volatile);
        StageManifest {
            key: record.key.clone(),
            version: record.material.stage_version,
            params: record.material.params.clone(),
            upstream: record.material.upstream.clone(),
            inputs: record.material.inputs.clone(),
            outputs,
            volatile_outputs: volatile.into_keys().collect(),
            results: record.results.clone(),
        }
    }

    /// What went into this stage's key, for comparing it with another record of the stage.
    /// A manifest keeps the geoexp version once, under `[versions]`, so the caller passes it.
    pub fn material<'a>(&'a self, geoexp_version: Option<&'a str>) -> MaterialView<'a> {
        MaterialView {
            geoexp_version,
            stage_version: self.version,
            params: &self.params,
            upstream: &self.upstream,
            inputs: &self.inputs,
        }
    }
}

/// A run's manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Identity.
    pub run: RunInfo,
    /// Versions of geoexp and what it was built with.
    pub versions: BTreeMap<String, String>,
    /// The resolved config.
    pub config: Value,
    /// Where each config value came from (`default`, a file, an environment variable, `--set`).
    pub provenance: BTreeMap<String, String>,
    /// Executed stages, by name.
    pub stages: BTreeMap<String, StageManifest>,
}

impl Manifest {
    /// Writes the manifest atomically as TOML.
    ///
    /// # Errors
    /// When it cannot be encoded or written.
    pub fn write(&self, path: &Path) -> Result<(), GraphError> {
        let value = serde_json::to_value(self).map_err(|e| GraphError::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_atomic(path, to_toml_string(&value, path)?.as_bytes())
    }

    /// The geoexp version that built this run's stages (it goes into every stage key).
    pub fn geoexp_version(&self) -> Option<&str> {
        self.versions.get(GEOEXP_VERSION_KEY).map(String::as_str)
    }

    /// Reads a manifest.
    ///
    /// # Errors
    /// When it cannot be read or parsed; the message names the file.
    pub fn read(path: &Path) -> Result<Manifest, GraphError> {
        let text = std::fs::read_to_string(path).map_err(GraphError::io("reading", path))?;
        toml::from_str(&text).map_err(|e| GraphError::Decode {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        })
    }
}

/// One stage in `execution.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageExecution {
    /// Stage name.
    pub stage: String,
    /// Its key.
    pub key: StageKey,
    /// `hit` or `ran`.
    pub status: String,
    /// Seconds spent by this process.
    pub duration_s: f64,
    /// When, where and how the entry was computed (by this process or an earlier one),
    /// with the stage's facts about that attempt (device, epochs run after a resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<Creation>,
}

impl StageExecution {
    /// The execution view of an executed stage.
    pub fn of(run: &StageRun) -> StageExecution {
        StageExecution {
            stage: run.stage.clone(),
            key: run.key.clone(),
            status: match run.status {
                StageStatus::Hit => "hit",
                StageStatus::Ran => "ran",
            }
            .to_owned(),
            duration_s: run.duration.as_secs_f64(),
            computed: Some(run.entry.record.created.clone()),
        }
    }
}

/// `execution.toml`: the volatile facts of one execution.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Execution {
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Host name.
    pub host: String,
    /// The command line.
    pub command: Vec<String>,
    /// `ok` or `failed`.
    pub status: String,
    /// The error, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per-stage hit/miss and durations.
    #[serde(default)]
    pub stages: Vec<StageExecution>,
}

impl Execution {
    /// Writes it atomically as TOML.
    ///
    /// # Errors
    /// When it cannot be encoded or written.
    pub fn write(&self, path: &Path) -> Result<(), GraphError> {
        let text = toml::to_string(self).map_err(|e| GraphError::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_atomic(path, text.as_bytes())
    }
}

/// TOML text of a JSON value; nulls (unset options) are dropped, as TOML has none.
///
/// # Errors
/// When the value is not a table or holds an array containing null.
pub fn to_toml_string(value: &Value, path: &Path) -> Result<String, GraphError> {
    let toml_value = to_toml(value).ok_or_else(|| GraphError::Encode {
        path: path.to_path_buf(),
        message: "an array holds an unset value".into(),
    })?;
    toml::to_string(&toml_value).map_err(|e| GraphError::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn to_toml(value: &Value) -> Option<toml::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => {
            toml::Value::Array(items.iter().map(to_toml).collect::<Option<Vec<_>>>()?)
        }
        Value::Object(map) => {
            let mut table = toml::Table::new();
            for (k, v) in map {
                match v {
                    Value::Null => {}
                    v => {
                        table.insert(k.clone(), to_toml(v)?);
                    }
                }
            }
            toml::Value::Table(table)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_survive_a_round_trip_exactly() {
        let v = json!({"a": 0.1, "b": 2e-4, "c": 1.0/3.0, "d": 1e300, "e": 5e-324});
        let text = to_toml_string(&v, Path::new("x")).unwrap();
        let back: Value = toml::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn a_changed_value_changes_only_its_own_lines() {
        // What makes `git diff` of two manifests a review: same layout, sorted keys, so a
        // change of lr shows as the lines that hold it and the key it changes, nothing else.
        let manifest = |lr: f64, key: char| -> String {
            let stage = StageManifest {
                key: StageKey::parse(&key.to_string().repeat(64)).unwrap(),
                version: 1,
                params: [("train.lr".to_owned(), json!(lr))].into(),
                upstream: BTreeMap::new(),
                inputs: BTreeMap::new(),
                outputs: BTreeMap::new(),
                volatile_outputs: Vec::new(),
                results: [("best_epoch".to_owned(), json!(3))].into(),
            };
            let m = Manifest {
                run: RunInfo {
                    name: "golf".into(),
                    id: "abc".into(),
                    experiment: "golf.toml".into(),
                },
                versions: [("geoexp".to_owned(), "0.1.0".to_owned())].into(),
                config: json!({"name": "golf", "train": {"lr": lr, "epochs": 8}}),
                provenance: [("train.lr".to_owned(), "golf.toml".to_owned())].into(),
                stages: [("train".to_owned(), stage)].into(),
            };
            to_toml_string(&serde_json::to_value(&m).unwrap(), Path::new("x")).unwrap()
        };
        let (a, b) = (manifest(1e-3, 'a'), manifest(3e-4, 'b'));
        assert_eq!(a.lines().count(), b.lines().count());
        let changed: Vec<(&str, &str)> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
        assert_eq!(
            changed,
            [
                ("lr = 0.001", "lr = 0.0003"),
                (
                    &*format!("key = \"{}\"", "a".repeat(64)),
                    &*format!("key = \"{}\"", "b".repeat(64))
                ),
                ("\"train.lr\" = 0.001", "\"train.lr\" = 0.0003"),
            ]
        );
    }

    #[test]
    fn keys_are_sorted_and_nulls_dropped() {
        let v = json!({"z": 1, "a": {"y": null, "b": "x"}});
        let text = to_toml_string(&v, Path::new("x")).unwrap();
        assert!(text.find("z =").unwrap() < text.find("[a]").unwrap());
        assert!(!text.contains('y'));
    }
}
