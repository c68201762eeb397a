//! The FFI layer: the only place with `unsafe`. It owns the SQLite API pointer, the entry
//! point, the VFS and SQL-function trampolines and the thin wrappers (private connections,
//! raw file reads through the base VFS) that safe modules use through traits. Every
//! `extern "C"` function runs its body inside [`guard`]; it must not hold replication logic.

#![deny(unsafe_op_in_unsafe_fn)]

mod adopt;
mod commit_hook;
mod entry;
mod follow;
mod fork;
mod functions;
mod open_failure;
mod os;
pub(crate) mod sqlite;
mod tables;
mod vfs;

use libsqlite3_sys as sys;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

pub use entry::sqlite3_replica_init;

/// The routines SQLite hands the extension; every call into SQLite goes through them so the
/// `.so` never links libsqlite3 (a host may have several, or link it statically).
static API: AtomicPtr<sys::sqlite3_api_routines> = AtomicPtr::new(std::ptr::null_mut());

/// The API table, once the extension has been loaded into a host.
pub(crate) fn api() -> Option<&'static sys::sqlite3_api_routines> {
    let p = API.load(Ordering::Acquire);
    // SAFETY: the pointer is either null or the table SQLite passed to the entry point,
    // which SQLite keeps alive (static data of the library) for the life of the process.
    unsafe { p.as_ref() }
}

/// Looks up one API routine; a missing one is a bug in the host, reported as a panic that
/// the surrounding `guard` turns into an error code.
macro_rules! sqlite_fn {
    ($name:ident) => {
        $crate::ffi::api().and_then(|a| a.$name).expect(concat!(
            "SQLite API routine ",
            stringify!($name),
            " is unavailable"
        ))
    };
}
pub(crate) use sqlite_fn;

/// Runs `f`, turning a panic into `fallback` so that no unwinding crosses into SQLite.
pub(crate) fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch(f).unwrap_or(fallback)
}

/// Runs `f`; a panic is logged and comes back as its message.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        crate::base::log::error(&format!("internal error (caught panic): {msg}"));
        msg
    })
}

/// Writes a message to SQLite's error log (`sqlite3_log`), if the host has one configured.
pub(crate) fn sqlite_log(code: i32, msg: &str) {
    let Some(log) = api().and_then(|a| a.log) else {
        return;
    };
    let Ok(c) = std::ffi::CString::new(msg.replace('\0', " ")) else {
        return;
    };
    // SAFETY: `%s` with a valid NUL-terminated string; sqlite3_log copies what it needs.
    unsafe { log(code, c"%s".as_ptr(), c.as_ptr()) };
}
