//! Synchronous commits (`replica_sync=commit`): a connection's COMMIT returns only once the
//! transaction is in the replica. The setting lives in the `pArg` of SQLite's WAL hook (no
//! allocation, nothing to free when the connection closes), packed by these pure helpers,
//! together with whether the hook also captures the connection's commits (a connection
//! opened before the extension was loaded); they must do no I/O and keep no state.

use crate::error::Error;

/// Default wait of a synchronous COMMIT for its upload.
pub const DEFAULT_TIMEOUT_MS: u32 = 5_000;
const TAG: u64 = 1 << 63;

const CAPTURE: u64 = 1 << 31;
/// The largest auto-checkpoint size the packed argument keeps (larger ones are clamped).
pub const MAX_AUTOCHECKPOINT: u32 = 0x7fff_ffff;

/// What a connection's WAL hook does after each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long COMMIT waits for the replica; 0 = it does not (asynchronous commits).
    pub timeout_ms: u32,
    /// `PRAGMA wal_autocheckpoint` as it was: the WAL hook replaces SQLite's own
    /// auto-checkpoint hook, so it runs the same checkpoint itself.
    pub autocheckpoint: u32,
    /// The connection was opened before the load: the hook captures its commits.
    pub capture: bool,
}

impl Settings {
    pub fn pack(self) -> u64 {
        TAG | (u64::from(self.timeout_ms.min(0x7fff_ffff)) << 32)
            | if self.capture { CAPTURE } else { 0 }
            | u64::from(self.autocheckpoint.min(MAX_AUTOCHECKPOINT))
    }
    /// `None` for a WAL-hook argument that is not ours (another hook, or none).
    pub fn unpack(arg: u64) -> Option<Settings> {
        (arg & TAG != 0).then_some(Settings {
            timeout_ms: ((arg >> 32) & 0x7fff_ffff) as u32,
            autocheckpoint: (arg as u32) & MAX_AUTOCHECKPOINT,
            capture: arg & CAPTURE != 0,
        })
    }

    /// Whether COMMIT waits for the replica.
    pub fn synchronous(self) -> bool {
        self.timeout_ms > 0
    }
}

/// `'commit'` (synchronous) or `'async'` (the default), as `replica_sync_mode()` and the
/// `replica_sync` URI parameter take them.
pub fn parse_mode(s: &str) -> Result<bool, Error> {
    match s.trim().to_ascii_lowercase().as_str() {
        "commit" | "sync" | "on" => Ok(true),
        "async" | "off" | "" => Ok(false),
        other => Err(Error::InvalidArgument(format!(
            "replica sync mode must be 'commit' (COMMIT waits for the replica) or 'async', got {other:?}"
        ))),
    }
}

/// The timeout argument: 1 ms up to about 24 days.
pub fn parse_timeout(ms: i64) -> Result<u32, Error> {
    u32::try_from(ms)
        .ok()
        .filter(|&t| t > 0 && t <= 0x7fff_ffff)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "replica sync timeout must be a positive number of milliseconds, got {ms}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_foreign_args_are_not_ours() {
        let s = Settings {
            timeout_ms: 5000,
            autocheckpoint: 1000,
            capture: false,
        };
        assert_eq!(Settings::unpack(s.pack()), Some(s));
        let max = Settings {
            timeout_ms: 0x7fff_ffff,
            autocheckpoint: MAX_AUTOCHECKPOINT,
            capture: true,
        };
        assert_eq!(Settings::unpack(max.pack()), Some(max));
        let clamped = Settings {
            autocheckpoint: u32::MAX,
            ..max
        };
        assert_eq!(Settings::unpack(clamped.pack()), Some(max));
        let capture_only = Settings {
            timeout_ms: 0,
            autocheckpoint: 1000,
            capture: true,
        };
        assert_eq!(Settings::unpack(capture_only.pack()), Some(capture_only));
        assert!(!capture_only.synchronous() && s.synchronous());
        assert_eq!(Settings::unpack(0), None);
        assert_eq!(
            Settings::unpack(1000),
            None,
            "SQLite's own hook passes the page count"
        );
    }

    #[test]
    fn modes_and_timeouts() {
        assert!(parse_mode("commit").unwrap() && parse_mode("COMMIT").unwrap());
        assert!(!parse_mode("async").unwrap());
        assert!(parse_mode("later")
            .unwrap_err()
            .to_string()
            .contains("'commit'"));
        assert_eq!(parse_timeout(250).unwrap(), 250);
        assert!(parse_timeout(0).is_err() && parse_timeout(-5).is_err());
        assert!(parse_timeout(1 << 40).is_err());
    }
}
