//! Fresh stores for test suites and benchmarks (feature `testing`): each in a file of its
//! own in a temporary directory, removed when the store is dropped.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use annals::EventStore;
//! let store = annals_sqlite::testing::fresh_store().await;
//! assert_eq!(store.stream_version("nothing-1").await?, 0);
//! # Ok::<(), annals::StoreError>(())
//! # }).unwrap();
//! ```
//!
//! The exported conformance suites run on it with one line:
//! `annals::conformance_tests!(async { annals_sqlite::testing::fresh_store().await });`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::SqliteStore;

/// A new, empty directory under the system's temporary directory, removed with its
/// contents when dropped.
///
/// ```
/// let dir = annals_sqlite::testing::TempDir::new()?;
/// let path = dir.path().to_owned();
/// assert!(path.is_dir());
/// drop(dir);
/// assert!(!path.exists());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory: `annals-sqlite-<process>-<time>-<n>` in
    /// [`std::env::temp_dir`].
    pub fn new() -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("annals-sqlite-{}-{time}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the store's file in it, `events.db` (with SQLite's `-wal` and `-shm`
    /// files beside it while it is open).
    pub fn database(&self) -> PathBuf {
        self.path.join("events.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a directory left behind in the temporary directory harms nothing.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A fresh, migrated store in a file of its own, which is removed when the last clone
/// of the store is dropped.
///
/// # Panics
/// When the temporary directory or the store cannot be created: a test cannot run then.
#[allow(clippy::panic, reason = "a test harness reports a broken environment by panicking")]
pub async fn fresh_store() -> SqliteStore {
    match try_fresh_store().await {
        Ok(store) => store,
        Err(error) => panic!("annals-sqlite testing: cannot create a fresh store: {error}"),
    }
}

/// [`fresh_store`], returning what went wrong instead of panicking.
pub async fn try_fresh_store() -> Result<SqliteStore, Box<dyn std::error::Error + Send + Sync>> {
    let dir = TempDir::new()?;
    let pool = SqliteStore::pool_options().connect_with(SqliteStore::file_options(dir.database())).await?;
    let store = SqliteStore::with_guard(pool, Some(Box::new(dir)));
    store.migrate().await?;
    Ok(store)
}
