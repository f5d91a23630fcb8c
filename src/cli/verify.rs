//! `geoexp verify`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use crate::ops::verify::{VerifyOptions, VerifyReport, verify};

use super::args::{Format, ReportFormat};
use super::{Ctx, ExitStatus, values};

/// Check a run's cache entries against its manifest: every deterministic output re-hashed
/// (blake3, in parallel), volatile outputs (event files) by size, records present and
/// readable. Never modifies the cache unless --evict is given.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
A run is a manifest file, a run folder, or a run id: whole, a unique prefix, or name/id as \
`geoexp ls` prints it.

--recompute STAGE runs that stage again into a scratch directory, on the run's upstream \
entries (which must verify), with the experiment file the manifest names (relative to where \
the run was started; --experiment gives another) and the manifest's values for everything \
set by --set, variables or a sweep; then compares every deterministic output and result: \
`reproduced`, or the files that differ.

Exit status: 0 everything verified (and reproduced), 1 a problem was found (each is named: \
stage, key, file, what), or the recomputed stage failed or differs; 2 the run cannot be \
found, or the stage cannot be recomputed as it was (the checks are printed first).")]
pub struct Args {
    /// The run: a run folder, its manifest, or a run id (prefix).
    #[arg(value_name = "RUN")]
    run: PathBuf,
    /// Also recompute this stage and compare its outputs with the cache entry's.
    #[arg(long, value_name = "STAGE")]
    recompute: Option<String>,
    /// The experiment file for --recompute [default: the one the manifest names].
    #[arg(long, value_name = "FILE", requires = "recompute")]
    experiment: Option<PathBuf>,
    /// Remove the entries found bad, so the next `geoexp run` recomputes them.
    #[arg(long)]
    evict: bool,
    #[command(flatten)]
    format: ReportFormat,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let report = verify(
        &VerifyOptions {
            run: args.run,
            runs_dir: ctx.global.runs_dir.clone(),
            evict: args.evict,
            recompute: args.recompute,
            experiment: args.experiment,
        },
        &ctx.reporter,
    )?;
    let text = match args.format.format {
        Format::Text => text(&report),
        Format::Json => values::json_text(&report)?,
    };
    ctx.reporter.clear();
    std::io::stdout().lock().write_all(text.as_bytes())?;
    if let Some(e) = &report.recompute_error {
        ctx.reporter.warn(&format!("error: {}", e.message));
        return Ok(if e.stage_failed {
            ExitStatus::Failure
        } else {
            ExitStatus::Error
        });
    }
    Ok(if report.ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// One line per stage (`ok`, or `BAD` and one line per problem), the recomputation, the
/// evictions, and a last line saying what it all means.
fn text(report: &VerifyReport) -> String {
    let mut out = String::new();
    let width = report
        .stages
        .iter()
        .map(|v| v.stage.len())
        .max()
        .unwrap_or(0);
    for v in &report.stages {
        if v.ok() {
            out.push_str(&format!(
                "{:<width$}  {}  ok   {} outputs, {}\n",
                v.stage,
                v.key.short(),
                v.outputs,
                values::size(v.bytes)
            ));
        } else {
            out.push_str(&format!("{:<width$}  {}  BAD\n", v.stage, v.key.short()));
            for p in &v.problems {
                out.push_str(&format!("{:<width$}    {p}\n", ""));
            }
        }
    }
    if let Some(r) = &report.recompute {
        if r.differences.is_empty() {
            out.push_str(&format!(
                "recompute {} {}: reproduced ({:.1}s): every deterministic output and result is \
                 identical\n",
                r.stage,
                r.key.short(),
                r.seconds
            ));
        } else {
            out.push_str(&format!(
                "recompute {} {}: NOT reproduced ({:.1}s); these differ:\n",
                r.stage,
                r.key.short(),
                r.seconds
            ));
            for d in &r.differences {
                out.push_str(&format!("  {d}\n"));
            }
        }
    }
    for (stage, key) in &report.evicted {
        out.push_str(&format!(
            "evicted {stage} {}: the next `geoexp run` recomputes it\n",
            key.short()
        ));
    }
    for (stage, key, why) in &report.not_evicted {
        out.push_str(&format!("not evicted {stage} {}: {why}\n", key.short()));
    }
    let bad = report.stages.iter().filter(|v| !v.ok()).count();
    if bad == 0 {
        out.push_str(&format!(
            "{}: all {} stages verified\n",
            report.run,
            report.stages.len()
        ));
    } else {
        out.push_str(&format!(
            "{}: {bad} of {} stages do not verify{}\n",
            report.run,
            report.stages.len(),
            if report.evicted.is_empty() && report.not_evicted.is_empty() {
                "; `--evict` removes them so the next run recomputes them"
            } else {
                ""
            }
        ));
    }
    out
}
