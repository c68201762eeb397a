//! Thin wrappers over SQLite for the safe modules: a private connection (snapshots take the
//! write lock through it; restore checks integrity with it) and raw file reads through the
//! base VFS (never `std::fs` on a live database: closing any descriptor of a file drops the
//! process's POSIX locks on it, and the unix VFS knows how to avoid that).

use super::{sqlite_fn, sys};
use crate::base::io::ReadAt;
use crate::error::Error;
use crate::restore::CheckFailure;
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

thread_local! {
    /// Set while this thread opens a private connection, so the auto-extension leaves it alone.
    static OPENING_PRIVATE: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn opening_private_connection() -> bool {
    OPENING_PRIVATE.with(|c| c.get())
}

fn cstring(s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::InvalidArgument(format!("{s:?} contains a NUL byte")))
}

/// A connection of our own, opened on the base VFS so it is never captured itself.
pub(crate) struct Connection {
    db: *mut sys::sqlite3,
}

// SAFETY: SQLite connections may be used from any thread as long as one thread uses them at
// a time (threading mode multi-thread or serialized, the defaults); we never share one.
unsafe impl Send for Connection {}

impl Connection {
    /// Opens `path` read-write on the base VFS. On a `live` database (one the application
    /// uses) the connection never checkpoints on close; on our own files it cleans up as usual.
    pub(crate) fn open(path: &Path, live: bool) -> Result<Connection, Error> {
        let open = sqlite_fn!(open_v2);
        let c_path = cstring(&path.to_string_lossy())?;
        let vfs = cstring(&crate::shim::base_vfs_name())?;
        // Never shared-cache, even if the host enabled it process-wide: a boot-time restore
        // checks integrity from inside another connection's xOpen, where SQLite may hold the
        // shared-cache open mutex.
        let flags = sys::SQLITE_OPEN_READWRITE | sys::SQLITE_OPEN_PRIVATECACHE;
        let mut db = std::ptr::null_mut();
        OPENING_PRIVATE.with(|c| c.set(true));
        // SAFETY: valid C strings and an out-pointer; the handle is closed in Drop.
        let rc = unsafe { open(c_path.as_ptr(), &mut db, flags, vfs.as_ptr()) };
        OPENING_PRIVATE.with(|c| c.set(false));
        let conn = Connection { db };
        if rc == sys::SQLITE_OK && live {
            // Our connection must never checkpoint and delete the WAL when it closes: that
            // would go around the replica VFS (and its last chance to save frames).
            let config = sqlite_fn!(db_config);
            // SAFETY: SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE takes an int and an optional int*.
            unsafe {
                config(
                    db,
                    sys::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                    1 as c_int,
                    std::ptr::null_mut::<c_int>(),
                )
            };
        }
        if rc != sys::SQLITE_OK {
            let message = if db.is_null() {
                format!("SQLite error {rc}")
            } else {
                conn.errmsg()
            };
            return Err(Error::Sqlite {
                code: rc,
                message: format!("opening {}: {message}", path.display()),
            });
        }
        Ok(conn)
    }

    fn errmsg(&self) -> String {
        let f = sqlite_fn!(errmsg);
        // SAFETY: db is an open handle; errmsg returns a string owned by the connection.
        unsafe { CStr::from_ptr(f(self.db)) }
            .to_string_lossy()
            .to_string()
    }

