//! Learning-rate schedules: a pure function of the global step, plus the little state that
//! `plateau` keeps between epochs.
//!
//! The scheduler only decides the learning rate; the training loop passes [`Scheduler::lr`]
//! to the optimiser's step. Every schedule except `plateau` is a function of the step alone,
//! so resuming a run needs nothing but the step; `plateau` depends on the metrics seen so far,
//! which [`SchedulerState`] captures (it serialises into the checkpoint sidecar).
//!
//! | kind       | lr at global step `s` (epoch `e = s / steps_per_epoch`)                     |
//! |------------|------------------------------------------------------------------------------|
//! | `constant` | `base_lr`                                                                    |
//! | `step`     | `base_lr · factor^(e / step_size)` (integer division)                        |
//! | `cosine`   | linear warm-up `base_lr·(s+1)/W` for `W = warmup_epochs·steps_per_epoch` steps, then `min_lr + (base_lr − min_lr)·(1 + cos(π·t/T))/2` with `t = s − W`, `T = total − W` (PyTorch `CosineAnnealingLR` with `T_max = T`) |
//! | `onecycle` | PyTorch `OneCycleLR` (cosine annealing, two phases), peak `base_lr`           |
//! | `plateau`  | PyTorch `ReduceLROnPlateau` (relative threshold, no cool-down), per epoch     |
//!
//! Steps past the end of training (`total = epochs·steps_per_epoch`) keep the last step's
//! schedule end (`min_lr` for cosine, the final one-cycle lr) instead of failing as PyTorch's
//! `OneCycleLR` does, so an extra evaluation step cannot crash a run.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::experiment::{SchedulerConfig, SchedulerKind};

/// PyTorch's `ReduceLROnPlateau` ignores reductions smaller than this (its `eps`), so once
/// the floor is reached the lr stops changing.
const PLATEAU_EPS: f64 = 1e-8;

/// Parameters of every schedule; each kind reads only its own (see the module table).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleParams {
    /// Multiplier on a decay (`step`, `plateau`).
    pub factor: f64,
    /// Bad epochs tolerated before a decay (`plateau`): the lr drops on the
    /// `patience + 1`-th consecutive epoch without improvement, as in PyTorch.
    pub patience: u32,
    /// Epochs between decays (`step`); 0 is treated as 1.
    pub step_size: u32,
    /// Floor of the lr (`cosine`, `plateau`).
    pub min_lr: f64,
    /// Fraction of all steps spent warming up (`onecycle`).
    pub pct_start: f64,
    /// Epochs of linear warm-up before the cosine (`cosine`).
    pub warmup_epochs: u32,
    /// `plateau`: higher monitor values are better (accuracies, scores).
    pub mode_max: bool,
    /// `onecycle`: the initial lr is `base_lr / div_factor` (PyTorch default 25).
    pub div_factor: f64,
    /// `onecycle`: the final lr is `initial / final_div_factor` (PyTorch default 1e4).
    pub final_div_factor: f64,
    /// `plateau`: relative improvement needed to count as better (PyTorch default 1e-4).
    pub threshold: f64,
}

impl ScheduleParams {
    /// The configured fields, PyTorch's defaults for the rest and no warm-up. `mode_max`
    /// comes from the monitored metric (see `metrics::monitor_mode_max`).
    pub fn from_config(cfg: &SchedulerConfig, mode_max: bool) -> Self {
        ScheduleParams {
            factor: cfg.factor,
            patience: cfg.patience,
            step_size: cfg.step_size,
            min_lr: cfg.min_lr,
            pct_start: cfg.pct_start,
            warmup_epochs: cfg.warmup_epochs,
            mode_max,
            div_factor: 25.0,
            final_div_factor: 1e4,
            threshold: 1e-4,
        }
    }
}

impl Default for ScheduleParams {
    fn default() -> Self {
        ScheduleParams::from_config(&SchedulerConfig::default(), false)
    }
}

/// Everything a [`Scheduler`] needs to resume; only `plateau` changes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SchedulerState {
    /// Epochs finished ([`Scheduler::end_epoch`] calls).
    pub epochs_done: u32,
    /// The current `plateau` learning rate (`base_lr` for the other kinds).
    pub plateau_lr: f64,
    /// Best monitor value so far; `None` before the first (PyTorch's ±inf, which JSON and
    /// TOML cannot hold).
    pub best: Option<f64>,
    /// Consecutive epochs without improvement.
    pub bad_epochs: u32,
}

/// A learning-rate schedule; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Scheduler {
    kind: SchedulerKind,
    p: ScheduleParams,
    base_lr: f64,
    steps_per_epoch: usize,
    total_steps: usize,
    state: SchedulerState,
}

