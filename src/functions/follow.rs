//! `?replica_follow=URL`: what the URI parameters of a follower's connection mean (the
//! replica, `replica_follow_interval` in milliseconds) and their errors. The copy itself is
//! kept by `follow`.

use super::scope::open_replica;
use crate::config;
use crate::error::Error;
use crate::follow::{self, FollowHooks, Source, DEFAULT_INTERVAL_MS};
use std::path::Path;

/// The URI parameter naming the replica a connection's database follows.
pub const FOLLOW_PARAM: &str = "replica_follow";
/// Its poll interval, in milliseconds.
pub const INTERVAL_PARAM: &str = "replica_follow_interval";

/// The shortest and longest poll intervals accepted (10 ms, a day).
const INTERVALS: std::ops::RangeInclusive<u64> = 10..=86_400_000;

/// A connection opens `path` with `?replica_follow=url`: the process follows that replica
/// into `path` (restoring it first when missing) unless it already does.
pub fn follow_at_open(
    path: &Path,
    url: &str,
    interval: Option<&str>,
    hooks: &'static dyn FollowHooks,
) -> Result<(), Error> {
    let interval_ms = parse_interval(interval)?;
    let target = config::parse_replica_url(url, &config::Env::from_process())
        .map_err(|e| Error::InvalidArgument(format!("{FOLLOW_PARAM}: {e}")))?;
    let (store, prefix) = open_replica(&target)?;
    let source = Source {
        store,
        prefix,
        replica_url: target.url(),
        follow_url: url.to_string(),
        interval_ms,
    };
    follow::start(path, source, hooks)
}

/// How long a promotion waits for the new writer's first snapshot.
const FIRST_UPLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `replica_promote([path])`: the follower's copy (`path`, else the connection's database)
/// becomes the writer of the replica it followed, continuing its txids and history once the
/// old writer's lease has expired. Returns the txid of its first upload, a snapshot. Connections opened
/// while it followed stay read-only: reopen them to write.
pub fn promote(db_arg: Option<&str>, conn_db: Option<&Path>) -> Result<i64, Error> {
    let path =
        match (db_arg, conn_db) {
            (Some(p), _) => std::path::absolute(p)
                .map_err(|e| Error::InvalidArgument(format!("replica_promote: {p}: {e}")))?,
            (None, Some(p)) => p.to_path_buf(),
            (None, None) => return Err(Error::InvalidArgument(
                "replica_promote: name the follower's copy (this connection has no database file)"
                    .into(),
            )),
        };
    // What could refuse the new writer is checked before the follower stops.
    let url = follow::follow_url_of(&path)?;
    let cfgs = crate::shim::resolve_with_url(&path, &url)?.ok_or_else(|| {
        Error::NotReplicated(format!(
            "replica_promote: {} cannot replicate to the replica it followed (see replica_status() warnings)",
            path.display()
        ))
    })?;
    let spool = crate::spool::Spool::dir_for(&path);
    if spool.exists() {
        return Err(Error::InvalidArgument(format!(
            "replica_promote: {} exists (the spool of an earlier writer here?): remove it to promote this copy",
            spool.display()
        )));
    }
    let promoted = follow::promote(&path, crate::base::clock::now_ms())?;
    let state = crate::spool::SpoolState {
        replica_url: cfgs[0].url(),
        txid: promoted.txid,
        page_size: promoted.base.page_size,
        commit: promoted.base.commit,
        lineage: promoted.base.lineage,
        ..Default::default()
    };
    crate::spool::Spool::continue_history_before_open(&path, &state)?;
    let db = crate::shim::open_database(&path, cfgs)?;
    // The new writer's first upload (a snapshot after the replica's newest txid, in its
    // history) goes up before the application writes: written meanwhile, it would be taken
    // again for the commits that raced it.
    let first = promoted.txid + 1;
    let shipped = db.wait_for(FIRST_UPLOAD_WAIT, |p| {
        p.txid >= first && p.needs_snapshot.is_none()
    });
    match shipped {
        Ok(_) => Ok(first as i64),
        Err(now) => Err(Error::Io(format!(
            "replica_promote: {} now writes the replica, but its first snapshot is not up after {} s ({}); replica_status() shows its progress",
            path.display(),
            FIRST_UPLOAD_WAIT.as_secs(),
            now.first().and_then(|p| p.last_error.clone()).unwrap_or_else(|| "still uploading".into())
        ))),
    }
}

fn parse_interval(v: Option<&str>) -> Result<u64, Error> {
    let Some(v) = v else {
        return Ok(DEFAULT_INTERVAL_MS);
    };
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| INTERVALS.contains(ms))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{INTERVAL_PARAM}={v:?}: give the poll interval in milliseconds, from {} to {}",
                INTERVALS.start(),
                INTERVALS.end()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_milliseconds_within_bounds() {
        assert_eq!(parse_interval(None).unwrap(), 1000);
        assert_eq!(parse_interval(Some("100")).unwrap(), 100);
        for bad in ["0", "9", "1s", "", "-5", "86400001"] {
            let e = parse_interval(Some(bad)).unwrap_err().to_string();
            assert!(
                e.contains(INTERVAL_PARAM) && e.contains("milliseconds"),
                "{e}"
            );
        }
    }
}
