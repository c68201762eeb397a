//! The `replica` VFS: a pass-through over the default VFS. Each file carries a pointer to a
//! shim observer only when it is the WAL of a replicated database; every other call is a
//! null check and a forward. Opening a main database first gives the shim its chance to
//! restore a missing replicated database (boot-time restore), before SQLite creates it.
//! `install` says how it comes into the process.

mod install;

use super::{guard, sys};
use crate::base::io::ReadAt;
use crate::base::lock::lock;
use crate::database::WriteLockNote;
use crate::shim::{self, DbObserver, HandoffObserver, WalObserver};
use install::base_vfs;
use std::alloc::Layout;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::size_of;
use std::ptr::null_mut;
use std::sync::{Arc, Mutex, OnceLock};

/// Installs the replica VFS (see `install`).
pub(crate) fn register(make_default: bool) -> Result<(), crate::error::Error> {
    let files = install::FileMethods {
        open: x_open,
        size: FILE_SIZE,
    };
    install::install(make_default, files)
}

/// Our file object, at the start of the allocation SQLite makes for a file. The base VFS's
/// file object lives in an allocation of its own: SQLite sizes its allocation by the
/// default VFS's `szOsFile`, which a wrapped default VFS leaves as it was.
#[repr(C)]
struct ReplicaFile {
    base: sys::sqlite3_file,
    real: *mut sys::sqlite3_file,
    /// Set on the `-wal` of a replicated database.
    observer: *mut WalObserver,
    /// Set on the main file of a replicated database (its shm locks end transactions).
    db_observer: *mut DbObserver,
    /// Set on the `-wal` of a database another process replicates: it hands the log's
    /// commits over before this process restarts or truncates it.
    handoff: *mut HandoffObserver,
    /// Set on the main file of a database replicated here or elsewhere: where the WAL index
    /// is noted while this file holds the write lock (see `database::WriteLockNote`).
    noted: *mut Arc<WriteLockNote>,
    /// Region 0 of the WAL index as SQLite mapped it for this file (null until mapped, and
    /// again once unmapped): the write lock's note reads it without mapping it again.
    index_region: *mut c_void,
    /// The main file of a follower's copy (opened read-only for the application).
    followed: bool,
}

/// The bytes our file object needs in SQLite's allocation.
const FILE_SIZE: usize = size_of::<ReplicaFile>();

/// The layout of the base VFS's file object.
fn real_layout() -> Option<Layout> {
    Layout::from_size_align((base_vfs().szOsFile as usize).max(8), 16).ok()
}

/// Allocates the base VFS's file object, zeroed, or null when memory is short.
fn alloc_real() -> *mut sys::sqlite3_file {
    let Some(layout) = real_layout() else {
        return null_mut();
    };
    // SAFETY: the layout's size is not zero.
    unsafe { std::alloc::alloc_zeroed(layout) as *mut sys::sqlite3_file }
}

/// Frees the base VFS's file object (closed, or never opened).
fn free_real(f: &mut ReplicaFile) {
    if let (false, Some(layout)) = (f.real.is_null(), real_layout()) {
        // SAFETY: allocated by alloc_real with this layout, and freed only here.
        unsafe { std::alloc::dealloc(f.real as *mut u8, layout) };
    }
    f.real = null_mut();
}

fn file<'a>(p: *mut sys::sqlite3_file) -> &'a mut ReplicaFile {
    // SAFETY: SQLite only passes back file objects our xOpen initialised; they are
    // ReplicaFile-prefixed allocations of at least FILE_SIZE bytes.
    unsafe { &mut *(p as *mut ReplicaFile) }
}

fn real_methods(f: &ReplicaFile) -> &'static sys::sqlite3_io_methods {
    // SAFETY: our pMethods is only set while the real file is open, and the real file's
    // method table is static data of the base VFS.
    unsafe { &*(*f.real).pMethods }
}

/// Reads from the real file, for the shim (a short read reports 0 bytes).
struct RealReader(*mut sys::sqlite3_file);

