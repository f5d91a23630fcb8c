//! `geoexp gc`.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use bytesize::ByteSize;

use crate::ops::gc::{GcOptions, GcReport, RemovalKind, gc};

use super::args::{Format, ReportFormat};
use super::values::{self, size};
use super::{Ctx, ExitStatus};

/// Remove cache entries no run's manifest references, interrupted trainings and abandoned
/// temporaries; with --older-than or --max-size, also whole runs, oldest first.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Referenced means named by a manifest under the runs directory (sweep trials included). \
Entries a running `run`, sweep trial or `verify` uses are never removed, nor trainings in \
progress: gc and runs can go on at the same time. Each entry is renamed aside before its \
files are deleted, so an interrupted gc leaves no half entry.

--older-than and --max-size remove run folders (never those --keep-runs pins), oldest \
manifest first; the entries only those runs referenced then go too. Run ids are matched as \
name/id, e.g. --keep-runs 'golf/*' or --keep-runs '*/0ff36e*'.

Exit status: 0 done, 1 a removal failed (everything after it untouched), 2 bad arguments, a \
missing runs directory, or unreadable manifests without --force.")]
pub struct Args {
    /// Only print what would be removed and how many bytes it frees.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Never remove these runs (name/id glob; repeatable).
    #[arg(long, value_name = "GLOB")]
    keep_runs: Vec<String>,
    /// Remove runs whose manifest was written longer ago than this (e.g. 30d, 12h).
    #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
    older_than: Option<Duration>,
    /// Remove the oldest runs until the cache is at most this big (e.g. 20GiB).
    #[arg(long, value_name = "SIZE")]
    max_size: Option<ByteSize>,
    /// Remove entries even though some manifests cannot be read (their runs then count as
    /// referencing nothing).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    format: ReportFormat,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let report = gc(&GcOptions {
        runs_dir: ctx.global.runs_dir.clone(),
        dry_run: args.dry_run,
        keep_runs: args.keep_runs,
        older_than: args.older_than,
        max_size: args.max_size.map(|s| s.as_u64()),
        force: args.force,
    })?;
    for path in &report.unreadable {
        tracing::warn!(
            "{}: unreadable manifest; its run counts as referencing nothing",
            path.display()
        );
    }
    let text = match args.format.format {
        Format::Text => text(&report),
        Format::Json => values::json_text(&report)?,
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitStatus::Success)
}

fn text(report: &GcReport) -> String {
    let mut out = String::new();
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for r in &report.removed {
        let kind = match r.kind {
            RemovalKind::Run => "run",
            RemovalKind::Entry => "entry",
            RemovalKind::Work => "training",
            RemovalKind::Temporary => "temporary",
            RemovalKind::StaleLock => "lock",
        };
        out.push_str(&format!(
            "{verb} {kind:<9} {}  {}  ({})\n",
            r.what,
            size(r.bytes),
            r.why
        ));
    }
    let count = |k: RemovalKind| report.removed.iter().filter(|r| r.kind == k).count();
    out.push_str(&format!(
        "{} {} run(s), {} entr(ies), {} interrupted training(s), {} temporar(ies): {} {}; \
         cache {} → {}; {} run(s) kept{}\n",
        if report.dry_run {
            "gc --dry-run:"
        } else {
            "gc:"
        },
        count(RemovalKind::Run),
        count(RemovalKind::Entry),
        count(RemovalKind::Work),
        count(RemovalKind::Temporary),
        size(report.freed),
        if report.dry_run {
            "would be freed"
        } else {
            "freed"
        },
        size(report.before),
        size(report.after),
        report.runs_kept,
        if report.in_use_kept > 0 {
            format!(
                ", {} entr(ies) kept for running processes",
                report.in_use_kept
            )
        } else {
            String::new()
        }
    ));
    if report.over_budget {
        out.push_str(
            "note: the cache is still over --max-size: the runs left are pinned by --keep-runs, \
             or their entries are in use\n",
        );
    }
    out
}
