//! Where `replica_restore` may write. The target is judged by what it is, not how it is
//! spelled: its directory resolved (symlinks, `..`), then compared by device and inode with
//! the databases this process replicates and the files it has open. A restore never
//! replaces a live database, its `-wal`/`-shm`/`-journal`, anything inside a spool, a file
//! that is neither empty nor a SQLite database, or a database another process has open.
//! Each refusal is an error saying which rule it met; nothing here writes.

use crate::database;
use crate::error::Error;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Whether a connection holds SQLite's locks on the database at a path (the FFI layer
/// probes them): `Ok(true)` when one does.
pub type LockProbe<'a> = dyn Fn(&Path) -> Result<bool, Error> + 'a;

/// The files SQLite keeps beside a database, which belong to it.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Checks `output` against every rule and returns the path to write: its directory
/// resolved, its name as given. `overwrite` allows replacing an empty file or a database
/// nobody uses.
pub(super) fn vet(output: &Path, overwrite: bool, locked: &LockProbe) -> Result<PathBuf, Error> {
    let refuse = |why: String| {
        Error::InvalidArgument(format!("replica_restore: {} {why}", output.display()))
    };
    let target = resolve(output).map_err(refuse)?;
    inside_a_spool(&target)
        .or_else(|| side_file(&target))
        .map_or(Ok(()), |why| Err(refuse(why)))?;
    let meta = match std::fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(target),
        Err(e) => return Err(refuse(format!("cannot be examined: {e}"))),
    };
    if meta.file_type().is_symlink() {
        return Err(refuse(
            "is a symbolic link; give the path of the file itself".into(),
        ));
    }
    if let Some(why) = in_use_here(&meta) {
        return Err(refuse(why));
    }
    if !overwrite {
        return Err(refuse(
            "already exists; pass 'overwrite' as the fourth argument to replace it".into(),
        ));
    }
    if !meta.file_type().is_file() {
        return Err(refuse(
            "is not a regular file (a directory, FIFO, socket or device); refusing to replace it"
                .into(),
        ));
    }
    if !empty_or_database(&target).map_err(refuse)? {
        return Err(refuse("is neither empty nor a SQLite database (it does not start with \"SQLite format 3\"); refusing to replace it".into()));
    }
    match locked(&target) {
        Ok(false) => Ok(target),
        Ok(true) => Err(refuse("is a database another process has open (SQLite's locks on it are held); close it there first, or restore to another path".into())),
        Err(e) => Err(refuse(format!(
            "cannot be checked for other processes using it ({e}); refusing to replace it"
        ))),
    }
}

/// `output` with its directory resolved. A path ending in `/`, `.` or `..` names no file
/// (the kernel would not replace what it seems to name).
fn resolve(output: &Path) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = output.as_os_str().as_bytes();
    let name = match output.file_name() {
        Some(n) if !bytes.ends_with(b"/") && !bytes.ends_with(b"/.") && bytes != b"." => n,
        _ => return Err("does not name a file".into()),
    };
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(parent)
        .map_err(|e| format!("is in a directory that cannot be resolved: {e}"))?;
    Ok(dir.join(name))
}

/// A spool is `<db>-replica/` beside its database, or any directory a replicated database
/// of this process spools into; `target` must not be one nor be inside one.
fn inside_a_spool(target: &Path) -> Option<String> {
    let spools: Vec<(u64, u64, String)> = database::all()
        .iter()
        .filter_map(|db| {
            let m = db.spool.directory().metadata().ok()?;
            Some((m.dev(), m.ino(), db.name.clone()))
        })
        .collect();
    for dir in target.ancestors() {
        let stem = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix("-replica"))
            .filter(|s| !s.is_empty());
        let db = stem.map(|s| dir.with_file_name(s));
        if let Some(db) = db.filter(|db| db.symlink_metadata().is_ok()) {
            return Some(format!(
                "is inside the replication spool of {} ({}); restore to another path",
                db.display(),
                dir.display()
            ));
        }
        let Ok(m) = std::fs::metadata(dir) else {
            continue;
        };
        if let Some((_, _, name)) = spools
            .iter()
            .find(|(dev, ino, _)| (*dev, *ino) == (m.dev(), m.ino()))
        {
            return Some(format!(
                "is inside the replication spool of {name} ({}); restore to another path",
                dir.display()
            ));
        }
    }
    None
}

