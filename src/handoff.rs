//! Hand-offs: the committed transactions of a WAL generation, written into the spool
//! directory by a process that does not upload the database (another process owns the
//! spool) at the moment it restarts or truncates the log, so that the owner can append
//! them to the spool even if it had not read them from the log yet. Without this, the
//! owner would find frames it never captured gone and ship a whole snapshot. This module
//! owns the file format (CRC-64 sealed) and its names; it must not touch the spool itself.

use crate::base::private_fs::{self, Modes};
use crate::wal::{CommittedTxn, WalPosition};
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
    /// Salts of the log that replaces it, when it is a restart (none for a truncate).
    pub next_salts: Option<(u32, u32)>,
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

impl Handoff {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        put32(&mut out, VERSION);
        let (n1, n2) = self.next_salts.unwrap_or((0, 0));
        put32(&mut out, self.next_salts.is_some() as u32);
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
        let has_next = r.u32()? == 1;
        let next = (r.u32()?, r.u32()?);
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
            next_salts: has_next.then_some(next),
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

fn dir_of(spool_dir: &Path) -> PathBuf {
    spool_dir.join("handoff")
}

/// Writes a hand-off atomically (temporary file, fsync, rename) under the spool directory;
/// names sort in the order they were written.
pub fn write(spool_dir: &Path, handoff: &Handoff) -> std::io::Result<PathBuf> {
    // Written by a process that does not own the spool: it checks the directory too (a
    // symlink or another user's is refused), and copies the spool's own mode.
    let modes = Modes::inside(spool_dir);
    let dir = dir_of(spool_dir);
    for d in [spool_dir, &dir] {
        modes
            .ensure_dir(d)
            .map_err(|m| std::io::Error::other(format!("{}: {m}", d.display())))?;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{nanos:020}-{}", std::process::id());
    let path = dir.join(&name);
    modes.write_atomically(&path, &handoff.encode(), true)?;
    Ok(path)
}

/// The hand-offs waiting in the spool directory, oldest first (torn ones are `None`).
pub fn pending(spool_dir: &Path) -> Vec<(PathBuf, Option<Handoff>)> {
    let dir = dir_of(spool_dir);
    // A `handoff` that is not a real directory (a symlink planted to feed commits in) is
    // not read.
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let h = private_fs::read(&p).ok().and_then(|b| Handoff::decode(&b));
            (p, h)
        })
        .collect()
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
            next_salts: Some((8, 123)),
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
            next_salts: None,
            txns: vec![],
            ..h
        };
        assert_eq!(Handoff::decode(&truncate.encode()), Some(truncate));
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
                next_salts: None,
                ..sample()
            },
        )
        .unwrap();
        std::fs::write(dir.join("handoff/zzz-torn"), b"junk").unwrap();
        let listed = pending(&dir);
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].0, a);
        assert_eq!(listed[1].0, b);
        assert!(listed[0].1.is_some() && listed[2].1.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
