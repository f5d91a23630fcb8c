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

/// A registration; it ends when dropped.
pub struct Registration {
    _lock: KeyLock,
}

/// Registers this process as about to use `entries` (stage name, key), waiting while a
/// `gc` pass runs (`on_wait` is told who holds it).
///
/// # Errors
/// When the cache directory cannot be written.
pub fn register<'a>(
    store: &Store,
    entries: impl IntoIterator<Item = (&'a str, &'a StageKey)>,
    on_wait: impl FnMut(&LockOwner),
) -> Result<Registration, GraphError> {
    let note: String = entries
        .into_iter()
        .map(|(stage, key)| format!("{ENTRY_PREFIX}{stage}/{}\n", key.as_str()))
        .collect();
    let _gc = gc_lock(store, on_wait)?;
    let nonce = blake3::hash(format!("{:?}{note}", SystemTime::now()).as_bytes()).to_hex();
    let path = store.root().join(LIVE_DIR).join(format!(
        "{}.{}.{}.lock",
        this_host(),
        std::process::id(),
        &nonce[..12]
    ));
    let lock = KeyLock::acquire_with_note(&path, &note, |_| {})?;
    Ok(Registration { _lock: lock })
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
    /// Live registrations.
    pub processes: usize,
    /// Registration files of processes that are gone.
    pub stale: Vec<PathBuf>,
}

/// Reads every registration under `store`.
pub fn live_entries(store: &Store) -> LiveEntries {
    let mut out = LiveEntries::default();
    let Ok(dir) = fs::read_dir(store.root().join(LIVE_DIR)) else {
        return out;
    };
    for entry in dir.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        match read_note(&path) {
            Some(note) => {
                out.processes += 1;
                out.entries.extend(parse_note(&note));
            }
            None if is_stale(&path) => out.stale.push(path),
            None => {}
        }
    }
    out
}

fn parse_note(note: &str) -> impl Iterator<Item = (String, String)> + '_ {
    note.lines().filter_map(|line| {
        let (stage, key) = line.strip_prefix(ENTRY_PREFIX)?.split_once('/')?;
        Some((stage.to_owned(), key.to_owned()))
    })
}

/// Whether `path` is a registration file (for `gc`'s listing of what it may remove).
pub fn is_registration(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == LIVE_DIR)
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
        let reg = register(&store, [("a", &a), ("b", &b)], |_| {}).unwrap();
        let live = live_entries(&store);
        assert_eq!(live.processes, 1);
        assert!(
            live.entries
                .contains(&("a".to_owned(), a.as_str().to_owned()))
        );
        assert!(
            live.entries
                .contains(&("b".to_owned(), b.as_str().to_owned()))
        );
        drop(reg);
        let live = live_entries(&store);
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
        let live = live_entries(&store);
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
                let reg = register(&store, [("a", &k)], |_| {
                    waited.store(true, std::sync::atomic::Ordering::SeqCst);
                })
                .unwrap();
                drop(reg);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(live_entries(&store).processes, 0, "registered during gc");
        drop(gc);
        t.join().unwrap();
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
    }
}
