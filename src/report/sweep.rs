//! The sweep report: the ranking, the heatmap of a two-axis grid, each swept parameter
//! against the monitored metric, and successive halving's rungs.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::ops::plain_value;
use crate::ops::sweep::record::{TrialRow, TrialState, gather, heatmap, ranked, read_plan};
use crate::ops::sweep::{SweepPlan, monitor_history};
use crate::track::heatmap::{Heatmap, format_value, luminance};

use super::ReportError;
use super::html::{Cell, escape, page, section, table, table_with_classes};
use super::svg::{LineChart, PALETTE, Scatter, Series};

/// Test metrics shown beside the monitored one in the ranking.
const METRICS: [&str; 2] = ["test/haversine_km_mean", "test/haversine_km_median"];

/// The report of the sweep in `sweep_dir`, as one HTML page. Trials' run folders are
/// found under `runs_dir`; links to them are relative to the sweep folder.
///
/// # Errors
/// When `sweep.toml` or `trials.jsonl` cannot be read.
pub fn sweep_report(sweep_dir: &Path, runs_dir: &Path) -> Result<String, ReportError> {
    let plan = read_plan(sweep_dir, runs_dir).map_err(|e| ReportError::Parse {
        path: sweep_dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let rows = gather(&plan);
    let keys = plan.keys();
    let counts = crate::ops::sweep::record::counts(&rows)
        .into_iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ");
    let lead = format!(
        "{} search over <code>{}</code>: {} trials ({}). Ranked by <code>{}</code> ({} is better).",
        escape(&format!("{:?}", plan.definition.method).to_lowercase()),
        escape(&keys.join(", ")),
        rows.len(),
        escape(&counts),
        escape(&plan.monitor),
        if plan.monitor_max { "higher" } else { "lower" }
    );
    let mut body = ranking_section(&plan, &rows, &keys, sweep_dir);
    if let Some(map) = heatmap(&plan, &rows) {
        body.push_str(&heatmap_section(&map));
    }
    let rungs = plan
        .definition
        .early_stop
        .as_ref()
        .map(|h| h.rungs(plan.epochs))
        .unwrap_or_default();
    if let Some(&first) = rungs.first() {
        // Trials stopped at a rung never get the final metric: compare every trial at the
        // first rung, which all of them reach, as successive halving itself does.
        let histories: BTreeMap<&str, Vec<(u32, f64)>> = rows
            .iter()
            .filter_map(|r| Some((r.spec.id.as_str(), monitor_history(&plan, &r.spec)?)))
            .collect();
        let scores = rows
            .iter()
            .filter_map(|r| {
                let h = histories.get(r.spec.id.as_str())?;
                Some((r, h.iter().find(|(e, _)| *e == first)?.1))
            })
            .collect();
        let y_label = format!("{} at epoch {first}", plan.monitor_key);
        body.push_str(&parameters_section(&plan, &rows, &keys, scores, &y_label));
        body.push_str(&rungs_section(&plan, &rows, &rungs, &histories));
    } else {
        let scores = rows
            .iter()
            .filter_map(|r| Some((r, r.metric(&plan.monitor)?)))
            .collect();
        body.push_str(&parameters_section(
            &plan,
            &rows,
            &keys,
            scores,
            &plan.monitor,
        ));
    }
    let title = format!("{} · sweep {}", plan.name, plan.id);
    Ok(page(&title, &lead, &body))
}

fn ranking_section(
    plan: &SweepPlan,
    rows: &[TrialRow],
    keys: &[String],
    sweep_dir: &Path,
) -> String {
    let ranked = ranked(plan, rows);
    let halving = plan.definition.early_stop.is_some();
    let mut header: Vec<&str> = vec!["rank", "trial", "state"];
    header.extend(keys.iter().map(String::as_str));
    if halving {
        header.extend(["epochs", "at rung"]);
    }
    header.push(&plan.monitor);
    header.extend(METRICS);
    header.push("run");
    let best = ranked
        .first()
        .filter(|r| r.metric(&plan.monitor).is_some())
        .map(|r| r.spec.id.clone());
    let table_rows: Vec<Vec<Cell>> = ranked
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = vec![
                Cell::Number((i + 1) as f64, (i + 1).to_string()),
                Cell::Raw(format!("<code>{}</code>", escape(&r.spec.id))),
                Cell::text(r.state.to_string()),
            ];
            row.extend(keys.iter().map(|k| value_cell(r.spec.values.get(k))));
            if halving {
                let rec = r.record.as_ref();
                row.push(rec.and_then(|x| x.rung_epochs).map_or(Cell::text(""), |e| {
                    Cell::Number(f64::from(e), e.to_string())
                }));
                row.push(
                    rec.and_then(|x| x.rung_value)
                        .map_or(Cell::text(""), Cell::number),
                );
            }
            row.push(r.metric(&plan.monitor).map_or(Cell::text(""), Cell::number));
            row.extend(
                METRICS
                    .iter()
                    .map(|m| r.metric(m).map_or(Cell::text(""), Cell::number)),
            );
            row.push(run_link(r, &plan.runs_dir, sweep_dir));
            row
        })
        .collect();
    let html = table_with_classes("ranking-table", &header, &table_rows, |i| {
        (ranked.get(i).map(|r| Some(&r.spec.id)) == Some(best.as_ref())).then_some("best")
    });
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.state == TrialState::Failed)
        .filter_map(|r| {
            let e = r.record.as_ref()?.error.as_ref()?;
            Some(format!(
                "<li><code>{}</code>: {}</li>",
                escape(&r.spec.id),
                escape(e)
            ))
        })
        .collect();
    let mut body = html;
    if !failed.is_empty() {
        body.push_str(&format!(
            "<h3>Failed trials</h3><ul>{}</ul>",
            failed.join("")
        ));
    }
    section("ranking", "Ranking", &body)
}

