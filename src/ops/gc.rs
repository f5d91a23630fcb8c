//! `geoexp cache` and `geoexp gc`: what the cache holds, and removing what no run needs.
//!
//! An entry is **referenced** when its (stage, key) appears in a manifest under the runs
//! directory (sweep trials are runs like any other). `gc` removes:
//!
//! - unreferenced entries,
//! - work directories of trainings whose lock is dead (interrupted; a rerun would resume
//!   them, after `gc` it starts over),
//! - abandoned temporaries (of processes that are gone, or older than a day),
//! - registrations and lock files of processes that are gone;
//!
//! and, only when asked (`--older-than`, `--max-size`), whole run folders, oldest manifest
//! first, never those `--keep-runs` pins, until the budget holds; the entries only those
//! runs referenced then go too.
//!
//! It never removes an entry that a live process has registered or holds the lock of (see
//! [`crate::graph::live`] for why that is enough while runs and sweeps go on), nor a
//! training in progress. A manifest it cannot read could reference anything, so `gc`
//! refuses to remove entries while one exists, unless forced.
//!
//! Every entry is renamed aside before its files are deleted, so a crash in the middle
//! leaves nothing a later run takes as complete; a failed rename stops the pass with the
//! error, everything not yet reached untouched.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::graph::live::{LiveEntries, gc_lock, live_entries};
use crate::graph::lock::{is_stale, live_holder, remove_if_stale};
use crate::graph::manifest::{MANIFEST_FILE, RunInfo};
use crate::graph::{GraphError, StageKey, Store};

use super::CACHE_DIR;
use super::ls::{Skipped, find_manifests};

/// What `gc` may do beyond removing unreferenced things.
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    /// The runs directory.
    pub runs_dir: PathBuf,
    /// Only say what would be removed.
    pub dry_run: bool,
    /// Runs (`name/id` globs) never removed by `older_than` or `max_size`.
    pub keep_runs: Vec<String>,
    /// Remove run folders whose manifest is older than this (unless pinned).
    pub older_than: Option<Duration>,
    /// Remove the oldest unpinned run folders until the cache is at most this many bytes.
    pub max_size: Option<u64>,
    /// Remove entries even though some manifests cannot be read.
    pub force: bool,
}

/// Why `cache` or `gc` could not do its work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// The runs directory does not exist.
    #[error("{}: no such runs directory", .0.display())]
    NoRunsDir(PathBuf),
    /// The runs directory cannot be listed.
    #[error("listing {}", path.display())]
    List {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Some manifests cannot be read, so what their runs use is unknown.
    #[error(
        "{} manifest(s) cannot be read, so gc cannot tell which entries their runs use; nothing \
         was removed. Fix or remove them ({}), or pass --force to treat them as referencing nothing",
        .0.len(),
        .0.iter().take(3).map(|s| s.path.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    UnreadableManifests(Vec<Skipped>),
    /// A `--keep-runs` pattern is not a glob.
    #[error("--keep-runs {pattern}: {message}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// Removing something failed; nothing after it was touched.
    #[error("gc stopped after removing {removed} item(s)")]
    Removal {
        /// Items removed before the failure.
        removed: usize,
        /// The failure.
        #[source]
        source: GraphError,
    },
    /// A live registration could not be read, so what it pins is unknown.
    #[error(
        "the registrations of running processes cannot all be read ({}), so gc cannot tell what \
         they use; nothing was removed",
        .0.join("; ")
    )]
    UnreadableRegistrations(Vec<String>),
    /// The pass lost its lock (it was stopped for longer than a heartbeat allows).
    #[error(
        "gc stopped after removing {removed} item(s): it lost its lock on the cache (was it \
         suspended?); run it again"
    )]
    LostLock {
        /// Items removed before.
        removed: usize,
    },
    /// The cache could not be locked.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// One run found under the runs directory.
