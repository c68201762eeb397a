//! Local copies of the files this uploader uploaded, kept in `<spool>/cache/<level>/` until
//! the compaction into the next level has used them, so that compaction downloads nothing.
//! It owns that folder; it must not talk to the store (a missing or torn copy is simply
//! downloaded instead). The folders are reached through the spool's held directory and
//! held themselves (never through a symlink, never another user's).

use super::known::{file_id, KnownFiles};
use crate::base::held_dir::HeldDir;
use crate::base::private_fs::{self, Modes};
use crate::lifecycle::FileId;
use crate::store::keys;
use std::fs::File;
use std::path::Path;

/// Local copies of uploaded files larger than this are not kept for compaction.
const MAX_CACHED_BYTES: u64 = 64 << 20;

/// The cache's folder inside the spool.
const ROOT: &str = "cache";

pub(super) struct Cache {
    /// The spool directory, held (`None` if it could not be: nothing is cached then).
    spool: Option<HeldDir>,
    /// The highest compaction level: its files are compacted into nothing.
    max_level: u8,
    /// The spool's modes: the folders are made with them (and checked to be ours).
    modes: Modes,
}

impl Cache {
    pub fn new(spool: &HeldDir, max_level: u8, modes: Modes) -> Cache {
        Cache {
            spool: spool.try_clone().ok(),
            max_level,
            modes,
        }
    }

    /// `<spool>/cache/<level>/`, held; created when `create`.
    fn level_dir(&self, level: u8, create: bool) -> Option<HeldDir> {
        let spool = self.spool.as_ref()?;
        let level = level.to_string();
        if create {
            let root = spool.ensure_sub(ROOT, self.modes).ok()?;
            root.ensure_sub(&level, self.modes).ok()
        } else {
            spool.existing_sub(ROOT).ok()?.existing_sub(&level).ok()
        }
    }

    /// The local copy of `id`, if there is one.
    pub fn open(&self, id: FileId) -> Option<File> {
        let dir = self.level_dir(id.level, false)?;
        private_fs::open_read(&dir.at(&keys::ltx_filename(id.min_txid, id.max_txid))).ok()
    }

    pub fn remove(&self, id: FileId) {
        if let Some(dir) = self.level_dir(id.level, false) {
            let _ = std::fs::remove_file(dir.at(&keys::ltx_filename(id.min_txid, id.max_txid)));
        }
    }

    /// Keeps `file`, just uploaded as `id`, if a higher level will compact it; else
    /// removes it.
    pub fn keep(&self, id: FileId, file: &Path, size: u64) {
        let kept = id.level < self.max_level
            && size <= MAX_CACHED_BYTES
            && self.level_dir(id.level, true).is_some_and(|dir| {
                std::fs::rename(file, dir.at(&keys::ltx_filename(id.min_txid, id.max_txid))).is_ok()
            });
        if !kept {
            let _ = std::fs::remove_file(file);
        }
    }

    /// Drops local copies the next level already holds or the replica no longer has, so
    /// the cache stays bounded by what the next compactions need.
    pub fn prune(&self, known: &KnownFiles) {
        // Never through a symlink (planted to make this delete files elsewhere): the root
        // and each level must be real directories of ours.
        let Some(root) = self.spool.as_ref().and_then(|s| s.existing_sub(ROOT).ok()) else {
            return;
        };
        for name in root.names().unwrap_or_default() {
            let Some(name) = name.to_str() else { continue };
            let Ok(dir) = root.existing_sub(name) else {
                let _ = std::fs::remove_file(root.at(name));
                continue;
            };
            let level: Option<u8> = name.parse().ok();
            let next_max = level.map(|l| known.level_max(l + 1));
            for entry in dir.names().unwrap_or_default() {
                let keep = match (level, next_max, entry.to_str()) {
                    (Some(level), Some(next_max), Some(entry)) => keys::parse_ltx_filename(entry)
                        .is_some_and(|(min, max)| {
                            max > next_max && known.contains(file_id(level, min, max))
                        }),
                    _ => false,
                };
                if !keep {
                    let _ = std::fs::remove_file(dir.at(&entry.to_string_lossy()));
                }
            }
        }
    }
}
