//! The temporary files a restore writes into before publishing: in the target's directory
//! (so the final rename or link stays on one file system), under a name nobody can predict,
//! created only if nothing is there (never following a symlink someone planted), and no more
//! readable than the database they become. It must never open an existing file.

use crate::base::io::O_NOFOLLOW;
use crate::error::Error;
use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a restored file: the database's own when it replaces one (its owner chose
/// it), else owner-only, like a database SQLite creates under a careful umask.
pub(super) fn mode_for(output: &Path) -> u32 {
    match std::fs::symlink_metadata(output) {
        Ok(m) if m.file_type().is_file() => m.permissions().mode() & 0o777,
        _ => 0o600,
    }
}

/// Creates a new, empty file beside `output` named `<output name>.<what>-<16 random hex
/// digits>`, with `mode`, and opens it for reading and writing.
pub(super) fn create_beside(
    output: &Path,
    what: &str,
    mode: u32,
) -> Result<(PathBuf, File), Error> {
    let name = output.file_name().ok_or_else(|| {
        Error::InvalidArgument(format!("{} does not name a file", output.display()))
    })?;
    let mut unique = name.to_owned();
    unique.push(format!(".{what}-{:016x}", random_u64()?));
    let path = output.with_file_name(unique);
    let file = create_new(&path, mode)?;
    Ok((path, file))
}

/// Creates `path`, failing if anything (a file, a symlink, a dangling symlink) is there:
/// O_CREAT|O_EXCL never follows a symlink, and O_NOFOLLOW says so to the kernel as well.
fn create_new(path: &Path, mode: u32) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(O_NOFOLLOW)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::Io(format!("creating {}: {e}", path.display())))?;
    // The umask may have taken bits from a replaced database's mode; give them back.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| Error::Io(format!("setting the mode of {}: {e}", path.display())))?;
    Ok(file)
}

/// From the operating system's generator: a name derived from the pid or the clock could be
/// guessed, and a symlink planted there beforehand.
fn random_u64() -> Result<u64, Error> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::Io("no random numbers for a temporary file's name".into()))?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        crate::base::testing::fresh_dir(&format!("temp-{name}"))
    }

    #[test]
    fn never_opens_what_is_already_there_not_even_through_a_symlink() {
        let d = scratch("planted");
        let victim = d.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let planted = d.join("out.db.tmp");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let dangling = d.join("dangling");
        std::os::unix::fs::symlink(d.join("nowhere"), &dangling).unwrap();
        for path in [&planted, &dangling, &victim] {
            let err = create_new(path, 0o600).unwrap_err().to_string();
            assert!(err.contains("exists"), "{}: {err}", path.display());
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!d.join("nowhere").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn names_are_unpredictable_and_modes_exact() {
        let d = scratch("names");
        let out = d.join("out.db");
        let (a, _) = create_beside(&out, "restoring", 0o600).unwrap();
        let (b, _) = create_beside(&out, "restoring", 0o640).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(d.as_path()));
        let name = a.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("out.db.restoring-") && name.len() == 33,
            "{name}"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&a), mode(&b)), (0o600, 0o640));
        assert_eq!(mode_for(&out), 0o600);
        assert_eq!(mode_for(&b), 0o640);
        let _ = std::fs::remove_dir_all(&d);
    }
}
