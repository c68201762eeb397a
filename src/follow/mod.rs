//! Followers: a local copy of a database kept current from its replica, for reads on
//! another machine. A follower restores the copy once, then polls the replica's level 0
//! and applies each new file, verified as a restore verifies it, to the copy under SQLite's
//! own exclusive lock, so readers of the copy see one committed state or the next, never a
//! mix. The copy is in rollback-journal mode (SQLite's public API can write pages into a
//! database only through its pager; a rollback-mode reader takes a shared lock and checks
//! the change counter at every transaction, so pages written under the exclusive lock are
//! seen whole), and the application's connections to it are read-only.
//!
//! `plan` decides what to do next (pure), `engine` polls, downloads and applies, `prefetched`
//! serves a downloaded batch to the applier, `promote` turns a copy into the writer. The lock and the integrity check come from the
//! FFI layer through [`FollowHooks`]. It must never leave the copy torn where a reader can
//! see it: a batch is verified whole before the lock is taken, and an apply that fails
//! under it makes the next step take the replica's newest state over whole.

mod engine;
mod journal;
mod plan;
mod prefetched;
mod promote;

pub use engine::Progress;
pub use plan::{change_counter, follower_header, next, FollowState, Next, BATCH_BYTES};
pub use promote::{follow_url_of, promote, Promoted};

use crate::base::lock::lock;
use crate::error::Error;
use crate::restore::CheckFailure;
use crate::store::ObjectStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a follower needs from SQLite, given by the FFI layer.
pub trait FollowHooks: Send + Sync {
    /// Runs `f` while a connection of ours holds SQLite's EXCLUSIVE lock on the database at
    /// `path` (no reader is inside a transaction; new ones wait on their busy handler).
    fn exclusively(
        &self,
        path: &Path,
        f: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error>;
    /// SQLite's integrity check of a restored file.
    fn check(&self, path: &Path) -> Result<(), CheckFailure>;
    /// Switches the database at `path` to WAL mode (a promoted copy).
    fn to_wal(&self, path: &Path) -> Result<(), Error>;
}

/// Where a follower's copy comes from and how often it looks.
pub struct Source {
    pub store: Box<dyn ObjectStore>,
    pub prefix: String,
    /// Redacted, for status.
    pub replica_url: String,
    /// As given (it may carry secrets: never shown), for a promotion to replicate to.
    pub follow_url: String,
    pub interval_ms: u64,
}

/// The default poll interval: one LIST a second.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;

static FOLLOWERS: Mutex<Vec<Arc<engine::Follower>>> = Mutex::new(Vec::new());

/// Held while a follower starts (its copy may be restored meanwhile).
static STARTING: Mutex<()> = Mutex::new(());

/// Whether this process follows the database at `path` (its connections are read-only).
pub fn is_followed(path: &Path) -> bool {
    lock(&FOLLOWERS).iter().any(|f| f.path == path)
}

/// Each follower of this process: its copy's path, the replica's (redacted) URL and its
/// progress.
pub fn all() -> Vec<(PathBuf, String, Progress)> {
    lock(&FOLLOWERS)
        .iter()
        .map(|f| (f.path.clone(), f.source.replica_url.clone(), f.progress()))
        .collect()
}

/// Starts following `source` into the copy at `path` (an absolute path), unless this
/// process already does: a missing copy is restored first, a copy an apply left torn is
/// taken over whole, and a file that is not a follower's copy is refused. Returns when the
/// copy is ready to read; a thread then keeps it current.
pub fn start(path: &Path, source: Source, hooks: &'static dyn FollowHooks) -> Result<(), Error> {
    // One start at a time; the registry itself is locked only to look and to add, never
    // across a restore (a forked child must not inherit it held).
    let _one = lock(&STARTING);
    let found = lock(&FOLLOWERS).iter().find(|f| f.path == path).cloned();
    if let Some(f) = found {
        if f.source.replica_url != source.replica_url {
            return Err(Error::InvalidArgument(format!(
                "{} already follows {}; it cannot follow {} too",
                path.display(),
                f.source.replica_url,
                source.replica_url
            )));
        }
        return Ok(());
    }
    let follower = Arc::new(engine::Follower::open(path, source, hooks)?);
    let polling = follower.clone();
    std::thread::Builder::new()
        .name("replica-follow".into())
        .spawn(move || polling.run())
        .map_err(|e| Error::Io(format!("starting the follower thread: {e}")))?;
    lock(&FOLLOWERS).push(follower);
    Ok(())
}
