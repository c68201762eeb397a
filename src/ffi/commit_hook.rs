//! SQLite's WAL hook, which SQLite calls after a transaction has committed and released its
//! locks, and whose error code becomes the statement's (the documented outcome: the commit
//! has happened locally). It serves synchronous commits (running `replica_sync` from it) and
//! the capture of connections opened before the load (handing the commit to
//! `super::adopt`), and keeps SQLite's auto-checkpoint it replaces. It owns installing and
//! removing the hook; waiting, batching and messages live in `crate::functions`. It must
//! not touch replication state itself.

use super::{guard, sqlite_fn, sys};
use crate::error::Error;
use crate::functions::sync_commit::{self, Settings};
use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// Arms synchronous commits on `db` if its main database's URI says `replica_sync=commit`
/// (with `replica_sync_timeout=<ms>`, default 5000). The WAL hook cannot be installed yet:
/// SQLite sets its auto-checkpoint hook after the auto-extensions run, replacing any other.
/// So a commit hook installs it just before the first commit, then removes itself.
pub(super) fn configure_from_uri(db: *mut sys::sqlite3) -> Result<(), Error> {
    if uri_settings(db)?.is_none() {
        return Ok(());
    }
    let commit_hook = sqlite_fn!(commit_hook);
    // SAFETY: a live connection; the argument is the connection itself, which outlives its
    // hooks.
    unsafe { commit_hook(db, Some(before_first_commit), db as *mut c_void) };
    Ok(())
}

/// [`configure_from_uri`] for a connection that is already open: the WAL hook can be
/// installed now.
pub(super) fn configure_open_connection(db: *mut sys::sqlite3) -> Result<(), Error> {
    if let Some(timeout) = uri_settings(db)? {
        set_mode(db, true, Some(timeout))?;
    }
    Ok(())
}

/// The timeout the URI asks for, when it asks for synchronous commits.
fn uri_settings(db: *mut sys::sqlite3) -> Result<Option<u32>, Error> {
    let filename = sqlite_fn!(db_filename);
    // SAFETY: a live connection; the name (with its URI parameters) is owned by it.
    let name = unsafe { filename(db, c"main".as_ptr()) };
    if name.is_null() {
        return Ok(None);
    }
    let param = sqlite_fn!(uri_parameter);
    let int64 = sqlite_fn!(uri_int64);
    // SAFETY: `name` is a database file name SQLite gave us, as uri_parameter requires.
    let mode = unsafe { param(name, c"replica_sync".as_ptr()) };
    if mode.is_null() {
        return Ok(None);
    }
    // SAFETY: NUL-terminated text owned by the connection.
    let mode = unsafe { CStr::from_ptr(mode) }
        .to_string_lossy()
        .to_string();
    if !sync_commit::parse_mode(&mode)? {
        return Ok(None);
    }
    // SAFETY: as above.
    let quorum = unsafe { param(name, c"replica_sync_quorum".as_ptr()) };
    if !quorum.is_null() {
        // SAFETY: NUL-terminated text owned by the connection.
        let quorum = unsafe { CStr::from_ptr(quorum) }.to_string_lossy();
        crate::functions::Quorum::parse(Some(&quorum), "replica_sync_quorum")?;
    }
    // SAFETY: as above.
    let timeout = unsafe {
        int64(
            name,
            c"replica_sync_timeout".as_ptr(),
            i64::from(sync_commit::DEFAULT_TIMEOUT_MS),
        )
    };
    sync_commit::parse_timeout(timeout).map(Some)
}

unsafe extern "C" fn before_first_commit(arg: *mut c_void) -> c_int {
    guard(0, || {
        let db = arg as *mut sys::sqlite3;
        if let Ok(Some(timeout)) = uri_settings(db) {
            if let Err(e) = set_mode(db, true, Some(timeout)) {
                crate::base::log::error(&format!("synchronous commits: {e}"));
            }
        }
        let commit_hook = sqlite_fn!(commit_hook);
        // SAFETY: a live connection; removing this hook (SQLite allows it from the hook).
        unsafe { commit_hook(db, None, std::ptr::null_mut()) };
        0 // let the commit go on
    })
}

/// The WAL hook a connection had, taken off it (the API only tells by replacing it).
enum Previous {
    Ours(Settings),
    /// SQLite's auto-checkpoint hook, whose argument is the page count.
    AutoCheckpoint(u32),
    /// None, or one installed through the C API that cannot be put back.
    Other,
}

