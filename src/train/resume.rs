//! Starting a training, or resuming the one a killed attempt left in the work directory.
//!
//! Everything a resumed run needs is in the `last` checkpoint: weights (batch-norm
//! statistics included), optimiser moments, scheduler state, the epoch, the best value and
//! the history. A `last` that cannot be read (a disk error, a hand edit) would fail every
//! rerun; it is set aside and training starts over, saying so.

use std::path::Path;

use candle_core::Device;
use candle_nn::VarMap;

use crate::model::{GeoNet, Pretrained, build_net};

use super::FitError;
use super::checkpoint::{self, CheckpointMeta, EpochRecord, FORMAT, Loaded, Vars};
use super::data::Inputs;
use super::epoch::steps_per_epoch;
use super::fit::{FitData, FitSettings};
use super::optimizer::Optimizer;
use super::policy::Slot;
use super::progress::{FitEvent, FitObserver};
use super::scheduler::Scheduler;

/// A training between epochs: what the `last` checkpoint holds.
pub struct State {
    /// The network's vars.
    pub varmap: VarMap,
    /// The network.
    pub net: GeoNet,
    /// The optimiser and its moments.
    pub optimizer: Optimizer,
    /// The learning-rate schedule.
    pub scheduler: Scheduler,
    /// Every finished epoch's metrics.
    pub history: Vec<EpochRecord>,
    /// The best monitored value so far and its epoch.
    pub best: Option<(f64, u32)>,
    /// The last finished epoch (0-based) when resumed.
    pub resumed: Option<u32>,
    /// The head's var names.
    pub head_vars: Vec<String>,
}

impl State {
    /// The first epoch (0-based) still to train when training (re)started.
    pub fn next_epoch(&self) -> u32 {
        self.resumed.map_or(0, |e| e + 1)
    }

    /// Epochs finished so far.
    pub fn epochs_done(&self) -> u32 {
        self.history.last().map_or(0, |r| r.epoch + 1)
    }

    /// The vars the work directory's checkpoints hold: the head only where training reads
    /// embeddings, since the frozen backbone is the same at every epoch (a resume rebuilds
    /// it, and `fit` completes the checkpoints it publishes).
    pub fn saved_vars(&self, inputs: &Inputs) -> Vars<'_> {
        match inputs {
            Inputs::Features(_) => Vars::Only(&self.head_vars),
            Inputs::Images { .. } => Vars::All,
        }
    }

    /// What the checkpoints after `epoch` hold besides tensors.
    pub fn meta(&self, settings: &FitSettings, data: &FitData<'_>, epoch: u32) -> CheckpointMeta {
        let steps = steps_per_epoch(data.train.len(), settings.batch_size);
        CheckpointMeta {
            format: FORMAT,
            epoch,
            step: ((epoch + 1) as usize * steps) as u64,
            seed: settings.seed,
            monitor: settings.monitor.clone(),
            monitor_max: settings.monitor_max,
            best: self.best,
            scheduler: self.scheduler.state(),
            history: self.history.clone(),
            model: data.info.clone(),
        }
    }
}

/// A new training as `settings` describe, continued from `work`'s `last` checkpoint when
/// there is a readable one.
///
/// # Errors
/// The network cannot be built, or `last` does not fit it.
pub fn start_or_resume(
    settings: &FitSettings,
    data: &FitData<'_>,
    device: &Device,
    work: &Path,
    observer: &dyn FitObserver,
) -> Result<State, FitError> {
    let spec = data.info.net_spec(settings.kernels);
    let weights = settings.weights.as_deref().map(|path| Pretrained {
        path,
        prefix: settings.weights_prefix.as_deref(),
    });
    let (varmap, net) = build_net(&spec, settings.seed, weights, device)?;
    let (kind, params) = settings.scheduler;
    let steps = steps_per_epoch(data.train.len(), settings.batch_size);
    let mut state = State {
        head_vars: net.head_var_names(),
        varmap,
        net,
        optimizer: Optimizer::new(settings.optimizer),
        scheduler: Scheduler::new(kind, params, settings.lr, settings.epochs, steps),
        history: Vec::new(),
        best: None,
        resumed: None,
    };
    let (last, _) = checkpoint::paths(work, Slot::Last.name());
    let Some(loaded) = read_last(&last, device, observer) else {
        return Ok(state);
    };
    // The frozen backbone a head-only `last` lacks was rebuilt above as it was then.
    checkpoint::restore_some_vars(
        &last,
        (&state.varmap, state.saved_vars(data.inputs)),
        &loaded.model,
    )?;
    state
        .optimizer
        .load_state(&loaded.optim, device)
        .map_err(|source| FitError::Resume {
            path: last.clone(),
            source: Box::new(source),
        })?;
    state.scheduler.restore(loaded.meta.scheduler);
    state.history = loaded.meta.history;
    state.best = loaded.meta.best;
    state.resumed = Some(loaded.meta.epoch);
    observer.event(FitEvent::Resumed {
        checkpoint: last,
        epochs_done: loaded.meta.epoch + 1,
    });
    Ok(state)
}

/// The `last` checkpoint at `path`, if there is one and it reads; one that does not is
/// renamed `*.unreadable`.
fn read_last(path: &Path, device: &Device, observer: &dyn FitObserver) -> Option<Loaded> {
    if !path.is_file() {
        return None;
    }
    match checkpoint::load(path, device) {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            let aside = path.with_extension("safetensors.unreadable");
            let _ = std::fs::rename(path, &aside);
            observer.event(FitEvent::CannotResume {
                error: e.to_string(),
                kept_as: aside,
            });
            None
        }
    }
}
