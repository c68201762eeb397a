//! An encrypted replica's store: wraps a backend so every LTX object is written as an age
//! file and read back as plaintext, which leaves the uploader, compaction, restore and
//! drills unchanged. Listings keep the sealed sizes; [`ObjectStore::content_len`] gives the
//! plaintext ones from each object's header. Objects that are not LTX files (the lease) stay
//! as they are: they carry no page.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use super::{ObjectInfo, ObjectStore, RequestCounts, StoreError};
use crate::seal::{self, Keys, SealError};

/// How many objects' headers are remembered (a few hundred bytes each), so the ranged GETs
/// of one object's pieces read its header once.
const HEAD_CACHE: usize = 1024;
/// The first GET of an object's header: enough for a header of a few recipients.
const HEAD_PROBE: u64 = 4096;
/// A range ending within this many chunks of an uncached object is read with its header.
const FIRST_GET_CHUNKS: u64 = 4;

pub struct SealedStore<S> {
    inner: S,
    keys: Keys,
    heads: Mutex<HashMap<String, Vec<u8>>>,
}

impl<S: ObjectStore> SealedStore<S> {
    pub fn new(inner: S, keys: Keys) -> SealedStore<S> {
        SealedStore {
            inner,
            keys,
            heads: Mutex::new(HashMap::new()),
        }
    }

    /// The object's header read now (and cached): what lengths and labels are read from,
    /// since another process may have written the same key since it was cached.
    fn fresh_head(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let mut probe = HEAD_PROBE;
        loop {
            let bytes = self.inner.get_range(key, 0, probe)?;
            match seal::payload_start(&bytes).map_err(|e| refused(key, e))? {
                Some(start) => {
                    let head = bytes[..start as usize].to_vec();
                    self.remember(key, &head);
                    return Ok(head);
                }
                None if (bytes.len() as u64) < probe || probe >= seal::MAX_HEADER => {
                    return Err(refused(key, SealError::BadHeader("cut short".into())));
                }
                None => probe = seal::MAX_HEADER,
            }
        }
    }

    /// A range near the start of an uncached object: the header and its chunks in one GET
    /// (what reading an LTX header costs), or two when the header is longer than guessed.
    fn head_and_span(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<(Vec<u8>, u64, Vec<u8>), StoreError> {
        let (_, to) = seal::sealed_span(0, offset, len);
        let bytes = self.inner.get_range(key, 0, HEAD_PROBE + to)?;
        let Some(start) = seal::payload_start(&bytes).map_err(|e| refused(key, e))? else {
            let head = self.fresh_head(key)?;
            let (from, to) = seal::sealed_span(head.len() as u64, offset, len);
            let span = self.inner.get_range(key, from, to - from)?;
            return Ok((head, from, span));
        };
        let head = bytes[..start as usize].to_vec();
        self.remember(key, &head);
        let (from, to) = seal::sealed_span(start, offset, len);
        let full = bytes.len() as u64 >= to || (bytes.len() as u64) < HEAD_PROBE + to;
        let span = if full {
            bytes[(from as usize).min(bytes.len())..(to as usize).min(bytes.len())].to_vec()
        } else {
            self.inner.get_range(key, from, to - from)?
        };
        Ok((head, from, span))
    }

    fn remember(&self, key: &str, head: &[u8]) {
        let mut heads = crate::base::lock::lock(&self.heads);
        if heads.len() >= HEAD_CACHE {
            heads.clear();
        }
        heads.insert(key.to_string(), head.to_vec());
    }

    fn forget(&self, key: &str) {
        crate::base::lock::lock(&self.heads).remove(key);
    }
}

/// The largest identity file read: a file of a few keys is well under it.
const MAX_IDENTITY_FILE: u64 = 64 * 1024;

/// The keys `age` configures, reading its identity files (bounded).
pub fn keys_of(age: &crate::config::AgeConfig) -> Result<Keys, StoreError> {
    use crate::config::IdentitySource;
    let bad = StoreError::Permanent;
    let mut ids = Vec::new();
    for source in &age.identities {
        let parsed = match source {
            IdentitySource::Inline(text) => seal::parse_identities(text, "age identity"),
            IdentitySource::File(path) => {
                let shown = path.display().to_string();
                let text = read_identity_file(path)
                    .map_err(|e| bad(format!("age identity file {shown}: {e}")))?;
                seal::parse_identities(&text, &shown)
            }
        };
        ids.extend(parsed.map_err(|e| bad(e.to_string()))?);
    }
    Keys::new(&age.recipients, ids).map_err(|e| bad(e.to_string()))
}

fn read_identity_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_IDENTITY_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_IDENTITY_FILE {
        return Err(std::io::Error::other(format!(
            "longer than {MAX_IDENTITY_FILE} bytes; not an identity file"
        )));
    }
    Ok(text)
}

