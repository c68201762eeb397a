//! Which of a database's destinations a restore reads: the one `replica=` names, else
//! every one, the newest first (by the latest file each lists), each tried in turn until
//! one restores, with a notice naming the one used and why the others were passed over. A
//! point in time given as a txid names a state of one destination's history (each counts
//! its own files), so without `replica=` it is the first destination's. The ordering and
//! the falling back are pure; the listing and the restore are handed in or done through
//! `scope`.

use super::scope::{open_replica, Source};
use crate::error::{Error, RestoreFailure};
use crate::restore::{self, Restored, Target};

/// A destination to try, and what its listing found: the time of its latest file (`None`
/// for an empty replica), or why it could not be listed.
pub(super) struct Candidate {
    pub source: Source,
    pub newest_ms: Result<Option<u64>, Error>,
}

/// The destinations a restore of `sources` (what its first argument resolved to) tries,
/// in order: the one named `replica`, or, for a txid, the first; otherwise every one,
/// newest first. Only several destinations cost a listing each beforehand.
pub(super) fn chosen(
    sources: Vec<Source>,
    replica: Option<&str>,
    point: &Target,
) -> Result<Vec<Candidate>, Error> {
    let unlisted = |source| Candidate {
        source,
        newest_ms: Ok(None),
    };
    if let Some(name) = replica {
        let names: Vec<String> = sources.iter().filter_map(|s| s.name.clone()).collect();
        let Some(source) = sources
            .into_iter()
            .find(|s| s.name.as_deref() == Some(name))
        else {
            return Err(Error::InvalidArgument(format!(
                "replica_restore: replica={name}: no destination of that name (there are: {})",
                if names.is_empty() {
                    "none, a URL was given".into()
                } else {
                    names.join(", ")
                }
            )));
        };
        return Ok(vec![unlisted(source)]);
    }
    if sources.len() == 1 || matches!(point, Target::Txid(_)) {
        return Ok(sources.into_iter().take(1).map(unlisted).collect());
    }
    let listed = sources
        .into_iter()
        .map(|source| {
            let newest_ms = newest_file_ms(&source);
            Candidate { source, newest_ms }
        })
        .collect();
    Ok(newest_first(listed))
}

/// When the latest file of `source`'s replica was written, by its listing.
fn newest_file_ms(source: &Source) -> Result<Option<u64>, Error> {
    let (store, prefix) = open_replica(&source.target)?;
    let listed = newest_in(store.as_ref(), &prefix);
    crate::database::note_outside_requests(&source.target, store.request_counts());
    listed
}

/// When the latest file under `prefix` was written (`None`: there is no file, LTX or
/// Litestream 0.3, which a restore reads when there is no LTX file).
pub(super) fn newest_in(
    store: &dyn crate::store::ObjectStore,
    prefix: &str,
) -> Result<Option<u64>, Error> {
    let ltx = restore::list_objects(store, prefix)?;
    match ltx.iter().map(|o| o.modified_ms).max() {
        Some(ms) => Ok(Some(ms)),
        None => Ok(restore::list_ls03(store, prefix)?
            .iter()
            .map(|o| o.modified_ms)
            .max()),
    }
}

/// Reachable destinations newest first (an empty one after those with files), then those
/// that could not be listed; the configured order among equals.
pub(super) fn newest_first(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by_key(|c| match &c.newest_ms {
        Ok(Some(ms)) => (0, std::cmp::Reverse(*ms)),
        Ok(None) => (1, std::cmp::Reverse(0)),
        Err(_) => (2, std::cmp::Reverse(0)),
    });
    candidates
}

/// Whether a failed restore from one destination may be tried from the next: not when the
/// failure is about the target or the arguments, which no other replica changes.
fn falls_back(e: &Error) -> bool {
    !matches!(e, Error::InvalidArgument(_) | Error::NotReplicated(_))
}

/// Runs `attempt` on each candidate that could be listed, in order, until one restores;
/// says which one did when there were several, and returns it with what it restored. `src`
/// names the database for messages.
pub(super) fn first_that_restores(
    src: &str,
    candidates: Vec<Candidate>,
    mut attempt: impl FnMut(&Source) -> Result<Restored, Error>,
) -> Result<(Restored, Source), Error> {
    let several = candidates.len() > 1;
    let mut passed_over = Vec::new();
    let mut last_error = None;
    let (reachable, unlisted): (Vec<_>, Vec<_>) =
        candidates.into_iter().partition(|c| c.newest_ms.is_ok());
    for Candidate { source, newest_ms } in unlisted {
        if let Err(e) = newest_ms {
            passed_over.push(format!("{}: unreachable ({e})", source.describe()));
            last_error = Some(e);
        }
    }
    for Candidate { source, .. } in reachable {
        match attempt(&source) {
            Ok(restored) => {
                if several {
                    crate::base::log::notice(&restored_from(src, &source, &restored, &passed_over));
                }
                return Ok((restored, source));
            }
            Err(e) if !several || !falls_back(&e) => return Err(e),
            Err(e) => {
                passed_over.push(format!("{}: {}", source.describe(), why_not(&e)));
                last_error = Some(e);
            }
        }
    }
    let kind = last_error
        .as_ref()
        .map_or(RestoreFailure::NothingToRestore, RestoreFailure::of);
    Err(Error::Restore(
        kind,
        format!(
            "replica_restore: no destination of {src} restored: {}",
            passed_over.join("; ")
        ),
    ))
}