#[derive(Clone, Debug)]
pub struct RunRef {
    /// `name/id`.
    pub label: String,
    /// Its folder.
    pub dir: PathBuf,
    /// When its manifest was last written.
    pub modified: SystemTime,
    /// The entries it references, as (stage, key).
    pub entries: Vec<(String, String)>,
}

/// State of one cache entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Named by at least one manifest.
    Referenced,
    /// Named by no manifest, but a live process registered it or holds its lock.
    InUse,
    /// Named by nothing.
    Unreferenced,
}

/// One cache entry (or work directory) with its size.
#[derive(Clone, Debug, Serialize)]
pub struct EntryInfo {
    /// Stage name.
    pub stage: String,
    /// Key.
    pub key: String,
    /// Bytes of its files.
    pub bytes: u64,
    /// Runs naming it.
    pub runs: usize,
    /// Whether a live process registered it or holds its lock.
    pub live: bool,
}

impl EntryInfo {
    /// What `gc` makes of it.
    pub fn state(&self) -> EntryState {
        if self.runs > 0 {
            EntryState::Referenced
        } else if self.live {
            EntryState::InUse
        } else {
            EntryState::Unreferenced
        }
    }
}

/// Everything `cache` and `gc` look at.
#[derive(Debug)]
pub struct Scan {
    /// The cache.
    pub store: Store,
    /// Runs with readable manifests.
    pub runs: Vec<RunRef>,
    /// Manifests that could not be read.
    pub unreadable: Vec<Skipped>,
    /// Complete or not, every entry directory, by stage then key.
    pub entries: Vec<EntryInfo>,
    /// Work directories (trainings), with `live` telling in progress from interrupted.
    pub work: Vec<EntryInfo>,
    /// Temporaries: path, bytes, abandoned.
    pub temporaries: Vec<(PathBuf, u64, bool)>,
    /// Live registrations.
    pub live: LiveEntries,
    /// Lock files whose owner is gone.
    pub stale_locks: Vec<PathBuf>,
}

/// Reads the runs directory: live registrations first, then the manifests (see
/// [`crate::graph::live`] for why in that order), then the cache.
///
/// # Errors
/// When the runs directory does not exist or cannot be listed.
pub fn scan(runs_dir: &Path) -> Result<Scan, GcError> {
    if !runs_dir.is_dir() {
        return Err(GcError::NoRunsDir(runs_dir.to_path_buf()));
    }
    let store = Store::new(runs_dir.join(CACHE_DIR));
    let live = live_entries(&store, None);
    let (paths, mut unreadable) = find_manifests(runs_dir).map_err(|e| match e {
        super::ls::LsError::ReadDir { path, source } => GcError::List { path, source },
        _ => GcError::NoRunsDir(runs_dir.to_path_buf()),
    })?;
    let parsed: Vec<Result<RunRef, Skipped>> = paths.par_iter().map(|p| read_refs(p)).collect();
    let mut runs = Vec::with_capacity(parsed.len());
    for p in parsed {
        match p {
            Ok(r) => runs.push(r),
            Err(s) => unreadable.push(s),
        }
    }
    runs.sort_by(|a, b| a.label.cmp(&b.label));
    let mut refs: HashMap<(&str, &str), usize> = HashMap::new();
    for r in &runs {
        for (s, k) in &r.entries {
            *refs.entry((s.as_str(), k.as_str())).or_default() += 1;
        }
    }
    let stages = store.stages();
    let mut entries = Vec::new();
    let mut work = Vec::new();
    let mut temporaries = Vec::new();
    let mut stale_locks = Vec::new();
    for stage in &stages {
        let keys = store.keys(stage);
        entries.par_extend(keys.par_iter().map(|key| {
            EntryInfo {
                stage: stage.clone(),
                key: key.as_str().to_owned(),
                bytes: dir_bytes(&store.entry_dir(stage, key)),
                runs: refs
                    .get(&(stage.as_str(), key.as_str()))
                    .copied()
                    .unwrap_or(0),
                live: is_live(&store, &live, stage, key),
            }
        }));
        work.extend(store.work_keys(stage).iter().map(|key| EntryInfo {
            stage: stage.clone(),
            key: key.as_str().to_owned(),
            bytes: dir_bytes(&store.work_dir(stage, key)),
            runs: 0,
            live: is_live(&store, &live, stage, key),
        }));
        temporaries.extend(
            store
                .temporaries(stage)
                .into_iter()
                .map(|(path, abandoned)| {
                    let bytes = dir_bytes(&path);
                    (path, bytes, abandoned)
                }),
        );
        if let Ok(dir) = fs::read_dir(store.root().join(stage).join(".locks")) {
            stale_locks.extend(
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| is_stale(p)),
            );
        }
    }
    temporaries.extend(abandoned_run_folders(runs_dir));
    Ok(Scan {
        store,
        runs,
        unreadable,
        entries,
        work,
        temporaries,
        live,
        stale_locks,
    })
}

