//! Local copies of the files this uploader uploaded, kept in `<spool>/cache/<level>/` until
//! the compaction into the next level has used them, so that compaction downloads nothing.
//! It owns that folder; it must not talk to the store (a missing or torn copy is simply
//! downloaded instead).

use super::known::{file_id, KnownFiles};
use crate::base::private_fs::Modes;
use crate::lifecycle::FileId;
use crate::store::keys;
use std::path::{Path, PathBuf};

/// Local copies of uploaded files larger than this are not kept for compaction.
const MAX_CACHED_BYTES: u64 = 64 << 20;

pub(super) struct Cache {
    /// `<spool>/cache`.
    root: PathBuf,
    /// The highest compaction level: its files are compacted into nothing.
    max_level: u8,
    /// The spool's modes: the folders are made with them (and checked to be ours).
    modes: Modes,
}

impl Cache {
    pub fn new(root: PathBuf, max_level: u8, modes: Modes) -> Cache {
        Cache {
            root,
            max_level,
            modes,
        }
    }

    /// `<spool>/cache/<level>/<min>-<max>.ltx`.
    pub fn path(&self, id: FileId) -> PathBuf {
        self.root
            .join(id.level.to_string())
            .join(keys::ltx_filename(id.min_txid, id.max_txid))
    }

    pub fn remove(&self, id: FileId) {
        let _ = std::fs::remove_file(self.path(id));
    }

    /// Keeps `file`, just uploaded as `id`, if a higher level will compact it; else
    /// removes it.
    pub fn keep(&self, id: FileId, file: &Path, size: u64) {
        let path = self.path(id);
        let kept = id.level < self.max_level
            && size <= MAX_CACHED_BYTES
            && path.parent().is_some_and(|dir| {
                self.modes.ensure_dir(&self.root).is_ok() && self.modes.ensure_dir(dir).is_ok()
            })
            && std::fs::rename(file, &path).is_ok();
        if !kept {
            let _ = std::fs::remove_file(file);
        }
    }

    /// Drops local copies the next level already holds or the replica no longer has, so
    /// the cache stays bounded by what the next compactions need.
    pub fn prune(&self, known: &KnownFiles) {
        // Never through a symlink (planted to make this delete files elsewhere): the root
        // and each level must be real directories.
        if !std::fs::symlink_metadata(&self.root).is_ok_and(|m| m.is_dir()) {
            return;
        }
        let Ok(levels) = std::fs::read_dir(&self.root) else {
            return;
        };
        for dir in levels.flatten() {
            if !dir.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_file(dir.path());
                continue;
            }
            let level: Option<u8> = dir.file_name().to_str().and_then(|n| n.parse().ok());
            let next_max = level.map(|l| known.level_max(l + 1));
            let Ok(entries) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let keep = match (level, next_max) {
                    (Some(level), Some(next_max)) => name
                        .to_str()
                        .and_then(keys::parse_ltx_filename)
                        .is_some_and(|(min, max)| {
                            max > next_max && known.contains(file_id(level, min, max))
                        }),
                    _ => false,
                };
                if !keep {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}
