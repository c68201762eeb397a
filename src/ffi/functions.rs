//! SQL function trampolines (the scalar functions; the table-valued ones are in `tables`):
//! argument and result conversion only; the meaning lives in `crate::functions`,
//! `crate::status` and `crate::metrics`.

use super::{guard, sqlite_fn, sys};
use crate::error::Error;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;

/// Functions with side effects may not run from triggers or views of an untrusted schema.
const FLAGS: c_int = sys::SQLITE_UTF8 | sys::SQLITE_DIRECTONLY;

pub(super) fn register(db: *mut sys::sqlite3) -> Result<(), Error> {
    type Func =
        unsafe extern "C" fn(*mut sys::sqlite3_context, c_int, *mut *mut sys::sqlite3_value);
    let create = sqlite_fn!(create_function_v2);
    let funcs: [(&CStr, c_int, c_int, Func); 8] = [
        (
            c"replica_version",
            0,
            sys::SQLITE_UTF8 | sys::SQLITE_DETERMINISTIC,
            fn_version,
        ),
        (c"replica_sync", -1, FLAGS, fn_sync),
        (c"replica_snapshot", -1, FLAGS, fn_snapshot),
        (c"replica_restore", -1, FLAGS, fn_restore),
        (c"replica_sync_mode", -1, FLAGS, fn_sync_mode),
        (c"replica_verify", -1, FLAGS, fn_verify),
        (c"replica_metrics", 0, FLAGS, fn_metrics),
        (c"replica_promote", -1, FLAGS, fn_promote),
    ];
    for (name, n_arg, flags, f) in funcs {
        // SAFETY: db is a live connection handed to us by SQLite; name is static; no user
        // data or destructor.
        let rc = unsafe {
            create(
                db,
                name.as_ptr(),
                n_arg,
                flags,
                std::ptr::null_mut(),
                Some(f),
                None,
                None,
                None,
            )
        };
        if rc != sys::SQLITE_OK {
            return Err(Error::Sqlite {
                code: rc,
                message: format!("registering {}", name.to_string_lossy()),
            });
        }
    }
    Ok(())
}

