//! Semantic checks of a merged experiment, run before any stage: ranges, consistency
//! between keys, and paths that must exist. Each error names the key and where it was set.

use std::collections::BTreeSet;

use super::error::ConfigError;
use super::load::Loaded;
use super::schema::{CellKind, Unfreeze};
use crate::vocab::{
    BACKBONES, CLASSIFICATION_METRICS, Head, Pooling, SPLIT_METRICS, TRAIN_METRICS, Task,
    architecture, backbone_families, backbone_names,
};

const SPLIT_TOLERANCE: f64 = 1e-9;

/// Every semantic problem of `loaded`.
pub fn validate(loaded: &Loaded) -> Vec<ConfigError> {
    let mut v = Checker {
        loaded,
        errors: Vec::new(),
    };
    v.name();
    v.dataset();
    v.classes();
    v.model();
    v.train();
    v.errors
}

struct Checker<'a> {
    loaded: &'a Loaded,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn fail(&mut self, key: &str, message: impl Into<String>) {
        // A default that does not do (no dataset in an empty file, a name taken from a
        // file name) is the experiment file's problem: name it, not "default".
        let origin = match self.loaded.origin(key) {
            super::error::Origin::Default => super::error::Origin::File {
                path: self.loaded.file.clone(),
                position: None,
            },
            origin => origin,
        };
        self.errors.push(ConfigError::invalid(origin, key, message));
    }

    fn check(&mut self, ok: bool, key: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.fail(key, message());
        }
    }

    fn name(&mut self) {
        let name = &self.loaded.experiment.name;
        let ok = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        self.check(ok, "name", || {
            format!("{name:?} is not usable as a folder name; use letters, digits, `-`, `_` and `.` (not first)")
        });
        // `runs/sweeps/` holds sweep records: runs there would be invisible to `ls` and `gc`.
        self.check(name != "sweeps", "name", || {
            "\"sweeps\" is reserved: the runs directory keeps sweep records under sweeps/".into()
        });
    }

    fn dataset(&mut self) {
        let d = &self.loaded.experiment.dataset;
        match (d.dirs.is_empty(), &d.synthetic) {
            (true, None) => self.fail(
                "dataset.dirs",
                "no data: set `dataset.dirs` (real layout) or `dataset.synthetic` (generated)",
            ),
            (false, Some(_)) => self.fail(
                "dataset.synthetic",
                format!(
                    "both `dataset.synthetic` and `dataset.dirs` (set at {}) are set; keep one",
                    self.loaded.origin("dataset.dirs")
                ),
            ),
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for dir in &d.dirs {
            let path = self.loaded.resolve_path("dataset.dirs", dir);
            if !path.is_dir() {
                self.fail(
                    "dataset.dirs",
                    format!("dataset directory {} does not exist", path.display()),
                );
            } else if !seen.insert(path.canonicalize().unwrap_or(path.clone())) {
                self.fail(
                    "dataset.dirs",
                    format!("dataset directory {} is listed twice", path.display()),
                );
            }
        }
        if let Some(s) = &d.synthetic {
            self.check(
                (1..=10_000_000).contains(&s.locations),
                "dataset.synthetic.locations",
                || format!("must be between 1 and 10000000, got {}", s.locations),
            );
            self.check(
                (8..=4096).contains(&s.image_size),
                "dataset.synthetic.image_size",
                || format!("must be between 8 and 4096 pixels, got {}", s.image_size),
            );
        }
        let split = [
            ("dataset.split.train", d.split.train),
            ("dataset.split.val", d.split.val),
            ("dataset.split.test", d.split.test),
        ];
        let mut split_ok = true;
        for (key, f) in split {
            if !f.is_finite() || f < 0.0 {
                self.fail(key, format!("must be a fraction ≥ 0, got {f}"));
                split_ok = false;
            }
        }
        let sum: f64 = split.iter().map(|s| s.1).sum();
        if split_ok && (sum - 1.0).abs() > SPLIT_TOLERANCE {
            self.fail(
                "dataset.split",
                format!(
                    "train + val + test must sum to 1, got {} + {} + {} = {sum}",
                    d.split.train, d.split.val, d.split.test
                ),
            );
        }
        if split_ok && d.split.train <= 0.0 {
            self.fail(
                "dataset.split.train",
                "must be > 0: classes come from training locations",
            );
        }
        if split_ok && d.split.val <= 0.0 {
            self.fail(
                "dataset.split.val",
                "must be > 0: the best epoch is chosen on the val split",
            );
        }
        if split_ok && d.split.test <= 0.0 {
            self.fail(
                "dataset.split.test",
                "must be > 0: the evaluate stage scores the test split",
            );
        }
        if let Some(mp) = d.max_image_megapixels {
            self.check(mp >= 1, "dataset.max_image_megapixels", || {
                format!("must be at least 1, got {mp}")
            });
        }
        let fraction_ok = d.fraction.is_finite() && d.fraction > 0.0 && d.fraction <= 1.0;
        self.check(fraction_ok, "dataset.fraction", || {
            format!("must be in (0, 1], got {:?}", d.fraction)
        });
    }

    fn classes(&mut self) {
        let c = &self.loaded.experiment.classes;
        self.check(
            c.spacing.is_finite() && c.spacing > 0.0,
            "classes.spacing",
            || format!("must be > 0 degrees, got {:?}", c.spacing),
        );
        self.check(c.spacing <= 90.0, "classes.spacing", || {
            format!("must be at most 90 degrees, got {:?}", c.spacing)
        });
        self.cells();
        let b = c.boundary.trim();
        let iso = b.len() == 2 && b.chars().all(|ch| ch.is_ascii_alphabetic());
        if !iso {
            let path = self.loaded.resolve_path("classes.boundary", b);
            self.check(path.is_file(), "classes.boundary", || {
                format!(
                    "{b:?} is neither a two-letter ISO country code nor an existing GeoJSON file ({})",
                    path.display()
                )
            });
        }
        let crs = c.crs.trim();
        let crs_ok = crs.starts_with("+proj")
            || crs
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("EPSG:"))
                && crs[5..].parse::<u16>().is_ok();
        self.check(crs_ok, "classes.crs", || {
            format!("{crs:?} is not `EPSG:<code>` or a `+proj=...` string")
        });
    }

    /// The keys of one cell kind are errors under another, and each is checked in range.
    fn cells(&mut self) {
        let c = &self.loaded.experiment.classes;
        let kind = c.kind;
        let used_by = |key: &str| match key {
            "classes.max_locations" | "classes.min_spacing" => &[CellKind::Quadtree][..],
            "classes.min_locations" => &[CellKind::Quadtree, CellKind::Clusters][..],
            _ => &[CellKind::Clusters][..],
        };
        let set = [
            ("classes.max_locations", c.max_locations.is_some()),
            ("classes.min_spacing", c.min_spacing.is_some()),
            ("classes.min_locations", c.min_locations.is_some()),
            ("classes.cells", c.cells.is_some()),
        ];
        let mut misplaced = false;
        for (key, is_set) in set {
            let kinds = used_by(key);
            if is_set && !kinds.contains(&kind) {
                misplaced = true;
                let names: Vec<String> = kinds
                    .iter()
                    .map(|k| format!("`classes.kind = \"{}\"`", k.as_str()))
                    .collect();
                self.fail(
                    key,
                    format!(
                        "is only used with {}, and classes.kind is \"{}\"; remove it or set classes.kind",
                        names.join(" or "),
                        kind.as_str()
                    ),
                );
            }
        }
        if misplaced {
            return;
        }
        if let Some(m) = c.min_locations {
            self.check(m >= 1, "classes.min_locations", || {
                "must be at least 1: a class needs a train location".into()
            });
        }
        match kind {
            CellKind::Grid => {}
            CellKind::Quadtree => {
                let max = c.max_locations_or_default();
                let min = c.min_locations_or_default();
                self.check(max >= 1, "classes.max_locations", || {
                    "must be at least 1".into()
                });
                self.check(max < 1 || max >= min, "classes.max_locations", || {
                    format!(
                        "is {max}, less than classes.min_locations = {min}: every square small enough to keep would be too small to be a class"
                    )
                });
                let s = c.min_spacing_or_default();
                self.check(s.is_finite() && s > 0.0, "classes.min_spacing", || {
                    format!("must be > 0 degrees, got {s:?}")
                });
                if c.spacing.is_finite() && c.spacing > 0.0 {
                    self.check(s <= c.spacing, "classes.min_spacing", || {
                        format!(
                            "is {s}°, larger than classes.spacing = {}°, the side of the squares it splits",
                            c.spacing
                        )
                    });
                }
            }
            CellKind::Clusters => {
                let n = c.cells_or_default();
                self.check(n >= 2, "classes.cells", || {
                    format!("must be at least 2 (a classifier needs 2 classes), got {n}")
                });
            }
        }
    }

    fn model(&mut self) {
        let m = &self.loaded.experiment.model;
        if let Some((name, rule, value)) = m.refine.and_then(|r| r.broken_rule()) {
            self.fail(
                "model.refine",
                format!("`{name}` must be {rule}, got {value}"),
            );
        }
        if m.task == Task::Regression {
            for (key, set) in [
                ("model.centroid", m.centroid.is_some()),
                ("model.top_k", m.top_k > 0),
                ("model.refine", m.refine.is_some()),
            ] {
                self.check(!set, key, || {
                    "applies to classification only, but model.task is \"regression\"".into()
                });
            }
        }
        let arch = architecture(&m.backbone);
        if arch.is_none() {
            let close = super::keys::closest(&m.backbone, backbone_names(), |b| b);
            let hint = close.map_or(String::new(), |b| format!("did you mean `{b}`? "));
            let families: Vec<String> = backbone_families()
                .into_iter()
                .map(|f| {
                    let names: Vec<&str> = BACKBONES
                        .iter()
                        .filter(|(_, a)| a.family() == f)
                        .map(|(n, _)| *n)
                        .collect();
                    format!("{f}: {}", names.join(", "))
                })
                .collect();
            self.fail(
                "model.backbone",
                format!(
                    "unknown backbone {:?}; {hint}known: {}",
                    m.backbone,
                    families.join("; ")
                ),
            );
        }
        if let (Some(a), Some(p)) = (arch, m.pooling)
            && a.vit().is_none()
        {
            let word = if p == Pooling::Mean { "mean" } else { "cls" };
            self.fail(
                "model.pooling",
                format!(
                    "\"{word}\" applies to ViT backbones only; `{}` is a {} backbone, which \
                     average-pools its last feature map",
                    m.backbone,
                    a.family()
                ),
            );
        }
        let side = self.loaded.experiment.train.image_size;
        if let Some(a) = arch
            && !a.accepts_image_size(side as usize)
        {
            self.fail(
                "train.image_size",
                format!(
                    "{side} is not a multiple of `{}`'s patch size {} (its native size is {})",
                    m.backbone,
                    a.patch_size().unwrap_or(1),
                    a.native_image_size().unwrap_or(0)
                ),
            );
        }
        if let Head::Mlp { hidden, dropout } = &m.head {
            self.check(
                !hidden.is_empty() && hidden.iter().all(|&w| (1..=65_536).contains(&w)),
                "model.head",
                || format!("`hidden` must list one or more layer widths between 1 and 65536, got {hidden:?}"),
            );
            self.check((0.0..1.0).contains(dropout), "model.head", || {
                format!("`dropout` must be in [0, 1), got {dropout}")
            });
        }
        if let Some(w) = &m.weights {
            let path = self.loaded.resolve_path("model.weights", w);
            self.check(path.is_file(), "model.weights", || {
                format!("weights file {} does not exist", path.display())
            });
        }
    }

    fn train(&mut self) {
        let t = &self.loaded.experiment.train;
        self.check(
            (16..=4096).contains(&t.image_size),
            "train.image_size",
            || format!("must be between 16 and 4096 pixels, got {}", t.image_size),
        );
        self.check(t.batch_size >= 1, "train.batch_size", || {
            "must be ≥ 1".into()
        });
        self.check(t.epochs >= 1, "train.epochs", || "must be ≥ 1".into());
        self.check(t.lr.is_finite() && t.lr > 0.0, "train.lr", || {
            format!("must be > 0, got {}", t.lr)
        });
        self.check(
            t.weight_decay.is_finite() && t.weight_decay >= 0.0,
            "train.weight_decay",
            || format!("must be ≥ 0, got {}", t.weight_decay),
        );
        self.check(t.unfreeze_epoch <= t.epochs, "train.unfreeze_epoch", || {
            format!(
                "is {} but training has only {} epochs, so the backbone would never train",
                t.unfreeze_epoch, t.epochs
            )
        });
        let device_ok = matches!(t.device.as_str(), "cpu" | "cuda" | "auto")
            || t.device
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<u32>().is_ok());
        self.check(device_ok, "train.device", || {
            format!("{:?} is not `cpu`, `cuda`, `cuda:N` or `auto`", t.device)
        });
        // Known before anything runs, so it is a configuration error, not a failed stage.
        self.check(
            !device_ok || cfg!(feature = "cuda") || !t.device.starts_with("cuda"),
            "train.device",
            || {
                format!(
                    "{:?}, but this geoexp was built without CUDA; rebuild with `cargo build \
                     --release --features cuda` (needs the CUDA toolkit) or use \"cpu\" or \"auto\"",
                    t.device
                )
            },
        );
        self.monitor();
        if let Some(lr) = t.backbone_lr {
            self.check(lr.is_finite() && lr > 0.0, "train.backbone_lr", || {
                format!("must be > 0, got {lr}")
            });
        }
        if let Unfreeze::Last(n) = t.unfreeze {
            self.check(n >= 1, "train.unfreeze", || {
                "must be \"all\", \"none\" or a number of blocks ≥ 1".into()
            });
        }
        self.check((0.0..1.0).contains(&t.momentum), "train.momentum", || {
            format!("must be in [0, 1), got {}", t.momentum)
        });
        self.check(
            (0.0..1.0).contains(&t.label_smoothing),
            "train.label_smoothing",
            || format!("must be in [0, 1), got {}", t.label_smoothing),
        );
        self.check(
            t.haversine_tau_km.is_finite() && t.haversine_tau_km >= 0.0,
            "train.haversine_tau_km",
            || format!("must be ≥ 0 (0: off), got {}", t.haversine_tau_km),
        );
        let regression = self.loaded.experiment.model.task == Task::Regression;
        for (key, set) in [
            ("train.label_smoothing", t.label_smoothing > 0.0),
            ("train.haversine_tau_km", t.haversine_tau_km > 0.0),
        ] {
            self.check(!(regression && set), key, || {
                "applies to classification only, but model.task is \"regression\"".into()
            });
        }
        self.check(
            !(t.label_smoothing > 0.0 && t.haversine_tau_km > 0.0),
            "train.haversine_tau_km",
            || "cannot be combined with train.label_smoothing; set one of them".into(),
        );
        let a = &t.augment;
        self.check(
            a.crop_scale > 0.0 && a.crop_scale <= 1.0,
            "train.augment.crop_scale",
            || format!("must be in (0, 1], got {}", a.crop_scale),
        );
        self.check(
            (0.0..1.0).contains(&a.color_jitter),
            "train.augment.color_jitter",
            || format!("must be in [0, 1), got {}", a.color_jitter),
        );
        self.check(
            a.noise_std.is_finite() && a.noise_std >= 0.0,
            "train.augment.noise_std",
            || format!("must be ≥ 0, got {}", a.noise_std),
        );
        self.scheduler();
    }

    fn monitor(&mut self) {
        let t = &self.loaded.experiment.train;
        let regression = self.loaded.experiment.model.task == Task::Regression;
        let known: Vec<String> = TRAIN_METRICS
            .iter()
            .map(|m| ("train", m))
            .chain(SPLIT_METRICS.iter().map(|m| ("val", m)))
            .filter(|(_, m)| !(regression && CLASSIFICATION_METRICS.contains(m)))
            .map(|(split, m)| format!("{split}/{m}"))
            .collect();
        if known.contains(&t.monitor) {
            return;
        }
        let close = super::keys::closest(&t.monitor, known.iter().map(String::as_str), |m| m);
        let hint = close.map_or(String::new(), |m| format!("did you mean `{m}`? "));
        self.fail(
            "train.monitor",
            format!(
                "{:?} is not a metric of this task; {hint}known: {}",
                t.monitor,
                known.join(", ")
            ),
        );
    }

    fn scheduler(&mut self) {
        let s = &self.loaded.experiment.train.scheduler;
        let lr = self.loaded.experiment.train.lr;
        for field in super::schema::SchedulerConfig::FIELDS {
            let key = format!("train.scheduler.{field}");
            let set = !matches!(self.loaded.origin(&key), super::error::Origin::Default);
            // Set with the kind or after it: the user combined them, and must hear so.
            // Set before a later layer changed the kind: dropped (see load.rs).
            if set
                && !s.kind.fields().contains(&field)
                && !super::load::set_before_the_kind(self.loaded, field)
            {
                let kind = serde_json::to_value(s.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.fail(
                    &key,
                    format!(
                        "does not apply to scheduler kind \"{kind}\" (it reads: {})",
                        {
                            let f = s.kind.fields();
                            if f.is_empty() {
                                "nothing".to_owned()
                            } else {
                                f.join(", ")
                            }
                        }
                    ),
                );
            }
        }
        let uses = |f: &str| s.kind.fields().contains(&f);
        if uses("factor") {
            self.check(
                s.factor > 0.0 && s.factor < 1.0,
                "train.scheduler.factor",
                || format!("must be in (0, 1), got {}", s.factor),
            );
        }
        if uses("step_size") {
            self.check(s.step_size >= 1, "train.scheduler.step_size", || {
                "must be ≥ 1".into()
            });
        }
        if uses("min_lr") {
            self.check(
                s.min_lr.is_finite() && s.min_lr >= 0.0 && s.min_lr < lr,
                "train.scheduler.min_lr",
                || format!("must be ≥ 0 and below train.lr ({lr}), got {}", s.min_lr),
            );
        }
        if uses("warmup_epochs") {
            let epochs = self.loaded.experiment.train.epochs;
            self.check(
                s.warmup_epochs < epochs,
                "train.scheduler.warmup_epochs",
                || {
                    format!(
                        "must be below train.epochs ({epochs}), got {}",
                        s.warmup_epochs
                    )
                },
            );
        }
        if uses("pct_start") {
            self.check(
                s.pct_start > 0.0 && s.pct_start < 1.0,
                "train.scheduler.pct_start",
                || format!("must be in (0, 1), got {}", s.pct_start),
            );
        }
    }
}
