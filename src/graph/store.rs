//! The content-addressed cache: `runs/.cache/<stage>/<key>/`.
//!
//! An entry is written into `runs/.cache/<stage>/.tmp/<key>.<pid>.<nonce>/` and renamed
//! into place only after its `record.toml` — written last — is complete. A directory at
//! `<stage>/<key>/` with a readable record is therefore a finished entry, whatever crashed
//! around it; anything else is a miss. Half-written temporaries of dead processes are
//! swept on the next write. An unreadable record is reported and treated as missing, and
//! the next run replaces it (a corrupt cache entry is never fatal).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::GraphError;
use super::events::NoTick;
use super::key::{KeyMaterial, StageKey};
use super::lock::{KeyLock, LockOwner, this_host};
pub use super::outputs::OutputHash;
use super::outputs::{Depth, check, hash_outputs};

/// File name of an entry's record.
pub const RECORD_FILE: &str = "record.toml";
/// File name of an entry's per-file input listing (`label \t path \t blake3`).
pub const INPUTS_FILE: &str = "inputs.tsv";
const TMP_DIR: &str = ".tmp";
const WORK_DIR: &str = ".work";
const LOCK_DIR: &str = ".locks";

/// Volatile facts about how an entry was made; never copied into manifests (they go to
/// `execution.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Creation {
    /// RFC 3339 UTC time the entry was committed.
    pub at: String,
    /// Host that computed it.
    pub host: String,
    /// Wall time of the stage's run function, in seconds.
    pub duration_s: f64,
    /// The stage's facts about that attempt ([`Outcome::facts`](super::Outcome::facts)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, Value>,
}

/// `record.toml`: what went into an entry's key and what came out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The entry's key (equal to `material.key()`).
    pub key: StageKey,
    /// What went into the key.
    pub material: KeyMaterial,
    /// Output files and directories (top level of the entry), by name; volatile ones are
    /// marked.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputHash>,
    /// The stage's named results (counts, metrics).
    #[serde(default)]
    pub results: BTreeMap<String, Value>,
    /// How it was made.
    pub created: Creation,
}

/// One entry found on disk.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its directory.
    pub dir: PathBuf,
    /// Its record.
    pub record: Record,
}

/// Result of looking up a key.
#[derive(Debug)]
pub enum Lookup {
    /// A complete entry whose outputs pass the quick check ([`Depth::Quick`]).
    Found(Box<Entry>),
    /// No entry.
    Missing,
    /// An entry directory whose record cannot be used, or whose outputs do not match it;
    /// the message names the file.
    Corrupt(String),
}

