//! A restore from start to end: list the replica, resolve the target, plan the chain, apply
//! it into a new temporary file beside the output (an unpredictable name, created
//! exclusively: see `temp`), run the integrity check (on failure, bisect the chain to name
//! the first file after which it fails), let the caller look at the output path once more,
//! then publish by rename (or by hard link, never replacing, for boot-time restores). It
//! must never leave an unverified file at the target path (nor any file when it fails) and
//! never overwrite a file unless asked.

use super::apply::apply;
use super::fetch::{content_sizes, list_objects, txid_at_time};
use super::legacy;
use super::plan::{plan, LtxObject};
use super::temp;
use super::types::{CheckFailure, RestoreRequest, Restored, Target, Tuning};
use crate::error::{Error, RestoreFailure};
use crate::store::ObjectStore;
use std::path::{Path, PathBuf};

pub fn restore(req: &RestoreRequest) -> Result<Restored, Error> {
    restore_with(req, &Tuning::default())
}

pub fn restore_with(req: &RestoreRequest, tuning: &Tuning) -> Result<Restored, Error> {
    if req.output.exists() && !req.overwrite {
        return Err(Error::InvalidArgument(format!(
            "replica_restore: {} already exists; pass 'overwrite' as the fourth argument to replace it",
            req.output.display()
        )));
    }
    let objects = list_objects(req.store, req.prefix)?;
    if objects.is_empty() {
        let old = legacy::list_ls03(req.store, req.prefix)?;
        if !old.is_empty() {
            return restore_ls03(req, tuning, &old);
        }
    }
    let target_txid = match req.target {
        Target::Latest => None,
        Target::Txid(t) => Some(t),
        Target::Timestamp(ts) => Some(txid_at_time(req.store, &objects, ts, tuning.parallelism)?),
    };
    let chain = content_sizes(req.store, plan(&objects, target_txid)?, tuning.parallelism)?;
    let (tmp, file) = temp::create_beside(req.output, "restoring", temp::mode_for(req.output))?;
    let applied = apply(req.store, &chain, &file, tuning);
    // Closed before SQLite opens it for the check: closing a descriptor of a file drops the
    // process's POSIX locks on it, SQLite's included.
    drop(file);
    let blame = || culprit(req.store, &chain, &tmp, req.check);
    check_and_publish(req, tuning, &tmp, applied, &blame)
}

/// A restore from a Litestream 0.3 replica (see `legacy`), checked and published as an
/// LTX restore is.
fn restore_ls03(
    req: &RestoreRequest,
    tuning: &Tuning,
    objects: &[crate::ls03::Ls03Object],
) -> Result<Restored, Error> {
    let plan = legacy::plan_for(req.prefix, objects, req.target)?;
    let (tmp, file) = temp::create_beside(req.output, "restoring", temp::mode_for(req.output))?;
    let applied = legacy::apply_plan(req, &plan, &file, tuning);
    drop(file);
    let blame = || {
        format!(
            "; restored from {} and the WAL indexes after it",
            plan.snapshot.key
        )
    };
    check_and_publish(req, tuning, &tmp, applied, &blame)
}

/// Runs the integrity check on the restored `tmp` (`blame` adds which object to suspect),
/// then publishes it; on any failure the temporary file goes.
fn check_and_publish(
    req: &RestoreRequest,
    tuning: &Tuning,
    tmp: &Path,
    applied: Result<Restored, Error>,
    blame: &dyn Fn() -> String,
) -> Result<Restored, Error> {
    let result = applied.and_then(|restored| {
        (req.check)(tmp).map_err(|e| match e {
            CheckFailure::Damaged(e) => Error::Restore(
                RestoreFailure::Corrupt,
                format!(
                    "integrity check of the restored database failed: {e}{}",
                    blame()
                ),
            ),
            CheckFailure::NotRun(e) => Error::Restore(
                RestoreFailure::Local,
                format!("the integrity check of the restored database could not run: {e}"),
            ),
        })?;
        (tuning.before_publish)(req.output)?;
        if tuning.exclusive {
            publish_exclusive(tmp, req.output)?;
        } else {
            publish_replacing(tmp, req.output)?;
        }
        Ok(restored)
    });
    if result.is_err() {
        cleanup(tmp);
    }
    result
}

