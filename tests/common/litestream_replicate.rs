//! The real `litestream replicate` writing a replica while plain python (no extension)
//! writes the source, shared by `tests/interop.rs` (a file replica) and `tests/s3_e2e.rs`
//! (an S3 bucket), which then restore it with `replica_restore`.

use super::*;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `litestream replicate`, stopped by pid (SIGTERM, then SIGKILL) when dropped.
/// Its stdout and stderr go to `litestream.log` and `litestream.err` in its directory.
pub struct Replicator(Child);

impl Replicator {
    /// `litestream replicate -config CONFIG` in `cwd` (without AWS_CA_BUNDLE, which makes
    /// it refuse to start).
    pub fn start(config: &Path, cwd: &Path) -> Replicator {
        Replicator::start_bin(&litestream_bin(), config, cwd)
    }

    /// `start`, with another litestream binary (another release).
    pub fn start_bin(bin: &Path, config: &Path, cwd: &Path) -> Replicator {
        let mut cmd = Command::new(bin);
        cmd.args(["replicate", "-config", config.to_str().unwrap()])
            .current_dir(cwd)
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(cwd.join("litestream.log")).unwrap())
            .stderr(std::fs::File::create(cwd.join("litestream.err")).unwrap());
        Replicator(cmd.spawn().expect("cannot start litestream replicate"))
    }

    pub fn stop(&mut self) {
        if self.0.try_wait().unwrap().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.0.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `app.db` in `cwd` through plain python (no extension), in WAL mode.
pub fn write_plain(cwd: &Path, body: &str) {
    let script = format!(
        r#"
import sqlite3, random
db = sqlite3.connect("app.db", isolation_level=None, timeout=30)
db.execute("PRAGMA journal_mode=WAL")
{body}
"#
    );
    check(
        &run(PYTHON3, &["-"], cwd, &[], &script),
        "plain python writer",
    );
}

/// The source's first state: table `t` with one row.
pub fn write_first_row(cwd: &Path) {
    write_plain(
        cwd,
        r#"
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
db.execute("INSERT INTO t(k, v) VALUES ('first', zeroblob(100))")
"#,
    );
}

/// One round of writes: five transactions of 40 rows of random sizes (some with overflow
/// pages) keyed `r<round>`, each deleting some rows too; `rng_seed` seeds Python's RNG.
pub fn write_round(cwd: &Path, rng_seed: u64, round: u32) {
    write_plain(
        cwd,
        &format!(
            r#"
rng = random.Random({rng_seed})
for txn in range(5):
    db.execute("BEGIN IMMEDIATE")
    for i in range(40):
        db.execute("INSERT INTO t(k, v) VALUES (?, ?)", ("r{round}", rng.randbytes(rng.choice([10, 300, 2000, 7000]))))
    db.execute("DELETE FROM t WHERE id % 13 = ?", (rng.randint(0, 12),))
    db.execute("COMMIT")
"#
        ),
    );
}

/// `.dump t`: the application's table only. Litestream adds its own `_litestream_seq` and
/// `_litestream_lock` tables to the source and writes to them itself (its last write is
/// not necessarily replicated yet), so whole-database dumps of the source and a restore
/// of a Litestream replica need not match.
pub fn dump_t(db: &Path) -> String {
    sqlite3_dot(db, ".dump t")
}

/// Polls (bounded, 60 s) until `litestream_restore(OUT)` — litestream's own restore of the
/// replica into a new file `OUT` in `dir` — succeeds with `.dump t` equal to `want`.
/// Failures start with `context` and show the replicator's output (in `dir`).
pub fn wait_replicated(
    dir: &Path,
    want: &str,
    what: &str,
    context: &str,
    mut litestream_restore: impl FnMut(&Path) -> Output,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        n += 1;
        let out = dir.join(format!("poll-{}-{n}.db", what.replace(' ', "-")));
        let o = litestream_restore(&out);
        if o.status.success() && out.exists() && dump_t(&out) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{context}litestream replicate did not replicate {what} within 60 s; last restore: {} {}\nlitestream replicate's output:\n{}\n{}",
            stdout(&o),
            stderr(&o),
            std::fs::read_to_string(dir.join("litestream.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("litestream.err")).unwrap_or_default()
        );
        std::thread::park_timeout(Duration::from_millis(200));
    }
}