impl ReadAt for RealReader {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: self.0 is an open real file (the shim only reads during a call on it).
        unsafe { super::sqlite::read_open_file(self.0, offset, buf) }
    }
}

unsafe extern "C" fn x_open(
    _vfs: *mut sys::sqlite3_vfs,
    z_name: *const c_char,
    p: *mut sys::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard(sys::SQLITE_CANTOPEN, || {
        let mut flags = flags;
        let base = base_vfs();
        if !z_name.is_null() && belongs_to_a_file_not_ours(z_name, flags) {
            // The log or journal of a database opened before the default VFS was wrapped:
            // it stays the base VFS's, as its database is (`adopt` follows it through hooks).
            // SAFETY: SQLite's own arguments; the allocation holds the base VFS's szOsFile
            // bytes (the wrapped default keeps it; the replica VFS's is never smaller).
            return unsafe {
                base.xOpen.unwrap()(base as *const _ as *mut _, z_name, p, flags, out_flags)
            };
        }
        let f = file(p);
        f.base.pMethods = std::ptr::null();
        f.real = null_mut();
        f.observer = null_mut();
        f.db_observer = null_mut();
        f.handoff = null_mut();
        f.noted = null_mut();
        f.index_region = null_mut();
        f.followed = false;
        let mut followed = false;
        if flags & sys::SQLITE_OPEN_MAIN_DB != 0 && !z_name.is_null() {
            followed = match follow_before_open(z_name, p, flags, out_flags) {
                Ok(followed) => followed,
                Err(rc) => return rc,
            };
            f.followed = followed;
            if followed {
                // A follower's copy: the application reads it, only the follower writes.
                flags = (flags & !(sys::SQLITE_OPEN_READWRITE | sys::SQLITE_OPEN_CREATE))
                    | sys::SQLITE_OPEN_READONLY;
            } else if let Err(rc) = restore_before_open(z_name, p, flags, out_flags) {
                return rc;
            }
        }
        f.real = alloc_real();
        if f.real.is_null() {
            return sys::SQLITE_IOERR_NOMEM;
        }
        // SAFETY: forwarding SQLite's own arguments to the base VFS with its file object.
        let rc = unsafe {
            base.xOpen.unwrap()(base as *const _ as *mut _, z_name, f.real, flags, out_flags)
        };
        // SAFETY: the base xOpen always sets pMethods (to NULL or a table).
        let real_m = unsafe { (*f.real).pMethods };
        if !real_m.is_null() {
            // SAFETY: a non-null method table of the base VFS.
            f.base.pMethods = io_methods_for(unsafe { (*real_m).iVersion });
        }
        let rc = if rc != sys::SQLITE_OK || z_name.is_null() || followed {
            rc
        } else {
            observe(f, z_name, flags, out_flags)
        };
        if f.base.pMethods.is_null() {
            free_real(f); // SQLite calls no xClose for a file whose pMethods is null
        }
        rc
    })
}

/// Whether `z_name`, a log or journal being opened, belongs to a database file `adopt`
/// follows through hooks (opened by the base VFS before the default was wrapped in place).
fn belongs_to_a_file_not_ours(z_name: *const c_char, flags: c_int) -> bool {
    if flags & (sys::SQLITE_OPEN_WAL | sys::SQLITE_OPEN_MAIN_JOURNAL) == 0 {
        return false;
    }
    // Before the lock: a forked child must not wait on a mutex a thread of its parent held
    // at the fork, and the parent's adoptions are not its own.
    if BASE_LOGS_OWNER.get() != Some(&crate::database::process_identity()) {
        return false;
    }
    let name = z_name as usize;
    lock(&BASE_LOG_NAMES).iter().any(|(n, _)| *n == name)
}

/// The addresses of the log and journal names of the databases `adopt` follows, as SQLite
/// passes them to xOpen (they lie in the pager's memory), each with the count of holds on
/// it. They are compared, never read: a VFS stacked over ours may pass names of its own,
/// from which SQLite's memory cannot be walked.
static BASE_LOG_NAMES: Mutex<Vec<(usize, u32)>> = Mutex::new(Vec::new());

