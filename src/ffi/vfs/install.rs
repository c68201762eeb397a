//! How the replica VFS comes into the process. By default the default VFS is wrapped in
//! place: its `xOpen` and `xDelete` become ours, and its own methods live on in a copy,
//! registered as `libreplica-base` for the extension's private connections. Wrapping in
//! place keeps the default VFS's identity, which SQLite compares when it shares a cache: a
//! shared-cache database (an in-memory one above all, as datasette keeps) opened before the
//! load and again after it is still one cache. A default VFS whose methods tell by its name
//! what to do (`unix-excl`), or one that is not a unix VFS, gets a separate VFS named
//! `replica` made the default instead; `REPLICA_DEFAULT_VFS=0` leaves the default alone, and
//! only databases opened with `?vfs=replica` go through ours.

use crate::error::Error;
use crate::ffi::{guard, sys};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{fence, AtomicPtr, Ordering};
use std::sync::OnceLock;

const VFS_NAME: &CStr = c"replica";

/// The name of the copy that keeps a wrapped default VFS's own methods.
const BASE_COPY_NAME: &CStr = c"libreplica-base";

/// The VFS whose methods do the I/O: a copy of the default VFS as it was before the load
/// when that is wrapped in place, otherwise the default VFS itself.
static BASE: AtomicPtr<sys::sqlite3_vfs> = AtomicPtr::new(null_mut());

/// The name of the default VFS the replica VFS wraps.
static DEFAULT_NAME: OnceLock<String> = OnceLock::new();

pub(super) fn default_vfs_name() -> &'static str {
    DEFAULT_NAME.get().map_or("unix", String::as_str)
}

/// The VFS our methods forward to.
pub(super) fn base_vfs() -> &'static sys::sqlite3_vfs {
    let p = BASE.load(Ordering::Acquire);
    // SAFETY: null or a VFS that lives for the rest of the process: a registered VFS
    // (SQLite never frees one) or our copy, leaked on purpose.
    unsafe { p.as_ref() }.expect("a replica VFS method ran before the VFS was installed")
}

/// The open method of the replica VFS's files, and the bytes its file object needs.
pub(super) struct FileMethods {
    pub open: XOpen,
    pub size: usize,
}

type XOpen = unsafe extern "C" fn(
    *mut sys::sqlite3_vfs,
    *const c_char,
    *mut sys::sqlite3_file,
    c_int,
    *mut c_int,
) -> c_int;

/// Installs the replica VFS once per process: wrapping the default VFS in place where it can
/// be (`make_default`), else registering `replica` (as the default when `make_default`).
pub(super) fn install(make_default: bool, files: FileMethods) -> Result<(), Error> {
    let find = crate::ffi::sqlite_fn!(vfs_find);
    // SAFETY: looking up VFSes by name (or the default with NULL) is always allowed.
    if !unsafe { find(VFS_NAME.as_ptr()) }.is_null() {
        // Another copy of the library installed it: one wrapper is enough, and this copy's
        // private connections must go around it too.
        // SAFETY: as above.
        if !unsafe { find(BASE_COPY_NAME.as_ptr()) }.is_null() {
            crate::shim::set_base_vfs_name(&BASE_COPY_NAME.to_string_lossy());
        }
        return Ok(());
    }
    // SAFETY: as above.
    let default = unsafe { find(std::ptr::null()) };
    if default.is_null() {
        return Err(Error::Unsupported("the host has no default VFS".into()));
    }
    // SAFETY: `default` is a registered VFS, valid for the life of the process.
    let d = unsafe { *default };
    // SAFETY: zName of a registered VFS is a valid C string.
    let name = unsafe { CStr::from_ptr(d.zName) }
        .to_string_lossy()
        .to_string();
    let _ = DEFAULT_NAME.set(name.clone());
    let wrap = make_default && wraps_in_place(&name, &d, files.size);
    let base = if wrap {
        let copy = Box::into_raw(Box::new(sys::sqlite3_vfs {
            pNext: null_mut(),
            zName: BASE_COPY_NAME.as_ptr(),
            ..d
        }));
        register_vfs(copy, false)?;
        crate::shim::set_base_vfs_name(&BASE_COPY_NAME.to_string_lossy());
        copy
    } else {
        crate::shim::set_base_vfs_name(&name);
        default
    };
    BASE.store(base, Ordering::Release);
    register_vfs(
        Box::into_raw(Box::new(replica_vfs(&d, &files))),
        make_default && !wrap,
    )?;
    if wrap {
        wrap_in_place(default, files.open);
    }
    Ok(())
}

/// Whether the default VFS named `name` can be wrapped in place: a unix VFS behaves the same
/// through a copy under another name, except `unix-excl`, which its methods recognise by
/// name; and our file object must fit in the allocation SQLite makes for its files.
fn wraps_in_place(name: &str, vfs: &sys::sqlite3_vfs, file_size: usize) -> bool {
    name.starts_with("unix") && name != "unix-excl" && vfs.szOsFile as usize >= file_size
}

/// Makes the default VFS's opens and deletes ours. The allocation size SQLite reads
/// (`szOsFile`) stays as it is, so an open that read it just before still fits.
fn wrap_in_place(vfs: *mut sys::sqlite3_vfs, open: XOpen) {
    // Our copy and BASE are published before SQLite can find our methods.
    fence(Ordering::SeqCst);
    // SAFETY: `vfs` is the registered default VFS, a live struct in writable memory (SQLite
    // links VFSes through it). SQLite reads these pointers on every open and delete; an
    // aligned pointer store is never seen torn, and a file the old method opened keeps the
    // base VFS's methods, which stay valid.
    unsafe {
        std::ptr::addr_of_mut!((*vfs).xDelete).write_volatile(Some(x_delete));
        std::ptr::addr_of_mut!((*vfs).xOpen).write_volatile(Some(open));
    }
}

