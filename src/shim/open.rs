//! Deciding at open whether a database replicates: the process configuration (read once),
//! the base VFS the replica VFS sits on, the restore a missing database may need first, the
//! registration of a replicated database, and `DbObserver`, which watches its main file for
//! the end of write transactions and its last close. It must not read or capture the WAL.

use super::capture::settle_deferred;
use super::refused::{forget, note, refuse, NotReplicated, ReadOnlyOpen};
use super::standby::stand_by;
use crate::base::io::ReadAt;
use crate::base::lock::lock;
use crate::config::{ReplicaConfig, Resolver};
use crate::database::{self, Database};
use crate::error::Error;
use crate::spool::SpoolError;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

static BASE_VFS_NAME: Mutex<String> = Mutex::new(String::new());
static RESOLVER: OnceLock<Resolver> = OnceLock::new();

pub fn set_base_vfs_name(name: &str) {
    *lock(&BASE_VFS_NAME) = name.to_string();
}

pub fn base_vfs_name() -> String {
    let n = lock(&BASE_VFS_NAME).clone();
    if n.is_empty() {
        "unix".into()
    } else {
        n
    }
}

/// Reads the configuration once per process; a bad config fails the load.
pub fn init_process_config() -> Result<(), Error> {
    if RESOLVER.get().is_some() {
        return Ok(());
    }
    let (resolver, warnings) = Resolver::from_process()?;
    for line in resolver.summary() {
        crate::base::log::info(&line);
    }
    for w in &warnings {
        crate::base::log::add_warning(&w.to_string());
    }
    let _ = RESOLVER.set(resolver);
    Ok(())
}

/// URI parameters the configuration understands.
const URI_KEYS: &[&str] = &["replica", "replica_sync_interval"];

