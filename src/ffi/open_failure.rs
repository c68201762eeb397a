//! A main database whose boot-time restore failed: its open must fail, and the host should
//! show why. A VFS cannot hand SQLite an error message (a failed xOpen reads as a bare
//! "unable to open database file"), but the auto-extension that runs on every new
//! connection can. So xOpen gives SQLite a stand-in file instead of failing, creating
//! nothing on disk, and remembers the reason for this thread; the auto-extension, which
//! runs next on the same thread inside `sqlite3_open`, fails the connection's open with
//! that reason. The stand-in reads as an empty file (SQLite reads the header while it
//! opens) and refuses every lock and write, so a use that runs no auto-extension (an
//! ATTACH) fails like a file that cannot be opened.

use super::{guard, sys};
use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::path::PathBuf;

thread_local! {
    /// The database (as SQLite names it) whose open this thread failed, and why.
    static FAILED: RefCell<Option<(PathBuf, String)>> = const { RefCell::new(None) };
}

/// A main database is being opened: forget a failure an earlier open left unclaimed.
pub(super) fn clear() {
    FAILED.with(|f| f.borrow_mut().take());
}

/// Makes `file` the stand-in for `name`, whose open fails with `reason`; returns SQLITE_OK
/// for xOpen to return.
///
/// # Safety
/// `file` is the file object SQLite passed to xOpen (at least `sqlite3_file` in size) and
/// `out_flags` is xOpen's out-pointer, null or valid.
pub(super) unsafe fn stand_in(
    file: *mut sys::sqlite3_file,
    name: &str,
    reason: String,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    FAILED.with(|f| *f.borrow_mut() = Some((PathBuf::from(name), reason)));
    // SAFETY: per this function's contract; SQLite calls these methods until xClose.
    unsafe {
        (*file).pMethods = &STAND_IN;
        if !out_flags.is_null() {
            *out_flags = flags;
        }
    }
    sys::SQLITE_OK
}

/// The reason the open of `db`'s main database failed on this thread, if it did.
pub(super) fn take_for(db: Option<PathBuf>) -> Option<String> {
    let db = db?;
    FAILED.with(|f| {
        let mut f = f.borrow_mut();
        if f.as_ref().is_some_and(|(name, _)| *name == db) {
            f.take().map(|(_, reason)| reason)
        } else {
            None
        }
    })
}

unsafe extern "C" fn close(file: *mut sys::sqlite3_file) -> c_int {
    guard(sys::SQLITE_OK, || {
        // SAFETY: SQLite passes the file object it opened; nothing else is held.
        unsafe { (*file).pMethods = std::ptr::null() };
        sys::SQLITE_OK
    })
}

unsafe extern "C" fn read(
    _file: *mut sys::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    _offset: i64,
) -> c_int {
    guard(sys::SQLITE_IOERR_READ, || {
        // A short read must zero the buffer: the file is empty.
        // SAFETY: SQLite's buffer holds `amt` bytes.
        unsafe { std::ptr::write_bytes(buf as *mut u8, 0, amt.max(0) as usize) };
        sys::SQLITE_IOERR_SHORT_READ
    })
}

unsafe extern "C" fn write(
    _file: *mut sys::sqlite3_file,
    _buf: *const c_void,
    _amt: c_int,
    _offset: i64,
) -> c_int {
    sys::SQLITE_CANTOPEN
}

unsafe extern "C" fn truncate(_file: *mut sys::sqlite3_file, _size: i64) -> c_int {
    sys::SQLITE_CANTOPEN
}

unsafe extern "C" fn sync(_file: *mut sys::sqlite3_file, _flags: c_int) -> c_int {
    sys::SQLITE_CANTOPEN
}

unsafe extern "C" fn file_size(_file: *mut sys::sqlite3_file, size: *mut i64) -> c_int {
    guard(sys::SQLITE_IOERR_FSTAT, || {
        // SAFETY: SQLite's out-pointer.
        unsafe { *size = 0 };
        sys::SQLITE_OK
    })
}

unsafe extern "C" fn lock(_file: *mut sys::sqlite3_file, _lock: c_int) -> c_int {
    sys::SQLITE_CANTOPEN
}

unsafe extern "C" fn unlock(_file: *mut sys::sqlite3_file, _lock: c_int) -> c_int {
    sys::SQLITE_OK
}

unsafe extern "C" fn check_reserved_lock(_file: *mut sys::sqlite3_file, out: *mut c_int) -> c_int {
    guard(sys::SQLITE_IOERR_CHECKRESERVEDLOCK, || {
        // SAFETY: SQLite's out-pointer.
        unsafe { *out = 0 };
        sys::SQLITE_OK
    })
}

unsafe extern "C" fn file_control(
    _file: *mut sys::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    sys::SQLITE_NOTFOUND
}

unsafe extern "C" fn sector_size(_file: *mut sys::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn device_characteristics(_file: *mut sys::sqlite3_file) -> c_int {
    0
}

/// Version 1: no shared memory, so SQLite never tries WAL on it.
static STAND_IN: sys::sqlite3_io_methods = sys::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_claimed_once_and_only_by_its_database() {
        let mut file = sys::sqlite3_file {
            pMethods: std::ptr::null(),
        };
        let mut out = 0;
        // SAFETY: a local file object and out-pointer.
        let rc = unsafe { stand_in(&mut file, "/d/app.db", "why".into(), 6, &mut out) };
        assert_eq!((rc, out), (sys::SQLITE_OK, 6));
        assert!(!file.pMethods.is_null());
        assert_eq!(take_for(Some(PathBuf::from("/d/other.db"))), None);
        assert_eq!(
            take_for(Some(PathBuf::from("/d/app.db"))),
            Some("why".into())
        );
        assert_eq!(take_for(Some(PathBuf::from("/d/app.db"))), None);
        let mut buf = [7u8; 8];
        // SAFETY: the stand-in's own methods on a local file and buffer.
        unsafe {
            let m = &*file.pMethods;
            assert_eq!(
                m.xRead.unwrap()(&mut file, buf.as_mut_ptr() as *mut c_void, 8, 0),
                sys::SQLITE_IOERR_SHORT_READ
            );
            assert_eq!(m.xLock.unwrap()(&mut file, 1), sys::SQLITE_CANTOPEN);
            assert_eq!(m.xClose.unwrap()(&mut file), sys::SQLITE_OK);
        }
        assert_eq!(buf, [0; 8]);
        assert!(file.pMethods.is_null());
    }
}
