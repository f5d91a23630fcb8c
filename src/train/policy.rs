//! The checkpoint policy: after each epoch, which checkpoints to write. It only decides;
//! `checkpoint::write` does what it says.
//!
//! A run keeps two checkpoints: `best`, the epoch with the best monitored value so far
//! (the first one on ties), and `last`, the latest epoch, from which a killed run resumes.
//! Each write replaces the file of the same name, so the policy never has anything to
//! delete.

/// Which of a run's checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The best epoch by the monitor.
    Best,
    /// The latest epoch.
    Last,
}

impl Slot {
    /// Its file name without extension.
    pub fn name(self) -> &'static str {
        match self {
            Slot::Best => "best",
            Slot::Last => "last",
        }
    }
}

/// Keep the best epoch by `train.monitor`, and the last.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointPolicy {
    /// Whether the monitor improves upwards (accuracies, scores).
    pub monitor_max: bool,
}

/// What to do after an epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The best (value, epoch) once this epoch counts.
    pub best: (f64, u32),
    /// Whether this epoch is the new best.
    pub improved: bool,
    /// The checkpoints to write, in order: `best` before `last`, so a kill between the two
    /// leaves a `last` that resumes to the same `best`.
    pub write: Vec<Slot>,
}

impl CheckpointPolicy {
    /// The decision after `epoch` reached `monitored`, the best so far being `best`.
    pub fn after_epoch(&self, best: Option<(f64, u32)>, monitored: f64, epoch: u32) -> Decision {
        let improved = match best {
            None => true,
            Some((b, _)) if self.monitor_max => monitored > b,
            Some((b, _)) => monitored < b,
        };
        let (best, write) = match best {
            Some(kept) if !improved => (kept, vec![Slot::Last]),
            _ => ((monitored, epoch), vec![Slot::Best, Slot::Last]),
        };
        Decision {
            best,
            improved,
            write,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: CheckpointPolicy = CheckpointPolicy { monitor_max: false };
    const MAX: CheckpointPolicy = CheckpointPolicy { monitor_max: true };

    #[test]
    fn the_first_epoch_is_the_best_so_far() {
        let d = MIN.after_epoch(None, 12.5, 0);
        assert_eq!(
            d,
            Decision {
                best: (12.5, 0),
                improved: true,
                write: vec![Slot::Best, Slot::Last],
            }
        );
    }

    #[test]
    fn a_lower_value_improves_a_minimised_monitor() {
        let d = MIN.after_epoch(Some((12.5, 0)), 11.0, 1);
        assert_eq!((d.best, d.improved), ((11.0, 1), true));
        assert_eq!(d.write, [Slot::Best, Slot::Last]);
        let d = MIN.after_epoch(Some((12.5, 0)), 13.0, 1);
        assert_eq!((d.best, d.improved), ((12.5, 0), false));
        assert_eq!(d.write, [Slot::Last]);
    }

    #[test]
    fn a_higher_value_improves_a_maximised_monitor() {
        let d = MAX.after_epoch(Some((0.4, 2)), 0.5, 3);
        assert_eq!((d.best, d.improved), ((0.5, 3), true));
        let d = MAX.after_epoch(Some((0.4, 2)), 0.3, 3);
        assert_eq!((d.best, d.write), ((0.4, 2), vec![Slot::Last]));
    }

    #[test]
    fn ties_keep_the_earlier_epoch() {
        for policy in [MIN, MAX] {
            let d = policy.after_epoch(Some((0.4, 2)), 0.4, 3);
            assert_eq!((d.best, d.improved), ((0.4, 2), false));
        }
    }

    #[test]
    fn a_nan_never_replaces_a_best() {
        for policy in [MIN, MAX] {
            let d = policy.after_epoch(Some((0.4, 2)), f64::NAN, 3);
            assert_eq!((d.best, d.write), ((0.4, 2), vec![Slot::Last]));
        }
    }
}
