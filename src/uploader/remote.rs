//! The replica as this uploader sees it: the store and the keys under its prefix, the lease
//! that fences writes to it, the files it holds (from one LIST at start-up, then from this
//! uploader's own uploads and deletes) with their local copies, and where its chain
//! stands. It owns reading the listing; it must not decide what to upload (the jobs do).

use super::cache::Cache;
use super::known::{file_id, KnownFiles};
use super::leaser::{host_name, Leaser};
use crate::database::{Counters, Dest};
use crate::error::Error;
use crate::lifecycle::FileId;
use crate::ltx::{self, Header};
use crate::restore::LtxObject;
use crate::store::{keys, ObjectInfo, ObjectStore, StoreError};
use std::path::Path;

pub(super) struct Replica {
    store: Result<Box<dyn ObjectStore>, String>,
    prefix: String,
    lease: Leaser,
    pub cache: Cache,
    pub known: KnownFiles,
    /// Whether `known` is from a listing of this uploader; cleared when the replica turns
    /// out to have changed behind its back (then it is listed again).
    pub listed: bool,
    /// Next txid when the replica's own state does not follow from the spool's.
    pub max_txid: u64,
    /// When the newest snapshot was taken (its header holds the time of its state).
    pub last_snapshot_at: u64,
    /// The listing found a Litestream 0.3 replica (`generations/`) at the same place.
    pub holds_litestream_03: bool,
    /// In an encrypted replica, the files the listing found sealed to other recipients than
    /// the configured ones (until retention removes them); `None` in a plaintext replica.
    sealed_otherwise: Option<std::collections::BTreeSet<FileId>>,
}

impl Replica {
    pub fn new(dest: &Dest, store: Result<Box<dyn ObjectStore>, String>) -> Replica {
        let prefix = match &dest.config().target {
            crate::config::ReplicaTarget::S3(t) => t.prefix.clone(),
            crate::config::ReplicaTarget::File { .. } => String::new(),
        };
        let owner_id = crate::lease::owner_id(&host_name(), &dest.db.spool.instance_id());
        Replica {
            store,
            lease: Leaser::new(&prefix, owner_id, &dest.db.name, dest.config().lease_ttl),
            prefix,
            cache: Cache::new(
                dest.dir(),
                dest.config().lifecycle.max_level(),
                dest.db.spool.modes(),
            ),
            known: KnownFiles::default(),
            listed: false,
            max_txid: 0,
            last_snapshot_at: 0,
            holds_litestream_03: false,
            sealed_otherwise: None,
        }
    }

    pub fn store(&self) -> Result<&dyn ObjectStore, Error> {
        opened(&self.store)
    }

    pub fn key(&self, id: FileId) -> String {
        keys::s3_key(&self.prefix, id.level, id.min_txid, id.max_txid)
    }

    /// See [`Leaser::hold`]: called before every write to the replica.
    pub fn hold_lease(&mut self, now: u64) -> Result<(), Error> {
        self.lease.hold(opened(&self.store)?, now)
    }

    /// The requests one upload would make at `now`: the object, and the lease's if due.
    pub fn upload_requests(&self, now: u64) -> u32 {
        1 + self.lease.requests_due(now)
    }

    pub fn release_lease(&mut self) -> Result<(), Error> {
        self.lease.release(opened(&self.store)?)
    }

    /// Uploads `file` as `id` (the caller holds the lease).
    pub fn put_file(&self, id: FileId, file: &Path) -> Result<(), Error> {
        Ok(self.store()?.put_file(&self.key(id), file)?)
    }

    /// What the store has made so far (nothing without a store).
    pub fn request_counts(&self) -> crate::store::RequestCounts {
        self.store
            .as_ref()
            .map(|s| s.request_counts())
            .unwrap_or_default()
    }

    /// Copies the store's request counts into the status counters.
    pub fn count_requests(&self, c: &mut Counters) {
        if let Ok(store) = &self.store {
            c.requests = store.request_counts();
        }
    }

    /// Why the newest state the replica holds cannot be restored from its newest snapshot
    /// (a file the chain needs is gone); `None` when it can, or when it holds nothing.
    pub fn unreachable_end(&self) -> Option<String> {
        let objects: Vec<LtxObject> = self
            .known
            .all()
            .iter()
            .map(|f| LtxObject {
                key: self.key(f.id),
                level: f.id.level,
                min_txid: f.id.min_txid,
                max_txid: f.id.max_txid,
                size: f.size,
                modified_ms: f.timestamp_ms,
            })
            .collect();
        if objects.is_empty() {
            return None;
        }
        crate::restore::plan(&objects, None)
            .err()
            .map(|e| e.to_string())
    }

    /// How many files the replica still holds that were sealed to other recipients than
    /// the configured ones; `None` in a plaintext replica.
    pub fn sealed_otherwise_count(&self) -> Option<u64> {
        let stale = self.sealed_otherwise.as_ref()?;
        Some(
            stale
                .iter()
                .filter(|id| self.known.get(**id).is_some())
                .count() as u64,
        )
    }

