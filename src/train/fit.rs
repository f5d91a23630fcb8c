//! The training loop, composed: start or resume, then per epoch train, validate, let the
//! checkpoint policy decide and write what it decided; then publish the files into the
//! stage's output directory.
//!
//! The loop takes plain inputs (settings, the image tensor and samples, two directories)
//! and a [`FitObserver`]; it knows nothing of the run graph. Resuming after epoch `e`
//! replays exactly what an uninterrupted run does from epoch `e + 1`, and the checkpoints
//! come out byte-identical (see [`super::resume`] and [`super::event_log`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;

use crate::experiment::{AugmentConfig, SchedulerKind, Unfreeze};
use crate::geo::Projection;
use crate::track::tensorboard::HParamValue;
use crate::vocab::{Fusion, Kernels, Task};

use super::FitError;
use super::checkpoint::{self, EpochRecord, ModelInfo};
use super::data::{Inputs, Sample};
use super::epoch::Epochs;
use super::event_log::{EVENTS_FILE, EventLog, Header};
use super::history::{METRICS_FILE, write_metrics};
use super::optimizer::OptimizerSettings;
use super::policy::{CheckpointPolicy, Slot};
use super::progress::{FitEvent, FitObserver};
use super::resume::{State, start_or_resume};
use super::scheduler::ScheduleParams;

/// How to train.
#[derive(Clone, Debug)]
pub struct FitSettings {
    /// Experiment seed.
    pub seed: u64,
    /// Epochs.
    pub epochs: u32,
    /// Locations per batch.
    pub batch_size: usize,
    /// Classification or regression.
    pub task: Task,
    /// View fusion.
    pub fusion: Fusion,
    /// CPU kernels of the training step.
    pub kernels: Kernels,
    /// Head learning rate (the schedule's base).
    pub lr: f64,
    /// Backbone learning rate once unfrozen (scaled by the schedule like `lr`).
    pub backbone_lr: f64,
    /// First epoch the backbone trains.
    pub unfreeze_epoch: u32,
    /// What of the backbone trains then.
    pub unfreeze: Unfreeze,
    /// Optimiser.
    pub optimizer: OptimizerSettings,
    /// Schedule kind and its parameters.
    pub scheduler: (SchedulerKind, ScheduleParams),
    /// `val/<metric>` or `train/<metric>`.
    pub monitor: String,
    /// Whether the monitor improves upwards.
    pub monitor_max: bool,
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// Haversine smoothing τ in km (0: off).
    pub haversine_tau_km: f64,
    /// Training augmentations.
    pub augment: AugmentConfig,
    /// Pretrained backbone weights.
    pub weights: Option<PathBuf>,
    /// The prefix of the backbone's tensors in `weights` (`None`: inferred).
    pub weights_prefix: Option<String>,
    /// Pause after this epoch (1-based) instead of training all `epochs`: the work
    /// directory keeps everything, and the next call continues from there.
    pub stop_after: Option<u32>,
    /// Hyperparameters for TensorBoard's HParams tab.
    pub hparams: BTreeMap<String, HParamValue>,
}

/// What training reads.
pub struct FitData<'a> {
    /// Every location's views, or their embeddings.
    pub inputs: &'a Inputs,
    /// Training samples.
    pub train: Vec<Sample>,
    /// Validation samples.
    pub val: Vec<Sample>,
    /// Test samples (metrics logged per epoch; never used for selection).
    pub test: Vec<Sample>,
    /// How outputs become coordinates; stored in every checkpoint.
    pub info: ModelInfo,
    /// Projection of the centroids and targets.
    pub projection: &'a dyn Projection,
    /// The country score's scale `S` in km.
    pub country_km: f64,
    /// The class map PNG for TensorBoard.
    pub class_map: Option<(Vec<u8>, u32, u32)>,
}

/// What training produced (files are in the output directory).
#[derive(Clone, Debug)]
pub struct FitSummary {
    /// Best monitored value and its epoch.
    pub best: (f64, u32),
    /// Metrics of the last epoch.
    pub last: EpochRecord,
    /// Epochs this call trained (less than all after a resume).
    pub epochs_run: u32,
}

/// Where training works and where its results go.
#[derive(Clone, Copy, Debug)]
pub struct FitDirs<'a> {
    /// Survives a kill: checkpoints, the live event file and its ledger are written here,
    /// and a rerun resumes from them.
    pub work: &'a Path,
    /// Receives links to the final files once training is done.
    pub out: &'a Path,
}

