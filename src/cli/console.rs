//! The console reporter: one line per stage on stdout, progress bars on stderr.

use std::any::Any;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::graph::{Progress, Reporter, RerunReason, RunEvent, Tick};
use crate::train::progress::FitEvent;

use super::fit_report::fit_line;

/// Prints stage events and draws progress bars (hidden when stderr is not a terminal).
pub struct Console {
    quiet: bool,
    bars: MultiProgress,
    reasons: Mutex<Vec<(String, Vec<RerunReason>)>>,
}

impl Console {
    /// A reporter; `quiet` prints nothing but errors.
    pub fn new(quiet: bool) -> Console {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Console {
            quiet,
            bars: MultiProgress::with_draw_target(target),
            reasons: Mutex::new(Vec::new()),
        }
    }

    /// Removes any bar still drawn (before printing an error).
    pub fn clear(&self) {
        let _ = self.bars.clear();
    }

    /// Prints a line to stdout above the bars, unless quiet.
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        self.bars.suspend(|| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        });
    }

    /// Prints a line to stderr above the bars, even when quiet: failures and warnings.
    pub fn warn(&self, text: &str) {
        self.bars.suspend(|| {
            let mut out = std::io::stderr().lock();
            let _ = writeln!(out, "{text}");
        });
    }

    fn stage_line(&self, stage: &str, status: &str, key: &str, duration: Duration, note: &str) {
        self.line(&format!(
            "{stage:<10} {status:<5} {key}  {:>8}  {note}",
            format_duration(duration)
        ));
    }
}

/// `0.42s`, `12.3s`, `4m05s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2}s")
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

impl Progress for Console {
    fn start(&self, label: &str, total: u64) -> Box<dyn Tick> {
        let bar = self.bars.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>30} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        Box::new(Bar(bar))
    }

    fn say(&self, text: &str) {
        self.line(text);
    }

    fn stage_event(&self, stage: &str, event: &dyn Any) {
        if let Some(text) = event.downcast_ref::<FitEvent>().and_then(fit_line) {
            self.line(&format!("{stage:<10} {text}"));
        }
    }
}

struct Bar(ProgressBar);

impl Tick for Bar {
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
    fn message(&self, text: &str) {
        self.0.set_message(text.to_owned());
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Reporter for Console {
    fn event(&self, event: RunEvent) {
        match event {
            RunEvent::Hit {
                stage,
                key,
                duration,
            } => {
                self.stage_line(&stage, "hit", key.short(), duration, "");
            }
            RunEvent::Started { stage, reasons, .. } => {
                tracing::info!("running {stage}");
                if let Ok(mut r) = self.reasons.lock() {
                    r.push((stage, reasons));
                }
            }
            RunEvent::Finished {
                stage,
                key,
                duration,
            } => {
                let why = self
                    .reasons
                    .lock()
                    .ok()
                    .and_then(|r| {
                        r.iter()
                            .find(|(s, _)| *s == stage)
                            .map(|(_, why)| why.clone())
                    })
                    .unwrap_or_default();
                let why: Vec<String> = why.iter().map(ToString::to_string).collect();
                self.stage_line(&stage, "miss", key.short(), duration, &why.join("; "));
            }
            RunEvent::Waiting { stage, holder } => {
                self.line(&format!(
                    "{stage:<10} waiting for {holder}, which is computing it"
                ));
            }
            RunEvent::WaitingForGc { holder } => {
                self.line(&format!(
                    "{:<10} waiting for `geoexp gc` ({holder}) to finish",
                    "cache"
                ));
            }
            RunEvent::Paused { stage, what } => {
                self.line(&format!("{stage:<10} paused: {what}"));
            }
            RunEvent::Failed { stage, .. } => {
                self.line(&format!("{stage:<10} FAILED"));
            }
            RunEvent::CorruptEntry { stage, problem } => {
                tracing::warn!(
                    "{stage}: ignoring a damaged cache entry (it is recomputed): {problem}"
                );
            }
        }
    }
}
