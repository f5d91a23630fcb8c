//! Loading an experiment: the layers, lowest priority first, and per-layer checks.
//!
//! 1. built-in defaults (`Experiment::default()`);
//! 2. the `extends` chain, base first (each path relative to the file naming it);
//! 3. the experiment file itself;
//! 4. `GEOEXP_SECTION__KEY=value` environment variables (`GEOEXP_TRAIN__LR=1e-4`);
//! 5. `--set key.path=value` flags, in order;
//! 6. a sweep trial's values (`geoexp sweep`), which replace any of the above.
//!
//! Figment merges the layers and remembers which layer set each value (provenance). Each
//! file is also checked on its own first, with `toml`'s spans, so an unknown key or a wrong
//! type is reported at its file, line and column rather than after merging. Environment
//! variables without `__` (other than `GEOEXP_NAME`/`GEOEXP_SEED`) are settings of the tool,
//! not of the experiment, and are ignored here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value as FigValue};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::Value;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigErrorKind, ConfigErrors, Origin};
use super::keys;
use super::schema::Experiment;
use super::sweep::{NOT_SWEPT, RESERVED, Sweep, SweepProblem};
use super::validate::validate;

/// The largest experiment file geoexp reads (a real one is a few kilobytes).
const MAX_EXPERIMENT_BYTES: u64 = 1 << 20;

/// Prefix of experiment environment variables.
pub const ENV_PREFIX: &str = "GEOEXP_";
const DEFAULT_LAYER: &str = "default";

/// What to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The experiment file.
    pub file: PathBuf,
    /// `--set key.path=value` flags, in order.
    pub sets: Vec<String>,
    /// Environment variables to consider; `None` reads the process environment.
    pub env: Option<Vec<(String, String)>>,
    /// A sweep trial's values (key path → value), applied last.
    pub trial: Vec<(String, Value)>,
}

/// A loaded, validated experiment and where each of its values came from.
pub struct Loaded {
    /// The resolved experiment.
    pub experiment: Experiment,
    /// The experiment file as given.
    pub file: PathBuf,
    /// The files read, base first (canonical paths).
    pub chain: Vec<PathBuf>,
    figment: Figment,
    texts: BTreeMap<PathBuf, String>,
}

impl Loaded {
    /// Where the value at `key` came from (with line and column for files).
    pub fn origin(&self, key: &str) -> Origin {
        let Some(meta) = self.figment.find_metadata(key) else {
            return Origin::Default;
        };
        if let Some(path) = meta.source.as_ref().and_then(|s| s.file_path()) {
            let position = self
                .texts
                .get(path)
                .and_then(|text| key_position(text, key));
            return Origin::File {
                path: path.to_path_buf(),
                position,
            };
        }
        let name = meta.name.as_ref();
        if let Some(var) = name.strip_prefix("env ") {
            Origin::Env(var.to_owned())
        } else if let Some(raw) = name.strip_prefix("--set ") {
            Origin::Set(raw.to_owned())
        } else if let Some(raw) = name.strip_prefix("sweep ") {
            Origin::Sweep(raw.to_owned())
        } else {
            Origin::Default
        }
    }

    /// Priority of the layer a value came from: defaults, then files base first, then the
    /// environment, then flags.
    pub(crate) fn layer_rank(&self, origin: &Origin) -> usize {
        match origin {
            Origin::Default => 0,
            Origin::File { path, .. } => 1 + self.chain.iter().position(|p| p == path).unwrap_or(0),
            Origin::Env(_) => 1 + self.chain.len(),
            Origin::Set(_) => 2 + self.chain.len(),
            Origin::Sweep(_) | Origin::Grid(_) => 3 + self.chain.len(),
        }
    }

    /// Provenance of every settable key, as shown in manifests.
    pub fn provenance(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let config = self.config();
        for k in keys::KEYS.iter().filter(|k| keys::is_leaf(k.path)) {
            if k.path == "extends" || keys::lookup(&config, k.path).is_none() {
                continue;
            }
            out.insert(k.path.to_owned(), self.origin(k.path).label());
        }
        out
    }

