//! The run report: everything one run folder holds, on one page.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::graph::manifest::{EXECUTION_FILE, MANIFEST_FILE};
use crate::graph::{Execution, Manifest, key_paths};
use crate::ops::plain_value;
use crate::stages::evaluate::{CellRow, PredictionRow};
use crate::stages::{classes, dataset, evaluate, train};
use crate::track::map::{retitle, run_title};

use super::html::{Cell, escape, img, page, section, table, table_with_classes};
use super::svg::{LineChart, PALETTE, Series};
use super::{ReportError, read, read_csv};

/// How many of the worst test predictions are shown with their views.
const WORST: usize = 12;
/// Thumbnails' longest side in pixels.
const THUMB: u32 = 96;

/// The report of the run in `run_dir` (which holds `manifest.toml`), as one HTML page.
///
/// # Errors
/// When the manifest cannot be read, or a file the manifest says the run has cannot be
/// read or parsed. Parts a run does not have (one stopped `--until classes`) are left out.
pub fn run_report(run_dir: &Path) -> Result<String, ReportError> {
    let manifest_path = run_dir.join(MANIFEST_FILE);
    let manifest = Manifest::read(&manifest_path).map_err(|e| ReportError::Parse {
        path: manifest_path.clone(),
        message: e.to_string(),
    })?;
    let execution: Option<Execution> = read(&run_dir.join(EXECUTION_FILE))
        .ok()
        .and_then(|text| toml::from_str(&text).ok());
    let run = &manifest.run;
    let title = format!("{} · run {}", run.name, run.id);
    let mut lead = format!(
        "Experiment <code>{}</code> · geoexp {}",
        escape(&run.experiment),
        escape(manifest.geoexp_version().unwrap_or("?"))
    );
    if let Some(e) = &execution {
        lead.push_str(&format!(
            " · {} on {}, {} → {} ({})",
            escape(&e.status),
            escape(&e.host),
            escape(&e.started_at),
            escape(&e.finished_at),
            escape(&e.command.join(" "))
        ));
    }
    let mut body = String::new();
    body.push_str(&metrics_section(&manifest));
    body.push_str(&stages_section(&manifest, execution.as_ref()));
    if manifest.stages.contains_key(train::NAME) {
        body.push_str(&curves_section(run_dir, &manifest)?);
    }
    body.push_str(&maps_section(run_dir, &manifest)?);
    if manifest.stages.contains_key(evaluate::NAME) {
        body.push_str(&classes_section(run_dir)?);
        body.push_str(&worst_section(run_dir, &manifest)?);
    }
    body.push_str(&config_section(&manifest));
    Ok(page(&title, &lead, &body))
}

/// The final metrics: the evaluate stage's test results and train's `best_*`.
fn metrics_section(manifest: &Manifest) -> String {
    let results = |stage: &str| manifest.stages.get(stage).map(|s| s.results.clone());
    let metrics = crate::ops::final_metrics(results(evaluate::NAME), results(train::NAME));
    if metrics.is_empty() {
        return section(
            "metrics",
            "Metrics",
            "<p>This run has no evaluate or train stage, so no metrics.</p>",
        );
    }
    let rows: Vec<Vec<Cell>> = metrics
        .iter()
        .map(|(name, v)| {
            let value = match v.as_f64() {
                Some(x) => Cell::number(x),
                None => Cell::text(plain_value(v)),
            };
            vec![Cell::text(name.clone()), value]
        })
        .collect();
    let mut body = String::new();
    if let (Some(mean), Some(median)) = (
        metrics
            .get("test/haversine_km_mean")
            .and_then(Value::as_f64),
        metrics
            .get("test/haversine_km_median")
            .and_then(Value::as_f64),
    ) {
        body.push_str(&format!(
            r#"<p class="headline">Test error: mean <b data-metric="test/haversine_km_mean">{mean:.1} km</b>, median <b data-metric="test/haversine_km_median">{median:.1} km</b>{}</p>"#,
            metrics
                .get("test/baseline_km_mean")
                .and_then(Value::as_f64)
                .map(|b| format!(" (train-mean baseline: mean {b:.1} km)"))
                .unwrap_or_default()
        ));
    }
    body.push_str(&table("metrics-table", &["metric", "value"], &rows));
    section("metrics", "Metrics", &body)
}

