//! The replica's lease as this uploader holds it: renewed before writes once half of it is
//! gone, taken over when absent or expired, stood back from while another uploader's is
//! valid, handed back when the last connection closes. It owns the version and expiry of
//! the lease it wrote; the lease's format and the take-or-wait rule are `crate::lease`'s.
//! It must not write any object but the lease.

use crate::error::Error;
use crate::lease::{self, Decision, Lease};
use crate::store::{ObjectStore, StoreError};
use std::time::Duration;

pub(super) struct Leaser {
    /// The lease object's key.
    key: String,
    /// This uploader's name in the lease.
    owner_id: String,
    /// The version (ETag) of the lease it last wrote, and until when that lease lets it
    /// write.
    version: Option<String>,
    until: u64,
    ttl_ms: u64,
    /// The store cannot do conditional writes: replicate without a lease (said once).
    unsupported: bool,
    /// The database's name, for the log.
    db_name: String,
}

impl Leaser {
    /// The lease beside the level folders under `prefix`, held under `owner_id`.
    pub fn new(prefix: &str, owner_id: String, db_name: &str, ttl: Duration) -> Leaser {
        Leaser {
            key: lease::key(prefix),
            owner_id,
            version: None,
            until: 0,
            ttl_ms: (ttl.as_millis() as u64).max(1),
            unsupported: false,
            db_name: db_name.to_string(),
        }
    }

    /// Makes sure this uploader holds the replica's lease for a while longer before it
    /// writes to the replica: renews it (conditionally on the version it wrote) once half
    /// of it is gone, takes it over when it is absent or expired, and refuses with
    /// [`Error::LeaseHeld`] while another uploader's is valid.
    pub fn hold(&mut self, store: &dyn ObjectStore, now: u64) -> Result<(), Error> {
        if self.unsupported || self.until > now + self.ttl_ms / 2 {
            return Ok(());
        }
        let ours = Lease {
            owner: self.owner_id.clone(),
            expires_ms: now + self.ttl_ms,
        }
        .encode();
        let version = match self.renew(store, &ours)? {
            Some(v) => v,
            None => self.take(store, &ours, now)?,
        };
        crate::fault::point("lease.after_write");
        self.version = Some(version);
        self.until = now + self.ttl_ms;
        Ok(())
    }

    /// The requests [`Leaser::hold`] would make at `now`: none while the lease is fresh,
    /// one to renew it, two to read and take it.
    pub fn requests_due(&self, now: u64) -> u32 {
        if self.unsupported || self.until > now + self.ttl_ms / 2 {
            0
        } else if self.version.is_some() {
            1
        } else {
            2
        }
    }

    /// Rewrites the lease this uploader wrote last; `None` when it wrote none or the lease
    /// changed since (then it has to be read).
    fn renew(&mut self, store: &dyn ObjectStore, ours: &[u8]) -> Result<Option<String>, Error> {
        let Some(v) = self.version.as_deref() else {
            return Ok(None);
        };
        match store.write_if(&self.key, ours, Some(v)) {
            Ok(v) => Ok(Some(v)),
            // AWS answers a conditional write on a key that is gone (a bucket lifecycle rule
            // expired the lease) with 404, where others say 412: either way, read it again.
            Err(StoreError::PreconditionFailed(_) | StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// Reads the lease and writes `ours` over it unless another uploader's is valid.
    fn take(&mut self, store: &dyn ObjectStore, ours: &[u8], now: u64) -> Result<String, Error> {
        let (found, version) = match store.read_versioned(&self.key) {
            Ok((body, v)) => (Some(body), Some(v)),
            Err(StoreError::NotFound(_)) => (None, None),
            Err(e) => return Err(self.store_error(e)),
        };
        match lease::decide_with_ttl(found.as_deref(), &self.owner_id, now, self.ttl_ms) {
            Decision::Held { owner, until } => {
                self.version = None;
                self.until = 0;
                Err(Error::LeaseHeld(owner, until))
            }
            Decision::Take => match store.write_if(&self.key, ours, version.as_deref()) {
                Ok(v) => Ok(v),
                // Another uploader wrote it between our read and write.
                Err(StoreError::PreconditionFailed(_)) => Err(Error::LeaseHeld(
                    "another uploader, just now".into(),
                    now + self.ttl_ms,
                )),
                Err(e) => Err(self.store_error(e)),
            },
        }
    }

    /// Writes an expired lease over ours, so that another uploader can take over at once.
    pub fn release(&mut self, store: &dyn ObjectStore) -> Result<(), Error> {
        let Some(version) = self.version.take() else {
            return Ok(());
        };
        self.until = 0;
        let expired = Lease {
            owner: self.owner_id.clone(),
            expires_ms: 0,
        }
        .encode();
        match store.write_if(&self.key, &expired, Some(&version)) {
            Ok(_) | Err(StoreError::PreconditionFailed(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A store that cannot do conditional writes replicates without a lease (said once);
    /// other errors are the store's.
    fn store_error(&mut self, e: StoreError) -> Error {
        if matches!(e, StoreError::Unsupported(_)) {
            self.unsupported = true;
            crate::base::log::notice(&format!(
                "{}: the store cannot do conditional writes ({e}); replicating without a lease, so two hosts must not share this replica",
                self.db_name
            ));
        }
        Error::Store(e)
    }
}

/// This machine's name, for the lease (`/proc/sys/kernel/hostname`, else `HOSTNAME`).
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}
