//! `geoexp cache`.

use std::io::Write;

use anyhow::Result;
use comfy_table::{CellAlignment, Table, presets::NOTHING};

use crate::ops::gc::{CacheReport, cache};

use super::values::{self, size};
use super::{Ctx, ExitStatus};

/// Show what the cache holds, per stage: entries and their size, how many a run's manifest
/// references (the rest is what `geoexp gc` removes), entries only a running process uses,
/// and trainings in progress or interrupted.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Referenced: named by a manifest under the runs directory (sweep trials included). In use: \
named by no manifest yet, but registered by a live run, sweep trial or verify. In progress: \
a training whose process is alive; interrupted: one whose process is gone (a rerun resumes \
it; `geoexp gc` removes it).")]
pub struct Args {
    /// Output format: an aligned table, or json.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let report = cache(&ctx.global.runs_dir)?;
    for path in &report.unreadable {
        tracing::warn!(
            "{}: unreadable manifest; its run's entries count as unreferenced",
            path.display()
        );
    }
    let text = match args.format {
        Format::Table => table(&report),
        Format::Json => values::json_text(&report)?,
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitStatus::Success)
}

fn table(report: &CacheReport) -> String {
    let mut table = Table::new();
    table.load_style(NOTHING);
    table.set_header([
        "stage",
        "entries",
        "size",
        "referenced",
        "unreferenced",
        "in use",
        "trainings in progress",
        "interrupted",
    ]);
    for u in &report.stages {
        let counted = |n: usize, bytes: u64| {
            if n == 0 {
                "0".to_owned()
            } else {
                format!("{n} ({})", size(bytes))
            }
        };
        table.add_row([
            u.stage.clone(),
            u.entries.to_string(),
            size(u.bytes),
            counted(u.referenced, u.referenced_bytes),
            counted(u.unreferenced, u.unreferenced_bytes),
            u.in_use.to_string(),
            u.in_progress.to_string(),
            if u.interrupted == 0 {
                "0".to_owned()
            } else {
                format!("{} ({})", u.interrupted, size(u.work_bytes))
            },
        ]);
    }
    for i in 1..8 {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut text = values::table_text(&table);
    text.push_str(&format!(
        "{} runs reference the cache; {} live process(es) use it\n",
        report.runs, report.live_processes
    ));
    text
}
