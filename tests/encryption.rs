//! Encrypted replicas (`age:`) over the in-process S3 server that checks SigV4. A python3
//! host commits rows carrying a marker string under short compaction levels and snapshots,
//! syncing each commit. Then: every LTX object in the bucket is an age file and no object
//! holds the marker; every point `replica_restore_points()` offers restores what was
//! committed there; Debian's `age -d` opens every object into a directory replica that the
//! real `litestream restore` restores equal to the source; and a restore with the wrong
//! identity, or with a plaintext object or a damaged one in the replica, fails naming the
//! object and leaves no output file. Replay a failure with `ENCRYPTION_SEED=<seed>`.

mod common;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::seeded::seed_from_env;
use common::*;
use s3env::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MARKER: &str = "PLAINTEXT-MARKER-7f3a";

/// Commits `argv[2]` rows (each synced), printing `state <txid> <digest>`, then waits until
/// the bucket holds a snapshot and level-1 files (a deadline fails it).
const WRITER: &str = r#"
import hashlib, os, random, sys, time
seed, commits, server = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)
db = sqlite3.connect("app.db", isolation_level=None)
assert db.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")

def digest(conn):
    h = hashlib.sha256()
    for i, v in conn.execute("SELECT id, v FROM t ORDER BY id"):
        h.update(b"%d:" % i + v.encode())
    return h.hexdigest()

def files(level):
    d = os.path.join(server, "bkt", "app.db", "%04x" % level)
    return len([n for n in os.listdir(d) if n.endswith(".ltx")]) if os.path.isdir(d) else 0

for n in range(commits):
    pad = "x" * rng.randrange(4000)
    db.execute("INSERT INTO t(v) VALUES (?)", ("%s-%d-%s" % (MARKER, n, pad),))
    if rng.randrange(4) == 0:
        db.execute("DELETE FROM t WHERE id = (SELECT min(id) FROM t)")
    print("state", db.execute("SELECT replica_sync(20000)").fetchone()[0], digest(db))
def lifecycle_ran():
    if files(9) >= 1 and files(1) >= 1:
        return True
    db.execute("UPDATE t SET v = v WHERE id = (SELECT max(id) FROM t)")
    db.execute("SELECT replica_sync(20000)")
wait_for("a snapshot and a level-1 file", lifecycle_ran, timeout=60)
err = db.execute("SELECT coalesce(last_error, '') FROM replica_status()").fetchone()[0]
assert err == "", err
"#;

/// Restores every offered point from the replica's URL; prints `point <txid> <digest>` (a point
/// from before the table was created has no digest to compare: the writer prints none).
const RESTORER: &str = r#"
import hashlib, sys
url = sys.argv[1]
def digest(path):
    c = sqlite3.connect("file:" + path + "?replica=off", uri=True)
    if not c.execute("SELECT 1 FROM sqlite_schema WHERE name = 't'").fetchone():
        c.close()
        return "before-the-table"  # the first snapshot may ship before CREATE TABLE
    h = hashlib.sha256()
    for i, v in c.execute("SELECT id, v FROM t ORDER BY id"):
        h.update(b"%d:" % i + v.encode())
    c.close()
    return h.hexdigest()
points = boot.execute("SELECT max_txid FROM replica_restore_points(?)", (url,)).fetchall()
for txid in sorted({p[0] for p in points}):
    got = boot.execute("SELECT replica_restore(?, 'r.db', ?, 'overwrite')", (url, txid)).fetchone()[0]
    assert got == txid, (got, txid)
    print("point", txid, digest("r.db"))
"#;

/// One restore of the latest point; prints `ok <txid>` or `error <message>`.
const RESTORE_ONCE: &str = r#"
import os, sys
try:
    print("ok", boot.execute("SELECT replica_restore(?, 'once.db')", (sys.argv[1],)).fetchone()[0])
except sqlite3.Error as e:
    print("error", e)
print("exists", os.path.exists("once.db"))
"#;