    pub(crate) fn exec(&self, sql: &str) -> Result<(), Error> {
        let exec = sqlite_fn!(exec);
        let c = cstring(sql)?;
        // SAFETY: an open handle and a valid SQL string; no callback.
        let rc = unsafe {
            exec(
                self.db,
                c.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc != sys::SQLITE_OK {
            return Err(Error::Sqlite {
                code: rc,
                message: format!("{sql}: {}", self.errmsg()),
            });
        }
        Ok(())
    }

    /// The WAL-index header of this connection's main database, read through SQLite's own
    /// shared-memory mapping (opening the `-shm` file ourselves would drop this process's
    /// locks on it when closed). `None` without shared memory (exclusive locking mode).
    pub(crate) fn wal_index_header(&self) -> Option<crate::wal::WalIndexHeader> {
        wal_index_header_of(self.db, c"main")
    }

    /// The first column of every row, as text.
    pub(crate) fn query_column(&self, sql: &str) -> Result<Vec<String>, Error> {
        query_column_on(self.db, sql)
    }
}

/// The first column of every row of `sql` run on `db`, as text.
pub(crate) fn query_column_on(db: *mut sys::sqlite3, sql: &str) -> Result<Vec<String>, Error> {
    let prepare = sqlite_fn!(prepare_v2);
    let step = sqlite_fn!(step);
    let column_text = sqlite_fn!(column_text);
    let finalize = sqlite_fn!(finalize);
    let c = cstring(sql)?;
    let mut stmt = std::ptr::null_mut();
    // SAFETY: an open handle (the caller's), a valid SQL string and an out-pointer.
    let rc = unsafe { prepare(db, c.as_ptr(), -1, &mut stmt, std::ptr::null_mut()) };
    if rc != sys::SQLITE_OK {
        return Err(Error::Sqlite {
            code: rc,
            message: format!("{sql}: {}", errmsg_of(db)),
        });
    }
    let mut rows = Vec::new();
    loop {
        // SAFETY: stmt is a prepared statement, finalized below.
        let rc = unsafe { step(stmt) };
        if rc == sys::SQLITE_ROW {
            // SAFETY: column 0 of the current row; the text is copied before the next step.
            let t = unsafe { column_text(stmt, 0) };
            rows.push(if t.is_null() {
                String::new()
            } else {
                // SAFETY: column_text returns a NUL-terminated string.
                unsafe { CStr::from_ptr(t as *const _) }
                    .to_string_lossy()
                    .to_string()
            });
        } else {
            // SAFETY: finalizing the statement exactly once.
            unsafe { finalize(stmt) };
            if rc != sys::SQLITE_DONE {
                return Err(Error::Sqlite {
                    code: rc,
                    message: format!("{sql}: {}", errmsg_of(db)),
                });
            }
            return Ok(rows);
        }
    }
}

/// The connection's last error message.
pub(crate) fn errmsg_of(db: *mut sys::sqlite3) -> String {
    let f = sqlite_fn!(errmsg);
    // SAFETY: an open handle; errmsg returns a string owned by the connection, copied here.
    unsafe { CStr::from_ptr(f(db)) }
        .to_string_lossy()
        .to_string()
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(close) = super::api().and_then(|a| a.close_v2) {
            // SAFETY: closing our own handle once.
            unsafe { close(self.db) };
        }
    }
}

/// A file opened read-only through the base VFS.
pub(crate) struct RawFile {
    mem: Vec<u64>,
    /// The name the VFS was given: it keeps the pointer, so it must outlive the file (the
    /// field is dropped after `Drop::drop` closed the file).
    _name: VfsFilename,
}

/// A database name laid out as SQLite gives it to a VFS (`sqlite3_create_filename`: the
/// VFS may look for URI parameters and journal names after it), freed once dropped.
struct VfsFilename(*const c_char);

impl VfsFilename {
    fn new(path: &Path) -> Option<VfsFilename> {
        let create = sqlite_fn!(create_filename);
        let db = cstring(&path.to_string_lossy()).ok()?;
        let journal = cstring(&format!("{}-journal", path.to_string_lossy())).ok()?;
        let wal = cstring(&format!("{}-wal", path.to_string_lossy())).ok()?;
        // SAFETY: three NUL-terminated names and no parameters; SQLite copies them.
        let name = unsafe {
            create(
                db.as_ptr(),
                journal.as_ptr(),
                wal.as_ptr(),
                0,
                std::ptr::null_mut(),
            )
        };
        (!name.is_null()).then_some(VfsFilename(name))
    }
}

impl Drop for VfsFilename {
    fn drop(&mut self) {
        let free = sqlite_fn!(free_filename);
        // SAFETY: made by sqlite3_create_filename, freed once, after the file using it.
        unsafe { free(self.0) };
    }
}

// SAFETY: the file object is owned by this value and used by one thread at a time.
unsafe impl Send for RawFile {}

impl RawFile {
    /// Opens `path` (a database, or its WAL when `wal`); `None` if it does not exist.
    pub(crate) fn open(path: &Path, wal: bool) -> Result<Option<RawFile>, Error> {
        let kind = if wal {
            sys::SQLITE_OPEN_WAL
        } else {
            sys::SQLITE_OPEN_MAIN_DB
        };
        Self::open_with(path, sys::SQLITE_OPEN_READONLY | kind)
    }

