//! The training loop: epochs of shuffled, augmented batches; validation and test metrics
//! after each; `best` and `last` checkpoints; TensorBoard events flushed at every epoch end.
//!
//! Everything a resumed run needs is in `last`: weights (batch-norm statistics included),
//! optimiser moments, scheduler state, the epoch and the best value; the event file's
//! length after each epoch is kept beside it in the work directory. Shuffles and
//! augmentations derive from (seed, epoch), so resuming after epoch `e` replays exactly
//! what an uninterrupted run does from epoch `e + 1`, and the checkpoints come out
//! byte-identical.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::experiment::{AugmentConfig, Task, Unfreeze};
use crate::geo::{LatLon, Projection};
use crate::graph::{StageContext, StageError};
use crate::images::{ChannelStats, ImageTensor};
use crate::model::{Fusion, GeoNet, Kernels, init_seeded, load_pretrained};
use crate::track::tensorboard::{EventWriter, HParamValue};

use super::augment::is_active;
use super::checkpoint::{self, CheckpointMeta, EpochRecord, FORMAT, ModelInfo};
use super::data::{BatchAugment, Sample, batch_classes, batch_images, batch_targets, epoch_order};
use super::evaluate::{Predictor, scalar};
use super::loss::{cross_entropy, haversine_targets, mse, soft_cross_entropy};
use super::optimizer::{Optimizer, OptimizerSettings};
use super::scheduler::{ScheduleParams, Scheduler};

/// Name of the `best` checkpoint.
pub const BEST: &str = "best";
/// Name of the `last` checkpoint.
pub const LAST: &str = "last";
/// Per-epoch metrics table.
pub const METRICS_FILE: &str = "metrics.csv";

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
    pub scheduler: (crate::experiment::SchedulerKind, ScheduleParams),
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
    /// Hyperparameters for TensorBoard's HParams tab.
    pub hparams: BTreeMap<String, HParamValue>,
}

/// What training reads.
pub struct FitData<'a> {
    /// Every view, decoded.
    pub images: &'a ImageTensor,
    /// Train-split normalisation.
    pub stats: ChannelStats,
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

/// Builds the network on `device` with the fast kernels and initialises it from the seed (and
/// the pretrained weights, if any).
///
/// # Errors
/// Unknown backbone, or unloadable weights.
pub fn build_net(
    info: &ModelInfo,
    fusion: Fusion,
    seed: u64,
    weights: Option<&Path>,
    device: &Device,
) -> Result<(VarMap, GeoNet), StageError> {
    build_net_with(info, fusion, Kernels::Fast, seed, weights, device)
}

/// [`build_net`] on a choice of kernels.
///
/// # Errors
/// Unknown backbone, or unloadable weights.
pub fn build_net_with(
    info: &ModelInfo,
    fusion: Fusion,
    kernels: Kernels,
    seed: u64,
    weights: Option<&Path>,
    device: &Device,
) -> Result<(VarMap, GeoNet), StageError> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let net = GeoNet::with_kernels(&info.backbone, fusion, info.outputs, kernels, vb)?;
    init_seeded(&varmap, seed)?;
    if let Some(w) = weights {
        load_pretrained(&varmap, w, "backbone.")?;
    }
    Ok((varmap, net))
}

