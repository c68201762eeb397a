//! The restore a database gets when it is opened missing (see
//! `shim::restore_needed_before_open`): a replica without files means a new database; with
//! several destinations, the newest one with files is restored, falling back to the next.
//! Its requests fail fast, so an unreachable replica fails the open within seconds. It must
//! not touch SQLite itself (the integrity check is handed in).

use super::restore::{parse_restore_options, restore_tracked, Purpose};
use super::scope::{prefix_of, Source};
use super::sources::{self, Candidate};
use crate::config::{AgeConfig, ReplicaConfig, ReplicaTarget};
use crate::error::{Error, RestoreFailure};
use crate::restore::{CheckFailure, Target};
use std::path::Path;
use std::time::Duration;

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

/// Boot-time restore of a replicated database whose file is missing, from its
/// destinations (`destinations`, the first one first). Its first request to each is not
/// retried when the endpoint does not answer, so an unreachable replica fails the open
/// within one connect and one read timeout (5 s and 10 s unless configured). A failure
/// stays in `replica_status()` until an open succeeds.
pub fn restore_missing(
    path: &Path,
    destinations: &[ReplicaConfig],
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) -> Result<(), Error> {
    match try_restore_missing(path, destinations, check) {
        Ok(()) => {
            crate::status::boot_restore_done(path);
            Ok(())
        }
        Err(e) => {
            let url = destinations
                .first()
                .map(ReplicaConfig::url)
                .unwrap_or_default();
            crate::status::boot_restore_failed(path, url, e.to_string());
            Err(e)
        }
    }
}

fn try_restore_missing(
    path: &Path,
    destinations: &[ReplicaConfig],
    check: &dyn Fn(&Path, bool) -> Result<(), CheckFailure>,
) -> Result<(), Error> {
    let shown = match destinations {
        [only] => only.url(),
        _ => "any of its destinations".to_string(),
    };
    let failed = |e: Error| {
        Error::Restore(RestoreFailure::of(&e), format!(
            "{} does not exist and restoring it from {shown} failed ({e}); not creating an empty database that would be replicated over the replica (set `restore-if-db-not-exists: false` or REPLICA_RESTORE_IF_MISSING=0 to start empty)",
            path.display(),
        ))
    };
    let candidates: Vec<Candidate> = destinations
        .iter()
        .map(|cfg| Candidate {
            source: Source {
                name: Some(cfg.name.clone()),
                target: boot_target(&cfg.target),
            },
            newest_ms: newest_file_ms(&boot_target(&cfg.target), cfg.age.as_ref()),
        })
        .collect();
    // Nothing in any replica (and every one answered): a new database.
    if candidates.iter().all(|c| matches!(c.newest_ms, Ok(None))) {
        return Ok(());
    }
    if let [Candidate {
        newest_ms: Err(_), ..
    }] = candidates.as_slice()
    {
        let e = candidates
            .into_iter()
            .next()
            .and_then(|c| c.newest_ms.err());
        return Err(failed(e.expect("matched an error")));
    }
    let opts = parse_restore_options(None)?;
    let attempt = |source: &Source| {
        let how = (opts.clone(), Purpose::Boot);
        restore_tracked(
            &source.target,
            path,
            Target::Latest,
            how,
            check,
            &|_| Ok(()),
        )
    };
    let with_files = candidates
        .into_iter()
        .filter(|c| !matches!(c.newest_ms, Ok(None)))
        .collect();
    let shown_path = path.display().to_string();
    let newest = sources::newest_first(with_files);
    let (restored, from) = match sources::first_that_restores(&shown_path, newest, attempt) {
        Ok(r) => r,
        // Another process restored (or created) it meanwhile: open that one.
        Err(_) if path.exists() => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    owe_the_others_a_snapshot(path, destinations, &from);
    crate::base::log::notice(&format!(
        "{} was missing: restored it from {shown} at txid {} ({} files, {} bytes)",
        path.display(),
        restored.txid,
        restored.files,
        restored.bytes_downloaded
    ));
    Ok(())
}

/// The database now holds the state of the destination `from`; a spool kept beside it
/// (the file alone was lost) still says the others hold theirs, which may be newer:
/// shipping on from there would build on a state the database no longer has. Each of
/// the others is owed a snapshot.
fn owe_the_others_a_snapshot(path: &Path, destinations: &[ReplicaConfig], from: &Source) {
    let reason = format!(
        "the database was restored at open from {}, which may be older than this replica",
        from.describe()
    );
    for (d, cfg) in destinations.iter().enumerate() {
        if from.name.as_deref() != Some(cfg.name.as_str()) {
            crate::spool::Spool::owe_snapshot_before_open(path, d, &cfg.name, &reason);
        }
    }
}

/// When the latest file of a replica was written (`None`: it holds no file), listed with
/// requests that fail fast.
fn newest_file_ms(replica: &ReplicaTarget, age: Option<&AgeConfig>) -> Result<Option<u64>, Error> {
    let store = crate::store::open_failing_fast(replica, age)?;
    let listed = sources::newest_in(store.as_ref(), &prefix_of(replica));
    crate::database::note_outside_requests(replica, store.request_counts());
    listed
}