/// Whether objects under `key` are sealed: LTX files, of every level.
fn sealed_key(key: &str) -> bool {
    key.ends_with(".ltx")
}

/// An object that fails to open, named: keys that do not match it (a plaintext object, an
/// identity that does not open it) apart from damage; both permanent.
fn refused(key: &str, e: SealError) -> StoreError {
    match e {
        SealError::NotSealed | SealError::NoMatchingIdentity => {
            StoreError::Sealing(format!("{key}: {e}"))
        }
        e => StoreError::Permanent(format!("{key}: {e}")),
    }
}

impl<S: ObjectStore> ObjectStore for SealedStore<S> {
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        if !sealed_key(key) {
            return self.inner.put(key, body);
        }
        let sealed = seal::seal(body, &self.keys).map_err(|e| refused(key, e))?;
        let put = self.inner.put(key, &sealed);
        self.forget(key);
        put
    }

    /// Seals the file into a sibling (`<file>.age`, owner-only, made new) and uploads that,
    /// so sealing holds a chunk in memory whatever the file's size.
    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), StoreError> {
        if !sealed_key(key) {
            return self.inner.put_file(key, path);
        }
        let mut sealed_path = path.as_os_str().to_owned();
        sealed_path.push(".age");
        let sealed_path = std::path::PathBuf::from(sealed_path);
        let local = |e: std::io::Error| {
            StoreError::Transient(format!("sealing {} for {key}: {e}", path.display()))
        };
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut src = std::fs::File::open(path)?;
            // One a crash left behind is ours and stale.
            let _ = std::fs::remove_file(&sealed_path);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&sealed_path)?;
            let mut w = seal::SealWriter::new(&self.keys, std::io::BufWriter::new(file))?;
            std::io::copy(&mut src, &mut w)?;
            w.finish()?.flush()
        };
        let r = write()
            .map_err(local)
            .and_then(|_| self.inner.put_file(key, &sealed_path));
        let _ = std::fs::remove_file(&sealed_path);
        self.forget(key);
        r
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let body = self.inner.get(key)?;
        if !sealed_key(key) {
            return Ok(body);
        }
        seal::open(&body, &self.keys, u64::MAX).map_err(|e| refused(key, e))
    }

    /// `max_len` bounds the plaintext; the sealed object may be longer by its header and tags.
    fn get_bounded(&self, key: &str, max_len: u64) -> Result<Vec<u8>, StoreError> {
        if !sealed_key(key) {
            return self.inner.get_bounded(key, max_len);
        }
        let body = self.inner.get_bounded(key, seal::max_sealed_len(max_len))?;
        seal::open(&body, &self.keys, max_len).map_err(|e| match e {
            SealError::TooLong(_) => super::longer_than_listed(key, max_len),
            e => refused(key, e),
        })
    }

    /// Plaintext bytes `[offset, offset+len)` (fewer at the end): the header (usually
    /// cached) and the sealed chunks that hold them, in one GET when the range starts in
    /// the first chunks. A cached header that no longer opens the object (rewritten under
    /// the same key) is dropped and the range read once more.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        if !sealed_key(key) {
            return self.inner.get_range(key, offset, len);
        }
        let len = len.min(u64::MAX - offset);
        let cached = crate::base::lock::lock(&self.heads).get(key).cloned();
        if let Some(head) = cached {
            let (from, to) = seal::sealed_span(head.len() as u64, offset, len);
            let span = self.inner.get_range(key, from, to - from)?;
            match seal::open_range(&head, from, &span, &self.keys, offset, len) {
                Ok(plain) => return Ok(plain),
                Err(_) => self.forget(key),
            }
        }
        let (head, from, span) = if offset.saturating_add(len) <= FIRST_GET_CHUNKS * seal::CHUNK {
            self.head_and_span(key, offset, len)?
        } else {
            let head = self.fresh_head(key)?;
            let (from, to) = seal::sealed_span(head.len() as u64, offset, len);
            (head, from, self.inner.get_range(key, from, to - from)?)
        };
        seal::open_range(&head, from, &span, &self.keys, offset, len).map_err(|e| refused(key, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix)
    }

    /// The plaintext length, from the object's header: what a restore sizes pieces by.
    fn content_len(&self, info: &ObjectInfo) -> Result<u64, StoreError> {
        if !sealed_key(&info.key) {
            return Ok(info.size);
        }
        let start = self.fresh_head(&info.key)?.len() as u64;
        seal::plain_len(start, info.size).ok_or_else(|| {
            refused(
                &info.key,
                SealError::Corrupt(format!("{} bytes is no age file's length", info.size)),
            )
        })
    }

    fn sealed(&self) -> bool {
        true
    }

    fn sealed_otherwise(&self, key: &str) -> Result<bool, StoreError> {
        let head = self.fresh_head(key)?;
        Ok(self
            .keys
            .sealed_otherwise(seal::sealed_to(&head).as_deref()))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let r = self.inner.delete(key);
        self.forget(key);
        r
    }
    fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let r = self.inner.delete_many(keys);
        keys.iter().for_each(|k| self.forget(k));
        r
    }
    fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        self.inner.read_versioned(key)
    }
    fn write_if(
        &self,
        key: &str,
        body: &[u8],
        expected: Option<&str>,
    ) -> Result<String, StoreError> {
        self.inner.write_if(key, body, expected)
    }
    fn request_counts(&self) -> RequestCounts {
        self.inner.request_counts()
    }
    fn describe(&self) -> String {
        format!("{} (age-encrypted)", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::sync::Arc;

    fn keys() -> Keys {
        Keys::new(&[], vec![age::x25519::Identity::generate()]).unwrap()
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 253) as u8).collect()
    }

    #[test]
    fn ltx_objects_are_sealed_and_read_back_whole_bounded_and_in_ranges() {
        let inner = Arc::new(MemoryStore::new());
        let store = SealedStore::new(inner.clone(), keys());
        let key = "db/0000/0000000000000001-0000000000000001.ltx";
        let b = body(300_000);
        store.put(key, &b).unwrap();
        assert!(!store.sealed_otherwise(key).unwrap());
        let other = SealedStore::new(inner.clone(), keys());
        assert!(
            other.sealed_otherwise(key).unwrap(),
            "sealed to another recipient"
        );
        let raw = inner.get(key).unwrap();
        assert!(seal::is_sealed(&raw));
        assert_eq!(store.get(key).unwrap(), b);
        assert_eq!(store.get_bounded(key, b.len() as u64).unwrap(), b);
        assert!(store.get_bounded(key, b.len() as u64 - 1).is_err());
        let info = &store.list("db/").unwrap()[0];
        assert_eq!(info.size, raw.len() as u64);
        assert_eq!(store.content_len(info).unwrap(), b.len() as u64);
        for (off, len) in [
            (0, 100),
            (65_536, 65_536),
            (100_000, 150_000),
            (299_990, 100),
        ] {
            let got = store.get_range(key, off, len).unwrap();
            let end = ((off + len) as usize).min(b.len());
            assert_eq!(got, &b[off as usize..end], "offset {off} len {len}");
        }
        // The lease and other non-LTX objects stay as written.
        store.put("db/lease.json", b"{}").unwrap();
        assert_eq!(inner.get("db/lease.json").unwrap(), b"{}");
    }

    #[test]
    fn a_range_read_costs_one_get_once_the_header_is_known() {
        let inner = Arc::new(MemoryStore::new());
        let store = SealedStore::new(inner.clone(), keys());
        let key = "0000/0000000000000001-0000000000000001.ltx";
        store.put(key, &body(1_000_000)).unwrap();
        let before = inner.request_counts().get;
        store.get_range(key, 0, 100).unwrap();
        assert_eq!(
            inner.request_counts().get - before,
            1,
            "header and first chunk in one GET"
        );
        store.get_range(key, 500_000, 200_000).unwrap();
        assert_eq!(inner.request_counts().get - before, 2);
    }

    #[test]
    fn ranges_past_the_end_are_empty_and_a_rewritten_object_is_read_anew() {
        let inner = Arc::new(MemoryStore::new());
        let store = SealedStore::new(inner.clone(), keys());
        let key = "0000/0000000000000001-0000000000000001.ltx";
        store.put(key, &body(100)).unwrap();
        assert_eq!(store.get_range(key, 0, u64::MAX).unwrap(), body(100));
        assert!(store.get_range(key, 101, 10).unwrap().is_empty());
        assert!(store.get_range(key, 70_000, 10).unwrap().is_empty());
        assert!(store.get_range(key, u64::MAX - 5, 10).unwrap().is_empty());
        // Another writer (other keys, so another header) replaces the object: the cached
        // header is dropped rather than trusted.
        let other = SealedStore::new(inner.clone(), store.keys.clone());
        other.put(key, &body(300_000)).unwrap();
        assert_eq!(
            store.get_range(key, 200_000, 10).unwrap(),
            &body(300_000)[200_000..200_010]
        );
        let info = &store.list("").unwrap()[0];
        assert_eq!(store.content_len(info).unwrap(), 300_000);
    }

    #[test]
    fn files_are_sealed_through_a_sibling_that_is_removed() {
        let dir = std::env::temp_dir().join(format!("sealed-put-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot.ltx");
        std::fs::write(&path, body(200_000)).unwrap();
        let inner = Arc::new(MemoryStore::new());
        let store = SealedStore::new(inner.clone(), keys());
        let key = "0000/0000000000000001-0000000000000009.ltx";
        store.put_file(key, &path).unwrap();
        assert_eq!(store.get(key).unwrap(), body(200_000));
        assert!(!dir.join("snapshot.ltx.age").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plaintext_wrong_keys_and_damage_are_refused_naming_the_object() {
        let inner = Arc::new(MemoryStore::new());
        let store = SealedStore::new(inner.clone(), keys());
        let plain_key = "0000/0000000000000001-0000000000000001.ltx";
        inner.put(plain_key, &body(5000)).unwrap();
        let e = store.get(plain_key).unwrap_err().to_string();
        assert!(
            e.contains(plain_key) && e.contains("not an age file"),
            "{e}"
        );
        assert!(store.get_range(plain_key, 0, 100).is_err());

        let key = "0000/0000000000000002-0000000000000002.ltx";
        SealedStore::new(inner.clone(), keys())
            .put(key, &body(5000))
            .unwrap();
        let e = store.get(key).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("identities"), "{e}");

        let own = "0000/0000000000000003-0000000000000003.ltx";
        store.put(own, &body(100_000)).unwrap();
        let mut raw = inner.get(own).unwrap();
        let n = raw.len();
        raw[n - 50] ^= 0x40;
        inner.put(own, &raw).unwrap();
        let e = store.get(own).unwrap_err().to_string();
        assert!(e.contains(own) && e.contains("refused"), "{e}");
    }
}