/// Trains in `dirs.work` (resuming whatever a killed attempt left there), then links the
/// checkpoints, metrics and events into `dirs.out`.
///
/// # Errors
/// See [`FitError`].
pub fn fit(
    settings: &FitSettings,
    data: &FitData<'_>,
    device: &Device,
    dirs: FitDirs<'_>,
    observer: &dyn FitObserver,
) -> Result<FitSummary, FitError> {
    super::memory::keep_freed_memory();
    let mut state = start_or_resume(settings, data, device, dirs.work, observer)?;
    let header = Header {
        hparams: &settings.hparams,
        monitor: &settings.monitor,
        class_map: data.class_map.as_ref(),
    };
    let mut events = EventLog::open(dirs.work, state.resumed, &header, observer)?;
    let epochs = Epochs::new(settings, data, device, &state)?;
    let policy = CheckpointPolicy {
        monitor_max: settings.monitor_max,
    };
    let mut epochs_run = 0;
    let end = settings
        .stop_after
        .map_or(settings.epochs, |n| n.min(settings.epochs));
    for epoch in state.next_epoch()..end {
        let clock = Instant::now();
        let trained = epochs.train(epoch, &mut state, &mut events, observer)?;
        let metrics = epochs.validate(&state.net, epoch, trained.metrics)?;
        let monitored = monitored(settings, &metrics)?;
        state.scheduler.end_epoch(Some(monitored));
        events.end_epoch(epoch, &metrics)?;
        let record = EpochRecord {
            epoch,
            lr: trained.lr,
            metrics,
        };
        state.history.push(record.clone());
        let decision = policy.after_epoch(state.best, monitored, epoch);
        state.best = Some(decision.best);
        let meta = state.meta(settings, data, epoch);
        checkpoint::write(
            dirs.work,
            &decision.write,
            (&state.varmap, state.saved_vars(data.inputs)),
            &state.optimizer,
            &meta,
        )?;
        write_metrics(&dirs.work.join(METRICS_FILE), &state.history)?;
        observer.event(FitEvent::EpochFinished {
            record,
            epochs: settings.epochs,
            seconds: clock.elapsed().as_secs_f64(),
            best: decision.improved,
        });
        epochs_run += 1;
    }
    if end < settings.epochs {
        events.close();
        return Err(FitError::Paused {
            done: state.epochs_done(),
            epochs: settings.epochs,
        });
    }
    publish(state, events, dirs, epochs_run)
}

/// The value of `train.monitor` among an epoch's metrics.
fn monitored(settings: &FitSettings, metrics: &BTreeMap<String, f64>) -> Result<f64, FitError> {
    metrics
        .get(&settings.monitor)
        .copied()
        .ok_or_else(|| FitError::UnknownMonitor {
            monitor: settings.monitor.clone(),
            available: metrics.keys().cloned().collect(),
        })
}

/// Links the final checkpoints, metrics and events into `dirs.out`. Linked, not moved: the
/// work directory stays whole until the entry is committed (the engine removes it then),
/// so a kill here resumes as after any other epoch.
fn publish(
    state: State,
    events: EventLog,
    dirs: FitDirs<'_>,
    epochs_run: u32,
) -> Result<FitSummary, FitError> {
    let events_path = events.close();
    // From the restored history, so a kill between the last checkpoint and its table
    // loses no row.
    write_metrics(&dirs.work.join(METRICS_FILE), &state.history)?;
    for slot in [Slot::Best, Slot::Last] {
        let (tensors, sidecar) = checkpoint::paths(dirs.work, slot.name());
        // Work checkpoints may hold the head only (`State::saved_vars`); published ones
        // stand alone.
        checkpoint::complete(&tensors, &state.varmap)?;
        let (tensors_out, sidecar_out) = checkpoint::paths(dirs.out, slot.name());
        link_file(&tensors, &tensors_out)?;
        link_file(&sidecar, &sidecar_out)?;
    }
    link_file(&dirs.work.join(METRICS_FILE), &dirs.out.join(METRICS_FILE))?;
    link_file(&events_path, &dirs.out.join(EVENTS_FILE))?;
    let (Some(last), Some(best)) = (state.history.last().cloned(), state.best) else {
        return Err(FitError::NoEpoch);
    };
    Ok(FitSummary {
        best,
        last,
        epochs_run,
    })
}

/// Hard-links `from` at `to`, or copies it where links are impossible.
fn link_file(from: &Path, to: &Path) -> Result<(), FitError> {
    std::fs::hard_link(from, to)
        .or_else(|_| std::fs::copy(from, to).map(|_| ()))
        .map_err(FitError::file("linking into the output directory", from))
}
