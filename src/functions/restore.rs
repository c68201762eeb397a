//! `replica_restore` and the restore a database gets when it is opened missing: the
//! meaning of the point-in-time and options arguments, where a restore may write, and the
//! restore engine run with its progress shown in status. It must not touch SQLite itself
//! (the integrity check and the lock probe are handed in) nor restore over anything
//! [`super::target`] refuses.

use super::scope::{open_replica, resolve_source};
use super::target::{self, LockProbe};
use crate::config::ReplicaTarget;
use crate::error::{Error, RestoreFailure};
use crate::restore::{self, CheckFailure, RestoreRequest, Target, Tuning};
use crate::status::RestoreTracker;
use std::path::Path;
use std::time::Duration;

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
/// default), `parallelism=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    pub overwrite: bool,
    /// `PRAGMA integrity_check` (the default) rather than `quick_check`. Only the full check
    /// compares every index with its table: a page from another database or another state
    /// that leaves the b-trees well formed (a same-named file from a database of the same
    /// schema) passes `quick_check` and fails this. It costs more on indexed tables.
    pub full_check: bool,
    pub parallelism: usize,
}

pub fn parse_restore_options(options: Option<&str>) -> Result<RestoreOptions, Error> {
    let mut o = RestoreOptions {
        overwrite: false,
        full_check: true,
        parallelism: restore::DEFAULT_PARALLELISM,
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
            _ => {
                return Err(bad(format!(
                    "unknown option {opt:?} (known: overwrite, quick, full, parallelism=N)"
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
    let replica = resolve_source(src)?;
    let vet_again = |p: &Path| target::vet(p, opts.overwrite, locked).map(|_| ());
    let restored = restore_tracked(
        &replica,
        &output,
        point,
        (opts, Purpose::Asked),
        check,
        &vet_again,
    )?;
    Ok(restored.txid as i64)
}

/// Timeouts of a boot-time restore whose replica configures none: the application's open
/// waits for it, so an endpoint that does not answer must fail it within seconds, not after
/// the uploader's patient defaults and retries (15 s and 30 s, four tries).
const BOOT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BOOT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `replica` with the boot-time restore's timeouts where it sets none.
fn boot_target(replica: &ReplicaTarget) -> ReplicaTarget {
    let mut replica = replica.clone();
    if let ReplicaTarget::S3(t) = &mut replica {
        t.timeouts.connect.get_or_insert(BOOT_CONNECT_TIMEOUT);
        t.timeouts.read.get_or_insert(BOOT_READ_TIMEOUT);
    }
    replica
}

/// Boot-time restore of a replicated database whose file is missing (see
/// `shim::restore_needed_before_open`): a replica without files means a new database. Its
/// first request is not retried when the endpoint does not answer, so an unreachable
/// replica fails the open within one connect and one read timeout (5 s and 10 s unless
/// configured). A failure stays in `replica_status()` until an open succeeds.
pub fn restore_missing(
    path: &Path,
    replica: &ReplicaTarget,
    age: Option<&crate::config::AgeConfig>,
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) -> Result<(), Error> {
    match try_restore_missing(path, replica, age, check) {
        Ok(()) => {
            crate::status::boot_restore_done(path);
            Ok(())
        }
        Err(e) => {
            crate::status::boot_restore_failed(path, replica.url(), e.to_string());
            Err(e)
        }
    }
}

fn try_restore_missing(
    path: &Path,
    replica: &ReplicaTarget,
    age: Option<&crate::config::AgeConfig>,
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) -> Result<(), Error> {
    let failed = |e: Error| {
        Error::Restore(RestoreFailure::of(&e), format!(
            "{} does not exist and restoring it from {} failed ({e}); not creating an empty database that would be replicated over the replica (set `restore-if-db-not-exists: false` or REPLICA_RESTORE_IF_MISSING=0 to start empty)",
            path.display(),
            replica.url()
        ))
    };
    let replica = &boot_target(replica);
    let store = crate::store::open_failing_fast(replica, age).map_err(|e| failed(e.into()))?;
    let prefix = match replica {
        ReplicaTarget::S3(t) => t.prefix.clone(),
        ReplicaTarget::File { .. } => String::new(),
    };
    let listed = restore::list_objects(store.as_ref(), &prefix).and_then(|ltx| {
        // No LTX file: a Litestream 0.3 replica is restored from too (moving in from it).
        match ltx.is_empty() {
            true => restore::list_ls03(store.as_ref(), &prefix).map(|old| old.is_empty()),
            false => Ok(false),
        }
    });
    crate::database::note_outside_requests(replica, store.request_counts());
    if listed.map_err(failed)? {
        return Ok(());
    }
    let opts = parse_restore_options(None)?;
    let how = (opts, Purpose::Boot);
    let restored = match restore_tracked(replica, path, Target::Latest, how, check, &|_| Ok(())) {
        Ok(r) => r,
        // Another process restored (or created) it meanwhile: open that one.
        Err(_) if path.exists() => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    crate::base::log::notice(&format!(
        "{} was missing: restored it from {} at txid {} ({} files, {} bytes)",
        path.display(),
        replica.url(),
        restored.txid,
        restored.files,
        restored.bytes_downloaded
    ));
    Ok(())
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
                parallelism: 3
            }
        );
        assert_eq!(
            parse_restore_options(None).unwrap(),
            RestoreOptions {
                overwrite: false,
                full_check: true,
                parallelism: restore::DEFAULT_PARALLELISM
            },
            "by default, a restore checks indexes against their tables"
        );
        assert!(!parse_restore_options(Some("quick")).unwrap().full_check);
        assert!(
            parse_restore_options(Some("quick,full"))
                .unwrap()
                .full_check
        );
        for bad in ["parallelism=0", "parallelism=x", "fast"] {
            assert!(parse_restore_options(Some(bad)).is_err(), "{bad}");
        }
    }
}
