//! Live processes and the cache entries they are about to use, so that `geoexp gc` never
//! removes an entry out from under a running `run`, `sweep` trial or `verify`.
//!
//! # The rule
//!
//! A process that is going to read or write cache entries first *registers*: it writes
//! `.cache/.live/<host>.<pid>.<nonce>.lock`, a lock file (see [`super::lock`]: heartbeat,
//! works across hosts) whose note lists every `(stage, key)` it may use. Only then does it
//! look anything up. It stays registered until it has written its manifest, and the file
//! goes when it ends; a killed process's registration is stale and ignored.
//!
//! `gc` holds `.cache/.gc.lock` for its whole pass, and registering takes that lock for the
//! moment of writing the registration. So every registration either exists before a pass
//! starts — the pass reads registrations first, then manifests, and keeps every entry a
//! live registration or a manifest names — or is made after the pass ends, when the
//! process finds whatever the pass removed missing and computes it again, as for any miss.
//! An entry a process computes is named in its registration before it exists, and in its
//! manifest before the registration goes, so it is never unreferenced while that process
//! needs it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::error::GraphError;
use super::key::StageKey;
use super::lock::{KeyLock, LockOwner, is_stale, read_note, this_host};
use super::store::Store;

const LIVE_DIR: &str = ".live";
const GC_LOCK: &str = ".gc.lock";
const ENTRY_PREFIX: &str = "entry=";
const RUN_PREFIX: &str = "run=";

/// A registration; it ends when dropped.
pub struct Registration {
    lock: KeyLock,
}

impl Registration {
    /// The registration file.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }
}

/// Registers this process as about to use `entries` (stage name, key), and to write the
/// run folder `run` (`name/id`, so `gc` does not remove it meanwhile), waiting while a
/// `gc` pass runs (`on_wait` is told who holds it).
///
/// # Errors
/// When the cache directory cannot be written.
pub fn register<'a>(
    store: &Store,
    entries: impl IntoIterator<Item = (&'a str, &'a StageKey)>,
    run: Option<&str>,
    on_wait: impl FnMut(&LockOwner),
) -> Result<Registration, GraphError> {
    let mut note: String = entries
        .into_iter()
        .map(|(stage, key)| format!("{ENTRY_PREFIX}{stage}/{}\n", key.as_str()))
        .collect();
    if let Some(run) = run {
        note.push_str(&format!("{RUN_PREFIX}{run}\n"));
    }
    let _gc = gc_lock(store, on_wait)?;
    let nonce = blake3::hash(format!("{:?}{note}", SystemTime::now()).as_bytes()).to_hex();
    let path = store.root().join(LIVE_DIR).join(format!(
        "{}.{}.{}.lock",
        this_host(),
        std::process::id(),
        &nonce[..12]
    ));
    let lock = KeyLock::acquire_with_note(&path, &note, |_| {})?;
    Ok(Registration { lock })
}

/// Takes the lock a `gc` pass holds throughout (and a registration holds for a moment).
///
/// # Errors
/// When the cache directory cannot be written.
pub fn gc_lock(store: &Store, on_wait: impl FnMut(&LockOwner)) -> Result<KeyLock, GraphError> {
    KeyLock::acquire(&store.root().join(GC_LOCK), on_wait)
}

/// What the registrations under `store` say.
#[derive(Debug, Default)]
pub struct LiveEntries {
    /// Every (stage, key) a live process registered.
    pub entries: BTreeSet<(String, String)>,
    /// Every run folder (`name/id`) a live process is writing.
    pub runs: BTreeSet<String>,
    /// Live registrations.
    pub processes: usize,
    /// Registration files of processes that are gone.
    pub stale: Vec<PathBuf>,
    /// What could not be read: the registrations folder, or a live registration. Whatever
    /// it pins is unknown, so nothing may be removed.
    pub unreadable: Vec<String>,
}

/// Reads every registration under `store`, but `except` (the caller's own).
pub fn live_entries(store: &Store, except: Option<&Path>) -> LiveEntries {
    let mut out = LiveEntries::default();
    let dir = store.root().join(LIVE_DIR);
    let listing = match fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.unreadable.push(format!("{}: {e}", dir.display()));
            return out;
        }
    };
    for entry in listing {
        let path = match entry {
            Ok(e) => e.path(),
            Err(e) => {
                out.unreadable.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        if path.extension().is_none_or(|e| e != "lock") || except == Some(path.as_path()) {
            continue;
        }
        match read_note(&path) {
            Some(note) => {
                out.processes += 1;
                for line in note.lines() {
                    if let Some((stage, key)) = line
                        .strip_prefix(ENTRY_PREFIX)
                        .and_then(|l| l.split_once('/'))
                    {
                        out.entries.insert((stage.to_owned(), key.to_owned()));
                    } else if let Some(run) = line.strip_prefix(RUN_PREFIX) {
                        out.runs.insert(run.to_owned());
                    }
                }
            }
            None if is_stale(&path) => out.stale.push(path),
            None if path.exists() && fs::read(&path).is_err() => {
                out.unreadable
                    .push(format!("{}: cannot be read", path.display()));
            }
            // Gone meanwhile (its process ended), or being written this instant: a
            // registration is complete before its process looks anything up.
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::key::KeyMaterial;
    use std::collections::BTreeMap;

    fn key(stage: &str) -> StageKey {
        KeyMaterial {
            stage: stage.into(),
            stage_version: 1,
            geoexp_version: "0".into(),
            params: BTreeMap::new(),
            upstream: BTreeMap::new(),
            inputs: BTreeMap::new(),
        }
        .key()
    }

    #[test]
    fn a_registration_pins_its_entries_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (a, b) = (key("a"), key("b"));
        let reg = register(&store, [("a", &a), ("b", &b)], Some("golf/123"), |_| {}).unwrap();
        let live = live_entries(&store, None);
        assert_eq!(live.processes, 1);
        assert!(
            live.entries
                .contains(&("a".to_owned(), a.as_str().to_owned()))
        );
        assert!(
            live.entries
                .contains(&("b".to_owned(), b.as_str().to_owned()))
        );
        assert!(live.runs.contains("golf/123"));
        assert_eq!(live_entries(&store, Some(reg.path())).processes, 0);
        drop(reg);
        let live = live_entries(&store, None);
        assert_eq!((live.processes, live.entries.len()), (0, 0));
    }

    #[test]
    fn a_dead_process_registration_pins_nothing_and_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let live_dir = dir.path().join(LIVE_DIR);
        fs::create_dir_all(&live_dir).unwrap();
        let path = live_dir.join("dead.lock");
        fs::write(
            &path,
            format!(
                "host={}\npid={}\nnonce=x\nentry=a/{}\n",
                this_host(),
                i32::MAX - 9,
                key("a").as_str()
            ),
        )
        .unwrap();
        let live = live_entries(&store, None);
        assert!(live.entries.is_empty());
        assert_eq!(live.stale, [path]);
    }

    #[test]
    fn registering_waits_for_a_gc_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let gc = gc_lock(&store, |_| {}).unwrap();
        let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let t = {
            let store = store.clone();
            let waited = std::sync::Arc::clone(&waited);
            std::thread::spawn(move || {
                let k = key("a");
                let reg = register(&store, [("a", &k)], None, |_| {
                    waited.store(true, std::sync::atomic::Ordering::SeqCst);
                })
                .unwrap();
                drop(reg);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(
            live_entries(&store, None).processes,
            0,
            "registered during gc"
        );
        drop(gc);
        t.join().unwrap();
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
    }
}
