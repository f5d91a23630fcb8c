//! `geoexp ls`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use comfy_table::{CellAlignment, Table, presets::NOTHING};
use serde_json::{Map, Value, json};

use crate::ops::ls::{Listing, LsOptions, MetricSelection, ls};

use super::{Ctx, ExitStatus, values};

/// List runs: one row per run, with the config values that differ between the listed runs
/// and the final metrics (the evaluate stage's test results and the train stage's
/// best_<monitor>). Reads only the manifests, so it is fast for thousands of runs.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Columns: `run` (name/id, as `geoexp diff` accepts it), then every config key path whose \
value differs between the listed runs, then metrics. Default metrics: best_<monitor>, \
test/haversine_km_mean, test/haversine_km_median, test/acc_25km, test/acc (those no run \
has are left out); csv and json carry every final metric, unrounded. Runs that stopped \
before evaluate have empty cells.")]
pub struct Args {
    /// A runs directory, one experiment's folder (runs/golf) or one run folder [default: the
    /// runs directory].
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Sort by this metric, best first: descending for accuracies and scores, ascending for
    /// errors and losses; runs without it come last. Default: by name, then run id.
    #[arg(long, value_name = "METRIC")]
    sort: Option<String>,
    /// Show these metrics (comma-separated result names, of any stage) instead of the
    /// default ones.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    metrics: Vec<String>,
    /// Also drop metric columns whose value is the same in every listed run (a run without
    /// the metric counts as different; a single run keeps its metrics). Config columns
    /// always show only the values that differ.
    #[arg(long)]
    only_changed: bool,
    /// Output format: an aligned table, csv, json (one object per run) or a GitHub-markdown
    /// table.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// How the listing is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
    Md,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let dir = args.dir.unwrap_or_else(|| ctx.global.runs_dir.clone());
    let metrics = if !args.metrics.is_empty() {
        MetricSelection::Named(args.metrics)
    } else if matches!(args.format, Format::Csv | Format::Json) {
        MetricSelection::AllFinal
    } else {
        MetricSelection::Default
    };
    let listing = ls(&LsOptions {
        dir: dir.clone(),
        metrics,
        sort: args.sort,
        only_changed: args.only_changed,
    })?;
    for s in &listing.skipped {
        tracing::warn!("skipping {}: {}", s.path.display(), s.problem);
    }
    if listing.rows.is_empty() {
        if !ctx.global.quiet {
            eprintln!("no runs under {}", dir.display());
        }
        return Ok(ExitStatus::Success);
    }
    let text = match args.format {
        Format::Table => table(&listing),
        Format::Csv => csv(&listing)?,
        Format::Json => json(&listing)?,
        Format::Md => markdown(&listing),
    };
    // The listing is the command's output: printed even with --quiet.
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitStatus::Success)
}

/// Header names, then per row the cells as people read them.
fn cells(listing: &Listing) -> (Vec<String>, Vec<Vec<String>>) {
    let header = std::iter::once("run".to_owned())
        .chain(listing.config_columns.iter().cloned())
        .chain(listing.metric_columns.iter().cloned())
        .collect();
    let rows = listing
        .rows
        .iter()
        .map(|row| {
            let config = row
                .config
                .iter()
                .map(|v| v.as_ref().map(values::plain).unwrap_or_default());
            let metrics = row
                .metrics
                .iter()
                .zip(&listing.metric_columns)
                .map(|(v, name)| {
                    v.as_ref()
                        .map(|v| values::metric(name, v))
                        .unwrap_or_default()
                });
            std::iter::once(row.label())
                .chain(config)
                .chain(metrics)
                .collect()
        })
        .collect();
    (header, rows)
}

fn table(listing: &Listing) -> String {
    let (header, rows) = cells(listing);
    let mut table = Table::new();
    table.load_style(NOTHING);
    table.set_header(header);
    for row in rows {
        table.add_row(row);
    }
    let first_metric = 1 + listing.config_columns.len();
    for i in first_metric..first_metric + listing.metric_columns.len() {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    values::table_text(&table)
}

fn markdown(listing: &Listing) -> String {
    let (header, rows) = cells(listing);
    let escape = |s: &str| s.replace('|', "\\|");
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(&header);
    let rule: Vec<&str> = (0..header.len())
        .map(|i| {
            if i > listing.config_columns.len() {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// Every value unrounded; a missing one is an empty field.
fn csv(listing: &Listing) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = ["name", "id"]
        .into_iter()
        .chain(listing.config_columns.iter().map(String::as_str))
        .chain(listing.metric_columns.iter().map(String::as_str))
        .collect();
    w.write_record(&header)?;
    for row in &listing.rows {
        let values = row
            .config
            .iter()
            .chain(&row.metrics)
            .map(|v| v.as_ref().map(values::plain).unwrap_or_default());
        let record: Vec<String> = [row.name.clone(), row.id.clone()]
            .into_iter()
            .chain(values)
            .collect();
        w.write_record(&record)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// One object per run: `name`, `id`, `dir`, `config` and `metrics` (null where missing).
fn json(listing: &Listing) -> Result<String> {
    let runs: Vec<Value> = listing
        .rows
        .iter()
        .map(|row| {
            let map = |names: &[String], values: &[Option<Value>]| -> Map<String, Value> {
                names
                    .iter()
                    .cloned()
                    .zip(values.iter().map(|v| v.clone().unwrap_or(Value::Null)))
                    .collect()
            };
            json!({
                "name": row.name,
                "id": row.id,
                "dir": row.dir.display().to_string(),
                "config": map(&listing.config_columns, &row.config),
                "metrics": map(&listing.metric_columns, &row.metrics),
            })
        })
        .collect();
    Ok(values::json_text(&runs)?)
}
