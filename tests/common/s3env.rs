//! What the end-to-end tests over the in-process S3 server (`common/s3server.rs`) share: the
//! replica URL, the environment of a process replicating to the server, and the check of a
//! script that synced and restored. A test declares it after `s3server`:
//! `#[path = "common/s3env.rs"] mod s3env;`.
#![allow(dead_code)]

use crate::common::{check, stderr};
use crate::s3server::S3Server;
use std::process::Output;

/// `s3://bkt/PATH?endpoint=http://127.0.0.1:PORT&force-path-style=true`.
pub fn s3_url(port: u16, path: &str) -> String {
    format!("s3://bkt/{path}?endpoint=http://127.0.0.1:{port}&force-path-style=true")
}

/// The extension, a REPLICA_URL on the local server, and the keys in the environment (in
/// this order).
pub fn s3_env(srv: &S3Server, url: &str) -> Vec<(String, String)> {
    vec![
        ("REPLICA_URL".into(), url.into()),
        ("AWS_ACCESS_KEY_ID".into(), srv.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), srv.secret_key.clone()),
        ("REPLICA_LOG".into(), "stderr".into()),
    ]
}

/// A commit of about 10 MiB of incompressible rows (past one ranged piece of a restore),
/// then one more row; prints `txid <synced>`, `point <level> <min> <max> <bigger than 4 MiB>`
/// per restore point, `verify <txid>` from a drill, and `sum <count, bytes>` of the table.
pub const LARGE_OBJECTS: &str = r#"
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE t(x)")
db.execute("BEGIN")
for i in range(2500):
    db.execute("INSERT INTO t VALUES (randomblob(4000))")  # ~10 MiB, incompressible
db.execute("COMMIT")
db.execute("SELECT replica_sync(30000)")
db.execute("INSERT INTO t VALUES (1)")
print("txid", db.execute("SELECT replica_sync(30000)").fetchone()[0])
for r in db.execute("SELECT level, min_txid, max_txid, size > 4194304 FROM replica_restore_points()"):
    print("point", *r)
print("verify", db.execute("SELECT replica_verify()").fetchone()[0])
print("sum", db.execute("SELECT count(*), sum(length(x)) FROM t").fetchone())
"#;

pub fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The output of a script that printed `synced <txid>` (from `replica_sync`) and
/// `restored <txid>` (from `replica_restore`): it succeeded, the extension logged no error,
/// and the restore returned the synced txid. Returns its stdout.
pub fn check_restored_what_synced(out: &Output, what: &str) -> String {
    let text = check(out, what);
    assert!(
        !stderr(out).contains("libreplica error"),
        "the extension logged errors:\n{}",
        stderr(out)
    );
    let synced = text.lines().find_map(|l| l.strip_prefix("synced "));
    let restored = text.lines().find_map(|l| l.strip_prefix("restored "));
    assert!(synced.is_some() && synced == restored, "{text}");
    text
}
