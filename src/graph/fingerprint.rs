//! Content fingerprints of input files, memoised by file identity.
//!
//! A file's fingerprint is the blake3 hash of its bytes. Hashing a 10 GB dataset on every
//! `geoexp run` would dominate small experiments, so hashes are memoised in a small table
//! (`runs/.cache/fingerprints.tsv`) keyed by (path, size, mtime, inode, device): an
//! unchanged file is re-fingerprinted with one `stat`. A touched file misses the memo, is
//! re-hashed, and — its bytes being the same — yields the same fingerprint, so nothing
//! downstream is invalidated.
//!
//! Files modified in the last two seconds are hashed but not memoised: a write landing in
//! the same mtime tick as our read would otherwise be invisible to later runs.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use super::error::GraphError;
use super::events::Tick;
use super::store::write_atomic;

const MEMO_HEADER: &str =
    "# geoexp fingerprint memo v1: blake3\tsize\tmtime_ns\tinode\tdevice\tpath";
const RACY_WINDOW: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Identity {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    device: u64,
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Identity {
        Identity {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// The fingerprint of a set of files under one root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSetFingerprint {
    /// blake3 over the sorted `relative path \0 hash \n` list.
    pub digest: String,
    /// Per-file hashes, sorted by relative path.
    pub files: Vec<(PathBuf, String)>,
}

/// Hashes files in parallel, remembering hashes of files that did not change.
pub struct Fingerprinter {
    memo_path: Option<PathBuf>,
    memo: Mutex<HashMap<PathBuf, (Identity, String)>>,
    dirty: Mutex<bool>,
}

impl Fingerprinter {
    /// A fingerprinter with its memo table at `memo_path` (created on first save).
    pub fn with_memo(memo_path: impl Into<PathBuf>) -> Fingerprinter {
        let memo_path = memo_path.into();
        let memo = load_memo(&memo_path);
        Fingerprinter {
            memo_path: Some(memo_path),
            memo: Mutex::new(memo),
            dirty: Mutex::new(false),
        }
    }

    /// A fingerprinter that hashes everything every time.
    pub fn without_memo() -> Fingerprinter {
        Fingerprinter {
            memo_path: None,
            memo: Mutex::new(HashMap::new()),
            dirty: Mutex::new(false),
        }
    }

    /// Fingerprints `files` (relative to `root`), hashing in parallel.
    ///
    /// # Errors
    /// When a file cannot be read; the error names it.
    pub fn fingerprint(
        &self,
        root: &Path,
        files: &[PathBuf],
        tick: &dyn Tick,
    ) -> Result<FileSetFingerprint, GraphError> {
        let now = SystemTime::now();
        let mut hashed: Vec<(PathBuf, String)> = files
            .par_iter()
            .map(|rel| {
                let path = root.join(rel);
                let hash = self.hash_file(&path, now)?;
                tick.inc(1);
                Ok((rel.clone(), hash))
            })
            .collect::<Result<_, GraphError>>()?;
        hashed.sort();
        let mut hasher = blake3::Hasher::new();
        for (rel, hash) in &hashed {
            hasher.update(rel.as_os_str().as_encoded_bytes());
            hasher.update(b"\0");
            hasher.update(hash.as_bytes());
            hasher.update(b"\n");
        }
        Ok(FileSetFingerprint {
            digest: hasher.finalize().to_hex().to_string(),
            files: hashed,
        })
    }

    fn hash_file(&self, path: &Path, now: SystemTime) -> Result<String, GraphError> {
        let meta = fs::metadata(path).map_err(GraphError::io("reading", path))?;
        let identity = Identity::of(&meta);
        let key = path.to_path_buf();
        if let Some((known, hash)) = self.memo.lock().ok().and_then(|m| m.get(&key).cloned())
            && known == identity
        {
            return Ok(hash);
        }
        let hash = hash_path(path)?;
        let settled = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= RACY_WINDOW);
        if self.memo_path.is_some() && settled && memoisable(path) {
            if let Ok(mut memo) = self.memo.lock() {
                memo.insert(key, (identity, hash.clone()));
            }
            if let Ok(mut dirty) = self.dirty.lock() {
                *dirty = true;
            }
        }
        Ok(hash)
    }

    /// Writes the memo table back if anything was added. Best effort by design: losing the
    /// memo only costs re-hashing, so concurrent writers simply last-write-wins.
    pub fn save(&self) -> Result<(), GraphError> {
        let Some(path) = &self.memo_path else {
            return Ok(());
        };
        if !self.dirty.lock().map(|d| *d).unwrap_or(false) {
            return Ok(());
        }
        let memo = match self.memo.lock() {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        let mut rows: Vec<_> = memo.iter().filter(|(p, _)| p.exists()).collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(rows.len() * 128);
        let _ = writeln!(out, "{MEMO_HEADER}");
        for (p, (id, hash)) in rows {
            let _ = writeln!(
                out,
                "{hash}\t{}\t{}\t{}\t{}\t{}",
                id.size,
                id.mtime_ns,
                id.inode,
                id.device,
                p.display()
            );
        }
        write_atomic(path, &out)
    }
}

/// blake3 of one file's bytes.
///
/// # Errors
/// When the file cannot be read.
pub fn hash_path(path: &Path) -> Result<String, GraphError> {
    let mut hasher = blake3::Hasher::new();
    let file = fs::File::open(path).map_err(GraphError::io("reading", path))?;
    hasher
        .update_reader(file)
        .map_err(GraphError::io("reading", path))?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn memoisable(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|s| !s.contains(['\t', '\n', '\r']))
}

fn load_memo(path: &Path) -> HashMap<PathBuf, (Identity, String)> {
    let Ok(text) = fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut memo = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut cols = line.splitn(6, '\t');
        let parsed = (|| {
            let hash = cols.next()?.to_owned();
            let size = cols.next()?.parse().ok()?;
            let mtime_ns = cols.next()?.parse().ok()?;
            let inode = cols.next()?.parse().ok()?;
            let device = cols.next()?.parse().ok()?;
            let path = PathBuf::from(cols.next()?);
            Some((
                path,
                (
                    Identity {
                        size,
                        mtime_ns,
                        inode,
                        device,
                    },
                    hash,
                ),
            ))
        })();
        // A damaged line only costs a re-hash of that file.
        if let Some((p, v)) = parsed {
            memo.insert(p, v);
        }
    }
    memo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::events::NoTick;

    fn age(path: &Path) {
        // Memoisation skips files modified within the racy window.
        let old = SystemTime::now() - Duration::from_secs(60);
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_modified(old).unwrap();
    }

    #[test]
    fn touching_a_file_without_changing_it_keeps_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.jpg"), b"hello").unwrap();
        age(&dir.path().join("a.jpg"));
        let files = vec![PathBuf::from("a.jpg")];
        let fp = Fingerprinter::with_memo(dir.path().join("memo.tsv"));
        let first = fp.fingerprint(dir.path(), &files, &NoTick).unwrap();
        fp.save().unwrap();
        // Touch: new mtime, same bytes.
        let f = fs::File::options()
            .write(true)
            .open(dir.path().join("a.jpg"))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(5))
            .unwrap();
        let fp2 = Fingerprinter::with_memo(dir.path().join("memo.tsv"));
        let second = fp2.fingerprint(dir.path(), &files, &NoTick).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn changed_bytes_change_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jpg");
        fs::write(&p, b"hello").unwrap();
        age(&p);
        let files = vec![PathBuf::from("a.jpg")];
        let fp = Fingerprinter::with_memo(dir.path().join("memo.tsv"));
        let first = fp.fingerprint(dir.path(), &files, &NoTick).unwrap();
        fp.save().unwrap();
        fs::write(&p, b"hellO").unwrap();
        age(&p);
        let fp2 = Fingerprinter::with_memo(dir.path().join("memo.tsv"));
        let second = fp2.fingerprint(dir.path(), &files, &NoTick).unwrap();
        assert_ne!(first.digest, second.digest);
    }

    #[test]
    fn the_memo_answers_without_reading_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jpg");
        fs::write(&p, b"hello").unwrap();
        age(&p);
        let mtime = fs::metadata(&p).unwrap().modified().unwrap();
        let files = vec![PathBuf::from("a.jpg")];
        let fp = Fingerprinter::with_memo(dir.path().join("memo.tsv"));
        let first = fp.fingerprint(dir.path(), &files, &NoTick).unwrap();
        fp.save().unwrap();
        // Same size, inode and mtime but other bytes: only a memo hit returns the old hash.
        fs::write(&p, b"HELLO").unwrap();
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let fp2 = Fingerprinter::with_memo(dir.path().join("memo.tsv"));
        let second = fp2.fingerprint(dir.path(), &files, &NoTick).unwrap();
        assert_eq!(first, second);
        let fresh = Fingerprinter::without_memo()
            .fingerprint(dir.path(), &files, &NoTick)
            .unwrap();
        assert_ne!(first, fresh);
    }

    #[test]
    fn file_set_digest_depends_on_names_not_listing_order() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"1").unwrap();
        fs::write(dir.path().join("b"), b"2").unwrap();
        let fp = Fingerprinter::without_memo();
        let ab = fp
            .fingerprint(dir.path(), &["a".into(), "b".into()], &NoTick)
            .unwrap();
        let ba = fp
            .fingerprint(dir.path(), &["b".into(), "a".into()], &NoTick)
            .unwrap();
        assert_eq!(ab.digest, ba.digest);
        fs::rename(dir.path().join("b"), dir.path().join("c")).unwrap();
        let ac = fp
            .fingerprint(dir.path(), &["a".into(), "c".into()], &NoTick)
            .unwrap();
        assert_ne!(ab.digest, ac.digest);
    }
}
