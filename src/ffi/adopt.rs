//! Connections opened before the extension was loaded (frameworks open the database, then
//! load extensions into that connection, often into every connection of a pool). Their
//! files were opened through the base VFS, so the replica VFS never sees their writes:
//! loading adopts each database of the connection that the configuration selects — WAL
//! mode, registration, a catch-up — and follows its commits through SQLite's commit and
//! WAL hooks (`crate::shim::hooked` has the rules). Adopting is idempotent per connection
//! and per database; the state lives until the connection closes, which a function
//! destructor reports. It must stay a thin edge: decisions live in `crate::shim`.

use super::sqlite::{query_column_on, wal_index_state_of, RawFile};
use super::vfs::BaseLogs;
use super::{guard, sqlite_fn, sys};
use crate::base::io::ReadAt;
use crate::base::lock::lock;
use crate::database::Database;
use crate::shim::DbObserver;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One database of an adopted connection.
struct Adopted {
    schema: CString,
    role: Role,
    path: PathBuf,
    wal_path: PathBuf,
    /// Opened once the log exists; kept open, since a commit is read back through it.
    wal: Option<RawFile>,
    /// SQLite's name of the database file, by address: another one means it was detached.
    filename: usize,
    /// Its log and journal stay the base VFS's (none when ignored).
    _logs: Option<BaseLogs>,
    /// Whether SQLite's WAL hook ran after the last commit that wrote this database: when
    /// it did not, the commit was not a WAL commit, and the database may have left WAL mode.
    last_commit_in_wal: bool,
}

/// What this process does for an adopted database.
enum Role {
    /// It replicates the database: its commits are captured here.
    Replicates {
        db: Arc<Database>,
        /// Counts this connection among the database's open handles, so that the last
        /// close in this process ships what is pending (as for the replica VFS); none when
        /// this process took the database over after adopting it.
        _observer: Option<DbObserver>,
    },
    /// Another process replicates it: before a commit that may restart the log, its
    /// commits are handed over to that process.
    StandsBy,
    /// Attached after the load and not replicated (remembered so that its commits do not
    /// ask again).
    Ignored,
}

impl Adopted {
    fn wal(&mut self) -> Option<&mut dyn ReadAt> {
        open_wal(&mut self.wal, &self.wal_path)
    }
}

/// The log through `slot`, opened from `wal_path` the first time it exists.
fn open_wal<'a>(slot: &'a mut Option<RawFile>, wal_path: &Path) -> Option<&'a mut dyn ReadAt> {
    if slot.is_none() {
        *slot = RawFile::open(wal_path, true).ok().flatten();
    }
    slot.as_mut().map(|w| w as &mut dyn ReadAt)
}

type Conn = Arc<Mutex<Vec<Adopted>>>;

/// Adopted connections, by connection handle.
static CONNECTIONS: Mutex<Vec<(usize, Conn)>> = Mutex::new(Vec::new());

/// The process image that adopted them (see `crate::database::process_identity`): a forked
/// child must not take a lock a thread of its parent may have held at the fork, and its
/// copies of these connections replicate nothing.
static ADOPTED_IN_SET: std::sync::OnceLock<(u64, u32)> = std::sync::OnceLock::new();

fn in_adopting_process() -> bool {
    ADOPTED_IN_SET
        .get()
        .is_some_and(|id| *id == crate::database::process_identity())
}

fn connection(db: *mut sys::sqlite3) -> Option<Conn> {
    if !in_adopting_process() {
        return None;
    }
    lock(&CONNECTIONS)
        .iter()
        .find(|(k, _)| *k == db as usize)
        .map(|(_, c)| c.clone())
}

/// Adopts the databases of `db` (the connection the extension is being loaded into) that
/// replicate and that the replica VFS does not see. Returns whether `db` now has any.
pub(super) fn adopt(db: *mut sys::sqlite3) -> bool {
    if super::sqlite::opening_private_connection() {
        return false;
    }
    // Preparing a statement reads the schema, which opens the log of a database in WAL
    // mode: `main`'s (which the connection may not have read yet) must go to the base VFS.
    let _main = main_logs_to_base(db);
    let names = match query_column_on(db, "SELECT name FROM pragma_database_list") {
        Ok(n) => n,
        Err(e) => {
            crate::base::log::error(&format!("listing the connection's databases: {e}"));
            return false;
        }
    };
    let existing = connection(db);
    let mut found = Vec::new();
    for name in names.into_iter().filter(|n| n != "temp") {
        let Ok(schema) = CString::new(name) else {
            continue;
        };
        let known = existing
            .as_ref()
            .is_some_and(|c| lock(c).iter().any(|a| a.schema == schema));
        if !known {
            found.extend(adopt_schema(db, schema));
        }
    }
    if found.is_empty() {
        return existing.is_some();
    }
    let _ = ADOPTED_IN_SET.set(crate::database::process_identity());
    if !in_adopting_process() {
        return false; // a forked child loading again: its parent's adoptions are not its own
    }
    match existing {
        Some(c) => lock(&c).extend(found),
        None => {
            lock(&CONNECTIONS).push((db as usize, Arc::new(Mutex::new(found))));
            install_hooks(db);
        }
    }
    true
}