/// `<db>-wal`, `<db>-shm` and `<db>-journal` of an existing `<db>` are that database's.
fn side_file(target: &Path) -> Option<String> {
    let name = target.file_name()?.to_str()?;
    SIDE_FILES.iter().find_map(|suffix| {
        let stem = name.strip_suffix(suffix).filter(|s| !s.is_empty())?;
        let db = target.with_file_name(stem);
        db.symlink_metadata().is_ok().then(|| {
            format!(
                "is the {suffix} file of the database {}; replacing it would corrupt that database",
                db.display()
            )
        })
    })
}

/// The file is a database this process replicates, or one it has open (any connection,
/// any VFS: every descriptor in `/proc/self/fd` is compared by device and inode).
fn in_use_here(meta: &std::fs::Metadata) -> Option<String> {
    let id = (meta.dev(), meta.ino());
    let same = |m: std::fs::Metadata| (m.dev(), m.ino()) == id;
    if database::all()
        .iter()
        .any(|db| std::fs::metadata(&db.path).is_ok_and(same))
    {
        return Some(
            "is a live database replicated by this process; restore to another path".into(),
        );
    }
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    fds.flatten()
        .any(|fd| std::fs::metadata(fd.path()).is_ok_and(same))
        .then(|| {
            "is open in this process (a database the application uses, or one of its files); close it first, or restore to another path".to_string()
        })
}

/// Whether the regular file at `path` is empty or starts with SQLite's header. Opening it
/// here is safe only because no descriptor of this process refers to it ([`in_use_here`]):
/// closing one would drop this process's POSIX locks on the file, SQLite's included. It
/// neither follows a symlink swapped in meanwhile nor waits on a FIFO.
fn empty_or_database(path: &Path) -> Result<bool, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(crate::base::io::O_NOFOLLOW | crate::base::io::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot be read: {e}"))?;
    let mut head = Vec::with_capacity(16);
    file.take(16)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot be read: {e}"))?;
    Ok(head.is_empty() || head == b"SQLite format 3\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = crate::base::testing::fresh_dir(&format!("target-{name}"));
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::canonicalize(d).unwrap()
    }

    const NOBODY: &LockProbe = &|_| Ok(false);

    #[test]
    fn resolves_the_directory_and_refuses_paths_that_name_no_file() {
        let d = scratch("resolve");
        let spelled = d.join("sub/../x.db");
        assert_eq!(vet(&spelled, false, NOBODY).unwrap(), d.join("x.db"));
        for bad in ["sub/", "sub/.", ".", "sub/..", "missing/x.db"] {
            let err = vet(&d.join(bad), true, NOBODY).unwrap_err().to_string();
            assert!(
                err.contains("does not name a file") || err.contains("cannot be resolved"),
                "{bad}: {err}"
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn refuses_side_files_spools_and_what_is_not_a_database() {
        let d = scratch("rules");
        std::fs::write(d.join("app.db"), b"SQLite format 3\0rest").unwrap();
        std::fs::create_dir_all(d.join("app.db-replica/seg")).unwrap();
        std::fs::write(d.join("notes"), b"hello").unwrap();
        std::fs::write(d.join("empty"), b"").unwrap();
        for (target, why) in [
            ("app.db-wal", "is the -wal file of the database"),
            ("sub/../app.db-journal", "is the -journal file"),
            ("app.db-replica/seg/x", "is inside the replication spool of"),
            ("app.db-replica", "is inside the replication spool of"),
            ("notes", "is neither empty nor a SQLite database"),
            ("sub", "is not a regular file"),
        ] {
            let err = vet(&d.join(target), true, NOBODY).unwrap_err().to_string();
            assert!(err.contains(why), "{target}: {err}");
        }
        assert!(vet(&d.join("empty"), true, NOBODY).is_ok());
        assert!(vet(&d.join("app.db"), true, NOBODY).is_ok());
        let err = vet(&d.join("app.db"), false, NOBODY).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let locked: &LockProbe = &|_| Ok(true);
        let err = vet(&d.join("app.db"), true, locked).unwrap_err();
        assert!(
            err.to_string().contains("another process has open"),
            "{err}"
        );
        // A stray `x-wal` with no `x` beside it is nobody's.
        assert!(vet(&d.join("lonely.db-wal"), false, NOBODY).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_this_process_has_open_is_refused_by_inode() {
        let d = scratch("open");
        std::fs::write(d.join("held.db"), b"").unwrap();
        std::os::unix::fs::symlink(&d, d.join("alias")).unwrap();
        let held = std::fs::File::open(d.join("held.db")).unwrap();
        let err = vet(&d.join("alias/held.db"), true, NOBODY).unwrap_err();
        assert!(err.to_string().contains("is open in this process"), "{err}");
        drop(held);
        assert!(vet(&d.join("alias/held.db"), true, NOBODY).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