/// Run folders a gc pass renamed aside (`<name>/.gc-<id>-<pid>`) and could not finish
/// removing, when that pass is over.
fn abandoned_run_folders(runs_dir: &Path) -> Vec<(PathBuf, u64, bool)> {
    let Ok(experiments) = super::ls::subfolders(runs_dir, true) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for exp in experiments {
        for e in fs::read_dir(&exp).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(RUN_ASIDE_PREFIX) else {
                continue;
            };
            let pid = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| p != std::process::id()) {
                let path = e.path();
                let bytes = dir_bytes(&path);
                out.push((path, bytes, true));
            }
        }
    }
    out
}

fn is_live(store: &Store, live: &LiveEntries, stage: &str, key: &StageKey) -> bool {
    live.entries
        .contains(&(stage.to_owned(), key.as_str().to_owned()))
        || live_holder(&store.lock_path(stage, key)).is_some()
}

/// The stage keys a manifest names: only `run` and each stage's `key` are read.
fn read_refs(path: &Path) -> Result<RunRef, Skipped> {
    #[derive(Deserialize)]
    struct Refs {
        run: RunInfo,
        #[serde(default)]
        stages: BTreeMap<String, KeyOnly>,
    }
    #[derive(Deserialize)]
    struct KeyOnly {
        key: String,
    }
    let skipped = |problem: String| Skipped {
        path: path.to_path_buf(),
        problem,
    };
    let text =
        fs::read_to_string(path).map_err(|e| skipped(format!("cannot read the manifest: {e}")))?;
    let refs: Refs = toml::from_str(&text)
        .map_err(|e| skipped(format!("unreadable manifest: {}", e.message().trim_end())))?;
    let modified = fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(RunRef {
        label: format!("{}/{}", refs.run.name, refs.run.id),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        modified,
        entries: refs
            .stages
            .into_iter()
            .map(|(stage, k)| (stage, k.key))
            .collect(),
    })
}

/// Total size of the files under `dir` (0 when it cannot be read). Links are not followed.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(listing) = fs::read_dir(dir) else {
        return fs::symlink_metadata(dir).map_or(0, |m| m.len());
    };
    listing
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// One stage's line of `geoexp cache`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StageUsage {
    /// Stage name (or `total`).
    pub stage: String,
    /// Entries.
    pub entries: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Entries some manifest names.
    pub referenced: usize,
    /// Their bytes.
    pub referenced_bytes: u64,
    /// Entries named by nothing (`gc` removes them).
    pub unreferenced: usize,
    /// Their bytes.
    pub unreferenced_bytes: u64,
    /// Entries only a live process uses.
    pub in_use: usize,
    /// Trainings in progress (work directories of a live process).
    pub in_progress: usize,
    /// Trainings interrupted (work directories whose process is gone).
    pub interrupted: usize,
    /// Bytes of work directories.
    pub work_bytes: u64,
}

/// What `geoexp cache` prints.
#[derive(Clone, Debug, Serialize)]
pub struct CacheReport {
    /// One line per stage, then `total`.
    pub stages: Vec<StageUsage>,
    /// Runs found.
    pub runs: usize,
    /// Manifests that could not be read.
    pub unreadable: Vec<PathBuf>,
    /// Live processes using the cache.
    pub live_processes: usize,
}

