//! The training's TensorBoard event file while it runs, and the ledger that lets a resumed
//! training continue it.
//!
//! The file lives in the work directory under a fixed `*tfevents*` name, so `tensorboard
//! --logdir runs` shows a training live and nothing in a checkpoint depends on when or
//! where it started. After each epoch its length goes to a ledger beside it, before the
//! checkpoint is written: whichever `last` a kill leaves, a resume knows where that
//! epoch's events end and truncates the file there. The ledger stays out of the
//! checkpoints, whose bytes must follow from the stage's key alone (an event file's length
//! depends on its wall times).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::track::tensorboard::{EventWriter, HParamValue};

use super::FitError;
use super::progress::{FitEvent, FitObserver};

/// The train stage's event file inside its cache entry. Deliberately not named
/// `*tfevents*`: TensorBoard would list every cache entry as a run; the run folders get
/// hard links under an `events.out.tfevents.*` name instead.
pub const EVENTS_FILE: &str = "train.events";

/// The event file while training runs, in the work directory.
const LIVE_EVENTS_FILE: &str = "events.out.tfevents.live";

/// The ledger: `epoch \t length` lines, one per finished epoch.
const EVENT_LENGTHS_FILE: &str = "events.lengths";

/// Test metrics the evaluate stage logs for the best checkpoint, shown in TensorBoard's
/// HParams tab beside the monitor.
const HPARAM_METRICS: [&str; 3] = [
    "evaluate/haversine_km_mean",
    "evaluate/haversine_km_median",
    "evaluate/geoguessr_score",
];

/// What a new event file starts with.
pub struct Header<'a> {
    /// Hyperparameters for the HParams tab.
    pub hparams: &'a BTreeMap<String, HParamValue>,
    /// `train.monitor`, a metric of the HParams tab.
    pub monitor: &'a str,
    /// The class map PNG with its width and height.
    pub class_map: Option<&'a (Vec<u8>, u32, u32)>,
}

/// The live event file and its ledger.
pub struct EventLog {
    writer: EventWriter,
    path: PathBuf,
    lengths: BTreeMap<u32, u64>,
    lengths_path: PathBuf,
}

impl EventLog {
    /// Continues the event file as it was after epoch `resumed` (0-based), or starts a new
    /// one with `header`. Should continuing be impossible (its length unknown, the file
    /// shorter or damaged), it starts over, as a fresh run's does: events are a view of
    /// the training, not part of what it computes.
    ///
    /// # Errors
    /// The file or its ledger cannot be written.
    pub fn open(
        work: &Path,
        resumed: Option<u32>,
        header: &Header<'_>,
        observer: &dyn FitObserver,
    ) -> Result<EventLog, FitError> {
        let path = work.join(LIVE_EVENTS_FILE);
        let lengths_path = work.join(EVENT_LENGTHS_FILE);
        let lengths = read_lengths(&lengths_path);
        let kept = resumed.and_then(|e| lengths.get(&e).copied());
        if let Some(len) = kept.filter(|_| path.is_file()) {
            match EventWriter::resume(&path, len) {
                Ok(writer) => {
                    return Ok(EventLog {
                        writer,
                        path,
                        lengths,
                        lengths_path,
                    });
                }
                Err(e) => observer.event(FitEvent::NewEventFile {
                    error: e.to_string(),
                }),
            }
        }
        let _ = std::fs::remove_file(&path);
        let mut log = EventLog {
            writer: EventWriter::create_at(&path)?,
            path,
            lengths: BTreeMap::new(),
            lengths_path,
        };
        log.write_lengths()?;
        log.write_header(header);
        Ok(log)
    }

    fn write_header(&mut self, header: &Header<'_>) {
        let metric_tags: Vec<String> = HPARAM_METRICS
            .iter()
            .copied()
            .chain(std::iter::once(header.monitor))
            .map(str::to_owned)
            .collect();
        self.writer.hparams_start(header.hparams, &metric_tags);
        if let Some((png, w, h)) = header.class_map {
            self.writer.image("maps/classes", 0, png, *w, *h);
        }
    }

    /// Logs a scalar.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f64) {
        self.writer.scalar(tag, step, value);
    }

    /// Logs an epoch's metrics, flushes, and records the file's length for `epoch`: call it
    /// before writing the epoch's checkpoints.
    ///
    /// # Errors
    /// The file or its ledger cannot be written.
    pub fn end_epoch(
        &mut self,
        epoch: u32,
        metrics: &BTreeMap<String, f64>,
    ) -> Result<(), FitError> {
        for (k, v) in metrics {
            self.writer.scalar(k, i64::from(epoch), *v);
        }
        let len = self.writer.flush()?;
        self.lengths.insert(epoch, len);
        self.write_lengths()
    }

    /// Closes the file, returning its path.
    pub fn close(self) -> PathBuf {
        drop(self.writer);
        self.path
    }

    fn write_lengths(&self) -> Result<(), FitError> {
        let text: String = self
            .lengths
            .iter()
            .map(|(epoch, len)| format!("{epoch}\t{len}\n"))
            .collect();
        crate::graph::write_atomic(&self.lengths_path, text.as_bytes())?;
        Ok(())
    }
}

/// The ledger's lengths by epoch. Unreadable lines are skipped (a resume then starts a new
/// event file).
fn read_lengths(path: &Path) -> BTreeMap<u32, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (epoch, len) = line.split_once('\t')?;
            Some((epoch.parse().ok()?, len.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::progress::Unobserved;

    fn header<'a>(hparams: &'a BTreeMap<String, HParamValue>) -> Header<'a> {
        Header {
            hparams,
            monitor: "val/loss",
            class_map: None,
        }
    }

    #[test]
    fn a_resume_truncates_the_file_to_the_epoch_it_continues() {
        let dir = tempfile::tempdir().unwrap();
        let hparams = BTreeMap::new();
        let mut log = EventLog::open(dir.path(), None, &header(&hparams), &Unobserved).unwrap();
        let metrics = BTreeMap::from([("val/loss".to_owned(), 1.0)]);
        log.end_epoch(0, &metrics).unwrap();
        let after_first = std::fs::metadata(dir.path().join(LIVE_EVENTS_FILE))
            .unwrap()
            .len();
        log.end_epoch(1, &metrics).unwrap();
        let path = log.close();
        assert!(std::fs::metadata(&path).unwrap().len() > after_first);
        let ledger = std::fs::read_to_string(dir.path().join(EVENT_LENGTHS_FILE)).unwrap();
        assert!(
            ledger.starts_with(&format!("0\t{after_first}\n1\t")),
            "{ledger}"
        );

        let log = EventLog::open(dir.path(), Some(0), &header(&hparams), &Unobserved).unwrap();
        let path = log.close();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), after_first);
    }

    #[test]
    fn an_epoch_missing_from_the_ledger_starts_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EVENT_LENGTHS_FILE), "0\tnot a length\n").unwrap();
        std::fs::write(dir.path().join(LIVE_EVENTS_FILE), b"old bytes").unwrap();
        let hparams = BTreeMap::new();
        let log = EventLog::open(dir.path(), Some(0), &header(&hparams), &Unobserved).unwrap();
        let path = log.close();
        assert_ne!(std::fs::read(&path).unwrap(), b"old bytes");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(EVENT_LENGTHS_FILE)).unwrap(),
            ""
        );
    }
}
