//! `geoexp ls`: one row per run under a folder, built from the runs' manifests alone.
//!
//! A run is a folder holding `manifest.toml`. Under the listed folder they are found at
//! depth 0 (the folder is a run), 1 (`runs/golf/<id>`, listing one experiment) or 2
//! (`runs/<name>/<id>`, listing a runs directory); the cache (`.cache`, any dot-folder)
//! and sweep records (`sweeps/`) are not runs, and a run folder is not searched further.
//! Only the manifests are read — no cache entry, no metrics file — in parallel, so ten
//! thousand runs list well within two seconds on two cores (`cargo bench --bench ls`).
//!
//! Columns: the config values (by key path) that differ between the listed runs, then
//! metrics (stage results). What the values mean is not decided here beyond which results
//! are a run's final metrics ([`super::is_final_metric`]); formatting is the CLI's.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::graph::manifest::{MANIFEST_FILE, RunInfo};
use crate::graph::{Params, key_paths};
use crate::stages::{evaluate, train};
use crate::vocab::monitor_mode_max;

use super::{DEFAULT_METRICS, SWEEPS_DIR, final_metrics};

/// What to list.
#[derive(Clone, Debug)]
pub struct LsOptions {
    /// A runs directory, one experiment's folder, or one run folder.
    pub dir: PathBuf,
    /// Which metric columns.
    pub metrics: MetricSelection,
    /// Sort by this metric, best first (see [`sort_descending`]).
    pub sort: Option<String>,
    /// Also drop metric columns whose value is the same in every listed run (when at
    /// least two runs are listed).
    pub only_changed: bool,
}

/// Which metric columns a listing has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricSelection {
    /// The train stage's `best_<monitor>` and [`DEFAULT_METRICS`]; those no listed run has
    /// are left out (a regression has no accuracy; runs stopped early have no metrics).
    Default,
    /// Every final metric any listed run has: the default ones first, then the rest by name.
    AllFinal,
    /// Exactly these result names, in this order: a final metric, or else any stage's
    /// result of that name (train, then the other stages by name). A name no listed run
    /// has is an error.
    Named(Vec<String>),
}

/// The listing: column names and one row per run.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    /// Config key paths whose value differs between the listed runs, sorted.
    pub config_columns: Vec<String>,
    /// Metric (result) names.
    pub metric_columns: Vec<String>,
    /// The runs, in order: by name then id, or by the sort metric.
    pub rows: Vec<Row>,
    /// Manifests that could not be read, and folders that could not be listed; the
    /// listing goes on without them.
    pub skipped: Vec<Skipped>,
}

/// One run.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Experiment name.
    pub name: String,
    /// Run id.
    pub id: String,
    /// The run folder.
    pub dir: PathBuf,
    /// One value per [`Listing::config_columns`] (absent: not set in this run).
    pub config: Vec<Option<Value>>,
    /// One value per [`Listing::metric_columns`] (absent: this run has no such result).
    pub metrics: Vec<Option<Value>>,
}

impl Row {
    /// `name/id`, the way `diff` accepts a run.
    pub fn label(&self) -> String {
        format!("{}/{}", self.name, self.id)
    }
}

/// Something under the listed folder that could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// The file or folder.
    pub path: PathBuf,
    /// What was wrong with it.
    pub problem: String,
}

/// Why a listing could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LsError {
    /// The folder to list does not exist.
    #[error("{}: no such folder", path.display())]
    MissingDir {
        /// The folder.
        path: PathBuf,
    },
    /// The folder to list is a file.
    #[error("{}: not a folder (give the folder that holds manifest.toml)", path.display())]
    NotADir {
        /// The path.
        path: PathBuf,
    },
    /// The folder to list could not be read.
    #[error("listing {}", path.display())]
    ReadDir {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `--metrics` or `--sort` names a result that no listed run has.
    #[error(
        "{option} {name}: no listed run has a result named `{name}`{}; available: {}",
        .suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(),
        .available.join(", ")
    )]
    UnknownMetric {
        /// The flag that named it.
        option: &'static str,
        /// The name.
        name: String,
        /// The closest available name.
        suggestion: Option<String>,
        /// Every result name the listed runs have.
        available: Vec<String>,
    },
}