/// Per-stage usage of the cache under `runs_dir`.
///
/// # Errors
/// When the runs directory does not exist or cannot be listed.
pub fn cache(runs_dir: &Path) -> Result<CacheReport, GcError> {
    let scan = scan(runs_dir)?;
    let mut by_stage: BTreeMap<&str, StageUsage> = BTreeMap::new();
    for e in &scan.entries {
        let u = by_stage.entry(&e.stage).or_default();
        u.entries += 1;
        u.bytes += e.bytes;
        match e.state() {
            EntryState::Referenced => {
                u.referenced += 1;
                u.referenced_bytes += e.bytes;
            }
            EntryState::InUse => u.in_use += 1,
            EntryState::Unreferenced => {
                u.unreferenced += 1;
                u.unreferenced_bytes += e.bytes;
            }
        }
    }
    for w in &scan.work {
        let u = by_stage.entry(&w.stage).or_default();
        if w.live {
            u.in_progress += 1;
        } else {
            u.interrupted += 1;
        }
        u.work_bytes += w.bytes;
    }
    let mut stages: Vec<StageUsage> = by_stage
        .into_iter()
        .map(|(name, mut u)| {
            u.stage = name.to_owned();
            u
        })
        .collect();
    let mut total = StageUsage {
        stage: "total".into(),
        ..StageUsage::default()
    };
    for u in &stages {
        total.entries += u.entries;
        total.bytes += u.bytes;
        total.referenced += u.referenced;
        total.referenced_bytes += u.referenced_bytes;
        total.unreferenced += u.unreferenced;
        total.unreferenced_bytes += u.unreferenced_bytes;
        total.in_use += u.in_use;
        total.in_progress += u.in_progress;
        total.interrupted += u.interrupted;
        total.work_bytes += u.work_bytes;
    }
    stages.push(total);
    Ok(CacheReport {
        stages,
        runs: scan.runs.len(),
        unreadable: scan.unreadable.into_iter().map(|s| s.path).collect(),
        live_processes: scan.live.processes,
    })
}

/// One thing `gc` removed (or would remove).
#[derive(Clone, Debug, Serialize)]
pub struct Removal {
    /// What it is.
    pub kind: RemovalKind,
    /// `name/id` for runs, `stage key` for entries and work, the path otherwise.
    pub what: String,
    /// Bytes it frees.
    pub bytes: u64,
    /// Why it goes.
    pub why: String,
}

/// Kinds of things `gc` removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalKind {
    /// A run folder (by `--older-than` or `--max-size`).
    Run,
    /// A cache entry.
    Entry,
    /// The work directory of an interrupted training.
    Work,
    /// An abandoned temporary directory.
    Temporary,
    /// A registration or lock file of a process that is gone.
    StaleLock,
}

/// What `gc` did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Serialize)]
pub struct GcReport {
    /// Whether nothing was removed on purpose.
    pub dry_run: bool,
    /// Everything removed, in the order removed.
    pub removed: Vec<Removal>,
    /// Bytes freed.
    pub freed: u64,
    /// Bytes in the cache (entries and work directories) before.
    pub before: u64,
    /// Bytes in the cache after.
    pub after: u64,
    /// Runs kept.
    pub runs_kept: usize,
    /// Entries kept because a live process uses them and no manifest names them yet.
    pub in_use_kept: usize,
    /// Manifests that could not be read (with `force`, or in a dry run).
    pub unreadable: Vec<PathBuf>,
    /// `max_size` could not be met without removing pinned runs.
    pub over_budget: bool,
}

