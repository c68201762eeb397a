//! Damaged replicas, restored: a restore yields a committed state of *that* database or
//! refuses, never anything else. A database with a few thousand seeded transactions is
//! replicated through the loaded extension (snapshot, level-0, level-1 and level-2 files),
//! beside two more written in the same run: a sibling (a copy of the database that took its
//! own commits from the same starting state, replicated to its own directory) and an
//! unrelated database of the same schema whose history has the same shape (the same
//! operations on the same rows, with its own values), so that its pages fit ours as a real
//! neighbour's would. Then, one mutation per round on a fresh copy of the replica: byte
//! flips in a file's header, pages and trailer, truncations, two files' contents swapped,
//! a file replaced by the unrelated database's file of the same name, or by the sibling's.
//! `replica_restore` must refuse each or restore a state whose content hash is one the
//! database committed (0 bad); `litestream restore` (default options, then
//! `-integrity-check full`) runs on every mutated replica too and its figures are printed,
//! not asserted. Replay with `MUTATION_SEED=<seed>` (printed first): the history and the
//! mutations replay; which files compaction made depends on timing (its windows are 2 s and
//! 6 s of the clock).
//!
//! Also the one case by hand: a same-named level-0 file from another database whose pages
//! fit ours restores, under `quick_check`, into a database whose index disagrees with its
//! table; the default check refuses it, naming the file.

mod common;

use common::restores::*;
use common::seeded::{seed_from_env, Rng};
use common::*;
use replica::restore::{parse_listing, plan, LtxObject};
use replica::store::fs::DirStore;
use replica::store::ObjectStore;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB); \
    CREATE INDEX t_k ON t(k); \
    CREATE TABLE u(id INTEGER PRIMARY KEY, n INTEGER, s TEXT); CREATE INDEX u_n ON u(n);";

/// The content hash of a database, in Python: the sum (mod 2^64) of a hash of every row of
/// every table, so that a commit updates it from the rows it changes. `digest_file(path)`
/// prints `ok <hash>` for a database that passes `integrity_check`, else `corrupt <why>`.
const PY_DIGEST: &str = r#"
import hashlib, sqlite3
M = (1 << 64) - 1
def rowhash(table, row):
    return int.from_bytes(hashlib.sha256(repr((table,) + tuple(row)).encode()).digest()[:8], "big")
