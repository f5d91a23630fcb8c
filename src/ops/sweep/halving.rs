//! Successive halving on this machine, synchronous and deterministic: every live trial
//! trains to the rung's epoch (its training pauses there, resumable, with the keys of the
//! whole run), then the best `⌈n / reduction⌉` by `train.monitor` at that epoch go on,
//! ties broken by trial id, and the rest stop. The last rung trains the survivors to
//! `train.epochs` and finishes them as ordinary runs.
//!
//! Nothing depends on timing or order of completion, so the same sweep promotes the same
//! trials run one after another or with `--jobs N`. A rerun of a killed sweep replays the
//! rungs: a trial already at a rung pauses again at once, with the same value, so the
//! promotions come out the same and no epoch is trained twice.

use std::collections::BTreeSet;

use crate::experiment::sweep::Halving;
use crate::graph::{CollectingReporter, Lookup, Reporter};
use crate::stages::train::NAME as TRAIN;
use crate::train::checkpoint::read_sidecar;
use crate::train::policy::Slot;

use super::local::{LocalOptions, LocalReport, SweepEvents, refresh, run_each, select};
use super::record::{self, TrialState};
use super::{OpError, Prepared, SweepPlan, TrialOutcome, TrialSpec};

/// Runs `plan`'s trials rung by rung, then writes the sweep record.
///
/// # Errors
/// When the sweep folder cannot be written or a child cannot be started.
pub fn run_halving(
    plan: &SweepPlan,
    halving: Halving,
    options: &LocalOptions,
    reporter: &dyn Reporter,
    events: &dyn SweepEvents,
) -> Result<LocalReport, OpError> {
    let (todo, already_done, skipped_failed) = select(plan, options.rerun_failed);
    // Finished trials take part too: each rung compares every trial at that epoch.
    let done: Vec<TrialSpec> = record::gather(plan)
        .into_iter()
        .filter(|r| r.state == TrialState::Ok)
        .map(|r| r.spec)
        .collect();
    let mut live: Vec<TrialSpec> = plan
        .trials
        .iter()
        .filter(|t| todo.iter().chain(&done).any(|x| x.id == t.id))
        .cloned()
        .collect();
    let rungs = halving.rungs(plan.epochs);
    let mut ran = 0;
    let mut stopped_early = false;
    for (k, &epochs) in rungs.iter().enumerate() {
        let last = k + 1 == rungs.len();
        let to_run: Vec<TrialSpec> = live
            .iter()
            .filter(|t| !done.iter().any(|d| d.id == t.id))
            .cloned()
            .collect();
        let stop_after = (!last).then_some(epochs);
        let (outcomes, stopped) = run_each(plan, &to_run, stop_after, options, reporter, events)?;
        ran += outcomes.len();
        if stopped {
            stopped_early = true;
            break;
        }
        if last {
            break;
        }
        let failed: BTreeSet<&str> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, TrialOutcome::Failed(_)))
            .map(|(t, _)| t.id.as_str())
            .collect();
        let reached: Vec<TrialSpec> = live
            .iter()
            .filter(|t| !failed.contains(t.id.as_str()))
            .cloned()
            .collect();
        let (promoted, stopped) = close_rung(plan, halving, epochs, &reached)?;
        refresh(plan)?;
        events.rung_finished(k + 1, epochs, &promoted, stopped);
        live = promoted.into_iter().map(|(t, _)| t).collect();
    }
    LocalReport::written(plan, ran, already_done, skipped_failed, stopped_early)
}

/// Ends the rung at `epochs` for the trials that `reached` it: the best `⌈n /
/// reduction⌉` go on (recorded paused there), the rest are recorded stopped. Returns those
/// that go on, with their values, and how many stopped.
///
/// # Errors
/// When a status file cannot be written.
#[allow(clippy::type_complexity)]
pub fn close_rung(
    plan: &SweepPlan,
    halving: Halving,
    epochs: u32,
    reached: &[TrialSpec],
) -> Result<(Vec<(TrialSpec, Option<f64>)>, usize), OpError> {
    let scored: Vec<(TrialSpec, Option<f64>)> = reached
        .iter()
        .map(|t| (t.clone(), value_at(plan, t, epochs)))
        .collect();
    let keep = halving.keep(scored.len());
    let (promoted, stopped) = promote(scored, keep, plan.monitor_max);
    for (t, value) in &stopped {
        record_rung(plan, t, epochs, *value, TrialState::Stopped)?;
    }
    for (t, value) in &promoted {
        record_rung(plan, t, epochs, *value, TrialState::Paused)?;
    }
    Ok((promoted, stopped.len()))
}