/// Collects garbage under `options.runs_dir` (see the module docs).
///
/// # Errors
/// See [`GcError`]; on a failed removal, nothing after it was touched.
pub fn gc(options: &GcOptions) -> Result<GcReport, GcError> {
    let keep = pins(&options.keep_runs)?;
    let store = Store::new(options.runs_dir.join(CACHE_DIR));
    if !options.runs_dir.is_dir() {
        return Err(GcError::NoRunsDir(options.runs_dir.clone()));
    }
    // A dry run changes nothing, so it need not keep runs from starting.
    let lock = if options.dry_run {
        None
    } else {
        Some(gc_lock(&store, |_| {})?)
    };
    let scan = scan(&options.runs_dir)?;
    if !scan.live.unreadable.is_empty() && !options.dry_run {
        return Err(GcError::UnreadableRegistrations(scan.live.unreadable));
    }
    if !scan.unreadable.is_empty() && !options.force && !options.dry_run {
        return Err(GcError::UnreadableManifests(scan.unreadable));
    }
    let plan = plan(&scan, options, &keep);
    let mut report = GcReport {
        dry_run: options.dry_run,
        removed: Vec::new(),
        freed: 0,
        before: plan.before,
        after: plan.before,
        runs_kept: scan.runs.len() - plan.runs.len(),
        in_use_kept: scan
            .entries
            .iter()
            .filter(|e| e.state() == EntryState::InUse)
            .count(),
        unreadable: scan.unreadable.iter().map(|s| s.path.clone()).collect(),
        over_budget: plan.over_budget,
    };
    for item in plan.items {
        if let Some(lock) = &lock {
            // A pass stopped (suspended) for longer than a lock's heartbeat allows may have
            // lost its lock to a run on another host: its plan is then stale.
            if !lock.still_held() {
                return Err(GcError::LostLock {
                    removed: report.removed.len(),
                });
            }
            let removed = remove(&scan.store, &item).map_err(|source| GcError::Removal {
                removed: report.removed.len(),
                source,
            })?;
            if !removed {
                continue;
            }
        }
        report.freed += item.removal.bytes;
        if matches!(item.removal.kind, RemovalKind::Entry | RemovalKind::Work) {
            report.after -= item.removal.bytes;
        }
        report.removed.push(item.removal);
    }
    Ok(report)
}

/// Compiled `--keep-runs` globs.
fn pins(patterns: &[String]) -> Result<globset::GlobSet, GcError> {
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| GcError::Glob {
                pattern: p.clone(),
                message: e.kind().to_string(),
            })?;
        set.add(glob);
    }
    set.build().map_err(|e| GcError::Glob {
        pattern: patterns.join(" "),
        message: e.to_string(),
    })
}

/// A removal with what it needs to be carried out.
struct Item {
    removal: Removal,
    target: Target,
}

enum Target {
    Run(PathBuf, SystemTime),
    Entry(String, StageKey),
    Work(String, StageKey),
    Path(PathBuf),
    StaleLock(PathBuf),
}

struct Plan {
    items: Vec<Item>,
    runs: Vec<usize>,
    before: u64,
    over_budget: bool,
}

