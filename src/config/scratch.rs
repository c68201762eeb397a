//! Scratch files: databases that sit directly in a temporary directory — `$TMPDIR` when it
//! is set, `/tmp` and `/var/tmp` — where programs create files they delete again
//! (`tempfile.mkstemp`, `Tempfile`, `mktemp`; datasette 1.0 keeps its internal database
//! there). `REPLICA_URL` names "every database the process opens", so without this rule each
//! such file would get a spool beside it (left behind when the program deletes the file) and
//! a replica of its random name in the bucket. Only `REPLICA_URL`'s catch-all leaves them
//! alone: a config-file entry or `?replica=` that names one replicates it. Only a file that
//! exists at open with no spool beside it counts (the resolver asks the file system): a
//! database missing at open is restored there, and one with a spool was replicated. Deeper
//! directories (`/tmp/app/app.db`) are not scratch: nothing tells a directory someone made
//! for a database from a program's scratch directory, and a database there must not stop
//! replicating unannounced.

use std::path::{Path, PathBuf};

use super::env::Env;
use super::paths::normalize;

/// The directories whose direct children are scratch files.
#[derive(Debug, Clone)]
pub(super) struct ScratchDirs(Vec<PathBuf>);

impl ScratchDirs {
    /// `$TMPDIR` (relative to the working directory if it is relative), `/tmp`, `/var/tmp`.
    pub(super) fn of_env(env: &Env) -> ScratchDirs {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let named = env
            .get("TMPDIR")
            .map(|d| normalize(&env.cwd.join(d.trim())));
        for d in named
            .into_iter()
            .chain(["/tmp", "/var/tmp"].map(PathBuf::from))
        {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        ScratchDirs(dirs)
    }

    /// Whether `db` (absolute and normalized) sits directly in one of the directories, by
    /// path or, when both resolve, by canonical path (`TMPDIR` may name a symlink).
    pub(super) fn holds(&self, db: &Path, canonicalize: fn(&Path) -> Option<PathBuf>) -> bool {
        let Some(parent) = db.parent() else {
            return false;
        };
        if self.0.iter().any(|d| d == parent) {
            return true;
        }
        let Some(canon) = canonicalize(parent) else {
            return false;
        };
        self.0
            .iter()
            .any(|d| canonicalize(d).is_some_and(|c| c == canon))
    }

    /// The directories as the load's summary names them: `/tmp, /var/tmp`.
    pub(super) fn describe(&self) -> String {
        self.0
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(vars: &[(&str, &str)]) -> ScratchDirs {
        ScratchDirs::of_env(&Env::new(
            "/work",
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        ))
    }

    fn no_canon(_: &Path) -> Option<PathBuf> {
        None
    }

    #[test]
    fn only_direct_children_of_the_temporary_directories_are_scratch() {
        let d = dirs(&[("TMPDIR", "/run/user/1000/tmp/")]);
        assert_eq!(d.describe(), "/run/user/1000/tmp, /tmp, /var/tmp");
        for scratch in [
            "/tmp/datasette_temp_x1.db",
            "/var/tmp/a.db",
            "/run/user/1000/tmp/tmpab12.db",
        ] {
            assert!(d.holds(Path::new(scratch), no_canon), "{scratch}");
        }
        for kept in [
            "/tmp/app/app.db",
            "/srv/app.db",
            "/tmpx/a.db",
            "/run/user/1000/a.db",
            "/a.db",
            "/",
        ] {
            assert!(!d.holds(Path::new(kept), no_canon), "{kept}");
        }
    }

    #[test]
    fn tmpdir_is_taken_relative_to_the_working_directory_and_not_repeated() {
        assert_eq!(
            dirs(&[("TMPDIR", "scratch")]).describe(),
            "/work/scratch, /tmp, /var/tmp"
        );
        assert_eq!(dirs(&[("TMPDIR", "/tmp")]).describe(), "/tmp, /var/tmp");
        assert_eq!(dirs(&[("TMPDIR", " ")]).describe(), "/tmp, /var/tmp");
    }

    #[test]
    fn a_directory_reached_through_a_symlink_is_matched_canonically() {
        fn canon(p: &Path) -> Option<PathBuf> {
            match p.to_str()? {
                "/link" | "/private/tmp" => Some(PathBuf::from("/private/tmp")),
                "/srv" => Some(PathBuf::from("/srv")),
                _ => None,
            }
        }
        let d = dirs(&[("TMPDIR", "/private/tmp")]);
        assert!(d.holds(Path::new("/link/x.db"), canon));
        assert!(!d.holds(Path::new("/srv/x.db"), canon));
    }
}