/// Publishes `tmp` at `output` only if nothing appeared there meanwhile (another process
/// restoring or creating it): a hard link fails rather than replace a file.
fn publish_exclusive(tmp: &Path, output: &Path) -> Result<(), Error> {
    let linked = std::fs::hard_link(tmp, output);
    cleanup(tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::InvalidArgument(format!(
                "{} appeared while it was being restored; left as it is",
                output.display()
            )))
        }
        Err(e) => Err(Error::Io(format!("linking into {}: {e}", output.display()))),
    }
}

/// Moves `tmp` over `output`, removing what SQLite would replay into it first.
fn publish_replacing(tmp: &Path, output: &Path) -> Result<(), Error> {
    // A WAL or journal left beside the file being replaced would be replayed into the
    // restored database when it is first opened.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = output.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(PathBuf::from(side)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io(format!(
                    "removing {suffix} beside {}: {e}",
                    output.display()
                )))
            }
        }
    }
    std::fs::rename(tmp, output)
        .map_err(|e| Error::Io(format!("renaming into {}: {e}", output.display())))
}

/// After a failed integrity check: the first file whose application leaves a database
/// that fails it (found by bisecting the chain), so the message can name the object.
fn culprit(
    store: &dyn ObjectStore,
    chain: &[LtxObject],
    tmp: &Path,
    check: &dyn Fn(&Path) -> Result<(), CheckFailure>,
) -> String {
    let quiet = Tuning::default();
    // Whether the database after the first `n` files fails the check (`None`: no probe file
    // could be made, so there is nothing to say).
    let fails = |n: usize| -> Option<bool> {
        let (probe, file) = temp::create_beside(tmp, "probe", 0o600).ok()?;
        let applied = apply(store, &chain[..n], &file, &quiet);
        drop(file);
        let bad = match applied {
            Ok(_) => match check(&probe) {
                Ok(()) => Some(false),
                Err(CheckFailure::Damaged(_)) => Some(true),
                // Nothing to learn from a check that could not run.
                Err(CheckFailure::NotRun(_)) => None,
            },
            Err(_) => Some(true),
        };
        cleanup(&probe);
        bad
    };
    // Invariant: the whole chain fails; find the shortest failing prefix.
    let (mut good, mut bad) = (0, chain.len());
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        match fails(mid) {
            Some(true) => bad = mid,
            Some(false) => good = mid,
            None => return String::new(),
        }
    }
    match chain.get(bad - 1) {
        Some(o) if bad > 1 => format!(
            "; it first fails after applying {} (a corrupt file, or one from another database)",
            o.key
        ),
        Some(o) => format!("; the snapshot {} already fails it", o.key),
        None => String::new(),
    }
}

