//! Promotion: a follower's copy becomes the database that writes to the replica, once the
//! old writer's lease has expired. The copy catches up with the replica's newest file
//! first, so the new writer continues the same txids and history without a gap; a writer
//! still holding the lease refuses it (the old writer, if it comes back, finds the lease
//! taken and stands by).

use super::engine::Follower;
use crate::base::lock::lock;
use crate::error::Error;
use crate::lease::{self, Decision};
use crate::restore::Base;
use crate::store::{ObjectStore, StoreError};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where a promoted copy stands: the replica's newest txid and the database it holds, and
/// the replica to write to (its URL as given, which may carry secrets: never shown).
pub struct Promoted {
    pub txid: u64,
    pub base: Base,
    pub follow_url: String,
}

/// Promotes the copy at `path` at `now` (ms): catches it up, checks the replica's lease,
/// stops following and switches the copy to WAL mode. The caller then makes it replicate.
pub fn promote(path: &Path, now: u64) -> Result<Promoted, Error> {
    let f = find(path)?;
    let step = lock(&f.step_lock);
    if f.stopped.load(Ordering::Acquire) {
        return Err(Error::InvalidArgument(format!(
            "replica_promote: {} is being promoted already",
            path.display()
        )));
    }
    if !f.owns()? {
        return Err(Error::Unsupported(format!(
            "replica_promote: another process polls {} for its follower: promote it there",
            path.display()
        )));
    }
    let newest = f.catch_up()?;
    lease_expired(f.source.store.as_ref(), &f.source.prefix, now)?;
    let held = f.held();
    // Switched while the poll thread waits on the step lock; stopped only once switched,
    // so a failed switch leaves the follower following.
    f.hooks.to_wal(path)?;
    f.stopped.store(true, Ordering::Release);
    drop(step);
    lock(&super::FOLLOWERS).retain(|g| !Arc::ptr_eq(g, &f));
    let _ = std::fs::remove_dir_all(&f.dir_path);
    crate::base::log::notice(&format!(
        "{} was promoted: it no longer follows {} and continues it as the writer after txid {newest}",
        path.display(),
        f.source.replica_url
    ));
    Ok(Promoted {
        txid: held.txid,
        base: held.base,
        follow_url: f.source.follow_url.clone(),
    })
}

/// The replica URL the copy at `path` follows, as given (never shown: it may carry
/// secrets).
pub fn follow_url_of(path: &Path) -> Result<String, Error> {
    Ok(find(path)?.source.follow_url.clone())
}

fn find(path: &Path) -> Result<Arc<Follower>, Error> {
    lock(&super::FOLLOWERS)
        .iter()
        .find(|f| f.path == path)
        .cloned()
        .ok_or_else(|| {
            Error::NotReplicated(format!(
                "replica_promote: {} is not a follower's copy in this process (open it with ?replica_follow=URL)",
                path.display()
            ))
        })
}

/// Refuses while another uploader's lease on the replica is still valid at `now`.
fn lease_expired(store: &dyn ObjectStore, prefix: &str, now: u64) -> Result<(), Error> {
    let found = match store.get_bounded(&lease::key(prefix), 4096) {
        Ok(body) => Some(body),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    match lease::decide(found.as_deref(), "", now) {
        Decision::Take => Ok(()),
        Decision::Held { owner, until } => Err(Error::Unsupported(format!(
            "replica_promote: the replica's writer ({owner}) holds its lease for {} ms more: \
             it may still be writing; promote once the lease has expired",
            until.saturating_sub(now)
        ))),
    }
}