/// Whether `--sort metric` puts larger values first: accuracies and scores improve
/// upwards, errors and losses downwards ([`monitor_mode_max`], which also decides how a
/// training's monitor improves). `best_val/acc` sorts like `val/acc`.
pub fn sort_descending(metric: &str) -> bool {
    monitor_mode_max(metric)
}

/// Lists the runs under `options.dir`.
///
/// # Errors
/// When the folder is missing or unreadable, or `--metrics`/`--sort` names a result no
/// listed run has. Unreadable manifests are not errors: they are in [`Listing::skipped`].
pub fn ls(options: &LsOptions) -> Result<Listing, LsError> {
    let (paths, mut skipped) = find_manifests(&options.dir)?;
    let mut wanted: Vec<&str> = match &options.metrics {
        MetricSelection::Named(names) => names.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    wanted.extend(options.sort.as_deref());
    let results: Vec<Result<Parsed, Skipped>> =
        paths.par_iter().map(|path| parse(path, &wanted)).collect();
    let mut runs = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(run) => runs.push(run),
            Err(s) => skipped.push(s),
        }
    }
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    if runs.is_empty() {
        return Ok(Listing {
            config_columns: Vec::new(),
            metric_columns: Vec::new(),
            rows: Vec::new(),
            skipped,
        });
    }

    let mut metric_columns = metric_columns(&options.metrics, &runs)?;
    if let Some(sort) = &options.sort {
        check_known("--sort", sort, &runs)?;
        if !metric_columns.contains(sort) {
            metric_columns.push(sort.clone());
        }
    }
    if options.only_changed && runs.len() > 1 {
        metric_columns.retain(|m| !same_everywhere(&runs, |r| r.metrics.get(m)));
    }
    let config_columns = changed_config(&runs);

    runs.sort_by(|a, b| (&a.name, &a.id, &a.dir).cmp(&(&b.name, &b.id, &b.dir)));
    if let Some(metric) = &options.sort {
        let descending = sort_descending(metric);
        // Stable: ties keep the name/id order.
        runs.sort_by(|a, b| by_metric(a.metrics.get(metric), b.metrics.get(metric), descending));
    }
    let rows = runs
        .into_iter()
        .map(|mut run| Row {
            config: config_columns
                .iter()
                .map(|k| run.config.remove(k))
                .collect(),
            metrics: metric_columns
                .iter()
                .map(|k| run.metrics.remove(k))
                .collect(),
            name: run.name,
            id: run.id,
            dir: run.dir,
        })
        .collect();
    Ok(Listing {
        config_columns,
        metric_columns,
        rows,
        skipped,
    })
}

/// The manifests under `dir` (see the module docs), and the folders that could not be
/// listed below the first level.
pub(super) fn find_manifests(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Skipped>), LsError> {
    if !dir.exists() {
        return Err(LsError::MissingDir {
            path: dir.to_path_buf(),
        });
    }
    if !dir.is_dir() {
        return Err(LsError::NotADir {
            path: dir.to_path_buf(),
        });
    }
    let own = dir.join(MANIFEST_FILE);
    if own.is_file() {
        return Ok((vec![own], Vec::new()));
    }
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LsError::ReadDir { path, source }
    };
    let top = subfolders(dir, true).map_err(read_err(dir))?;
    let found: Vec<Result<Vec<PathBuf>, Skipped>> = top
        .par_iter()
        .map(|sub| {
            let manifest = sub.join(MANIFEST_FILE);
            if manifest.is_file() {
                return Ok(vec![manifest]);
            }
            let runs = subfolders(sub, false).map_err(|e| Skipped {
                path: sub.clone(),
                problem: format!("cannot list it: {e}"),
            })?;
            Ok(runs
                .into_iter()
                .map(|run| run.join(MANIFEST_FILE))
                .filter(|m| m.is_file())
                .collect())
        })
        .collect();
    let mut paths = Vec::new();
    let mut skipped = Vec::new();
    for f in found {
        match f {
            Ok(p) => paths.extend(p),
            Err(s) => skipped.push(s),
        }
    }
    Ok((paths, skipped))
}