/// The cache root (`runs/.cache`).
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// A store rooted at `root`; nothing is created until something is written.
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the fingerprint memo lives.
    pub fn memo_path(&self) -> PathBuf {
        self.root.join("fingerprints.tsv")
    }

    /// Directory of the entry for (`stage`, `key`), whether or not it exists.
    pub fn entry_dir(&self, stage: &str, key: &StageKey) -> PathBuf {
        self.root.join(stage).join(key.as_str())
    }

    /// A directory that outlives a failed or killed attempt at (`stage`, `key`): the next
    /// attempt finds what the last one left there (training checkpoints) and resumes.
    /// Only the holder of the key's lock uses it; it is removed once the entry is committed.
    pub fn work_dir(&self, stage: &str, key: &StageKey) -> PathBuf {
        self.root.join(stage).join(WORK_DIR).join(key.as_str())
    }

    /// Looks up a complete entry, and checks its outputs against its record quickly
    /// (sizes of everything, hashes of the small files: see [`super::outputs`]), so a
    /// damaged entry is recomputed rather than used.
    pub fn lookup(&self, stage: &str, key: &StageKey) -> Lookup {
        match self.read_entry(stage, key) {
            Lookup::Found(entry) => {
                let problems = check(&entry.dir, &entry.record.outputs, Depth::Quick, &NoTick);
                match problems.first() {
                    None => Lookup::Found(entry),
                    Some(first) => Lookup::Corrupt(if problems.len() == 1 {
                        first.to_string()
                    } else {
                        format!("{first} (and {} more)", problems.len() - 1)
                    }),
                }
            }
            other => other,
        }
    }

    /// Reads an entry's record without checking its outputs (`verify` checks them itself).
    pub fn read_entry(&self, stage: &str, key: &StageKey) -> Lookup {
        let dir = self.entry_dir(stage, key);
        if !dir.is_dir() {
            return Lookup::Missing;
        }
        match read_record(&dir) {
            Ok(record) if &record.key == key && record.material.key() == *key => {
                Lookup::Found(Box::new(Entry { dir, record }))
            }
            Ok(_) => Lookup::Corrupt(format!("{} holds a record for another key", dir.display())),
            Err(problem) => Lookup::Corrupt(problem),
        }
    }

    /// Every readable entry of `stage` (for `plan`'s nearest-entry search).
    pub fn entries(&self, stage: &str) -> Vec<Entry> {
        let Ok(dir) = fs::read_dir(self.root.join(stage)) else {
            return Vec::new();
        };
        let dirs: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(StageKey::parse)
                    .is_some()
            })
            .collect();
        let mut entries: Vec<Entry> = dirs
            .into_par_iter()
            .filter_map(|dir| read_record(&dir).ok().map(|record| Entry { dir, record }))
            .collect();
        entries.sort_by(|a, b| a.record.key.cmp(&b.record.key));
        entries
    }

    /// Takes the per-key lock, waiting for another process that holds it.
    ///
    /// # Errors
    /// When the lock file cannot be created.
    pub fn lock(
        &self,
        stage: &str,
        key: &StageKey,
        on_wait: impl FnMut(&LockOwner),
    ) -> Result<KeyLock, GraphError> {
        let path = self
            .root
            .join(stage)
            .join(LOCK_DIR)
            .join(format!("{}.lock", key.as_str()));
        KeyLock::acquire(&path, on_wait)
    }

    /// Starts writing an entry into a fresh temporary directory.
    ///
    /// # Errors
    /// When the temporary directory cannot be created.
    pub fn begin(&self, stage: &str, key: &StageKey) -> Result<PendingEntry, GraphError> {
        let dir = self.scratch_dir(stage, key.as_str())?;
        Ok(PendingEntry {
            dir,
            target: self.entry_dir(stage, key),
            committed: false,
        })
    }

    /// A fresh, empty directory `.cache/<stage>/.tmp/<label>.<host>.<pid>.<nonce>/` that
    /// is swept as abandoned once this process is gone; the caller removes it when done.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn scratch_dir(&self, stage: &str, label: &str) -> Result<PathBuf, GraphError> {
        let tmp_root = self.root.join(stage).join(TMP_DIR);
        fs::create_dir_all(&tmp_root).map_err(GraphError::io("creating", &tmp_root))?;
        sweep_abandoned(&tmp_root);
        let dir = tmp_root.join(tmp_name(label));
        fs::create_dir(&dir).map_err(GraphError::io("creating", &dir))?;
        Ok(dir)
    }

    /// Names of the stage folders in the cache.
    pub fn stages(&self) -> Vec<String> {
        let Ok(dir) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Keys of the entries of `stage` (complete or not: directory names only).
    pub fn keys(&self, stage: &str) -> Vec<StageKey> {
        list_keys(&self.root.join(stage))
    }

    /// Keys that have a work directory under `stage` (trainings in progress or interrupted).
    pub fn work_keys(&self, stage: &str) -> Vec<StageKey> {
        list_keys(&self.root.join(stage).join(WORK_DIR))
    }

    /// The lock file of (`stage`, `key`), whether or not it exists.
    pub fn lock_path(&self, stage: &str, key: &StageKey) -> PathBuf {
        self.root
            .join(stage)
            .join(LOCK_DIR)
            .join(format!("{}.lock", key.as_str()))
    }

    /// Temporary directories under `stage/.tmp` (entries being written, entries being
    /// removed, scratch directories), with whether their process is gone.
    pub fn temporaries(&self, stage: &str) -> Vec<(PathBuf, bool)> {
        let Ok(dir) = fs::read_dir(self.root.join(stage).join(TMP_DIR)) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .map(|e| {
                let abandoned = is_abandoned(&e, &self.root.join(stage).join(TMP_DIR));
                (e.path(), abandoned)
            })
            .collect()
    }

    /// Removes the entry of (`stage`, `key`): first renamed aside into `.tmp` (so from
    /// that moment no lookup finds it, and a crash leaves only a temporary that the next
    /// write sweeps), then deleted. Returns the directory it was renamed to, when the
    /// deletion itself failed (the entry is gone from the cache either way).
    ///
    /// # Errors
    /// When the entry cannot be renamed (it is then untouched).
    pub fn remove_entry(&self, stage: &str, key: &StageKey) -> Result<Option<PathBuf>, GraphError> {
        remove_aside(
            &self.entry_dir(stage, key),
            &self.root.join(stage).join(TMP_DIR),
            key.as_str(),
        )
    }

    /// Removes the work directory of (`stage`, `key`) the same way as [`Store::remove_entry`].
    ///
    /// # Errors
    /// When it cannot be renamed.
    pub fn remove_work(&self, stage: &str, key: &StageKey) -> Result<Option<PathBuf>, GraphError> {
        let name = format!("{}-work", key.as_str());
        remove_aside(
            &self.work_dir(stage, key),
            &self.root.join(stage).join(TMP_DIR),
            &name,
        )
    }
}