    /// Opens `path` with the base VFS's open `flags`; `None` if it does not exist. The VFS
    /// is given the name as SQLite lays it out (`sqlite3_create_filename`), kept as long as
    /// the file: unix keeps the pointer (it looks at the path again when closing, and for
    /// URI parameters and the `-shm` name when mapping shared memory).
    fn open_with(path: &Path, flags: c_int) -> Result<Option<RawFile>, Error> {
        if !path.exists() {
            return Ok(None);
        }
        let wal = flags & sys::SQLITE_OPEN_WAL != 0;
        let db_path = match path.to_str().and_then(|p| p.strip_suffix("-wal")) {
            Some(db) if wal => Path::new(db),
            _ if wal => {
                return Err(Error::InvalidArgument(format!(
                    "{} is not a -wal file",
                    path.display()
                )))
            }
            _ => path,
        };
        let name = VfsFilename::new(db_path).ok_or_else(|| {
            Error::InvalidArgument(format!("{} cannot be named to SQLite", path.display()))
        })?;
        let name_ptr = if wal {
            let wal_name = sqlite_fn!(filename_wal);
            // SAFETY: a name made by sqlite3_create_filename, which holds the WAL's name.
            unsafe { wal_name(name.0) }
        } else {
            name.0
        };
        let find = sqlite_fn!(vfs_find);
        let vfs_name = cstring(&crate::shim::base_vfs_name())?;
        // SAFETY: looking up a VFS by name.
        let vfs = unsafe { find(vfs_name.as_ptr()) };
        if vfs.is_null() {
            return Err(Error::Unsupported("base VFS vanished".into()));
        }
        // SAFETY: a registered VFS.
        let sz = unsafe { (*vfs).szOsFile } as usize;
        let mut mem = vec![0u64; sz.div_ceil(8) + 1];
        let mut out = 0;
        // SAFETY: mem has szOsFile bytes; the name lives as long as the file (it keeps it).
        let rc = unsafe {
            (*vfs).xOpen.unwrap()(
                vfs,
                name_ptr,
                mem.as_mut_ptr() as *mut sys::sqlite3_file,
                flags,
                &mut out,
            )
        };
        let file = RawFile { mem, _name: name };
        if rc != sys::SQLITE_OK {
            if rc == sys::SQLITE_CANTOPEN && !path.exists() {
                return Ok(None);
            }
            return Err(Error::Sqlite {
                code: rc,
                message: format!("opening {} through the base VFS", path.display()),
            });
        }
        Ok(Some(file))
    }

    fn file(&self) -> *mut sys::sqlite3_file {
        self.mem.as_ptr() as *mut sys::sqlite3_file
    }

    fn methods(&self) -> Option<&sys::sqlite3_io_methods> {
        // SAFETY: pMethods is null or the base VFS's static table.
        unsafe { (*self.file()).pMethods.as_ref() }
    }
}

impl ReadAt for RawFile {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.methods().is_none() {
            return Err(std::io::Error::other("file not open"));
        }
        // SAFETY: the file is open (its method table is set) and lives as long as self.
        unsafe { read_open_file(self.file(), offset, buf) }
    }
}

