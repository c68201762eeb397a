//! The local-directory backend (`file://` URLs, `type: file`), laid out exactly as the real
//! `litestream` lays out file replicas: `<dir>/ltx/<level as decimal>/<min>-<max>.ltx`.
//! It owns mapping S3-shaped keys (`<level %04x>/<name>`) onto that tree and writing files
//! atomically (temp file, fsync, rename); it must not interpret file contents. Whoever can
//! write the directory is not trusted: it reads only regular files, opened without following
//! a symbolic link or blocking, and never more bytes than the file (or its listing) holds.

use super::{ObjectInfo, ObjectStore, RequestCounts, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

// Linux's open(2) flags, from its asm-generic and per-architecture fcntl.h (the `libc` crate
// is not a dependency). O_NOFOLLOW makes opening a symbolic link fail; O_NONBLOCK makes
// opening a FIFO return at once instead of waiting for a writer (regular files ignore it).
#[cfg(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc",
    target_arch = "powerpc64"
))]
const O_NOFOLLOW: i32 = 0o100_000;
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
const O_NOFOLLOW: i32 = 0x20000;
#[cfg(not(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
const O_NOFOLLOW: i32 = 0o400_000;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const O_NONBLOCK: i32 = 0x80;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const O_NONBLOCK: i32 = 0x4000;
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
const O_NONBLOCK: i32 = 0o4000;

pub struct DirStore {
    dir: PathBuf,
    puts: AtomicU64,
    gets: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
}

impl DirStore {
    pub fn new(dir: PathBuf) -> Self {
        DirStore {
            dir,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
        }
    }

