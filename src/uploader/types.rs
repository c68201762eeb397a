//! The values the uploader's parts hand each other: what one step did, and how the LTX
//! files it writes are flagged. It holds no state and does no I/O.

use crate::error::Error;
use crate::ltx;

/// The txid after `txid`: an error once the replica has reached the largest txid an LTX
/// file may carry (only a damaged or hostile object name gets a replica there).
pub fn next_txid(txid: u64) -> Result<u64, Error> {
    txid.checked_add(1)
        .filter(|next| *next <= ltx::MAX_TXID)
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "the replica is at txid {txid}, the largest an LTX file can carry; start a new replica"
            ))
        })
}

/// Why a destination that fell behind the spool's cap is owed a snapshot.
pub(super) const LET_GO: &str =
    "it fell behind the spool's cap: the records it had not shipped were let go of";

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to ship.
    Idle,
    /// Something is pending; come back at this time (ms since the epoch).
    WaitUntil(u64),
    Shipped {
        txid: u64,
    },
    Snapshot {
        txid: u64,
    },
    /// Files of `level - 1` were merged into `files` new files of `level`.
    Compacted {
        level: u8,
        files: usize,
    },
    /// Retention deleted this many files.
    Retained {
        deleted: usize,
    },
    /// The step failed; it will be retried after a backoff, until this time.
    Failed {
        retry_at: u64,
        error: String,
    },
}

impl Step {
    /// Whether the step wrote to the replica: the error state clears, and the thread steps
    /// again at once.
    pub(super) fn wrote(&self) -> bool {
        matches!(
            self,
            Step::Shipped { .. }
                | Step::Snapshot { .. }
                | Step::Compacted { .. }
                | Step::Retained { .. }
        )
    }

    /// This step (idle or waiting), woken no later than `at` (`u64::MAX`: no time of its
    /// own); a step that did something is returned as it is.
    pub(super) fn wake_by(self, at: u64) -> Step {
        match self {
            Step::Idle if at != u64::MAX => Step::WaitUntil(at),
            Step::WaitUntil(t) => Step::WaitUntil(t.min(at)),
            other => other,
        }
    }
}

/// LTX flags we write: no database checksums in the files, as Litestream 0.5 writes them,
/// because `litestream restore` rejects a restore whose last file carries a post-apply
/// checksum (see `ltx`). We still track the database checksum in the spool (`pages.crc`).
pub const LTX_FLAGS: u32 = ltx::FLAG_NO_CHECKSUM;

/// The checksum value a header or trailer carries under `LTX_FLAGS`.
pub(super) fn carried_checksum(raw: u64) -> u64 {
    if LTX_FLAGS & ltx::FLAG_NO_CHECKSUM != 0 {
        0
    } else {
        ltx::DbChecksum(raw).value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_txid_at_the_largest_has_no_next() {
        assert_eq!(next_txid(7).unwrap(), 8);
        assert_eq!(next_txid(ltx::MAX_TXID - 1).unwrap(), ltx::MAX_TXID);
        let e = next_txid(ltx::MAX_TXID).unwrap_err().to_string();
        assert!(e.contains("largest an LTX file can carry"), "{e}");
        assert!(next_txid(u64::MAX).is_err());
    }
}