/// The best `keep` trials by value (ties and missing values: by trial id, missing last),
/// in sweep order, and the others, each with its value.
#[allow(clippy::type_complexity)]
pub fn promote(
    scored: Vec<(TrialSpec, Option<f64>)>,
    keep: usize,
    higher_is_better: bool,
) -> (Vec<(TrialSpec, Option<f64>)>, Vec<(TrialSpec, Option<f64>)>) {
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by(|&a, &b| {
        let (ta, va) = &scored[a];
        let (tb, vb) = &scored[b];
        let by_value = match (va, vb) {
            (Some(x), Some(y)) if higher_is_better => y.total_cmp(x),
            (Some(x), Some(y)) => x.total_cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_value.then_with(|| ta.id.cmp(&tb.id))
    });
    let kept: BTreeSet<usize> = order
        .into_iter()
        .take(keep)
        .filter(|&i| scored[i].1.is_some())
        .collect();
    let (promoted, stopped): (Vec<_>, Vec<_>) = scored
        .into_iter()
        .enumerate()
        .partition(|(i, _)| kept.contains(i));
    let strip = |v: Vec<(usize, (TrialSpec, Option<f64>))>| v.into_iter().map(|(_, x)| x).collect();
    (strip(promoted), strip(stopped))
}

/// `train.monitor` after epoch `epochs` of `trial`'s training: from its cache entry when it
/// finished, else from the `last` checkpoint its paused training keeps.
pub fn value_at(plan: &SweepPlan, trial: &TrialSpec, epochs: u32) -> Option<f64> {
    monitor_history(plan, trial)?
        .into_iter()
        .find(|&(e, _)| e == epochs)
        .map(|(_, v)| v)
}

/// `train.monitor` after each epoch `trial` has trained so far, as (epochs trained, value),
/// read as [`value_at`] reads it.
pub fn monitor_history(plan: &SweepPlan, trial: &TrialSpec) -> Option<Vec<(u32, f64)>> {
    let prepared = Prepared::new(&trial.load_options(), &plan.runs_dir).ok()?;
    let resolved = prepared.resolve(&CollectingReporter::default()).ok()?;
    let key = &resolved.iter().find(|r| r.stage.name() == TRAIN)?.key;
    let dir = match prepared.store.lookup(TRAIN, key) {
        Lookup::Found(entry) => entry.dir,
        _ => prepared.store.work_dir(TRAIN, key),
    };
    let meta = read_sidecar(&dir, Slot::Last.name()).ok()?;
    Some(
        meta.history
            .iter()
            .filter_map(|r| Some((r.epoch + 1, *r.metrics.get(&plan.monitor_key)?)))
            .collect(),
    )
}

/// Records where `trial` stands after a rung: paused there (it goes on) or stopped. A
/// finished trial keeps its record.
fn record_rung(
    plan: &SweepPlan,
    trial: &TrialSpec,
    epochs: u32,
    value: Option<f64>,
    state: TrialState,
) -> Result<(), OpError> {
    let mut rec = record::read_trial(&plan.dir, &trial.id)
        .unwrap_or_else(|| record::TrialRecord::started(trial));
    if rec.state == TrialState::Ok {
        return Ok(());
    }
    rec.state = state;
    rec.rung_epochs = Some(epochs);
    rec.rung_value = value;
    rec.write(&plan.dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(index: usize, id: &str) -> TrialSpec {
        TrialSpec {
            index,
            id: id.into(),
            values: Default::default(),
            experiment: Default::default(),
            sets: Vec::new(),
        }
    }

    fn ids(v: &[(TrialSpec, Option<f64>)]) -> Vec<&str> {
        v.iter().map(|(t, _)| t.id.as_str()).collect()
    }

    #[test]
    fn the_best_go_on_in_sweep_order_ties_broken_by_trial_id() {
        let scored = vec![
            (trial(0, "c"), Some(3.0)),
            (trial(1, "a"), Some(1.0)),
            (trial(2, "d"), Some(2.0)),
            (trial(3, "b"), Some(2.0)),
        ];
        let (promoted, stopped) = promote(scored.clone(), 2, false);
        assert_eq!(ids(&promoted), ["a", "b"]);
        assert_eq!(ids(&stopped), ["c", "d"]);
        let (promoted, _) = promote(scored, 2, true);
        assert_eq!(ids(&promoted), ["c", "b"]);
    }

    #[test]
    fn a_trial_without_a_value_never_goes_on() {
        let scored = vec![(trial(0, "a"), None), (trial(1, "b"), Some(5.0))];
        let (promoted, stopped) = promote(scored, 2, false);
        assert_eq!((ids(&promoted), ids(&stopped)), (vec!["b"], vec!["a"]));
    }

    #[test]
    fn rungs_grow_by_the_reduction_up_to_the_full_training() {
        let h = Halving {
            min_epochs: 1,
            reduction: 3,
        };
        assert_eq!(h.rungs(8), [1, 3, 8]);
        assert_eq!(h.rungs(9), [1, 3, 9]);
        assert_eq!(h.rungs(1), [1]);
        assert_eq!((h.keep(27), h.keep(9), h.keep(10), h.keep(1)), (9, 3, 4, 1));
        let h = Halving {
            min_epochs: 2,
            reduction: 2,
        };
        assert_eq!(h.rungs(10), [2, 4, 8, 10]);
        let h = Halving {
            min_epochs: 1,
            reduction: 3,
        };
        assert_eq!(h.epoch_budget(27, 8), (27 + 9 * 2 + 3 * 5, 216));
        assert_eq!(h.epoch_budget(1, 8), (8, 8));
    }
}
