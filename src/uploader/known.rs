//! The replica's LTX files as this uploader knows them: listed once at start-up, then kept
//! up to date from its own uploads and deletes, so that the steady state needs no LIST. It
//! owns that map; it must not talk to the store.

use crate::lifecycle::{FileId, KnownFile};
use crate::store::keys;
use std::collections::BTreeMap;

pub(super) fn file_id(level: u8, min_txid: u64, max_txid: u64) -> FileId {
    FileId {
        level,
        min_txid,
        max_txid,
    }
}

#[derive(Default)]
pub(super) struct KnownFiles {
    files: BTreeMap<FileId, KnownFile>,
}

impl KnownFiles {
    /// Records a file the replica holds (uploaded, or listed).
    pub fn insert(&mut self, id: FileId, timestamp_ms: u64, size: u64) {
        self.files.insert(
            id,
            KnownFile {
                id,
                timestamp_ms,
                size,
            },
        );
    }

    pub fn remove(&mut self, id: FileId) {
        self.files.remove(&id);
    }

    pub fn contains(&self, id: FileId) -> bool {
        self.files.contains_key(&id)
    }

    pub fn get(&self, id: FileId) -> Option<&KnownFile> {
        self.files.get(&id)
    }

    /// Listed files carry the object's modified time until their header is read.
    pub fn set_timestamp(&mut self, id: FileId, timestamp_ms: u64) {
        if let Some(k) = self.files.get_mut(&id) {
            k.timestamp_ms = timestamp_ms;
        }
    }

    pub fn all(&self) -> Vec<KnownFile> {
        self.files.values().copied().collect()
    }

    /// The highest txid a file of `level` ends at; 0 when there is none.
    pub fn level_max(&self, level: u8) -> u64 {
        self.files
            .keys()
            .filter(|id| id.level == level)
            .map(|id| id.max_txid)
            .max()
            .unwrap_or(0)
    }

    /// The time of the state at `txid`: that of the newest file (not a snapshot) ending
    /// there.
    pub fn state_time(&self, txid: u64) -> Option<u64> {
        self.files
            .values()
            .filter(|f| f.id.max_txid == txid && f.id.level != keys::SNAPSHOT_LEVEL)
            .map(|f| f.timestamp_ms)
            .max()
    }
}
