//! Directories held open by a descriptor, so that what is checked is what is used: a
//! directory is opened once (`O_DIRECTORY|O_NOFOLLOW`), its owner and mode are checked and
//! narrowed on that descriptor (`fstat`, `fchmod`), and every file and subdirectory inside
//! it is then reached through the descriptor, never through its path again. Someone who
//! can write the directory above may rename or replace it by a symlink after the check;
//! what is already held stays the directory that was checked. It owns those rules; it must
//! not know what the files hold.
//!
//! std has no `openat`: a file inside is reached as `/proc/self/fd/<fd>/<name>`, which the
//! kernel resolves through the descriptor's own directory (a "magic link"), not by its
//! path. Opening fails with a clear error when `/proc` is not mounted. That walk through
//! procfs costs tens of µs on a cold cache, so whether an entry is there at all is asked
//! with `fstatat` on the descriptor, which the FFI layer gives at load (`set_entry_probe`).

use super::private_fs::{euid, Modes};
use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Looks an entry up relative to a held directory's descriptor: whether it is there
/// (`fstatat`, which std lacks; given by the FFI layer at load).
pub type EntryProbe = fn(&File, &str) -> std::io::Result<bool>;

static ENTRY_PROBE: OnceLock<EntryProbe> = OnceLock::new();

/// Installs the entry probe (once, at load); without it [`HeldDir::may_hold`] cannot tell.
pub fn set_entry_probe(probe: EntryProbe) {
    let _ = ENTRY_PROBE.set(probe);
}

/// Why a directory cannot be held.
#[derive(Debug)]
pub enum DirError {
    /// It is missing and cannot be created.
    Create(std::io::Error),
    /// It exists and cannot be opened.
    Open(std::io::Error),
    Symlink,
    NotADirectory,
    ForeignOwner {
        owner: u32,
        me: u32,
    },
    UnknownUser(std::io::Error),
    Narrow(std::io::Error),
    /// `/proc/self/fd/<fd>` does not lead to it (`/proc` is not mounted, or is another's).
    NoProc(std::io::Error),
}

impl DirError {
    /// Whether this process may simply not write there (permissions, a read-only file
    /// system), as opposed to a directory that cannot be trusted.
    pub fn is_not_writable(&self) -> bool {
        match self {
            DirError::Create(e) | DirError::Open(e) => is_not_writable(e),
            _ => false,
        }
    }
}

/// Whether `e` says this process may not write there: permission denied, or a read-only
/// file system.
pub fn is_not_writable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
    ) || e.raw_os_error() == Some(libc::EROFS)
}

impl std::fmt::Display for DirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirError::Create(e) => write!(f, "cannot create it: {e}"),
            DirError::Open(e) => write!(f, "cannot open it: {e}"),
            DirError::Symlink => {
                f.write_str("it is a symlink (refused: the pages would go wherever it points)")
            }
            DirError::NotADirectory => f.write_str("it is not a directory"),
            DirError::ForeignOwner { owner, me } => write!(
                f,
                "it is owned by uid {owner}, not by this process's user (uid {me})"
            ),
            DirError::UnknownUser(e) => write!(f, "cannot tell this process's user id: {e}"),
            DirError::Narrow(e) => write!(f, "cannot narrow its permissions: {e}"),
            DirError::NoProc(e) => write!(
                f,
                "cannot reach it through its descriptor in /proc/self/fd ({e}); /proc must be mounted"
            ),
        }
    }
}

/// A directory this process's user owns, held open; see the module docs.
#[derive(Debug)]
pub struct HeldDir {
    file: File,
    /// The path it was opened by, for messages only.
    path: PathBuf,
    /// `/proc/self/fd/<fd>`: the directory itself, whatever its path names now.
    via: PathBuf,
}

impl HeldDir {
    /// Holds `path`, creating it with `modes.dir` when missing and narrowing it to that
    /// mode when wider; refused when it is a symlink, not a directory, or someone else's.
    pub fn ensure(path: &Path, modes: Modes) -> Result<HeldDir, DirError> {
        make_dir(path, modes)?;
        let dir = HeldDir::open_checked(path, path.to_path_buf())?;
        dir.narrow(modes)?;
        Ok(dir)
    }