struct Setup {
    dir: TempDir,
    srv: s3server::S3Server,
    key: PathBuf,
    seed: u64,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let dir = TempDir::new(name);
        let srv = s3server::start(&dir.join("server"), "bkt");
        let key = dir.join("key.txt");
        keygen(&key);
        // A second recipient (a key kept elsewhere) that objects are sealed to as well.
        let spare = dir.join("spare.txt");
        let spare_public = keygen(&spare);
        let own_public = public_of(&key);
        let yaml = format!(
            "snapshot: {{interval: 1s, retention: 1h}}\nlevels: [{{interval: 250ms}}]\ndbs:\n  - path: app.db\n    replica:\n      url: {}\n      age:\n        recipients: [{own_public}, {spare_public}]\n        identities: [{}]\n",
            s3_url(srv.port, "app.db"),
            key.display()
        );
        std::fs::write(dir.join("litestream.yml"), yaml).unwrap();
        let seed = seed_from_env("ENCRYPTION_SEED", |t| t % 100_000);
        Setup {
            dir,
            srv,
            key,
            seed,
        }
    }

    fn python(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let config = self.dir.join("litestream.yml").display().to_string();
        let mut all = vec![
            ("REPLICA_CONFIG", config.as_str()),
            ("AWS_ACCESS_KEY_ID", self.srv.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.srv.secret_key.as_str()),
            ("REPLICA_LOG", "stderr"),
        ];
        all.extend_from_slice(env);
        let argv: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        let body = format!(
            "import sys; sys.argv = ['-', {}]\nMARKER = {MARKER:?}\n{PY_WAIT_FOR}{script}",
            argv.join(", ")
        );
        python_loaded(&body, self.dir.path(), &all)
    }

    fn write(&self, commits: u32) -> BTreeMap<u64, String> {
        let server = self.dir.join("server").display().to_string();
        let out = self.python(
            WRITER,
            &[&self.seed.to_string(), &commits.to_string(), &server],
            &[],
        );
        let text = check(&out, &format!("writing (seed {})", self.seed));
        text.lines()
            .filter_map(|l| l.strip_prefix("state "))
            .map(|l| {
                let (txid, digest) = l.split_once(' ').unwrap();
                (txid.parse().unwrap(), digest.to_string())
            })
            .collect()
    }

    fn url(&self) -> String {
        s3_url(self.srv.port, "app.db")
    }

    /// The bucket's LTX objects as the server stores them: (S3 key, file).
    fn objects(&self) -> Vec<(String, PathBuf)> {
        let root = self.dir.join("server").join("bkt");
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "ltx") {
                    let key = p.strip_prefix(&root).unwrap().display().to_string();
                    out.push((key, p));
                }
            }
        }
        out.sort();
        out
    }

    /// A restore of the latest point with `env`: `Ok(txid)` or the error, and whether it
    /// left a file.
    fn restore_once(&self, env: &[(&str, &str)]) -> (Result<u64, String>, bool) {
        let _ = std::fs::remove_file(self.dir.join("once.db"));
        let out = self.python(RESTORE_ONCE, &[&self.url()], env);
        let text = check(&out, "restoring once");
        let result = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("ok ")
                    .map(|t| Ok(t.parse().unwrap()))
                    .or_else(|| l.strip_prefix("error ").map(|e| Err(e.to_string())))
            })
            .unwrap();
        (result, text.contains("exists True"))
    }
}

/// `age-keygen -o path`; the public key.
fn keygen(path: &Path) -> String {
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "age-keygen: {}", stderr(&out));
    public_of(path)
}

fn public_of(key: &Path) -> String {
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(key)
        .output()
        .unwrap();
    assert!(out.status.success(), "age-keygen -y: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn an_encrypted_replica_restores_every_point_and_opens_with_age_and_litestream() {
    let s = Setup::new("encryption-round-trip");
    let states = s.write(40);
    let objects = s.objects();
    assert!(objects.len() >= 3, "{objects:?}");
    for (key, path) in &objects {
        let raw = std::fs::read(path).unwrap();
        assert!(
            raw.starts_with(b"age-encryption.org/v1\n"),
            "{key} is not an age file"
        );
        assert!(
            !raw.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{key} holds plaintext"
        );
    }

    // Every point, from the URL, with the identity from the environment only.
    let key = s.key.display().to_string();
    let out = s.python(
        RESTORER,
        &[&s.url()],
        &[("REPLICA_AGE_IDENTITY_FILE", &key)],
    );
    let text = check(&out, &format!("restoring (seed {})", s.seed));
    let mut restored = 0;
    for line in text.lines().filter_map(|l| l.strip_prefix("point ")) {
        let (txid, digest) = line.split_once(' ').unwrap();
        let txid: u64 = txid.parse().unwrap();
        if let Some(want) = states.get(&txid) {
            assert_eq!(digest, want, "txid {txid} (seed {})", s.seed);
            restored += 1;
        }
    }
    assert!(restored >= 2, "too few points compared: {text}");

    // `age -d` opens every object into a directory replica that litestream restores.
    let plain = s.dir.join("plain-replica");
    for (k, path) in &objects {
        let (level, name) = k.trim_start_matches("app.db/").split_once('/').unwrap();
        let level = u8::from_str_radix(level, 16).unwrap();
        let to = plain.join("ltx").join(level.to_string()).join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let out = Command::new("age")
            .args(["-d", "-i"])
            .arg(&s.key)
            .arg("-o")
            .arg(&to)
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "age -d {k}: {}", stderr(&out));
    }
    // The marker search could find plaintext: the decrypted objects hold it.
    let holds_marker = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        b.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
    };
    assert!(
        objects.iter().any(|(k, _)| {
            let (level, name) = k.trim_start_matches("app.db/").split_once('/').unwrap();
            let level = u8::from_str_radix(level, 16).unwrap();
            holds_marker(&plain.join("ltx").join(level.to_string()).join(name))
        }),
        "no decrypted object holds the marker"
    );
    let by_litestream = s.dir.join("litestream.db");
    litestream_restore(&format!("file://{}", plain.display()), &by_litestream, None);
    let latest = states.keys().max().unwrap();
    assert_eq!(
        dump(&by_litestream),
        dump(&s.dir.join("app.db")),
        "litestream's restore of the decrypted replica (latest synced txid {latest})"
    );
}

