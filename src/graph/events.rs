//! The interface between the executor and whoever shows or records what it does.
//!
//! The executor never prints: it emits [`RunEvent`]s to a [`Reporter`] (the console
//! reporter in `cli/`, a collecting reporter in tests) and asks it for progress bars.

use std::any::Any;
use std::sync::Mutex;
use std::time::Duration;

use super::key::StageKey;
use super::reason::RerunReason;

/// One thing that happened while executing a graph.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// A stage's key was found in the cache.
    Hit {
        /// Stage name.
        stage: String,
        /// Its key.
        key: StageKey,
        /// Time spent finding it (waiting for a lock included).
        duration: Duration,
    },
    /// A stage is about to run, and why.
    Started {
        /// Stage name.
        stage: String,
        /// Its key.
        key: StageKey,
        /// Why it is not a cache hit.
        reasons: Vec<RerunReason>,
    },
    /// Another process holds the lock for this key; we wait for it.
    Waiting {
        /// Stage name.
        stage: String,
        /// Description of the lock holder (host, pid).
        holder: String,
    },
    /// A `geoexp gc` pass holds the cache; we wait for it before using any entry.
    WaitingForGc {
        /// Description of the gc process (host, pid).
        holder: String,
    },
    /// A stage finished and its entry was committed to the cache.
    Finished {
        /// Stage name.
        stage: String,
        /// Its key.
        key: StageKey,
        /// Wall time of the run function.
        duration: Duration,
    },
    /// A stage stopped short at a budget its caller set; nothing was committed, and its
    /// work is kept for the next attempt.
    Paused {
        /// Stage name.
        stage: String,
        /// Where it stopped.
        what: String,
    },
    /// A stage failed; nothing was committed.
    Failed {
        /// Stage name.
        stage: String,
        /// The error, rendered.
        error: String,
    },
    /// A cache entry could not be read and is treated as missing.
    CorruptEntry {
        /// Stage name.
        stage: String,
        /// What was wrong.
        problem: String,
    },
}

/// A progress bar handle.
pub trait Tick: Send + Sync {
    /// Advances by `n` units.
    fn inc(&self, n: u64);
    /// Shows a short live status next to the bar (running loss, throughput).
    fn message(&self, _text: &str) {}
    /// Marks the bar done.
    fn finish(&self) {}
}

/// Creates progress bars.
pub trait Progress: Sync {
    /// Starts a bar with `total` units.
    fn start(&self, label: &str, total: u64) -> Box<dyn Tick>;
    /// A line of narrative (a sweep trial waiting for another process).
    fn say(&self, _text: &str) {}
    /// A running stage's own event (training's epochs): the engine passes it through
    /// untouched, knowing nothing of its type; a reporter formats the kinds it knows and
    /// ignores the rest.
    fn stage_event(&self, _stage: &str, _event: &dyn Any) {}
}

/// Receives run events and provides progress bars.
pub trait Reporter: Progress {
    /// Handles one event.
    fn event(&self, event: RunEvent);
}

/// A tick that does nothing.
pub struct NoTick;

impl Tick for NoTick {
    fn inc(&self, _: u64) {}
}

/// A reporter that keeps every event: for tests and for callers that render later.
#[derive(Default)]
pub struct CollectingReporter {
    events: Mutex<Vec<RunEvent>>,
}

impl CollectingReporter {
    /// The events so far.
    pub fn events(&self) -> Vec<RunEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Progress for CollectingReporter {
    fn start(&self, _: &str, _: u64) -> Box<dyn Tick> {
        Box::new(NoTick)
    }
}

impl Reporter for CollectingReporter {
    fn event(&self, event: RunEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}