/// Holds `main`'s log and journal for the base VFS, unless its file is the replica VFS's.
fn main_logs_to_base(db: *mut sys::sqlite3) -> Option<BaseLogs> {
    let filename = sqlite_fn!(db_filename);
    // SAFETY: a live connection; the name is owned by it.
    let name_ptr = unsafe { filename(db, c"main".as_ptr()) };
    // SAFETY: when not null, a NUL-terminated name owned by the connection.
    let named = !name_ptr.is_null() && unsafe { *name_ptr } != 0;
    (named && !opened_through_replica_vfs(db, c"main")).then(|| BaseLogs::hold(name_ptr))
}

/// Adopts database `schema` of `db` if it replicates and was opened past the replica VFS.
fn adopt_schema(db: *mut sys::sqlite3, schema: CString) -> Option<Adopted> {
    let filename = sqlite_fn!(db_filename);
    // SAFETY: a live connection; the name (with its URI parameters) is owned by it.
    let name_ptr = unsafe { filename(db, schema.as_ptr()) };
    if name_ptr.is_null() || opened_through_replica_vfs(db, &schema) {
        return None;
    }
    // SAFETY: NUL-terminated, owned by the connection.
    let path = unsafe { CStr::from_ptr(name_ptr) }
        .to_string_lossy()
        .to_string();
    if path.is_empty() {
        return None; // temporary or in-memory: never replicated
    }
    let readonly = sqlite_fn!(db_readonly);
    // SAFETY: a live connection and one of its schema names.
    let read_only = (unsafe { readonly(db, schema.as_ptr()) } == 1).then(|| {
        let immutable = uri_parameter(name_ptr, "immutable").is_some_and(|v| v == "1");
        let mode = uri_parameter(name_ptr, "mode");
        crate::shim::ReadOnlyOpen::of_open(immutable, mode.as_deref(), true, true)
            .unwrap_or(crate::shim::ReadOnlyOpen::Asked)
    });
    let uri_param = |key: &str| uri_parameter(name_ptr, key);
    let role = match crate::shim::on_open_main_db(&path, read_only, &uri_param) {
        Ok(Some(observer)) => Role::Replicates {
            db: crate::database::get(Path::new(&path))?,
            _observer: Some(observer),
        },
        Ok(None) if crate::shim::replicated_elsewhere(Path::new(&path)) => Role::StandsBy,
        Ok(None) => return None,
        Err(e) => {
            crate::base::log::error(&format!(
                "{path}: opened before libreplica was loaded and cannot be replicated: {e}"
            ));
            return None;
        }
    };
    // Before the log is opened (switching to WAL mode may open it).
    let logs = BaseLogs::hold(name_ptr);
    switch_to_wal(db, &schema, &path);
    let mut adopted = Adopted {
        schema,
        role,
        filename: name_ptr as usize,
        _logs: Some(logs),
        wal_path: crate::wal::log_path_of(Path::new(&path)),
        path: PathBuf::from(path),
        wal: None,
        last_commit_in_wal: true,
    };
    if let Role::Replicates { db, .. } = &adopted.role {
        let db = db.clone();
        crate::shim::on_adopt(&db, adopted.wal());
    }
    Some(adopted)
}

/// A commit to a database attached to an adopted connection after the load through a VFS
/// that is not ours (the connection's, when the default VFS was not wrapped in place, or
/// one it names): adopt it now, as the load would have. The WAL hook may run statements on its connection, and the adoption's catch-up
/// takes this commit from the log (a database new to its spool starts with a snapshot).
/// A database attached in rollback-journal mode never reaches this hook: attach it with
/// `?vfs=replica`, or before loading.
fn adopt_attached(db: *mut sys::sqlite3, conn: &Conn, schema: &CStr) {
    let adopted = match schema == c"temp" {
        true => None,
        false => adopt_schema(db, schema.to_owned()),
    };
    let adopted = adopted.unwrap_or_else(|| Adopted {
        schema: schema.to_owned(),
        role: Role::Ignored,
        filename: 0,
        _logs: None,
        path: PathBuf::new(),
        wal_path: PathBuf::new(),
        wal: None,
        last_commit_in_wal: true,
    });
    let mut conn = lock(conn);
    if !conn.iter().any(|a| a.schema == adopted.schema) {
        conn.push(adopted);
    }
}