fn take_hook(db: *mut sys::sqlite3) -> Previous {
    let wal_hook = sqlite_fn!(wal_hook);
    // SAFETY: a live connection; the caller installs a hook again.
    let previous = unsafe { wal_hook(db, None, std::ptr::null_mut()) } as usize;
    match Settings::unpack(previous as u64) {
        Some(s) => Previous::Ours(s),
        None if previous > 0 && previous <= c_int::MAX as usize => {
            Previous::AutoCheckpoint(previous as u32)
        }
        None => Previous::Other,
    }
}

/// Installs our WAL hook with `s` when it has work to do, else puts SQLite's own
/// auto-checkpoint hook back.
fn install(db: *mut sys::sqlite3, s: Settings) {
    if s.synchronous() || s.capture {
        let wal_hook = sqlite_fn!(wal_hook);
        // SAFETY: a live connection; the argument is a packed integer, never dereferenced.
        unsafe { wal_hook(db, Some(after_commit), s.pack() as usize as *mut c_void) };
    } else if s.autocheckpoint > 0 {
        let auto = sqlite_fn!(wal_autocheckpoint);
        // SAFETY: a live connection; this reinstalls SQLite's own hook.
        unsafe { auto(db, s.autocheckpoint.min(c_int::MAX as u32) as c_int) };
    }
}

/// The connection's settings as its WAL hook holds them (taking the hook off it).
fn take_settings(db: *mut sys::sqlite3) -> Settings {
    match take_hook(db) {
        Previous::Ours(s) => s,
        Previous::AutoCheckpoint(n) => Settings {
            timeout_ms: 0,
            autocheckpoint: n,
            capture: false,
        },
        Previous::Other => Settings {
            timeout_ms: 0,
            autocheckpoint: 0,
            capture: false,
        },
    }
}

/// Switches `db` to synchronous (`on`) or asynchronous commits; returns the settings now in
/// force (`None` = asynchronous). `timeout_ms` keeps the current one when `None`.
pub(super) fn set_mode(
    db: *mut sys::sqlite3,
    on: bool,
    timeout_ms: Option<u32>,
) -> Result<Option<Settings>, Error> {
    if usize::BITS < 64 {
        return Err(Error::Unsupported(
            "synchronous commits need a 64-bit build".into(),
        ));
    }
    let current = take_settings(db);
    let timeout = timeout_ms
        .or(current.synchronous().then_some(current.timeout_ms))
        .unwrap_or(sync_commit::DEFAULT_TIMEOUT_MS);
    let settings = Settings {
        timeout_ms: if on { timeout } else { 0 },
        ..current
    };
    install(db, settings);
    Ok(settings.synchronous().then_some(settings))
}

/// The settings of `db`'s hook, if it makes COMMIT wait for the replica.
pub(super) fn current(db: *mut sys::sqlite3) -> Option<Settings> {
    let s = take_settings(db);
    install(db, s);
    s.synchronous().then_some(s)
}

/// What the WAL hook calls to capture a commit of a connection opened before the load
/// (given by `super::adopt`, which installs the capturing hook through this module).
pub(super) type CaptureCommit = fn(*mut sys::sqlite3, *const c_char, c_int);

static CAPTURE_COMMIT: std::sync::OnceLock<CaptureCommit> = std::sync::OnceLock::new();

/// Makes `db`'s WAL hook capture its commits (a connection opened before the load) through
/// `capture`. Returns false when usize cannot carry the packed settings.
pub(super) fn capture_commits(db: *mut sys::sqlite3, capture: CaptureCommit) -> bool {
    if usize::BITS < 64 {
        return false;
    }
    let _ = CAPTURE_COMMIT.set(capture);
    let s = take_settings(db);
    install(db, Settings { capture: true, ..s });
    true
}

/// After each commit that wrote WAL frames: capture it if the connection is one the replica
/// VFS does not see, wait for the replica in synchronous mode, then do the auto-checkpoint
/// SQLite's own hook would have done.
unsafe extern "C" fn after_commit(
    arg: *mut c_void,
    db: *mut sys::sqlite3,
    db_name: *const c_char,
    frames: c_int,
) -> c_int {
    guard(sys::SQLITE_OK, || {
        let Some(settings) = Settings::unpack(arg as usize as u64) else {
            return sys::SQLITE_OK;
        };
        if let Some(capture) = CAPTURE_COMMIT.get().filter(|_| settings.capture) {
            capture(db, db_name, frames);
        }
        let rc = if settings.synchronous() {
            wait_for_replica(db, db_name, settings)
        } else {
            sys::SQLITE_OK
        };
        if settings.autocheckpoint > 0 && frames >= settings.autocheckpoint as c_int {
            let checkpoint = sqlite_fn!(wal_checkpoint);
            // SAFETY: as SQLite's default hook does: a passive checkpoint of this database.
            unsafe { checkpoint(db, db_name) };
        }
        rc
    })
}