/// Decides what goes, without touching anything.
fn plan(scan: &Scan, options: &GcOptions, keep: &globset::GlobSet) -> Plan {
    let now = SystemTime::now();
    let age = |r: &RunRef| now.duration_since(r.modified).unwrap_or(Duration::ZERO);
    // Removable runs, oldest first.
    let mut candidates: Vec<usize> = (0..scan.runs.len())
        .filter(|&i| !keep.is_match(&scan.runs[i].label))
        .filter(|&i| !scan.live.runs.contains(&scan.runs[i].label))
        .collect();
    candidates.sort_by_key(|&i| (scan.runs[i].modified, scan.runs[i].label.clone()));
    let mut refs: HashMap<(&str, &str), usize> = HashMap::new();
    for r in &scan.runs {
        for (s, k) in &r.entries {
            *refs.entry((s.as_str(), k.as_str())).or_default() += 1;
        }
    }
    let size: HashMap<(&str, &str), &EntryInfo> = scan
        .entries
        .iter()
        .map(|e| ((e.stage.as_str(), e.key.as_str()), e))
        .collect();
    let work_bytes: u64 = scan.work.iter().map(|w| w.bytes).sum();
    let before: u64 = scan.entries.iter().map(|e| e.bytes).sum::<u64>() + work_bytes;
    // What stays: entries that are referenced or live, and trainings in progress.
    let mut kept: u64 = scan
        .entries
        .iter()
        .filter(|e| e.state() != EntryState::Unreferenced)
        .map(|e| e.bytes)
        .sum::<u64>()
        + scan
            .work
            .iter()
            .filter(|w| w.live)
            .map(|w| w.bytes)
            .sum::<u64>();
    let mut dropped_runs = Vec::new();
    let mut why_run: BTreeMap<usize, String> = BTreeMap::new();
    if let Some(limit) = options.older_than {
        for &i in &candidates {
            if age(&scan.runs[i]) > limit {
                drop_run(&scan.runs[i], &mut refs, &size, &mut kept);
                dropped_runs.push(i);
                why_run.insert(
                    i,
                    format!("manifest older than {}", humantime::format_duration(limit)),
                );
            }
        }
    }
    let mut over_budget = false;
    if let Some(budget) = options.max_size {
        for &i in &candidates {
            if kept <= budget {
                break;
            }
            if dropped_runs.contains(&i) {
                continue;
            }
            drop_run(&scan.runs[i], &mut refs, &size, &mut kept);
            dropped_runs.push(i);
            why_run.insert(
                i,
                format!(
                    "oldest unpinned run while the cache exceeds {}",
                    bytesize::ByteSize(budget).display().iec()
                ),
            );
        }
        over_budget = kept > budget;
    }
    let mut items = Vec::new();
    for &i in &dropped_runs {
        let r = &scan.runs[i];
        items.push(Item {
            removal: Removal {
                kind: RemovalKind::Run,
                what: r.label.clone(),
                bytes: copies_bytes(&r.dir),
                why: why_run.remove(&i).unwrap_or_default(),
            },
            target: Target::Run(r.dir.clone(), r.modified),
        });
    }
    for e in &scan.entries {
        let referenced = refs
            .get(&(e.stage.as_str(), e.key.as_str()))
            .is_some_and(|&n| n > 0);
        if referenced || e.live {
            continue;
        }
        let Some(key) = StageKey::parse(&e.key) else {
            continue;
        };
        let why = if e.runs > 0 {
            "referenced only by removed runs"
        } else {
            "referenced by no run"
        };
        items.push(Item {
            removal: Removal {
                kind: RemovalKind::Entry,
                what: format!("{} {}", e.stage, e.key),
                bytes: e.bytes,
                why: why.into(),
            },
            target: Target::Entry(e.stage.clone(), key),
        });
    }
    for w in scan.work.iter().filter(|w| !w.live) {
        let Some(key) = StageKey::parse(&w.key) else {
            continue;
        };
        items.push(Item {
            removal: Removal {
                kind: RemovalKind::Work,
                what: format!("{} {}", w.stage, w.key),
                bytes: w.bytes,
                why: "interrupted training (its process is gone; a rerun would have resumed it)"
                    .into(),
            },
            target: Target::Work(w.stage.clone(), key),
        });
    }
    for (path, bytes, abandoned) in &scan.temporaries {
        if *abandoned {
            items.push(Item {
                removal: Removal {
                    kind: RemovalKind::Temporary,
                    what: path.display().to_string(),
                    bytes: *bytes,
                    why: "abandoned by a process that is gone".into(),
                },
                target: Target::Path(path.clone()),
            });
        }
    }
    for path in scan.live.stale.iter().chain(&scan.stale_locks) {
        items.push(Item {
            removal: Removal {
                kind: RemovalKind::StaleLock,
                what: path.display().to_string(),
                bytes: 0,
                why: "its process is gone".into(),
            },
            target: Target::StaleLock(path.clone()),
        });
    }
    Plan {
        items,
        runs: dropped_runs,
        before,
        over_budget,
    }
}