/// Each stage: key, hit or ran, time, and where its entry was computed.
fn stages_section(manifest: &Manifest, execution: Option<&Execution>) -> String {
    let mut order: Vec<&str> = execution
        .map(|e| e.stages.iter().map(|s| s.stage.as_str()).collect())
        .unwrap_or_default();
    for name in manifest.stages.keys() {
        if !order.contains(&name.as_str()) {
            order.push(name);
        }
    }
    let rows: Vec<Vec<Cell>> = order
        .iter()
        .filter_map(|name| {
            let stage = manifest.stages.get(*name)?;
            let ran = execution.and_then(|e| e.stages.iter().find(|s| s.stage == *name));
            let status = ran.map_or("-", |r| r.status.as_str());
            let computed = ran
                .and_then(|r| r.computed.as_ref())
                .map(|c| format!("{} on {} in {:.2} s", c.at, c.host, c.duration_s))
                .unwrap_or_default();
            let results = stage
                .results
                .iter()
                .filter(|(k, _)| !k.starts_with("last/"))
                .take(6)
                .map(|(k, v)| format!("{k} {}", short_value(v)))
                .collect::<Vec<_>>()
                .join(", ");
            Some(vec![
                Cell::text(*name),
                Cell::Raw(format!(
                    r#"<code title="{k}">{}</code>"#,
                    escape(stage.key.short()),
                    k = escape(stage.key.as_str())
                )),
                Cell::Raw(format!(
                    r#"<span class="{c}">{}</span>"#,
                    escape(status),
                    c = escape(status)
                )),
                ran.map_or(Cell::text(""), |r| {
                    Cell::Number(r.duration_s, format!("{:.2} s", r.duration_s))
                }),
                Cell::text(computed),
                Cell::text(results),
            ])
        })
        .collect();
    section(
        "stages",
        "Stages",
        &table(
            "stages-table",
            &[
                "stage",
                "key",
                "this run",
                "time",
                "entry computed",
                "results",
            ],
            &rows,
        ),
    )
}

fn short_value(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if !v.is_u64() && !v.is_i64() => super::html::number(x),
        _ => plain_value(v),
    }
}