/// Folders directly under `dir`, without dot-folders and, at the top of a runs
/// directory, without the sweep records.
pub(super) fn subfolders(dir: &Path, top: bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || (top && name == SWEEPS_DIR) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            out.push(path);
        }
    }
    Ok(out)
}

/// The parts of a manifest a listing reads; the rest (provenance, params, inputs, outputs)
/// is skipped by the parser without being kept.
#[derive(Deserialize)]
struct Summary {
    run: RunInfo,
    config: Value,
    #[serde(default)]
    stages: BTreeMap<String, StageResults>,
}

#[derive(Deserialize)]
struct StageResults {
    #[serde(default)]
    results: BTreeMap<String, Value>,
}

/// What a listing keeps of one run.
struct Parsed {
    name: String,
    id: String,
    dir: PathBuf,
    config: Params,
    /// Final metrics, and any other `wanted` result.
    metrics: BTreeMap<String, Value>,
    /// Every result name of every stage, when the run lacks a wanted name (only then can
    /// they be needed, to list what is available).
    names: Vec<String>,
}

fn parse(path: &Path, wanted: &[&str]) -> Result<Parsed, Skipped> {
    let skipped = |problem: String| Skipped {
        path: path.to_path_buf(),
        problem,
    };
    let text =
        fs::read_to_string(path).map_err(|e| skipped(format!("cannot read the manifest: {e}")))?;
    // The tables a listing never reads are over half of a manifest; parsing without them
    // takes 30 % off the whole listing (figures in benches/README.md).
    // Should the cut text not parse, the whole file is parsed, so a manifest laid out in
    // an unexpected way is only slower.
    let summary: Summary = without_unread_tables(&text)
        .and_then(|cut| toml::from_str(&cut).ok())
        .map_or_else(|| toml::from_str(&text), Ok)
        .map_err(|e| skipped(format!("unreadable manifest: {}", e.message().trim_end())))?;
    let mut stages = summary.stages;
    // The names are needed only to report a wanted name that no run has, so a run that
    // has every wanted name need not keep them.
    let names = if wanted
        .iter()
        .all(|w| stages.values().any(|s| s.results.contains_key(*w)))
    {
        Vec::new()
    } else {
        stages
            .values()
            .flat_map(|s| s.results.keys().cloned())
            .collect()
    };
    let evaluate = stages.remove(evaluate::NAME).map(|s| s.results);
    let train = stages.remove(train::NAME).map(|s| s.results);
    // Wanted results that are not final metrics: train's first, then the other stages'.
    let mut extra = BTreeMap::new();
    for &name in wanted {
        if evaluate.as_ref().is_some_and(|r| r.contains_key(name)) {
            continue;
        }
        let found = train
            .as_ref()
            .and_then(|r| r.get(name))
            .or_else(|| stages.values().find_map(|s| s.results.get(name)));
        if let Some(v) = found {
            extra.insert(name.to_owned(), v.clone());
        }
    }
    let mut metrics = final_metrics(evaluate, train);
    metrics.extend(extra);
    Ok(Parsed {
        name: summary.run.name,
        id: summary.run.id,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        config: key_paths(summary.config),
        metrics,
        names,
    })
}

