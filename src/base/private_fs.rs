//! Files and directories only their owner may read: created with modes no wider than the
//! database's (whatever the umask), never through a symlink, and inside directories that
//! belong to this process's user. It owns those rules; it must not know what the files hold.
//!
//! Symlinks are refused by opening with `O_NOFOLLOW` (a planted `lock -> /etc/shadow` then
//! fails with ELOOP instead of truncating the victim); temporary files for atomic replace
//! get names no one else predicts and are created with `O_EXCL`. Directories are held by a
//! descriptor and checked on it (`super::held_dir`).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Opening a path whose last component is a symlink fails with ELOOP (the value differs
/// between architectures: 0o400000 on x86-64, 0o100000 on aarch64).
pub const O_NOFOLLOW: i32 = libc::O_NOFOLLOW;

/// What opening with `O_NOFOLLOW` returns when the path is a symlink.
pub const ELOOP: i32 = libc::ELOOP;

/// Whether `e` is an open refused because the path is a symlink.
pub fn is_symlink_refusal(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(ELOOP)
}

/// The permission bits of what this process creates beside a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub file: u32,
    pub dir: u32,
}

impl Modes {
    /// Owner only: what a spool gets when there is no database file to copy from yet.
    pub const PRIVATE: Modes = Modes {
        file: 0o600,
        dir: 0o700,
    };

    /// No wider than a file of mode `mode`: its read/write bits for files; for directories
    /// the same plus the execute bit wherever read is granted (0600 → 0600/0700).
    pub fn like_file_mode(mode: u32) -> Modes {
        let file = mode & 0o666;
        Modes {
            file,
            dir: file | ((file & 0o444) >> 2),
        }
    }

    /// The modes for files beside `db` (owner only if it cannot be read yet).
    pub fn beside(db: &Path) -> Modes {
        std::fs::metadata(db)
            .map(|m| Modes::like_file_mode(m.mode()))
            .unwrap_or(Modes::PRIVATE)
    }

    /// The modes for files inside `dir`, a directory made with `HeldDir::ensure` (its own
    /// mode tells, for writers that do not know the database's). Following a symlink here
    /// only reads a mode: `dir` is usually a held directory's `/proc/self/fd/<fd>`.
    pub fn inside(dir: &Path) -> Modes {
        std::fs::metadata(dir)
            .map(|m| Modes::like_file_mode(m.mode() & 0o666))
            .unwrap_or(Modes::PRIVATE)
    }

    /// Options that open `path` for reading and writing, creating it with `self.file` if
    /// missing, never through a symlink.
    pub fn open_rw(&self) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(self.file)
            .custom_flags(O_NOFOLLOW);
        o
    }

    /// Creates `path`, which must not exist (`O_EXCL`), for writing.
    pub fn create_new(&self, path: &Path) -> std::io::Result<File> {
        OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(self.file)
            .custom_flags(O_NOFOLLOW)
            .open(path)
    }

    /// Replaces `path` with `bytes` atomically: an unpredictable temporary beside it (made
    /// with `O_EXCL`), fsynced when `sync`, then renamed over it.
    pub fn write_atomically(&self, path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
        let (tmp, mut f) = self.temp_beside(path)?;
        let done = f
            .write_all(bytes)
            .and_then(|()| if sync { f.sync_all() } else { Ok(()) })
            .and_then(|()| std::fs::rename(&tmp, path));
        if done.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        done
    }

    /// A fresh temporary file beside `path`, named after it, this process and a counter
    /// mixed with the clock, created with `O_EXCL` (a name planted in advance fails).
    pub fn temp_beside(&self, path: &Path) -> std::io::Result<(PathBuf, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let mut last = None;
        for _ in 0..8 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let tmp = path.with_file_name(format!(
                ".{name}.{}-{n}-{nanos:08x}.tmp",
                std::process::id()
            ));
            match self.create_new(&tmp) {
                Ok(f) => return Ok((tmp, f)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ErrorKind::AlreadyExists.into()))
    }
}

/// Creates `path` afresh for a scratch file in a directory made with `HeldDir::ensure`: whatever
/// is there (a stale scratch file, a planted symlink) is removed, not followed, and the new
/// file gets the directory's mode without its execute bits.
pub fn create_fresh(path: &Path) -> std::io::Result<File> {
    let modes = path.parent().map_or(Modes::PRIVATE, Modes::inside);
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    modes.create_new(path)
}

/// This process's effective user id, from `/proc/self/status` (its `Uid:` line is real,
/// effective, saved and filesystem uid). Read there rather than inferred from a file this
/// process creates: that needs a writable place, and the file's owner is the filesystem uid
/// (and, on some filesystems, whatever the mount says).
pub fn euid() -> std::io::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| std::io::Error::other("/proc/self/status has no effective uid"))
}

/// Opens `path` for reading, never through a symlink.
pub fn open_read(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(path)
}

/// Reads all of `path`, never through a symlink.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    open_read(path)?.read_to_end(&mut v)?;
    Ok(v)
}

/// Reads `path` as text, never through a symlink.
pub fn read_to_string(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read(path)?).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_the_database_and_add_execute_where_read_is_granted() {
        assert_eq!(Modes::like_file_mode(0o100600), Modes::PRIVATE);
        assert_eq!(
            Modes::like_file_mode(0o644),
            Modes {
                file: 0o644,
                dir: 0o755
            }
        );
        assert_eq!(
            Modes::like_file_mode(0o4777),
            Modes {
                file: 0o666,
                dir: 0o777
            }
        );
        assert_eq!(
            Modes::like_file_mode(0o620),
            Modes {
                file: 0o620,
                dir: 0o720
            }
        );
    }

    #[test]
    fn the_effective_uid_is_the_owner_of_what_this_process_creates() {
        let p = std::env::temp_dir().join(format!("replica-euid-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let f = Modes::PRIVATE.create_new(&p).unwrap();
        assert_eq!(euid().unwrap(), f.metadata().unwrap().uid());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn symlinks_are_neither_followed_nor_accepted_as_directories() {
        let d = crate::base::testing::fresh_dir("nofollow");
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(Modes::PRIVATE.open_rw().open(&link).is_err());
        assert!(read(&link).is_err());
        let dlink = d.join("dlink");
        std::os::unix::fs::symlink(&d, &dlink).unwrap();
        assert!(
            super::super::held_dir::HeldDir::ensure(&dlink, Modes::PRIVATE)
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
        Modes::PRIVATE
            .write_atomically(&d.join("state"), b"x", false)
            .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        let _ = std::fs::remove_dir_all(&d);
    }
}
