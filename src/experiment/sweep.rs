//! Sweep definitions: the `[sweep]` table and `--grid` flags, expanded into trial points.
//!
//! A definition has axes (key path → values), `zip` groups that pair axes instead of
//! crossing them, `exclude` entries that drop combinations, and `seeds = N` that repeats
//! every combination with seeds `seed, seed+1, …`. Values are lists, or one of the helpers
//! `range(start, stop, step)`, `logspace(a, b, n)` and `choice(v1, v2, …)`. Ranges are
//! computed in decimal so `range(0.1, 0.5, 0.1)` gives 0.3, not 0.30000000000000004.
//!
//! Expansion is deterministic: axes in key-path order (a zip group at the place of its first
//! key), the last axis varying fastest, then seeds. This module knows nothing of trial ids
//! or running; it only turns a definition into points.
//!
//! With `method = "random"`, `trials = N` points are drawn instead (see [`super::sample`]):
//! an axis is then a distribution (`uniform`, `loguniform`, `int`) or a list, which is
//! categorical; zip groups of lists are drawn by one position; `--grid` axes are crossed
//! with the drawn points, then seeds repeat every trial, as in a grid.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys;
use super::sample::{DISTRIBUTIONS, Distribution, Sampled, Source, Unit, sample};

/// Keys of the `[sweep]` table that are not axes (`seed` is one only as a list: a number
/// is the random search's sampling seed).
pub const RESERVED: &[&str] = &["zip", "exclude", "seeds", "method", "trials", "early_stop"];
/// Keys that cannot be swept.
pub const NOT_SWEPT: &[&str] = &["name", "extends", "sweep"];
/// More values than this in one helper is almost certainly a typo (a step of 1e-5 for 1e-5).
const MAX_VALUES: usize = 10_000;

/// One swept key and its values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// Key path, e.g. `train.lr`.
    pub key: String,
    /// Its values, in order (empty for a distribution).
    pub values: Vec<Value>,
    /// What a random search draws from, instead of `values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,
    /// Set by `--grid`: crossed with the drawn points in a random search.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crossed: bool,
}

impl Axis {
    fn listed(key: String, values: Vec<Value>) -> Axis {
        Axis {
            key,
            values,
            distribution: None,
            crossed: false,
        }
    }
}

/// How trials are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Every combination of the axes.
    #[default]
    Grid,
    /// `trials` points drawn at random.
    Random,
}

/// A whole sweep definition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Axes, sorted by key path.
    pub axes: Vec<Axis>,
    /// Groups of axes whose values are paired by position instead of crossed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zip: Vec<Vec<String>>,
    /// Combinations to drop: every key of an entry must match for it to apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<BTreeMap<String, Value>>,
    /// Repeat every combination with this many seeds (1: once, with the experiment's seed).
    pub seeds: u64,
    /// Grid or random search.
    #[serde(default, skip_serializing_if = "is_grid")]
    pub method: Method,
    /// How many points a random search draws.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<u64>,
    /// The random search's sampling seed (`sweep.seed`, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Successive halving: trials train in rungs, and only the best go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<Halving>,
}

/// Successive halving (`early_stop = { kind = "halving", min_epochs, reduction }`): every
/// trial trains to `min_epochs`, the best `1/reduction` of them (by `train.monitor`) go on
/// to `min_epochs · reduction`, and so on up to `train.epochs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halving {
    /// Epochs of the first rung.
    pub min_epochs: u32,
    /// Each rung keeps `⌈n / reduction⌉` of its `n` trials and trains `reduction` times
    /// longer.
    pub reduction: u32,
}

impl Halving {
    /// The epochs each rung trains to, for trainings of `epochs`: `min_epochs ·
    /// reduction^k` while below `epochs`, then `epochs`.
    pub fn rungs(&self, epochs: u32) -> Vec<u32> {
        let mut rungs = Vec::new();
        let mut r = self.min_epochs.max(1);
        while r < epochs {
            rungs.push(r);
            r = r.saturating_mul(self.reduction.max(2));
        }
        rungs.push(epochs);
        rungs
    }

    /// How many of a rung's `n` trials go on.
    pub fn keep(&self, n: usize) -> usize {
        n.div_ceil(self.reduction.max(2) as usize)
    }

    /// Epochs `trials` trials of `epochs` train at most, every rung full, against
    /// `trials · epochs` for all of them to the end.
    pub fn epoch_budget(&self, trials: usize, epochs: u32) -> (u64, u64) {
        let (mut n, mut before, mut total) = (trials as u64, 0u32, 0u64);
        for r in self.rungs(epochs) {
            total += n * u64::from(r - before);
            before = r;
            n = self.keep(n as usize) as u64;
        }
        (total, trials as u64 * u64::from(epochs))
    }

    /// Reads the `early_stop` table.
    fn parse(value: &Value) -> Result<Halving, SweepProblem> {
        let bad = |m: String| SweepProblem::new("sweep.early_stop", m);
        let table = value.as_object().ok_or_else(|| {
            bad(format!(
                "must be a table such as {{ kind = \"halving\", min_epochs = 1, reduction = 3 }}, \
                 not {value}"
            ))
        })?;
        let mut halving = Halving {
            min_epochs: 1,
            reduction: 3,
        };
        let mut kind = None;
        for (k, v) in table {
            let whole = |least: u64| {
                v.as_u64()
                    .filter(|n| *n >= least)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(format!("{k} must be a whole number ≥ {least}, not {v}")))
            };
            match k.as_str() {
                "kind" => kind = v.as_str().map(str::to_owned),
                "min_epochs" => halving.min_epochs = whole(1)?,
                "reduction" => halving.reduction = whole(2)?,
                other => {
                    return Err(bad(format!(
                        "unknown field `{other}`; it takes kind, min_epochs and reduction"
                    )));
                }
            }
        }
        match kind.as_deref() {
            Some("halving") => Ok(halving),
            _ => Err(bad(
                "kind must be \"halving\" (successive halving is the early stop geoexp has)".into(),
            )),
        }
    }
}