/// The process whose adoptions `BASE_LOG_NAMES` holds.
static BASE_LOGS_OWNER: OnceLock<(u64, u32)> = OnceLock::new();

/// A hold on the log and journal of one database, which stay the base VFS's while it lasts.
pub(super) struct BaseLogs([usize; 2]);

impl BaseLogs {
    /// Holds the log and journal of the database SQLite names `filename` (as
    /// `sqlite3_db_filename` gives it).
    pub(super) fn hold(filename: *const c_char) -> BaseLogs {
        let this_process = crate::database::process_identity();
        if *BASE_LOGS_OWNER.get_or_init(|| this_process) != this_process {
            return BaseLogs([0; 2]); // a forked child: see belongs_to_a_file_not_ours
        }
        let names = log_names_of(filename);
        let mut all = lock(&BASE_LOG_NAMES);
        for name in names {
            match all.iter_mut().find(|(n, _)| *n == name) {
                Some((_, holds)) => *holds += 1,
                None => all.push((name, 1)),
            }
        }
        BaseLogs(names)
    }
}

impl Drop for BaseLogs {
    fn drop(&mut self) {
        if self.0 == [0; 2] {
            return; // held nothing
        }
        let mut all = lock(&BASE_LOG_NAMES);
        for name in self.0 {
            if let Some(i) = all.iter().position(|(n, _)| *n == name) {
                all[i].1 -= 1;
                if all[i].1 == 0 {
                    all.swap_remove(i);
                }
            }
        }
    }
}

fn log_names_of(filename: *const c_char) -> [usize; 2] {
    let wal = super::sqlite_fn!(filename_wal);
    let journal = super::sqlite_fn!(filename_journal);
    // SAFETY: `filename` is a database filename as sqlite3_db_filename returns it, which is
    // what these two take; they return the addresses SQLite opens the log and journal by.
    unsafe { [wal(filename) as usize, journal(filename) as usize] }
}

