//! SQL function and virtual-table trampolines (`replica_status`, `replica_restore_points`):
//! argument and result conversion only; the meaning lives in `crate::functions` and
//! `crate::status`.

use super::{guard, sqlite_fn, sys};
use crate::error::Error;
use crate::status::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;

/// Functions with side effects may not run from triggers or views of an untrusted schema.
const FLAGS: c_int = sys::SQLITE_UTF8 | sys::SQLITE_DIRECTONLY;

pub(super) fn register(db: *mut sys::sqlite3) -> Result<(), Error> {
    type Func =
        unsafe extern "C" fn(*mut sys::sqlite3_context, c_int, *mut *mut sys::sqlite3_value);
    let create = sqlite_fn!(create_function_v2);
    let funcs: [(&CStr, c_int, c_int, Func); 6] = [
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
    let create_module = sqlite_fn!(create_module_v2);
    for table in &TABLES {
        // SAFETY: the module and the table definition (its client data) are static.
        let rc = unsafe {
            create_module(
                db,
                table.name.as_ptr(),
                &TABLE_MODULE,
                table as *const TableDef as *mut c_void,
                None,
            )
        };
        if rc != sys::SQLITE_OK {
            return Err(Error::Sqlite {
                code: rc,
                message: format!("registering {}", table.name.to_string_lossy()),
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
struct Args {
    values: Vec<*mut sys::sqlite3_value>,
}

impl Args {
    fn new(argc: c_int, argv: *mut *mut sys::sqlite3_value) -> Args {
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

    fn text(&self, i: usize) -> Option<String> {
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
fn call<T>(name: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
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

fn result_text(ctx: *mut sys::sqlite3_context, s: &str) {
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

fn result_int(ctx: *mut sys::sqlite3_context, v: i64) {
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

unsafe extern "C" fn fn_sync(
    ctx: *mut sys::sqlite3_context,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) {
    guard((), || {
        let args = Args::new(argc, argv);
        let r = call("replica_sync", || {
            check_arity(argc, "replica_sync", 0, 1)
                .and_then(|_| args.int(0, "replica_sync: timeout_ms"))
                .and_then(|t| {
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

// ---- eponymous-only, read-only virtual tables -------------------------------------------

/// One table-valued function: its columns (a trailing `HIDDEN` one is its optional
/// argument) and how to compute its rows from that argument and the connection's database.
struct TableDef {
    name: &'static CStr,
    columns: fn() -> Vec<&'static str>,
    rows: fn(Option<&str>, Option<&std::path::Path>) -> Result<crate::status::Rows, Error>,
}

static TABLES: [TableDef; 2] = [
    TableDef {
        name: c"replica_status",
        columns: || crate::status::COLUMNS.to_vec(),
        rows: |_, _| {
            Ok(crate::status::rows(crate::base::clock::now_ms())
                .iter()
                .map(|r| r.cells())
                .collect())
        },
    },
    TableDef {
        name: c"replica_restore_points",
        columns: || crate::functions::RESTORE_POINT_COLUMNS.to_vec(),
        rows: crate::functions::restore_points,
    },
];

fn hidden_column(def: &TableDef) -> Option<c_int> {
    (def.columns)()
        .iter()
        .position(|c| c.ends_with(" HIDDEN"))
        .map(|i| i as c_int)
}

#[repr(C)]
struct Table {
    base: sys::sqlite3_vtab,
    def: &'static TableDef,
    db: *mut sys::sqlite3,
}

#[repr(C)]
struct Cursor {
    base: sys::sqlite3_vtab_cursor,
    rows: crate::status::Rows,
    index: usize,
}

static TABLE_MODULE: sys::sqlite3_module = sys::sqlite3_module {
    iVersion: 0,
    xCreate: None, // eponymous-only: usable as replica_status() without CREATE VIRTUAL TABLE
    xConnect: Some(vt_connect),
    xBestIndex: Some(vt_best_index),
    xDisconnect: Some(vt_disconnect),
    xDestroy: None,
    xOpen: Some(vt_open),
    xClose: Some(vt_close),
    xFilter: Some(vt_filter),
    xNext: Some(vt_next),
    xEof: Some(vt_eof),
    xColumn: Some(vt_column),
    xRowid: Some(vt_rowid),
    xUpdate: None,
    xBegin: None,
    xSync: None,
    xCommit: None,
    xRollback: None,
    xFindFunction: None,
    xRename: None,
    xSavepoint: None,
    xRelease: None,
    xRollbackTo: None,
    xShadowName: None,
    xIntegrity: None,
};

unsafe extern "C" fn vt_connect(
    db: *mut sys::sqlite3,
    aux: *mut c_void,
    _argc: c_int,
    _argv: *const *const c_char,
    pp_vtab: *mut *mut sys::sqlite3_vtab,
    _err: *mut *mut c_char,
) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        // SAFETY: aux is the &'static TableDef registered with the module.
        let def: &'static TableDef = unsafe { &*(aux as *const TableDef) };
        let schema = format!("CREATE TABLE x({})", (def.columns)().join(", "));
        let schema = CString::new(schema).unwrap();
        let declare = sqlite_fn!(declare_vtab);
        // SAFETY: called from xConnect with the connection SQLite passed.
        let rc = unsafe { declare(db, schema.as_ptr()) };
        if rc != sys::SQLITE_OK {
            return rc;
        }
        let table = Box::new(Table {
            base: sys::sqlite3_vtab {
                pModule: std::ptr::null(),
                nRef: 0,
                zErrMsg: std::ptr::null_mut(),
            },
            def,
            db,
        });
        // SAFETY: pp_vtab is SQLite's out-pointer; the box is freed in vt_disconnect.
        unsafe { *pp_vtab = Box::into_raw(table) as *mut sys::sqlite3_vtab };
        sys::SQLITE_OK
    })
}

unsafe extern "C" fn vt_disconnect(vtab: *mut sys::sqlite3_vtab) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        // SAFETY: created by Box::into_raw in vt_connect; SQLite disconnects once.
        drop(unsafe { Box::from_raw(vtab as *mut Table) });
        sys::SQLITE_OK
    })
}

unsafe extern "C" fn vt_best_index(
    vtab: *mut sys::sqlite3_vtab,
    info: *mut sys::sqlite3_index_info,
) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        // SAFETY: vtab is a Table from vt_connect; info is valid for the call.
        let (def, info) = unsafe { ((*(vtab as *mut Table)).def, &mut *info) };
        info.estimatedCost = 10.0;
        info.estimatedRows = 4;
        info.idxNum = 0;
        let Some(hidden) = hidden_column(def) else {
            return sys::SQLITE_OK;
        };
        let n = info.nConstraint.max(0) as usize;
        if n == 0 {
            return sys::SQLITE_OK;
        }
        // SAFETY: SQLite passes nConstraint constraints and as many usage slots.
        let (cons, usage) = unsafe {
            (
                std::slice::from_raw_parts(info.aConstraint, n),
                std::slice::from_raw_parts_mut(info.aConstraintUsage, n),
            )
        };
        for (i, c) in cons.iter().enumerate() {
            if c.iColumn == hidden && c.op as c_int == sys::SQLITE_INDEX_CONSTRAINT_EQ {
                if c.usable == 0 {
                    // The argument is not known yet: make SQLite pick a plan where it is.
                    return sys::SQLITE_CONSTRAINT;
                }
                usage[i].argvIndex = 1;
                usage[i].omit = 1;
                info.idxNum = 1;
            }
        }
        sys::SQLITE_OK
    })
}

unsafe extern "C" fn vt_open(
    _vtab: *mut sys::sqlite3_vtab,
    pp: *mut *mut sys::sqlite3_vtab_cursor,
) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        let cursor = Box::new(Cursor {
            base: sys::sqlite3_vtab_cursor {
                pVtab: std::ptr::null_mut(),
            },
            rows: Vec::new(),
            index: 0,
        });
        // SAFETY: SQLite's out-pointer; freed in vt_close.
        unsafe { *pp = Box::into_raw(cursor) as *mut sys::sqlite3_vtab_cursor };
        sys::SQLITE_OK
    })
}

fn cursor<'a>(p: *mut sys::sqlite3_vtab_cursor) -> &'a mut Cursor {
    // SAFETY: SQLite passes back cursors vt_open created.
    unsafe { &mut *(p as *mut Cursor) }
}

unsafe extern "C" fn vt_close(p: *mut sys::sqlite3_vtab_cursor) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        // SAFETY: created by Box::into_raw in vt_open; closed once.
        drop(unsafe { Box::from_raw(p as *mut Cursor) });
        sys::SQLITE_OK
    })
}

unsafe extern "C" fn vt_filter(
    p: *mut sys::sqlite3_vtab_cursor,
    idx: c_int,
    _idx_str: *const c_char,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        let c = cursor(p);
        // SAFETY: a cursor's pVtab is the Table it was opened on.
        let table = unsafe { &mut *(c.base.pVtab as *mut Table) };
        let args = Args::new(argc, argv);
        let arg = if idx == 1 { args.text(0) } else { None };
        let name = table.def.name.to_string_lossy();
        match call(&name, || {
            (table.def.rows)(arg.as_deref(), main_db_path(table.db).as_deref())
        }) {
            Ok(rows) => {
                c.rows = rows;
                c.index = 0;
                sys::SQLITE_OK
            }
            Err(e) => {
                set_vtab_error(&mut table.base, &e.to_string());
                e.sqlite_code()
            }
        }
    })
}

/// Hands SQLite a table's error message (it frees it with sqlite3_free).
fn set_vtab_error(vtab: &mut sys::sqlite3_vtab, msg: &str) {
    let mprintf = sqlite_fn!(mprintf);
    let free = sqlite_fn!(free);
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: the previous message (if any) came from sqlite3_mprintf; "%s" with a valid
    // NUL-terminated string.
    unsafe {
        if !vtab.zErrMsg.is_null() {
            free(vtab.zErrMsg as *mut c_void);
        }
        vtab.zErrMsg = mprintf(c"%s".as_ptr(), c.as_ptr());
    }
}

unsafe extern "C" fn vt_next(p: *mut sys::sqlite3_vtab_cursor) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        cursor(p).index += 1;
        sys::SQLITE_OK
    })
}

unsafe extern "C" fn vt_eof(p: *mut sys::sqlite3_vtab_cursor) -> c_int {
    guard(1, || {
        let c = cursor(p);
        (c.index >= c.rows.len()) as c_int
    })
}

unsafe extern "C" fn vt_rowid(p: *mut sys::sqlite3_vtab_cursor, rowid: *mut i64) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        // SAFETY: SQLite's out-pointer.
        unsafe { *rowid = cursor(p).index as i64 + 1 };
        sys::SQLITE_OK
    })
}

unsafe extern "C" fn vt_column(
    p: *mut sys::sqlite3_vtab_cursor,
    ctx: *mut sys::sqlite3_context,
    i: c_int,
) -> c_int {
    guard(sys::SQLITE_ERROR, || {
        let c = cursor(p);
        let Some(cell) = c.rows.get(c.index).and_then(|r| r.get(i as usize)) else {
            return sys::SQLITE_RANGE;
        };
        match cell {
            Cell::Int(v) => result_int(ctx, *v),
            Cell::Text(t) => result_text(ctx, t),
            Cell::Null => {
                let f = sqlite_fn!(result_null);
                // SAFETY: live context.
                unsafe { f(ctx) }
            }
        }
        sys::SQLITE_OK
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