/// Reads `buf.len()` bytes at `offset` from an open file through its own methods (a short
/// read reports 0 bytes).
///
/// # Safety
/// `file` is an open SQLite file object (pMethods set) that stays open during the call.
pub(super) unsafe fn read_open_file(
    file: *mut sys::sqlite3_file,
    offset: u64,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    // SAFETY: per this function's contract, pMethods is a valid method table.
    let m = unsafe { &*(*file).pMethods };
    let x_read = m.xRead.ok_or_else(|| std::io::Error::other("no xRead"))?;
    // SAFETY: an open file and a buffer of buf.len() bytes.
    let rc = unsafe {
        x_read(
            file,
            buf.as_mut_ptr() as *mut c_void,
            buf.len() as c_int,
            offset as i64,
        )
    };
    match rc {
        sys::SQLITE_OK => Ok(buf.len()),
        sys::SQLITE_IOERR_SHORT_READ => Ok(0),
        rc => Err(std::io::Error::other(format!(
            "xRead failed with SQLite code {rc}"
        ))),
    }
}

impl Drop for RawFile {
    fn drop(&mut self) {
        if let Some(m) = self.methods() {
            if let Some(close) = m.xClose {
                // SAFETY: closing the open file once.
                unsafe { close(self.file()) };
            }
        }
    }
}

/// Whether a connection, of another process or of this one, has the database at `path`
/// open as far as SQLite's own locks can tell: `Ok(true)` when they are held.
///
/// It takes the locks a writer about to write the database file takes (SHARED, RESERVED,
/// EXCLUSIVE) through the base VFS on a file object of its own, and lets them go at once;
/// nothing is read or written. Why this probe:
/// - A connection in WAL mode holds a SHARED lock on the database file for as long as it is
///   open, idle or not, so EXCLUSIVE is refused while any has it open with commits in its
///   WAL. In rollback-journal mode only a connection inside a transaction holds a lock: an
///   idle one is invisible to any lock probe (the caller compares its own descriptors).
/// - Through the base VFS, the unix VFS's per-inode bookkeeping counts this process's own
///   connections too, and closing our file object never drops their POSIX locks (closing a
///   plain descriptor of the file would).
/// - `BEGIN IMMEDIATE` on a private connection would take only RESERVED (readers and idle
///   WAL connections pass), and opening a connection reads the file: it may roll back a hot
///   journal or create a `-wal` beside a file that is then not replaced after all.
pub(crate) fn database_locked(path: &Path) -> Result<bool, Error> {
    let file = RawFile::open_with(path, sys::SQLITE_OPEN_READWRITE | sys::SQLITE_OPEN_MAIN_DB)?
        .ok_or_else(|| Error::Io(format!("{} does not exist", path.display())))?;
    let (lock, unlock) = file
        .methods()
        .and_then(|m| Some((m.xLock?, m.xUnlock?)))
        .ok_or_else(|| Error::Unsupported("the base VFS cannot lock files".into()))?;
    let mut rc = sys::SQLITE_OK;
    for level in [
        sys::SQLITE_LOCK_SHARED,
        sys::SQLITE_LOCK_RESERVED,
        sys::SQLITE_LOCK_EXCLUSIVE,
    ] {
        // SAFETY: an open file of the base VFS; levels in the order SQLite takes them.
        rc = unsafe { lock(file.file(), level) };
        if rc != sys::SQLITE_OK {
            break;
        }
    }
    // SAFETY: the same open file; NONE releases whatever was taken, PENDING included.
    unsafe { unlock(file.file(), sys::SQLITE_LOCK_NONE) };
    match rc {
        sys::SQLITE_OK => Ok(false),
        rc if rc & 0xff == sys::SQLITE_BUSY => Ok(true),
        rc => Err(Error::Sqlite {
            code: rc,
            message: format!("taking SQLite's locks on {} (code {rc})", path.display()),
        }),
    }
}