/// Trains into `ctx.work_dir()` (resuming whatever a killed attempt left there), then
/// moves the checkpoints, metrics and events into `ctx.out_dir()`.
///
/// # Errors
/// Tensor, checkpoint and event-file failures.
pub fn fit(
    settings: &FitSettings,
    data: &FitData<'_>,
    device: &Device,
    ctx: &StageContext<'_>,
) -> Result<FitSummary, StageError> {
    super::memory::keep_freed_memory();
    let work = ctx.work_dir()?;
    let (varmap, net) = build_net_with(
        &data.info,
        settings.fusion,
        settings.kernels,
        settings.seed,
        settings.weights.as_deref(),
        device,
    )?;
    let steps_per_epoch = data.train.len().div_ceil(settings.batch_size).max(1);
    let (kind, params) = settings.scheduler;
    let mut scheduler = Scheduler::new(kind, params, settings.lr, settings.epochs, steps_per_epoch);
    let mut optimizer = Optimizer::new(settings.optimizer);
    let mut history: Vec<EpochRecord> = Vec::new();
    let mut best: Option<(f64, u32)> = None;
    let (last_path, _) = checkpoint::paths(&work, LAST);
    let events_path = work.join(LIVE_EVENTS_FILE);
    let lengths_path = work.join(EVENT_LENGTHS_FILE);
    let mut event_lengths = read_event_lengths(&lengths_path);
    // A `last` that cannot be read (a disk error, a hand edit) would fail every rerun;
    // it is set aside and training starts over, saying so.
    if last_path.is_file()
        && let Err(e) = checkpoint::load(&last_path, device)
    {
        let aside = last_path.with_extension("safetensors.unreadable");
        let _ = std::fs::rename(&last_path, &aside);
        ctx.say(&format!(
            "cannot resume: {e}; it is kept as {} and training starts over",
            aside.display()
        ));
    }
    let resumed = if last_path.is_file() {
        let loaded = checkpoint::load(&last_path, device)?;
        checkpoint::restore_vars(&last_path, &varmap, &loaded.model)?;
        optimizer.load_state(&loaded.optim, device)?;
        scheduler.restore(loaded.meta.scheduler.clone());
        history = loaded.meta.history.clone();
        best = loaded.meta.best;
        ctx.say(&format!(
            "resuming from {} after epoch {}",
            last_path.display(),
            loaded.meta.epoch + 1
        ));
        Some(loaded.meta.epoch)
    } else {
        None
    };
    // The event file resumes where `last` left it. Should that be impossible (its length
    // unknown, the file shorter or damaged), it starts over, as a fresh run's does: events
    // are a view of the training, not part of what it computes.
    let kept = resumed.and_then(|e| event_lengths.get(&e).copied());
    let resumed_events = match kept {
        Some(len) if events_path.is_file() => match EventWriter::resume(&events_path, len) {
            Ok(events) => Some(events),
            Err(e) => {
                ctx.say(&format!("starting a new event file: {e}"));
                None
            }
        },
        _ => None,
    };
    let mut events = match resumed_events {
        Some(events) => events,
        None => {
            let _ = std::fs::remove_file(&events_path);
            event_lengths.clear();
            write_event_lengths(&lengths_path, &event_lengths)?;
            let mut events = EventWriter::create_at(&events_path)?;
            // The evaluate stage logs the best checkpoint's test metrics under these tags.
            let metric_tags: Vec<String> = [
                "evaluate/haversine_km_mean",
                "evaluate/haversine_km_median",
                "evaluate/geoguessr_score",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(std::iter::once(settings.monitor.clone()))
            .collect();
            events.hparams_start(&settings.hparams, &metric_tags);
            if let Some((png, w, h)) = &data.class_map {
                events.image("maps/classes", 0, png, *w, *h);
            }
            events
        }
    };
    let start_epoch = resumed.map_or(0, |e| e + 1);
    let blocks = net.backbone_blocks();
    let classification = settings.task == Task::Classification;
    let centroids: Vec<LatLon> = data
        .info
        .centroids
        .iter()
        .map(|c| LatLon {
            lat: c[0],
            lon: c[1],
        })
        .collect();
    let augmenting = is_active(&settings.augment);
    let predictor = Predictor {
        net: &net,
        info: &data.info,
        projection: data.projection,
        device,
        batch_size: settings.batch_size,
    };
    let all_vars = named_vars(&varmap)?;
    let mut epochs_run = 0;
    for epoch in start_epoch..settings.epochs {
        let trainable = if epoch < settings.unfreeze_epoch {
            0
        } else {
            match settings.unfreeze {
                Unfreeze::All => blocks,
                Unfreeze::Last(n) => n.min(blocks),
            }
        };
        let (head_vars, backbone_vars) = step_vars(&all_vars, &net, trainable);
        let order = epoch_order(data.train.len(), settings.seed, epoch);
        let tick = ctx.progress(
            &format!("epoch {}/{}", epoch + 1, settings.epochs),
            steps_per_epoch as u64,
        );
        let clock = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = settings.lr;
        for (i, chunk) in order.chunks(settings.batch_size).enumerate() {
            let step = epoch as usize * steps_per_epoch + i;
            lr = scheduler.lr(step);
            let batch: Vec<&Sample> = chunk.iter().map(|&j| &data.train[j]).collect();
            let augment = augmenting.then_some(BatchAugment {
                config: &settings.augment,
                seed: settings.seed,
                epoch,
            });
            let x = batch_images(data.images, &batch, &data.stats, augment, device)?;
            let y = net.forward(&x, trainable)?;
            let loss = if classification {
                let targets = batch_classes(&batch, device)?;
                let predicted = y.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
                correct += predicted
                    .iter()
                    .zip(&batch)
                    .filter(|(p, s)| **p as usize == s.class)
                    .count();
                if settings.haversine_tau_km > 0.0 {
                    let truth: Vec<LatLon> = batch
                        .iter()
                        .map(|s| LatLon {
                            lat: s.lat,
                            lon: s.lon,
                        })
                        .collect();
                    let classes: Vec<usize> = batch.iter().map(|s| s.class).collect();
                    let soft =
                        haversine_targets(&centroids, &truth, &classes, settings.haversine_tau_km);
                    let soft = Tensor::from_vec(soft, (batch.len(), centroids.len()), device)?;
                    soft_cross_entropy(&y, &soft)?
                } else {
                    cross_entropy(&y, &targets, settings.label_smoothing)?
                }
            } else {
                mse(&y, &batch_targets(&batch, device)?)?
            };
            let loss_value = scalar(&loss)?;
            if !loss_value.is_finite() {
                return Err(diverged(
                    settings,
                    epoch,
                    &format!(
                        "the loss is {loss_value} at step {} of {steps_per_epoch} (learning rate \
                         {lr:.3e} then)",
                        i + 1
                    ),
                ));
            }
            update(
                &loss,
                &mut optimizer,
                (&head_vars, lr),
                (&backbone_vars, lr * settings.backbone_lr / settings.lr),
            )?;
            let loss = loss_value;
            loss_sum += loss * batch.len() as f64;
            seen += batch.len();
            events.scalar("lr", step as i64, lr);
            events.scalar("train/batch_loss", step as i64, loss);
            tick.inc(1);
            tick.message(&format!(
                "loss {:.4}  {:.1} loc/s",
                loss_sum / seen as f64,
                seen as f64 / clock.elapsed().as_secs_f64()
            ));
        }
        tick.finish();
        // A non-finite gradient in the epoch's last step leaves a finite loss but broken
        // weights: never checkpoint those.
        if let Some(name) = first_non_finite(&all_vars)? {
            return Err(diverged(
                settings,
                epoch,
                &format!("`{name}` holds NaN or infinite values after the epoch's last step"),
            ));
        }
        let mut metrics = BTreeMap::new();
        metrics.insert("train/loss".to_owned(), loss_sum / seen.max(1) as f64);
        if classification {
            metrics.insert("train/acc".to_owned(), correct as f64 / seen.max(1) as f64);
        }
        for (split, samples) in [("val", &data.val), ("test", &data.test)] {
            if samples.is_empty() {
                continue;
            }
            let (_, m) = predictor.run(data.images, &data.stats, samples, data.country_km)?;
            for (k, v) in m {
                metrics.insert(format!("{split}/{k}"), v);
            }
        }
        let monitored = metrics.get(&settings.monitor).copied().ok_or_else(|| {
            format!(
                "train.monitor {:?} is not a metric of this run (it has: {})",
                settings.monitor,
                metrics.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        scheduler.end_epoch(Some(monitored));
        for (k, v) in &metrics {
            events.scalar(k, i64::from(epoch), *v);
        }
        // The length goes to disk before the checkpoint, so whichever `last` a kill leaves,
        // the ledger knows where its events end.
        event_lengths.insert(epoch, events.flush()?);
        write_event_lengths(&lengths_path, &event_lengths)?;
        let record = EpochRecord { epoch, lr, metrics };
        history.push(record.clone());
        let improved = match best {
            None => true,
            Some((b, _)) if settings.monitor_max => monitored > b,
            Some((b, _)) => monitored < b,
        };
        if improved {
            best = Some((monitored, epoch));
        }
        let meta = CheckpointMeta {
            format: FORMAT,
            epoch,
            step: ((epoch + 1) as usize * steps_per_epoch) as u64,
            seed: settings.seed,
            monitor: settings.monitor.clone(),
            monitor_max: settings.monitor_max,
            best,
            scheduler: scheduler.state(),
            history: history.clone(),
            model: data.info.clone(),
        };
        let optim_state = optimizer.state_tensors()?;
        if improved {
            checkpoint::save(&work, BEST, &varmap, optim_state.clone(), &meta)?;
        }
        checkpoint::save(&work, LAST, &varmap, optim_state, &meta)?;
        write_metrics(&work.join(METRICS_FILE), &history)?;
        ctx.say(&epoch_line(
            &record,
            settings,
            clock.elapsed().as_secs_f64(),
            improved,
        ));
        epochs_run += 1;
    }
    drop(events);
    // From the restored history, so a kill between the last checkpoint and its table
    // loses no row.
    write_metrics(&work.join(METRICS_FILE), &history)?;
    // Linked, not moved: the work directory stays whole until the entry is committed (the
    // engine removes it then), so a kill here resumes as after any other epoch.
    let out = ctx.out_dir();
    for name in [BEST, LAST] {
        let (t, s) = checkpoint::paths(&work, name);
        let (t2, s2) = checkpoint::paths(out, name);
        link_file(&t, &t2)?;
        link_file(&s, &s2)?;
    }
    link_file(&work.join(METRICS_FILE), &out.join(METRICS_FILE))?;
    link_file(&events_path, &out.join(EVENTS_FILE))?;
    let last = history
        .last()
        .cloned()
        .ok_or("training ran no epoch (train.epochs is 0?)")?;
    Ok(FitSummary {
        best: best.ok_or("no epoch produced a monitored value")?,
        last,
        epochs_run,
    })
}

/// Why training stopped early: it diverged in `epoch` (0-based), with what kept.
fn diverged(settings: &FitSettings, epoch: u32, what: &str) -> StageError {
    let kept = match epoch {
        0 => "Nothing was kept (it diverged in the first epoch).".to_owned(),
        1 => "Epoch 1 is kept in the `last` checkpoint, and running this experiment again \
              resumes from there."
            .to_owned(),
        n => format!(
            "Epochs 1 to {n} are kept in the `last` checkpoint, and running this experiment \
             again resumes from there."
        ),
    };
    format!(
        "training diverged in epoch {} of {}: {what}. A learning rate too high for this model \
         and batch size is the usual cause (train.lr = {}{}): lower it, or warm up with \
         train.scheduler. {kept}",
        epoch + 1,
        settings.epochs,
        settings.lr,
        if settings.backbone_lr == settings.lr {
            String::new()
        } else {
            format!(", train.backbone_lr = {}", settings.backbone_lr)
        }
    )
    .into()
}

/// The first variable (by name) holding a NaN or an infinity.
///
/// # Errors
/// A tensor operation failed.
fn first_non_finite(vars: &[(String, Var)]) -> candle_core::Result<Option<String>> {
    for (name, var) in vars {
        let t = var.as_tensor();
        // x - x is 0 for every finite x and NaN otherwise; the sum cannot overflow.
        let zero = t
            .sub(t)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        if zero != 0.0 {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// The train stage's event file inside its cache entry (and its work directory).
/// Deliberately not named `*tfevents*`: TensorBoard would list every cache entry as a run;
/// the run folders get hard links under a `events.out.tfevents.*` name instead.
pub const EVENTS_FILE: &str = "train.events";

/// The event file while training runs, in the work directory: a fixed `*tfevents*` name,
/// so `tensorboard --logdir runs` shows a training live, and nothing in a checkpoint
/// depends on the time or host it started on.
const LIVE_EVENTS_FILE: &str = "events.out.tfevents.live";

/// The event file's length after each finished epoch, in the work directory: what a resume
/// truncates the event file to. Kept out of the checkpoints, whose bytes must follow from
/// the stage's key alone (an event file's length depends on its wall times).
const EVENT_LENGTHS_FILE: &str = "events.lengths";

/// The ledger of [`EVENT_LENGTHS_FILE`]: `epoch \t length` lines. Unreadable lines are
/// skipped (the resume then starts a new event file).
fn read_event_lengths(path: &Path) -> BTreeMap<u32, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (epoch, len) = line.split_once('\t')?;
            Some((epoch.parse().ok()?, len.parse().ok()?))
        })
        .collect()
}

fn write_event_lengths(path: &Path, lengths: &BTreeMap<u32, u64>) -> Result<(), StageError> {
    let text: String = lengths
        .iter()
        .map(|(epoch, len)| format!("{epoch}\t{len}\n"))
        .collect();
    crate::graph::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Vars with their names, as the optimiser takes them.
pub type NamedVars = Vec<(String, Var)>;

/// The vars a step with `trainable` backbone blocks updates, as (head, backbone), out of
/// [`named_vars`].
pub fn step_vars(
    all_vars: &[(String, Var)],
    net: &GeoNet,
    trainable: usize,
) -> (NamedVars, NamedVars) {
    let backbone_names: std::collections::BTreeSet<String> =
        net.trainable_var_names(trainable).into_iter().collect();
    all_vars
        .iter()
        .filter(|(n, _)| n.starts_with("head.") || backbone_names.contains(n))
        .cloned()
        .partition(|(n, _)| n.starts_with("head."))
}

/// The part of a training step after the loss: backward, then one update of the head's and
/// one of the backbone's vars, each with its learning rate. `benches/step.rs` times this
/// same function.
///
/// # Errors
/// A tensor operation failed.
pub fn update(
    loss: &Tensor,
    optimizer: &mut Optimizer,
    (head, head_lr): (&[(String, Var)], f64),
    (backbone, backbone_lr): (&[(String, Var)], f64),
) -> candle_core::Result<()> {
    let grads = loss.backward()?;
    optimizer.step(&grads, head, head_lr)?;
    if !backbone.is_empty() {
        optimizer.step(&grads, backbone, backbone_lr)?;
    }
    Ok(())
}

/// Every var of `varmap` with its name, in name order.
///
/// # Errors
/// The var map's lock is poisoned.
pub fn named_vars(varmap: &VarMap) -> Result<NamedVars, StageError> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| "variable map lock poisoned")?;
    let mut named: Vec<(String, Var)> = vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}

fn epoch_line(record: &EpochRecord, settings: &FitSettings, seconds: f64, best: bool) -> String {
    let m = &record.metrics;
    let get = |k: &str| m.get(k).map_or("-".to_owned(), |v| format!("{v:.4}"));
    let km = |k: &str| m.get(k).map_or("-".to_owned(), |v| format!("{v:.1} km"));
    format!(
        "epoch {:>3}/{}  train loss {}  acc {}  val loss {}  val mean {}  median {}  lr {:.2e}  {:.1}s{}",
        record.epoch + 1,
        settings.epochs,
        get("train/loss"),
        get("train/acc"),
        get("val/loss"),
        km("val/haversine_km_mean"),
        km("val/haversine_km_median"),
        record.lr,
        seconds,
        if best { "  *best" } else { "" }
    )
}

fn write_metrics(path: &Path, history: &[EpochRecord]) -> Result<(), StageError> {
    let mut columns: Vec<&String> = history.iter().flat_map(|r| r.metrics.keys()).collect();
    columns.sort();
    columns.dedup();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["epoch".to_owned(), "lr".to_owned()];
    header.extend(columns.iter().map(|c| (*c).clone()));
    w.write_record(&header)?;
    for r in history {
        let mut row = vec![r.epoch.to_string(), r.lr.to_string()];
        row.extend(
            columns
                .iter()
                .map(|c| r.metrics.get(*c).map_or(String::new(), ToString::to_string)),
        );
        w.write_record(&row)?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    crate::graph::write_atomic(path, &bytes)?;
    Ok(())
}

/// Hard-links `from` at `to`, or copies it where links are impossible.
fn link_file(from: &Path, to: &Path) -> Result<(), StageError> {
    std::fs::hard_link(from, to)
        .or_else(|_| std::fs::copy(from, to).map(|_| ()))
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()).into())
}
