//! The eponymous-only, read-only virtual tables behind the table-valued functions
//! (`replica_status`, `replica_restore_points`): declaring their columns and handing SQLite
//! the rows that `crate::status` and `crate::functions` compute.

use super::functions::{call, main_db_path, result_int, result_text, Args};
use super::{guard, sqlite_fn, sys};
use crate::error::Error;
use crate::status::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

pub(super) fn register(db: *mut sys::sqlite3) -> Result<(), Error> {
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
            Cell::Real(v) => {
                let f = sqlite_fn!(result_double);
                // SAFETY: live context.
                unsafe { f(ctx, *v) }
            }
            Cell::Null => {
                let f = sqlite_fn!(result_null);
                // SAFETY: live context.
                unsafe { f(ctx) }
            }
        }
        sys::SQLITE_OK
    })
}