/// `<label>.<host>.<pid>.<nonce>`: the name [`sweep_abandoned`] can judge.
fn tmp_name(label: &str) -> String {
    let nonce = blake3::hash(format!("{:?}{label}", SystemTime::now()).as_bytes()).to_hex();
    format!(
        "{label}.{}.{}.{}",
        this_host(),
        std::process::id(),
        &nonce[..8]
    )
}

fn list_keys(dir: &Path) -> Vec<StageKey> {
    let Ok(dir) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut keys: Vec<StageKey> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(StageKey::parse))
        .collect();
    keys.sort();
    keys
}

fn remove_aside(dir: &Path, tmp_root: &Path, label: &str) -> Result<Option<PathBuf>, GraphError> {
    fs::create_dir_all(tmp_root).map_err(GraphError::io("creating", tmp_root))?;
    let aside = tmp_root.join(tmp_name(label));
    fs::rename(dir, &aside).map_err(GraphError::io("removing", dir))?;
    Ok(fs::remove_dir_all(&aside).is_err().then_some(aside))
}

/// An entry being written; removed on drop unless committed (so a failing or panicking
/// stage leaves nothing behind).
pub struct PendingEntry {
    dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PendingEntry {
    /// The temporary directory the stage writes into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hashes the outputs the stage wrote (top-level files and directories), marking
    /// those in `volatile`.
    ///
    /// # Errors
    /// When an output cannot be read.
    pub fn hash_outputs(
        &self,
        volatile: &[&str],
    ) -> Result<BTreeMap<String, OutputHash>, GraphError> {
        hash_outputs(&self.dir, &[RECORD_FILE, INPUTS_FILE], volatile)
    }

    /// Writes the input listing and the record, then renames the entry into place,
    /// replacing an existing entry of the same key (`--force`).
    ///
    /// # Errors
    /// When writing or renaming fails; the temporary directory is then removed.
    pub fn commit(mut self, record: &Record, inputs_tsv: &str) -> Result<PathBuf, GraphError> {
        if !inputs_tsv.is_empty() {
            let p = self.dir.join(INPUTS_FILE);
            fs::write(&p, inputs_tsv).map_err(GraphError::io("writing", &p))?;
        }
        let record_path = self.dir.join(RECORD_FILE);
        let text = toml::to_string(record).map_err(|e| GraphError::Encode {
            path: record_path.clone(),
            message: e.to_string(),
        })?;
        let mut f =
            fs::File::create(&record_path).map_err(GraphError::io("writing", &record_path))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(GraphError::io("writing", &record_path))?;
        if self.target.exists() {
            let trash = self.dir.with_extension("replaced");
            fs::rename(&self.target, &trash).map_err(GraphError::io("replacing", &self.target))?;
            let _ = fs::remove_dir_all(&trash);
        }
        fs::rename(&self.dir, &self.target).map_err(GraphError::io("committing", &self.target))?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn read_record(dir: &Path) -> Result<Record, String> {
    let path = dir.join(RECORD_FILE);
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
}

/// Removes temporaries left by processes that no longer exist (see [`is_abandoned`]).
fn sweep_abandoned(tmp_root: &Path) {
    let Ok(dir) = fs::read_dir(tmp_root) else {
        return;
    };
    for entry in dir.filter_map(Result::ok) {
        if is_abandoned(&entry, tmp_root) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether a temporary (named by [`tmp_name`]) is abandoned: made by a process of this
/// host that no longer exists, or by another host's process more than a day ago whose key
/// lock (for an entry being written) is not live either. A live process's temporary is
/// never abandoned on this host, however long it runs.
fn is_abandoned(entry: &fs::DirEntry, tmp_root: &Path) -> bool {
    let name = entry.file_name().to_string_lossy().into_owned();
    let mut parts = name.rsplitn(3, '.');
    let (_nonce, pid, rest) = (parts.next(), parts.next(), parts.next());
    let pid: Option<u32> = pid.and_then(|p| p.parse().ok());
    let (Some(pid), Some((label, host))) = (pid, rest.and_then(|r| r.split_once('.'))) else {
        return ancient(entry);
    };
    if host == this_host() {
        return !super::lock::pid_is_alive(pid);
    }
    let lock = tmp_root
        .parent()
        .map(|stage| stage.join(LOCK_DIR).join(format!("{label}.lock")));
    ancient(entry) && lock.is_none_or(|l| super::lock::live_holder(&l).is_none())
}

fn ancient(entry: &fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > Duration::from_secs(86_400))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, then rename.
///
/// # Errors
/// When the directory or file cannot be written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GraphError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(GraphError::io("creating", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        GraphError::io("writing", path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &StageKey, material: &KeyMaterial) -> Record {
        Record {
            key: key.clone(),
            material: material.clone(),
            outputs: BTreeMap::new(),
            results: BTreeMap::new(),
            created: Creation {
                at: "now".into(),
                host: "h".into(),
                duration_s: 0.0,
                facts: BTreeMap::new(),
            },
        }
    }

    fn material() -> KeyMaterial {
        KeyMaterial {
            stage: "echo".into(),
            stage_version: 1,
            geoexp_version: "0".into(),
            params: BTreeMap::new(),
            upstream: BTreeMap::new(),
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn an_uncommitted_entry_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let key = material().key();
        {
            let pending = store.begin("echo", &key).unwrap();
            fs::write(pending.dir().join("half.csv"), "a,b").unwrap();
        }
        assert!(matches!(store.lookup("echo", &key), Lookup::Missing));
        let leftovers = fs::read_dir(dir.path().join("echo").join(TMP_DIR))
            .unwrap()
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn a_committed_entry_is_found_with_its_output_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let m = material();
        let key = m.key();
        let pending = store.begin("echo", &key).unwrap();
        fs::write(pending.dir().join("out.csv"), "a,b").unwrap();
        fs::create_dir(pending.dir().join("images")).unwrap();
        fs::write(pending.dir().join("images").join("1.jpg"), "x").unwrap();
        let mut r = record(&key, &m);
        r.outputs = pending.hash_outputs(&[]).unwrap();
        pending.commit(&r, "").unwrap();
        let Lookup::Found(entry) = store.lookup("echo", &key) else {
            panic!("entry not found")
        };
        assert_eq!(entry.record.outputs["out.csv"].bytes, 3);
        assert_eq!(entry.record.outputs["images"].files, Some(1));
    }

    /// A committed `echo` entry holding `out.csv`.
    fn one_file_entry(store: &Store) -> (StageKey, PathBuf) {
        let m = material();
        let key = m.key();
        let pending = store.begin("echo", &key).unwrap();
        fs::write(pending.dir().join("out.csv"), "a,b").unwrap();
        let mut r = record(&key, &m);
        r.outputs = pending.hash_outputs(&[]).unwrap();
        (key, pending.commit(&r, "").unwrap())
    }

    #[test]
    fn an_entry_whose_output_was_damaged_is_corrupt_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (key, committed) = one_file_entry(&store);
        fs::write(committed.join("out.csv"), "a,c").unwrap();
        let Lookup::Corrupt(problem) = store.lookup("echo", &key) else {
            panic!("a damaged entry was found whole")
        };
        assert!(problem.contains("out.csv"), "{problem}");
        // `read_entry` does not check outputs (verify does, fully).
        assert!(matches!(store.read_entry("echo", &key), Lookup::Found(_)));
    }

    #[test]
    fn a_removed_entry_is_gone_at_once_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (key, _) = one_file_entry(&store);
        assert_eq!(store.remove_entry("echo", &key).unwrap(), None);
        assert!(matches!(store.lookup("echo", &key), Lookup::Missing));
        assert_eq!(store.temporaries("echo"), []);
        // Removing it again is an error naming the entry, and changes nothing.
        let err = store.remove_entry("echo", &key).unwrap_err().to_string();
        assert!(err.contains(key.as_str()), "{err}");
    }

    #[test]
    fn a_temporary_is_abandoned_when_its_process_is_gone_not_when_it_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mine = store.scratch_dir("echo", "k").unwrap();
        // A training that has written into its pending entry for two days.
        fs::File::open(&mine)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(2 * 86_400))
            .unwrap();
        let dead = dir.path().join("echo").join(TMP_DIR).join(format!(
            "k.{}.{}.00000000",
            this_host(),
            i32::MAX - 5
        ));
        fs::create_dir(&dead).unwrap();
        let mut found = store.temporaries("echo");
        found.sort();
        let mut expected = vec![(mine.clone(), false), (dead.clone(), true)];
        expected.sort();
        assert_eq!(found, expected);
        store.scratch_dir("echo", "other").unwrap();
        assert!(
            mine.exists() && !dead.exists(),
            "the sweep took the wrong one"
        );
    }

    #[test]
    fn a_corrupt_record_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let key = material().key();
        let entry = store.entry_dir("echo", &key);
        fs::create_dir_all(&entry).unwrap();
        fs::write(entry.join(RECORD_FILE), "key = [").unwrap();
        assert!(matches!(store.lookup("echo", &key), Lookup::Corrupt(_)));
    }
}