fn cleanup(tmp: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = tmp.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx;
    use crate::store::{keys, ObjectInfo, StoreError};
    use libsqlite3_sys::{SQLITE_CORRUPT, SQLITE_ERROR};
    use std::sync::Mutex;

    // ---- applying, against the in-memory store ----------------------------------------

    use crate::store::memory::MemoryStore;

    const PS: u32 = 4096;

    /// A page 1 that SQLite would accept as a header for a `commit`-page database.
    fn page1(commit: u32, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; PS as usize];
        p[..16].copy_from_slice(b"SQLite format 3\0");
        p[16..18].copy_from_slice(&(PS as u16).to_be_bytes());
        p[24..28].copy_from_slice(&7u32.to_be_bytes());
        p[28..32].copy_from_slice(&commit.to_be_bytes());
        p[92..96].copy_from_slice(&7u32.to_be_bytes());
        p
    }

    /// Encodes an LTX file; with `checksummed`, pre/post-apply checksums are real.
    fn ltx_file(
        min: u64,
        max: u64,
        commit: u32,
        pages: &[(u32, Vec<u8>)],
        pre: u64,
        post: u64,
        checksummed: bool,
    ) -> Vec<u8> {
        let header = ltx::Header {
            flags: if checksummed {
                0
            } else {
                ltx::FLAG_NO_CHECKSUM
            },
            page_size: PS,
            commit,
            min_txid: min,
            max_txid: max,
            timestamp_ms: 1000 * max,
            pre_apply_checksum: if checksummed && min != 1 { pre } else { 0 },
            ..Default::default()
        };
        let mut enc = ltx::Encoder::new(Vec::new(), header).unwrap();
        for (pgno, p) in pages {
            enc.encode_page(*pgno, p).unwrap();
        }
        enc.finish(if checksummed { post } else { 0 }).unwrap().0
    }

    /// A three-file replica (snapshot of 3 pages, then two level-0 files) and the pages of
    /// the database it holds.
    fn replica(checksummed: bool) -> (MemoryStore, Vec<Vec<u8>>) {
        let store = MemoryStore::new();
        let mut db = vec![page1(3, 0), vec![1u8; PS as usize], vec![2u8; PS as usize]];
        let sum = |db: &[Vec<u8>]| {
            let mut c = ltx::DbChecksum::default();
            for (i, p) in db.iter().enumerate() {
                c.add_page(i as u32 + 1, p);
            }
            c.value()
        };
        let snap: Vec<(u32, Vec<u8>)> = db.iter().cloned().zip(1..).map(|(p, n)| (n, p)).collect();
        let s1 = sum(&db);
        store
            .put(
                &keys::s3_key("db", 9, 1, 1),
                &ltx_file(1, 1, 3, &snap, 0, s1, checksummed),
            )
            .unwrap();
        db[1] = vec![3u8; PS as usize];
        let s2 = sum(&db);
        store
            .put(
                &keys::s3_key("db", 0, 2, 2),
                &ltx_file(2, 2, 3, &[(2, db[1].clone())], s1, s2, checksummed),
            )
            .unwrap();
        db.push(vec![4u8; PS as usize]);
        db[0] = page1(4, 0);
        let s3 = sum(&db);
        store
            .put(
                &keys::s3_key("db", 0, 3, 3),
                &ltx_file(
                    3,
                    3,
                    4,
                    &[(1, db[0].clone()), (4, db[3].clone())],
                    s2,
                    s3,
                    checksummed,
                ),
            )
            .unwrap();
        (store, db)
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            Scratch(crate::base::testing::fresh_dir(&format!("restore-{name}")))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run(store: &dyn ObjectStore, out: &Path, tuning: &Tuning) -> Result<Restored, Error> {
        restore_with(
            &RestoreRequest {
                store,
                prefix: "db",
                output: out,
                target: Target::Latest,
                overwrite: false,
                check: &|_| Ok(()),
            },
            tuning,
        )
    }

    /// An integrity check that finds damage blames the replica (SQLITE_CORRUPT, naming the
    /// file); one that could not run says so and blames nothing (SQLITE_ERROR); neither
    /// leaves a file at the target.
    #[test]
    fn a_check_that_could_not_run_is_no_corrupt_replica() {
        let (store, _) = replica(false);
        let dir = Scratch::new("check-not-run");
        let out = dir.0.join("out.db");
        let restore = |check: &dyn Fn(&Path) -> Result<(), CheckFailure>| {
            restore_with(
                &RestoreRequest {
                    store: &store,
                    prefix: "db",
                    output: &out,
                    target: Target::Latest,
                    overwrite: false,
                    check,
                },
                &Tuning::default(),
            )
        };
        let err = restore(&|_| Err(CheckFailure::NotRun("out of memory".into()))).unwrap_err();
        assert_eq!(err.sqlite_code(), SQLITE_ERROR, "{err}");
        assert!(
            err.to_string().contains("could not run: out of memory"),
            "{err}"
        );
        assert!(!err.to_string().contains(".ltx"), "blames a file: {err}");
        assert!(!out.exists());
        let err = restore(&|_| Err(CheckFailure::Damaged("row 3 missing".into()))).unwrap_err();
        assert_eq!(err.sqlite_code(), SQLITE_CORRUPT, "{err}");
        assert!(err.to_string().contains("row 3 missing"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn restores_through_tiny_ranged_pieces_with_progress_and_checksum() {
        for checksummed in [false, true] {
            let (store, db) = replica(checksummed);
            let dir = Scratch::new(&format!("pieces-{checksummed}"));
            let out = dir.0.join("out.db");
            let seen = Mutex::new(Vec::new());
            let restored = run(
                &store,
                &out,
                &Tuning {
                    parallelism: 3,
                    chunk_bytes: 128, // every file in several ranged GETs
                    want_checksum: true,
                    progress: &|p| seen.lock().unwrap().push(*p),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), db.concat());
            assert_eq!(restored.txid, 3);
            let mut want = ltx::DbChecksum::default();
            for (i, p) in db.iter().enumerate() {
                want.add_page(i as u32 + 1, p);
            }
            assert_eq!(restored.db_checksum, Some(want.value()));
            let seen = seen.into_inner().unwrap();
            let last = *seen.last().unwrap();
            assert_eq!((last.files_done, last.files_total), (3, 3));
            assert_eq!(last.bytes_done, last.bytes_total);
            assert!(seen
                .windows(2)
                .all(|w| w[0].bytes_done <= w[1].bytes_done && w[0].files_done <= w[1].files_done));
            assert!(seen.len() > 6, "progress after each piece: {seen:?}");
        }
    }

    /// Each corruption must fail the restore, name the object, and leave no file behind.
    #[test]
    fn refuses_corrupt_replicas_naming_the_object() {
        let l0 = |n| keys::s3_key("db", 0, n, n);
        type Corrupt = fn(&MemoryStore);
        let cases: Vec<(&str, bool, Corrupt, String)> = vec![
            (
                "truncated",
                false,
                |s| {
                    let k = keys::s3_key("db", 0, 2, 2);
                    let b = s.get(&k).unwrap();
                    s.put(&k, &b[..b.len() - 20]).unwrap();
                },
                l0(2),
            ),
            (
                "flipped byte",
                false,
                |s| {
                    let k = keys::s3_key("db", 9, 1, 1);
                    let mut b = s.get(&k).unwrap();
                    let at = b.len() / 2;
                    b[at] ^= 0x40;
                    s.put(&k, &b).unwrap();
                },
                keys::s3_key("db", 9, 1, 1),
            ),
            (
                "missing level 0",
                false,
                |s| {
                    s.delete(&keys::s3_key("db", 0, 2, 2)).unwrap();
                },
                l0(3),
            ),
            (
                "another database (checksums)",
                true,
                |s| {
                    let (other, _) = replica(true);
                    // Same txid, other contents: the other database's page 2 differs.
                    let mut b = other.get(&keys::s3_key("db", 0, 2, 2)).unwrap();
                    b.clear();
                    let mut p = vec![9u8; PS as usize];
                    p[0] = 1;
                    b.extend(ltx_file(
                        2,
                        2,
                        3,
                        &[(2, p)],
                        0x8000_0000_0000_1234,
                        0x8000_0000_0000_5678,
                        true,
                    ));
                    s.put(&keys::s3_key("db", 0, 2, 2), &b).unwrap();
                },
                l0(2),
            ),
            (
                "another database (page 1)",
                false,
                |s| {
                    let b = ltx_file(
                        3,
                        3,
                        4,
                        &[(1, page1(9, 5)), (4, vec![4u8; PS as usize])],
                        0,
                        0,
                        false,
                    );
                    s.put(&keys::s3_key("db", 0, 3, 3), &b).unwrap();
                },
                l0(3),
            ),
        ];
        for (what, checksummed, corrupt, key) in cases {
            let (store, _) = replica(checksummed);
            corrupt(&store);
            let dir = Scratch::new("corrupt");
            let out = dir.0.join("out.db");
            let err = run(
                &store,
                &out,
                &Tuning {
                    chunk_bytes: 256,
                    ..Default::default()
                },
            )
            .expect_err(what);
            // Damaged content is the one restore failure SQLite hears as SQLITE_CORRUPT.
            assert_eq!(err.sqlite_code(), SQLITE_CORRUPT, "{what}: {err}");
            let err = err.to_string();
            assert!(err.contains(&key), "{what}: {err}");
            let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
            assert!(left.is_empty(), "{what}: left {left:?}");
        }
    }

    /// Fails every GET that `fail(n)` picks (n counts GETs), transiently or by cutting the body.
    struct FlakyStore {
        inner: MemoryStore,
        gets: std::sync::atomic::AtomicUsize,
        fail: fn(usize) -> Option<bool>,
    }

    impl FlakyStore {
        fn body(&self, r: Result<Vec<u8>, StoreError>) -> Result<Vec<u8>, StoreError> {
            let n = self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match (self.fail)(n) {
                Some(true) => Err(StoreError::Transient(format!("injected fault {n}"))),
                Some(false) => r.map(|mut b| {
                    b.truncate(b.len() / 2);
                    b
                }),
                None => r,
            }
        }
    }

    impl ObjectStore for FlakyStore {
        fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
            self.inner.put(key, body)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.body(self.inner.get(key))
        }
        fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
            self.body(self.inner.get_range(key, offset, len))
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
        fn request_counts(&self) -> crate::store::RequestCounts {
            self.inner.request_counts()
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[test]
    fn transient_faults_and_cut_bodies_are_retried_but_not_forever() {
        let (inner, db) = replica(false);
        // Every other GET fails, alternately with an error and a cut body.
        let flaky = FlakyStore {
            inner,
            gets: Default::default(),
            fail: |n| (n % 2 == 0).then_some(n % 4 == 0),
        };
        let dir = Scratch::new("flaky");
        let out = dir.0.join("out.db");
        let tuning = Tuning {
            chunk_bytes: 128,
            ..Default::default()
        };
        let restore = |store: &dyn ObjectStore, out: &Path| run(store, out, &tuning);
        restore(&flaky, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), db.concat());
        // A store that never recovers fails the restore, naming the object.
        let (inner, _) = replica(false);
        let down = FlakyStore {
            inner,
            gets: Default::default(),
            fail: |_| Some(true),
        };
        let err = restore(&down, &dir.0.join("down.db")).unwrap_err();
        // A replica that cannot be read is not a damaged one.
        assert_eq!(err.sqlite_code(), SQLITE_ERROR, "{err}");
        let err = err.to_string();
        assert!(
            err.contains("0009/") && err.contains("injected fault"),
            "{err}"
        );
        assert!(!dir.0.join("down.db").exists());
    }

    #[test]
    fn an_exclusive_restore_never_replaces_a_file_that_appeared_meanwhile() {
        let (store, db) = replica(false);
        let dir = Scratch::new("exclusive");
        let out = dir.0.join("out.db");
        // Another process creates the database while the restore runs.
        let created = std::sync::Once::new();
        let err = run(
            &store,
            &out,
            &Tuning {
                exclusive: true,
                progress: &|_| created.call_once(|| std::fs::write(&out, b"theirs").unwrap()),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("appeared while it was being restored"),
            "{err}"
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"theirs");
        let left: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("out.db")]);
        // With nobody racing it, it publishes the restored file.
        std::fs::remove_file(&out).unwrap();
        run(
            &store,
            &out,
            &Tuning {
                exclusive: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), db.concat());
    }
}
