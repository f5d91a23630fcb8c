//! Per-key lock files, so two processes that need the same stage compute it once.
//!
//! A lock is a file created with `O_EXCL` holding its owner's host, pid and a nonce. It
//! works across hosts sharing a filesystem (`flock` often does not on NFS). The owner
//! refreshes the file's mtime every [`HEARTBEAT`]. A lock whose owner is on this host is
//! stale exactly when its pid is gone (a stopped process keeps its lock); one from another
//! host is stale when its heartbeat is older than [`STALE_AFTER`] (so hosts sharing the
//! filesystem need clocks within that of each other). Stale locks are taken over; live
//! ones are waited for.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::error::GraphError;

/// How often the owner refreshes its lock file.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A lock whose heartbeat is older than this is considered abandoned.
pub const STALE_AFTER: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockOwner {
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// Random token distinguishing two locks of the same process.
    pub nonce: String,
}

impl LockOwner {
    fn me() -> LockOwner {
        LockOwner {
            host: this_host(),
            pid: std::process::id(),
            nonce: blake3::hash(
                format!("{:?}{:?}", SystemTime::now(), std::thread::current().id()).as_bytes(),
            )
            .to_hex()[..16]
                .to_owned(),
        }
    }

    fn encode(&self) -> String {
        format!(
            "host={}\npid={}\nnonce={}\n",
            self.host, self.pid, self.nonce
        )
    }

    fn decode(text: &str) -> Option<LockOwner> {
        let mut host = None;
        let mut pid = None;
        let mut nonce = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("host", v)) => host = Some(v.to_owned()),
                Some(("pid", v)) => pid = v.parse().ok(),
                Some(("nonce", v)) => nonce = Some(v.to_owned()),
                _ => {}
            }
        }
        Some(LockOwner {
            host: host?,
            pid: pid?,
            nonce: nonce?,
        })
    }
}

impl std::fmt::Display for LockOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

/// A held lock; released on drop.
pub struct KeyLock {
    path: PathBuf,
    owner: LockOwner,
    stop: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl KeyLock {
    /// Takes the lock at `path`, waiting while a live owner holds it. `on_wait` is called
    /// once with the holder's description when we start waiting.
    ///
    /// # Errors
    /// When the lock directory cannot be written.
    pub fn acquire(path: &Path, on_wait: impl FnMut(&LockOwner)) -> Result<KeyLock, GraphError> {
        KeyLock::acquire_with_note(path, "", on_wait)
    }

    /// [`KeyLock::acquire`], with `note` (lines of text) written into the lock file after
    /// the owner, for whoever inspects it ([`read_note`]).
    ///
    /// # Errors
    /// When the lock directory cannot be written.
    pub fn acquire_with_note(
        path: &Path,
        note: &str,
        mut on_wait: impl FnMut(&LockOwner),
    ) -> Result<KeyLock, GraphError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(GraphError::io("creating", dir))?;
        }
        let me = LockOwner::me();
        let mut waited = false;
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut file) => {
                    file.write_all(format!("{}{note}", me.encode()).as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(GraphError::io("writing", path))?;
                    return Ok(KeyLock::start(path.to_path_buf(), me));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    match inspect(path) {
                        Holder::Gone => continue,
                        Holder::Stale(inode) => {
                            take_over(path, inode)
                                .map_err(GraphError::io("taking over the stale lock", path))?;
                            continue;
                        }
                        Holder::Live(owner) => {
                            if !waited {
                                on_wait(&owner);
                                waited = true;
                            }
                        }
                    }
                    std::thread::sleep(POLL);
                }
                Err(e) => return Err(GraphError::io("creating", path)(e)),
            }
        }
    }

    /// Whether the lock file is still this lock's: false once another process judged it
    /// stale and took it over (on another host, after [`STALE_AFTER`] without a heartbeat).
    pub fn still_held(&self) -> bool {
        fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| LockOwner::decode(&t))
            .is_some_and(|o| o == self.owner)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn start(path: PathBuf, owner: LockOwner) -> KeyLock {
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let stop = Arc::clone(&stop);
            let path = path.clone();
            std::thread::Builder::new()
                .name("geoexp-lock-heartbeat".into())
                .spawn(move || {
                    // Parked between beats; a drop unparks it, so releasing a lock costs no
                    // wait. A spurious wake-up only beats early.
                    loop {
                        std::thread::park_timeout(HEARTBEAT);
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        if let Ok(f) = fs::File::options().write(true).open(&path) {
                            let _ = f.set_modified(SystemTime::now());
                        }
                    }
                })
                .ok()
        };
        KeyLock {
            path,
            owner,
            stop,
            heartbeat,
        }
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.heartbeat.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        // Only remove the file if it is still ours (a stale-lock takeover may have replaced it).
        let ours = fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| LockOwner::decode(&t))
            .is_some_and(|o| o == self.owner);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The note of a live lock (see [`KeyLock::acquire_with_note`]): `None` when there is no