/// Whether a database just switched to WAL mode has had no commit since: one page (the
/// header and an empty schema, as the switch writes it) and no log. Our first read of it
/// would build its WAL index holding the WAL write lock, and the application's first write,
/// coming then, fails at once in a host without a busy handler (the sqlite3 CLI, Ruby's
/// sqlite3 gem: "database is locked"). Its first commit writes the log, and the index, and
/// wakes the uploader again.
fn nothing_committed_in_wal_mode(db_path: &Path, header: &[u8; 20]) -> bool {
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    len(db_path).is_some_and(|n| n <= page_size)
        && len(&crate::wal::log_path_of(db_path)).unwrap_or(0) == 0
}

/// `f` on a database no commit has reached since it was switched to WAL mode, read without
/// a connection: the file alone is its committed state, and no checkpoint can change it
/// before a commit has written the log. Whether that held: the file and the log are as
/// they were once `f` is done (if not, its first commit came meanwhile, and with it the
/// log and its index: the database is then read as any other, and `f` again).
fn read_fresh_database(
    db_path: &Path,
    header: &[u8; 20],
    f: &mut crate::snapshot::LockedRead<'_>,
) -> Result<bool, Error> {
    let mut db = RawFile::open(db_path, false)?
        .ok_or_else(|| Error::InvalidArgument(format!("{} does not exist", db_path.display())))?;
    let page_one = |db: &mut RawFile| {
        let mut page = vec![0u8; 65536];
        let n = db
            .read_at(0, &mut page)
            .map_err(|e| Error::Io(e.to_string()))?;
        page.truncate(n);
        Ok::<_, Error>(page)
    };
    let before = page_one(&mut db)?;
    f(&mut db, None, &mut || None)?;
    Ok(page_one(&mut db)? == before && nothing_committed_in_wal_mode(db_path, header))
}

/// Reads the live database inside a read transaction, for snapshots.
pub(crate) struct LiveDatabase;

impl crate::snapshot::SnapshotSource for LiveDatabase {
    fn open_wal(&self, db_path: &Path) -> Option<Box<dyn crate::base::io::ReadAt>> {
        RawFile::open(&crate::wal::log_path_of(db_path), true)
            .ok()
            .flatten()
            .map(|w| Box::new(w) as Box<dyn crate::base::io::ReadAt>)
    }

    fn with_read_transaction(
        &self,
        db_path: &Path,
        f: &mut crate::snapshot::LockedRead<'_>,
    ) -> Result<(), Error> {
        // Only WAL databases replicate; a database still in rollback-journal mode (a new
        // one, before the auto-extension switched it) must not be locked by us meanwhile.
        {
            let mut db = RawFile::open(db_path, false)?.ok_or_else(|| {
                Error::NotWal(format!("{} does not exist yet", db_path.display()))
            })?;
            let mut header = [0u8; 20];
            if db
                .read_at(0, &mut header)
                .map_err(|e| Error::Io(e.to_string()))?
                < header.len()
                || header[18] != 2
                || header[19] != 2
            {
                return Err(Error::NotWal(format!(
                    "{} is not in WAL mode; libreplica replicates WAL databases (PRAGMA journal_mode=WAL)",
                    db_path.display()
                )));
            }
            if nothing_committed_in_wal_mode(db_path, &header)
                && read_fresh_database(db_path, &header, f)?
            {
                return Ok(());
            }
        }
        // Opened read-write (it never writes) so that SQLite can set up the WAL index even
        // when no other connection has the database open.
        let conn = Connection::open(db_path, true)?;
        conn.exec("PRAGMA busy_timeout=5000")?;
        // A read transaction, not the write lock: writers go on while the snapshot is read.
        conn.exec("BEGIN")?;
        let result = (|| {
            conn.query_column("SELECT count(*) FROM sqlite_master")?;
            let mut db = RawFile::open(db_path, false)?.ok_or_else(|| {
                Error::InvalidArgument(format!("{} does not exist", db_path.display()))
            })?;
            let mut wal = RawFile::open(&crate::wal::log_path_of(db_path), true)?;
            f(
                &mut db,
                wal.as_mut().map(|w| w as &mut dyn ReadAt),
                &mut || conn.wal_index_header(),
            )
        })();
        let _ = conn.exec("COMMIT");
        result
    }
}

