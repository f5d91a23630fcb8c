//! `geoexp man`: manual pages (roff) from the clap definitions.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::{Cli, Ctx, ExitStatus};

/// Print the manual page of geoexp, or write one per command into a folder.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
`geoexp man | man -l -` reads it now; `geoexp man --dir ~/.local/share/man/man1` installs \
geoexp.1 and geoexp-<command>.1 for `man geoexp-run`.")]
pub struct Args {
    /// Write geoexp.1 and geoexp-<command>.1 into this folder instead of printing geoexp.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(args: Args, ctx: &Ctx) -> Result<ExitStatus> {
    let cmd = Cli::command();
    match args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut written = 0;
            for page in pages(cmd) {
                let path = dir.join(&page.0);
                crate::graph::write_atomic(&path, &page.1)?;
                written += 1;
            }
            ctx.reporter
                .line(&format!("{written} manual pages → {}", dir.display()));
        }
    }
    Ok(ExitStatus::Success)
}

/// (file name, roff) of geoexp.1 and of geoexp-<command>.1 for every command but `help`.
pub fn pages(cmd: clap::Command) -> Vec<(String, Vec<u8>)> {
    let mut cmd = cmd;
    cmd.build();
    let mut out = Vec::new();
    let mut render = |name: String, c: clap::Command| {
        let mut bytes = Vec::new();
        if clap_mangen::Man::new(c).render(&mut bytes).is_ok() {
            out.push((format!("{name}.1"), bytes));
        }
    };
    render("geoexp".into(), cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("geoexp-{}", sub.get_name());
        render(name.clone(), sub.clone().name(name));
    }
    out
}
