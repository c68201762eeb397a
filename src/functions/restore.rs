//! `replica_restore`: the meaning of the point-in-time and options arguments, where a
//! restore may write, and the restore engine run with its progress shown in status (the
//! restore a database gets when it is opened missing is `boot_restore`'s). It must not
//! touch SQLite itself (the integrity check and the lock probe are handed in) nor restore
//! over anything [`super::target`] refuses.

use super::scope::{open_replica, resolve_sources, Source};
use super::sources;
use super::target::{self, LockProbe};
use crate::config::ReplicaTarget;
use crate::error::Error;
use crate::restore::{self, CheckFailure, RestoreRequest, Target, Tuning};
use crate::status::RestoreTracker;
use std::path::Path;

/// Parses `replica_restore`'s point-in-time argument: a txid or an RFC 3339 timestamp.
pub fn parse_point(s: Option<&str>) -> Result<Target, Error> {
    let Some(s) = s
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("latest"))
    else {
        return Ok(Target::Latest);
    };
    let txid = s.parse::<u64>().ok().or_else(|| {
        s.strip_prefix("0x")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
    });
    if let Some(t) = txid {
        return if t <= crate::ltx::MAX_TXID {
            Ok(Target::Txid(t))
        } else {
            Err(Error::InvalidArgument(format!(
                "replica_restore: txid {t} is above the largest a replica can hold ({})",
                crate::ltx::MAX_TXID
            )))
        };
    }
    crate::base::clock::parse_rfc3339(s).map(Target::Timestamp).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "replica_restore: point in time {s:?} is neither a txid nor an RFC 3339 timestamp like 2026-11-25T18:00:00Z"
        ))
    })
}

/// `replica_restore`'s options: comma-separated `overwrite`, `quick` (or `full`, the
/// default), `parallelism=N`, `replica=<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    pub overwrite: bool,
    /// `PRAGMA integrity_check` (the default) rather than `quick_check`. Only the full check
    /// compares every index with its table: a page from another database or another state
    /// that leaves the b-trees well formed (a same-named file from a database of the same
    /// schema) passes `quick_check` and fails this. It costs more on indexed tables.
    pub full_check: bool,
    pub parallelism: usize,
    /// The destination to restore from (`replica=<name>`), with no falling back to the
    /// others; `None`: the newest one that restores.
    pub replica: Option<String>,
}

pub fn parse_restore_options(options: Option<&str>) -> Result<RestoreOptions, Error> {
    let mut o = RestoreOptions {
        overwrite: false,
        full_check: true,
        parallelism: restore::DEFAULT_PARALLELISM,
        replica: None,
    };
    for opt in options
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        let bad = |what: String| Error::InvalidArgument(format!("replica_restore: {what}"));
        match opt.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            None if opt == "overwrite" => o.overwrite = true,
            None if opt == "full" => o.full_check = true,
            None if opt == "quick" => o.full_check = false,
            Some(("parallelism", n)) => {
                o.parallelism = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| bad(format!("parallelism must be 1 to 64, got {n:?}")))?
            }
            Some(("replica", name)) if !name.is_empty() => o.replica = Some(name.to_string()),
            _ => {
                return Err(bad(format!(
                    "unknown option {opt:?} (known: overwrite, quick, full, parallelism=N, replica=NAME)"
                )))
            }
        }
    }
    Ok(o)
}

/// Why a restore runs, which decides what it must also do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// `replica_restore`.
    Asked,
    /// At open of a missing database: never replace a file that appears meanwhile.
    Boot,
    /// `replica_verify`: the restored file's database checksum is needed.
    Drill,
}

/// Restores `replica` into `output`, showing progress in status while it runs.
/// `before_publish` has the last word on the output path (see `Tuning::before_publish`).
pub(super) fn restore_tracked(
    replica: &ReplicaTarget,
    output: &Path,
    target: Target,
    (opts, purpose): (RestoreOptions, Purpose),
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
    before_publish: &dyn Fn(&Path) -> Result<(), Error>,
) -> Result<restore::Restored, Error> {
    let (store, prefix) = open_replica(replica)?;
    let tracker = RestoreTracker::start(replica.url(), output);
    let restored = restore::restore_with(
        &RestoreRequest {
            store: store.as_ref(),
            prefix: &prefix,
            output,
            target,
            overwrite: opts.overwrite,
            check: &|p| check(p, opts.full_check),
        },
        &Tuning {
            parallelism: opts.parallelism,
            want_checksum: purpose == Purpose::Drill,
            exclusive: purpose == Purpose::Boot,
            progress: &|p| tracker.update(p),
            before_publish,
            ..Default::default()
        },
    );
    crate::database::note_outside_requests(replica, store.request_counts());
    restored
}

