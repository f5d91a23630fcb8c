//! What differs between two runs, by key path, never by line.
//!
//! [`diff`] compares two [`Manifest`]s: the resolved config (flattened to key paths, the
//! spelling stage params use), the stages whose keys differ with the first cause of each
//! (the same component-wise comparison `plan` uses, see [`compare`]), every stage result
//! that differs (with its delta when numeric) and the versions. It knows nothing about what
//! the stages or results mean: choosing which results count as a run's "metrics" is the
//! caller's business. Provenance and the experiment file's path describe how a value was
//! set, not what it is, so they are not differences.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::key::StageKey;
use super::manifest::{Manifest, StageManifest};
use super::reason::{RerunReason, compare, input_changed};
use super::stage::key_paths;

/// Everything that differs between run A (old) and run B (new).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ManifestDiff {
    /// Config values that differ, by key path (sorted).
    pub config: Vec<ValueChange>,
    /// Stages whose keys differ or that only one run has, upstream stages first.
    pub stages: Vec<StageDiff>,
    /// Stage results that differ, by stage (upstream first) then key.
    pub results: Vec<ResultChange>,
    /// Entries of `[versions]` that differ.
    pub versions: Vec<VersionChange>,
}

impl ManifestDiff {
    /// Whether the two runs are the same in everything compared.
    pub fn is_empty(&self) -> bool {
        self.config.is_empty()
            && self.stages.is_empty()
            && self.results.is_empty()
            && self.versions.is_empty()
    }
}

/// A config value that differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValueChange {
    /// Key path, e.g. `train.lr`.
    pub key: String,
    /// Value in A (absent: not set there).
    pub old: Option<Value>,
    /// Value in B (absent: not set there).
    pub new: Option<Value>,
}

/// A stage that differs between the runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageDiff {
    /// Stage name.
    pub stage: String,
    /// How it differs.
    #[serde(flatten)]
    pub change: StageChange,
}

/// How a stage differs between the runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum StageChange {
    /// Only A executed it (B stopped earlier, or its graph has no such stage).
    OnlyInA {
        /// Its key in A.
        key: StageKey,
    },
    /// Only B executed it.
    OnlyInB {
        /// Its key in B.
        key: StageKey,
    },
    /// Both executed it, with different keys.
    KeyChanged {
        /// Key in A.
        old_key: StageKey,
        /// Key in B.
        new_key: StageKey,
        /// The first differing component in key-table order (versions, params, inputs,
        /// upstream keys); absent when the recorded components are equal, which only an
        /// edited manifest or a change of key format can produce.
        cause: Option<RerunReason>,
        /// How many further components differ.
        more_causes: usize,
    },
}

/// A stage result that differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResultChange {
    /// Stage that reported it.
    pub stage: String,
    /// Result name.
    pub key: String,
    /// Value in A (absent: A has no such result).
    pub old: Option<Value>,
    /// Value in B.
    pub new: Option<Value>,
    /// `new − old`, when both are numbers.
    pub delta: Option<f64>,
    /// `(new − old) / |old|`, when both are numbers and `old` is not zero.
    pub relative: Option<f64>,
}

impl ResultChange {
    /// Whether both values are integers (so the delta is a whole number).
    pub fn is_integral(&self) -> bool {
        let int = |v: &Option<Value>| v.as_ref().is_some_and(|v| v.is_i64() || v.is_u64());
        int(&self.old) && int(&self.new)
    }
}

/// A `[versions]` entry that differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionChange {
    /// What it is the version of (`geoexp`, `features`).
    pub name: String,
    /// Value in A.
    pub old: Option<String>,
    /// Value in B.
    pub new: Option<String>,
}

/// Compares run `a` (old) with run `b` (new).
pub fn diff(a: &Manifest, b: &Manifest) -> ManifestDiff {
    let order = stage_order(a, b);
    let mut results = Vec::new();
    let mut stages = Vec::new();
    for name in &order {
        let (sa, sb) = (a.stages.get(name), b.stages.get(name));
        if let Some(change) = stage_change(a, sa, b, sb) {
            stages.push(StageDiff {
                stage: name.clone(),
                change,
            });
        }
        let empty = BTreeMap::new();
        let ra = sa.map_or(&empty, |s| &s.results);
        let rb = sb.map_or(&empty, |s| &s.results);
        for (key, old, new) in changed(ra, rb) {
            results.push(result_change(name, key, old, new));
        }
    }
    ManifestDiff {
        config: config_changes(a, b),
        stages,
        results,
        versions: changed(&a.versions, &b.versions)
            .map(|(name, old, new)| VersionChange {
                name: name.clone(),
                old: old.cloned(),
                new: new.cloned(),
            })
            .collect(),
    }
}

