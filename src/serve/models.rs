//! The model directory: which checkpoints it offers, resolving a name from a URL to a file
//! that is certainly inside it, and keeping the most recently used models loaded.
//!
//! A name is a file stem: `golf` is `<models>/golf.safetensors`. The listing is a plain
//! `read_dir` per request, so a checkpoint copied in appears at once. A name with path
//! characters is not looked up at all; a file that resolves (through links) outside the
//! directory is refused before it is opened. A loaded model is reused while its file's
//! size and modification time are unchanged, so a replaced checkpoint is reloaded. Each
//! loaded model comes with its [`Batcher`], whose thread ends once the model is dropped
//! from the cache and its last request is answered.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use candle_core::Device;
use lru::LruCache;

use super::batcher::Batcher;
use crate::infer::Model;
use crate::train::checkpoint::{EXTENSION, is_plain_name};

use super::error::ApiError;

/// What identifies one version of a checkpoint file.
type Stamp = (Option<SystemTime>, u64);

struct Entry {
    served: Arc<Batcher>,
    stamp: Stamp,
}

/// How loaded models answer.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Most locations in one forward pass.
    pub batch_size: usize,
    /// Classes listed in each answer.
    pub top: usize,
}

/// The served models.
pub struct ModelStore {
    dir: PathBuf,
    device: Device,
    batching: Batching,
    loaded: Mutex<LruCache<String, Entry>>,
    /// One lock per model name that has been loaded, so that concurrent requests for a cold
    /// model wait for one load instead of each loading it (bounded by the files served).
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl ModelStore {
    /// Serves the checkpoints in `dir`, keeping at most `capacity` loaded on `device`.
    ///
    /// # Errors
    /// When `dir` is not a readable directory.
    pub fn new(
        dir: &Path,
        device: Device,
        capacity: usize,
        batching: Batching,
    ) -> std::io::Result<Self> {
        let dir = dir.canonicalize().map_err(|e| {
            std::io::Error::new(e.kind(), format!("model directory {}: {e}", dir.display()))
        })?;
        if !dir.is_dir() {
            return Err(std::io::Error::other(format!(
                "model directory {}: not a directory",
                dir.display()
            )));
        }
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Ok(ModelStore {
            dir,
            device,
            batching,
            loaded: Mutex::new(LruCache::new(capacity)),
            loading: Mutex::new(HashMap::new()),
        })
    }

    /// The directory, canonical.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names of the checkpoints in the directory, sorted; files linking outside it are left
    /// out.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn names(&self) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let file = e.file_name().to_str()?.to_owned();
                let name = file.strip_suffix(&format!(".{EXTENSION}"))?;
                // A checkpoint's refinement gallery is not a model.
                let gallery = name.ends_with(crate::infer::gallery::SUFFIX);
                (is_plain_name(name) && !gallery && self.inside(&e.path())).then(|| name.to_owned())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Whether `path` exists and resolves inside the directory.
    fn inside(&self, path: &Path) -> bool {
        path.canonicalize()
            .is_ok_and(|c| c.starts_with(&self.dir) && c.is_file())
    }

    /// The file of model `name`: 404 for names that are not plain file stems or have no
    /// file, 403 for files that lead outside the directory.
    ///
    /// # Errors
    /// As described.
    pub fn locate(&self, name: &str) -> Result<PathBuf, ApiError> {
        let missing = || {
            ApiError::not_found(format!(
                "no model named `{name}`; GET /models lists the models served"
            ))
        };
        if !is_plain_name(name) {
            return Err(missing());
        }
        let path = self.dir.join(format!("{name}.{EXTENSION}"));
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(missing());
        }
        // Say what is wrong with a file that is there but unusable, rather than calling it
        // outside the directory.
        match path.canonicalize() {
            Err(_) => {
                return Err(ApiError::not_found(format!(
                    "model `{name}` is a dangling link: its file does not exist"
                )));
            }
            Ok(real) if real.starts_with(&self.dir) && !real.is_file() => {
                return Err(ApiError::not_found(format!(
                    "model `{name}` is not a regular file ({})",
                    crate::dataset::layout::file_kind(&real)
                )));
            }
            Ok(_) => {}
        }
        if !self.inside(&path) {
            return Err(ApiError::forbidden(format!(
                "model `{name}` resolves outside the model directory and is not served"
            )));
        }
        Ok(path)
    }