/// The manifest text without the tables a listing does not read: `[provenance]`,
/// `[versions]`, and each stage's params, inputs, outputs and upstream keys. `None` when
/// the text has multi-line strings, inside which a line starting with `[` need not be a
/// table header. Keeping a table is always correct; only headers recognised for certain
/// are dropped, with the lines up to the next header.
fn without_unread_tables(text: &str) -> Option<String> {
    if text.contains("\"\"\"") || text.contains("'''") {
        return None;
    }
    let mut out = String::with_capacity(text.len() / 2);
    let mut keep = true;
    for line in text.split_inclusive('\n') {
        if line.starts_with('[') {
            keep = !is_unread_table(line);
        }
        if keep {
            out.push_str(line);
        }
    }
    Some(out)
}

/// Whether a header line names a table [`without_unread_tables`] drops.
fn is_unread_table(header: &str) -> bool {
    /// A bare key and what follows it.
    fn bare(s: &str) -> (&str, &str) {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(s.len());
        s.split_at(end)
    }
    /// What follows one key, bare or quoted.
    fn skip_key(s: &str) -> Option<&str> {
        if let Some(rest) = s.strip_prefix('"') {
            let mut escaped = false;
            for (i, c) in rest.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => return Some(&rest[i + 1..]),
                    _ => {}
                }
            }
            None
        } else if let Some(rest) = s.strip_prefix('\'') {
            rest.find('\'').map(|i| &rest[i + 1..])
        } else {
            let (key, rest) = bare(s);
            (!key.is_empty()).then_some(rest)
        }
    }
    let ends_key = |rest: &str| rest.starts_with(']') || rest.starts_with('.');
    let Some(rest) = header.strip_prefix('[') else {
        return false;
    };
    match bare(rest) {
        ("provenance" | "versions", rest) => ends_key(rest),
        ("stages", rest) => {
            let Some(rest) = rest.strip_prefix('.').and_then(skip_key) else {
                return false;
            };
            let Some(rest) = rest.strip_prefix('.') else {
                return false;
            };
            let (table, rest) = bare(rest);
            matches!(table, "params" | "inputs" | "outputs" | "upstream") && ends_key(rest)
        }
        _ => false,
    }
}

fn metric_columns(selection: &MetricSelection, runs: &[Parsed]) -> Result<Vec<String>, LsError> {
    let present: BTreeSet<&String> = runs.iter().flat_map(|r| r.metrics.keys()).collect();
    let best = present
        .iter()
        .filter(|m| m.starts_with("best_") && m.as_str() != "best_epoch")
        .map(|m| (*m).clone());
    let defaults: Vec<String> = best
        .chain(
            DEFAULT_METRICS
                .iter()
                .filter(|m| present.iter().any(|p| p == *m))
                .map(|m| (*m).to_owned()),
        )
        .collect();
    Ok(match selection {
        MetricSelection::Default => defaults,
        MetricSelection::AllFinal => {
            let mut out = defaults;
            for m in present {
                if !out.contains(m) {
                    out.push(m.clone());
                }
            }
            out
        }
        MetricSelection::Named(names) => {
            let mut out: Vec<String> = Vec::with_capacity(names.len());
            for name in names {
                check_known("--metrics", name, runs)?;
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
            out
        }
    })
}

/// An error unless some run has a result called `name`.
fn check_known(option: &'static str, name: &str, runs: &[Parsed]) -> Result<(), LsError> {
    if runs.iter().any(|r| r.metrics.contains_key(name)) {
        return Ok(());
    }
    let available: BTreeSet<&String> = runs
        .iter()
        .flat_map(|r| r.names.iter().chain(r.metrics.keys()))
        .collect();
    let suggestion =
        crate::experiment::keys::closest(name, available.iter().copied(), |s| s.as_str()).cloned();
    Err(LsError::UnknownMetric {
        option,
        name: name.to_owned(),
        suggestion,
        available: available.into_iter().cloned().collect(),
    })
}

/// Config key paths whose value (or presence) is not the same in every run.
fn changed_config(runs: &[Parsed]) -> Vec<String> {
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.config.keys()).collect();
    keys.into_iter()
        .filter(|k| !same_everywhere(runs, |r| r.config.get(*k)))
        .cloned()
        .collect()
}

