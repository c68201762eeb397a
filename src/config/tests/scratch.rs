//! Scratch files: databases directly in a temporary directory, which `REPLICA_URL`'s
//! catch-all leaves alone only when they exist at open with no spool beside them.

use std::path::Path;

use super::{env, file_dir, params, parse, Only};
use crate::config::resolve::fs_scratch_file;
use crate::config::Resolver;

/// A scratch file (directly in `$TMPDIR`, `/tmp` or `/var/tmp`) is not selected by
/// `REPLICA_URL`, which the load's summary says; a config entry or `?replica=` that names it
/// replicates it, and so does `REPLICA_URL` one directory further down.
#[test]
fn replica_url_leaves_scratch_files_in_the_temporary_directory_alone() {
    let vars = [("REPLICA_URL", "/srv/r"), ("TMPDIR", "/run/scratch")];
    let mut r = Resolver::new(env(&vars), None).unwrap();
    r.scratch_file = |_| true;
    let replicates = |db: &str, p: &[(&str, &str)]| r.resolve(Path::new(db), &params(p)).unwrap();
    for scratch in [
        "/run/scratch/tmpx1.db",
        "/tmp/datasette_temp_a.db",
        "/var/tmp/b.db",
    ] {
        assert_eq!(replicates(scratch, &[]), None, "{scratch}");
    }
    let named = replicates("/tmp/keep.db", &[("replica", "/bk/keep")])
        .unwrap()
        .only();
    assert_eq!(file_dir(&named.target), Path::new("/bk/keep"));
    let deeper = replicates("/tmp/app/app.db", &[]).unwrap().only();
    assert_eq!(file_dir(&deeper.target), Path::new("/srv/r/app.db"));
    let summary = r.summary().join("\n");
    assert!(
        summary.contains("; not scratch files directly in /run/scratch, /tmp, /var/tmp"),
        "{summary}"
    );

    let cfg = parse(
        "dbs:\n  - path: /tmp/app.db\n    replica: {url: /bk/app}\n",
        &env(&[]),
    );
    let r = Resolver::new(env(&vars), Some(cfg.unwrap())).unwrap();
    let entry = r
        .resolve(Path::new("/tmp/app.db"), &[])
        .unwrap()
        .unwrap()
        .only();
    assert_eq!(file_dir(&entry.target), Path::new("/bk/app"));

    // What the file system says decides it: a database that is not there yet (to be restored
    // at open) or that has a spool beside it is no scratch file and replicates.
    let mut r = Resolver::new(env(&vars), None).unwrap();
    r.scratch_file = |_| false;
    let kept = r
        .resolve(Path::new("/tmp/app.db"), &[])
        .unwrap()
        .unwrap()
        .only();
    assert_eq!(file_dir(&kept.target), Path::new("/srv/r/app.db"));
}

/// A scratch file exists before it is opened and has no spool: a missing database (a fresh
/// `/tmp`, as AWS Lambda starts with, whose database a boot-time restore brings back) and a
/// database replicated before are not scratch files.
#[test]
fn a_missing_database_or_one_with_a_spool_is_no_scratch_file() {
    let dir = std::env::temp_dir().join(format!("scratch-rule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("app.db");
    assert!(!fs_scratch_file(&db), "a database not there yet");
    std::fs::write(&db, b"").unwrap();
    assert!(fs_scratch_file(&db), "made by a program, nothing beside it");
    std::fs::create_dir_all(dir.join("app.db-replica")).unwrap();
    assert!(!fs_scratch_file(&db), "replicated before: it has a spool");
    std::fs::remove_dir_all(&dir).unwrap();
}
