//! Hand-offs: the committed transactions of a WAL generation, written into the spool
//! directory by a process that does not upload the database (another process owns the
//! spool) at the moment it restarts or truncates the log (or, from a connection opened
//! before the load, before a commit that may restart it), so that the owner can append
//! them to the spool even if it had not read them from the log yet. Without this, the
//! owner would find frames it never captured gone and ship a whole snapshot. This module
//! owns the file format (CRC-64 sealed) and its names; it must not touch the spool itself.

use crate::base::held_dir::HeldDir;
use crate::base::private_fs::{self, Modes};
use crate::wal::{CommittedTxn, WalPosition};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"RPHO";
const VERSION: u32 = 1;

/// One transaction and the running WAL checksum after its commit frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedTxn {
    pub txn: CommittedTxn,
    pub end_cksum: (u32, u32),
}

/// What a process handed off when the log it wrote to was about to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// Salts of the log that is going away.
    pub old_salts: (u32, u32),
    /// Its committed transactions, in log order (all of them: the writer does not know
    /// how far the owner got).
    pub txns: Vec<HandedTxn>,
    /// What happens to the log next.
    pub next: NextLog,
}

/// What the process handing a log off knew about what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextLog {
    /// It is truncated or deleted.
    Gone,
    /// A new log with these salts replaces it (the writer saw the new header).
    Restart((u32, u32)),
    /// A connection opened before the load is about to commit and may restart it (SQLite
    /// does so while writing the commit's first frame, unseen): SQLite's commit counter
    /// was `change`, so a new log continues this one only if the counter moved by exactly
    /// the commits it holds (see `crate::shim`'s vouching).
    MayRestart { change: u32 },
}

impl NextLog {
    /// (kind, two values) as the file stores them.
    fn encode(self) -> (u32, u32, u32) {
        match self {
            NextLog::Gone => (0, 0, 0),
            NextLog::Restart((a, b)) => (1, a, b),
            NextLog::MayRestart { change } => (2, change, 0),
        }
    }

    fn decode(kind: u32, a: u32, b: u32) -> Option<NextLog> {
        match kind {
            0 => Some(NextLog::Gone),
            1 => Some(NextLog::Restart((a, b))),
            2 => Some(NextLog::MayRestart { change: a }),
            _ => None,
        }
    }
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

impl Handoff {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        put32(&mut out, VERSION);
        let (kind, n1, n2) = self.next.encode();
        put32(&mut out, kind);
        put32(&mut out, n1);
        put32(&mut out, n2);
        put32(&mut out, self.old_salts.0);
        put32(&mut out, self.old_salts.1);
        put32(&mut out, self.txns.len() as u32);
        for h in &self.txns {
            put32(&mut out, h.txn.end.frame);
            put32(&mut out, h.end_cksum.0);
            put32(&mut out, h.end_cksum.1);
            put32(&mut out, h.txn.page_size);
            put32(&mut out, h.txn.commit_size);
            put32(&mut out, h.txn.pages.len() as u32);
            for (pgno, page) in &h.txn.pages {
                put32(&mut out, *pgno);
                out.extend_from_slice(page);
            }
        }
        let crc = crate::ltx::crc64(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// `None` for anything torn, truncated or not a hand-off, and for transactions no WAL
    /// holds (a page size SQLite cannot have, a page number outside the database).
    pub fn decode(bytes: &[u8]) -> Option<Handoff> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
        if crate::ltx::crc64(body) != u64::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader { body, at: 0 };
        if r.take(4)? != MAGIC || r.u32()? != VERSION {
            return None;
        }
        let next = NextLog::decode(r.u32()?, r.u32()?, r.u32()?)?;
        let old_salts = (r.u32()?, r.u32()?);
        let count = r.u32()?;
        let mut txns = Vec::new();
        for _ in 0..count {
            let frame = r.u32()?;
            let end_cksum = (r.u32()?, r.u32()?);
            let page_size = r.u32()?;
            let commit_size = r.u32()?;
            let npages = r.u32()?;
            // What a WAL transaction can hold, as the spool records it goes into require.
            if !crate::wal::is_valid_page_size(page_size) {
                return None;
            }
            let mut pages = Vec::new();
            for _ in 0..npages {
                let pgno = r.u32()?;
                if !(1..=commit_size).contains(&pgno) {
                    return None;
                }
                pages.push((pgno, r.take(page_size as usize)?.to_vec()));
            }
            txns.push(HandedTxn {
                txn: CommittedTxn {
                    page_size,
                    commit_size,
                    end: WalPosition::new(old_salts, frame),
                    pages,
                },
                end_cksum,
            });
        }
        Some(Handoff {
            old_salts,
            txns,
            next,
        })
    }
}

struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.body.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

const DIR: &str = "handoff";

/// Writes a hand-off atomically (temporary file, fsync, rename) under the spool directory;
/// names sort in the order they were written. Returns its path.
pub fn write(spool_dir: &Path, handoff: &Handoff) -> std::io::Result<PathBuf> {
    // Written by a process that does not own the spool: it holds the directory too (a
    // symlink or another user's is refused), copies the spool's own mode, and writes
    // through the held directory, so a spool swapped after the check is not written.
    let refused = |d: &Path, e| std::io::Error::other(format!("{}: {e}", d.display()));
    let spool =
        HeldDir::ensure(spool_dir, Modes::inside(spool_dir)).map_err(|e| refused(spool_dir, e))?;
    let modes = Modes::like_file_mode(spool.metadata()?.mode() & 0o666);
    let dir = spool
        .ensure_sub(DIR, modes)
        .map_err(|e| refused(&spool.shown(DIR), e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{nanos:020}-{}", std::process::id());
    modes.write_atomically(&dir.at(&name), &handoff.encode(), true)?;
    Ok(dir.shown(&name))
}

/// The hand-offs waiting in a spool's `handoff/`, held while they are taken in.
pub struct Pending {
    dir: HeldDir,
    /// File names, oldest first, with what each holds (`None` for a torn one).
    pub files: Vec<(String, Option<Handoff>)>,
}

impl Pending {
    /// The path of the hand-off `name`, for messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.dir.shown(name)
    }

    /// Removes the hand-off `name` (taken in, or torn).
    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.at(name));
    }
}