/// Takes a removed run's references away; entries no run references any more (and no live
/// process uses) stop counting towards what the cache keeps.
fn drop_run<'s>(
    run: &'s RunRef,
    refs: &mut HashMap<(&'s str, &'s str), usize>,
    size: &HashMap<(&'s str, &'s str), &EntryInfo>,
    kept: &mut u64,
) {
    for (s, k) in &run.entries {
        let key = (s.as_str(), k.as_str());
        if let Some(n) = refs.get_mut(&key) {
            *n -= 1;
            if *n == 0
                && let Some(e) = size.get(&key)
                && !e.live
            {
                *kept -= e.bytes;
            }
        }
    }
}

/// Bytes of a run folder's own files: hard links into the cache free nothing themselves.
fn copies_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => {
                    if let Ok(m) = e.metadata()
                        && m.nlink() == 1
                    {
                        total += m.len();
                    }
                }
                _ => {}
            }
        }
    }
    total
}

/// Carries out one removal; `false` when it was left after all (in use since the scan).
fn remove(store: &Store, item: &Item) -> Result<bool, GraphError> {
    match &item.target {
        Target::Run(dir, scanned) => {
            // Written again since the scan (rerun by a process that registered before this
            // pass): it is not old any more.
            let modified = fs::metadata(dir.join(MANIFEST_FILE)).and_then(|m| m.modified());
            if modified.is_ok_and(|m| m != *scanned) {
                return Ok(false);
            }
            remove_run(dir).map(|()| true)
        }
        Target::Entry(stage, key) => {
            // A process that registered before this pass may since have taken the key's
            // lock (to recompute it); leave it.
            if live_holder(&store.lock_path(stage, key)).is_some() {
                return Ok(false);
            }
            store.remove_entry(stage, key).map(|_| true)
        }
        Target::Work(stage, key) => {
            if live_holder(&store.lock_path(stage, key)).is_some() {
                return Ok(false);
            }
            store.remove_work(stage, key).map(|_| true)
        }
        Target::StaleLock(path) => Ok(remove_if_stale(path)),
        Target::Path(path) => {
            let result = if path.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
            match result {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(GraphError::Io {
                    action: "removing",
                    path: path.clone(),
                    source: e,
                }),
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(GraphError::Io {
                    action: "removing",
                    path: path.clone(),
                    source: e,
                }),
                _ => Ok(true),
            }
        }
    }
}

/// The name a run folder being removed is renamed to, before the run id.
const RUN_ASIDE_PREFIX: &str = ".gc-";