/// Loss, accuracy, validation km and learning rate per epoch, from `metrics.csv`.
fn curves_section(run_dir: &Path, manifest: &Manifest) -> Result<String, ReportError> {
    let path = run_file(run_dir, train::NAME, crate::train::history::METRICS_FILE);
    if !path.is_file() {
        return Ok(String::new());
    }
    let rows: Vec<BTreeMap<String, String>> = read_csv(&path)?;
    let column = |name: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| {
                let epoch = r.get("epoch")?.parse::<f64>().ok()? + 1.0;
                let v = r.get(name)?.parse::<f64>().ok()?;
                Some((epoch, v))
            })
            .collect()
    };
    let series = |names: &[&str]| -> Vec<Series> {
        names
            .iter()
            .zip(PALETTE)
            .map(|(n, c)| Series {
                name: (*n).to_owned(),
                points: column(n),
                colour: c.to_owned(),
                faint: false,
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let best = manifest
        .stages
        .get(train::NAME)
        .and_then(|s| s.results.get("best_epoch"))
        .and_then(Value::as_f64)
        .map(|e| (e + 1.0, "best".to_owned()));
    let epochs: Vec<f64> = column("lr").iter().map(|p| p.0).collect();
    let ticks = (epochs.len() <= 20).then(|| epochs.clone());
    let charts = [
        ("Loss", vec!["train/loss", "val/loss"], false),
        ("Accuracy (top 1)", vec!["train/acc", "val/acc"], false),
        (
            "Validation error (km)",
            vec!["val/haversine_km_mean", "val/haversine_km_median"],
            false,
        ),
        ("Learning rate", vec!["lr"], true),
    ];
    let mut body = String::from(r#"<div class="charts">"#);
    for (title, names, log_y) in charts {
        let series = series(&names);
        if series.is_empty() {
            continue;
        }
        body.push_str(
            &LineChart {
                title: title.to_owned(),
                x_label: "epoch".into(),
                series,
                log_y,
                marker: best.clone(),
                x_ticks: ticks.clone(),
            }
            .render(),
        );
    }
    body.push_str(
        "</div><p>Epochs are counted from 1 here; the manifest's <code>best_epoch</code> \
         counts from 0.</p>",
    );
    Ok(section("curves", "Training curves", &body))
}

/// The three maps, their titles naming this experiment and run.
fn maps_section(run_dir: &Path, manifest: &Manifest) -> Result<String, ReportError> {
    let maps = [
        (dataset::NAME, dataset::MAP_FILE, "Locations by split"),
        (
            classes::NAME,
            classes::MAP_FILE,
            "Class cells and centroids",
        ),
        (evaluate::NAME, evaluate::ERROR_MAP_FILE, "Test errors"),
    ];
    let mut body = String::new();
    for (stage, file, caption) in maps {
        let Some(entry) = manifest.stages.get(stage) else {
            continue;
        };
        // The run folder's copy already names the run; a run made before copies were
        // written has only the entry's map, retitled here.
        let copy = crate::stages::run_maps(stage)
            .iter()
            .map(|(_, name)| run_dir.join(name))
            .find(|p| p.is_file());
        let png = match copy {
            Some(path) => {
                std::fs::read(&path).map_err(|source| ReportError::Read { path, source })?
            }
            None => {
                let path = run_dir.join(stage).join(file);
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let title = run_title(
                    &manifest.run.name,
                    &manifest.run.id,
                    stage,
                    entry.key.short(),
                );
                retitle(&bytes, &title).map_err(|e| ReportError::Parse {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            }
        };
        body.push_str(&format!(
            r#"<figure id="map-{stage}">{}<figcaption>{} (<code>{}/{file}</code>)</figcaption></figure>"#,
            img("image/png", &png, caption, "map"),
            escape(caption),
            escape(stage)
        ));
    }
    if body.is_empty() {
        return Ok(String::new());
    }
    Ok(section(
        "maps",
        "Maps",
        &format!(r#"<div class="maps">{body}</div>"#),
    ))
}

/// Test errors per true class, from the evaluate stage's `cells.csv`.
fn classes_section(run_dir: &Path) -> Result<String, ReportError> {
    let path = run_file(run_dir, evaluate::NAME, evaluate::CELLS_FILE);
    let mut rows: Vec<CellRow> = read_csv(&path)?;
    rows.sort_by(|a, b| b.mean_km.total_cmp(&a.mean_km));
    let cells: Vec<Vec<Cell>> = rows
        .iter()
        .map(|c| {
            vec![
                Cell::Number(c.class as f64, c.class.to_string()),
                Cell::Number(c.locations as f64, c.locations.to_string()),
                Cell::number(c.mean_km),
                Cell::number(c.median_km),
                Cell::text(format!("{:.4}, {:.4}", c.centroid_lat, c.centroid_lon)),
            ]
        })
        .collect();
    let body = format!(
        "<p>{} classes with test locations, worst mean error first.</p>{}",
        rows.len(),
        table(
            "classes-table",
            &[
                "class",
                "test locations",
                "mean km",
                "median km",
                "centroid"
            ],
            &cells
        )
    );
    Ok(section("classes", "Errors per class", &body))
}

/// The worst test predictions, each with its four views as thumbnails.
fn worst_section(run_dir: &Path, manifest: &Manifest) -> Result<String, ReportError> {
    let path = run_file(run_dir, evaluate::NAME, evaluate::PREDICTIONS_FILE);
    let mut predictions: Vec<PredictionRow> = read_csv(&path)?;
    predictions.sort_by(|a, b| b.error_km.total_cmp(&a.error_km));
    predictions.truncate(WORST);
    let views = view_paths(run_dir, manifest)?;
    let rows: Vec<Vec<Cell>> = predictions
        .iter()
        .map(|p| {
            let thumbs = views
                .get(&p.uuid)
                .map(|paths| {
                    paths
                        .iter()
                        .zip(["0°", "90°", "180°", "270°"])
                        .map(|(path, heading)| match thumbnail(path) {
                            Some(jpeg) => img("image/jpeg", &jpeg, heading, "thumb"),
                            None => format!(
                                "<span title=\"{}\">(missing)</span>",
                                escape(&path.display().to_string())
                            ),
                        })
                        .collect::<String>()
                })
                .unwrap_or_default();
            vec![
                Cell::text(p.uuid.clone()),
                Cell::number(p.error_km),
                Cell::text(format!("{:.4}, {:.4}", p.true_lat, p.true_lon)),
                Cell::text(format!("{:.4}, {:.4}", p.pred_lat, p.pred_lon)),
                Cell::Number(p.true_class as f64, p.true_class.to_string()),
                p.pred_class
                    .map_or(Cell::text(""), |c| Cell::Number(c as f64, c.to_string())),
                Cell::Raw(thumbs),
            ]
        })
        .collect();
    let body = table(
        "worst-table",
        &[
            "location",
            "error km",
            "true",
            "predicted",
            "true class",
            "predicted class",
            "views",
        ],
        &rows,
    );
    Ok(section("worst", "Worst predictions", &body))
}

/// A stage's file as the run folder has it: its hard link or copy there (which outlives a
/// `gc` of the entry), else the file in the entry.
fn run_file(run_dir: &Path, stage: &str, file: &str) -> PathBuf {
    crate::stages::run_links(stage)
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, name)| run_dir.join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| run_dir.join(stage).join(file))
}

/// Each location's four view files, as the images stage finds them.
fn view_paths(
    run_dir: &Path,
    manifest: &Manifest,
) -> Result<BTreeMap<String, [PathBuf; 4]>, ReportError> {
    let dataset_dir = run_dir.join(dataset::NAME);
    let path = dataset_dir.join(crate::dataset::LOCATIONS_FILE);
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    let locations = crate::dataset::read_locations(&path).map_err(|e| ReportError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    // Dataset folders are relative to the experiment file that named them.
    let base = manifest
        .provenance
        .get("dataset.dirs")
        .map(|p| {
            Path::new(p)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
        .unwrap_or_default();
    Ok(locations
        .into_iter()
        .map(|l| {
            let root = if l.source == dataset::SYNTHETIC_SOURCE {
                dataset_dir.join(dataset::SYNTHETIC_DIR)
            } else if base.join(&l.source).is_dir() {
                base.join(&l.source)
            } else {
                PathBuf::from(&l.source)
            };
            (l.uuid.clone(), l.views().map(|v| root.join(v)))
        })
        .collect())
}

/// A JPEG of the image at `path`, its longest side at most [`THUMB`] pixels.
fn thumbnail(path: &Path) -> Option<Vec<u8>> {
    let image = image::open(path).ok()?.to_rgb8();
    let (w, h) = image.dimensions();
    let scale = f64::from(THUMB) / f64::from(w.max(h));
    let small = if scale < 1.0 {
        let (tw, th) = (
            ((f64::from(w) * scale).round() as u32).max(1),
            ((f64::from(h) * scale).round() as u32).max(1),
        );
        image::imageops::thumbnail(&image, tw, th)
    } else {
        image
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&small)
        .ok()?;
    Some(out)
}

/// The resolved config, one key per row, with where each value came from.
fn config_section(manifest: &Manifest) -> String {
    let flat = key_paths(manifest.config.clone());
    let rows: Vec<Vec<Cell>> = flat
        .iter()
        .map(|(key, value)| {
            let origin = provenance(&manifest.provenance, key).unwrap_or("?");
            vec![
                Cell::Raw(format!("<code>{}</code>", escape(key))),
                Cell::text(plain_value(value)),
                Cell::text(origin),
            ]
        })
        .collect();
    // Defaults are greyed, so what the experiment chose stands out.
    let defaults: Vec<bool> = flat
        .keys()
        .map(|key| provenance(&manifest.provenance, key) == Some("default"))
        .collect();
    let html = table_with_classes("config-table", &["key", "value", "from"], &rows, |i| {
        defaults[i].then_some("default")
    });
    section(
        "config",
        "Resolved config",
        &format!(
            "<p>Every value the run used; grey rows are defaults. \"from\" is the file, \
             variable or flag that set it.</p>{html}"
        ),
    )
}

/// Where `key`'s value came from: its own entry, or that of the table holding it
/// (`model.refine` for `model.refine.neighbours`).
fn provenance<'a>(map: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    let mut k = key;
    loop {
        if let Some(v) = map.get(k) {
            return Some(v);
        }
        k = &k[..k.rfind('.')?];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_falls_back_to_the_enclosing_table() {
        let map = BTreeMap::from([
            ("model.refine".to_owned(), "golf.toml".to_owned()),
            ("train.lr".to_owned(), "--set".to_owned()),
        ]);
        assert_eq!(
            provenance(&map, "model.refine.neighbours"),
            Some("golf.toml")
        );
        assert_eq!(provenance(&map, "train.lr"), Some("--set"));
        assert_eq!(provenance(&map, "seed"), None);
    }
}