fn same_everywhere<'r>(
    runs: &'r [Parsed],
    value: impl Fn(&'r Parsed) -> Option<&'r Value>,
) -> bool {
    let mut values = runs.iter().map(value);
    let first = values.next().flatten();
    values.all(|v| v == first)
}

/// Numbers first, best first; runs without a number for the metric last.
fn by_metric(a: Option<&Value>, b: Option<&Value>, descending: bool) -> Ordering {
    match (a.and_then(Value::as_f64), b.and_then(Value::as_f64)) {
        (Some(x), Some(y)) if descending => y.total_cmp(&x),
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, rel: &str, name: &str, id: &str, lr: f64, km: Option<f64>) {
        let evaluate = km.map_or(String::new(), |km| {
            format!(
                "[stages.evaluate]\nkey = \"{k}\"\nversion = 1\n[stages.evaluate.results]\n\"test/haversine_km_mean\" = {km:?}\n\"test/acc\" = 0.5\n",
                k = "e".repeat(64)
            )
        });
        let text = format!(
            "[config]\nname = \"{name}\"\nseed = 7\n[config.train]\nlr = {lr:?}\nmonitor = \"val/acc\"\n\
             [provenance]\n[run]\nexperiment = \"x.toml\"\nid = \"{id}\"\nname = \"{name}\"\n\
             [stages.train]\nkey = \"{k}\"\nversion = 1\n[stages.train.results]\nbest_epoch = 1\n\"best_val/acc\" = 0.5\ndevice = \"Cpu\"\n\
             {evaluate}[versions]\ngeoexp = \"0.1.0\"\n",
            k = "a".repeat(64)
        );
        let path = dir.join(rel).join(MANIFEST_FILE);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn options(dir: &Path) -> LsOptions {
        LsOptions {
            dir: dir.to_path_buf(),
            metrics: MetricSelection::Default,
            sort: None,
            only_changed: false,
        }
    }

    #[test]
    fn runs_are_found_at_every_depth_but_not_in_the_cache_or_sweeps() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path();
        write(runs, "golf/b2", "golf", "b2", 1e-3, Some(20.0));
        write(runs, "golf/a1", "golf", "a1", 3e-4, Some(25.0));
        write(runs, "sweeps/s1", "golf", "zz", 3e-4, Some(25.0));
        write(runs, ".cache/x", "golf", "yy", 3e-4, Some(25.0));
        let all = ls(&options(runs)).unwrap();
        let labels: Vec<String> = all.rows.iter().map(Row::label).collect();
        assert_eq!(labels, ["golf/a1", "golf/b2"]);
        assert_eq!(ls(&options(&runs.join("golf"))).unwrap().rows.len(), 2);
        let one = ls(&options(&runs.join("golf/a1"))).unwrap();
        assert_eq!(one.rows.len(), 1);
        assert!(one.config_columns.is_empty());
    }

    #[test]
    fn only_differing_config_values_are_columns() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "golf/a1", "golf", "a1", 3e-4, Some(25.0));
        write(tmp.path(), "golf/b2", "golf", "b2", 1e-3, Some(20.0));
        let l = ls(&options(tmp.path())).unwrap();
        assert_eq!(l.config_columns, ["train.lr"]);
        assert_eq!(
            l.metric_columns,
            ["best_val/acc", "test/haversine_km_mean", "test/acc"]
        );
        assert_eq!(l.rows[0].config, [Some(json!(3e-4))]);
    }

    #[test]
    fn sorting_puts_the_best_first_and_runs_without_the_metric_last() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "golf/a1", "golf", "a1", 3e-4, Some(25.0));
        write(tmp.path(), "golf/b2", "golf", "b2", 1e-3, Some(20.0));
        write(tmp.path(), "golf/c3", "golf", "c3", 1e-2, None);
        let mut o = options(tmp.path());
        o.sort = Some("test/haversine_km_mean".into());
        let ids: Vec<String> = ls(&o).unwrap().rows.into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["b2", "a1", "c3"]);
        assert!(sort_descending("test/acc"));
        assert!(!sort_descending("test/haversine_km_mean"));
    }

    #[test]
    fn only_changed_drops_metrics_equal_in_every_run() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "golf/a1", "golf", "a1", 3e-4, Some(25.0));
        write(tmp.path(), "golf/b2", "golf", "b2", 1e-3, Some(20.0));
        let mut o = options(tmp.path());
        o.only_changed = true;
        assert_eq!(ls(&o).unwrap().metric_columns, ["test/haversine_km_mean"]);
    }

    #[test]
    fn an_unknown_metric_lists_the_available_ones() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "golf/a1", "golf", "a1", 3e-4, Some(25.0));
        let mut o = options(tmp.path());
        o.metrics = MetricSelection::Named(vec!["test/haversine_km_maen".into()]);
        let err = ls(&o).unwrap_err().to_string();
        assert!(
            err.contains("did you mean `test/haversine_km_mean`"),
            "{err}"
        );
        assert!(
            err.contains("available: best_epoch, best_val/acc, device,"),
            "{err}"
        );
        // Any stage's result can be asked for by name.
        o.metrics = MetricSelection::Named(vec!["device".into()]);
        assert_eq!(ls(&o).unwrap().rows[0].metrics, [Some(json!("Cpu"))]);
    }

    #[test]
    fn a_corrupt_manifest_is_skipped_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "golf/a1", "golf", "a1", 3e-4, Some(25.0));
        let bad = tmp.path().join("golf/b2/manifest.toml");
        fs::create_dir_all(bad.parent().unwrap()).unwrap();
        fs::write(&bad, "[run\n").unwrap();
        let l = ls(&options(tmp.path())).unwrap();
        assert_eq!(l.rows.len(), 1);
        assert_eq!(l.skipped.len(), 1);
        assert_eq!(l.skipped[0].path, bad);
    }

    #[test]
    fn only_the_tables_a_listing_does_not_read_are_cut() {
        let text = "[config]\nname = \"golf\"\n[config.train]\nlr = 0.001\n\
                    [provenance]\n\"train.lr\" = \"x\"\n[run]\nid = \"a1\"\n\
                    [stages.\"odd.stage\"]\nkey = \"k\"\n[stages.\"odd.stage\".params]\nx = 1\n\
                    [stages.train.outputs.\"best.toml\"]\nbytes = 1\n\
                    [stages.train.results]\n\"best_val/acc\" = 0.5\n\
                    [stages.train.paramsx]\ny = 2\n[versions]\ngeoexp = \"0.1.0\"\n";
        assert_eq!(
            without_unread_tables(text).unwrap(),
            "[config]\nname = \"golf\"\n[config.train]\nlr = 0.001\n[run]\nid = \"a1\"\n\
             [stages.\"odd.stage\"]\nkey = \"k\"\n[stages.train.results]\n\"best_val/acc\" = 0.5\n\
             [stages.train.paramsx]\ny = 2\n"
        );
        assert_eq!(
            without_unread_tables("a = \"\"\"\n[provenance]\n\"\"\"\n"),
            None
        );
    }

    #[test]
    fn a_real_manifest_lists_the_same_cut_or_whole() {
        let text = include_str!("../../benches/ls_manifest.toml");
        let cut: Summary = toml::from_str(&without_unread_tables(text).unwrap()).unwrap();
        let whole: Summary = toml::from_str(text).unwrap();
        assert_eq!(cut.config, whole.config);
        assert_eq!(cut.run, whole.run);
        let results = |s: &Summary| -> Vec<BTreeMap<String, Value>> {
            s.stages.values().map(|s| s.results.clone()).collect()
        };
        assert_eq!(results(&cut), results(&whole));
        assert!(text.len() > 2 * without_unread_tables(text).unwrap().len());
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = ls(&options(Path::new("no/such/runs"))).unwrap_err();
        assert_eq!(err.to_string(), "no/such/runs: no such folder");
    }
}