/// `PRAGMA quick_check` (or `integrity_check` when `full`) on a file we own. A file SQLite
/// finds corrupt or not a database is `Damaged`; any other failure to run it is `NotRun`.
pub(crate) fn integrity_check(path: &Path, full: bool) -> Result<(), CheckFailure> {
    let failed = |e: Error| match e {
        Error::Sqlite { code, message }
            if matches!(code & 0xff, sys::SQLITE_CORRUPT | sys::SQLITE_NOTADB) =>
        {
            CheckFailure::Damaged(message)
        }
        e => CheckFailure::NotRun(e.to_string()),
    };
    let conn = Connection::open(path, false).map_err(failed)?; // our own temp file
                                                               // Read through a mapping (up to SQLite's compiled-in limit): the check reads every page
                                                               // of a file just written, and copying each out of the page cache cost a restore of 1 GiB
                                                               // a tenth of its CPU.
    let _ = conn.exec("PRAGMA mmap_size=1099511627776");
    let rows = conn
        .query_column(if full {
            "PRAGMA integrity_check"
        } else {
            "PRAGMA quick_check"
        })
        .map_err(failed)?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(CheckFailure::Damaged(rows.join("; ")))
    }
}

/// The WAL-index header of a connection's database `schema`, read from SQLite's own shared
/// memory (`None` when the database is not in WAL mode or its index is not mapped).
pub(crate) fn wal_index_header_of(
    db: *mut sys::sqlite3,
    schema: &std::ffi::CStr,
) -> Option<crate::wal::WalIndexHeader> {
    wal_index_state_of(db, schema).map(|s| s.header)
}

/// The first bytes of a connection's database `schema` as its file holds them: the
/// header's file-format bytes (18 and 19) say whether the database is in WAL mode.
pub(crate) fn file_head_of(db: *mut sys::sqlite3, schema: &CStr) -> Option<[u8; 20]> {
    let file = file_of(db, schema)?;
    // SAFETY: a file object SQLite keeps while the connection is open.
    if unsafe { (*file).pMethods }.is_null() {
        return None; // not open
    }
    let mut head = [0u8; 20];
    // SAFETY: an open file object (its method table is set) of a live connection.
    let n = unsafe { read_open_file(file, 0, &mut head) }.ok()?;
    (n == head.len()).then_some(head)
}

/// The open file of a connection's database `schema` (`None` when it has none).
pub(crate) fn file_of(db: *mut sys::sqlite3, schema: &CStr) -> Option<*mut sys::sqlite3_file> {
    let fcntl = sqlite_fn!(file_control);
    let mut file: *mut sys::sqlite3_file = std::ptr::null_mut();
    // SAFETY: FILE_POINTER writes the database's sqlite3_file pointer into `file`.
    let rc = unsafe {
        fcntl(
            db,
            schema.as_ptr(),
            sys::SQLITE_FCNTL_FILE_POINTER,
            &mut file as *mut _ as *mut c_void,
        )
    };
    (rc == sys::SQLITE_OK && !file.is_null()).then_some(file)
}

/// The WAL-index header and the count of frames checkpointed (`nBackfill`), as
/// [`wal_index_header_of`] reads them.
pub(crate) fn wal_index_state_of(
    db: *mut sys::sqlite3,
    schema: &std::ffi::CStr,
) -> Option<crate::wal::WalIndexState> {
    wal_index_state_of_file(file_of(db, schema)?)
}