impl Scheduler {
    /// A schedule over `epochs` epochs of `steps_per_epoch` steps (0 is treated as 1);
    /// `base_lr` is `train.lr`, the peak for `onecycle`.
    pub fn new(
        kind: SchedulerKind,
        p: ScheduleParams,
        base_lr: f64,
        epochs: u32,
        steps_per_epoch: usize,
    ) -> Self {
        let steps_per_epoch = steps_per_epoch.max(1);
        Scheduler {
            kind,
            p,
            base_lr,
            steps_per_epoch,
            total_steps: (epochs as usize * steps_per_epoch).max(1),
            state: SchedulerState {
                epochs_done: 0,
                plateau_lr: base_lr,
                best: None,
                bad_epochs: 0,
            },
        }
    }

    /// Learning rate for global step `step` (0-based; `step = epoch·steps_per_epoch + i`).
    pub fn lr(&self, step: usize) -> f64 {
        match self.kind {
            SchedulerKind::Constant => self.base_lr,
            SchedulerKind::Step => {
                let epoch = step / self.steps_per_epoch;
                let decays = epoch / self.p.step_size.max(1) as usize;
                self.base_lr * self.p.factor.powi(decays.min(i32::MAX as usize) as i32)
            }
            SchedulerKind::Cosine => self.cosine(step),
            SchedulerKind::OneCycle => self.one_cycle(step),
            SchedulerKind::Plateau => self.state.plateau_lr,
        }
    }

    /// Called once at the end of each epoch with the monitored metric; only `plateau` uses
    /// it, and it ignores an epoch without one (`None`), which neither helps nor hurts.
    /// A NaN metric is never an improvement, as in PyTorch.
    pub fn end_epoch(&mut self, monitor: Option<f64>) {
        self.state.epochs_done += 1;
        if self.kind != SchedulerKind::Plateau {
            return;
        }
        let Some(current) = monitor else {
            return;
        };
        if self.is_better(current) {
            self.state.best = Some(current);
            self.state.bad_epochs = 0;
        } else {
            self.state.bad_epochs += 1;
        }
        if self.state.bad_epochs > self.p.patience {
            let old = self.state.plateau_lr;
            let new = (old * self.p.factor).max(self.p.min_lr);
            if old - new > PLATEAU_EPS {
                self.state.plateau_lr = new;
            }
            self.state.bad_epochs = 0;
        }
    }

    /// The state to save with a checkpoint.
    pub fn state(&self) -> SchedulerState {
        self.state.clone()
    }

    /// Resumes from a saved state (a scheduler built with the same arguments).
    pub fn restore(&mut self, s: SchedulerState) {
        self.state = s;
    }

    /// PyTorch's `_is_better` with `threshold_mode = 'rel'`.
    fn is_better(&self, current: f64) -> bool {
        let Some(best) = self.state.best else {
            // Against ±inf anything but NaN is better.
            return !current.is_nan();
        };
        if self.p.mode_max {
            current > best * (1.0 + self.p.threshold)
        } else {
            current < best * (1.0 - self.p.threshold)
        }
    }

    fn cosine(&self, step: usize) -> f64 {
        let warmup = self.p.warmup_epochs as usize * self.steps_per_epoch;
        if step < warmup {
            // Starts at base/W rather than 0 so that the very first step already learns.
            return self.base_lr * (step + 1) as f64 / warmup as f64;
        }
        let span = self.total_steps.saturating_sub(warmup);
        if span == 0 {
            return self.base_lr;
        }
        let t = (step - warmup).min(span) as f64 / span as f64;
        self.p.min_lr + (self.base_lr - self.p.min_lr) * (1.0 + (PI * t).cos()) / 2.0
    }

