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

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys;

/// Keys of the `[sweep]` table that are not axes.
pub const RESERVED: &[&str] = &["zip", "exclude", "seeds"];
/// Keys that cannot be swept.
pub const NOT_SWEPT: &[&str] = &["name", "extends", "sweep"];
/// More values than this in one helper is almost certainly a typo (a step of 1e-5 for 1e-5).
const MAX_VALUES: usize = 10_000;

/// One swept key and its values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// Key path, e.g. `train.lr`.
    pub key: String,
    /// Its values, in order.
    pub values: Vec<Value>,
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
                Ok(values) => sweep.axes.push(Axis { key, values }),
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
        match self.axes.iter_mut().find(|a| a.key == key) {
            Some(axis) => axis.values = values,
            None => {
                self.axes.push(Axis {
                    key: key.to_owned(),
                    values,
                });
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
        problems
    }

    /// How many trials the definition makes before `exclude` drops any: the product of
    /// the crossed axes' lengths (a zip group counts once) times `seeds`. `None` when that
    /// does not even fit a `u64`.
    pub fn trial_bound(&self) -> Option<u64> {
        let mut total: u64 = self.seeds.max(1);
        let mut counted = BTreeSet::new();
        for a in &self.axes {
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

    /// Every combination, in order: axes crossed (zip groups paired), excludes dropped,
    /// then each repeated with seeds `base_seed, base_seed+1, …`.
    ///
    /// # Errors
    /// When zip groups or excludes do not fit the axes (after `--grid` flags changed them),
    /// or the sweep would make more than `max_trials` trials (counted before `exclude`,
    /// and before anything is expanded).
    pub fn points(&self, base_seed: u64, max_trials: u64) -> Result<Vec<Point>, Vec<SweepProblem>> {
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
        // Units are crossed; a unit is one axis or one zip group (placed at its first key).
        let mut units: Vec<Vec<&Axis>> = Vec::new();
        let mut placed = BTreeSet::new();
        for a in &self.axes {
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
        let mut points: Vec<Point> = vec![Vec::new()];
        for unit in &units {
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
        Ok(out)
    }
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

fn axis_values(value: &Value) -> Result<Vec<Value>, String> {
    let values = match value {
        Value::Array(values) => values.clone(),
        Value::String(s) if helper_call(s).is_some() => parse_list(s)?,
        _ => {
            return Err(format!(
                "must be a list of values (e.g. [1e-3, 3e-4]) or one of \
                 \"range(start, stop, step)\", \"logspace(a, b, n)\", \"choice(v1, v2)\"; got {value}"
            ));
        }
    };
    if values.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(values)
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