/// Renames a run folder aside (to a dot-folder `ls` and `diff` skip), then deletes it;
/// the experiment folder goes too once empty.
fn remove_run(dir: &Path) -> Result<(), GraphError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Ok(());
    };
    let aside = parent.join(format!(
        "{RUN_ASIDE_PREFIX}{}-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    fs::rename(dir, &aside).map_err(|source| GraphError::Io {
        action: "removing",
        path: dir.to_path_buf(),
        source,
    })?;
    fs::remove_dir_all(&aside).map_err(|source| GraphError::Io {
        action: "removing",
        path: aside.clone(),
        source,
    })?;
    let _ = fs::remove_dir(parent);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::live::register;

    fn key(i: usize) -> StageKey {
        StageKey::parse(blake3::hash(&i.to_le_bytes()).to_hex().as_str()).unwrap()
    }

    /// A runs directory with run `i` (for `i` in `runs`) referencing `train` entry `i`
    /// (`size` bytes), its manifest `age` days old, plus the unreferenced entries `extra`.
    fn runs_dir(runs: &[(usize, u64, u64)], extra: &[usize]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join(CACHE_DIR));
        let entry = |i: usize, size: u64| {
            let d = store.entry_dir("train", &key(i));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("best.safetensors"), vec![0u8; size as usize]).unwrap();
        };
        for &(i, size, age_days) in runs {
            entry(i, size);
            let run = dir.path().join("t").join(format!("run{i}"));
            fs::create_dir_all(&run).unwrap();
            let manifest = run.join(MANIFEST_FILE);
            fs::write(
                &manifest,
                format!(
                    "[run]\nname = \"t\"\nid = \"run{i}\"\nexperiment = \"t.toml\"\n\n\
                     [stages.train]\nkey = \"{}\"\n",
                    key(i).as_str()
                ),
            )
            .unwrap();
            let when = SystemTime::now() - Duration::from_secs(age_days * 86_400 + 60);
            fs::File::options()
                .write(true)
                .open(&manifest)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        for &i in extra {
            entry(i, 10);
        }
        dir
    }

    fn removed(report: &GcReport, kind: RemovalKind) -> Vec<String> {
        report
            .removed
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.what.clone())
            .collect()
    }

    #[test]
    fn a_budget_removes_the_oldest_runs_only_until_it_holds() {
        let dir = runs_dir(&[(0, 1000, 3), (1, 1000, 2), (2, 1000, 1)], &[7]);
        let report = gc(&GcOptions {
            runs_dir: dir.path().to_path_buf(),
            max_size: Some(2500),
            ..GcOptions::default()
        })
        .unwrap();
        assert_eq!(removed(&report, RemovalKind::Run), ["t/run0"]);
        let entries = removed(&report, RemovalKind::Entry);
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert!(entries.contains(&format!("train {}", key(0).as_str())));
        assert!(entries.contains(&format!("train {}", key(7).as_str())));
        assert_eq!(report.after, 2000);
        assert!(!report.over_budget);
        assert!(dir.path().join("t/run1").is_dir());
    }

    #[test]
    fn a_registered_run_and_its_entries_survive_any_budget() {
        let dir = runs_dir(&[(0, 1000, 9), (1, 1000, 8)], &[5]);
        let store = Store::new(dir.path().join(CACHE_DIR));
        // A process about to rewrite run0 and to compute entry 5.
        let (k0, k5) = (key(0), key(5));
        let registration = register(
            &store,
            [("train", &k0), ("train", &k5)],
            Some("t/run0"),
            |_| {},
        )
        .unwrap();
        let options = GcOptions {
            runs_dir: dir.path().to_path_buf(),
            max_size: Some(0),
            ..GcOptions::default()
        };
        let report = gc(&options).unwrap();
        assert_eq!(removed(&report, RemovalKind::Run), ["t/run1"]);
        assert_eq!(
            removed(&report, RemovalKind::Entry),
            [format!("train {}", key(1).as_str())]
        );
        assert!(report.over_budget);
        assert!(store.entry_dir("train", &k0).is_dir() && store.entry_dir("train", &k5).is_dir());
        drop(registration);
        let report = gc(&options).unwrap();
        assert_eq!(removed(&report, RemovalKind::Run), ["t/run0"]);
        assert_eq!(removed(&report, RemovalKind::Entry).len(), 2);
    }

    #[test]
    fn a_dry_run_plans_the_same_removals_and_touches_nothing() {
        let dir = runs_dir(&[(0, 100, 40), (1, 100, 1)], &[3, 4]);
        let options = GcOptions {
            runs_dir: dir.path().to_path_buf(),
            older_than: Some(Duration::from_secs(30 * 86_400)),
            dry_run: true,
            ..GcOptions::default()
        };
        let dry = gc(&options).unwrap();
        assert_eq!(removed(&dry, RemovalKind::Run), ["t/run0"]);
        assert_eq!(removed(&dry, RemovalKind::Entry).len(), 3);
        assert!(dir.path().join("t/run0").is_dir());
        assert_eq!(
            Store::new(dir.path().join(CACHE_DIR)).keys("train").len(),
            4
        );
        let real = gc(&GcOptions {
            dry_run: false,
            ..options
        })
        .unwrap();
        assert_eq!(
            serde_json::to_value(&real.removed).unwrap(),
            serde_json::to_value(&dry.removed).unwrap()
        );
        assert_eq!(
            Store::new(dir.path().join(CACHE_DIR)).keys("train").len(),
            1
        );
    }
}
