//! Forks: a forked child has only the thread that forked, so any lock another thread of the
//! extension held at that moment stays held in the child for ever. The handlers installed
//! with `pthread_atfork` mark the child, give up its share of the parent's spool locks, and
//! hold across the fork the locks the extension's own threads take and a child takes again:
//! the database registry, and SQLite's static mutexes those threads take when they open a
//! file through the base VFS or allocate (its allocator's, the VFS list's, the unix VFS's).

use libsqlite3_sys as sys;
use std::ffi::{c_char, c_int};

extern "C" {
    // From the C library std already links; the `libc` crate is not needed for one symbol.
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> c_int;
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    fn close(fd: c_int) -> c_int;
}

/// `O_RDWR | O_CLOEXEC` on Linux (the only platform the extension is built for).
const O_RDWR: c_int = 0o2;
const O_CLOEXEC: c_int = 0o2000000;

/// SQLite's static mutexes held across a fork, in the order SQLite itself nests them (the
/// main one around opening a file, the unix VFS's around its inode list, the allocator's
/// innermost).
const SQLITE_MUTEXES: [c_int; 3] = [
    sys::SQLITE_MUTEX_STATIC_MAIN,
    sys::SQLITE_MUTEX_STATIC_VFS1,
    sys::SQLITE_MUTEX_STATIC_MEM,
];

/// Enters (`enter`) or leaves SQLite's static mutexes of [`SQLITE_MUTEXES`], in their order
/// or the reverse. Nothing without the API (not loaded into a host) or in a build of SQLite
/// without mutexes (`sqlite3_mutex_alloc` gives none).
fn sqlite_mutexes(enter: bool) {
    let Some(api) = super::api() else { return };
    let (Some(alloc), Some(enter_fn), Some(leave_fn)) =
        (api.mutex_alloc, api.mutex_enter, api.mutex_leave)
    else {
        return;
    };
    let mut order = SQLITE_MUTEXES;
    if !enter {
        order.reverse();
    }
    for id in order {
        // SAFETY: a static mutex id: SQLite returns its own static mutex (or null without
        // mutexes), allocating nothing.
        let m = unsafe { alloc(id) };
        if m.is_null() {
            continue;
        }
        // SAFETY: a static mutex of SQLite's, entered by this thread before the fork and
        // left by the same thread after it (in the parent, or in the child where it is the
        // only thread).
        unsafe {
            match enter {
                true => enter_fn(m),
                false => leave_fn(m),
            }
        }
    }
}

/// Runs on the thread that forks, just before `fork()`: takes the locks the extension's
/// other threads take and a child takes again (see the module docs), the registry first
/// (who holds it may take SQLite's mutexes; SQLite never calls back into the registry).
unsafe extern "C" fn fork_prepare() {
    super::guard((), || {
        crate::database::hold_registry_for_fork();
        sqlite_mutexes(true);
    });
}

/// Runs in the parent just after `fork()`: lets go of what [`fork_prepare`] took.
unsafe extern "C" fn fork_parent() {
    super::guard((), release_after_fork);
}

fn release_after_fork() {
    sqlite_mutexes(false);
    crate::database::release_registry_after_fork();
}

/// Runs in a forked child before `fork()` returns there: marks the child, which then
/// leaves the parent's in-memory state, threads and connections alone, lets go of what
/// [`fork_prepare`] took, and gives up its share of the parent's spool locks, which would
/// otherwise stay locked for as long as the child outlives the parent. Only atomics,
/// thread-local cells, unlocking and `open`/`dup3`/`close`.
unsafe extern "C" fn fork_child() {
    // No guard(): catch_unwind is not async-signal-safe, and none of this can panic.
    crate::database::on_fork_child();
    release_after_fork();
    crate::shim::forget_this_threads_write_lock();
    // Opened here rather than kept: a descriptor number kept from the load may name
    // something else by now in a process that closed and reused its descriptors.
    // SAFETY: a NUL-terminated literal path and plain flags.
    let null = unsafe { open(c"/dev/null".as_ptr(), O_RDWR | O_CLOEXEC) };
    if null >= 0 {
        crate::base::child_release::each_held(|fd| {
            // SAFETY: `fd` is a spool lock this process held at the fork (registered until
            // just before it is closed) and `null` was just opened; dup3 swaps what `fd`
            // names without closing the parent's lock.
            unsafe { dup3(null, fd, O_CLOEXEC) };
        });
        // SAFETY: our own descriptor, opened above.
        unsafe { close(null) };
    }
    // The child holds none of them now: a fork of the child must not touch those numbers.
    crate::base::child_release::forget_all();
}

pub(super) fn install_fork_handler() {
    // SAFETY: registering functions that live as long as the process (the library stays
    // loaded: init returns SQLITE_OK_LOAD_PERMANENTLY); the child's only touches atomics,
    // descriptors and the locks the forking thread took before the fork.
    let rc = unsafe { pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    if rc == 0 {
        crate::database::fork_handler_installed();
    } else {
        crate::base::log::error(&format!(
            "pthread_atfork failed ({rc}); forked children are recognised by their process id"
        ));
    }
}
