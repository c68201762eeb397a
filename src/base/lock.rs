//! The one way the crate takes a mutex: a panic on another thread that held it must not stop
//! replication (every guarded state here stays consistent between statements), so a poisoned
//! lock is taken as it is.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Locks `m` as [`lock`] does, trying for a while first (up to `spins` tries) instead of
/// going to sleep at once: for a lock whose other holder keeps it a microsecond or two, a
/// sleep and a wake-up cost the waiter far more than the wait.
pub fn lock_spinning<T: ?Sized>(m: &Mutex<T>, spins: u32) -> MutexGuard<'_, T> {
    for _ in 0..spins {
        match m.try_lock() {
            Ok(g) => return g,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    lock(m)
}