/// Entries of two maps that differ (including entries only one has), by sorted key.
fn changed<'m, V: PartialEq>(
    a: &'m BTreeMap<String, V>,
    b: &'m BTreeMap<String, V>,
) -> impl Iterator<Item = (&'m String, Option<&'m V>, Option<&'m V>)> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter_map(|k| {
        let (old, new) = (a.get(k), b.get(k));
        (old != new).then_some((k, old, new))
    })
}

fn config_changes(a: &Manifest, b: &Manifest) -> Vec<ValueChange> {
    let (ca, cb) = (key_paths(a.config.clone()), key_paths(b.config.clone()));
    let mut out: Vec<ValueChange> = changed(&ca, &cb)
        .map(|(key, old, new)| ValueChange {
            key: key.clone(),
            old: old.cloned(),
            new: new.cloned(),
        })
        .collect();
    // The config normally holds the name; report a renamed run even if it does not.
    if a.run.name != b.run.name && !out.iter().any(|c| c.key == "name") {
        out.push(ValueChange {
            key: "name".into(),
            old: Some(Value::String(a.run.name.clone())),
            new: Some(Value::String(b.run.name.clone())),
        });
        out.sort_by(|x, y| x.key.cmp(&y.key));
    }
    out
}

fn stage_change(
    a: &Manifest,
    sa: Option<&StageManifest>,
    b: &Manifest,
    sb: Option<&StageManifest>,
) -> Option<StageChange> {
    match (sa, sb) {
        (None, None) => None,
        (Some(s), None) => Some(StageChange::OnlyInA { key: s.key.clone() }),
        (None, Some(s)) => Some(StageChange::OnlyInB { key: s.key.clone() }),
        (Some(sa), Some(sb)) if sa.key == sb.key => None,
        (Some(sa), Some(sb)) => {
            let causes = compare(
                &sa.material(a.geoexp_version()),
                &sb.material(b.geoexp_version()),
                input_changed,
            );
            let more_causes = causes.len().saturating_sub(1);
            Some(StageChange::KeyChanged {
                old_key: sa.key.clone(),
                new_key: sb.key.clone(),
                cause: causes.into_iter().next(),
                more_causes,
            })
        }
    }
}

fn result_change(stage: &str, key: &str, old: Option<&Value>, new: Option<&Value>) -> ResultChange {
    let num = |v: Option<&Value>| v.and_then(Value::as_f64);
    let (delta, relative) = match (num(old), num(new)) {
        (Some(o), Some(n)) => (Some(n - o), (o != 0.0).then(|| (n - o) / o.abs())),
        _ => (None, None),
    };
    ResultChange {
        stage: stage.to_owned(),
        key: key.to_owned(),
        old: old.cloned(),
        new: new.cloned(),
        delta,
        relative,
    }
}