/// Whether the main database being opened is a follower's copy (`?replica_follow=URL`
/// starts following); a follower that cannot start makes the file a stand-in whose open
/// fails with the reason.
fn follow_before_open(
    z_name: *const c_char,
    p: *mut sys::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> Result<bool, c_int> {
    // SAFETY: z_name is a NUL-terminated database filename SQLite keeps alive.
    let name = unsafe { CStr::from_ptr(z_name) }
        .to_string_lossy()
        .to_string();
    let e = match super::follow::at_open(&name, &|key| uri_parameter(z_name, key)) {
        Ok(followed) => return Ok(followed),
        Err(e) => e,
    };
    super::open_failure::clear();
    let e = format!("following into {name}: {e}");
    crate::base::log::error(&e);
    // SAFETY: p and out_flags are xOpen's own arguments.
    Err(unsafe { super::open_failure::stand_in(p, &name, e, flags, out_flags) })
}

/// Gives the shim its chance to restore a missing replicated database before SQLite opens
/// it; a failed restore makes the file a stand-in whose open fails with the reason.
fn restore_before_open(
    z_name: *const c_char,
    p: *mut sys::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> Result<(), c_int> {
    // SAFETY: z_name is a NUL-terminated database filename SQLite keeps alive.
    let name = unsafe { CStr::from_ptr(z_name) }
        .to_string_lossy()
        .to_string();
    super::open_failure::clear();
    let restored = shim::restore_needed_before_open(&name, &|key| uri_parameter(z_name, key))
        .and_then(|needed| match needed {
            Some((path, destinations)) => {
                crate::functions::restore_missing(&path, &destinations, &|path, full| {
                    super::sqlite::integrity_check(path, full)
                })
            }
            None => Ok(()),
        });
    let Err(e) = restored else { return Ok(()) };
    crate::base::log::error(&e.to_string());
    // SAFETY: p and out_flags are xOpen's own arguments.
    Err(unsafe { super::open_failure::stand_in(p, &name, e.to_string(), flags, out_flags) })
}

/// Attaches the shim's observers to a file the base VFS just opened.
fn observe(
    f: &mut ReplicaFile,
    z_name: *const c_char,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: z_name is a NUL-terminated path SQLite keeps alive while the file is open.
    let name = unsafe { CStr::from_ptr(z_name) }
        .to_string_lossy()
        .to_string();
    if flags & sys::SQLITE_OPEN_MAIN_DB != 0 {
        let read_only = read_only_open(z_name, flags, out_flags);
        match shim::on_open_main_db(&name, read_only, &|key| uri_parameter(z_name, key)) {
            Ok(Some(obs)) => f.db_observer = Box::into_raw(Box::new(obs)),
            Ok(None) => {}
            Err(e) => {
                super::sqlite_log(sys::SQLITE_CANTOPEN, &format!("libreplica: {name}: {e}"));
                close_real(f);
                return sys::SQLITE_CANTOPEN;
            }
        }
        let path = std::path::PathBuf::from(&name);
        if !f.db_observer.is_null() || shim::replicated_elsewhere(&path) {
            f.noted = Box::into_raw(Box::new(crate::database::write_lock_note(&path)));
        }
    } else if flags & sys::SQLITE_OPEN_WAL != 0 {
        if let Some(obs) = shim::on_open_wal(&name, &mut RealReader(f.real)) {
            f.observer = Box::into_raw(Box::new(obs));
        } else if let Some(h) = shim::on_open_wal_elsewhere(&name) {
            f.handoff = Box::into_raw(Box::new(h));
        }
    }
    sys::SQLITE_OK
}

/// Whether (and why) SQLite opened a main database read-only: `immutable=1` (SQLite then
/// opens the file read-write but never writes it), `mode=ro` or SQLITE_OPEN_READONLY asked
/// for, or a file the base VFS could only open for reading (it says so in `out_flags`).
fn read_only_open(
    z_name: *const c_char,
    flags: c_int,
    out_flags: *mut c_int,
) -> Option<shim::ReadOnlyOpen> {
    let boolean = super::sqlite_fn!(uri_boolean);
    // SAFETY: z_name is a database filename as SQLite passes to xOpen, which is what
    // sqlite3_uri_boolean expects; the key is a NUL-terminated literal.
    let immutable = unsafe { boolean(z_name as _, c"immutable".as_ptr(), 0) } != 0;
    // SAFETY: when not null, out_flags points to the int the base xOpen just set.
    let opened = unsafe { out_flags.as_ref() }.copied().unwrap_or(flags);
    shim::ReadOnlyOpen::of_open(
        immutable,
        uri_parameter(z_name, "mode").as_deref(),
        flags & sys::SQLITE_OPEN_READONLY != 0,
        opened & sys::SQLITE_OPEN_READONLY != 0,
    )
}

/// A URI parameter of the database filename SQLite passed to xOpen.
fn uri_parameter(z_name: *const c_char, key: &str) -> Option<String> {
    let k = std::ffi::CString::new(key).ok()?;
    let param = super::sqlite_fn!(uri_parameter);
    // SAFETY: z_name is a database filename as SQLite passes to xOpen, which is what
    // sqlite3_uri_parameter expects.
    let v = unsafe { param(z_name as _, k.as_ptr()) };
    // SAFETY: a non-null result points into z_name's parameter list.
    (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_string_lossy().to_string())
}

fn close_real(f: &mut ReplicaFile) -> c_int {
    if f.base.pMethods.is_null() {
        return sys::SQLITE_OK;
    }
    let rc = match real_methods(f).xClose {
        // SAFETY: closing the real file exactly once; pMethods is cleared right after.
        Some(close) => unsafe { close(f.real) },
        None => sys::SQLITE_OK,
    };
    f.base.pMethods = std::ptr::null();
    rc
}

fn io_methods_for(version: c_int) -> *const sys::sqlite3_io_methods {
    match version {
        v if v >= 3 => &IO_V3,
        2 => &IO_V2,
        _ => &IO_V1,
    }
}

unsafe extern "C" fn x_close(p: *mut sys::sqlite3_file) -> c_int {
    guard(sys::SQLITE_IOERR_CLOSE, || {
        let f = file(p);
        if !f.observer.is_null() {
            // SAFETY: created by Box::into_raw in x_open and freed only here.
            drop(unsafe { Box::from_raw(f.observer) });
            f.observer = null_mut();
        }
        if !f.db_observer.is_null() {
            // SAFETY: created by Box::into_raw in x_open and freed only here.
            drop(unsafe { Box::from_raw(f.db_observer) });
            f.db_observer = null_mut();
        }
        if !f.handoff.is_null() {
            // SAFETY: created by Box::into_raw in x_open and freed only here.
            drop(unsafe { Box::from_raw(f.handoff) });
            f.handoff = null_mut();
        }
        if !f.noted.is_null() {
            // SAFETY: created by Box::into_raw in x_open and freed only here.
            drop(unsafe { Box::from_raw(f.noted) });
            f.noted = null_mut();
        }
        let rc = close_real(f);
        free_real(f);
        rc
    })
}

unsafe extern "C" fn x_read(
    p: *mut sys::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    guard(sys::SQLITE_IOERR_READ, || {
        let f = file(p);
        // SAFETY: forwarding SQLite's arguments to the real file.
        unsafe { real_methods(f).xRead.unwrap()(f.real, buf, amt, off) }
    })
}

unsafe extern "C" fn x_write(
    p: *mut sys::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    guard(sys::SQLITE_IOERR_WRITE, || {
        let f = file(p);
        // SAFETY: the hand-off box lives until x_close.
        if let Some(h) = unsafe { f.handoff.as_ref() } {
            if off == 0 {
                // SAFETY: buf holds amt bytes for the duration of this call.
                let data = unsafe { std::slice::from_raw_parts(buf as *const u8, amt as usize) };
                h.before_log_goes(Some(data), &mut RealReader(f.real));
            }
        }
        // SAFETY: the observer box lives until x_close.
        let obs = unsafe { f.observer.as_ref() };
        if let Some(obs) = obs {
            obs.write_starting();
            if off == 0 {
                // SAFETY: buf holds amt bytes for the duration of this call.
                let data = unsafe { std::slice::from_raw_parts(buf as *const u8, amt as usize) };
                obs.before_write(0, data, &mut RealReader(f.real));
            }
        }
        // SAFETY: forwarding SQLite's arguments to the real file.
        let rc = unsafe { real_methods(f).xWrite.unwrap()(f.real, buf, amt, off) };
        // SAFETY: the main-file observer box lives until x_close.
        if let Some(main) = unsafe { f.db_observer.as_ref() } {
            if rc == sys::SQLITE_OK && off == 0 {
                // SAFETY: buf holds amt bytes for the duration of this call.
                let data = unsafe { std::slice::from_raw_parts(buf as *const u8, amt as usize) };
                main.after_main_write(0, data);
            }
        }
        if let Some(obs) = obs {
            if rc == sys::SQLITE_OK {
                // SAFETY: buf holds amt bytes for the duration of this call.
                let data = unsafe { std::slice::from_raw_parts(buf as *const u8, amt as usize) };
                obs.after_write(off as u64, data, &mut RealReader(f.real));
            }
            obs.write_ended();
        }
        rc
    })
}

unsafe extern "C" fn x_truncate(p: *mut sys::sqlite3_file, size: i64) -> c_int {
    guard(sys::SQLITE_IOERR_TRUNCATE, || {
        let f = file(p);
        // SAFETY: the hand-off box lives until x_close.
        if let Some(h) = unsafe { f.handoff.as_ref() } {
            if (size as u64) < crate::wal::WAL_HEADER_SIZE as u64 {
                h.before_log_goes(None, &mut RealReader(f.real));
            }
        }
        // SAFETY: the observer box lives until x_close.
        let obs = unsafe { f.observer.as_ref() };
        if let Some(obs) = obs {
            // A truncate is a write too: a poll must not mistake it for another process's.
            obs.write_starting();
            obs.before_truncate(size as u64, &mut RealReader(f.real));
        }
        // SAFETY: forwarding to the real file.
        let rc = unsafe { real_methods(f).xTruncate.unwrap()(f.real, size) };
        if let Some(obs) = obs {
            if rc == sys::SQLITE_OK {
                obs.after_truncate(size as u64);
            }
            obs.write_ended();
        }
        rc
    })
}

macro_rules! forward {
    ($name:ident, $field:ident, $err:expr, ($($arg:ident : $ty:ty),*)) => {
        unsafe extern "C" fn $name(p: *mut sys::sqlite3_file $(, $arg: $ty)*) -> c_int {
            guard($err, || {
                let f = file(p);
                match real_methods(f).$field {
                    // SAFETY: forwarding SQLite's arguments unchanged to the real file.
                    Some(x) => unsafe { x(f.real $(, $arg)*) },
                    None => $err,
                }
            })
        }
    };
}

forward!(x_sync, xSync, sys::SQLITE_IOERR_FSYNC, (flags: c_int));
forward!(x_file_size, xFileSize, sys::SQLITE_IOERR_FSTAT, (size: *mut i64));
forward!(x_lock, xLock, sys::SQLITE_IOERR_LOCK, (lock: c_int));
forward!(x_unlock, xUnlock, sys::SQLITE_IOERR_UNLOCK, (lock: c_int));
forward!(x_check_reserved_lock, xCheckReservedLock, sys::SQLITE_IOERR_CHECKRESERVEDLOCK, (out: *mut c_int));
forward!(forward_file_control, xFileControl, sys::SQLITE_NOTFOUND, (op: c_int, arg: *mut c_void));

unsafe extern "C" fn x_file_control(
    p: *mut sys::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    if op == sys::SQLITE_FCNTL_PRAGMA && file(p).followed {
        // SAFETY: FCNTL_PRAGMA's argument is SQLite's char*[3] (result, name, value).
        if let Some(rc) = guard(None, || unsafe { follower_pragma(arg as *mut *mut c_char) }) {
            return rc;
        }
    }
    // SAFETY: SQLite's own arguments, forwarded unchanged.
    let rc = unsafe { forward_file_control(p, op, arg) };
    if op == sys::SQLITE_FCNTL_VFSNAME && rc == sys::SQLITE_OK {
        guard((), || name_the_vfs(arg as *mut *mut c_char));
    }
    rc
}

/// `PRAGMA journal_mode=X` on a follower's copy, which only its follower writes: answered
/// with the mode it stays in (`delete`), as SQLite answers a change it cannot make, rather
/// than failed as a write (hosts such as Rails set WAL mode on every connection they open).
/// `None` for any other pragma, which SQLite handles.
///
/// # Safety
/// `args` is FCNTL_PRAGMA's `char*[3]`: the result slot, the pragma's name, its value or
/// null.
unsafe fn follower_pragma(args: *mut *mut c_char) -> Option<c_int> {
    // SAFETY: per this function's contract, args[1] and args[2] are NUL-terminated or null.
    let (name, value) = unsafe { (*args.add(1), *args.add(2)) };
    if name.is_null() || value.is_null() {
        return None;
    }
    // SAFETY: non-null NUL-terminated strings SQLite keeps alive during the call.
    let name = unsafe { CStr::from_ptr(name) };
    if !name.to_bytes().eq_ignore_ascii_case(b"journal_mode") {
        return None;
    }
    let mprintf = super::sqlite_fn!(mprintf);
    // SAFETY: a static format without conversions; SQLite frees the result it is handed.
    unsafe { *args = mprintf(c"delete".as_ptr()) };
    Some(sys::SQLITE_OK)
}

/// The VFS's name as SQLite asks a shim to give it, its own before the base VFS's
/// (`replica/unix`), in place of the base VFS's answer (the name of its copy).
fn name_the_vfs(out: *mut *mut c_char) {
    let name = format!("replica/{}", install::default_vfs_name());
    let malloc = super::sqlite_fn!(malloc64);
    let free = super::sqlite_fn!(free);
    // SAFETY: an allocation of name.len() + 1 bytes, or null.
    let buf = unsafe { malloc(name.len() as u64 + 1) } as *mut u8;
    if buf.is_null() {
        return; // the base VFS's answer stands
    }
    // SAFETY: `buf` holds name.len() + 1 bytes; `out` is the char** of FCNTL_VFSNAME, which
    // holds null or a string from sqlite3_malloc that the caller would free.
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), buf, name.len());
        *buf.add(name.len()) = 0;
        free(*out as *mut c_void);
        *out = buf as *mut c_char;
    }
}
unsafe extern "C" fn x_shm_map(
    p: *mut sys::sqlite3_file,
    pg: c_int,
    pgsz: c_int,
    extend: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    guard(sys::SQLITE_IOERR_SHMMAP, || {
        let f = file(p);
        let Some(map) = real_methods(f).xShmMap else {
            return sys::SQLITE_IOERR_SHMMAP;
        };
        // SAFETY: forwarding SQLite's arguments unchanged to the real file.
        let rc = unsafe { map(f.real, pg, pgsz, extend, pp) };
        if rc == sys::SQLITE_OK && pg == 0 && !pp.is_null() {
            // SAFETY: SQLite's out-pointer, just written by the base VFS. Region 0 stays
            // mapped where it is until this file unmaps the index (`x_shm_unmap`).
            f.index_region = unsafe { *pp };
        }
        rc
    })
}

