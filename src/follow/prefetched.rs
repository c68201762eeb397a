//! The bodies of one batch of LTX files, downloaded before the follower takes SQLite's lock,
//! served to the restore's applier as a store: the apply under the lock reads memory, never
//! the network. Read-only; bounded by the batch (`plan::BATCH_BYTES`).

use crate::store::{ObjectInfo, ObjectStore, RequestCounts, StoreError};
use std::collections::HashMap;

pub(super) struct Prefetched(pub(super) HashMap<String, Vec<u8>>);

impl Prefetched {
    fn body(&self, key: &str) -> Result<&[u8], StoreError> {
        self.0
            .get(key)
            .map(Vec::as_slice)
            .ok_or_else(|| StoreError::NotFound(format!("{key} was not downloaded")))
    }
}

impl ObjectStore for Prefetched {
    fn put(&self, key: &str, _: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::Permanent(format!(
            "{key}: a follower writes nothing"
        )))
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.body(key).map(<[u8]>::to_vec)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let body = self.body(key)?;
        let start = (offset as usize).min(body.len());
        let end = start.saturating_add(len as usize).min(body.len());
        Ok(body[start..end].to_vec())
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out: Vec<ObjectInfo> = (self.0.iter())
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo {
                key: k.clone(),
                size: v.len() as u64,
                modified_ms: 0,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        Err(StoreError::Permanent(format!(
            "{key}: a follower deletes nothing"
        )))
    }
    fn request_counts(&self) -> RequestCounts {
        RequestCounts::default()
    }
    fn describe(&self) -> String {
        "the downloaded batch".into()
    }
}