    /// `0009/0000000000000001-0000000000000001.ltx` → `<dir>/ltx/9/…`; other keys map as-is.
    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty()
            || key
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(StoreError::Permanent(format!("invalid object key {key:?}")));
        }
        let parts: Vec<&str> = key.split('/').collect();
        if parts.len() == 2 && parts[1].ends_with(".ltx") {
            if let Ok(level) = u8::from_str_radix(parts[0], 16) {
                return Ok(self.dir.join("ltx").join(level.to_string()).join(parts[1]));
            }
        }
        Ok(self.dir.join(key))
    }

    /// The LTX files under `ltx/<level>/`, as keys under `prefix`, in key order.
    fn list_ltx(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let ltx = self.dir.join("ltx");
        let mut out = Vec::new();
        let levels = match std::fs::read_dir(&ltx) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_error("listing", &ltx, e)),
        };
        for level in levels {
            let level = level.map_err(|e| io_error("listing", &ltx, e))?;
            let level_name = level.file_name().to_string_lossy().to_string();
            let Ok(files) = std::fs::read_dir(level.path()) else {
                continue;
            };
            for file in files {
                let file = file.map_err(|e| io_error("listing", &level.path(), e))?;
                let name = file.file_name().to_string_lossy().to_string();
                if name.starts_with('.') || !name.ends_with(".ltx") {
                    continue;
                }
                let Some(key) = Self::key_of(&level_name, &name) else {
                    continue;
                };
                if key.starts_with(prefix) {
                    let meta = file.metadata().ok();
                    let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
                    let modified_ms = meta
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0);
                    out.push(ObjectInfo {
                        key,
                        size,
                        modified_ms,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The files of a Litestream 0.3 replica (`generations/<id>/<kind>/<name>`, regular
    /// files only) whose keys start with `prefix`, sorted by key.
    fn list_generations(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        let mut dirs = vec![(self.dir.join("generations"), "generations".to_string(), 0)];
        while let Some((dir, key, depth)) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(d) => d,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("listing", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error("listing", &dir, e))?;
                let name = entry.file_name().to_string_lossy().to_string();
                let child = format!("{key}/{name}");
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() && depth < 2 {
                    dirs.push((entry.path(), child, depth + 1));
                } else if kind.is_file() && depth == 2 && child.starts_with(prefix) {
                    let meta = entry
                        .metadata()
                        .map_err(|e| io_error("listing", &entry.path(), e))?;
                    out.push(ObjectInfo {
                        key: child,
                        size: meta.len(),
                        modified_ms: meta
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn key_of(level_dir: &str, name: &str) -> Option<String> {
        let level: u8 = level_dir.parse().ok()?;
        Some(format!("{level:04x}/{name}"))
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    let msg = format!("{what} {}: {e}", path.display());
    match e.kind() {
        ErrorKind::NotFound => StoreError::NotFound(path.display().to_string()),
        // A full disk or an interrupted call may clear up; a permission problem will not.
        ErrorKind::PermissionDenied => StoreError::Permanent(msg),
        _ if e.raw_os_error() == Some(28) => StoreError::Transient(msg),
        _ => StoreError::Transient(msg),
    }
}

/// Opens the file of `key` with `opts`, only if it is a regular file: not through a symbolic
/// link, and not a FIFO (reading one waits for ever), a device (`/dev/zero` never ends), a
/// socket or a directory; the type is that of the file opened, so it cannot change between
/// a check and the open. Returns the file and its size.
fn open_regular(opts: &mut OpenOptions, key: &str, path: &Path) -> Result<(File, u64), StoreError> {
    let refused = |what: &str| {
        StoreError::Permanent(format!(
            "{} (object {key}): {what}, not a regular file: refused",
            path.display()
        ))
    };
    let file = match opts.custom_flags(O_NOFOLLOW | O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(StoreError::NotFound(key.to_string()))
        }
        // O_NOFOLLOW's error (ELOOP) differs between architectures: ask what is there.
        Err(_) if path.symlink_metadata().is_ok_and(|m| m.is_symlink()) => {
            return Err(refused("a symbolic link"))
        }
        Err(e) => return Err(io_error("opening", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_error("inspecting", path, e))?;
    let t = meta.file_type();
    match () {
        _ if t.is_file() => Ok((file, meta.len())),
        _ if t.is_fifo() => Err(refused("a FIFO")),
        _ if t.is_char_device() || t.is_block_device() => Err(refused("a device")),
        _ if t.is_socket() => Err(refused("a socket")),
        _ if t.is_dir() => Err(refused("a directory")),
        _ => Err(refused("a special file")),
    }
}

/// At most `len` bytes of `file` from where it stands, for `key` at `path`.
fn read_up_to(file: File, len: u64, key: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    // Sized up front: growing by doubling would hold up to twice the bytes (restore keeps
    // several ranges in memory at once).
    let mut buf = Vec::with_capacity(len.min(64 << 20) as usize);
    file.take(len)
        .read_to_end(&mut buf)
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => StoreError::NotFound(key.to_string()),
            _ => io_error("reading", path, e),
        })?;
    Ok(buf)
}

impl DirStore {
    /// The file of `key` opened for reading (see [`open_regular`]), its path and size.
    fn open_read(&self, key: &str) -> Result<(File, PathBuf, u64), StoreError> {
        let path = self.path_of(key)?;
        let (file, size) = open_regular(OpenOptions::new().read(true), key, &path)?;
        Ok((file, path, size))
    }
}

impl ObjectStore for DirStore {
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        let path = self.path_of(key)?;
        let parent = path.parent().expect("joined path has a parent");
        std::fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e))?;
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            path.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            std::fs::File::open(parent)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error("writing", &path, e)
        })
    }

    fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        let body = self.get(key)?;
        if body.is_empty() {
            // Created by a writer that has not written yet (see `write_if`).
            return Err(StoreError::NotFound(key.to_string()));
        }
        let version = super::content_version(&body);
        Ok((body, version))
    }

    /// Compare-and-swap under an exclusive `flock` of the object's file itself, written in
    /// place, so processes sharing the directory see one winner. (A rename would put a new
    /// file beside the lock.) A torn write reads as garbage, which the lease takes over.
    fn write_if(
        &self,
        key: &str,
        body: &[u8],
        expected: Option<&str>,
    ) -> Result<String, StoreError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        let path = self.path_of(key)?;
        let parent = path.parent().expect("joined path has a parent");
        std::fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e))?;
        let mut opts = OpenOptions::new();
        opts.create(true).truncate(false).read(true).write(true);
        let (mut f, _) = open_regular(&mut opts, key, &path)?;
        f.lock().map_err(|e| io_error("locking", &path, e))?;
        let mut current = Vec::new();
        f.read_to_end(&mut current)
            .map_err(|e| io_error("reading", &path, e))?;
        let version = (!current.is_empty()).then(|| super::content_version(&current));
        if version.as_deref() != expected {
            return Err(StoreError::PreconditionFailed(key.to_string()));
        }
        let mut write = || -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(body)?;
            f.sync_all()
        };
        write().map_err(|e| io_error("writing", &path, e))?;
        Ok(super::content_version(body))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let (file, path, size) = self.open_read(key)?;
        read_up_to(file, size, key, &path)
    }

    fn get_bounded(&self, key: &str, max_len: u64) -> Result<Vec<u8>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let (file, path, size) = self.open_read(key)?;
        if size > max_len {
            return Err(super::longer_than_listed(key, max_len));
        }
        read_up_to(file, size, key, &path)
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let (mut file, path, _) = self.open_read(key)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error("reading", &path, e))?;
        read_up_to(file, len, key, &path)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        if prefix.starts_with("generations/") {
            return self.list_generations(prefix);
        }
        let mut out = self.list_ltx(prefix)?;
        // The whole replica, as a bucket lists it: a Litestream 0.3 replica at the same
        // place too (a database moving in from it).
        if prefix.is_empty() {
            out.extend(self.list_generations("generations/")?);
            out.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        let path = self.path_of(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("deleting", &path, e)),
        }
    }

    fn request_counts(&self) -> RequestCounts {
        RequestCounts {
            put: self.puts.load(Ordering::Relaxed),
            get: self.gets.load(Ordering::Relaxed),
            list: self.lists.load(Ordering::Relaxed),
            delete: self.deletes.load(Ordering::Relaxed),
        }
    }

    fn describe(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_store_passes_the_contract_in_litestreams_layout() {
        let dir = std::env::temp_dir().join(format!("replica-fs-contract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = DirStore::new(dir.clone());
        // The contract uses the prefix "db": a file replica has no prefix, so strip it here.
        super::super::contract::run(&Prefixed {
            inner: &store,
            prefix: "db/",
        });
        store
            .put("0009/0000000000000001-0000000000000002.ltx", b"x")
            .unwrap();
        assert!(dir
            .join("ltx/9/0000000000000001-0000000000000002.ltx")
            .exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Only regular files are read: each other kind of entry is refused, naming it, at once
    /// (a FIFO would block the open or the read, `/dev/zero` would never end).
    #[test]
    fn only_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("replica-fs-kinds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = DirStore::new(dir.clone());
        let key = |n: u64| format!("0000/{}", super::super::keys::ltx_filename(n, n));
        store.put(&key(1), b"regular").unwrap();
        let level0 = dir.join("ltx/0");
        let path = |n: u64| level0.join(super::super::keys::ltx_filename(n, n));
        std::os::unix::fs::symlink("/dev/zero", path(2)).unwrap();
        std::os::unix::fs::symlink(path(1), path(3)).unwrap();
        let mkfifo = std::process::Command::new("mkfifo").arg(path(4)).status();
        assert!(mkfifo.unwrap().success());
        std::fs::create_dir(path(5)).unwrap();
        for (n, what) in [
            (2, "a symbolic link"),
            (3, "a symbolic link"),
            (4, "a FIFO"),
            (5, "a directory"),
        ] {
            for got in [
                store.get(&key(n)),
                store.get_bounded(&key(n), 100),
                store.get_range(&key(n), 0, 100),
                store.read_versioned(&key(n)).map(|(b, _)| b),
            ] {
                match got {
                    Err(StoreError::Permanent(m)) => assert!(
                        m.contains(what) && m.contains(&key(n)) && m.contains("refused"),
                        "{m}"
                    ),
                    other => panic!("{n}: {other:?}"),
                }
            }
            assert!(store.write_if(&key(n), b"x", None).is_err());
        }
        assert_eq!(store.get_bounded(&key(1), 7).unwrap(), b"regular");
        match store.get_bounded(&key(1), 6) {
            Err(StoreError::Permanent(m)) => assert!(m.contains("longer than the 6 bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            store.get_bounded(&key(9), 6),
            Err(StoreError::NotFound(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    struct Prefixed<'a> {
        inner: &'a DirStore,
        prefix: &'static str,
    }
    impl Prefixed<'_> {
        fn strip<'k>(&self, key: &'k str) -> &'k str {
            key.strip_prefix(self.prefix).unwrap_or(key)
        }
    }
    impl ObjectStore for Prefixed<'_> {
        fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
            self.inner.put(self.strip(key), body)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.inner.get(self.strip(key))
        }
        fn get_range(&self, key: &str, o: u64, l: u64) -> Result<Vec<u8>, StoreError> {
            self.inner.get_range(self.strip(key), o, l)
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
            if !prefix.starts_with(self.prefix) {
                return Ok(vec![]);
            }
            let mut v = self.inner.list(self.strip(prefix))?;
            for o in &mut v {
                o.key = format!("{}{}", self.prefix, o.key);
            }
            Ok(v)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(self.strip(key))
        }
        fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
            self.inner.read_versioned(self.strip(key))
        }
        fn write_if(
            &self,
            key: &str,
            body: &[u8],
            expected: Option<&str>,
        ) -> Result<String, StoreError> {
            self.inner.write_if(self.strip(key), body, expected)
        }
        fn request_counts(&self) -> RequestCounts {
            self.inner.request_counts()
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }
}