/// `replica_restore(src, output, point, options)`: `check` runs SQLite's integrity check on
/// the restored file, `locked` probes SQLite's locks on an existing target (see
/// [`super::target`] for where a restore may write, checked again just before publishing).
pub fn restore(
    src: &str,
    output: &str,
    point: Option<&str>,
    options: Option<&str>,
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
    locked: &LockProbe,
) -> Result<i64, Error> {
    let opts = parse_restore_options(options)?;
    if output.is_empty() {
        return Err(Error::InvalidArgument(
            "replica_restore: the target path is empty".into(),
        ));
    }
    let output = target::vet(Path::new(output), opts.overwrite, locked)?;
    let point = parse_point(point)?;
    let sources = sources::chosen(resolve_sources(src)?, opts.replica.as_deref(), &point)?;
    let vet_again = |p: &Path| target::vet(p, opts.overwrite, locked).map(|_| ());
    let attempt = |source: &Source| {
        let how = (opts.clone(), Purpose::Asked);
        restore_tracked(&source.target, &output, point, how, check, &vet_again)
    };
    let restored = sources::first_that_restores(src, sources, attempt);
    // From the destination asked for: its error says which one failed.
    let (restored, _) = match (&opts.replica, restored) {
        (Some(name), Err(e)) => Err(sources::from_named(name, e)),
        (_, restored) => restored,
    }?;
    Ok(restored.txid as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_in_time_parse_or_fail_clearly() {
        assert_eq!(parse_point(None).unwrap(), Target::Latest);
        assert_eq!(parse_point(Some("")).unwrap(), Target::Latest);
        assert_eq!(parse_point(Some("42")).unwrap(), Target::Txid(42));
        assert_eq!(parse_point(Some("0x2a")).unwrap(), Target::Txid(42));
        assert_eq!(
            parse_point(Some("1970-01-01T00:00:01Z")).unwrap(),
            Target::Timestamp(1000)
        );
        let e = parse_point(Some("last tuesday")).unwrap_err().to_string();
        assert!(e.contains("neither a txid nor an RFC 3339"), "{e}");
    }

    #[test]
    fn a_txid_at_u64_max_is_refused() {
        let max = crate::ltx::MAX_TXID;
        assert_eq!(
            parse_point(Some(&max.to_string())).unwrap(),
            Target::Txid(max)
        );
        for big in [
            (max + 1).to_string(),
            u64::MAX.to_string(),
            "0xffffffffffffffff".to_string(),
        ] {
            let e = parse_point(Some(&big)).unwrap_err().to_string();
            assert!(e.contains("above the largest"), "{big}: {e}");
        }
    }

    #[test]
    fn restore_options_parse_or_fail_clearly() {
        let o = parse_restore_options(Some("overwrite, parallelism=3,full")).unwrap();
        assert_eq!(
            o,
            RestoreOptions {
                overwrite: true,
                full_check: true,
                parallelism: 3,
                replica: None,
            }
        );
        assert_eq!(
            parse_restore_options(None).unwrap(),
            RestoreOptions {
                overwrite: false,
                full_check: true,
                parallelism: restore::DEFAULT_PARALLELISM,
                replica: None,
            },
            "by default, a restore checks indexes against their tables"
        );
        assert!(!parse_restore_options(Some("quick")).unwrap().full_check);
        assert!(
            parse_restore_options(Some("quick,full"))
                .unwrap()
                .full_check
        );
        assert_eq!(
            parse_restore_options(Some("replica=b2"))
                .unwrap()
                .replica
                .as_deref(),
            Some("b2")
        );
        for bad in ["parallelism=0", "parallelism=x", "fast", "replica="] {
            assert!(parse_restore_options(Some(bad)).is_err(), "{bad}");
        }
    }
}