#[test]
fn wrong_keys_plaintext_and_damage_are_refused_naming_the_object() {
    let s = Setup::new("encryption-refusals");
    s.write(5);
    let (ok, _) = s.restore_once(&[]);
    assert!(ok.is_ok(), "{ok:?}");

    // No identity at all (the same replica configured without `age:`): the object is named
    // as age-encrypted.
    let bare = s.dir.join("bare.yml");
    let text = std::fs::read_to_string(s.dir.join("litestream.yml")).unwrap();
    std::fs::write(&bare, &text[..text.find("      age:").unwrap()]).unwrap();
    let bare = bare.display().to_string();
    let (r, left) = s.restore_once(&[("REPLICA_CONFIG", &bare)]);
    let e = r.unwrap_err();
    assert!(e.contains(".ltx") && e.contains("age-encrypted"), "{e}");
    assert!(!left);

    // Another identity: refused, naming an object, no file left.
    let other = s.dir.join("other.txt");
    keygen(&other);
    let other = other.display().to_string();
    let env = [
        ("REPLICA_CONFIG", bare.as_str()),
        ("REPLICA_AGE_IDENTITY_FILE", &other),
    ];
    let (r, left) = s.restore_once(&env);
    let e = r.unwrap_err();
    assert!(e.contains(".ltx") && e.contains("identities"), "{e}");
    assert!(!left);

    // A byte flipped inside every object's payload: authentication refuses the first read.
    let objects = s.objects();
    let good: Vec<Vec<u8>> = objects
        .iter()
        .map(|(_, p)| std::fs::read(p).unwrap())
        .collect();
    for ((_, path), body) in objects.iter().zip(&good) {
        let mut bad = body.clone();
        let n = bad.len();
        bad[n - 20] ^= 1;
        std::fs::write(path, &bad).unwrap();
    }
    let (r, left) = s.restore_once(&[]);
    let e = r.unwrap_err();
    assert!(e.contains(".ltx") && e.contains("refused"), "{e}");
    assert!(!left);

    // Every object cut inside its age header: refused as a bad header.
    for ((_, path), body) in objects.iter().zip(&good) {
        std::fs::write(path, &body[..40]).unwrap();
    }
    let (r, left) = s.restore_once(&[]);
    let e = r.unwrap_err();
    assert!(e.contains(".ltx") && e.contains("age header"), "{e}");
    assert!(!left);

    // Every object as plaintext (decrypted by `age -d`): refused as not an age file.
    for ((_, path), body) in objects.iter().zip(&good) {
        std::fs::write(path, body).unwrap();
        let plain = Command::new("age")
            .args(["-d", "-i"])
            .arg(&s.key)
            .arg(path)
            .output()
            .unwrap();
        assert!(plain.status.success(), "age -d: {}", stderr(&plain));
        std::fs::write(path, &plain.stdout).unwrap();
    }
    let (r, left) = s.restore_once(&[]);
    let e = r.unwrap_err();
    assert!(e.contains(".ltx") && e.contains("not an age file"), "{e}");
    assert!(!left);
}

