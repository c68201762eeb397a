//! The one way the crate takes a mutex: a panic on another thread that held it must not stop
//! replication (every guarded state here stays consistent between statements), so a poisoned
//! lock is taken as it is.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