unsafe extern "C" fn x_shm_unmap(p: *mut sys::sqlite3_file, delete: c_int) -> c_int {
    guard(sys::SQLITE_IOERR, || {
        let f = file(p);
        f.index_region = null_mut();
        match real_methods(f).xShmUnmap {
            // SAFETY: forwarding SQLite's arguments unchanged to the real file.
            Some(unmap) => unsafe { unmap(f.real, delete) },
            None => sys::SQLITE_IOERR,
        }
    })
}

/// The WAL index as this file's SQLite sees it: through the region it mapped, else mapped.
fn index_state(f: &ReplicaFile) -> Option<crate::wal::WalIndexState> {
    match f.index_region.is_null() {
        false => super::sqlite::read_index_region(f.index_region),
        true => super::sqlite::wal_index_state_of_file(f.real),
    }
}

unsafe extern "C" fn x_shm_lock(
    p: *mut sys::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    guard(sys::SQLITE_IOERR_SHMLOCK, || {
        let f = file(p);
        let Some(lock) = real_methods(f).xShmLock else {
            return sys::SQLITE_IOERR_SHMLOCK;
        };
        // Slot 0 is the WAL write lock: while held, the index header is what is committed.
        // The note is cleared before the lock goes (the next holder may be noting already).
        let write_lock = offset == 0 && flags & sys::SQLITE_SHM_EXCLUSIVE != 0;
        let taking = flags & sys::SQLITE_SHM_LOCK != 0;
        // SAFETY: the note's box lives until x_close.
        let note = unsafe { f.noted.as_ref() }.filter(|_| write_lock);
        if let Some(note) = note.filter(|_| !taking) {
            note.set(None);
        }
        // SAFETY: forwarding SQLite's arguments unchanged to the real file.
        let rc = unsafe { lock(f.real, offset, n, flags) };
        if let Some(note) = note.filter(|_| taking && rc == sys::SQLITE_OK) {
            note.set(index_state(f).map(|i| ((i.header.salt1, i.header.salt2), i.header.mx_frame)));
        }
        // Slot 1 alone is the checkpoint lock (a recovery of the WAL index takes it with the
        // slots after it): a checkpoint runs while it is held.
        if rc == sys::SQLITE_OK && offset == 1 && n == 1 && flags & sys::SQLITE_SHM_EXCLUSIVE != 0 {
            // SAFETY: the observer box lives until x_close.
            if let Some(obs) = unsafe { f.db_observer.as_ref() } {
                obs.checkpointing(flags & sys::SQLITE_SHM_LOCK != 0);
            }
        }
        // Slot 0 is the WAL write lock: its release ends a write transaction.
        if rc == sys::SQLITE_OK
            && offset == 0
            && flags == sys::SQLITE_SHM_UNLOCK | sys::SQLITE_SHM_EXCLUSIVE
            && !f.db_observer.is_null()
        {
            // SAFETY: the observer box lives until x_close.
            let obs = unsafe { &*f.db_observer };
            // The path is built only when a deferred commit needs the log: this runs at the
            // end of every write transaction.
            obs.after_write_unlock(&mut || {
                super::sqlite::RawFile::open(&crate::wal::log_path_of(obs.db_path()), true)
                    .ok()
                    .flatten()
                    .map(|w| Box::new(w) as Box<dyn ReadAt>)
            });
        }
        rc
    })
}
forward!(x_fetch, xFetch, sys::SQLITE_IOERR, (off: i64, amt: c_int, pp: *mut *mut c_void));
forward!(x_unfetch, xUnfetch, sys::SQLITE_IOERR, (off: i64, pp: *mut c_void));

