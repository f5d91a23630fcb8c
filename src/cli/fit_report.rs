//! How a training's events read on the console: one line per epoch, and a line when a
//! training resumes or cannot.

use crate::train::progress::FitEvent;

/// The line for `event`, or `None` for events shown otherwise (steps move a progress bar).
pub fn fit_line(event: &FitEvent) -> Option<String> {
    match event {
        FitEvent::CannotResume { error, kept_as } => Some(format!(
            "cannot resume: {error}; it is kept as {} and training starts over",
            kept_as.display()
        )),
        FitEvent::Resumed {
            checkpoint,
            epochs_done,
        } => Some(format!(
            "resuming from {} after epoch {epochs_done}",
            checkpoint.display()
        )),
        FitEvent::NewEventFile { error } => Some(format!("starting a new event file: {error}")),
        FitEvent::EpochFinished {
            record,
            epochs,
            seconds,
            best,
        } => {
            let m = &record.metrics;
            let get = |k: &str| m.get(k).map_or("-".to_owned(), |v| format!("{v:.4}"));
            let km = |k: &str| m.get(k).map_or("-".to_owned(), |v| format!("{v:.1} km"));
            Some(format!(
                "epoch {:>3}/{epochs}  train loss {}  acc {}  val loss {}  val mean {}  median {}  \
                 lr {:.2e}  {seconds:.1}s{}",
                record.epoch + 1,
                get("train/loss"),
                get("train/acc"),
                get("val/loss"),
                km("val/haversine_km_mean"),
                km("val/haversine_km_median"),
                record.lr,
                if *best { "  *best" } else { "" }
            ))
        }
        FitEvent::EpochStarted { .. } | FitEvent::Step { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::train::checkpoint::EpochRecord;

    #[test]
    fn an_epoch_reads_as_one_line_with_missing_metrics_as_dashes() {
        let record = EpochRecord {
            epoch: 2,
            lr: 3e-4,
            metrics: BTreeMap::from([
                ("train/loss".to_owned(), 1.23456),
                ("val/loss".to_owned(), 1.5),
                ("val/haversine_km_mean".to_owned(), 42.26),
                ("val/haversine_km_median".to_owned(), 30.0),
            ]),
        };
        let line = fit_line(&FitEvent::EpochFinished {
            record,
            epochs: 10,
            seconds: 12.34,
            best: true,
        });
        assert_eq!(
            line.as_deref(),
            Some(
                "epoch   3/10  train loss 1.2346  acc -  val loss 1.5000  val mean 42.3 km  \
                 median 30.0 km  lr 3.00e-4  12.3s  *best"
            )
        );
    }

    #[test]
    fn resuming_names_the_checkpoint_and_the_epoch() {
        let line = fit_line(&FitEvent::Resumed {
            checkpoint: PathBuf::from("work/last.safetensors"),
            epochs_done: 2,
        });
        assert_eq!(
            line.as_deref(),
            Some("resuming from work/last.safetensors after epoch 2")
        );
        assert_eq!(
            fit_line(&FitEvent::Step {
                mean_loss: 1.0,
                locations_per_second: 2.0
            }),
            None
        );
    }
}