    /// PyTorch `OneCycleLR._anneal_func` / `get_lr` with `three_phase = False`, including its
    /// float phase boundaries (`pct_start·total − 1` and `total − 1`).
    fn one_cycle(&self, step: usize) -> f64 {
        let initial = self.base_lr / self.p.div_factor;
        let min = initial / self.p.final_div_factor;
        let total = self.total_steps as f64;
        let phases = [
            (self.p.pct_start * total - 1.0, initial, self.base_lr),
            (total - 1.0, self.base_lr, min),
        ];
        let step = (step as f64).min(total - 1.0);
        let mut start = 0.0;
        for (i, &(end, from, to)) in phases.iter().enumerate() {
            if step <= end || i == phases.len() - 1 {
                // A zero-length phase (one step in all, or pct_start·total ≤ 1) is complete.
                let pct = if end > start {
                    (step - start) / (end - start)
                } else {
                    1.0
                };
                return to + (from - to) / 2.0 * ((PI * pct).cos() + 1.0);
            }
            start = end;
        }
        unreachable!("the last phase always matches")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ScheduleParams {
        ScheduleParams {
            factor: 0.5,
            patience: 2,
            step_size: 2,
            min_lr: 0.1,
            pct_start: 0.3,
            warmup_epochs: 0,
            mode_max: false,
            div_factor: 25.0,
            final_div_factor: 1e4,
            threshold: 1e-4,
        }
    }

    fn assert_curve(s: &Scheduler, expected: &[(usize, f64)]) {
        for &(step, want) in expected {
            let got = s.lr(step);
            assert!(
                (got - want).abs() < 1e-9,
                "step {step}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn constant_is_the_base_lr_everywhere() {
        let s = Scheduler::new(SchedulerKind::Constant, params(), 0.3, 4, 5);
        assert_curve(&s, &[(0, 0.3), (7, 0.3), (19, 0.3), (100, 0.3)]);
    }

    #[test]
    fn step_decays_every_step_size_epochs() {
        // 3 steps per epoch, step_size 2: epochs 0–1 (steps 0–5) 1.0, epochs 2–3 (steps 6–11)
        // 1.0·0.5 = 0.5, epoch 4 (step 12) 0.5² = 0.25.
        let s = Scheduler::new(SchedulerKind::Step, params(), 1.0, 6, 3);
        assert_curve(
            &s,
            &[
                (0, 1.0),
                (5, 1.0),
                (6, 0.5),
                (11, 0.5),
                (12, 0.25),
                (17, 0.25),
            ],
        );
    }

    #[test]
    fn cosine_warms_up_then_anneals_to_min_lr() {
        // base 1, min 0.1, 4 epochs × 2 steps = 8, warm-up 1 epoch = 2 steps (W = 2, T = 6).
        let p = ScheduleParams {
            warmup_epochs: 1,
            ..params()
        };
        let s = Scheduler::new(SchedulerKind::Cosine, p, 1.0, 4, 2);
        assert_curve(
            &s,
            &[
                (0, 0.5), // 1·1/2
                (1, 1.0), // 1·2/2
                (2, 1.0), // t = 0: 0.1 + 0.9·(1 + cos 0)/2
                // t = 1: 0.1 + 0.9·(1 + cos(π/6))/2 = 0.1 + 0.9·(1 + 0.8660254038)/2
                (3, 0.939_711_431_7),
                (4, 0.775), // t = 2: 0.1 + 0.9·(1 + 0.5)/2
                (5, 0.55),  // t = 3: 0.1 + 0.9·(1 + 0)/2
                (6, 0.325), // t = 4: 0.1 + 0.9·(1 − 0.5)/2
                // t = 5: 0.1 + 0.9·(1 − 0.8660254038)/2
                (7, 0.160_288_568_3),
                (8, 0.1),  // t = 6 = T: min_lr
                (50, 0.1), // past the end: stays at min_lr
            ],
        );
    }

    #[test]
    fn cosine_without_warmup_starts_at_the_base_lr() {
        // T = 4 steps: t = 2 is cos(π/2) = 0 → 0.1 + 0.9/2 = 0.55.
        let s = Scheduler::new(SchedulerKind::Cosine, params(), 1.0, 2, 2);
        assert_curve(&s, &[(0, 1.0), (2, 0.55)]);
    }

    #[test]
    fn one_cycle_matches_torch_phase_boundaries() {
        // max 1.0, total 10, pct 0.3: initial = 1/25 = 0.04, min = 0.04/1e4 = 4e-6.
        // Phase 1 ends at 0.3·10 − 1 = 2, phase 2 at 9.
        // anneal(a, b, pct) = b + (a − b)/2·(cos(π·pct) + 1)
        let s = Scheduler::new(SchedulerKind::OneCycle, params(), 1.0, 5, 2);
        assert_curve(
            &s,
            &[
                (0, 0.04), // pct 0
                (1, 0.52), // pct 1/2: 1 + (0.04 − 1)/2·(0 + 1) = 1 − 0.48
                (2, 1.0),  // pct 1
                // pct 1/7: 4e-6 + (1 − 4e-6)/2·(cos(π/7) + 1), cos(π/7) = 0.9009688679
                (3, 0.950_484_632_0),
                // pct 2/7: cos(2π/7) = 0.6234898019 → 4e-6 + 0.499998·1.6234898019
                (4, 0.811_745_654_0),
                // pct 4/7: cos(4π/7) = −0.2225209340 → 4e-6 + 0.499998·0.7774790660
                (6, 0.388_741_978_1),
                (9, 4e-6),  // pct 1: min
                (20, 4e-6), // past the end: stays at the final lr
            ],
        );
    }

    #[test]
    fn one_cycle_peak_is_the_base_lr_not_a_constant() {
        // Same shape with max 0.01: every value scales by 0.01 (the peak at step 2).
        let s = Scheduler::new(SchedulerKind::OneCycle, params(), 0.01, 5, 2);
        assert_curve(&s, &[(0, 0.0004), (1, 0.0052), (2, 0.01), (9, 4e-8)]);
    }

    /// Feeds `metrics` epoch by epoch and returns the lr in effect after each.
    fn run(s: &mut Scheduler, metrics: &[f64]) -> Vec<f64> {
        metrics
            .iter()
            .map(|&m| {
                s.end_epoch(Some(m));
                s.lr(0)
            })
            .collect()
    }

    #[test]
    fn plateau_reduces_after_patience_bad_epochs_down_to_min_lr() {
        // patience 2, factor 0.5, min_lr 0.2, threshold 1e-4 (relative), mode min.
        let p = ScheduleParams {
            min_lr: 0.2,
            ..params()
        };
        let mut s = Scheduler::new(SchedulerKind::Plateau, p, 1.0, 20, 1);
        let metrics = [
            10.0,   // best 10
            9.0,    // 9 < 10·0.9999: best 9
            8.9995, // not < 9·0.9999 = 8.9991: bad 1
            9.0,    // bad 2
            9.0,    // bad 3 > 2: lr 0.5, bad 0
            8.0,    // best 8
            8.0,    // bad 1
            8.0,    // bad 2
            8.0,    // bad 3: lr 0.25
            8.0, 8.0, 8.0, // bad 3: max(0.125, 0.2) = 0.2
            8.0, 8.0, 8.0, // max(0.1, 0.2) = 0.2: unchanged
        ];
        let lrs = run(&mut s, &metrics);
        let want = [
            1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2,
        ];
        assert_eq!(lrs, want);
        assert_eq!(s.state().epochs_done, 15);
        assert_eq!(s.state().best, Some(8.0));
    }

    #[test]
    fn plateau_in_max_mode_treats_higher_as_better() {
        // patience 1: 0.5 best; 0.6 > 0.5·1.0001 best; 0.6 not > 0.60006: bad 1;
        // 0.55 bad 2 > 1: lr 0.5; 0.7 best; 0.65 bad 1.
        let p = ScheduleParams {
            patience: 1,
            mode_max: true,
            min_lr: 0.0,
            ..params()
        };
        let mut s = Scheduler::new(SchedulerKind::Plateau, p, 1.0, 10, 1);
        let lrs = run(&mut s, &[0.5, 0.6, 0.6, 0.55, 0.7, 0.65]);
        assert_eq!(lrs, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]);
    }

    #[test]
    fn plateau_ignores_epochs_without_a_metric_and_counts_nan_as_bad() {
        let p = ScheduleParams {
            patience: 0,
            ..params()
        };
        let mut s = Scheduler::new(SchedulerKind::Plateau, p, 1.0, 10, 1);
        s.end_epoch(Some(1.0));
        s.end_epoch(None);
        assert_eq!(s.lr(0), 1.0);
        // patience 0: the first bad epoch already halves the lr.
        s.end_epoch(Some(f64::NAN));
        assert_eq!(s.lr(0), 0.5);
    }

    #[test]
    fn other_kinds_ignore_the_metric() {
        let mut s = Scheduler::new(SchedulerKind::Step, params(), 1.0, 10, 1);
        for _ in 0..5 {
            s.end_epoch(Some(1.0));
        }
        // Epoch 1 → still 1.0: the metric did not reduce anything.
        assert_eq!(s.lr(1), 1.0);
    }

    #[test]
    fn plateau_restored_mid_run_continues_identically() {
        let metrics = [5.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0];
        let p = ScheduleParams {
            patience: 1,
            ..params()
        };
        let mut straight = Scheduler::new(SchedulerKind::Plateau, p, 1.0, 10, 1);
        let want = run(&mut straight, &metrics);

        let mut first = Scheduler::new(SchedulerKind::Plateau, p, 1.0, 10, 1);
        let mut got = run(&mut first, &metrics[..4]);
        // Through JSON, as the checkpoint sidecar stores it.
        let json = serde_json::to_string(&first.state()).unwrap();
        let mut resumed = Scheduler::new(SchedulerKind::Plateau, p, 1.0, 10, 1);
        resumed.restore(serde_json::from_str(&json).unwrap());
        got.extend(run(&mut resumed, &metrics[4..]));
        assert_eq!(got, want);
        assert_eq!(resumed.state(), straight.state());
    }

    #[test]
    fn state_before_any_metric_serialises() {
        let s = Scheduler::new(SchedulerKind::Plateau, params(), 1.0, 10, 1);
        let json = serde_json::to_string(&s.state()).unwrap();
        let back: SchedulerState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s.state());
        assert_eq!(back.best, None);
    }
}