    /// Start-up: one LIST to learn the replica's files, its highest txid and when its
    /// newest snapshot was taken; local copies it no longer needs are dropped.
    pub fn list(&mut self, now: u64) -> Result<(), Error> {
        let store = self.store()?;
        let list_prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let objects = store.list(&list_prefix)?;
        let remote_max = objects
            .iter()
            .filter_map(|o| o.key.rsplit('/').next().and_then(keys::parse_ltx_filename))
            .map(|(_, max)| max)
            .max()
            .unwrap_or(0);
        let holds_03 = objects.iter().any(|o| {
            o.key
                .get(list_prefix.len()..)
                .is_some_and(|k| k.starts_with("generations/"))
        });
        let (known, mut mismatch) = self.known_from(store, &objects, now)?;
        let sealed_otherwise = store.sealed().then(|| {
            let (stale, plaintext) = self.sealed_otherwise_in(store, &known);
            mismatch = mismatch.take().or(plaintext);
            stale
        });
        if let Some(m) = mismatch {
            return Err(StoreError::Sealing(format!(
                "{m}: the replica's encryption does not match this database's `age:` keys; not uploading over it (restore it with its keys, or give the replica another location)"
            ))
            .into());
        }
        self.last_snapshot_at = self.newest_snapshot_time(&objects, &known, now);
        self.sealed_otherwise = sealed_otherwise;
        self.known = known;
        self.max_txid = remote_max;
        self.holds_litestream_03 = holds_03;
        self.cache.prune(&self.known);
        Ok(())
    }

    /// In an encrypted replica, the files sealed to other recipients than the configured
    /// ones (a header each: one small ranged GET per file, at start-up only; a header that
    /// cannot be read counts), and the first file that is no age file at all.
    fn sealed_otherwise_in(
        &self,
        store: &dyn ObjectStore,
        known: &KnownFiles,
    ) -> (std::collections::BTreeSet<FileId>, Option<String>) {
        let mut plaintext = None;
        let stale = known
            .all()
            .iter()
            .map(|f| f.id)
            .filter(|id| match store.sealed_otherwise(&self.key(*id)) {
                Ok(otherwise) => otherwise,
                Err(StoreError::Sealing(m)) => {
                    plaintext.get_or_insert(m);
                    true
                }
                Err(_) => true,
            })
            .collect();
        (stale, plaintext)
    }

    /// The LTX files of a listing. Snapshot times decide retention: they are read from the
    /// LTX headers (a few small ranged GETs at start-up; one that fails for now fails the
    /// listing, to be retried); the other levels go by the object's modified time. Also the
    /// first snapshot whose encryption does not match the store's keys (the uploader must
    /// not write over such a replica).
    fn known_from(
        &self,
        store: &dyn ObjectStore,
        objects: &[ObjectInfo],
        now: u64,
    ) -> Result<(KnownFiles, Option<String>), Error> {
        let mut known = KnownFiles::default();
        let mut mismatch = None;
        for o in objects {
            let Some((level, min_txid, max_txid)) = keys::parse_s3_key(&self.prefix, &o.key) else {
                continue;
            };
            let timestamp_ms = if level == keys::SNAPSHOT_LEVEL {
                let header = match store.get_range(&o.key, 0, ltx::HEADER_SIZE as u64) {
                    Err(StoreError::Sealing(m)) => Err(m),
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Ok(b) => match Header::decode(&b) {
                        Err(e @ ltx::LtxError::Encrypted) => Err(format!("{}: {e}", o.key)),
                        h => Ok(h.ok()),
                    },
                    Err(_) => Ok(None),
                };
                match header {
                    Ok(h) => h.map_or(o.modified_ms, |h| h.timestamp_ms),
                    Err(m) => {
                        mismatch.get_or_insert(m);
                        o.modified_ms
                    }
                }
            } else {
                o.modified_ms.min(now) // a store clock ahead of ours must not delay retention
            };
            known.insert(file_id(level, min_txid, max_txid), timestamp_ms, o.size);
        }
        Ok((known, mismatch))
    }

    /// When the newest snapshot was taken: its object's time (a scheduled snapshot's header
    /// holds the time of its state, from before the boundary that made it due); 0 for none.
    fn newest_snapshot_time(&self, objects: &[ObjectInfo], known: &KnownFiles, now: u64) -> u64 {
        let newest_snapshot = objects
            .iter()
            .filter_map(|o| Some((keys::parse_s3_key(&self.prefix, &o.key)?, o.modified_ms)))
            .filter(|((level, _, _), _)| *level == keys::SNAPSHOT_LEVEL)
            .max_by_key(|((_, _, max), _)| *max);
        match newest_snapshot {
            Some(((level, min_txid, max_txid), modified_ms)) => {
                let header_time = known
                    .get(file_id(level, min_txid, max_txid))
                    .map_or(0, |f| f.timestamp_ms);
                modified_ms.min(now).max(header_time)
            }
            None => 0,
        }
    }
}

/// The store, or why it could not be opened.
fn opened(store: &Result<Box<dyn ObjectStore>, String>) -> Result<&dyn ObjectStore, Error> {
    store.as_deref().map_err(|e| Error::Unsupported(e.clone()))
}
