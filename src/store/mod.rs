//! The object store seam: a small trait (put/get/list/delete with typed errors) and its
//! backends. It owns addressing objects by key; it must not know about LTX, WAL or SQLite.
//! Keys are always the S3-shaped `<prefix>/<level %04x>/<min>-<max>.ltx`; each backend maps
//! them onto its own layout (the file backend onto Litestream's `ltx/<level>/…` tree).

pub mod fs;
pub mod keys;
mod md5;
pub mod memory;
pub mod s3;
pub mod sigv4;

use std::fmt;

/// What went wrong talking to a store, typed so the uploader can decide to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    NotFound(String),
    PreconditionFailed(String),
    /// Credentials rejected; carries the server's code and message, never the secret.
    Auth(String),
    /// Worth retrying: timeouts, resets, 5xx, throttling, a full local disk that may drain.
    Transient(String),
    /// Retrying will not help: bad request, bad layout, corrupt object.
    Permanent(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound(k) => write!(f, "object not found: {k}"),
            StoreError::PreconditionFailed(k) => write!(f, "precondition failed: {k}"),
            StoreError::Auth(m) => write!(f, "access denied: {m}"),
            StoreError::Transient(m) => write!(f, "temporary store error: {m}"),
            StoreError::Permanent(m) => write!(f, "store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Last-modified time in ms since the epoch (S3 `LastModified`, file mtime, or the time
    /// of the memory store's put); 0 when the backend did not say.
    pub modified_ms: u64,
}

/// Request counts by billing class, kept by every backend so status can show them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    pub put: u64,
    pub get: u64,
    pub list: u64,
    pub delete: u64,
}

pub trait ObjectStore: Send + Sync {
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError>;
    /// Uploads a local file; backends that can stream or rename override it.
    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), StoreError> {
        let body = std::fs::read(path)
            .map_err(|e| StoreError::Permanent(format!("reading {}: {e}", path.display())))?;
        self.put(key, &body)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Bytes `[offset, offset+len)`, fewer at the end of the object.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError>;
    /// Every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes every key; `Ok` means none of them remains (backends whose bulk delete can
    /// report keys deleted that remain, like R2's DeleteObjects, verify and retry).
    fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        keys.iter().try_for_each(|k| self.delete(k))
    }
    /// The object and a version tag (the ETag) for [`ObjectStore::write_if`].
    fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        Err(StoreError::Permanent(format!(
            "{}: conditional writes are not supported (reading {key})",
            self.describe()
        )))
    }
    /// Compare-and-swap, for the lease that fences uploaders on several hosts: writes only
    /// if the object's version is `expected` (`None`: only if there is no such object), and
    /// returns the new version; otherwise [`StoreError::PreconditionFailed`].
    fn write_if(
        &self,
        key: &str,
        body: &[u8],
        expected: Option<&str>,
    ) -> Result<String, StoreError> {
        let _ = (body, expected);
        Err(StoreError::Permanent(format!(
            "{}: conditional writes are not supported (writing {key})",
            self.describe()
        )))
    }
    fn request_counts(&self) -> RequestCounts;
    /// Where this store points, for status and errors; never contains secrets.
    fn describe(&self) -> String;
}

/// Opens the backend a replica target names.
pub fn open(target: &crate::config::ReplicaTarget) -> Result<Box<dyn ObjectStore>, StoreError> {
    match target {
        crate::config::ReplicaTarget::File { dir } => Ok(Box::new(fs::DirStore::new(dir.clone()))),
        crate::config::ReplicaTarget::S3(t) => Ok(Box::new(s3::S3Store::new(t)?)),
    }
}

/// A shared store is a store (tests keep a handle to inspect what was uploaded).
impl<T: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<T> {
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        (**self).put(key, body)
    }
    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), StoreError> {
        (**self).put_file(key, path)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        (**self).get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        (**self).get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key)
    }
    fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        (**self).delete_many(keys)
    }
    fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        (**self).read_versioned(key)
    }
    fn write_if(
        &self,
        key: &str,
        body: &[u8],
        expected: Option<&str>,
    ) -> Result<String, StoreError> {
        (**self).write_if(key, body, expected)
    }
    fn request_counts(&self) -> RequestCounts {
        (**self).request_counts()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// One body of tests every backend must pass; public (hidden) so the integration tests can
/// run it against a real S3 server.
#[doc(hidden)]
pub mod contract {
    use super::*;

    pub fn run(store: &dyn ObjectStore) {
        let k1 = keys::s3_key("db", 0, 1, 1);
        let k2 = keys::s3_key("db", 0, 2, 3);
        let k9 = keys::s3_key("db", 9, 1, 3);
        assert!(matches!(store.get(&k1), Err(StoreError::NotFound(_))));
        assert!(store.list("db/").unwrap().is_empty());
        store.put(&k2, b"second").unwrap();
        store.put(&k1, b"first").unwrap();
        store.put(&k9, b"snapshot").unwrap();
        assert_eq!(store.get(&k1).unwrap(), b"first");
        assert_eq!(store.get_range(&k2, 1, 3).unwrap(), b"eco");
        assert_eq!(store.get_range(&k2, 4, 100).unwrap(), b"nd");
        let all: Vec<String> = store
            .list("db/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(all, vec![k1.clone(), k2.clone(), k9.clone()]);
        let l0: Vec<ObjectInfo> = store.list("db/0000/").unwrap();
        assert_eq!(l0.len(), 2);
        assert_eq!(l0[1].size, 6);
        store.put(&k1, b"overwritten").unwrap();
        assert_eq!(store.get(&k1).unwrap(), b"overwritten");
        store.delete(&k1).unwrap();
        store.delete(&k1).unwrap();
        assert!(matches!(store.get(&k1), Err(StoreError::NotFound(_))));
        assert_eq!(store.list("db/0000/").unwrap().len(), 1);
        assert!(store.list("other/").unwrap().is_empty());
        let listed = store.list("db/").unwrap();
        assert!(
            listed.iter().all(|o| o.modified_ms > 1_600_000_000_000),
            "{listed:?}"
        );
        let many: Vec<String> = (10..15).map(|t| keys::s3_key("db", 1, t, t)).collect();
        for k in &many {
            store.put(k, b"x").unwrap();
        }
        store.delete_many(&many).unwrap();
        store.delete_many(&many).unwrap();
        assert!(store.list("db/0001/").unwrap().is_empty());
        // Compare-and-swap: create only if absent, replace only at the version read.
        let lease = "db/lease";
        assert!(matches!(
            store.read_versioned(lease),
            Err(StoreError::NotFound(_))
        ));
        let v1 = store.write_if(lease, b"one", None).unwrap();
        assert!(matches!(
            store.write_if(lease, b"two", None),
            Err(StoreError::PreconditionFailed(_))
        ));
        let (body, seen) = store.read_versioned(lease).unwrap();
        assert_eq!((body.as_slice(), seen.as_str()), (&b"one"[..], v1.as_str()));
        let v2 = store.write_if(lease, b"two", Some(&v1)).unwrap();
        assert_ne!(v1, v2);
        assert!(matches!(
            store.write_if(lease, b"three", Some(&v1)),
            Err(StoreError::PreconditionFailed(_))
        ));
        assert_eq!(store.read_versioned(lease).unwrap(), (b"two".to_vec(), v2));
        store.delete(lease).unwrap();
        let counts = store.request_counts();
        assert!(counts.put >= 4 && counts.get >= 1 && counts.list >= 1 && counts.delete >= 1);
    }
}