def tables(conn):
    return [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
def full_digest(conn):
    s = 0
    for name in tables(conn):
        for row in conn.execute(f"SELECT rowid, * FROM {name}"):
            s = (s + rowhash(name, row)) & M
    return s
def digest_file(path):
    try:
        c = sqlite3.connect("file:" + path + "?immutable=1", uri=True)
        check = c.execute("PRAGMA integrity_check").fetchall()
        d = full_digest(c)
        c.close()
        if check != [("ok",)]:
            return "corrupt " + "; ".join(r[0] for r in check)[:200].replace("\n", " ")
        return "ok %d" % d
    except sqlite3.Error as e:
        return "corrupt " + str(e).replace("\n", " ")
"#;

/// The writer, after `PY_LOAD` and `PY_DIGEST`: three databases, each with a generator of
/// its history's shape (which operation, on which row, of what size) and one of its values.
/// `app` and `other` share the shape; `sibling` starts from `app`'s first state. Every
/// commit of `app` adds its content hash to `states`. Syncs every 10 commits, waits for a
/// level-2 file, then ships six commits one file each, up to the same txid in all three (a
/// tail of level-0 files with the same names).
const PY_WRITER: &str = r#"
import json, os, random, sys, time
class Db:
    def __init__(self, path, shape, values):
        self.c = sqlite3.connect(path, isolation_level=None)
        self.c.execute("PRAGMA synchronous=normal")
        self.shape, self.values = random.Random(shape), random.Random(values)
        self.d = full_digest(self.c)
    def change(self, table, rowid, sign):
        r = self.c.execute(f"SELECT rowid, * FROM {table} WHERE rowid=?", (rowid,)).fetchone()
        if r is not None:
            self.d = (self.d + sign * rowhash(table, r)) & M
    def pick(self, table):
        n = self.c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if n == 0:
            return None
        at = self.shape.randrange(n)
        return self.c.execute(f"SELECT rowid FROM {table} ORDER BY rowid LIMIT 1 OFFSET ?", (at,)).fetchone()[0]
    def key(self):
        return "k%08d" % self.values.randrange(10**8)
    def step(self):
        sh, c = self.shape, self.c
        c.execute("BEGIN")
        x = sh.random()
        if x < 0.5:
            for _ in range(sh.randint(1, 3)):
                size = 5000 if sh.random() < 0.03 else sh.randint(20, 400)
                cur = c.execute("INSERT INTO t(k, v) VALUES (?, ?)", (self.key(), self.values.randbytes(size)))
                self.change("t", cur.lastrowid, 1)
        elif x < 0.7:
            r = self.pick("t")
            if r is not None:
                self.change("t", r, -1)
                c.execute("UPDATE t SET k = ?, v = ? WHERE rowid = ?", (self.key(), self.values.randbytes(sh.randint(20, 400)), r))
                self.change("t", r, 1)
        elif x < 0.85:
            for _ in range(sh.randint(1, 2)):
                r = self.pick("t")
                if r is not None:
                    self.change("t", r, -1)
                    c.execute("DELETE FROM t WHERE rowid = ?", (r,))
        else:
            r = self.pick("u") if sh.random() < 0.5 else None
            if r is not None:
                self.change("u", r, -1)
                c.execute("UPDATE u SET n = ?, s = ? WHERE rowid = ?", (self.values.randrange(1000), "s" * sh.randint(1, 50), r))
                self.change("u", r, 1)
            else:
                cur = c.execute("INSERT INTO u(n, s) VALUES (?, ?)", (self.values.randrange(1000), "s" * sh.randint(1, 50)))
                self.change("u", cur.lastrowid, 1)
        c.execute("COMMIT")
seed, n = int(sys.argv[1]), int(sys.argv[2])
app = Db("app.db", seed, seed + 1)
other = Db("other.db", seed, seed + 2)
sibling = Db("sibling.db", seed + 3, seed + 4)
dbs = (app, other, sibling)
states = {app.d}
def commit_all():
    for d in dbs:
        d.step()
    states.add(app.d)
def sync_all():
    for d in dbs:
        d.c.execute("SELECT replica_sync(30000)").fetchone()
for i in range(n):
    commit_all()
    if i % 10 == 9:
        sync_all()
sync_all()
level2 = "replicas/app.db/ltx/2"
wait_for("level-2 file", lambda: True if os.path.isdir(level2) and os.listdir(level2) else None, timeout=60)
# The tail: level-0 files of the same names in all three, one commit each.
txids = [d.c.execute("SELECT replica_sync(30000)").fetchone()[0] for d in dbs]
for d, txid in zip(dbs, txids):
    while txid < max(txids) + 6:
        d.step()
        if d is app:
            states.add(app.d)
        txid = d.c.execute("SELECT replica_sync(30000)").fetchone()[0]
assert full_digest(app.c) == app.d, "the running content hash drifted"
print(app.d)
print(" ".join(str(s) for s in sorted(states)))
"#;

/// Each line of stdin is a path; prints `digest_file` of each, one line per path.
const PY_DIGEST_ALL: &str = r#"
import sys
for line in sys.stdin:
    print(digest_file(line.rstrip("\n")), flush=True)
"#;

/// After `PY_LOAD`: each line of stdin is `<replica dir>\t<output>`; prints `restored <txid>`
/// or `refused <error>` for each, one line per restore.
const PY_RESTORE_ALL: &str = r#"
import sys
for line in sys.stdin:
    rep, out = line.rstrip("\n").split("\t")
    try:
        txid = boot.execute("SELECT replica_restore(?, ?)", ("file://" + rep, out)).fetchone()[0]
        print("restored", txid, flush=True)
    except sqlite3.Error as e:
        print("refused", str(e).replace("\n", " "), flush=True)
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mutation {
    /// None: the control round.
    Untouched,
    HeaderFlip,
    PageFlip,
    TrailerFlip,
    Truncation,
    Swap,
    Foreign,
    Diverged,
}

/// How many rounds of each: 48 mutations, most of them the files of other databases, after
/// one round without.
const ROUNDS: &[(Mutation, usize)] = &[
    (Mutation::Untouched, 1),
    (Mutation::HeaderFlip, 4),
    (Mutation::PageFlip, 4),
    (Mutation::TrailerFlip, 4),
    (Mutation::Truncation, 6),
    (Mutation::Swap, 6),
    (Mutation::Foreign, 12),
    (Mutation::Diverged, 12),
];

/// A finished restore: refused (with why), or the output's `digest_file` line.
enum Outcome {
    Refused(String),
    Restored(String),
}

/// The three replicas and the content hash of every state `app.db` committed.
struct Written {
    dir: TempDir,
    states: BTreeSet<String>,
    last: String,
}

impl Written {
    fn replica(&self, name: &str) -> PathBuf {
        self.dir.join(&format!("replicas/{name}"))
    }
}

fn write_replicas(seed: u64, commits: usize) -> Written {
    let dir = TempDir::new("mutations");
    let cwd = dir.path();
    create_schema(
        cwd,
        "app.db",
        &format!("{SCHEMA} INSERT INTO t(k, v) SELECT 'k' || value, randomblob(100) FROM generate_series(1, 50);"),
    );
    std::fs::copy(dir.join("app.db"), dir.join("sibling.db")).unwrap();
    create_schema(
        cwd,
        "other.db",
        &format!("{SCHEMA} INSERT INTO t(k, v) SELECT 'o' || value, randomblob(100) FROM generate_series(1, 50);"),
    );
    let url = |name: &str| format!("file://{}", dir.join(&format!("replicas/{name}")).display());
    std::fs::write(
        dir.join("litestream.yml"),
        format!(
            "levels:\n  - interval: 2s\n  - interval: 6s\ndbs:\n{}",
            ["app.db", "other.db", "sibling.db"]
                .iter()
                .map(|n| format!("  - path: {n}\n    replica: {{url: {}}}\n", url(n)))
                .collect::<String>()
        ),
    )
    .unwrap();
    let lib = load_path();
    let o = run(
        PYTHON3,
        &["-", &seed.to_string(), &commits.to_string()],
        cwd,
        &[
            ("REPLICA_TEST_LIB", &lib),
            ("REPLICA_CONFIG", "litestream.yml"),
        ],
        &format!("{PY_LOAD}{PY_WAIT_FOR}{PY_DIGEST}{PY_WRITER}"),
    );
    let text = check(&o, "writing the replicas");
    let mut lines = text.lines();
    let last = lines.next().expect("the last state").to_string();
    let states = lines
        .next()
        .expect("the committed states")
        .split(' ')
        .map(str::to_string)
        .collect();
    Written { dir, states, last }
}

/// The files a latest restore of `replica` applies, in order.
fn planned(replica: &Path) -> Vec<LtxObject> {
    let listing = DirStore::new(replica.to_path_buf()).list("").unwrap();
    plan(&parse_listing(&listing), None).unwrap()
}

/// Where the object `key` (`<level %04x>/<name>`) lives in a directory replica.
fn path_of(replica: &Path, key: &str) -> PathBuf {
    let (level, name) = key.split_once('/').unwrap();
    let level = u8::from_str_radix(level, 16).unwrap();
    replica.join(format!("ltx/{level}/{name}"))
}

/// Applies `m` to the copy `rep` of the replica; says what it did.
fn mutate(m: Mutation, rep: &Path, w: &Written, chain: &[LtxObject], rng: &mut Rng) -> String {
    let pick = |rng: &mut Rng, from: &[&LtxObject]| {
        from[rng.below(from.len() as u64) as usize].key.clone()
    };
    let all: Vec<&LtxObject> = chain.iter().collect();
    let key = pick(rng, &all);
    let path = path_of(rep, &key);
    let bytes = std::fs::read(&path).unwrap();
    let len = bytes.len() as u64;
    let flip = |lo: u64, hi: u64, rng: &mut Rng| {
        let at = lo + rng.below(hi - lo);
        let mut flipped = bytes.clone();
        flipped[at as usize] ^= 1 << rng.below(8);
        std::fs::write(&path, &flipped).unwrap();
        format!("{key}: bit flipped at byte {at} of {len}")
    };
    match m {
        Mutation::Untouched => "nothing changed".into(),
        Mutation::HeaderFlip => flip(0, 100, rng),
        Mutation::PageFlip => flip(100, len - 16, rng),
        Mutation::TrailerFlip => flip(len - 16, len, rng),
        Mutation::Truncation => {
            let to = rng.below(len);
            std::fs::write(&path, &bytes[..to as usize]).unwrap();
            format!("{key}: truncated to {to} of {len} bytes")
        }
        Mutation::Swap => {
            let others: Vec<&LtxObject> = chain.iter().filter(|o| o.key != key).collect();
            let with = pick(rng, &others);
            let other_path = path_of(rep, &with);
            let theirs = std::fs::read(&other_path).unwrap();
            std::fs::write(&other_path, &bytes).unwrap();
            std::fs::write(&path, theirs).unwrap();
            format!("{key} and {with}: contents swapped")
        }
        Mutation::Foreign | Mutation::Diverged => {
            let from = w.replica(if m == Mutation::Foreign {
                "other.db"
            } else {
                "sibling.db"
            });
            // Their files with one of our planned names and other contents, level-0 files
            // first (the tail of a chain, where one file's pages matter most).
            let same: Vec<&LtxObject> = chain
                .iter()
                .filter(|o| {
                    std::fs::read(path_of(&from, &o.key))
                        .is_ok_and(|theirs| theirs != std::fs::read(path_of(rep, &o.key)).unwrap())
                })
                .collect();
            assert!(
                !same.is_empty(),
                "no file of {} has a planned name",
                from.display()
            );
            let level0: Vec<&LtxObject> = same.iter().copied().filter(|o| o.level == 0).collect();
            let from_level0 = !level0.is_empty() && rng.below(3) > 0;
            let key = pick(rng, if from_level0 { &level0 } else { &same });
            std::fs::copy(path_of(&from, &key), path_of(rep, &key)).unwrap();
            format!(
                "{key}: replaced by {}'s",
                from.file_name().unwrap().to_string_lossy()
            )
        }
    }
}

/// Runs `program` lines over stdin and returns one output line per input line.
fn lines_of(program: &str, cwd: &Path, env: &[(&str, &str)], input: &str) -> Vec<String> {
    let o = run(PYTHON3, &["-c", program], cwd, env, input);
    check(&o, "python3").lines().map(str::to_string).collect()
}

fn digests(cwd: &Path, paths: &[PathBuf]) -> Vec<String> {
    let input: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
    lines_of(&format!("{PY_DIGEST}{PY_DIGEST_ALL}"), cwd, &[], &input)
}

/// Whether a restored file's digest line is one of the committed states.
fn committed(line: &str, states: &BTreeSet<String>) -> bool {
    line.strip_prefix("ok ").is_some_and(|d| states.contains(d))
}

/// One mutated copy of the replica: what was done, and where.
struct Round {
    mutation: Mutation,
    what: String,
    replica: PathBuf,
}

/// A fresh copy of the replica per round, each mutated once, in the order of `ROUNDS`.
fn make_rounds(w: &Written, chain: &[LtxObject], rng: &mut Rng) -> Vec<Round> {
    let mut rounds = Vec::new();
    for &(mutation, n) in ROUNDS {
        for _ in 0..n {
            let replica = w.dir.join(&format!("rounds/{}/replica", rounds.len()));
            copy_dir(&w.replica("app.db"), &replica);
            let what = mutate(mutation, &replica, w, chain, rng);
            rounds.push(Round {
                mutation,
                what,
                replica,
            });
        }
    }
    rounds
}

/// `replica_restore` of every round's replica, in one process.
fn restore_ours(rounds: &[Round], w: &Written) -> Vec<Outcome> {
    let lib = load_path();
    let out = |r: &Round| r.replica.with_file_name("ours.db");
    let input: String = rounds
        .iter()
        .map(|r| format!("{}\t{}\n", r.replica.display(), out(r).display()))
        .collect();
    let lines = lines_of(
        &format!("{PY_LOAD}{PY_RESTORE_ALL}"),
        w.dir.path(),
        &[("REPLICA_TEST_LIB", &lib), ("REPLICA_URL", "")],
        &input,
    );
    assert_eq!(lines.len(), rounds.len(), "{lines:?}");
    let restored: Vec<PathBuf> = rounds
        .iter()
        .zip(&lines)
        .filter(|(_, l)| l.starts_with("restored "))
        .map(|(r, _)| out(r))
        .collect();
    let mut restored_digests = digests(w.dir.path(), &restored).into_iter();
    lines
        .iter()
        .map(|l| match l.strip_prefix("refused ") {
            Some(why) => Outcome::Refused(why.to_string()),
            None => Outcome::Restored(restored_digests.next().unwrap()),
        })
        .collect()
}

#[test]
fn mutated_replicas_restore_to_a_committed_state_or_are_refused() {
    let seed = seed_from_env("MUTATION_SEED", |t| t % 100_000);
    println!("MUTATION_SEED={seed}");
    let w = write_replicas(seed, 2500);
    let chain = planned(&w.replica("app.db"));
    let levels: BTreeSet<u8> = chain.iter().map(|o| o.level).collect();
    println!(
        "seed {seed}: {} committed states; the latest restore applies {} files of levels {levels:?}",
        w.states.len(),
        chain.len()
    );
    let rounds = make_rounds(&w, &chain, &mut Rng::from_seed(seed));
    let outcomes = restore_ours(&rounds, &w);
    let litestream_runs = litestream_all(&rounds, &w);
    let mut bad = Vec::new();
    // Per mutation: rounds; refused by replica_restore; by litestream restore, refused and
    // restored into a state never committed, with its default options then with
    // `-integrity-check full`.
    let mut table: std::collections::BTreeMap<Mutation, [usize; 6]> = Default::default();
    for ((r, outcome), ls) in rounds.iter().zip(&outcomes).zip(&litestream_runs) {
        let (m, what) = (r.mutation, &r.what);
        let row = table.entry(m).or_default();
        row[0] += 1;
        let ours = match outcome {
            Outcome::Refused(why) => {
                row[1] += 1;
                format!("refused: {why}")
            }
            Outcome::Restored(line) if committed(line, &w.states) => "a committed state".into(),
            Outcome::Restored(line) => {
                bad.push(format!("{m:?} {what}: restored {line}"));
                format!("BAD {line}")
            }
        };
        for (i, l) in ls.iter().enumerate() {
            match l {
                None => row[2 + 2 * i] += 1,
                Some(line) if !committed(line, &w.states) => row[3 + 2 * i] += 1,
                Some(_) => {}
            }
        }
        println!("seed {seed}: {m:?} {what}\n    ours: {ours}\n    litestream: {ls:?}");
    }
    println!("seed {seed}: per mutation: [rounds, refused by replica_restore, refused by litestream restore, restored by it into a state never committed, the same two with -integrity-check full]");
    for (m, row) in &table {
        println!("seed {seed}:   {m:?}: {row:?}");
    }
    // Untouched, both restores give the last state.
    let last = format!("ok {}", w.last);
    assert!(
        matches!(&outcomes[0], Outcome::Restored(l) if *l == last),
        "seed {seed}: the untouched replica"
    );
    assert_eq!(litestream_runs[0][0].as_ref(), Some(&last), "seed {seed}");
    assert!(
        bad.is_empty(),
        "seed {seed}: {} of {} mutated replicas restored into a state the database never committed:\n{}",
        bad.len(),
        rounds.len() - 1,
        bad.join("\n")
    );
}

/// `litestream restore` of each round's replica with its default options, then with
/// `-integrity-check full`: for each, `None` when it refused, else the digest line of what it
/// restored.
fn litestream_all(rounds: &[Round], w: &Written) -> Vec<[Option<String>; 2]> {
    let run_one = |rep: &Path, out: &str, extra: &[&str]| -> Option<PathBuf> {
        let url = format!("file://{}", rep.display());
        let out = rep.with_file_name(out);
        let mut args = vec!["restore"];
        args.extend_from_slice(extra);
        args.extend(["-o", out.to_str().unwrap(), url.as_str()]);
        let o = litestream(&args, w.dir.path());
        (o.status.success() && out.exists()).then_some(out)
    };
    let outs: Vec<[Option<PathBuf>; 2]> = rounds
        .iter()
        .map(|r| {
            [
                run_one(&r.replica, "litestream.db", &[]),
                run_one(
                    &r.replica,
                    "litestream-full.db",
                    &["-integrity-check", "full"],
                ),
            ]
        })
        .collect();
    let present: Vec<PathBuf> = outs.iter().flatten().flatten().cloned().collect();
    let mut d = digests(w.dir.path(), &present).into_iter();
    outs.into_iter()
        .map(|pair| pair.map(|o| o.map(|_| d.next().unwrap())))
        .collect()
}

/// An LTX file re-encoded with no replication history id (node id 0).
fn without_history(file: &[u8]) -> Vec<u8> {
    use replica::ltx::{decode_all, Encoder, Header};
    let (h, pages, _) = decode_all(file).unwrap();
    let mut enc = Encoder::new(Vec::new(), Header { node_id: 0, ..h }).unwrap();
    for (pgno, data) in pages {
        enc.encode_page(pgno, &data).unwrap();
    }
    enc.finish(0).unwrap().0
}

#[test]
fn a_same_named_level0_file_from_another_database_is_refused() {
    let dir = TempDir::new("mutation-foreign");
    let url = format!("file://{}", dir.join("replicas").display());
    // Two databases with the same schema and layout, different keys: a page of one fits
    // the other's b-tree, but not its index.
    for (name, key) in [("app.db", "a"), ("other.db", "b")] {
        create_schema(
            dir.path(),
            name,
            &format!(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB); CREATE INDEX t_k ON t(k); \
                 INSERT INTO t SELECT value, '{key}' || printf('%05d', value), zeroblob(100) FROM generate_series(1, 200);"
            ),
        );
    }
    // Each takes one commit that rewrites one table page: level-0 file 2-2.
    let text = check(
        &python_loaded(
            r#"
for name in ("app.db", "other.db"):
    db = sqlite3.connect(name, isolation_level=None)
    db.execute("SELECT replica_sync(10000)")
    db.execute("UPDATE t SET v = randomblob(100) WHERE id = 7")
    print(name, db.execute("SELECT replica_sync(10000)").fetchone()[0])
"#,
            dir.path(),
            &[("REPLICA_URL", &url)],
        ),
        "writing both replicas",
    );
    assert_eq!(text, "app.db 2\nother.db 2\n");
    let ours = dir.join("replicas/app.db");
    let theirs = l0(&dir.join("replicas/other.db"), 2);
    std::fs::copy(&theirs, l0(&ours, 2)).unwrap();
    let src = format!("{url}/app.db");
    // Stamped with another history's id, it is refused before any page, under any check.
    let quick = dir.join("quick.db");
    for (check, out) in [(Some("quick"), &quick), (None, &dir.join("out.db"))] {
        let err = restore_in("", dir.path(), &[("REPLICA_URL", "")], &src, out, check)
            .expect_err("a restore through another history's file");
        assert!(
            err.contains("0000/0000000000000002-0000000000000002.ltx: written by another replication history"),
            "{err}"
        );
        assert!(!out.exists());
    }
    // Without an id (as Litestream and older builds write them), what the file does: under
    // quick_check alone it restores, into a database whose index disagrees with its table.
    std::fs::write(
        l0(&ours, 2),
        without_history(&std::fs::read(&theirs).unwrap()),
    )
    .unwrap();
    let restored = restore_in(
        "",
        dir.path(),
        &[("REPLICA_URL", "")],
        &src,
        &quick,
        Some("quick"),
    );
    assert_eq!(restored, Ok(2), "quick_check does not see the foreign page");
    let integrity = sqlite3_dot(&quick, "PRAGMA integrity_check;");
    assert!(integrity.contains("missing from index t_k"), "{integrity}");
    // The default check refuses it, naming the file, and leaves nothing behind.
    let out = dir.join("out.db");
    let err = restore(dir.path(), &src, &out).expect_err("a restore through a foreign file");
    assert!(
        err.contains("missing from index t_k")
            && err
                .contains("first fails after applying 0000/0000000000000002-0000000000000002.ltx"),
        "{err}"
    );
    assert!(!out.exists());
}
