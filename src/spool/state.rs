//! The replicated position as the spool keeps it: the `state` file (rewritten atomically
//! after each shipment) and the per-page checksum table `pages.crc`. It must not know about
//! records or segments.

use super::error::{io, SpoolError};
use crate::base::held_dir::HeldDir;
use crate::base::private_fs::{self, Modes};
use crate::wal::WalPosition;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Where the replica stands, as far as this spool knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolState {
    pub replica_url: String,
    /// Last txid known to be in the replica; 0 = nothing shipped yet.
    pub txid: u64,
    pub post_checksum: u64,
    pub page_size: u32,
    /// Database size in pages after `txid`.
    pub commit: u32,
    /// Every record with a sequence number up to this one is in the replica (or subsumed).
    pub shipped_seq: u64,
    /// WAL position (and running WAL checksum) the replicated state ends at, when known.
    pub position: Option<(WalPosition, (u32, u32))>,
    pub shipped_at_ms: u64,
    /// This replication history's id, carried as every file's LTX node id so a restore can
    /// tell another database's file of the same name (0: none yet, or an older spool).
    pub lineage: u64,
}

impl SpoolState {
    /// The state file's text.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "replica_url={}\ntxid={}\npost_checksum={}\npage_size={}\ncommit={}\nshipped_seq={}\nshipped_at_ms={}\n",
            self.replica_url, self.txid, self.post_checksum, self.page_size, self.commit, self.shipped_seq, self.shipped_at_ms
        );
        if self.lineage != 0 {
            s += &format!("lineage={:016x}\n", self.lineage);
        }
        if let Some((p, c)) = self.position {
            s += &format!(
                "position={},{},{},{},{}\n",
                p.salt1, p.salt2, p.frame, c.0, c.1
            );
        }
        s
    }

    /// The state file's text read back; an error names the line or value it cannot read.
    pub fn decode(text: &str) -> Result<SpoolState, String> {
        let mut st = SpoolState::default();
        // A line's trailing CRs are its ending however the file ends (`lines` keeps a CR
        // on a last line without a newline), so a state reads the same after a rewrite.
        for line in text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
        {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("bad line {line:?}"))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("bad value for {k}: {v:?}"))
            };
            match k {
                "replica_url" => st.replica_url = v.to_string(),
                "txid" => {
                    st.txid = num(v)?;
                    if st.txid > crate::ltx::MAX_TXID {
                        return Err(format!(
                            "bad value for {k}: {v:?} (beyond the largest txid)"
                        ));
                    }
                }
                "post_checksum" => st.post_checksum = num(v)?,
                "page_size" => st.page_size = num(v)? as u32,
                "commit" => st.commit = num(v)? as u32,
                "shipped_seq" => st.shipped_seq = num(v)?,
                "shipped_at_ms" => st.shipped_at_ms = num(v)?,
                "position" => st.position = Some(decode_position(v)?),
                "lineage" => {
                    st.lineage = u64::from_str_radix(v, 16)
                        .map_err(|_| format!("bad value for {k}: {v:?}"))?
                }
                _ => {} // written by a newer version: ignore
            }
        }
        Ok(st)
    }
}

fn decode_position(v: &str) -> Result<(WalPosition, (u32, u32)), String> {
    let n: Vec<u32> = v
        .split(',')
        .map(|x| x.parse::<u32>().map_err(|_| format!("bad position {v:?}")))
        .collect::<Result<_, _>>()?;
    if n.len() != 5 {
        return Err(format!("bad position {v:?}"));
    }
    Ok((
        WalPosition {
            salt1: n[0],
            salt2: n[1],
            frame: n[2],
        },
        (n[3], n[4]),
    ))
}

/// The state file of the spool in `dir`, for opening it: `None` when there is none yet.
pub(super) fn read_state(dir: &HeldDir) -> Result<Option<SpoolState>, SpoolError> {
    let state_path = dir.shown("state");
    match private_fs::read_to_string(&dir.at("state")) {
        Ok(t) => SpoolState::decode(&t)
            .map(Some)
            .map_err(|m| SpoolError::Corrupt(format!("{}: {m}", state_path.display()))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", &state_path, e)),
    }
}

/// The state file as the owning process last wrote it, read without opening the spool (from
/// a spool directory this process's user owns).
pub(super) fn read_state_file(dir: &Path) -> Option<SpoolState> {
    let dir = HeldDir::existing(dir).ok()?;
    let text = private_fs::read_to_string(&dir.at("state")).ok()?;
    SpoolState::decode(&text).ok()
}

pub(super) fn write_state(
    dir: &HeldDir,
    modes: Modes,
    state: &SpoolState,
) -> Result<(), SpoolError> {
    modes
        .write_atomically(&dir.at("state"), state.encode().as_bytes(), true)
        .map_err(|e| io("writing", &dir.shown("state"), e))
}

pub(super) fn load_page_checksums(dir: &HeldDir) -> Result<Vec<u64>, SpoolError> {
    let bytes = match private_fs::read(&dir.at("pages.crc")) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io("reading", &dir.shown("pages.crc"), e)),
    };
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect())
}

pub(super) fn store_page_checksums(
    dir: &HeldDir,
    modes: Modes,
    table: &[u64],
    changed: &[u32],
    rewrite_all: bool,
) -> Result<(), SpoolError> {
    let path = dir.at("pages.crc");
    let write = || -> std::io::Result<()> {
        if rewrite_all {
            let mut bytes = Vec::with_capacity(table.len() * 8);
            for v in table {
                bytes.extend_from_slice(&v.to_be_bytes());
            }
            return modes.write_atomically(&path, &bytes, true);
        }
        let f = modes.open_rw().open(&path)?;
        for &pgno in changed {
            if let Some(v) = table.get(pgno as usize - 1) {
                f.write_all_at(&v.to_be_bytes(), (pgno as u64 - 1) * 8)?;
            }
        }
        f.set_len(table.len() as u64 * 8)?;
        f.sync_data()
    };
    write().map_err(|e| io("writing", &dir.shown("pages.crc"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let st = SpoolState {
            replica_url: "file:///x".into(),
            txid: 5,
            post_checksum: u64::MAX,
            page_size: 4096,
            commit: 10,
            shipped_seq: 9,
            position: Some((
                WalPosition {
                    salt1: 1,
                    salt2: 2,
                    frame: 3,
                },
                (4, 5),
            )),
            shipped_at_ms: 12,
            lineage: 0xfedc_ba98_7654_3210,
        };
        assert_eq!(SpoolState::decode(&st.encode()).unwrap(), st);
        let older = SpoolState { lineage: 0, ..st };
        assert!(!older.encode().contains("lineage"));
        assert_eq!(SpoolState::decode(&older.encode()).unwrap(), older);
    }

    #[test]
    fn a_state_reads_the_same_after_it_is_written_back() {
        // Found by fuzz/fuzz_targets/spool_state.rs: a last line ending in CR (no newline)
        // kept the CR in its value, and the state it was written back as read without it.
        for text in [
            "replica_url=s3://b/p\r",
            "replica_url=s3://b/p\r\r\n",
            "txid=5\r",
        ] {
            let st = SpoolState::decode(text).unwrap();
            assert!(!st.replica_url.contains('\r'), "{text:?}");
            assert_eq!(SpoolState::decode(&st.encode()).unwrap(), st, "{text:?}");
        }
    }
}