/// The error of a restore from the destination `replica=` named, naming it (one that is
/// about the arguments or the target is left as it is).
pub(super) fn from_named(name: &str, e: Error) -> Error {
    if !falls_back(&e) {
        return e;
    }
    Error::Restore(
        RestoreFailure::of(&e),
        format!("replica_restore: from replica '{name}': {}", why_not(&e)),
    )
}

/// Why a destination's restore failed, as the notice and the error say it.
fn why_not(e: &Error) -> String {
    match RestoreFailure::of(e) {
        RestoreFailure::Corrupt => format!("failed verification ({e})"),
        RestoreFailure::Unreadable => format!("unreachable ({e})"),
        _ => e.to_string(),
    }
}

/// The notice of a restore from one of several destinations.
fn restored_from(
    src: &str,
    source: &Source,
    restored: &Restored,
    passed_over: &[String],
) -> String {
    let mut line = format!(
        "restored {src} from {} at txid {}",
        source.describe(),
        restored.txid
    );
    if !passed_over.is_empty() {
        line += &format!("; passed over {}", passed_over.join("; "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplicaTarget;

    fn source(name: &str) -> Source {
        Source {
            name: Some(name.into()),
            target: ReplicaTarget::File {
                dir: format!("/replicas/{name}").into(),
            },
        }
    }

    fn candidate(name: &str, newest_ms: Result<Option<u64>, &str>) -> Candidate {
        Candidate {
            source: source(name),
            newest_ms: newest_ms.map_err(|e| Error::Io(e.into())),
        }
    }

    fn names(c: &[Candidate]) -> Vec<String> {
        c.iter().map(|c| c.source.name.clone().unwrap()).collect()
    }

    #[test]
    fn the_newest_destination_goes_first_and_unreachable_ones_last() {
        let ordered = newest_first(vec![
            candidate("down", Err("connection refused")),
            candidate("empty", Ok(None)),
            candidate("old", Ok(Some(10))),
            candidate("new", Ok(Some(20))),
            candidate("also-old", Ok(Some(10))),
        ]);
        assert_eq!(names(&ordered), ["new", "old", "also-old", "empty", "down"]);
    }

    #[test]
    fn a_named_destination_or_a_txid_is_restored_from_one_destination_only() {
        let both = || vec![source("a"), source("b")];
        let named = chosen(both(), Some("b"), &Target::Latest).unwrap();
        assert_eq!(names(&named), ["b"]);
        let by_txid = chosen(both(), None, &Target::Txid(7)).unwrap();
        assert_eq!(names(&by_txid), ["a"]);
        let e = chosen(both(), Some("c"), &Target::Latest)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("no destination of that name (there are: a, b)"),
            "{e}"
        );
    }

    #[test]
    fn a_failed_destination_falls_back_to_the_next_and_says_so() {
        let restored = |txid| Restored {
            txid,
            ..Restored::default()
        };
        let mut tried = Vec::new();
        let candidates = vec![candidate("a", Ok(Some(20))), candidate("b", Ok(Some(10)))];
        let r = first_that_restores("app.db", candidates, |s| {
            tried.push(s.name.clone().unwrap());
            match s.name.as_deref() {
                Some("a") => Err(Error::Restore(
                    RestoreFailure::Corrupt,
                    "bad checksum".into(),
                )),
                _ => Ok(restored(5)),
            }
        });
        let (restored, from) = r.unwrap();
        assert_eq!((restored.txid, from.name.as_deref()), (5, Some("b")));
        assert_eq!(tried, ["a", "b"]);

        let candidates = vec![
            candidate("a", Err("timed out")),
            candidate("b", Ok(Some(1))),
        ];
        let e = first_that_restores("app.db", candidates, |_| {
            Err(Error::Restore(RestoreFailure::Corrupt, "bad page 1".into()))
        })
        .unwrap_err();
        assert!(
            matches!(e, Error::Restore(RestoreFailure::Corrupt, _)),
            "{e}"
        );
        let e = e.to_string();
        assert!(e.contains("replica 'a'") && e.contains("timed out"), "{e}");
        assert!(e.contains("replica 'b'") && e.contains("bad page 1"), "{e}");
    }

    #[test]
    fn a_target_problem_does_not_fall_back() {
        let candidates = vec![candidate("a", Ok(Some(2))), candidate("b", Ok(Some(1)))];
        let mut tried = 0;
        let e = first_that_restores("app.db", candidates, |_| {
            tried += 1;
            Err(Error::InvalidArgument("target exists".into()))
        })
        .unwrap_err();
        assert_eq!((tried, e.to_string()), (1, "target exists".to_string()));
    }
}
