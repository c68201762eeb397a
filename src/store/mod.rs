//! The object store seam: a small trait (put/get/list/delete with typed errors) and its
//! backends. It owns addressing objects by key; it must not know about LTX, WAL or SQLite.
//! Keys are always the S3-shaped `<prefix>/<level %04x>/<min>-<max>.ltx`; each backend maps
//! them onto its own layout (the file backend onto Litestream's `ltx/<level>/…` tree).

#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod contract;
pub mod fs;
pub mod keys;
mod md5;
#[cfg(test)]
pub mod memory;
pub mod s3;
pub mod sealed;
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
    /// An object's encryption does not match the replica's keys: a plaintext object where
    /// an age file belongs, or an age file none of the identities opens. Permanent.
    Sealing(String),
    /// The store cannot do what was asked (conditional writes, or a server that answers
    /// `NotImplemented`), so the caller can do without it. Shown, and retried, as the error
    /// it was reported as.
    Unsupported(Box<StoreError>),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound(k) => write!(f, "object not found: {k}"),
            StoreError::PreconditionFailed(k) => write!(f, "precondition failed: {k}"),
            StoreError::Auth(m) => write!(f, "access denied: {m}"),
            StoreError::Transient(m) => write!(f, "temporary store error: {m}"),
            StoreError::Permanent(m) => write!(f, "store error: {m}"),
            StoreError::Sealing(m) => write!(f, "{m}"),
            StoreError::Unsupported(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Transient(_) => true,
            StoreError::Unsupported(e) => e.is_transient(),
            _ => false,
        }
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
    /// The whole object, which a listing said is `max_len` bytes: a longer one is refused
    /// with an error (backends never read past `max_len`), so a bucket cannot hand back more
    /// than it listed. The default, for stores held in memory, checks after reading.
    fn get_bounded(&self, key: &str, max_len: u64) -> Result<Vec<u8>, StoreError> {
        let body = self.get(key)?;
        if body.len() as u64 > max_len {
            return Err(longer_than_listed(key, max_len));
        }
        Ok(body)
    }
    /// Bytes `[offset, offset+len)`, fewer at the end of the object.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError>;
    /// Every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    /// The length of what [`ObjectStore::get`] returns for a listed object: its listed size,
    /// except in a store that transforms objects (the sealed store reads the header).
    fn content_len(&self, info: &ObjectInfo) -> Result<u64, StoreError> {
        Ok(info.size)
    }
    /// Whether LTX objects are sealed (an encrypted replica): their listed sizes are not
    /// their contents' (see [`ObjectStore::content_len`]).
    fn sealed(&self) -> bool {
        false
    }
    /// Whether a sealed object was sealed to other recipients than the store's now (its
    /// header's label, a ranged GET unless cached); `false` in a store that does not seal.
    fn sealed_otherwise(&self, key: &str) -> Result<bool, StoreError> {
        let _ = key;
        Ok(false)
    }
    /// Deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes every key; `Ok` means none of them remains (backends whose bulk delete can
    /// report keys deleted that remain, like R2's DeleteObjects, verify and retry).
    fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        keys.iter().try_for_each(|k| self.delete(k))
    }
    /// The object and a version tag (the ETag) for [`ObjectStore::write_if`].
    fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        Err(StoreError::Unsupported(Box::new(StoreError::Permanent(
            format!(
                "{}: conditional writes are not supported (reading {key})",
                self.describe()
            ),
        ))))
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
        Err(StoreError::Unsupported(Box::new(StoreError::Permanent(
            format!(
                "{}: conditional writes are not supported (writing {key})",
                self.describe()
            ),
        ))))
    }
    fn request_counts(&self) -> RequestCounts;
    /// Where this store points, for status and errors; never contains secrets.
    fn describe(&self) -> String;
}

/// The error of an object longer than its listing said: permanent, since asking again gets
/// the same object.
pub(crate) fn longer_than_listed(key: &str, listed: u64) -> StoreError {
    StoreError::Permanent(format!(
        "{key}: the object is longer than the {listed} bytes its listing gave (refused)"
    ))
}

/// Opens the backend a replica target names, sealing LTX objects when `age` is given.
pub fn open(
    target: &crate::config::ReplicaTarget,
    age: Option<&crate::config::AgeConfig>,
) -> Result<Box<dyn ObjectStore>, StoreError> {
    let store: Box<dyn ObjectStore> = match target {
        crate::config::ReplicaTarget::File { dir } => Box::new(fs::DirStore::new(dir.clone())),
        crate::config::ReplicaTarget::S3(t) => Box::new(s3::S3Store::new(t)?),
    };
    seal_if(store, age)
}

/// [`open`], for a caller that blocks an application: an S3 endpoint that does not answer
/// fails its request after one connect or read timeout (see `S3Store::failing_fast`).
pub fn open_failing_fast(
    target: &crate::config::ReplicaTarget,
    age: Option<&crate::config::AgeConfig>,
) -> Result<Box<dyn ObjectStore>, StoreError> {
    match target {
        crate::config::ReplicaTarget::S3(t) => {
            seal_if(Box::new(s3::S3Store::new(t)?.failing_fast()), age)
        }
        other => open(other, age),
    }
}

fn seal_if(
    store: Box<dyn ObjectStore>,
    age: Option<&crate::config::AgeConfig>,
) -> Result<Box<dyn ObjectStore>, StoreError> {
    match age {
        None => Ok(store),
        Some(age) => {
            let keys = sealed::keys_of(age)?;
            Ok(Box::new(sealed::SealedStore::new(
                std::sync::Arc::<dyn ObjectStore>::from(store),
                keys,
            )))
        }
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
    fn get_bounded(&self, key: &str, max_len: u64) -> Result<Vec<u8>, StoreError> {
        (**self).get_bounded(key, max_len)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        (**self).get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        (**self).list(prefix)
    }
    fn content_len(&self, info: &ObjectInfo) -> Result<u64, StoreError> {
        (**self).content_len(info)
    }
    fn sealed(&self) -> bool {
        (**self).sealed()
    }
    fn sealed_otherwise(&self, key: &str) -> Result<bool, StoreError> {
        (**self).sealed_otherwise(key)
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

/// A version tag that changes with the contents (a CRC-64 of them), as an ETag does: what
/// conditional writes compare in stores without ETags of their own.
pub(crate) fn content_version(body: &[u8]) -> String {
    format!("{:016x}{:08x}", crate::ltx::crc64(body), body.len())
}
