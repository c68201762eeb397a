//! The extension entry point: version check, VFS registration, SQL functions on this and
//! every later connection. Loading twice is harmless.

use super::{guard, sys, vfs, API};
use crate::error::Error;
use std::ffi::{c_char, c_int, CString};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// The oldest SQLite we accept: 3.37 has every API routine and VFS method we use.
const MIN_SQLITE_VERSION: c_int = 3_037_000;

static INIT: Mutex<bool> = Mutex::new(false);

/// Found by SQLite from the file name `libreplica.so`.
///
/// # Safety
/// Called by SQLite's extension loader with a valid connection, error-message slot and
/// API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_replica_init(
    db: *mut sys::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *const sys::sqlite3_api_routines,
) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        if p_api.is_null() {
            return sys::SQLITE_ERROR;
        }
        API.store(p_api as *mut _, Ordering::Release);
        match init(db) {
            Ok(()) => sys::SQLITE_OK_LOAD_PERMANENTLY,
            Err(e) => {
                set_error_message(pz_err_msg, &format!("libreplica: {e}"));
                sys::SQLITE_ERROR
            }
        }
    })
}

fn init(db: *mut sys::sqlite3) -> Result<(), Error> {
    let version = {
        let f = super::sqlite_fn!(libversion_number);
        // SAFETY: a plain query of a library constant.
        unsafe { f() }
    };
    if version < MIN_SQLITE_VERSION {
        return Err(Error::Unsupported(format!(
            "SQLite {}.{}.{} is too old: libreplica needs 3.37.0 or newer",
            version / 1_000_000,
            version / 1000 % 1000,
            version % 1000
        )));
    }
    let mut done = crate::base::lock::lock(&INIT);
    if !*done {
        crate::base::log::set_sink(|level, msg| super::sqlite_log(log_code(level), msg));
        // A bad config is reported now, at load time, rather than silently not replicating.
        crate::shim::init_process_config()?;
        let make_default = std::env::var("REPLICA_DEFAULT_VFS")
            .map(|v| v != "0")
            .unwrap_or(true);
        vfs::register(make_default)?;
        super::fork::install_fork_handler();
        crate::uploader::set_snapshot_source(Box::new(super::sqlite::LiveDatabase));
        crate::shim::set_index_reader(super::sqlite::wal_index_state_at);
        crate::base::held_dir::set_entry_probe(super::os::holds_entry);
        crate::shim::set_wal_opener(super::functions::open_wal_for_read);
        crate::database::set_uploader_wake(crate::uploader::wake);
        if crate::shim::drills_configured() {
            // One thread for every database's drills, each at its own interval.
            std::thread::Builder::new()
                .name("replica-drills".into())
                .spawn(move || {
                    super::guard((), || {
                        crate::functions::run_scheduled_drills(
                            &super::sqlite::LiveDatabase,
                            &mut super::functions::open_wal_for_read,
                            &|p, full| super::sqlite::integrity_check(p, full),
                        )
                    })
                })
                .map_err(|e| Error::Io(format!("starting the restore drill thread: {e}")))?;
        }
        let entry: unsafe extern "C" fn() = {
            let f: unsafe extern "C" fn(
                *mut sys::sqlite3,
                *mut *mut c_char,
                *const sys::sqlite3_api_routines,
            ) -> c_int = auto_extension_entry;
            // SAFETY: SQLite calls auto-extensions with exactly this signature; the
            // `void(*)(void)` type in its API is only a type-erased pointer.
            unsafe { std::mem::transmute(f) }
        };
        let auto = super::sqlite_fn!(auto_extension);
        // SAFETY: registering a function pointer that lives as long as the library, which
        // stays loaded because init returns SQLITE_OK_LOAD_PERMANENTLY.
        let rc = unsafe { auto(Some(entry)) };
        if rc != sys::SQLITE_OK {
            return Err(Error::Sqlite {
                code: rc,
                message: "sqlite3_auto_extension failed".into(),
            });
        }
        *done = true;
    }
    drop(done);
    super::functions::register(db)?;
    super::tables::register(db)?;
    // A connection opened before the load (how frameworks load extensions): its databases
    // are adopted and followed through hooks. Its synchronous-commit URI setting can take
    // effect at once: SQLite installed its auto-checkpoint hook when it opened.
    if super::adopt::adopt(db) {
        return super::commit_hook::configure_open_connection(db);
    }
    super::commit_hook::configure_from_uri(db)
}

/// Runs for every connection opened after the load: SQL functions, and WAL mode for
/// databases that replicate.
unsafe extern "C" fn auto_extension_entry(
    db: *mut sys::sqlite3,
    pz_err_msg: *mut *mut c_char,
    _p_api: *const sys::sqlite3_api_routines,
) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        // The open of this connection's database failed (its boot-time restore): say why.
        if let Some(why) = super::open_failure::take_for(super::functions::main_db_path(db)) {
            set_error_message(pz_err_msg, &format!("libreplica: {why}"));
            return sys::SQLITE_CANTOPEN;
        }
        if let Err(e) = super::functions::register(db).and_then(|_| super::tables::register(db)) {
            set_error_message(pz_err_msg, &format!("libreplica: {e}"));
            return sys::SQLITE_ERROR;
        }
        super::functions::ensure_wal_mode(db);
        if let Err(e) = super::commit_hook::configure_from_uri(db) {
            set_error_message(pz_err_msg, &format!("libreplica: {e}"));
            return sys::SQLITE_ERROR;
        }
        sys::SQLITE_OK
    })
}

/// The code a line is logged with through `sqlite3_log`, by how much it matters.
fn log_code(level: crate::base::log::Level) -> c_int {
    use crate::base::log::Level;
    match level {
        Level::Error => sys::SQLITE_ERROR,
        Level::Warning => sys::SQLITE_WARNING,
        Level::Notice | Level::Info => sys::SQLITE_NOTICE,
    }
}

fn set_error_message(pz_err_msg: *mut *mut c_char, msg: &str) {
    if pz_err_msg.is_null() {
        return;
    }
    let Some(mprintf) = super::api().and_then(|a| a.mprintf) else {
        return;
    };
    let Ok(c) = CString::new(msg.replace('\0', " ")) else {
        return;
    };
    // SAFETY: pz_err_msg is the slot SQLite gave us; SQLite frees it with sqlite3_free,
    // so it must come from sqlite3_mprintf.
    unsafe { *pz_err_msg = mprintf(c"%s".as_ptr(), c.as_ptr()) };
}