/// A synchronous COMMIT's wait for the replica; the code the statement returns.
fn wait_for_replica(db: *mut sys::sqlite3, db_name: *const c_char, settings: Settings) -> c_int {
    let Some(path) = db_path(db, db_name) else {
        return sys::SQLITE_OK;
    };
    if crate::shim::replicated_elsewhere(&path) {
        // Another process ships this commit: wait for it to say so.
        // SAFETY: db_name is the schema name SQLite passed to this hook.
        let schema = unsafe { CStr::from_ptr(db_name) };
        let Some(idx) = super::sqlite::wal_index_header_of(db, schema) else {
            return sys::SQLITE_OK;
        };
        let commit = crate::wal::WalPosition::new((idx.salt1, idx.salt2), idx.mx_frame);
        let quorum = sync_quorum(db, db_name);
        return match crate::functions::wait_for_other_process(
            &path,
            commit,
            settings.timeout_ms,
            quorum,
        ) {
            Ok(_) => sys::SQLITE_OK,
            Err(e) => {
                crate::base::log::error(&format!(
                    "synchronous COMMIT: committed locally, not confirmed by the replica: {e}"
                ));
                sys::SQLITE_WARNING
            }
        };
    }
    if crate::database::get(&path).is_none() {
        return sys::SQLITE_OK;
    }
    // Through SQL, so that a failure's message ("committed locally, not yet in the
    // replica …") becomes the connection's error message for the COMMIT.
    let quorum = sync_quorum(db, db_name);
    let sql = format!(
        "SELECT replica_sync({}, '{}')",
        settings.timeout_ms,
        quorum.as_sql()
    );
    let sql = CString::new(sql).unwrap_or_default();
    let exec = sqlite_fn!(exec);
    // SAFETY: a live connection inside its own WAL hook, where running statements is
    // allowed (SQLite's own hook runs a checkpoint here); no callback.
    let rc = unsafe {
        exec(
            db,
            sql.as_ptr(),
            None,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if rc != sys::SQLITE_OK {
        // SQLite replaces a WAL hook's error message with the generic text of its code,
        // so the detail goes to the log and the code is the one that does not claim a
        // failed commit: SQLITE_WARNING ("warning message").
        let errmsg = sqlite_fn!(errmsg);
        // SAFETY: a live connection; the message is copied before any other call.
        let detail = unsafe { CStr::from_ptr(errmsg(db)) }
            .to_string_lossy()
            .to_string();
        crate::base::log::error(&format!(
            "synchronous COMMIT: committed locally, not confirmed by the replica: {detail}"
        ));
        return sys::SQLITE_WARNING;
    }
    sys::SQLITE_OK
}

/// How many destinations a synchronous COMMIT waits for: the database's URI parameter
/// `replica_sync_quorum` (`all`, the default, `any` or a number), checked when the mode
/// was armed (see `uri_settings`).
fn sync_quorum(db: *mut sys::sqlite3, db_name: *const c_char) -> crate::functions::Quorum {
    let filename = sqlite_fn!(db_filename);
    let param = sqlite_fn!(uri_parameter);
    // SAFETY: a live connection and the schema name SQLite passed to the hook.
    let name = unsafe { filename(db, db_name) };
    if name.is_null() {
        return crate::functions::Quorum::All;
    }
    // SAFETY: `name` is a database file name SQLite gave us, as uri_parameter requires.
    let value = unsafe { param(name, c"replica_sync_quorum".as_ptr()) };
    if value.is_null() {
        return crate::functions::Quorum::All;
    }
    // SAFETY: NUL-terminated text owned by the connection.
    let value = unsafe { CStr::from_ptr(value) }.to_string_lossy();
    crate::functions::Quorum::parse(Some(&value), "replica_sync_quorum").unwrap_or_else(|e| {
        crate::base::log::error(&format!(
            "synchronous commits: {e}; waiting for every destination"
        ));
        crate::functions::Quorum::All
    })
}

pub(super) fn db_path(db: *mut sys::sqlite3, db_name: *const c_char) -> Option<std::path::PathBuf> {
    let filename = sqlite_fn!(db_filename);
    // SAFETY: a live connection and the schema name SQLite passed to the hook.
    let p = unsafe { filename(db, db_name) };
    if p.is_null() {
        return None;
    }
    // SAFETY: NUL-terminated, owned by the connection.
    let path = unsafe { CStr::from_ptr(p) }.to_string_lossy().to_string();
    (!path.is_empty()).then(|| std::path::PathBuf::from(path))
}