fn is_grid(method: &Method) -> bool {
    *method == Method::Grid
}

/// A problem in a sweep definition: the key it concerns and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepProblem {
    /// `sweep."train.lr"`, `sweep.zip`; for a `--grid` flag, the swept key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl SweepProblem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> SweepProblem {
        SweepProblem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// One trial's values: key path → value, in axis order (then `seed`).
pub type Point = Vec<(String, Value)>;

impl Sweep {
    /// Reads the `[sweep]` table as the experiment file gave it. Dotted keys written without
    /// quotes (`train.lr = [...]`) arrive as nested tables and are flattened.
    ///
    /// # Errors
    /// Every problem found, each naming its key.
    pub fn from_table(table: &BTreeMap<String, Value>) -> Result<Sweep, Vec<SweepProblem>> {
        let mut sweep = Sweep {
            seeds: 1,
            ..Sweep::default()
        };
        let mut problems = Vec::new();
        let mut axes = BTreeMap::new();
        for (key, value) in table {
            match key.as_str() {
                "method" => match serde_json::from_value::<Method>(value.clone()) {
                    Ok(m) => sweep.method = m,
                    Err(_) => problems.push(SweepProblem::new(
                        "sweep.method",
                        format!("must be \"grid\" or \"random\", not {value}"),
                    )),
                },
                "early_stop" => match Halving::parse(value) {
                    Ok(h) => sweep.early_stop = Some(h),
                    Err(p) => problems.push(p),
                },
                "trials" => match value.as_u64().filter(|n| *n >= 1) {
                    Some(n) => sweep.trials = Some(n),
                    None => problems.push(SweepProblem::new(
                        "sweep.trials",
                        format!("must be a whole number ≥ 1, not {value}"),
                    )),
                },
                "seed" if value.is_number() => match value.as_u64() {
                    Some(n) => sweep.seed = Some(n),
                    None => problems.push(SweepProblem::new(
                        "sweep.seed",
                        format!("the sampling seed must be a whole number ≥ 0, not {value}"),
                    )),
                },
                "zip" => match parse_zip(value) {
                    Ok(zip) => sweep.zip = zip,
                    Err(p) => problems.push(p),
                },
                "exclude" => match parse_exclude(value) {
                    Ok(exclude) => sweep.exclude = exclude,
                    Err(p) => problems.push(p),
                },
                "seeds" => match value.as_u64().filter(|n| *n >= 1) {
                    Some(n) => sweep.seeds = n,
                    None => problems.push(SweepProblem::new(
                        "sweep.seeds",
                        format!("must be a whole number ≥ 1, not {value}"),
                    )),
                },
                _ => flatten_axes(key, value, &mut axes),
            }
        }
        for (key, value) in axes {
            let name = format!("sweep.\"{key}\"");
            if let Some(p) = check_axis_key(&key, &name) {
                problems.push(p);
                continue;
            }
            match axis_values(&value) {
                Ok(AxisValues::Listed(values)) => sweep.axes.push(Axis::listed(key, values)),
                Ok(AxisValues::Drawn(d)) => sweep.axes.push(Axis {
                    distribution: Some(d),
                    ..Axis::listed(key, Vec::new())
                }),
                Err(message) => problems.push(SweepProblem::new(name, message)),
            }
        }
        problems.extend(sweep.check());
        if problems.is_empty() {
            Ok(sweep)
        } else {
            Err(problems)
        }
    }