unsafe extern "C" fn x_sector_size(p: *mut sys::sqlite3_file) -> c_int {
    guard(4096, || {
        let f = file(p);
        // SAFETY: forwarding to the real file.
        real_methods(f)
            .xSectorSize
            .map(|x| unsafe { x(f.real) })
            .unwrap_or(4096)
    })
}

unsafe extern "C" fn x_device_characteristics(p: *mut sys::sqlite3_file) -> c_int {
    guard(0, || {
        let f = file(p);
        // SAFETY: forwarding to the real file.
        real_methods(f)
            .xDeviceCharacteristics
            .map(|x| unsafe { x(f.real) })
            .unwrap_or(0)
    })
}

unsafe extern "C" fn x_shm_barrier(p: *mut sys::sqlite3_file) {
    guard((), || {
        let f = file(p);
        if let Some(x) = real_methods(f).xShmBarrier {
            // SAFETY: forwarding to the real file.
            unsafe { x(f.real) }
        }
    })
}

const fn io_methods(version: c_int) -> sys::sqlite3_io_methods {
    sys::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(x_close),
        xRead: Some(x_read),
        xWrite: Some(x_write),
        xTruncate: Some(x_truncate),
        xSync: Some(x_sync),
        xFileSize: Some(x_file_size),
        xLock: Some(x_lock),
        xUnlock: Some(x_unlock),
        xCheckReservedLock: Some(x_check_reserved_lock),
        xFileControl: Some(x_file_control),
        xSectorSize: Some(x_sector_size),
        xDeviceCharacteristics: Some(x_device_characteristics),
        xShmMap: if version >= 2 { Some(x_shm_map) } else { None },
        xShmLock: if version >= 2 { Some(x_shm_lock) } else { None },
        xShmBarrier: if version >= 2 {
            Some(x_shm_barrier)
        } else {
            None
        },
        xShmUnmap: if version >= 2 {
            Some(x_shm_unmap)
        } else {
            None
        },
        xFetch: if version >= 3 { Some(x_fetch) } else { None },
        xUnfetch: if version >= 3 { Some(x_unfetch) } else { None },
    }
}

static IO_V1: sys::sqlite3_io_methods = io_methods(1);
static IO_V2: sys::sqlite3_io_methods = io_methods(2);
static IO_V3: sys::sqlite3_io_methods = io_methods(3);

/// Whether `methods` (an open file's method table) is the replica VFS's: the file was opened
/// through it, so capture already sees its writes.
pub(super) fn is_replica_file(methods: *const sys::sqlite3_io_methods) -> bool {
    [&IO_V1, &IO_V2, &IO_V3]
        .iter()
        .any(|m| std::ptr::eq(*m as *const _, methods))
}
