//! `geoexp plan`.

use anyhow::Result;
use comfy_table::{Table, presets::NOTHING};

use crate::graph::PlanStatus;
use crate::ops::plan::{PlanOptions, plan};

use super::{Ctx, ExitStatus, ExperimentArgs, values};

/// Show the run graph without running it: each stage's key, whether it is cached, and for
/// a stage that would run, why — the config values, input files or upstream stages that
/// differ from the nearest cached entry of that stage.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Plan only up to this stage.
    #[arg(long, value_name = "STAGE")]
    until: Option<String>,
    /// Plan as if this stage were forced (repeatable).
    #[arg(long, value_name = "STAGE")]
    force: Vec<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let report = plan(
        &PlanOptions {
            experiment: args.experiment.load_options(),
            runs_dir: ctx.global.runs_dir.clone(),
            until: args.until,
            force: args.force,
        },
        &ctx.reporter,
    )?;
    let mut table = Table::new();
    table.load_style(NOTHING);
    table.set_header(["stage", "after", "key", "status", "why"]);
    for e in &report.entries {
        let (status, why) = match &e.status {
            PlanStatus::Cached => ("cached".to_owned(), String::new()),
            PlanStatus::WillRun { reasons, nearest } => {
                let mut why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                if let Some(n) = nearest {
                    why.push(format!("(compared with cached {})", n.short()));
                }
                ("will run".to_owned(), why.join("\n"))
            }
        };
        let after = if e.upstream.is_empty() {
            "-".to_owned()
        } else {
            e.upstream.join(", ")
        };
        table.add_row([
            e.stage.clone(),
            after,
            e.key.short().to_owned(),
            status,
            why,
        ]);
    }
    // The plan is the command's output: printed even with --quiet.
    print!("{}", values::table_text(&table));
    println!("{}", report.route);
    println!("run {} → {}", report.run_id, report.run_dir.display());
    let _ = ctx;
    Ok(ExitStatus::Success)
}