    /// Holds `path`, which must exist, without changing it (for processes that only read
    /// it, or write into it without owning it).
    pub fn existing(path: &Path) -> Result<HeldDir, DirError> {
        HeldDir::open_checked(path, path.to_path_buf())
    }

    /// `ensure` for the subdirectory `name`, created and opened through this one.
    pub fn ensure_sub(&self, name: &str, modes: Modes) -> Result<HeldDir, DirError> {
        make_dir(&self.at(name), modes)?;
        let dir = HeldDir::open_checked(&self.at(name), self.shown(name))?;
        dir.narrow(modes)?;
        Ok(dir)
    }

    /// `existing` for the subdirectory `name`, opened through this one.
    pub fn existing_sub(&self, name: &str) -> Result<HeldDir, DirError> {
        HeldDir::open_checked(&self.at(name), self.shown(name))
    }

    /// Whether an entry `name` may be inside: false only when a lookup through the
    /// descriptor found none. Much cheaper than opening it through `/proc/self/fd` when it is
    /// missing, for the checks SQLite's committing thread makes.
    pub fn may_hold(&self, name: &str) -> bool {
        match ENTRY_PROBE.get() {
            Some(probe) => !matches!(probe(&self.file, name), Ok(false)),
            None => true,
        }
    }

    /// Another descriptor for the same directory (for a holder that outlives this one).
    pub fn try_clone(&self) -> std::io::Result<HeldDir> {
        let file = self.file.try_clone()?;
        let via = via(&file);
        Ok(HeldDir {
            file,
            path: self.path.clone(),
            via,
        })
    }

    /// The path of `name` inside this directory, resolved through the descriptor (valid as
    /// long as this `HeldDir` lives). For opening; messages use [`HeldDir::shown`].
    pub fn at(&self, name: &str) -> PathBuf {
        self.via.join(name)
    }

    /// `name` under the path this directory was opened by, for messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The path this directory was opened by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The held directory's own metadata (`fstat`).
    pub fn metadata(&self) -> std::io::Result<Metadata> {
        self.file.metadata()
    }

    /// The names of the entries, in no particular order.
    pub fn names(&self) -> std::io::Result<Vec<OsString>> {
        Ok(std::fs::read_dir(&self.via)?
            .flatten()
            .map(|e| e.file_name())
            .collect())
    }

    /// Narrows every regular file directly inside to `mode` (a spool made by an older build
    /// kept what its umask gave): opened without following a symlink and without waiting
    /// on a FIFO, then `fchmod`; entries that cannot be opened are left alone.
    pub fn narrow_files(&self, mode: u32) {
        for name in self.names().unwrap_or_default() {
            let Some(name) = name.to_str() else { continue };
            let p = self.at(name);
            let wide = std::fs::symlink_metadata(&p)
                .is_ok_and(|m| m.is_file() && m.mode() & 0o7777 & !mode != 0);
            if !wide {
                continue;
            }
            let opened = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&p);
            if let Ok(f) = opened {
                if let Some(m) = f.metadata().ok().filter(|m| m.is_file()) {
                    let narrowed = m.mode() & 0o7777 & mode;
                    let _ = f.set_permissions(std::fs::Permissions::from_mode(narrowed));
                }
            }
        }
    }

    /// Opens `open_by` as a directory without following a symlink, checks it is this
    /// process's user's and that `/proc/self/fd` leads to it.
    fn open_checked(open_by: &Path, shown: PathBuf) -> Result<HeldDir, DirError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(open_by)
            .map_err(|e| match e.raw_os_error() {
                // Refused either way; which one it was is only for the message (a symlink
                // opened with O_DIRECTORY|O_NOFOLLOW fails with ENOTDIR on Linux).
                Some(libc::ELOOP | libc::ENOTDIR) => match std::fs::symlink_metadata(open_by) {
                    Ok(m) if m.file_type().is_symlink() => DirError::Symlink,
                    _ => DirError::NotADirectory,
                },
                _ => DirError::Open(e),
            })?;
        let meta = file.metadata().map_err(DirError::Open)?;
        if !meta.is_dir() {
            return Err(DirError::NotADirectory);
        }
        let me = euid().map_err(DirError::UnknownUser)?;
        if meta.uid() != me {
            return Err(DirError::ForeignOwner {
                owner: meta.uid(),
                me,
            });
        }
        let via = via(&file);
        match std::fs::metadata(&via) {
            Ok(m) if (m.dev(), m.ino()) == (meta.dev(), meta.ino()) => {}
            Ok(_) => {
                return Err(DirError::NoProc(std::io::Error::other(
                    "it names another directory",
                )))
            }
            Err(e) => return Err(DirError::NoProc(e)),
        }
        Ok(HeldDir {
            file,
            path: shown,
            via,
        })
    }

    /// Narrows the held directory to `modes.dir` when it is wider (`fchmod`).
    pub fn narrow(&self, modes: Modes) -> Result<(), DirError> {
        let mode = self.metadata().map_err(DirError::Open)?.mode() & 0o7777;
        if mode & !modes.dir != 0 {
            self.file
                .set_permissions(std::fs::Permissions::from_mode(mode & modes.dir))
                .map_err(DirError::Narrow)?;
        }
        Ok(())
    }
}