/// A snapshot larger than one ranged piece, restore points from ranged header GETs, a drill,
/// and a fresh directory whose missing database is restored at open, all encrypted.
#[test]
fn large_objects_drills_and_the_boot_restore_work_encrypted() {
    let s = Setup::new("encryption-large");
    let text = check(&s.python(LARGE_OBJECTS, &[], &[]), "writing");
    let txid = text.lines().find_map(|l| l.strip_prefix("txid ")).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("point ") && l.ends_with(" 1")),
        "no object past one ranged piece: {text}"
    );
    assert!(text.contains(&format!("verify {txid}\n")), "{text}");
    let sum = text
        .lines()
        .find(|l| l.starts_with("sum "))
        .unwrap()
        .to_string();
    for (key, path) in s.objects() {
        let raw = std::fs::read(&path).unwrap();
        assert!(
            raw.starts_with(b"age-encryption.org/v1\n"),
            "{key} is not an age file"
        );
    }

    let fresh = s.dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let config = s.dir.join("litestream.yml").display().to_string();
    let env = [
        ("REPLICA_CONFIG", config.as_str()),
        ("AWS_ACCESS_KEY_ID", s.srv.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s.srv.secret_key.as_str()),
    ];
    let text = check(
        &python_loaded(
            r#"print("sum", sqlite3.connect("app.db").execute("SELECT count(*), sum(length(x)) FROM t").fetchone())"#,
            &fresh,
            &env,
        ),
        "opening a missing database",
    );
    assert_eq!(text.trim(), sum, "the database restored at open differs");
}

/// Commits `argv[2]` rows (each synced), printing `state <txid> <digest>`; with `argv[3]`
/// (an identity file), then takes a snapshot and keeps committing until every object in the
/// bucket opens with that identity alone (`age -d`), as compaction and retention replace
/// the older ones (a deadline fails it).
const ROTATING_WRITER: &str = r#"
import hashlib, os, subprocess, sys, time
commits, only = int(sys.argv[1]), sys.argv[2]
server = os.path.join(os.getcwd(), "server", "bkt")
db = sqlite3.connect("app.db", isolation_level=None)
assert db.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")

def digest():
    h = hashlib.sha256()
    for i, v in db.execute("SELECT id, v FROM t ORDER BY id"):
        h.update(b"%d:" % i + v.encode())
    return h.hexdigest()

def commit(n):
    db.execute("INSERT INTO t(v) VALUES (?)", ("%s-%d" % (MARKER, n),))
    print("state", db.execute("SELECT replica_sync(20000)").fetchone()[0], digest())

def sealed_to_other():
    stale = []
    for root, _, names in os.walk(server):
        for name in names:
            if name.endswith(".ltx"):
                p = os.path.join(root, name)
                r = subprocess.run(["age", "-d", "-i", only, "-o", "/dev/null", p], capture_output=True)
                if r.returncode != 0:
                    stale.append(p)
    return stale

def sealed_otherwise():
    return db.execute("SELECT sealed_to_other_keys FROM replica_status()").fetchone()[0]

for n in range(commits):
    commit(n)
print("sealed_otherwise_start", sealed_otherwise())
if only != "-":
    db.execute("SELECT replica_snapshot()")
    def resealed():
        if not sealed_to_other() and sealed_otherwise() == 0:
            return True
        commit(0)
    wait_for("every object sealed to the new keys", resealed, timeout=60)
    print("sealed_otherwise_end", sealed_otherwise())
err = db.execute("SELECT coalesce(last_error, '') FROM replica_status()").fetchone()[0]
assert err == "", err
"#;