/// Whether the connection's file for `schema` came through the replica VFS.
fn opened_through_replica_vfs(db: *mut sys::sqlite3, schema: &CStr) -> bool {
    super::sqlite::file_of(db, schema).is_some_and(|file| {
        // SAFETY: a file object SQLite keeps open while the connection is.
        super::vfs::is_replica_file(unsafe { (*file).pMethods })
    })
}

fn uri_parameter(name_ptr: *const c_char, key: &str) -> Option<String> {
    let param = sqlite_fn!(uri_parameter);
    let key = CString::new(key).ok()?;
    // SAFETY: `name_ptr` is a database file name SQLite gave us, as uri_parameter requires.
    let v = unsafe { param(name_ptr, key.as_ptr()) };
    // SAFETY: NUL-terminated text owned by the connection.
    (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_string_lossy().to_string())
}

/// Puts database `schema` of `db` in WAL mode, retrying a little while other connections
/// hold it (the switch needs a moment without readers; the connection's own busy handler is
/// left as the application set it); says so when it cannot.
fn switch_to_wal(db: *mut sys::sqlite3, schema: &CStr, path: &str) {
    let quoted = schema.to_string_lossy().replace('"', "\"\"");
    let is_wal = |m: &Result<Vec<String>, crate::error::Error>| {
        m.as_ref()
            .is_ok_and(|m| m.first().is_some_and(|m| m.eq_ignore_ascii_case("wal")))
    };
    let mut mode = query_column_on(db, &format!("PRAGMA \"{quoted}\".journal_mode"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !is_wal(&mode) {
        mode = query_column_on(db, &format!("PRAGMA \"{quoted}\".journal_mode=WAL"));
        let busy = matches!(&mode, Err(crate::error::Error::Sqlite { code, .. })
            if *code & 0xff == sys::SQLITE_BUSY || *code & 0xff == sys::SQLITE_LOCKED);
        if !busy || std::time::Instant::now() >= deadline {
            break;
        }
        // Another connection holds the database; it lets go within its transaction.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    match mode {
        Ok(m) if m.first().is_some_and(|m| m.eq_ignore_ascii_case("wal")) => {}
        Ok(m) => crate::base::log::error(&format!(
            "{path}: opened before libreplica was loaded, and its journal mode stays {}: it replicates once it is in WAL mode (PRAGMA journal_mode=WAL)",
            m.first().map(String::as_str).unwrap_or("unknown")
        )),
        Err(e) => crate::base::log::error(&format!(
            "{path}: opened before libreplica was loaded, and switching it to WAL mode failed: {e}; it replicates once it is in WAL mode"
        )),
    }
}

/// The commit hook, the capturing WAL hook, and a function whose destructor reports the
/// connection's close.
fn install_hooks(db: *mut sys::sqlite3) {
    let commit_hook = sqlite_fn!(commit_hook);
    // SAFETY: a live connection; the argument is the connection itself, which outlives its
    // hooks.
    let previous = unsafe { commit_hook(db, Some(before_commit), db as *mut c_void) };
    if !previous.is_null() && previous != db as *mut c_void {
        crate::base::log::add_warning(
            "libreplica replaced a commit hook the application had set on this connection",
        );
    }
    if !super::commit_hook::capture_commits(db, after_commit) {
        crate::base::log::error("capturing commits through the WAL hook needs a 64-bit build");
    }
    let create = sqlite_fn!(create_function_v2);
    // SAFETY: a live connection; the function is never called with effect, and SQLite calls
    // the destructor once, when the connection closes.
    unsafe {
        create(
            db,
            c"replica_internal_adopted".as_ptr(),
            0,
            sys::SQLITE_UTF8 | sys::SQLITE_DIRECTONLY,
            db as *mut c_void,
            Some(noop),
            None,
            None,
            Some(on_close),
        )
    };
}

unsafe extern "C" fn noop(
    _ctx: *mut sys::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut sys::sqlite3_value,
) {
}

/// The connection is closing: forget it (dropping its observers, which may ship what is
/// pending if it was this process's last connection to a database).
unsafe extern "C" fn on_close(arg: *mut c_void) {
    guard((), || {
        if !in_adopting_process() {
            return;
        }
        let removed = {
            let mut conns = lock(&CONNECTIONS);
            let i = conns.iter().position(|(k, _)| *k == arg as usize);
            i.map(|i| conns.swap_remove(i))
        };
        if let Some((_, conn)) = &removed {
            for a in lock(conn).iter_mut() {
                if let Role::Replicates { db, .. } = &a.role {
                    // The handle opened while the log existed: if this close deleted the
                    // log, it still reads it.
                    let held = a.wal.as_mut().map(|w| w as &mut dyn ReadAt);
                    crate::shim::on_hooked_close(db, held);
                }
            }
        }
        drop(removed);
    })
}

/// Before a commit of an adopted connection (which holds the WAL write lock).
unsafe extern "C" fn before_commit(arg: *mut c_void) -> c_int {
    guard(0, || {
        let db = arg as *mut sys::sqlite3;
        let Some(conn) = connection(db) else { return 0 };
        // `PRAGMA wal_autocheckpoint` (and sqlite3_wal_autocheckpoint) put SQLite's own WAL
        // hook back: take it over again, keeping its new size.
        super::commit_hook::capture_commits(db, after_commit);
        let txn_state = sqlite_fn!(txn_state);
        let mut adopted = lock(&conn);
        adopted.retain(|a| a.filename == 0 || still_attached(db, a));
        for a in adopted.iter_mut() {
            // SAFETY: a live connection and one of its schema names.
            if unsafe { txn_state(db, a.schema.as_ptr()) } != sys::SQLITE_TXN_WRITE {
                continue; // this commit writes nothing to that database
            }
            if matches!(a.role, Role::StandsBy) {
                // The process that replicated it went away and this one took over.
                if let Some(taken) = crate::database::get(&a.path).filter(|d| d.owned_here()) {
                    a.role = Role::Replicates {
                        db: taken,
                        _observer: None,
                    };
                }
            }
            if matches!(a.role, Role::Ignored) || !in_wal_mode(db, a) {
                continue;
            }
            let index = wal_index_state_of(db, &a.schema);
            let Some(w) = open_wal(&mut a.wal, &a.wal_path) else {
                continue;
            };
            match &a.role {
                Role::Replicates { db, .. } => crate::shim::before_hooked_commit(db, w, index),
                Role::StandsBy => crate::shim::hand_off_before_hooked_commit(&a.path, w, index),
                Role::Ignored => {}
            }
        }
        0
    })
}

/// Whether `a` is still the database SQLite has under its schema name: once detached (and
/// perhaps attached again), its pager and the names it held are gone.
fn still_attached(db: *mut sys::sqlite3, a: &Adopted) -> bool {
    let filename = sqlite_fn!(db_filename);
    // SAFETY: a live connection and a schema name.
    (unsafe { filename(db, a.schema.as_ptr()) }) as usize == a.filename
}

/// Whether an adopted database is (still) in WAL mode, checked when the last commit that
/// wrote it ran no WAL hook: its page 1 tells the shim (as a write of page 1 does on the
/// replica VFS) whether it left WAL mode or came back.
fn in_wal_mode(db: *mut sys::sqlite3, a: &mut Adopted) -> bool {
    if std::mem::replace(&mut a.last_commit_in_wal, false) {
        return true;
    }
    let Some(head) = super::sqlite::file_head_of(db, &a.schema) else {
        return true;
    };
    if let Role::Replicates { db, .. } = &a.role {
        crate::shim::page_one_written(db, &head);
    }
    // The log kept open may be one deleted since (out of WAL mode and back): open it anew.
    a.wal = None;
    crate::wal::is_wal_mode_header(&head)
}

/// After a commit of an adopted connection: its frames end at `frames`.
fn after_commit(db: *mut sys::sqlite3, db_name: *const c_char, frames: c_int) {
    let Some(conn) = connection(db) else { return };
    // SAFETY: the schema name SQLite passed to the WAL hook.
    let schema = unsafe { CStr::from_ptr(db_name) };
    let mut adopted = lock(&conn);
    let Some(i) = adopted.iter().position(|a| a.schema.as_c_str() == schema) else {
        drop(adopted);
        adopt_attached(db, &conn, schema);
        return;
    };
    let a = &mut adopted[i];
    a.last_commit_in_wal = true;
    let Role::Replicates { db: database, .. } = &a.role else {
        return; // the process that replicates it takes the commit from the log
    };
    let index = wal_index_state_of(db, schema);
    if let (Some(w), Ok(frame)) = (open_wal(&mut a.wal, &a.wal_path), u32::try_from(frames)) {
        crate::shim::after_hooked_commit(database, w, frame, index);
    }
}