/// A main database file is being opened: if it replicates, make sure it is registered.
/// One opened read-only (`read_only`) commits nothing and takes no spool: unless another
/// connection of this process replicates it, it is recorded as not replicated, and why.
pub fn on_open_main_db(
    path: &str,
    read_only: Option<ReadOnlyOpen>,
    uri_param: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<DbObserver>, Error> {
    let Some(resolver) = RESOLVER.get() else {
        return Ok(None);
    };
    if path.is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(path);
    let Some(cfgs) = resolve_at_open(resolver, &path, uri_param)? else {
        return Ok(None);
    };
    if let Some(how) = read_only {
        if database::get(&path).is_none() && !super::replicated_elsewhere(&path) {
            note(&path, &cfgs[0], NotReplicated::ReadOnly(how), false);
        }
        return Ok(None);
    }
    let cfg_kept = cfgs.clone();
    match open_database(&path, cfgs) {
        Ok(db) => {
            forget(&path);
            Ok(db.owned_here().then(|| DbObserver::new(db)))
        }
        Err(Error::Spool(e @ SpoolError::Locked(_))) => {
            // Not an error for the application: its database opens normally. The owner
            // takes this process's commits from the WAL; if it goes away, this one takes
            // over (see `take_over_standbys`).
            stand_by(&path, cfg_kept, &e);
            database::wake_uploader();
            Ok(None)
        }
        // Not an error for the application either: its database works, unreplicated
        // (a spool that cannot be trusted, or that this process may not write).
        Err(Error::Spool(e)) if refuse(&path, &cfg_kept[0], &e) => Ok(None),
        Err(Error::InvalidArgument(e)) => {
            crate::base::log::add_warning(&e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn resolve_at_open(
    resolver: &Resolver,
    path: &Path,
    uri_param: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Vec<ReplicaConfig>>, Error> {
    let params: Vec<(String, String)> = URI_KEYS
        .iter()
        .filter_map(|k| uri_param(k).map(|v| (k.to_string(), v)))
        .collect();
    Ok(resolver.resolve(path, &params)?)
}

/// Whether some database may need scheduled restore drills (see
/// [`crate::functions::run_scheduled_drills`]).
pub fn drills_configured() -> bool {
    RESOLVER.get().is_some_and(Resolver::schedules_drills)
}

/// A main database is about to be opened (before SQLite creates its file): whether it must
/// first be restored from its replica, and from where. It must when it replicates, neither
/// it nor its WAL exists and its configuration asks for it (`restore-if-db-not-exists`, on by
/// default here). The caller restores (an empty replica is a new database; a replica that
/// cannot be read fails the open, because an empty database created in its place would then
/// be replicated over the good replica).
pub fn restore_needed_before_open(
    path: &str,
    uri_param: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(PathBuf, Vec<ReplicaConfig>)>, Error> {
    let Some(resolver) = RESOLVER.get() else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    if path.as_os_str().is_empty() || path.exists() || crate::wal::log_path_of(&path).exists() {
        return Ok(None);
    }
    let Some(cfgs) =
        resolve_at_open(resolver, &path, uri_param)?.filter(|cfgs| cfgs[0].restore_if_missing)
    else {
        return Ok(None);
    };
    // The replica of another database here (REPLICA_URL names replicas by file name, so
    // /a/app.db and /b/app.db share one): it is not this database's, and opening will say so.
    let taken = |cfg: &ReplicaConfig| {
        database::all().iter().any(|db| {
            db.path != path && db.destinations.iter().any(|d| d.config.url() == cfg.url())
        })
    };
    if cfgs.iter().any(taken) {
        return Ok(None);
    }
    Ok(Some((path, cfgs)))
}

/// Registers a replicated database with its destinations (also used by tests that drive
/// the shim directly).
pub fn open_database(path: &Path, cfgs: Vec<ReplicaConfig>) -> Result<Arc<Database>, Error> {
    let db = database::get_or_open(path, cfgs)?;
    database::wake_uploader();
    Ok(db)
}

/// What the process configuration says about a database path (for restore by name): its
/// destinations, the first one first.
pub fn resolve_for_path(path: &Path) -> Result<Option<Vec<ReplicaConfig>>, Error> {
    match RESOLVER.get() {
        Some(r) => Ok(r.resolve(path, &[])?),
        None => Ok(None),
    }
}

/// The destinations of `path` when replicated to `url`, as `?replica=URL` gives them (a
/// promoted follower's copy).
pub fn resolve_with_url(path: &Path, url: &str) -> Result<Option<Vec<ReplicaConfig>>, Error> {
    match RESOLVER.get() {
        Some(r) => Ok(r.resolve(path, &[("replica".to_string(), url.to_string())])?),
        None => Ok(None),
    }
}

/// Watches a replicated database's main file for the end of write transactions.
pub struct DbObserver {
    db: Arc<Database>,
}

impl Drop for DbObserver {
    /// The last connection of this process to the database closed: ship what is pending
    /// and hand the replica's lease back, waiting at most its `shutdown-sync-timeout`
    /// (`REPLICA_SHUTDOWN_SYNC_TIMEOUT`; default 2 s). Nothing depends on it: what is
    /// not shipped stays in the spool for the next process, and a lease not handed back
    /// expires.
    fn drop(&mut self) {
        let left = self.db.open_handles.fetch_sub(1, Ordering::SeqCst);
        if left == 1 && self.db.owned_here() {
            on_last_close(&self.db);
        }
    }
}

fn on_last_close(db: &Database) {
    let timeout = db.config.shutdown_sync_timeout;
    if timeout.is_zero() {
        return;
    }
    let deadline = std::time::Instant::now() + timeout;
    let target = db.spool.last_seq();
    let request = db.progress().lease_release_requests + 1;
    db.update_progress(|p| {
        p.flush_requested = true;
        p.lease_release_requests = request;
    });
    database::wake_uploader();
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let _ = db.wait_for(left, |p| {
        (p.shipped_seq >= target && p.needs_snapshot.is_none() && p.lease_released >= request)
            || p.last_error.is_some()
    });
}

impl DbObserver {
    fn new(db: Arc<Database>) -> DbObserver {
        db.open_handles.fetch_add(1, Ordering::SeqCst);
        DbObserver { db }
    }

    /// SQLite released the WAL write lock: every write of the transaction is done, so a
    /// deferred commit can be settled now, before the application sees COMMIT return.
    pub fn after_write_unlock(&self, open_wal: &mut dyn FnMut() -> Option<Box<dyn ReadAt>>) {
        settle_deferred(&self.db, open_wal);
    }

    /// SQLite took (`true`) or let go of the checkpoint lock. After a checkpoint the log may
    /// restart at the next write, which captures whatever is still queued first and hands
    /// the spool's buffer over. The capture thread's looks while the checkpoint copies pages
    /// and syncs take both off that write; it is not woken for them (a wake-up costs the
    /// committing thread about as much as capturing a score of commits, and the checkpoint
    /// usually outlasts the thread's pause between looks).
    pub fn checkpointing(&self, running: bool) {
        self.db.checkpoint_running.store(running, Ordering::Relaxed);
    }

    pub fn db_path(&self) -> &Path {
        &self.db.path
    }

    /// A write of `data` at `offset` to the main file succeeded: page 1 says whether the
    /// database is (still) in WAL mode.
    pub fn after_main_write(&self, offset: u64, data: &[u8]) {
        if offset == 0 {
            super::journal::page_one_written(&self.db, data);
        }
    }
}
