//! An in-memory object store for unit tests. It owns nothing but a map; it must not be used
//! by anything a user runs.

use super::{ObjectInfo, ObjectStore, RequestCounts, StoreError};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (Vec<u8>, u64)>>,
    counts: Mutex<RequestCounts>,
    /// When set, the modification time puts record (tests with an injected clock).
    pub clock_ms: Mutex<Option<u64>>,
    /// When set, every request fails with this error: simulates a bucket that is down.
    pub fail_with: Mutex<Option<StoreError>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    fn check(&self) -> Result<(), StoreError> {
        match &*self.fail_with.lock().unwrap() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
    /// What a bucket's age-based lifecycle rule does: removes every object last written
    /// before `cutoff_ms`, without a request of the client's. Returns how many went.
    pub fn expire_before(&self, cutoff_ms: u64) -> usize {
        let mut objects = self.objects.lock().unwrap();
        let before = objects.len();
        objects.retain(|_, (_, written)| *written >= cutoff_ms);
        before - objects.len()
    }
    /// Removes one object behind the client's back.
    pub fn remove(&self, key: &str) -> bool {
        self.objects.lock().unwrap().remove(key).is_some()
    }
}

impl ObjectStore for MemoryStore {
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        self.counts.lock().unwrap().put += 1;
        self.check()?;
        let now = self.clock_ms.lock().unwrap().unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        });
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_string(), (body.to_vec(), now));
        Ok(())
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.counts.lock().unwrap().get += 1;
        self.check()?;
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(body, _)| body.clone())
            .ok_or_else(|| StoreError::NotFound(key.to_string()))
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let all = self.get(key)?;
        let start = (offset as usize).min(all.len());
        let end = (offset.saturating_add(len) as usize).min(all.len());
        Ok(all[start..end].to_vec())
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.counts.lock().unwrap().list += 1;
        self.check()?;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (body, modified_ms))| ObjectInfo {
                key: k.clone(),
                size: body.len() as u64,
                modified_ms: *modified_ms,
            })
            .collect())
    }
    fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        let body = self.get(key)?;
        Ok((body.clone(), super::content_version(&body)))
    }
    fn write_if(
        &self,
        key: &str,
        body: &[u8],
        expected: Option<&str>,
    ) -> Result<String, StoreError> {
        self.counts.lock().unwrap().put += 1;
        self.check()?;
        let mut objects = self.objects.lock().unwrap();
        let current = objects.get(key).map(|(b, _)| super::content_version(b));
        if current.as_deref() != expected {
            return Err(StoreError::PreconditionFailed(key.to_string()));
        }
        let now = self.clock_ms.lock().unwrap().unwrap_or(0);
        objects.insert(key.to_string(), (body.to_vec(), now));
        Ok(super::content_version(body))
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.counts.lock().unwrap().delete += 1;
        self.check()?;
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
    fn request_counts(&self) -> RequestCounts {
        *self.counts.lock().unwrap()
    }
    fn describe(&self) -> String {
        "memory://".into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_passes_the_contract() {
        super::super::contract::run(&super::MemoryStore::new());
    }
}