    /// Adds or replaces an axis from a `--grid key=v1,v2,...` flag.
    ///
    /// # Errors
    /// When the flag has no `=`, names a key that cannot be swept, or has bad values.
    pub fn apply_grid(&mut self, raw: &str) -> Result<(), SweepProblem> {
        let Some((key, values)) = raw.split_once('=') else {
            return Err(SweepProblem::new(
                "--grid",
                "expected KEY=V1,V2,... (e.g. --grid train.lr=1e-3,3e-4)",
            ));
        };
        let key = key.trim();
        if let Some(p) = check_axis_key(key, key) {
            return Err(p);
        }
        let values = parse_list(values).map_err(|m| SweepProblem::new(key, m))?;
        if let Some(dup) = first_duplicate(&values) {
            return Err(SweepProblem::new(key, format!("value {dup} appears twice")));
        }
        let axis = Axis {
            crossed: true,
            ..Axis::listed(key.to_owned(), values)
        };
        match self.axes.iter_mut().find(|a| a.key == key) {
            Some(existing) => *existing = axis,
            None => {
                self.axes.push(axis);
                self.axes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        Ok(())
    }

    /// Whether the definition has no axes and no seeds: nothing to sweep.
    pub fn is_empty(&self) -> bool {
        self.axes.is_empty() && self.seeds <= 1
    }

    /// The keys each trial sets, in axis order (then `seed` when seeds > 1).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.axes.iter().map(|a| a.key.clone()).collect();
        if self.seeds > 1 {
            keys.push("seed".into());
        }
        keys
    }

    /// Consistency of zip groups, excludes and seeds with the axes.
    fn check(&self) -> Vec<SweepProblem> {
        let mut problems = Vec::new();
        let axis = |key: &str| self.axes.iter().find(|a| a.key == key);
        let mut zipped = BTreeSet::new();
        for (i, group) in self.zip.iter().enumerate() {
            let name = format!("sweep.zip[{i}]");
            if group.len() < 2 {
                problems.push(SweepProblem::new(
                    &name,
                    "a zip group pairs two or more axes",
                ));
                continue;
            }
            let mut len = None;
            for key in group {
                let Some(a) = axis(key) else {
                    problems.push(SweepProblem::new(
                        &name,
                        format!("`{key}` is not a sweep axis"),
                    ));
                    continue;
                };
                if !zipped.insert(key.clone()) {
                    problems.push(SweepProblem::new(
                        &name,
                        format!("`{key}` is in more than one zip group"),
                    ));
                }
                if a.distribution.is_some() {
                    // Said by the method's own check: a distribution has no values to pair.
                    continue;
                }
                match len {
                    None => len = Some((key, a.values.len())),
                    Some((first, n)) if n != a.values.len() => problems.push(SweepProblem::new(
                        &name,
                        format!(
                            "zipped axes need the same number of values: `{first}` has {n}, `{key}` has {}",
                            a.values.len()
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
        for (i, entry) in self.exclude.iter().enumerate() {
            for key in entry.keys() {
                if axis(key).is_none() && !(key == "seed" && self.seeds > 1) {
                    problems.push(SweepProblem::new(
                        format!("sweep.exclude[{i}]"),
                        format!("`{key}` is not a sweep axis"),
                    ));
                }
            }
        }
        if self.seeds > 1 && axis("seed").is_some() {
            problems.push(SweepProblem::new(
                "sweep.seeds",
                "`seed` is also an axis; use one or the other",
            ));
        }
        for a in &self.axes {
            if let Some(dup) = first_duplicate(&a.values) {
                problems.push(SweepProblem::new(
                    format!("sweep.\"{}\"", a.key),
                    format!("value {dup} appears twice"),
                ));
            }
        }
        match self.method {
            Method::Grid => problems.extend(self.check_grid()),
            Method::Random => problems.extend(self.check_random()),
        }
        problems
    }

    /// A grid takes no distributions, trial count or sampling seed.
    fn check_grid(&self) -> Vec<SweepProblem> {
        let mut problems: Vec<SweepProblem> = self
            .axes
            .iter()
            .filter(|a| a.distribution.is_some())
            .map(|a| {
                SweepProblem::new(
                    format!("sweep.\"{}\"", a.key),
                    "a distribution is drawn at random: set method = \"random\" and trials = N, \
                     or give a list of values",
                )
            })
            .collect();
        if self.trials.is_some() {
            problems.push(SweepProblem::new(
                "sweep.trials",
                "only a random search draws trials; set method = \"random\" or remove it",
            ));
        }
        if self.seed.is_some() {
            problems.push(SweepProblem::new(
                "sweep.seed",
                "a number here is the random search's sampling seed; a grid sweeps the \
                 experiment's seed as a list (seed = [1, 2]) or with seeds = N",
            ));
        }
        problems
    }

    /// A random search needs its trial count; zip groups pair lists drawn together.
    fn check_random(&self) -> Vec<SweepProblem> {
        let mut problems = Vec::new();
        if self.trials.is_none() {
            problems.push(SweepProblem::new(
                "sweep.trials",
                "method = \"random\" needs trials = N, the number of trials to draw",
            ));
        }
        for (i, group) in self.zip.iter().enumerate() {
            for a in self.axes.iter().filter(|a| group.contains(&a.key)) {
                let why = if a.distribution.is_some() {
                    "is a distribution; a zip group draws lists by one shared position"
                } else if a.crossed {
                    "comes from --grid, which is crossed with the drawn trials, not drawn"
                } else {
                    continue;
                };
                problems.push(SweepProblem::new(
                    format!("sweep.zip[{i}]"),
                    format!("`{}` {why}", a.key),
                ));
            }
        }
        problems
    }

    /// How many trials the definition makes before `exclude` drops any: the product of
    /// the crossed axes' lengths (a zip group counts once) times `seeds`. `None` when that
    /// does not even fit a `u64`.
    pub fn trial_bound(&self) -> Option<u64> {
        let mut total: u64 = self.seeds.max(1);
        let mut counted = BTreeSet::new();
        if self.method == Method::Random {
            total = total.checked_mul(self.trials.unwrap_or(1))?;
        }
        for a in self.axes.iter().filter(|a| self.crosses(a)) {
            if counted.contains(&a.key) {
                continue;
            }
            match self.zip.iter().find(|g| g.contains(&a.key)) {
                Some(group) => counted.extend(group.iter().cloned()),
                None => {
                    counted.insert(a.key.clone());
                }
            }
            total = total.checked_mul(a.values.len() as u64)?;
        }
        Some(total)
    }

    /// Whether `axis` is crossed (every grid axis; `--grid` axes in a random search).
    fn crosses(&self, axis: &Axis) -> bool {
        self.method == Method::Grid || axis.crossed
    }

    /// Every trial's point, in order; see [`Sweep::expand`].
    ///
    /// # Errors
    /// As [`Sweep::expand`].
    pub fn points(&self, base_seed: u64, max_trials: u64) -> Result<Vec<Point>, Vec<SweepProblem>> {
        self.expand(base_seed, max_trials).map(|e| e.points)
    }

    /// Every trial's point, in order: the drawn points of a random search (or one empty
    /// point for a grid), crossed with the crossed axes (zip groups paired), excludes
    /// dropped, then each repeated with seeds `base_seed, base_seed+1, …`.
    ///
    /// # Errors
    /// When zip groups or excludes do not fit the axes (after `--grid` flags changed them),
    /// when a random search cannot draw its trials, or when the sweep would make more than
    /// `max_trials` trials (counted before `exclude`, and before anything is expanded).
    pub fn expand(&self, base_seed: u64, max_trials: u64) -> Result<Expansion, Vec<SweepProblem>> {
        let problems = self.check();
        if !problems.is_empty() {
            return Err(problems);
        }
        let bound = self.trial_bound();
        if bound.is_none_or(|n| n > max_trials) {
            let count = bound.map_or_else(|| "more than 2^64".to_owned(), |n| n.to_string());
            return Err(vec![SweepProblem::new(
                "sweep",
                format!(
                    "{count} trials (axes crossed, times seeds, before `exclude`) is more than \
                     the limit of {max_trials}; narrow the axes, or raise the limit with \
                     --max-trials"
                ),
            )]);
        }
        let drawn = match self.method {
            Method::Grid => Sampled {
                points: vec![Vec::new()],
                ..Sampled::default()
            },
            Method::Random => self.draw()?,
        };
        let mut points = cross(drawn.points, &self.units(|a| self.crosses(a)));
        for p in &mut points {
            let order = |k: &String| self.axes.iter().position(|a| &a.key == k);
            p.sort_by_key(|(k, _)| order(k));
        }
        let mut out = Vec::with_capacity(points.len() * self.seeds as usize);
        for p in points {
            for s in 0..self.seeds {
                let mut p = p.clone();
                if self.seeds > 1 {
                    p.push(("seed".into(), Value::from(base_seed + s)));
                }
                if !self.exclude.iter().any(|e| excluded(e, &p)) {
                    out.push(p);
                }
            }
        }
        Ok(Expansion {
            points: out,
            duplicates: drawn.duplicates,
            excluded: drawn.excluded,
        })
    }

    /// The axes `take` selects, as units: one axis, or one zip group at its first key.
    fn units(&self, take: impl Fn(&Axis) -> bool) -> Vec<Vec<&Axis>> {
        let mut units: Vec<Vec<&Axis>> = Vec::new();
        let mut placed = BTreeSet::new();
        for a in self.axes.iter().filter(|a| take(a)) {
            if placed.contains(&a.key) {
                continue;
            }
            match self.zip.iter().find(|g| g.contains(&a.key)) {
                Some(group) => {
                    let members: Vec<&Axis> = self
                        .axes
                        .iter()
                        .filter(|x| group.contains(&x.key))
                        .collect();
                    placed.extend(members.iter().map(|x| x.key.clone()));
                    units.push(members);
                }
                None => {
                    placed.insert(a.key.clone());
                    units.push(vec![a]);
                }
            }
        }
        units
    }

    /// A random search's drawn points. Excludes naming only drawn axes drop candidates
    /// while drawing, so `trials` distinct points remain; the others apply after crossing.
    fn draw(&self) -> Result<Sampled, Vec<SweepProblem>> {
        let units: Vec<Unit<'_>> = self
            .units(|a| !a.crossed)
            .into_iter()
            .map(|members| Unit {
                keys: members.iter().map(|a| a.key.as_str()).collect(),
                source: match members[0].distribution.as_ref() {
                    Some(d) if members.len() == 1 => Source::Distribution(d),
                    _ => Source::Lists(members.iter().map(|a| a.values.as_slice()).collect()),
                },
            })
            .collect();
        let drawn_keys: BTreeSet<&str> = units.iter().flat_map(|u| u.keys.clone()).collect();
        let early: Vec<&BTreeMap<String, Value>> = self
            .exclude
            .iter()
            .filter(|e| e.keys().all(|k| drawn_keys.contains(k.as_str())))
            .collect();
        let trials = self.trials.unwrap_or(1);
        sample(&units, trials, self.seed.unwrap_or(0), |p| {
            early.iter().any(|e| excluded(e, p))
        })
        .map_err(|m| vec![SweepProblem::new("sweep.trials", m)])
    }
}

/// A sweep's trial points, and what a random search dropped while drawing them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expansion {
    /// Every trial's point, in order.
    pub points: Vec<Point>,
    /// Drawn candidates equal to an earlier one.
    pub duplicates: u64,
    /// Drawn candidates an `exclude` entry matched.
    pub excluded: u64,
}

/// Each of `points` crossed with every combination of `units` (the last varying fastest).
fn cross(points: Vec<Point>, units: &[Vec<&Axis>]) -> Vec<Point> {
    let mut points = points;
    for unit in units {
        let len = unit[0].values.len();
        let mut next = Vec::with_capacity(points.len() * len);
        for point in &points {
            for i in 0..len {
                let mut p = point.clone();
                p.extend(unit.iter().map(|a| (a.key.clone(), a.values[i].clone())));
                next.push(p);
            }
        }
        points = next;
    }
    points
}

/// Whether every key of the exclude entry matches the point.
fn excluded(entry: &BTreeMap<String, Value>, point: &Point) -> bool {
    entry.iter().all(|(k, v)| {
        point
            .iter()
            .find(|(pk, _)| pk == k)
            .is_some_and(|(_, pv)| same_value(pv, v))
    })
}

/// Equality that treats `1e-3` and `0.001`, or `1` and `1.0`, as the same number.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn first_duplicate(values: &[Value]) -> Option<&Value> {
    values
        .iter()
        .enumerate()
        .find(|(i, v)| values[..*i].iter().any(|w| same_value(v, w)))
        .map(|(_, v)| v)
}

fn check_axis_key(key: &str, name: &str) -> Option<SweepProblem> {
    if keys::is_leaf(key) && !NOT_SWEPT.contains(&key) {
        return None;
    }
    let message = match keys::suggest(key) {
        Some(s) if keys::is_leaf(s) && !NOT_SWEPT.contains(&s) => {
            format!("`{key}` is not a key that can be swept; did you mean `{s}`?")
        }
        _ => format!("`{key}` is not a key that can be swept"),
    };
    Some(SweepProblem::new(name, message))
}

/// `train = { lr = [...] }` (unquoted dotted keys) becomes `train.lr = [...]`.
fn flatten_axes(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value.as_object() {
        Some(table) if !keys::is_leaf(prefix) => {
            for (k, v) in table {
                flatten_axes(&format!("{prefix}.{k}"), v, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned(), value.clone());
        }
    }
}

/// What a `[sweep]` axis holds.
enum AxisValues {
    /// Values to cross (a grid) or to pick among (a random search).
    Listed(Vec<Value>),
    /// A distribution to draw from (a random search).
    Drawn(Distribution),
}

fn axis_values(value: &Value) -> Result<AxisValues, String> {
    let drawn = match value {
        Value::String(s) if helper_call(s).is_none() => Distribution::parse(s),
        _ => None,
    };
    if let Some(d) = drawn {
        return d.map(AxisValues::Drawn);
    }
    let values = match value {
        Value::Array(values) => values.clone(),
        Value::String(s) if helper_call(s).is_some() => parse_list(s)?,
        _ => {
            return Err(format!(
                "must be a list of values (e.g. [1e-3, 3e-4]) or one of \
                 \"range(start, stop, step)\", \"logspace(a, b, n)\", \"choice(v1, v2)\", or in a \
                 random search {DISTRIBUTIONS}; got {value}"
            ));
        }
    };
    if values.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(AxisValues::Listed(values))
}

fn parse_zip(value: &Value) -> Result<Vec<Vec<String>>, SweepProblem> {
    let bad = || {
        SweepProblem::new(
            "sweep.zip",
            "must be a list of lists of key paths, e.g. [[\"train.lr\", \"train.batch_size\"]]",
        )
    };
    let groups = value.as_array().ok_or_else(bad)?;
    groups
        .iter()
        .map(|g| {
            g.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|k| k.as_str().map(str::to_owned).ok_or_else(bad))
                .collect()
        })
        .collect()
}

fn parse_exclude(value: &Value) -> Result<Vec<BTreeMap<String, Value>>, SweepProblem> {
    let bad = || {
        SweepProblem::new(
            "sweep.exclude",
            "must be a list of tables, e.g. [{ \"train.lr\" = 1e-3, \"classes.spacing\" = 0.3 }]",
        )
    };
    let entries = value.as_array().ok_or_else(bad)?;
    entries
        .iter()
        .map(|e| {
            let table = e.as_object().filter(|t| !t.is_empty()).ok_or_else(bad)?;
            let mut flat = BTreeMap::new();
            for (k, v) in table {
                flatten_axes(k, v, &mut flat);
            }
            Ok(flat)
        })
        .collect()
}

/// The helper name and argument text when `text` is `name(args)`.
fn helper_call(text: &str) -> Option<(&str, &str)> {
    let text = text.trim();
    let open = text.find('(')?;
    let name = text[..open].trim();
    let args = text[open + 1..].strip_suffix(')')?;
    matches!(name, "range" | "logspace" | "choice").then_some((name, args))
}

/// A comma-separated list of values and helper calls, as typed after `--grid key=` or as
/// a helper string in the file. Commas inside brackets, parentheses and quotes do not split.
///
/// # Errors
/// When a helper's arguments are wrong or it yields no values.
pub fn parse_list(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for item in split_top_level(text) {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty value in `{text}`"));
        }
        match helper_call(item) {
            Some((name, args)) => out.extend(expand_helper(name, args)?),
            None => out.push(parse_scalar(item)),
        }
    }
    if out.is_empty() {
        return Err("no values".into());
    }
    Ok(out)
}

fn expand_helper(name: &str, args: &str) -> Result<Vec<Value>, String> {
    let parts: Vec<&str> = split_top_level(args).into_iter().map(str::trim).collect();
    let values = match name {
        "choice" => {
            if parts.iter().any(|p| p.is_empty()) {
                return Err(format!("choice({args}): empty value"));
            }
            parts.iter().map(|p| parse_scalar(p)).collect()
        }
        "range" => {
            let [start, stop, step] = parts[..] else {
                return Err(format!(
                    "range({args}): expected range(start, stop, step), stop excluded"
                ));
            };
            range(start, stop, step).map_err(|e| format!("range({args}): {e}"))?
        }
        _ => {
            let [a, b, n] = parts[..] else {
                return Err(format!(
                    "logspace({args}): expected logspace(a, b, n): n values from 10^a to 10^b"
                ));
            };
            logspace(a, b, n).map_err(|e| format!("logspace({args}): {e}"))?
        }
    };
    if values.is_empty() {
        return Err(format!("{name}({args}) gives no values"));
    }
    Ok(values)
}

/// A typed value: TOML syntax when it parses (`3e-4`, `true`, `"x"`), else a bare string.
fn parse_scalar(raw: &str) -> Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None, 0);
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A decimal number as `mantissa × 10^-scale`, exact for anything typed.
#[derive(Clone, Copy, Debug)]
struct Decimal {
    mantissa: i128,
    scale: u32,
}

impl Decimal {
    fn parse(text: &str) -> Result<Decimal, String> {
        let bad = || format!("`{text}` is not a number");
        let (number, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], text[i + 1..].parse::<i32>().map_err(|_| bad())?),
            None => (text, 0),
        };
        let (negative, digits) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number.strip_prefix('+').unwrap_or(number)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let all: String = format!("{int}{frac}");
        let mut mantissa: i128 = all.parse().map_err(|_| bad())?;
        let mut scale = i64::try_from(frac.len()).map_err(|_| bad())? - i64::from(exponent);
        while scale < 0 {
            mantissa = mantissa.checked_mul(10).ok_or_else(bad)?;
            scale += 1;
        }
        if scale > 30 {
            return Err(bad());
        }
        let scale = u32::try_from(scale).map_err(|_| bad())?;
        Ok(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }

    fn rescale(self, scale: u32) -> i128 {
        self.mantissa * 10i128.pow(scale - self.scale)
    }
}

fn decimal_text(mantissa: i128, scale: u32) -> String {
    let sign = if mantissa < 0 { "-" } else { "" };
    let digits = mantissa.unsigned_abs().to_string();
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// `start, start+step, …` while before `stop` (Python's `range`, also for decimals).
fn range(start: &str, stop: &str, step: &str) -> Result<Vec<Value>, String> {
    let integers = [start, stop, step].iter().all(|s| s.parse::<i64>().is_ok());
    let (a, b, s) = (
        Decimal::parse(start)?,
        Decimal::parse(stop)?,
        Decimal::parse(step)?,
    );
    let scale = a.scale.max(b.scale).max(s.scale);
    let (a, b, s) = (a.rescale(scale), b.rescale(scale), s.rescale(scale));
    if s == 0 {
        return Err("step must not be 0".into());
    }
    let mut out = Vec::new();
    let mut x = a;
    while (s > 0 && x < b) || (s < 0 && x > b) {
        if out.len() == MAX_VALUES {
            return Err(format!("more than {MAX_VALUES} values"));
        }
        let text = decimal_text(x, scale);
        out.push(if integers {
            Value::from(text.parse::<i64>().map_err(|e| e.to_string())?)
        } else {
            Value::from(text.parse::<f64>().map_err(|e| e.to_string())?)
        });
        x += s;
    }
    Ok(out)
}

/// `n` values from `10^a` to `10^b`, evenly spaced in the exponent (numpy's `logspace`).
/// Each is rounded to 15 significant digits, so `logspace(-4, -2, 3)` is exactly
/// `[1e-4, 1e-3, 1e-2]` rather than `powf`'s neighbours of those.
fn logspace(a: &str, b: &str, n: &str) -> Result<Vec<Value>, String> {
    let n: usize = n
        .parse()
        .ok()
        .filter(|n| (1..=MAX_VALUES).contains(n))
        .ok_or_else(|| format!("n must be a whole number from 1 to {MAX_VALUES}, not `{n}`"))?;
    let (a, b) = (Decimal::parse(a)?, Decimal::parse(b)?);
    let scale = a.scale.max(b.scale);
    let (a, b) = (a.rescale(scale), b.rescale(scale));
    let unit = 10f64.powi(i32::try_from(scale).map_err(|e| e.to_string())?);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // The exponent as an exact fraction (a·(n-1) + i·(b-a)) / ((n-1)·10^scale).
        let steps = (n.max(2) - 1) as i128;
        let numerator = a * steps + (i as i128) * (b - a);
        let exponent = numerator as f64 / (steps as f64 * unit);
        let value = 10f64.powf(exponent);
        let rounded: f64 = format!("{value:.14e}")
            .parse()
            .map_err(|e: std::num::ParseFloatError| e.to_string())?;
        if !rounded.is_finite() || rounded == 0.0 {
            return Err(format!("10^{exponent} is out of range"));
        }
        out.push(Value::from(rounded));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    fn show(points: &[Point]) -> Vec<String> {
        points
            .iter()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    fn problems(v: Value) -> Vec<String> {
        Sweep::from_table(&table(v))
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    #[test]
    fn a_random_search_draws_its_trials_crossed_with_grid_flags_then_seeds() {
        let mut sweep = Sweep::from_table(&table(json!({
            "method": "random",
            "trials": 3,
            "seed": 1,
            "train.lr": "loguniform(1e-4, 1e-2)",
            "train.batch_size": [16, 32],
            "seeds": 2,
        })))
        .unwrap();
        sweep.apply_grid("classes.spacing=0.3,0.5").unwrap();
        let e = sweep.expand(10, u64::MAX).unwrap();
        assert_eq!(e.points.len(), 3 * 2 * 2);
        assert_eq!(sweep.trial_bound(), Some(12));
        let first = &e.points[0];
        let keys: Vec<&str> = first.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["classes.spacing", "train.batch_size", "train.lr", "seed"]
        );
        // The grid axis varies within each drawn point, then the seed.
        let drawn = |p: &Point| (p[1].1.clone(), p[2].1.clone());
        assert_eq!(drawn(&e.points[0]), drawn(&e.points[3]));
        assert_ne!(drawn(&e.points[0]), drawn(&e.points[4]));
        assert_eq!(
            show(&e.points[..2])[0].split(' ').next(),
            Some("classes.spacing=0.3")
        );
        assert_eq!(e.points[1].last().unwrap().1, json!(11));
        assert_eq!(
            e,
            sweep.expand(10, u64::MAX).unwrap(),
            "the same trials every time"
        );
        for p in &e.points {
            let lr = p[2].1.as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&lr), "{lr}");
        }
    }

    #[test]
    fn a_random_search_honours_excludes_on_drawn_axes_and_keeps_the_count() {
        let sweep = Sweep::from_table(&table(json!({
            "method": "random",
            "trials": 2,
            "train.batch_size": [16, 32, 64],
            "exclude": [{"train.batch_size": 64}],
        })))
        .unwrap();
        let e = sweep.expand(1, u64::MAX).unwrap();
        let mut sizes: Vec<String> = show(&e.points);
        sizes.sort();
        assert_eq!(sizes, ["train.batch_size=16", "train.batch_size=32"]);
        assert!(e.excluded + e.duplicates > 0, "{e:?}");
        let err = Sweep::from_table(&table(json!({
            "method": "random", "trials": 3, "train.batch_size": [16, 32, 64],
            "exclude": [{"train.batch_size": 64}],
        })))
        .unwrap()
        .expand(1, u64::MAX)
        .unwrap_err();
        assert_eq!(err[0].key, "sweep.trials");
        assert!(
            err[0].message.contains("gave only 2 distinct trials"),
            "{:?}",
            err
        );
    }

    #[test]
    fn random_and_grid_settings_that_do_not_fit_are_errors_naming_the_key() {
        assert_eq!(
            problems(json!({"train.lr": "uniform(1e-4, 1e-2)"})),
            [
                "sweep.\"train.lr\": a distribution is drawn at random: set method = \"random\" \
              and trials = N, or give a list of values"
            ]
        );
        assert_eq!(
            problems(json!({"method": "random", "train.lr": [1e-3]})),
            ["sweep.trials: method = \"random\" needs trials = N, the number of trials to draw"]
        );
        assert_eq!(
            problems(json!({"seed": 3, "train.lr": [1e-3, 1e-4]})),
            [
                "sweep.seed: a number here is the random search's sampling seed; a grid sweeps the \
              experiment's seed as a list (seed = [1, 2]) or with seeds = N"
            ]
        );
        assert_eq!(
            problems(json!({"method": "bayes", "train.lr": [1e-3]})),
            ["sweep.method: must be \"grid\" or \"random\", not \"bayes\""]
        );
        assert_eq!(
            problems(json!({"method": "random", "trials": 2, "train.lr": "loguniform(0, 1)"})),
            [
                "sweep.\"train.lr\": loguniform(0, 1): both bounds must be positive (it draws the \
              logarithm)"
            ]
        );
        let unknown =
            problems(json!({"method": "random", "trials": 2, "train.lr": "normal(0, 1)"}));
        assert!(
            unknown[0].contains("\"uniform(a, b)\", \"loguniform(a, b)\""),
            "{unknown:?}"
        );
        assert_eq!(
            problems(json!({
                "method": "random", "trials": 2,
                "train.lr": "uniform(0.1, 1)", "train.batch_size": [8, 16],
                "zip": [["train.lr", "train.batch_size"]],
            })),
            [
                "sweep.zip[0]: `train.lr` is a distribution; a zip group draws lists by one shared \
              position"
            ]
        );
    }

    #[test]
    fn zipped_lists_are_drawn_together_in_a_random_search() {
        let sweep = Sweep::from_table(&table(json!({
            "method": "random", "trials": 2, "seed": 5,
            "train.lr": [0.1, 0.01, 0.001], "train.batch_size": [8, 16, 32],
            "zip": [["train.lr", "train.batch_size"]],
        })))
        .unwrap();
        for p in sweep.points(1, u64::MAX).unwrap() {
            let pair = (p[1].1.as_f64().unwrap(), p[0].1.as_i64().unwrap());
            assert!(
                [(0.1, 8), (0.01, 16), (0.001, 32)].contains(&pair),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn axes_are_crossed_in_key_order_with_the_last_varying_fastest() {
        let sweep = Sweep::from_table(&table(
            json!({"train.lr": [1e-3, 3e-4], "classes.spacing": [0.5, 0.7]}),
        ))
        .unwrap();
        assert_eq!(
            show(&sweep.points(7, u64::MAX).unwrap()),
            [
                "classes.spacing=0.5 train.lr=0.001",
                "classes.spacing=0.5 train.lr=0.0003",
                "classes.spacing=0.7 train.lr=0.001",
                "classes.spacing=0.7 train.lr=0.0003",
            ]
        );
    }

    #[test]
    fn zipped_axes_are_paired_by_position() {
        let sweep = Sweep::from_table(&table(json!({
            "train.lr": [1e-3, 3e-4],
            "train.batch_size": [32, 8],
            "classes.spacing": [0.5, 0.7],
            "zip": [["train.lr", "train.batch_size"]],
        })))
        .unwrap();
        assert_eq!(
            show(&sweep.points(0, u64::MAX).unwrap()),
            [
                "classes.spacing=0.5 train.batch_size=32 train.lr=0.001",
                "classes.spacing=0.5 train.batch_size=8 train.lr=0.0003",
                "classes.spacing=0.7 train.batch_size=32 train.lr=0.001",
                "classes.spacing=0.7 train.batch_size=8 train.lr=0.0003",
            ]
        );
    }

    #[test]
    fn zipped_axes_of_different_lengths_are_an_error_naming_both() {
        let err = Sweep::from_table(&table(json!({
            "train.lr": [1e-3, 3e-4, 1e-4],
            "train.batch_size": [32, 8],
            "zip": [["train.lr", "train.batch_size"]],
        })))
        .unwrap_err();
        assert_eq!(err[0].key, "sweep.zip[0]");
        assert!(
            err[0].message.contains("`train.batch_size` has 2"),
            "{err:?}"
        );
    }

    #[test]
    fn excluded_combinations_are_dropped_whatever_the_number_spelling() {
        let sweep = Sweep::from_table(&table(json!({
            "train.lr": [1e-3, 3e-4],
            "classes.spacing": [0.5, 0.7],
            "exclude": [{"train.lr": 0.001, "classes": {"spacing": 0.7}}],
        })))
        .unwrap();
        assert_eq!(
            show(&sweep.points(0, u64::MAX).unwrap()),
            [
                "classes.spacing=0.5 train.lr=0.001",
                "classes.spacing=0.5 train.lr=0.0003",
                "classes.spacing=0.7 train.lr=0.0003",
            ]
        );
    }

    #[test]
    fn an_exclude_naming_a_key_that_is_not_an_axis_is_an_error() {
        let err = Sweep::from_table(&table(json!({
            "train.lr": [1e-3],
            "exclude": [{"train.epochs": 3}],
        })))
        .unwrap_err();
        assert_eq!(err[0].key, "sweep.exclude[0]");
        assert!(err[0].message.contains("train.epochs"));
    }

    #[test]
    fn seeds_repeat_every_combination_counting_up_from_the_experiment_seed() {
        let sweep =
            Sweep::from_table(&table(json!({"train.lr": [1e-3, 3e-4], "seeds": 2}))).unwrap();
        assert_eq!(
            show(&sweep.points(7, u64::MAX).unwrap()),
            [
                "train.lr=0.001 seed=7",
                "train.lr=0.001 seed=8",
                "train.lr=0.0003 seed=7",
                "train.lr=0.0003 seed=8",
            ]
        );
        assert_eq!(sweep.keys(), ["train.lr", "seed"]);
    }

    #[test]
    fn nested_tables_from_unquoted_dotted_keys_are_flattened() {
        let sweep =
            Sweep::from_table(&table(json!({"train": {"lr": [1e-3], "epochs": [1, 2]}}))).unwrap();
        let keys: Vec<&str> = sweep.axes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["train.epochs", "train.lr"]);
    }

    #[test]
    fn unknown_axes_get_a_suggestion_and_bad_values_say_what_is_expected() {
        let err = Sweep::from_table(&table(json!({
            "train.lrr": [1e-3],
            "train.epochs": "fast",
            "train.batch_size": [],
        })))
        .unwrap_err();
        let messages: Vec<String> = err
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("did you mean `train.lr`")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("sweep.\"train.epochs\": must be a list")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("sweep.\"train.batch_size\": must not be empty")),
            "{messages:?}"
        );
    }

    #[test]
    fn ranges_are_computed_in_decimal_without_float_drift() {
        assert_eq!(
            parse_list("range(0.1, 0.5, 0.1)").unwrap(),
            [json!(0.1), json!(0.2), json!(0.3), json!(0.4)]
        );
        assert_eq!(
            parse_list("range(8, 33, 8)").unwrap(),
            [json!(8), json!(16), json!(24), json!(32)]
        );
        assert_eq!(
            parse_list("range(1, 0, -0.25)").unwrap(),
            [json!(1.0), json!(0.75), json!(0.5), json!(0.25)]
        );
        assert_eq!(
            parse_list("range(1e-3, 3e-3, 1e-3)").unwrap(),
            [json!(0.001), json!(0.002)]
        );
        assert!(
            parse_list("range(0, 1, 0)")
                .unwrap_err()
                .contains("step must not be 0")
        );
        assert!(
            parse_list("range(0, 1)")
                .unwrap_err()
                .contains("expected range(start")
        );
        assert!(
            parse_list("range(1, 0, 1)")
                .unwrap_err()
                .contains("gives no values")
        );
    }

    #[test]
    fn logspace_gives_exact_powers_of_ten() {
        assert_eq!(
            parse_list("logspace(-4, -2, 3)").unwrap(),
            [json!(1e-4), json!(1e-3), json!(1e-2)]
        );
        assert_eq!(
            parse_list("logspace(-4, -3, 3)").unwrap(),
            [json!(1e-4), json!(3.16227766016838e-4), json!(1e-3)]
        );
        assert_eq!(parse_list("logspace(0, 0, 1)").unwrap(), [json!(1.0)]);
        assert!(
            parse_list("logspace(-4, -2, 0)")
                .unwrap_err()
                .contains("n must be")
        );
    }

    #[test]
    fn grid_flags_add_or_replace_axes_and_accept_helpers_and_strings() {
        let mut sweep = Sweep::from_table(&table(json!({"train.lr": [1e-3, 3e-4]}))).unwrap();
        sweep.apply_grid("train.lr=logspace(-3,-2,2)").unwrap();
        sweep
            .apply_grid("model.backbone=tiny-cnn,resnet18")
            .unwrap();
        sweep
            .apply_grid("model.fusion=choice(concat, \"mean\")")
            .unwrap();
        assert_eq!(sweep.keys(), ["model.backbone", "model.fusion", "train.lr"]);
        assert_eq!(sweep.axes[0].values, [json!("tiny-cnn"), json!("resnet18")]);
        assert_eq!(sweep.axes[1].values, [json!("concat"), json!("mean")]);
        assert_eq!(sweep.axes[2].values, [json!(1e-3), json!(1e-2)]);
        assert_eq!(sweep.points(0, u64::MAX).unwrap().len(), 8);
        assert_eq!(sweep.trial_bound(), Some(8));
        // The limit is checked on the count, before anything is expanded.
        let err = sweep.points(0, 7).unwrap_err();
        assert!(err[0].message.starts_with("8 trials"), "{err:?}");
        assert!(err[0].message.contains("--max-trials"), "{err:?}");
        let err = sweep.apply_grid("train.lr").unwrap_err();
        assert!(err.message.contains("expected KEY=V1,V2"));
        let err = sweep.apply_grid("train.lr=1e-3,0.001").unwrap_err();
        assert!(err.message.contains("appears twice"), "{err:?}");
        let err = sweep.apply_grid("name=a,b").unwrap_err();
        assert!(
            err.message.contains("not a key that can be swept"),
            "{err:?}"
        );
    }

    #[test]
    fn decimals_parse_exponents_and_signs() {
        let d = Decimal::parse("-1.25e-2").unwrap();
        assert_eq!((d.mantissa, d.scale), (-125, 4));
        assert_eq!(decimal_text(-125, 4), "-0.0125");
        let d = Decimal::parse("3e2").unwrap();
        assert_eq!((d.mantissa, d.scale), (300, 0));
        assert!(Decimal::parse("1.2.3").is_err());
        assert!(Decimal::parse("x").is_err());
    }
}