fn value_cell(v: Option<&Value>) -> Cell {
    match v {
        Some(v) => match v.as_f64() {
            Some(x) => Cell::Number(x, plain_value(v)),
            None => Cell::text(plain_value(v)),
        },
        None => Cell::text(""),
    }
}

/// A link to the trial's run report when it has one, else to its manifest.
fn run_link(row: &TrialRow, runs_dir: &Path, sweep_dir: &Path) -> Cell {
    let Some(run) = row.record.as_ref().and_then(|r| r.run.clone()) else {
        return Cell::text("");
    };
    let run_dir = runs_dir.join(&run);
    let file = if run_dir.join(super::REPORT_FILE).is_file() {
        super::REPORT_FILE
    } else {
        crate::graph::manifest::MANIFEST_FILE
    };
    // The sweep folder is `<runs>/sweeps/<id>/`: two levels below the runs directory.
    let href = if sweep_dir.starts_with(runs_dir) {
        format!("../../{run}/{file}")
    } else {
        run_dir.join(file).display().to_string()
    };
    Cell::Raw(format!(
        r#"<a href="{}">{}</a>"#,
        escape(&href),
        escape(&run)
    ))
}

fn heatmap_section(map: &Heatmap<'_>) -> String {
    let mut html = format!(
        r#"<table id="heatmap-table"><thead><tr><th>{} \ {}</th>"#,
        escape(map.y_key),
        escape(map.x_key)
    );
    for label in &map.x_labels {
        html.push_str(&format!("<th>{}</th>", escape(label)));
    }
    html.push_str("</tr></thead><tbody>");
    for (label, row) in map.y_labels.iter().zip(&map.cells) {
        html.push_str(&format!("<tr><th>{}</th>", escape(label)));
        for v in row {
            match v {
                Some(v) => {
                    let c = map.colour_of(*v);
                    let ink = if luminance(c) > 140.0 { "#111" } else { "#fff" };
                    html.push_str(&format!(
                        r#"<td class="heat" data-value="{v}" style="background:rgb({},{},{});color:{ink}">{}</td>"#,
                        c.0,
                        c.1,
                        c.2,
                        format_value(*v)
                    ));
                }
                None => html.push_str(r#"<td class="heat" style="background:#ccc">-</td>"#),
            }
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    section(
        "heatmap",
        "Heatmap",
        &format!(
            "<p><code>{}</code> per cell (the mean over seeds); yellow is best.</p>{html}",
            escape(map.title)
        ),
    )
}

/// One scatter plot per swept key: its values against each trial's score (`y_label`).
fn parameters_section(
    plan: &SweepPlan,
    rows: &[TrialRow],
    keys: &[String],
    scores: Vec<(&TrialRow, f64)>,
    y_label: &str,
) -> String {
    let (done, ys): (Vec<&TrialRow>, Vec<f64>) = scores.into_iter().unzip();
    if done.is_empty() {
        return section(
            "parameters",
            "Parameters against the metric",
            "<p>No trial has finished yet.</p>",
        );
    }
    let best = ranked(plan, rows)
        .first()
        .and_then(|b| done.iter().position(|r| r.spec.id == b.spec.id));
    let mut body = String::from(r#"<div class="charts">"#);
    for key in keys {
        let values: Vec<Option<&Value>> = done.iter().map(|r| r.spec.values.get(key)).collect();
        let numbers: Option<Vec<f64>> = values.iter().map(|v| v.and_then(Value::as_f64)).collect();
        let (xs, categories, log_x) = match numbers {
            Some(xs) => {
                let (lo, hi) = xs
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                        (a.min(x), b.max(x))
                    });
                (xs, None, lo > 0.0 && hi / lo >= 20.0)
            }
            None => {
                let mut names: Vec<String> = values
                    .iter()
                    .map(|v| v.map(plain_value).unwrap_or_default())
                    .collect();
                names.sort();
                names.dedup();
                let xs = values
                    .iter()
                    .map(|v| {
                        let name = v.map(plain_value).unwrap_or_default();
                        names.iter().position(|n| *n == name).unwrap_or(0) as f64
                    })
                    .collect();
                (xs, Some(names), false)
            }
        };
        let points = done
            .iter()
            .zip(xs)
            .zip(&ys)
            .map(|((r, x), &y)| {
                let label = format!(
                    "{} · {key} = {} · {}",
                    r.spec.id,
                    r.spec.values.get(key).map(plain_value).unwrap_or_default(),
                    format_value(y)
                );
                (x, y, label)
            })
            .collect();
        body.push_str(
            &Scatter {
                title: key.clone(),
                x_label: key.clone(),
                y_label: y_label.to_owned(),
                points,
                log_x,
                categories,
                best,
            }
            .render(),
        );
    }
    body.push_str("</div>");
    section("parameters", "Parameters against the metric", &body)
}

/// Successive halving: the monitored value of every trial at each rung it reached; the
/// trials stopped at a rung are drawn faint.
fn rungs_section(
    plan: &SweepPlan,
    rows: &[TrialRow],
    rungs: &[u32],
    histories: &BTreeMap<&str, Vec<(u32, f64)>>,
) -> String {
    let mut series = Vec::new();
    let mut reached = vec![0usize; rungs.len()];
    for (i, r) in rows.iter().enumerate() {
        let Some(history) = histories.get(r.spec.id.as_str()) else {
            continue;
        };
        let points: Vec<(f64, f64)> = rungs
            .iter()
            .zip(reached.iter_mut())
            .filter_map(|(&rung, n)| {
                let v = history.iter().find(|(e, _)| *e == rung)?.1;
                *n += 1;
                Some((f64::from(rung), v))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        series.push(Series {
            name: r.spec.id.clone(),
            points,
            colour: PALETTE[i % PALETTE.len()].to_owned(),
            faint: r.state != TrialState::Ok,
        });
    }
    let chart = LineChart {
        title: format!("{} at each rung", plan.monitor_key),
        x_label: "epochs trained".into(),
        series,
        log_y: false,
        marker: None,
        x_ticks: Some(rungs.iter().map(|&r| f64::from(r)).collect()),
    }
    .render();
    let table_rows: Vec<Vec<Cell>> = rungs
        .iter()
        .zip(&reached)
        .map(|(&rung, &n)| {
            vec![
                Cell::Number(f64::from(rung), rung.to_string()),
                Cell::Number(n as f64, n.to_string()),
            ]
        })
        .collect();
    let body = format!(
        r#"<div class="charts">{chart}</div>{}"#,
        table(
            "rungs-table",
            &["rung (epochs)", "trials that reached it"],
            &table_rows
        )
    );
    section("rungs", "Successive halving", &body)
}