/// The hand-offs waiting in the spool directory `spool`; `None` when there is no `handoff`
/// directory, or it is not a real directory of this process's user (a symlink planted to
/// feed commits in is not read).
pub fn pending(spool: &HeldDir) -> Option<Pending> {
    // Usually there is none: a lookup through the held descriptor says so cheaply.
    if !spool.may_hold(DIR) {
        return None;
    }
    let dir = spool.existing_sub(DIR).ok()?;
    let mut names: Vec<String> = dir
        .names()
        .ok()?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let files = names
        .into_iter()
        .map(|n| {
            let h = private_fs::read(&dir.at(&n))
                .ok()
                .and_then(|b| Handoff::decode(&b));
            (n, h)
        })
        .collect();
    Some(Pending { dir, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handoff {
        let txn = |frame: u32, byte: u8| HandedTxn {
            txn: CommittedTxn {
                page_size: 512,
                commit_size: 3,
                end: WalPosition::new((7, 9), frame),
                pages: vec![(1, vec![byte; 512]), (3, vec![byte ^ 1; 512])],
            },
            end_cksum: (frame, frame + 1),
        };
        Handoff {
            old_salts: (7, 9),
            txns: vec![txn(2, 5), txn(4, 6)],
            next: NextLog::Restart((8, 123)),
        }
    }

    #[test]
    fn round_trips_and_refuses_torn_files() {
        let h = sample();
        let bytes = h.encode();
        assert_eq!(Handoff::decode(&bytes), Some(h.clone()));
        for cut in [0, 1, 20, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(Handoff::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert_eq!(Handoff::decode(&flipped), None);
        let truncate = Handoff {
            next: NextLog::Gone,
            txns: vec![],
            ..h.clone()
        };
        assert_eq!(Handoff::decode(&truncate.encode()), Some(truncate));
        let hooked = Handoff {
            next: NextLog::MayRestart { change: 77 },
            ..h
        };
        let mut bytes = hooked.encode();
        assert_eq!(Handoff::decode(&bytes), Some(hooked));
        // An unknown kind of next log is refused, not taken for a truncate.
        bytes[11] = 3;
        let body = bytes.len() - 8;
        let crc = crate::ltx::crc64(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(Handoff::decode(&bytes), None);
    }

    #[test]
    fn a_handoff_with_an_impossible_page_size_or_page_number_is_refused() {
        // Found by fuzz/fuzz_targets/handoff_decode.rs: a sealed file claiming 65535-byte
        // pages decoded, and its pages would have gone into spool records that recovery
        // cannot read back (dropping every record after them).
        let with = |page_size: u32, pgno: u32| {
            let mut h = sample();
            h.txns[1].txn.page_size = page_size;
            h.txns[1].txn.pages = vec![(pgno, vec![0; page_size as usize])];
            h.encode()
        };
        assert!(Handoff::decode(&with(1024, 3)).is_some());
        for (page_size, pgno) in [(65535, 1), (1000, 1), (513, 1), (1024, 0), (1024, 4)] {
            assert_eq!(
                Handoff::decode(&with(page_size, pgno)),
                None,
                "page size {page_size}, page {pgno}"
            );
        }
    }

    #[test]
    fn files_are_listed_oldest_first() {
        let dir = std::env::temp_dir().join(format!("handoff-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = write(&dir, &sample()).unwrap();
        let b = write(
            &dir,
            &Handoff {
                next: NextLog::Gone,
                ..sample()
            },
        )
        .unwrap();
        std::fs::write(dir.join("handoff/zzz-torn"), b"junk").unwrap();
        let spool = HeldDir::existing(&dir).unwrap();
        let listed = pending(&spool).unwrap();
        let files = &listed.files;
        assert_eq!(files.len(), 3);
        assert_eq!(listed.shown(&files[0].0), a);
        assert_eq!(listed.shown(&files[1].0), b);
        assert!(files[0].1.is_some() && files[2].1.is_none());
        listed.remove(&files[2].0);
        assert_eq!(pending(&spool).unwrap().files.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