/// The WAL-index state of an open main-database file object, through its own mapping of the
/// `-shm` (region 0, not extended): `None` when it has none mapped.
pub(crate) fn wal_index_state_of_file(
    file: *mut sys::sqlite3_file,
) -> Option<crate::wal::WalIndexState> {
    // SAFETY: a file object SQLite keeps open while the caller uses it; its method table
    // is static data of the VFS.
    let methods = unsafe { (*file).pMethods.as_ref() }?;
    if methods.iVersion < 2 {
        return None;
    }
    let shm_map = methods.xShmMap?;
    let mut region: *mut c_void = std::ptr::null_mut();
    // SAFETY: region 0 without extending; a connection that has read or written in WAL
    // mode has it mapped, and it stays mapped while the connection is open.
    let rc = unsafe { shm_map(file, 0, 32768, 0, &mut region) };
    if rc != sys::SQLITE_OK || region.is_null() {
        return None;
    }
    read_index_region(region)
}

/// The index state at the start of a mapped region 0, read as SQLite's readers do (copy,
/// compare the two header copies, again while a writer is updating them).
pub(super) fn read_index_region(region: *mut c_void) -> Option<crate::wal::WalIndexState> {
    for _ in 0..1000 {
        let mut prefix = [0u8; crate::wal::WAL_INDEX_STATE_SIZE];
        // SAFETY: region 0 is at least 32 KiB and starts with the two header copies and
        // nBackfill. A writer may be updating them; SQLite's readers also copy and compare,
        // as `WalIndexState::parse` does.
        unsafe {
            std::ptr::copy_nonoverlapping(region as *const u8, prefix.as_mut_ptr(), prefix.len())
        };
        if let Ok(state) = crate::wal::WalIndexState::parse(&prefix) {
            return state;
        }
        std::thread::yield_now();
    }
    None
}

/// The WAL index of the database at `path`, from this process's SQLite's own shared
/// memory: mapped through the base VFS on a file object of our own, which joins SQLite's
/// in-process mapping of the `-shm` (opening and closing a descriptor of that file
/// ourselves would drop the locks SQLite holds on it). `None` when there is none to read.
pub(crate) fn wal_index_state_at(path: &Path) -> Option<crate::wal::WalIndexState> {
    // Mapping creates a missing `-shm` (SQLite deletes it at the last close, before the
    // log): none means no index, and no file left behind.
    if !crate::wal::index_path_of(path).exists() {
        return None;
    }
    let file = RawFile::open(path, false).ok().flatten()?;
    let methods = file.methods()?;
    if methods.iVersion < 2 {
        return None;
    }
    let (shm_map, shm_unmap) = (methods.xShmMap?, methods.xShmUnmap?);
    let mut region: *mut c_void = std::ptr::null_mut();
    // SAFETY: region 0 of our own open file, not extended: SQLite maps the existing
    // `-shm` (or reports no region) and counts this file among its users until unmapped.
    let rc = unsafe { shm_map(file.file(), 0, 32768, 0, &mut region) };
    let state = (rc == sys::SQLITE_OK && !region.is_null())
        .then(|| read_index_region(region))
        .flatten();
    // SAFETY: the mapping made above; 0 = do not delete the `-shm`.
    unsafe { shm_unmap(file.file(), 0) };
    state
}

/// Where the main database's WAL ends (its last commit), as the connection's WAL index
/// says; `None` when it has no WAL index (not in WAL mode, or not read yet).
pub(crate) fn main_wal_end(db: *mut sys::sqlite3) -> Option<crate::wal::WalPosition> {
    let idx = wal_index_header_of(db, c"main")?;
    Some(crate::wal::WalPosition::new(
        (idx.salt1, idx.salt2),
        idx.mx_frame,
    ))
}