/// The stages of both runs, each after the stages it reads from (ties by name), so a
/// change reads in the order it propagates.
fn stage_order(a: &Manifest, b: &Manifest) -> Vec<String> {
    let mut needs: BTreeMap<&String, BTreeSet<&String>> = BTreeMap::new();
    for m in [a, b] {
        for (name, stage) in &m.stages {
            needs.entry(name).or_default().extend(stage.upstream.keys());
        }
    }
    let known: BTreeSet<&String> = needs.keys().copied().collect();
    for ups in needs.values_mut() {
        ups.retain(|u| known.contains(u));
    }
    let mut order = Vec::with_capacity(needs.len());
    while !needs.is_empty() {
        let ready: Vec<&String> = needs
            .iter()
            .filter(|(_, ups)| ups.is_empty())
            .map(|(name, _)| *name)
            .collect();
        // A cycle cannot come from a real graph; list what is left by name rather than loop.
        let batch = if ready.is_empty() {
            needs.keys().copied().collect()
        } else {
            ready
        };
        for name in batch {
            needs.remove(name);
            for ups in needs.values_mut() {
                ups.remove(name);
            }
            order.push(name.clone());
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::StageKey;
    use crate::graph::key::InputFingerprint;
    use crate::graph::manifest::RunInfo;
    use serde_json::json;

    fn key(c: char) -> StageKey {
        StageKey::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn stage(k: char, params: Value, upstream: &[(&str, char)], results: Value) -> StageManifest {
        let map = |v: Value| -> BTreeMap<String, Value> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        StageManifest {
            key: key(k),
            version: 1,
            params: map(params),
            upstream: upstream
                .iter()
                .map(|(s, k)| ((*s).to_owned(), key(*k)))
                .collect(),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            volatile_outputs: Vec::new(),
            results: map(results),
        }
    }

    /// A two-stage run: `train` reads `train.lr`, `evaluate` reads train's output.
    fn manifest(lr: f64, train_key: char, eval_key: char, km: f64) -> Manifest {
        Manifest {
            run: RunInfo {
                name: "golf".into(),
                id: format!("{train_key}{eval_key}"),
                experiment: "golf.toml".into(),
            },
            versions: [("geoexp".to_owned(), "0.1.0".to_owned())].into(),
            config: json!({"name": "golf", "seed": 7, "train": {"lr": lr, "epochs": 8}}),
            provenance: [("train.lr".to_owned(), "golf.toml".to_owned())].into(),
            stages: [
                (
                    "train".to_owned(),
                    stage(
                        train_key,
                        json!({"train.lr": lr}),
                        &[],
                        json!({"best_epoch": 3}),
                    ),
                ),
                (
                    "evaluate".to_owned(),
                    stage(
                        eval_key,
                        json!({}),
                        &[("train", train_key)],
                        json!({"test/km": km, "device": "Cpu"}),
                    ),
                ),
            ]
            .into(),
        }
    }

    #[test]
    fn identical_runs_have_no_differences() {
        let a = manifest(1e-3, 'a', 'b', 18.9);
        let d = diff(&a, &a.clone());
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d, ManifestDiff::default());
    }

    #[test]
    fn a_changed_value_is_reported_by_key_path() {
        let d = diff(
            &manifest(1e-3, 'a', 'b', 18.9),
            &manifest(3e-4, 'c', 'd', 18.9),
        );
        assert_eq!(
            d.config,
            [ValueChange {
                key: "train.lr".into(),
                old: Some(json!(1e-3)),
                new: Some(json!(3e-4)),
            }]
        );
    }

    #[test]
    fn provenance_differences_are_not_config_differences() {
        let a = manifest(1e-3, 'a', 'b', 18.9);
        let mut b = a.clone();
        b.provenance
            .insert("train.lr".into(), "--set train.lr=1e-3".into());
        b.run.experiment = "elsewhere/golf.toml".into();
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn a_renamed_run_is_a_config_difference_even_without_a_name_key() {
        let mut a = manifest(1e-3, 'a', 'b', 18.9);
        a.config = json!({"seed": 7});
        let mut b = a.clone();
        b.run.name = "golf2".into();
        assert_eq!(
            diff(&a, &b).config,
            [ValueChange {
                key: "name".into(),
                old: Some(json!("golf")),
                new: Some(json!("golf2")),
            }]
        );
    }

    #[test]
    fn each_changed_stage_has_its_first_cause_upstream_stages_first() {
        let d = diff(
            &manifest(1e-3, 'a', 'b', 18.9),
            &manifest(3e-4, 'c', 'd', 18.9),
        );
        assert_eq!(
            d.stages,
            [
                StageDiff {
                    stage: "train".into(),
                    change: StageChange::KeyChanged {
                        old_key: key('a'),
                        new_key: key('c'),
                        cause: Some(RerunReason::ParamChanged {
                            key: "train.lr".into(),
                            old: Some(json!(1e-3)),
                            new: Some(json!(3e-4)),
                        }),
                        more_causes: 0,
                    },
                },
                StageDiff {
                    stage: "evaluate".into(),
                    change: StageChange::KeyChanged {
                        old_key: key('b'),
                        new_key: key('d'),
                        cause: Some(RerunReason::UpstreamChanged {
                            stage: "train".into()
                        }),
                        more_causes: 0,
                    },
                },
            ]
        );
    }

    #[test]
    fn a_version_change_comes_before_a_param_change() {
        let a = manifest(1e-3, 'a', 'b', 18.9);
        let mut b = manifest(3e-4, 'c', 'd', 18.9);
        b.stages.get_mut("train").unwrap().version = 2;
        let d = diff(&a, &b);
        let StageChange::KeyChanged {
            cause, more_causes, ..
        } = &d.stages[0].change
        else {
            panic!("{d:?}")
        };
        assert_eq!(
            cause,
            &Some(RerunReason::StageVersionChanged { old: 1, new: 2 })
        );
        assert_eq!(*more_causes, 1);
    }

    #[test]
    fn a_changed_input_names_its_label() {
        let a = manifest(1e-3, 'a', 'b', 18.9);
        let mut b = manifest(1e-3, 'c', 'b', 18.9);
        b.stages.get_mut("train").unwrap().inputs.insert(
            "weights".into(),
            InputFingerprint {
                digest: "0".repeat(64),
                files: 1,
            },
        );
        let d = diff(&a, &b);
        let StageChange::KeyChanged { cause, .. } = &d.stages[0].change else {
            panic!("{d:?}")
        };
        assert_eq!(
            cause.as_ref().unwrap().to_string(),
            "input `weights` changed: different content"
        );
    }

    #[test]
    fn a_geoexp_release_is_a_version_change_and_every_stage_s_cause() {
        let a = manifest(1e-3, 'a', 'b', 18.9);
        let mut b = manifest(1e-3, 'c', 'd', 18.9);
        b.versions.insert("geoexp".into(), "0.2.0".into());
        let d = diff(&a, &b);
        assert_eq!(
            d.versions,
            [VersionChange {
                name: "geoexp".into(),
                old: Some("0.1.0".into()),
                new: Some("0.2.0".into()),
            }]
        );
        for s in &d.stages {
            let StageChange::KeyChanged { cause, .. } = &s.change else {
                panic!("{d:?}")
            };
            assert_eq!(
                cause,
                &Some(RerunReason::GeoexpVersionChanged {
                    old: "0.1.0".into(),
                    new: "0.2.0".into()
                })
            );
        }
    }

    #[test]
    fn metric_deltas_carry_sign_and_relative_change() {
        let worse = diff(
            &manifest(1e-3, 'a', 'b', 20.0),
            &manifest(3e-4, 'c', 'd', 25.0),
        );
        assert_eq!(
            worse.results,
            [ResultChange {
                stage: "evaluate".into(),
                key: "test/km".into(),
                old: Some(json!(20.0)),
                new: Some(json!(25.0)),
                delta: Some(5.0),
                relative: Some(0.25),
            }]
        );
        let better = diff(
            &manifest(1e-3, 'a', 'b', 20.0),
            &manifest(3e-4, 'c', 'd', 15.0),
        );
        assert_eq!(better.results[0].delta, Some(-5.0));
        assert_eq!(better.results[0].relative, Some(-0.25));
    }

    #[test]
    fn the_relative_change_from_zero_is_left_out() {
        let d = diff(
            &manifest(1e-3, 'a', 'b', 0.0),
            &manifest(3e-4, 'c', 'd', 2.5),
        );
        assert_eq!(d.results[0].delta, Some(2.5));
        assert_eq!(d.results[0].relative, None);
    }

    #[test]
    fn a_non_numeric_result_changes_without_a_delta() {
        let a = manifest(1e-3, 'a', 'b', 18.9);
        let mut b = a.clone();
        b.stages
            .get_mut("evaluate")
            .unwrap()
            .results
            .insert("device".into(), json!("Cuda"));
        let d = diff(&a, &b);
        assert_eq!(d.results.len(), 1);
        assert_eq!(d.results[0].delta, None);
        assert!(d.stages.is_empty());
    }

    #[test]
    fn a_stage_only_one_run_has_is_reported_with_its_results() {
        let a = manifest(1e-3, 'a', 'b', 18.9);
        let mut b = a.clone();
        b.stages.remove("evaluate");
        let d = diff(&a, &b);
        assert_eq!(
            d.stages,
            [StageDiff {
                stage: "evaluate".into(),
                change: StageChange::OnlyInA { key: key('b') },
            }]
        );
        assert!(
            d.results
                .iter()
                .all(|r| r.new.is_none() && r.delta.is_none())
        );
        assert_eq!(d.results.len(), 2);
    }

    #[test]
    fn the_json_form_is_tagged_by_change_and_reason() {
        let d = diff(
            &manifest(1e-3, 'a', 'b', 18.9),
            &manifest(3e-4, 'c', 'd', 18.9),
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["stages"][0]["stage"], "train");
        assert_eq!(v["stages"][0]["change"], "key_changed");
        assert_eq!(v["stages"][0]["cause"]["reason"], "param_changed");
        assert_eq!(v["stages"][0]["cause"]["key"], "train.lr");
        assert_eq!(v["config"][0]["new"], json!(3e-4));
    }
}