fn register_vfs(vfs: *mut sys::sqlite3_vfs, make_default: bool) -> Result<(), Error> {
    let reg = crate::ffi::sqlite_fn!(vfs_register);
    // SAFETY: the VFS object is leaked on purpose: SQLite may use it until the process ends.
    let rc = unsafe { reg(vfs, make_default as c_int) };
    if rc != sys::SQLITE_OK {
        return Err(Error::Sqlite {
            code: rc,
            message: "sqlite3_vfs_register failed".into(),
        });
    }
    Ok(())
}

/// The VFS named `replica`, over `b`.
fn replica_vfs(b: &sys::sqlite3_vfs, files: &FileMethods) -> sys::sqlite3_vfs {
    sys::sqlite3_vfs {
        iVersion: b.iVersion.min(3),
        // Never smaller than the base VFS's: a log opened for a file that is not ours goes
        // to the base VFS in the same allocation.
        szOsFile: (files.size.max(b.szOsFile as usize)) as c_int,
        mxPathname: b.mxPathname,
        pNext: null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: null_mut(),
        xOpen: Some(files.open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: (b.iVersion >= 2).then_some(x_current_time_int64 as _),
        xSetSystemCall: (b.iVersion >= 3).then_some(x_set_system_call as _),
        xGetSystemCall: (b.iVersion >= 3).then_some(x_get_system_call as _),
        xNextSystemCall: (b.iVersion >= 3).then_some(x_next_system_call as _),
    }
}

unsafe extern "C" fn x_delete(
    _vfs: *mut sys::sqlite3_vfs,
    z_name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    guard(sys::SQLITE_IOERR_DELETE, || {
        let base = base_vfs();
        if !z_name.is_null() {
            // SAFETY: a NUL-terminated path from SQLite.
            let name = unsafe { CStr::from_ptr(z_name) }.to_string_lossy();
            crate::shim::before_delete(&name);
            crate::shim::before_journal_delete(&name);
        }
        // SAFETY: forwarding to the base VFS.
        unsafe { base.xDelete.unwrap()(base as *const _ as *mut _, z_name, sync_dir) }
    })
}

macro_rules! forward_vfs {
    ($name:ident, $field:ident, $ret:ty, $err:expr, ($($arg:ident : $ty:ty),*)) => {
        unsafe extern "C" fn $name(_vfs: *mut sys::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            guard($err, || {
                let base = base_vfs();
                match base.$field {
                    // SAFETY: forwarding SQLite's arguments unchanged to the base VFS.
                    Some(x) => unsafe { x(base as *const _ as *mut _ $(, $arg)*) },
                    None => $err,
                }
            })
        }
    };
}

forward_vfs!(x_access, xAccess, c_int, sys::SQLITE_IOERR_ACCESS, (z: *const c_char, flags: c_int, out: *mut c_int));
forward_vfs!(x_full_pathname, xFullPathname, c_int, sys::SQLITE_CANTOPEN, (z: *const c_char, n: c_int, out: *mut c_char));
forward_vfs!(x_dl_open, xDlOpen, *mut c_void, null_mut(), (z: *const c_char));
forward_vfs!(x_dl_sym, xDlSym, Option<unsafe extern "C" fn(*mut sys::sqlite3_vfs, *mut c_void, *const c_char)>, None, (h: *mut c_void, z: *const c_char));
forward_vfs!(x_randomness, xRandomness, c_int, 0, (n: c_int, out: *mut c_char));
forward_vfs!(x_sleep, xSleep, c_int, 0, (micros: c_int));
forward_vfs!(x_current_time, xCurrentTime, c_int, sys::SQLITE_ERROR, (out: *mut f64));
forward_vfs!(x_get_last_error, xGetLastError, c_int, 0, (n: c_int, out: *mut c_char));
forward_vfs!(x_current_time_int64, xCurrentTimeInt64, c_int, sys::SQLITE_ERROR, (out: *mut i64));
forward_vfs!(x_set_system_call, xSetSystemCall, c_int, sys::SQLITE_NOTFOUND, (z: *const c_char, f: sys::sqlite3_syscall_ptr));
forward_vfs!(x_get_system_call, xGetSystemCall, sys::sqlite3_syscall_ptr, None, (z: *const c_char));
forward_vfs!(x_next_system_call, xNextSystemCall, *const c_char, std::ptr::null(), (z: *const c_char));

unsafe extern "C" fn x_dl_error(_vfs: *mut sys::sqlite3_vfs, n: c_int, out: *mut c_char) {
    guard((), || {
        let base = base_vfs();
        if let Some(x) = base.xDlError {
            // SAFETY: forwarding to the base VFS.
            unsafe { x(base as *const _ as *mut _, n, out) }
        }
    })
}

unsafe extern "C" fn x_dl_close(_vfs: *mut sys::sqlite3_vfs, h: *mut c_void) {
    guard((), || {
        let base = base_vfs();
        if let Some(x) = base.xDlClose {
            // SAFETY: forwarding to the base VFS.
            unsafe { x(base as *const _ as *mut _, h) }
        }
    })
}
