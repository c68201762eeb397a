//! The `log-gone` file: the database file's stamp at the moment the log capture followed
//! went away (checkpointed, then deleted or truncated) with every commit of it in the spool.
//! Without a log, SQLite in WAL mode writes the database file only in a later log's
//! checkpoint, or in rollback-journal mode: a process without the extension that writes
//! and closes leaves no log to catch up from, only a changed file. The next log started
//! after none continues the spool only if the file still carries this stamp. A pure format
//! and the spool's two calls; the stamp itself is read by the caller.

use super::error::{io, SpoolError};
use super::handle::Spool;
use crate::base::private_fs;
use std::io::Read;

const FILE: &str = "log-gone";
/// A line is far shorter: a longer file is not one this spool wrote.
const MAX_LINE: u64 = 256;

/// What identifies a version of a file without reading it: any write changes its size or
/// its modification time (set from the kernel's clock tick, so two writes within one tick
/// can share one), a replacement its inode. Not the device number (it can change across
/// a remount on some file systems) nor the change time (a chmod or chown changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
}

impl FileStamp {
    /// The stamp of the file at `path` now.
    pub fn of(path: &std::path::Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
        })
    }

    fn fields(&self) -> [i128; 4] {
        [
            self.ino as i128,
            self.size as i128,
            self.mtime.0 as i128,
            self.mtime.1 as i128,
        ]
    }

    /// One line: the fields in decimal and a CRC-64 of them, so a torn write reads as none.
    pub(super) fn line(&self) -> String {
        let text = self.fields().map(|f| f.to_string()).join(",");
        format!("{text},{:016x}\n", crate::ltx::crc64(text.as_bytes()))
    }

    pub(super) fn parse(line: &str) -> Option<FileStamp> {
        let (text, check) = line.strip_suffix('\n')?.rsplit_once(',')?;
        if u64::from_str_radix(check, 16).ok()? != crate::ltx::crc64(text.as_bytes()) {
            return None;
        }
        let f: Vec<&str> = text.split(',').collect();
        let [ino, size, secs, nanos] = f[..] else {
            return None;
        };
        Some(FileStamp {
            ino: ino.parse().ok()?,
            size: size.parse().ok()?,
            mtime: (secs.parse().ok()?, nanos.parse().ok()?),
        })
    }
}

impl Spool {
    /// Records that the log went away with everything in the spool, the database file then
    /// carrying `stamp`.
    pub fn record_log_gone(&self, stamp: &FileStamp) -> Result<(), SpoolError> {
        self.modes
            .write_atomically(&self.dir.at(FILE), stamp.line().as_bytes(), false)
            .map_err(|e| io("writing", &self.dir.shown(FILE), e))
    }

    /// The stamp `record_log_gone` last left (none if unreadable, torn or not this spool's
    /// format). It is kept: a file that still carries it was written by no one since, so
    /// it vouches for every log that starts before the file changes.
    pub fn log_gone(&self) -> Option<FileStamp> {
        let mut text = String::new();
        private_fs::open_read(&self.dir.at(FILE))
            .and_then(|f| f.take(MAX_LINE).read_to_string(&mut text))
            .ok()?;
        FileStamp::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_and_a_torn_or_altered_one_reads_as_none() {
        let s = FileStamp {
            ino: 1 << 40,
            size: 8192,
            mtime: (-1, 999_999_999),
        };
        let line = s.line();
        assert_eq!(FileStamp::parse(&line), Some(s));
        for cut in 0..line.len() {
            assert_eq!(FileStamp::parse(&line[..cut]), None, "cut at {cut}");
        }
        let altered = line.replacen("8192", "8193", 1);
        assert_eq!(FileStamp::parse(&altered), None);
        assert_eq!(FileStamp::parse("1,2,3,4\n"), None);
    }
}