/// A replicated database opened on a new connection is switched to WAL mode.
pub(super) fn ensure_wal_mode(db: *mut sys::sqlite3) {
    if super::sqlite::opening_private_connection() {
        return;
    }
    let Some(path) = main_db_path(db) else { return };
    if crate::database::get(&path).is_none() {
        return;
    }
    let exec = sqlite_fn!(exec);
    let busy_timeout = sqlite_fn!(busy_timeout);
    // The connection is still being opened, so it has SQLite's default busy timeout (none):
    // give this statement one, so that our uploader reading the database at that moment (or
    // another process) delays it rather than fails it, then restore the default.
    // SAFETY: a live connection and a static SQL string without callback.
    let rc = unsafe {
        busy_timeout(db, 5000);
        let rc = exec(
            db,
            c"PRAGMA journal_mode=WAL".as_ptr(),
            None,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        busy_timeout(db, 0);
        rc
    };
    if rc != sys::SQLITE_OK {
        crate::base::log::error(&format!(
            "{}: could not switch to WAL mode (SQLite code {rc}); it will not replicate until it is in WAL mode",
            path.display()
        ));
    }
}

pub(super) fn main_db_path(db: *mut sys::sqlite3) -> Option<PathBuf> {
    let f = sqlite_fn!(db_filename);
    // SAFETY: a live connection; the returned string is owned by it.
    let p = unsafe { f(db, c"main".as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: NUL-terminated.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().to_string();
    (!s.is_empty()).then(|| PathBuf::from(s))
}

fn context_db_path(ctx: *mut sys::sqlite3_context) -> Option<PathBuf> {
    let f = sqlite_fn!(context_db_handle);
    // SAFETY: ctx is the live function context.
    main_db_path(unsafe { f(ctx) })
}

/// The arguments of one call, read as text or integers.
pub(super) struct Args {
    values: Vec<*mut sys::sqlite3_value>,
}

impl Args {
    pub(super) fn new(argc: c_int, argv: *mut *mut sys::sqlite3_value) -> Args {
        let values = if argc <= 0 || argv.is_null() {
            Vec::new()
        } else {
            // SAFETY: SQLite passes argc valid value pointers.
            unsafe { std::slice::from_raw_parts(argv, argc as usize) }.to_vec()
        };
        Args { values }
    }

    fn is_null(&self, i: usize) -> bool {
        let f = sqlite_fn!(value_type);
        // SAFETY: a valid value for the duration of the call.
        self.values
            .get(i)
            .is_none_or(|&v| unsafe { f(v) } == sys::SQLITE_NULL)
    }

    pub(super) fn text(&self, i: usize) -> Option<String> {
        if self.is_null(i) {
            return None;
        }
        let f = sqlite_fn!(value_text);
        // SAFETY: a valid value; the text stays valid until the next conversion of it.
        let p = unsafe { f(self.values[i]) };
        // SAFETY: NUL-terminated UTF-8 text from SQLite.
        (!p.is_null()).then(|| {
            unsafe { CStr::from_ptr(p as *const c_char) }
                .to_string_lossy()
                .to_string()
        })
    }

    fn int(&self, i: usize, what: &str) -> Result<Option<i64>, Error> {
        if self.is_null(i) {
            return Ok(None);
        }
        let ty = sqlite_fn!(value_type);
        // SAFETY: a valid value.
        if unsafe { ty(self.values[i]) } != sys::SQLITE_INTEGER {
            return Err(Error::InvalidArgument(format!("{what} must be an integer")));
        }
        let f = sqlite_fn!(value_int64);
        // SAFETY: a valid value.
        Ok(Some(unsafe { f(self.values[i]) }))
    }
}

/// Opens a database's WAL for reading through the base VFS (`None` if it does not exist).
pub(super) fn open_wal_for_read(wal: &std::path::Path) -> Option<Box<dyn crate::base::io::ReadAt>> {
    super::sqlite::RawFile::open(wal, true)
        .ok()
        .flatten()
        .map(|w| Box::new(w) as Box<dyn crate::base::io::ReadAt>)
}

/// Runs the body of SQL function `name`: a panic becomes an error naming the function, for
/// SQLite to raise. Caught by the trampoline's `guard` instead, it would leave the result
/// NULL, which a caller reads as success (a restore that did nothing, say).
pub(super) fn call<T>(name: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    super::catch(f)
        .unwrap_or_else(|panic| Err(Error::Internal(format!("{name}: internal error: {panic}"))))
}

fn result_error(ctx: *mut sys::sqlite3_context, e: &Error) {
    let msg = CString::new(e.to_string().replace('\0', " ")).unwrap_or_default();
    let err = sqlite_fn!(result_error);
    let code = sqlite_fn!(result_error_code);
    // SAFETY: live context; SQLite copies the message (length -1 = up to NUL).
    unsafe {
        err(ctx, msg.as_ptr(), -1);
        code(ctx, e.sqlite_code());
    }
}

pub(super) fn result_text(ctx: *mut sys::sqlite3_context, s: &str) {
    let f = sqlite_fn!(result_text);
    let c = CString::new(s.replace('\0', " ")).unwrap_or_default();
    // SAFETY: SQLITE_TRANSIENT (-1) makes SQLite copy the text before we free it.
    unsafe {
        f(
            ctx,
            c.as_ptr(),
            -1,
            Some(std::mem::transmute::<
                isize,
                unsafe extern "C" fn(*mut c_void),
            >(-1)),
        )
    };
}

pub(super) fn result_int(ctx: *mut sys::sqlite3_context, v: i64) {
    let f = sqlite_fn!(result_int64);
    // SAFETY: live context.
    unsafe { f(ctx, v) };
}

fn check_arity(argc: c_int, name: &str, min: c_int, max: c_int) -> Result<(), Error> {
    if argc < min || argc > max {
        return Err(Error::InvalidArgument(format!(
            "{name}() takes {} argument(s), got {argc}",
            if min == max {
                min.to_string()
            } else {
                format!("{min} to {max}")
            }
        )));
    }
    Ok(())
}

fn sqlite_version() -> String {
    let f = sqlite_fn!(libversion);
    // SAFETY: returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(f()) }.to_string_lossy().to_string()
}

unsafe extern "C" fn fn_version(
    ctx: *mut sys::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut sys::sqlite3_value,
) {
    guard((), || {
        match call("replica_version", || {
            Ok(crate::functions::version(&sqlite_version()))
        }) {
            Ok(v) => result_text(ctx, &v),
            Err(e) => result_error(ctx, &e),
        }
    })
}

/// `replica_metrics()`: every replicated database's status as Prometheus text.
unsafe extern "C" fn fn_metrics(
    ctx: *mut sys::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut sys::sqlite3_value,
) {
    guard((), || {
        match call("replica_metrics", || {
            let rows = crate::status::rows(crate::base::clock::now_ms());
            Ok(crate::metrics::render(&rows))
        }) {
            Ok(text) => result_text(ctx, &text),
            Err(e) => result_error(ctx, &e),
        }
    })
}

unsafe extern "C" fn fn_sync(
    ctx: *mut sys::sqlite3_context,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) {
    guard((), || {
        let args = Args::new(argc, argv);
        let r = call("replica_sync", || {
            check_arity(argc, "replica_sync", 0, 2)
                .and_then(|_| args.int(0, "replica_sync: timeout_ms"))
                .and_then(|t| {
                    let quorum = args.text(1);
                    let quorum =
                        crate::functions::Quorum::parse(quorum.as_deref(), "replica_sync")?;
                    let path = context_db_path(ctx);
                    // Needed only when another process replicates it (it waits for that).
                    let elsewhere = path
                        .as_deref()
                        .is_some_and(crate::shim::replicated_elsewhere);
                    let f = sqlite_fn!(context_db_handle);
                    // SAFETY: ctx is the live function context.
                    let wal_end = elsewhere.then(|| super::sqlite::main_wal_end(unsafe { f(ctx) }));
                    crate::functions::sync(
                        path.as_deref(),
                        t,
                        quorum,
                        wal_end.flatten(),
                        &mut open_wal_for_read,
                    )
                })
        });
        match r {
            Ok(txid) => result_int(ctx, txid),
            Err(e) => result_error(ctx, &e),
        }
    })
}

/// `replica_sync_mode([mode [, timeout_ms]])`: this connection's commit mode, `'commit'`
/// (COMMIT waits for the replica) or `'async'`; with arguments, sets it first.
unsafe extern "C" fn fn_sync_mode(
    ctx: *mut sys::sqlite3_context,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) {
    guard((), || {
        let args = Args::new(argc, argv);
        let handle = sqlite_fn!(context_db_handle);
        // SAFETY: ctx is the live function context.
        let db = unsafe { handle(ctx) };
        let r = call("replica_sync_mode", || {
            check_arity(argc, "replica_sync_mode", 0, 2).and_then(|_| {
                let timeout = args
                    .int(1, "replica_sync_mode: timeout_ms")?
                    .map(crate::functions::sync_commit::parse_timeout)
                    .transpose()?;
                match args.text(0) {
                    Some(mode) => {
                        let on = crate::functions::sync_commit::parse_mode(&mode)?;
                        super::commit_hook::set_mode(db, on, timeout)
                    }
                    None if argc > 0 => Err(Error::InvalidArgument(
                        "replica_sync_mode: mode must be 'commit' or 'async'".into(),
                    )),
                    None => Ok(super::commit_hook::current(db)),
                }
            })
        });
        match r {
            Ok(Some(_)) => result_text(ctx, "commit"),
            Ok(None) => result_text(ctx, "async"),
            Err(e) => result_error(ctx, &e),
        }
    })
}

unsafe extern "C" fn fn_snapshot(
    ctx: *mut sys::sqlite3_context,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) {
    guard((), || {
        let args = Args::new(argc, argv);
        let r = call("replica_snapshot", || {
            check_arity(argc, "replica_snapshot", 0, 1).and_then(|_| {
                crate::functions::snapshot(args.text(0).as_deref(), context_db_path(ctx).as_deref())
            })
        });
        match r {
            Ok(txid) => result_int(ctx, txid),
            Err(e) => result_error(ctx, &e),
        }
    })
}

unsafe extern "C" fn fn_promote(
    ctx: *mut sys::sqlite3_context,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) {
    guard((), || {
        let args = Args::new(argc, argv);
        let r = call("replica_promote", || {
            check_arity(argc, "replica_promote", 0, 1).and_then(|_| {
                crate::functions::follow::promote(
                    args.text(0).as_deref(),
                    context_db_path(ctx).as_deref(),
                )
            })
        });
        match r {
            Ok(txid) => result_int(ctx, txid),
            Err(e) => result_error(ctx, &e),
        }
    })
}

unsafe extern "C" fn fn_restore(
    ctx: *mut sys::sqlite3_context,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) {
    guard((), || {
        let args = Args::new(argc, argv);
        let r = call("replica_restore", || {
            check_arity(argc, "replica_restore", 2, 4).and_then(|_| {
                let src = args.text(0).ok_or_else(|| {
                    Error::InvalidArgument(
                        "replica_restore: the source (database or replica URL) is NULL".into(),
                    )
                })?;
                let out = args.text(1).ok_or_else(|| {
                    Error::InvalidArgument("replica_restore: the target path is NULL".into())
                })?;
                crate::functions::restore(
                    &src,
                    &out,
                    args.text(2).as_deref(),
                    args.text(3).as_deref(),
                    &|p, full| super::sqlite::integrity_check(p, full),
                    &super::sqlite::database_locked,
                )
            })
        });
        match r {
            Ok(txid) => result_int(ctx, txid),
            Err(e) => result_error(ctx, &e),
        }
    })
}

unsafe extern "C" fn fn_verify(
    ctx: *mut sys::sqlite3_context,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) {
    guard((), || {
        let args = Args::new(argc, argv);
        let r = call("replica_verify", || {
            check_arity(argc, "replica_verify", 0, 1).and_then(|_| {
                crate::functions::verify(
                    args.text(0).as_deref(),
                    context_db_path(ctx).as_deref(),
                    &super::sqlite::LiveDatabase,
                    &mut open_wal_for_read,
                    &|p, full| super::sqlite::integrity_check(p, full),
                )
            })
        });
        match r {
            Ok(txid) => result_int(ctx, txid),
            Err(e) => result_error(ctx, &e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_function_body_is_an_error_naming_the_function() {
        let r: Result<i64, Error> = call("replica_restore", || panic!("range start > end"));
        let e = r.unwrap_err();
        assert_eq!(
            e.to_string(),
            "replica_restore: internal error: range start > end"
        );
        assert_ne!(e.sqlite_code(), sys::SQLITE_OK);
        assert_eq!(call("replica_sync", || Ok(7)).unwrap(), 7);
    }
}