/// Key rotation: recipients A, then A and B, then B alone. Once a snapshot is taken and
/// compaction and retention have replaced the older objects, every point offered restores
/// with B's identity alone.
#[test]
fn rotating_recipients_reseals_the_history_to_the_new_key() {
    let s = Setup::new("encryption-rotation");
    let a = s.key.clone();
    let b = s.dir.join("b.txt");
    let (a_pub, b_pub) = (public_of(&a), keygen(&b));
    let config = |recipients: &[&str], identity: &Path| {
        let yaml = format!(
            "snapshot: {{interval: 1h, retention: 1s}}\nlevels: [{{interval: 250ms}}]\nl0-retention: 250ms\ndbs:\n  - path: app.db\n    replica:\n      url: {}\n      age:\n        recipients: [{}]\n        identities: [{}]\n",
            s.url(),
            recipients.join(", "),
            identity.display()
        );
        std::fs::write(s.dir.join("litestream.yml"), yaml).unwrap();
    };
    let mut states = BTreeMap::new();
    // Each phase's count of files sealed to other keys, at its start and (if it waited) end.
    let mut phase = |commits: u32, only: &str| -> Vec<u64> {
        let out = s.python(ROTATING_WRITER, &[&commits.to_string(), only], &[]);
        let text = check(&out, &format!("writing (seed {})", s.seed));
        for l in text.lines().filter_map(|l| l.strip_prefix("state ")) {
            let (txid, digest) = l.split_once(' ').unwrap();
            states.insert(txid.parse::<u64>().unwrap(), digest.to_string());
        }
        text.lines()
            .filter_map(|l| l.strip_prefix("sealed_otherwise_"))
            .map(|l| l.split_once(' ').unwrap().1.parse().unwrap())
            .collect()
    };
    config(&[&a_pub], &a);
    assert_eq!(phase(10, "-"), vec![0]);
    let opens_with_b = |p: &Path| {
        let o = Command::new("age")
            .args(["-d", "-o", "/dev/null", "-i"])
            .arg(&b)
            .arg(p)
            .output();
        o.unwrap().status.success()
    };
    assert!(
        s.objects().iter().all(|(_, p)| !opens_with_b(p)),
        "objects sealed to A alone open with B"
    );
    config(&[&a_pub, &b_pub], &a);
    let counts = phase(10, &b.display().to_string());
    assert!(counts[0] > 0 && counts[1] == 0, "{counts:?}");
    config(&[&b_pub], &b);
    let counts = phase(5, "-");
    assert!(
        counts[0] > 0,
        "files sealed to A and B count under B alone: {counts:?}"
    );

    let b_file = b.display().to_string();
    let bare = s.dir.join("bare.yml");
    std::fs::write(&bare, "dbs: []\n").unwrap();
    let bare = bare.display().to_string();
    let env = [
        ("REPLICA_CONFIG", bare.as_str()),
        ("REPLICA_AGE_IDENTITY_FILE", b_file.as_str()),
    ];
    let out = s.python(RESTORER, &[&s.url()], &env);
    let text = check(&out, &format!("restoring with B alone (seed {})", s.seed));
    let mut compared = 0;
    for line in text.lines().filter_map(|l| l.strip_prefix("point ")) {
        let (txid, digest) = line.split_once(' ').unwrap();
        let txid: u64 = txid.parse().unwrap();
        if let Some(want) = states.get(&txid) {
            assert_eq!(digest, want, "txid {txid}");
            compared += 1;
        }
    }
    assert!(compared >= 2, "too few points compared: {text}");
}

/// Commits a row, then waits for `replica_status()` to show an error (a deadline fails it)
/// and prints it as `error <text>`.
const MISMATCHED_WRITER: &str = r#"
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
db.execute("INSERT INTO t(v) VALUES ('after the keys changed')")
last_error = lambda: db.execute("SELECT last_error FROM replica_status()").fetchone()[0]
print("error", wait_for("an error in replica_status()", last_error))
"#;

/// A replica written with one encryption setting is not uploaded over with the other: the
/// status names the object and says why, and the bucket keeps only the first kind.
#[test]
fn an_uploader_refuses_a_replica_encrypted_otherwise() {
    for first_encrypted in [true, false] {
        let s = Setup::new("encryption-mismatch");
        let text = std::fs::read_to_string(s.dir.join("litestream.yml")).unwrap();
        let bare = s.dir.join("bare.yml");
        std::fs::write(&bare, &text[..text.find("      age:").unwrap()]).unwrap();
        let bare = bare.display().to_string();
        let bare_env = [("REPLICA_CONFIG", bare.as_str())];
        let (first, then) = if first_encrypted {
            (&[][..], &bare_env[..])
        } else {
            (&bare_env[..], &[][..])
        };
        let out = s.python(
            WRITER,
            &[
                &s.seed.to_string(),
                "3",
                &s.dir.join("server").display().to_string(),
            ],
            first,
        );
        check(&out, "writing the first replica");
        let contents = || -> Vec<(String, Vec<u8>)> {
            let objects = s.objects().into_iter();
            objects
                .map(|(k, p)| (k, std::fs::read(p).unwrap()))
                .collect()
        };
        let before = contents();
        let out = s.python(MISMATCHED_WRITER, &[], then);
        let text = check(&out, "writing with the other keys");
        let want = if first_encrypted {
            "age-encrypted"
        } else {
            "not an age file"
        };
        assert!(
            text.contains(".ltx") && text.contains(want) && text.contains("not uploading over it"),
            "{text}"
        );
        assert!(
            before == contents(),
            "objects were written over a replica encrypted otherwise"
        );
    }
}