/// Creates the directory `path` with `modes.dir` unless something is there (a symlink
/// there is not followed: mkdir fails on it, and opening it then refuses it).
fn make_dir(path: &Path, modes: Modes) -> Result<(), DirError> {
    match std::fs::DirBuilder::new().mode(modes.dir).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DirError::Create(e)),
    }
}

fn via(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        crate::base::testing::fresh_dir(&format!("held-{name}"))
    }

    #[test]
    fn files_go_where_the_held_directory_is_even_after_it_is_swapped_for_a_symlink() {
        let d = scratch("swap");
        let spool = d.join("spool");
        let held = HeldDir::ensure(&spool, Modes::PRIVATE).unwrap();
        let seg = held.ensure_sub("seg", Modes::PRIVATE).unwrap();
        let attacker = d.join("attacker");
        std::fs::create_dir(&attacker).unwrap();
        std::fs::create_dir(attacker.join("seg")).unwrap();
        std::fs::rename(&spool, d.join("moved")).unwrap();
        std::os::unix::fs::symlink(&attacker, &spool).unwrap();
        std::fs::write(held.at("state"), b"x").unwrap();
        std::fs::write(seg.at("1.seg"), b"y").unwrap();
        let sub = held.ensure_sub("cache", Modes::PRIVATE).unwrap();
        std::fs::write(sub.at("f"), b"z").unwrap();
        assert_eq!(std::fs::read(d.join("moved/state")).unwrap(), b"x");
        assert_eq!(std::fs::read(d.join("moved/seg/1.seg")).unwrap(), b"y");
        assert_eq!(std::fs::read(d.join("moved/cache/f")).unwrap(), b"z");
        assert_eq!(std::fs::read_dir(attacker.join("seg")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(&attacker).unwrap().count(), 1);
        assert!(matches!(
            HeldDir::ensure(&spool, Modes::PRIVATE),
            Err(DirError::Symlink)
        ));
        assert_eq!(held.shown("state"), spool.join("state"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_is_narrowed_on_its_descriptor_and_so_are_the_files_in_it() {
        let d = scratch("narrow");
        let spool = d.join("spool");
        std::fs::create_dir(&spool).unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(spool.join("old"), b"x").unwrap();
        std::fs::set_permissions(spool.join("old"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let held = HeldDir::ensure(&spool, Modes::PRIVATE).unwrap();
        held.narrow_files(Modes::PRIVATE.file);
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&spool), 0o700);
        assert_eq!(mode(&spool.join("old")), 0o600);
        let names = held.names().unwrap();
        assert_eq!(names, vec![OsString::from("old")]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_refused() {
        let d = scratch("file");
        std::fs::write(d.join("spool"), b"").unwrap();
        assert!(matches!(
            HeldDir::ensure(&d.join("spool"), Modes::PRIVATE),
            Err(DirError::NotADirectory)
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
