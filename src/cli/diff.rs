//! `geoexp diff`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use serde_json::Value;

use crate::graph::{ManifestDiff, ResultChange, StageChange};
use crate::ops::diff::{DiffOptions, diff};

use super::{Ctx, ExitStatus, values};

/// Compare two runs by key path: the config values that differ (old → new), the stages
/// whose keys differ and the first cause of each (a value, an input or an upstream stage),
/// the final metrics with their change, and versions.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
A run is a manifest file, a run folder, or a run id: whole, a unique prefix, or name/id as \
`geoexp ls` prints it (looked up under the runs directory).

Exit status: 0 compared (1 instead when they differ and --exit-code is given), 2 a run \
cannot be found or read.")]
pub struct Args {
    /// Run A (old).
    #[arg(value_name = "A")]
    a: PathBuf,
    /// Run B (new).
    #[arg(value_name = "B")]
    b: PathBuf,
    /// Output format: text for people, json (the typed diff) for programs.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit with status 1 when the runs differ, like `diff` and `git diff --exit-code`.
    #[arg(long)]
    exit_code: bool,
    /// Compare every stage result (counts, last-epoch metrics, …), not only the final
    /// metrics.
    #[arg(long)]
    all_results: bool,
}

/// How the differences are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let report = diff(&DiffOptions {
        a: args.a,
        b: args.b,
        runs_dir: ctx.global.runs_dir.clone(),
        all_results: args.all_results,
    })?;
    let text = match args.format {
        Format::Text => text(&report.diff),
        Format::Json => values::json_text(&report.diff)?,
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(if args.exit_code && !report.diff.is_empty() {
        ExitStatus::Different
    } else {
        ExitStatus::Success
    })
}

/// The differences as sections of aligned `name  what` lines; empty sections are left out.
fn text(diff: &ManifestDiff) -> String {
    if diff.is_empty() {
        return "no differences\n".to_owned();
    }
    let exact = |v: &Option<Value>| v.as_ref().map_or("(unset)".to_owned(), Value::to_string);
    let mut out = String::new();
    section(
        &mut out,
        "config",
        diff.config.iter().map(|c| {
            (
                c.key.clone(),
                format!("{} → {}", exact(&c.old), exact(&c.new)),
            )
        }),
    );
    section(
        &mut out,
        "stages",
        diff.stages.iter().map(|s| {
            let what = match &s.change {
                StageChange::OnlyInA { .. } => "only in A".to_owned(),
                StageChange::OnlyInB { .. } => "only in B".to_owned(),
                StageChange::KeyChanged {
                    cause, more_causes, ..
                } => {
                    let mut what = "key changed".to_owned();
                    if let Some(cause) = cause {
                        what.push_str(&format!(": {cause}"));
                    }
                    if *more_causes > 0 {
                        what.push_str(&format!(" (and {more_causes} more)"));
                    }
                    what
                }
            };
            (s.stage.clone(), what)
        }),
    );
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &diff.results {
        *seen.entry(&r.key).or_default() += 1;
    }
    section(
        &mut out,
        "metrics",
        diff.results.iter().map(|r| {
            let name = if seen.get(r.key.as_str()).is_some_and(|&n| n > 1) {
                format!("{} ({})", r.key, r.stage)
            } else {
                r.key.clone()
            };
            (name, metric_change(r))
        }),
    );
    section(
        &mut out,
        "versions",
        diff.versions.iter().map(|v| {
            let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "(none)".to_owned());
            (
                v.name.clone(),
                format!("{} → {}", show(&v.old), show(&v.new)),
            )
        }),
    );
    out
}

/// `18.91 → 25.50  (+6.59, +34.8%)`.
fn metric_change(r: &ResultChange) -> String {
    let show = |v: &Option<Value>| {
        v.as_ref()
            .map_or("(none)".to_owned(), |v| values::metric(&r.key, v))
    };
    let mut what = format!("{} → {}", show(&r.old), show(&r.new));
    if let Some(delta) = r.delta {
        let delta = values::signed(&r.key, delta, r.is_integral());
        match r.relative {
            Some(rel) => what.push_str(&format!("  ({delta}, {:+.1}%)", 100.0 * rel)),
            None => what.push_str(&format!("  ({delta})")),
        }
    }
    what
}

fn section(out: &mut String, title: &str, lines: impl Iterator<Item = (String, String)>) {
    let lines: Vec<(String, String)> = lines.collect();
    if lines.is_empty() {
        return;
    }
    let width = lines
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    out.push_str(title);
    out.push('\n');
    for (name, what) in lines {
        let pad = width - name.chars().count();
        out.push_str(&format!("  {name}{}  {what}\n", " ".repeat(pad)));
    }
}