/// lock at `path` or it is stale.
pub fn read_note(path: &Path) -> Option<String> {
    live_holder(path)?;
    let text = fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !["host=", "pid=", "nonce="].iter().any(|p| l.starts_with(p)))
            .map(|l| format!("{l}\n"))
            .collect(),
    )
}

/// Whether the lock at `path` is stale: its owner is gone (see the module docs). A missing
/// lock is not stale, and neither is a live one.
pub fn is_stale(path: &Path) -> bool {
    matches!(inspect(path), Holder::Stale(_))
}

/// Removes the lock at `path` if it is stale, the way a taker does, so a fresh lock that
/// replaced it meanwhile is never removed. Returns whether a stale lock was removed.
pub fn remove_if_stale(path: &Path) -> bool {
    match inspect(path) {
        Holder::Stale(inode) => take_over(path, inode).is_ok(),
        Holder::Gone | Holder::Live(_) => false,
    }
}

/// The live owner of the lock at `path`, if any: `None` when there is no lock or it is stale.
pub fn live_holder(path: &Path) -> Option<LockOwner> {
    match inspect(path) {
        Holder::Live(owner) => Some(owner),
        Holder::Gone | Holder::Stale(_) => None,
    }
}

enum Holder {
    Gone,
    Stale(u64),
    Live(LockOwner),
}

fn inspect(path: &Path) -> Holder {
    let Ok(meta) = fs::metadata(path) else {
        return Holder::Gone;
    };
    let inode = meta.ino();
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::ZERO);
    let owner = fs::read_to_string(path)
        .ok()
        .and_then(|t| LockOwner::decode(&t));
    match owner {
        // Being written right now, or garbage: judge by age alone.
        None if age < STALE_AFTER => Holder::Live(LockOwner {
            host: "?".into(),
            pid: 0,
            nonce: String::new(),
        }),
        None => Holder::Stale(inode),
        // On this host the pid says it all: a process stopped (Ctrl-Z, a suspended Slurm
        // job) sends no heartbeat but still owns its lock.
        Some(owner) if owner.host == this_host() => {
            if pid_is_alive(owner.pid) {
                Holder::Live(owner)
            } else {
                Holder::Stale(inode)
            }
        }
        Some(_) if age >= STALE_AFTER => Holder::Stale(inode),
        Some(owner) => Holder::Live(owner),
    }
}

/// Removes a stale lock, taking care not to remove a fresh lock another process created
/// after we judged the old one stale.
///
/// # Errors
/// When the lock cannot be moved (a read-only cache); one that is already gone is fine.
fn take_over(path: &Path, judged_inode: u64) -> std::io::Result<()> {
    let aside = path.with_extension(format!("stale-{}", std::process::id()));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let same = fs::metadata(&aside).is_ok_and(|m| m.ino() == judged_inode);
    if !same {
        // We moved someone's fresh lock: put it back unless a newer one already exists.
        let _ = fs::hard_link(&aside, path);
    }
    let _ = fs::remove_file(&aside);
    Ok(())
}

pub(crate) fn pid_is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This machine's host name, as recorded in lock files and `execution.toml`.
pub fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_second_taker_waits_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let first = KeyLock::acquire(&path, |_| {}).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let t = {
            let path = path.clone();
            let order = Arc::clone(&order);
            std::thread::spawn(move || {
                let mut waited = false;
                let _second = KeyLock::acquire(&path, |_| waited = true).unwrap();
                order.lock().unwrap().push("second");
                waited
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        order.lock().unwrap().push("first released");
        drop(first);
        assert!(t.join().unwrap(), "the second taker reported waiting");
        assert_eq!(*order.lock().unwrap(), ["first released", "second"]);
        assert!(!path.exists());
    }

    #[test]
    fn a_lock_of_a_dead_process_on_this_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let dead = LockOwner {
            host: this_host(),
            pid: i32::MAX as u32 - 7,
            nonce: "x".into(),
        };
        fs::write(&path, dead.encode()).unwrap();
        let lock = KeyLock::acquire(&path, |o| panic!("waited for {o}")).unwrap();
        let held = LockOwner::decode(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(held.pid, std::process::id());
        drop(lock);
    }

    #[test]
    fn a_lock_of_a_live_process_on_this_host_stays_live_however_old_its_heartbeat() {
        // A process stopped with Ctrl-Z sends no heartbeat but must keep its lock.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let me = LockOwner {
            host: this_host(),
            pid: std::process::id(),
            nonce: "x".into(),
        };
        fs::write(&path, me.encode()).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - STALE_AFTER * 10)
            .unwrap();
        assert!(matches!(inspect(&path), Holder::Live(_)));
        assert!(!remove_if_stale(&path));
        assert!(path.exists());
    }

    #[test]
    fn a_lock_from_another_host_with_an_old_heartbeat_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let other = LockOwner {
            host: "elsewhere".into(),
            pid: 1,
            nonce: "x".into(),
        };
        fs::write(&path, other.encode()).unwrap();
        assert!(matches!(inspect(&path), Holder::Live(_)));
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - STALE_AFTER - Duration::from_secs(1))
            .unwrap();
        assert!(matches!(inspect(&path), Holder::Stale(_)));
    }
}