    /// Model `name` with its batcher, loaded (once, then shared) or taken from the cache.
    /// Blocking: call it off the async runtime.
    ///
    /// # Errors
    /// As [`ModelStore::locate`]; 500 when the file is not a usable checkpoint.
    pub fn get(&self, name: &str) -> Result<Arc<Batcher>, ApiError> {
        let path = self.locate(name)?;
        if let Some(served) = self.cached(name, stamp(&path)) {
            return Ok(served);
        }
        // Loaded under this model's own lock only, so other models keep answering meanwhile;
        // a request that waited here finds the model its predecessor loaded.
        let gate = Arc::clone(
            unpoisoned(&self.loading)
                .entry(name.to_owned())
                .or_default(),
        );
        let _loading = unpoisoned(&gate);
        let stamp = stamp(&path);
        if let Some(served) = self.cached(name, stamp) {
            return Ok(served);
        }
        let model = Model::open(&path, &self.device).map_err(|e| {
            ApiError::internal(format!(
                "model `{name}` cannot be loaded: {}",
                crate::graph::error_chain(&e)
            ))
        })?;
        let served = Batcher::start(model, self.batching.batch_size, self.batching.top)
            .map_err(|e| ApiError::internal(format!("starting the inference thread: {e}")))?;
        let served = Arc::new(served);
        self.lock().put(
            name.to_owned(),
            Entry {
                served: Arc::clone(&served),
                stamp,
            },
        );
        Ok(served)
    }

    /// Model `name` if it is loaded from the file version `stamp`.
    fn cached(&self, name: &str, stamp: Stamp) -> Option<Arc<Batcher>> {
        self.lock()
            .get(name)
            .filter(|entry| entry.stamp == stamp)
            .map(|entry| Arc::clone(&entry.served))
    }

    /// Names of the models loaded now, most recently used first.
    pub fn loaded(&self) -> Vec<String> {
        self.lock().iter().map(|(k, _)| k.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Entry>> {
        unpoisoned(&self.loaded)
    }
}

/// `m` locked. A panic while holding one of the store's locks cannot leave what it guards
/// inconsistent (every operation on it is a single call), so a poisoned lock is still usable.
fn unpoisoned<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn store(dir: &Path) -> ModelStore {
        let batching = Batching {
            batch_size: 4,
            top: 3,
        };
        ModelStore::new(dir, Device::Cpu, 2, batching).unwrap()
    }

    #[test]
    fn lists_checkpoint_stems_sorted_and_leaves_out_links_leading_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x.safetensors"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "b.safetensors",
            "a.safetensors",
            "a.gallery.safetensors",
            "notes.txt",
            ".hidden.safetensors",
        ] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        std::os::unix::fs::symlink(
            outside.path().join("x.safetensors"),
            dir.path().join("leak.safetensors"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("a.safetensors"),
            dir.path().join("alias.safetensors"),
        )
        .unwrap();
        assert_eq!(store(dir.path()).names().unwrap(), ["a", "alias", "b"]);
    }

    #[test]
    fn names_that_would_leave_the_directory_are_never_resolved() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x.safetensors"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("x.safetensors"),
            dir.path().join("leak.safetensors"),
        )
        .unwrap();
        let s = store(dir.path());
        for name in ["../x", "..", "/etc/passwd", "a/b", ".hidden", ""] {
            assert_eq!(
                s.locate(name).unwrap_err().status,
                StatusCode::NOT_FOUND,
                "{name}"
            );
        }
        assert_eq!(s.locate("leak").unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(
            s.locate("absent").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn loaded_models_are_shared_bounded_and_reloaded_when_their_file_changes() {
        use crate::train::checkpoint::testing::write_checkpoint;
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b", "c"] {
            write_checkpoint(dir.path(), name, 1);
        }
        let s = store(dir.path());
        let a = s.get("a").unwrap();
        assert!(
            Arc::ptr_eq(&a, &s.get("a").unwrap()),
            "loaded once, then shared"
        );
        s.get("b").unwrap();
        let c = s.get("c").unwrap();
        assert_eq!(
            s.loaded(),
            ["c", "b"],
            "capacity 2: the least recently used went"
        );
        // A replaced checkpoint (a newer modification time) is loaded afresh.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_checkpoint(dir.path(), "c", 2);
        let replaced = s.get("c").unwrap();
        assert!(!Arc::ptr_eq(&c, &replaced));
        assert!(Arc::ptr_eq(&replaced, &s.get("c").unwrap()));
    }

    #[test]
    fn concurrent_requests_for_a_cold_model_share_one_load() {
        use crate::train::checkpoint::testing::write_checkpoint;
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), "a", 1);
        let s = store(dir.path());
        let start = std::sync::Barrier::new(8);
        let served: Vec<Arc<Batcher>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        s.get("a").unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for other in &served[1..] {
            assert!(Arc::ptr_eq(&served[0], other), "one model, loaded once");
        }
    }

    #[test]
    fn a_file_that_is_not_a_checkpoint_is_a_server_error_naming_the_model() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("junk.safetensors"), b"not safetensors").unwrap();
        let err = store(dir.path()).get("junk").unwrap_err();
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            err.message.contains("`junk` cannot be loaded"),
            "{}",
            err.message
        );
    }
}
