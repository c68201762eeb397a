//! What a follower needs of SQLite (`follow::FollowHooks`): the exclusive lock its applies
//! run under, taken by a private connection so SQLite's own readers wait for it, and the
//! integrity check of a restored state. Also the open of a follower's copy: the URI
//! parameters read, and the copy opened read-only for the application.

use super::sqlite::{integrity_check, Connection};
use crate::error::Error;
use crate::follow::FollowHooks;
use crate::restore::CheckFailure;
use std::path::Path;

/// How long an apply waits for readers to leave their transactions: while it waits, its
/// pending lock keeps new readers out, so a long read transaction must not stall all the
/// others; the apply is tried again at the next poll.
const LOCK_WAIT_MS: u32 = 250;

pub(super) struct SqliteFollowHooks;

pub(super) static HOOKS: SqliteFollowHooks = SqliteFollowHooks;

impl FollowHooks for SqliteFollowHooks {
    fn exclusively(
        &self,
        path: &Path,
        f: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        let conn = Connection::open(path, false)?;
        conn.exec(&format!("PRAGMA busy_timeout={LOCK_WAIT_MS}"))?;
        conn.exec("BEGIN EXCLUSIVE")?;
        let result = f();
        // Nothing of this connection's own was written: ending the transaction only
        // releases the lock.
        let ended = conn.exec("ROLLBACK");
        result.and(ended)
    }

    fn check(&self, path: &Path) -> Result<(), CheckFailure> {
        integrity_check(path, true)
    }

    fn to_wal(&self, path: &Path) -> Result<(), Error> {
        let conn = Connection::open(path, false)?;
        conn.exec("PRAGMA busy_timeout=5000")?; // once, at a promotion
        let mode = conn.query_column("PRAGMA journal_mode=WAL")?;
        match mode.first().map(String::as_str) {
            Some("wal") => Ok(()),
            other => Err(Error::Io(format!(
                "{}: switching to WAL mode left it in {other:?} mode",
                path.display()
            ))),
        }
    }
}

/// A main database is being opened: when its URI says `replica_follow=URL`, this process
/// follows that replica into it (restored first when missing); whether the file is a
/// follower's copy, which the application may only read.
pub(super) fn at_open(name: &str, param: &dyn Fn(&str) -> Option<String>) -> Result<bool, Error> {
    use crate::functions::follow::{follow_at_open, FOLLOW_PARAM, INTERVAL_PARAM};
    let path = Path::new(name);
    if name.is_empty() {
        return Ok(false);
    }
    match param(FOLLOW_PARAM) {
        Some(url) => {
            let interval = param(INTERVAL_PARAM);
            follow_at_open(path, &url, interval.as_deref(), &HOOKS)?;
            Ok(true)
        }
        None => Ok(crate::follow::is_followed(path)),
    }
}