    /// Problems of the sweep definition, as errors at the `[sweep]` table's origin.
    pub fn sweep_errors(&self, problems: Vec<SweepProblem>) -> ConfigErrors {
        let origin = self.origin("sweep");
        ConfigErrors(
            problems
                .into_iter()
                .map(|p| ConfigError::invalid(origin.clone(), &p.key, p.message))
                .collect(),
        )
    }

    /// Why `value` cannot be the value of `key` (a type mismatch), if it cannot.
    pub fn value_problem(&self, key: &str, value: &Value) -> Option<String> {
        let trial = FigValue::serialize(value).map(|v| {
            self.figment
                .clone()
                .merge(Layer::single("sweep".into(), key, v))
        });
        match trial {
            Ok(f) => f.extract::<Experiment>().err().map(|e| e.kind.to_string()),
            Err(e) => Some(e.to_string()),
        }
    }

    /// The resolved config as a JSON value (what manifests record and run ids hash).
    ///
    /// The `[sweep]` table is left out: it describes other runs, not this one, so a sweep
    /// trial and a plain `run` with the same values are the same run.
    pub fn config(&self) -> Value {
        let mut config = serde_json::to_value(&self.experiment).unwrap_or(Value::Null);
        if let Some(table) = config.as_object_mut() {
            table.remove("sweep");
        }
        config
    }

    /// Resolves a path-valued setting relative to the file that set `key` (or the working
    /// directory for environment variables and flags).
    pub fn resolve_path(&self, key: &str, value: &str) -> PathBuf {
        self.base_dir(key).join(value)
    }

    /// The folder relative paths in `key` are resolved against: that of the file that set
    /// it, or the working directory (empty path) for defaults, variables and flags.
    pub fn base_dir(&self, key: &str) -> PathBuf {
        match self.origin(key) {
            Origin::File { path, .. } => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            _ => PathBuf::new(),
        }
    }
}

