//! Secrets stay secret: with a working key in the config file and a
//! rejected key plus a session token in the environment, every output a user or operator
//! can see — every `replica_status()` column, SQL errors, the extension's log, `Debug` of
//! the config and the store — and every file (with an age identity for an encrypted replica
//! among the secrets) the extension or the bucket holds is grepped
//! for the secrets.

mod common;
#[path = "common/s3server.rs"]
mod s3server;

use common::*;
use std::path::Path;

/// Every file under `dir`, recursively, that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[test]
fn secrets_never_appear_in_status_errors_logs_debug_or_files() {
    let dir = TempDir::new("secrets");
    let srv = s3server::start(&dir.join("server"), "bkt");
    let wrong_secret = "WRONGsecretValue0123456789abcdefDISTINCT";
    let session_token = "SESSIONtokenValue9876543210DISTINCT";
    let endpoint = srv.endpoint();
    // good.db's replica is encrypted, to an identity written literally in the file.
    let age_secret = {
        use age::secrecy::ExposeSecret;
        age::x25519::Identity::generate()
            .to_string()
            .expose_secret()
            .to_string()
    };
    // good.db: the working key, written literally in the file. bad.db: credentials from
    // the environment, which the server rejects. A misspelled key adds a warning.
    let yaml = format!(
        "dbs:\n  - path: good.db\n    replica:\n      type: s3\n      bucket: bkt\n      path: good\n      endpoint: {endpoint}\n      access-key-id: {}\n      secret-access-key: {}\n      sync-intervall: 1s\n      age:\n        identities: [{age_secret}]\n  - path: bad.db\n    replica:\n      url: s3://bkt/bad?endpoint={endpoint}\n  - path: missing.db\n    replica:\n      url: s3://bkt/missing?endpoint={endpoint}\n",
        srv.access_key, srv.secret_key
    );
    std::fs::write(dir.join("litestream.yml"), yaml).unwrap();
    // bad.db exists (empty), so it opens; missing.db does not, so opening it tries the
    // boot-time restore with the rejected key and fails, naming the error.
    std::fs::write(dir.join("bad.db"), b"").unwrap();
    let env = [
        ("REPLICA_CONFIG", "litestream.yml"),
        ("AWS_ACCESS_KEY_ID", "AKIAWRONGKEY"),
        ("AWS_SECRET_ACCESS_KEY", wrong_secret),
        ("AWS_SESSION_TOKEN", session_token),
        ("REPLICA_LOG", "stderr"),
    ];
    let out = python_loaded(
        r#"
def show(label, sql):
    try:
        print(label, c.execute(sql).fetchall(), flush=True)
    except sqlite3.Error as e:
        print(label, "error:", e, flush=True)

for name in ("good.db", "bad.db"):
    c = sqlite3.connect(name, isolation_level=None)
    c.execute("PRAGMA journal_mode=wal")
    c.execute("CREATE TABLE t(x)")
    c.execute("INSERT INTO t VALUES ('row')")
    show(name + " sync", "SELECT replica_sync(2500)")
    show(name + " snapshot", "SELECT replica_snapshot()")
    show(name + " restore", "SELECT replica_restore('" + name + "', 'r-" + name + "')")
    show(name + " restore url", "SELECT replica_restore((SELECT replica_url FROM replica_status() WHERE name = '" + name + "'), 'u-" + name + "')")
try:
    sqlite3.connect("missing.db").execute("SELECT 1")
    print("missing.db opened unexpectedly")
except sqlite3.Error as e:
    print("missing.db open error:", e)
show("status", "SELECT * FROM replica_status()")
show("version", "SELECT replica_version()")
show("bad restore", "SELECT replica_restore('s3://bkt/nothing?endpoint=http://127.0.0.1:1', 'x.db')")
"#,
        dir.path(),
        &env,
    );
    let text = check(&out, "python host");
    let log = stderr(&out);
    // The setup works as intended: one database replicates, the other is rejected.
    assert!(text.contains("good.db sync [("), "{text}");
    assert!(
        text.contains(
            "bad.db snapshot error: replica_snapshot: bad.db: the snapshot could not be uploaded (access denied"
        ),
        "{text}"
    );
    assert!(
        text.contains("sync-intervall"),
        "the warning names the key: {text}"
    );
    assert!(text.contains("missing.db open error"), "{text}");
    assert!(
        log.contains("missing.db does not exist and restoring it from s3://bkt/missing"),
        "{log}"
    );

    // The grep finds what is there: the config file holds the working secret and the
    // identity, and good.db's restores (of its encrypted replica) worked.
    let in_config = files_containing(dir.path(), srv.secret_key.as_bytes());
    assert!(
        in_config.iter().any(|f| f.ends_with("litestream.yml")),
        "{in_config:?}"
    );
    assert!(!files_containing(dir.path(), age_secret.as_bytes()).is_empty());
    assert!(text.contains("good.db restore [("), "{text}");
    let secrets = [
        srv.secret_key.as_str(),
        wrong_secret,
        session_token,
        age_secret.as_str(),
    ];
    for secret in secrets {
        assert!(!text.contains(secret), "a secret in SQL output:\n{text}");
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
        let leaked = files_containing(dir.path(), secret.as_bytes())
            .into_iter()
            .filter(|f| !f.ends_with("litestream.yml"))
            .collect::<Vec<_>>();
        assert!(leaked.is_empty(), "a secret in files: {leaked:?}");
    }

    // Debug output of what the extension builds from that config.
    let env_map = replica::config::Env::new(
        dir.path(),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let cfg = replica::config::parse_config_file(
        &dir.join("litestream.yml"),
        &std::fs::read_to_string(dir.join("litestream.yml")).unwrap(),
        &env_map,
    )
    .unwrap();
    let mut debug = format!("{cfg:?}");
    for rc in cfg.dbs.iter().flat_map(|(_, replicas)| replicas) {
        debug.push_str(&format!("{rc:?} {}", rc.url()));
        if let replica::config::ReplicaTarget::S3(t) = &rc.target {
            let store = replica::store::s3::S3Store::new(t).unwrap();
            debug.push_str(&format!("{store:?}"));
        }
    }
    assert!(debug.contains("bkt"), "{debug}");
    for secret in secrets {
        assert!(
            !debug.contains(secret),
            "a secret in Debug output:\n{debug}"
        );
    }
}