/// Loads, merges and validates an experiment.
///
/// # Errors
/// Every problem found, each naming its file and line, variable, or flag.
pub fn load(options: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let (chain, texts) = read_chain(&options.file)?;
    let mut errors = Vec::new();
    let mut figment = Figment::new().merge(Layer::new(
        DEFAULT_LAYER,
        FigValue::serialize(Experiment::default())
            .ok()
            .and_then(FigValue::into_dict)
            .unwrap_or_default(),
    ));
    for path in &chain {
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = match &options.env {
        Some(vars) => vars.clone(),
        None => geoexp_vars(&mut errors),
    };
    for layer in env_layers(&env, &mut errors) {
        figment = figment.merge(layer);
    }
    for layer in set_layers(&options.sets, &mut errors) {
        figment = figment.merge(layer);
    }
    for (key, value) in &options.trial {
        match FigValue::serialize(value) {
            Ok(v) => figment = figment.merge(Layer::single(format!("sweep {key}={value}"), key, v)),
            Err(e) => errors.push(ConfigError::invalid(
                Origin::Sweep(format!("{key}={value}")),
                key,
                e.to_string(),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let mut loaded = Loaded {
        experiment: Experiment::default(),
        file: options.file.clone(),
        chain,
        figment,
        texts,
    };
    loaded.experiment = match loaded.figment.extract::<Experiment>() {
        Ok(e) => e,
        Err(err) => {
            let errors = err
                .into_iter()
                .map(|e| {
                    let key = e.path.join(".");
                    ConfigError {
                        origin: loaded.origin(&key),
                        key: Some(key),
                        kind: ConfigErrorKind::Type(e.kind.to_string()),
                    }
                })
                .collect();
            return Err(ConfigErrors(errors));
        }
    };
    if matches!(loaded.origin("name"), Origin::Default)
        && let Some(stem) = options.file.file_stem()
    {
        loaded.experiment.name = stem.to_string_lossy().into_owned();
    }
    prefer_later_dataset_choice(&mut loaded);
    drop_fields_of_an_earlier_scheduler(&mut loaded);
    let mut problems = validate(&loaded);
    problems.extend(sweep_errors(&loaded));
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigErrors(problems))
    }
}

/// `dataset.dirs` and `dataset.synthetic` exclude each other, and TOML cannot unset a
/// value: so when they come from different layers, the later layer's choice wins (a file
/// that extends a synthetic experiment and sets `dirs` reads those dirs). Set in the same
/// layer, both stay and validation reports the conflict.
fn prefer_later_dataset_choice(loaded: &mut Loaded) {
    let d = &loaded.experiment.dataset;
    if d.dirs.is_empty() || d.synthetic.is_none() {
        return;
    }
    let dirs = loaded.layer_rank(&loaded.origin("dataset.dirs"));
    let synthetic = loaded.layer_rank(&loaded.origin("dataset.synthetic"));
    let d = &mut loaded.experiment.dataset;
    match dirs.cmp(&synthetic) {
        std::cmp::Ordering::Greater => d.synthetic = None,
        std::cmp::Ordering::Less => d.dirs.clear(),
        std::cmp::Ordering::Equal => {}
    }
}

/// Whether a scheduler field was set in a layer before the one that chose the scheduler
/// kind: a later layer that changes the kind (an extending file, a variable, `--set`, a
/// sweep) leaves the base's fields for another kind behind.
pub(crate) fn set_before_the_kind(loaded: &Loaded, field: &str) -> bool {
    let kind = loaded.layer_rank(&loaded.origin("train.scheduler.kind"));
    loaded.layer_rank(&loaded.origin(&format!("train.scheduler.{field}"))) < kind
}

/// Resets the fields the scheduler kind does not read to their defaults when they were
/// set before the kind was chosen (see [`set_before_the_kind`]), so changing the kind in a
/// later layer gives the same experiment as writing that kind alone.
fn drop_fields_of_an_earlier_scheduler(loaded: &mut Loaded) {
    use super::schema::SchedulerConfig;
    let kind = loaded.experiment.train.scheduler.kind;
    let stale: Vec<&str> = SchedulerConfig::FIELDS
        .iter()
        .copied()
        .filter(|f| !kind.fields().contains(f) && set_before_the_kind(loaded, f))
        .collect();
    let defaults = SchedulerConfig::default();
    let s = &mut loaded.experiment.train.scheduler;
    for field in stale {
        match field {
            "factor" => s.factor = defaults.factor,
            "patience" => s.patience = defaults.patience,
            "step_size" => s.step_size = defaults.step_size,
            "min_lr" => s.min_lr = defaults.min_lr,
            "pct_start" => s.pct_start = defaults.pct_start,
            "warmup_epochs" => s.warmup_epochs = defaults.warmup_epochs,
            _ => {}
        }
    }
}

/// Checks the sweep definition and that every axis value fits the swept key.
fn sweep_errors(loaded: &Loaded) -> Vec<ConfigError> {
    let origin = loaded.origin("sweep");
    let sweep = match Sweep::from_table(&loaded.experiment.sweep) {
        Ok(sweep) => sweep,
        Err(problems) => return loaded.sweep_errors(problems).0,
    };
    let mut errors = Vec::new();
    for axis in &sweep.axes {
        let key = format!("sweep.\"{}\"", axis.key);
        // A distribution's draws lie between its bounds: both must fit the key.
        let bounds = axis.distribution.map(|d| d.bounds().to_vec());
        for value in bounds.as_ref().unwrap_or(&axis.values) {
            if let Some(problem) = loaded.value_problem(&axis.key, value) {
                errors.push(ConfigError::invalid(
                    origin.clone(),
                    &key,
                    format!("value {value}: {problem}"),
                ));
            }
        }
    }
    errors
}

/// Reads the file and its `extends` chain, checking each file's keys and types on its own.
fn read_chain(file: &Path) -> Result<(Vec<PathBuf>, BTreeMap<PathBuf, String>), ConfigErrors> {
    let mut chain: Vec<PathBuf> = Vec::new();
    let mut texts = BTreeMap::new();
    let mut next = Some((file.to_path_buf(), None::<Origin>));
    while let Some((path, named_by)) = next.take() {
        let read_error = |e: std::io::Error| ConfigError {
            origin: named_by.clone().unwrap_or(Origin::File {
                path: path.clone(),
                position: None,
            }),
            key: named_by.as_ref().map(|_| "extends".to_owned()),
            kind: ConfigErrorKind::Read(format!("{}: {e}", path.display())),
        };
        let canonical = path.canonicalize().map_err(read_error)?;
        if let Some(start) = chain.iter().position(|p| p == &canonical) {
            // In the order the files name each other: a → b → c → a.
            let mut cycle: Vec<PathBuf> = chain[start..].to_vec();
            cycle.push(canonical);
            return Err(ConfigError {
                origin: named_by.unwrap_or(Origin::Default),
                key: Some("extends".into()),
                kind: ConfigErrorKind::ExtendsCycle(cycle),
            }
            .into());
        }
        // Only a regular file of a sane size: `extends = "/dev/zero"` would read until
        // memory runs out, and a FIFO would wait forever.
        let meta = std::fs::metadata(&canonical).map_err(read_error)?;
        if !meta.is_file() {
            return Err(read_error(std::io::Error::other("not a regular file")).into());
        }
        if meta.len() > MAX_EXPERIMENT_BYTES {
            return Err(read_error(std::io::Error::other(format!(
                "{} bytes; an experiment file may have at most {MAX_EXPERIMENT_BYTES}",
                meta.len()
            )))
            .into());
        }
        let text = std::fs::read_to_string(&canonical).map_err(read_error)?;
        let extends = check_file(&canonical, &text)?;
        if let Some((base, position)) = extends {
            let dir = canonical.parent().unwrap_or(Path::new("."));
            next = Some((
                dir.join(base),
                Some(Origin::File {
                    path: canonical.clone(),
                    position,
                }),
            ));
        }
        texts.insert(canonical.clone(), text);
        chain.push(canonical);
    }
    chain.reverse();
    Ok((chain, texts))
}

/// A file's `extends` value and its line and column.
type Extends = (String, Option<(usize, usize)>);

/// Checks one file: syntax, unknown keys, then types. Returns its `extends` value.
fn check_file(path: &Path, text: &str) -> Result<Option<Extends>, ConfigErrors> {
    let at = |offset: usize| Origin::File {
        path: path.to_path_buf(),
        position: Some(line_col(text, offset)),
    };
    let table = DeTable::parse(text).map_err(|e| ConfigError {
        origin: at(e.span().map_or(0, |s| s.start)),
        key: None,
        kind: ConfigErrorKind::Syntax(e.message().to_owned()),
    })?;
    let mut errors = Vec::new();
    check_keys(table.get_ref(), "", &at, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    if let Err(e) = toml::from_str::<Experiment>(text) {
        let offset = e.span().map_or(0, |s| s.start);
        let key = e.span().and_then(|s| key_at(table.get_ref(), "", s.start));
        return Err(ConfigError {
            origin: at(offset),
            key,
            kind: ConfigErrorKind::Type(e.message().to_owned()),
        }
        .into());
    }
    Ok(table.get_ref().get("extends").and_then(|v| {
        v.get_ref()
            .as_str()
            .map(|s| (s.to_owned(), Some(line_col(text, v.span().start))))
    }))
}

fn check_keys(
    table: &DeTable<'_>,
    prefix: &str,
    at: &dyn Fn(usize) -> Origin,
    errors: &mut Vec<ConfigError>,
) {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        if prefix == "sweep" {
            let axis: &str = key.get_ref();
            if !RESERVED.contains(&axis) {
                check_sweep_axis(axis, key.span().start, value.get_ref(), at, errors);
            }
            continue;
        }
        if keys::is_leaf(&path) && path != "sweep" {
            continue;
        }
        if keys::is_table(&path) || path == "sweep" {
            if let DeValue::Table(inner) = value.get_ref() {
                check_keys(inner, &path, at, errors);
            }
            continue;
        }
        errors.push(ConfigError {
            origin: at(key.span().start),
            key: Some(path.clone()),
            kind: ConfigErrorKind::UnknownKey {
                suggestion: keys::suggest(&path),
            },
        });
    }
}

/// A `[sweep]` axis must be a key that can be swept; unquoted dotted keys
/// (`train.lr = [...]`) arrive as nested tables and are followed.
fn check_sweep_axis(
    axis: &str,
    offset: usize,
    value: &DeValue<'_>,
    at: &dyn Fn(usize) -> Origin,
    errors: &mut Vec<ConfigError>,
) {
    if keys::is_leaf(axis) && !NOT_SWEPT.contains(&axis) {
        return;
    }
    if keys::is_table(axis)
        && let DeValue::Table(inner) = value
    {
        for (k, v) in inner.iter() {
            let path = join(axis, k.get_ref());
            check_sweep_axis(&path, k.span().start, v.get_ref(), at, errors);
        }
        return;
    }
    errors.push(ConfigError {
        origin: at(offset),
        key: Some(format!("sweep.\"{axis}\"")),
        kind: ConfigErrorKind::Invalid(match keys::suggest(axis) {
            Some(s) if keys::is_leaf(s) && !NOT_SWEPT.contains(&s) => {
                format!("`{axis}` is not a key that can be swept; did you mean `{s}`?")
            }
            _ => format!("`{axis}` is not a key that can be swept"),
        }),
    });
}

/// The deepest key whose value span contains `offset`.
fn key_at(table: &DeTable<'_>, prefix: &str, offset: usize) -> Option<String> {
    for (key, value) in table.iter() {
        let span = value.span();
        let path = join(prefix, key.get_ref());
        if span.contains(&offset) || key.span().contains(&offset) {
            if let DeValue::Table(inner) = value.get_ref() {
                return key_at(inner, &path, offset).or(Some(path));
            }
            return Some(path);
        }
        // `[section]` headers: the table's span may not cover its body, so look inside.
        if let DeValue::Table(inner) = value.get_ref()
            && let Some(found) = key_at(inner, &path, offset)
        {
            return Some(found);
        }
    }
    None
}

/// Line and column of the key `path` in a file's text.
fn key_position(text: &str, path: &str) -> Option<(usize, usize)> {
    let table = DeTable::parse(text).ok()?;
    let mut current = table.get_ref();
    let segments: Vec<&str> = path.split('.').collect();
    for (i, segment) in segments.iter().enumerate() {
        let (key, value) = current.iter().find(|(k, _)| {
            let k: &str = k.get_ref();
            k == *segment
        })?;
        if i + 1 == segments.len() {
            return Some(line_col(text, key.span().start));
        }
        match value.get_ref() {
            DeValue::Table(inner) => current = inner,
            _ => return Some(line_col(text, key.span().start)),
        }
    }
    None
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A figment layer with a name that says where its values came from.
struct Layer {
    name: String,
    dict: Dict,
}

impl Layer {
    fn new(name: &str, dict: Dict) -> Layer {
        Layer {
            name: name.to_owned(),
            dict,
        }
    }

    fn single(name: String, path: &str, value: FigValue) -> Layer {
        let dict = figment::util::nest(path, value)
            .into_dict()
            .unwrap_or_default();
        Layer { name, dict }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// A value typed on a command line or in an environment variable: TOML syntax when it
/// parses (`3e-4`, `[1, 2]`, `"x"`), otherwise the raw text as a string (`golf`, `HR`).
fn parse_value(raw: &str) -> FigValue {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| FigValue::serialize(v).ok())
        .unwrap_or_else(|| FigValue::from(raw.to_owned()))
}

fn check_override_key(path: &str, origin: Origin, errors: &mut Vec<ConfigError>) -> bool {
    if keys::is_leaf(path) && path != "extends" {
        return true;
    }
    let kind = if keys::is_table(path) {
        ConfigErrorKind::Invalid(format!(
            "`{path}` is a table; set one of its keys, e.g. `{}`",
            keys::KEYS
                .iter()
                .find(|k| k.path.starts_with(&format!("{path}.")))
                .map_or("", |k| k.path)
        ))
    } else if path == "extends" {
        ConfigErrorKind::Invalid("`extends` can only be set in a file".into())
    } else {
        ConfigErrorKind::UnknownKey {
            suggestion: keys::suggest(path),
        }
    };
    errors.push(ConfigError {
        origin,
        key: Some(path.to_owned()),
        kind,
    });
    false
}

/// The process's `GEOEXP_*` variables. Only those are read, so a variable geoexp has no
/// business with cannot stop it (`std::env::vars` panics on any non-UTF-8 one); a
/// `GEOEXP_*` one that is not UTF-8 is an error naming it.
fn geoexp_vars(errors: &mut Vec<ConfigError>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let lossy = name.to_string_lossy();
        if !lossy.starts_with(ENV_PREFIX) {
            continue;
        }
        match (name.to_str(), value.into_string()) {
            (Some(name), Ok(value)) => out.push((name.to_owned(), value)),
            _ => errors.push(ConfigError {
                origin: Origin::Env(lossy.into_owned()),
                key: None,
                kind: ConfigErrorKind::NotUtf8,
            }),
        }
    }
    out
}

fn env_layers(vars: &[(String, String)], errors: &mut Vec<ConfigError>) -> Vec<Layer> {
    let mut vars: Vec<&(String, String)> = vars
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    let mut layers = Vec::new();
    for (var, raw) in vars {
        let rest = &var[ENV_PREFIX.len()..];
        let top_level = matches!(rest, "NAME" | "SEED");
        if !rest.contains("__") && !top_level {
            // A tool setting (GEOEXP_LOG, GEOEXP_SERVE_PORT, ...), or a key spelled with one
            // underscore where two were meant.
            if let Some(meant) = single_underscore_key(rest) {
                tracing::warn!(
                    "environment variable {var} is not read; did you mean {ENV_PREFIX}{}?",
                    meant.to_ascii_uppercase().replace('.', "__")
                );
            }
            continue;
        }
        let path = rest.to_ascii_lowercase().replace("__", ".");
        if check_override_key(&path, Origin::Env(var.clone()), errors) {
            layers.push(Layer::single(format!("env {var}"), &path, parse_value(raw)));
        }
    }
    layers
}

/// The key a variable spelled with single underscores may have meant: `TRAIN_LR` →
/// `train.lr`, `DATASET_SYNTHETIC_LOCATIONS` → `dataset.synthetic.locations` (each `_`
/// tried as a separator, since key names have underscores of their own).
fn single_underscore_key(rest: &str) -> Option<String> {
    let lower = rest.to_ascii_lowercase();
    let positions: Vec<usize> = lower.match_indices('_').map(|(i, _)| i).collect();
    if positions.is_empty() || positions.len() > 8 {
        return None;
    }
    (1u32..1 << positions.len())
        .map(|mask| {
            let mut path = lower.clone().into_bytes();
            for (bit, &i) in positions.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    path[i] = b'.';
                }
            }
            String::from_utf8_lossy(&path).into_owned()
        })
        .find(|path| keys::is_leaf(path))
}

fn set_layers(sets: &[String], errors: &mut Vec<ConfigError>) -> Vec<Layer> {
    let mut layers = Vec::new();
    for raw in sets {
        let Some((path, value)) = raw.split_once('=') else {
            errors.push(ConfigError {
                origin: Origin::Set(raw.clone()),
                key: None,
                kind: ConfigErrorKind::BadSetFlag,
            });
            continue;
        };
        let path = path.trim();
        if check_override_key(path, Origin::Set(raw.clone()), errors) {
            layers.push(Layer::single(
                format!("--set {raw}"),
                path,
                parse_value(value.trim()),
            ));
        }
    }
    layers
}
