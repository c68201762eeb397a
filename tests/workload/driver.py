#!/usr/bin/python3
"""Randomized workload for libreplica (driven by tests/workload.rs).

Modes (output is line-oriented and tab-separated, so the Rust side needs no JSON crate):

  driver.py run SEED OPS OUT.txt
      Loads the extension from $REPLICA_TEST_LIB on a :memory: connection, opens app.db
      (in the working directory) on several connections and runs OPS seeded random
      operations. At ten points it calls replica_sync(10000) and records (txid, hash of the
      canonical dump); at the end it syncs again and records the final state and
      replica_status(). Writes the report to OUT.txt (and stdout):
      "point LABEL TXID HASH ROWS", "final TXID HASH ROWS", "status KEY VALUE",
      "sqlite_broken_chains N [OPS]", ... Before each operation it writes "OP I NAME" to
      stderr, so the extension's messages there (REPLICA_LOG=stderr) can be attributed.

  driver.py restore SRC TARGET POINT [SRC TARGET POINT ...]
      Loads the extension and runs replica_restore(SRC, TARGET[, POINT]) for each triple
      (POINT "latest" omits the argument); prints "TARGET ok TXID" or "TARGET error MSG".

  driver.py hash DB...
      Without the extension: "DB HASH INTEGRITY_CHECK ROWS" for each database.

The operations are a pure function of the seed (timing only changes how commits are
batched into LTX files), so a failure replays with WORKLOAD_SEED=<seed>.
"""

import hashlib
import json
import os
import random
import sqlite3
import struct
import sys
import time


def canonical(conn):
    """sha256 of the schema and of every table's rows ordered by rowid, and the row counts."""
    h = hashlib.sha256()
    rows = {}
    conn.execute("BEGIN")  # one consistent read
    try:
        for entry in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall():
            h.update(repr(entry).encode())
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
            ).fetchall()
        ]
        for name in tables:
            h.update(("table " + name).encode())
            n = 0
            for row in conn.execute('SELECT rowid, * FROM "%s" ORDER BY rowid' % name):
                h.update(repr(row).encode())
                n += 1
            rows[name] = n
    finally:
        conn.execute("COMMIT")
    return h.hexdigest(), rows


def load_extension():
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(os.environ["REPLICA_TEST_LIB"])
    return boot


class Workload:
    def __init__(self, seed, ops):
        self.seed = seed
        self.ops = ops
        self.rng = random.Random(seed)
        self.conns = []
        self.open_retries = 0
        self.next_tmp = 0
        self.counts = {}

    # -- connections ------------------------------------------------------------------

    def open_conn(self):
        # Opening must never fail with "database is locked": snapshots read inside a read
        # transaction and never hold the write lock (the open-race test covers this alone).
        c = sqlite3.connect("app.db", isolation_level=None, timeout=30)
        mode = c.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal", "seed %d: journal_mode is %r, not wal" % (self.seed, mode)
        return c

    def conn(self):
        return self.rng.choice(self.conns)

    # -- random data ------------------------------------------------------------------

    def size(self):
        r = self.rng.random()
        if r < 0.60:
            return self.rng.randint(0, 300)
        if r < 0.85:
            return self.rng.randint(300, 3000)
        if r < 0.97:
            return self.rng.randint(3000, 12000)  # overflow pages (page size 4096)
        return self.rng.randint(20000, 90000)  # long overflow chains

    def blob(self, n=None):
        return self.rng.randbytes(self.size() if n is None else n)

    def text(self, n=None):
        n = self.size() if n is None else n
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 éß€"
        return "".join(self.rng.choice(alphabet) for _ in range(min(n, 2000))) * max(1, n // 2000)

    def ids(self, c, table="kv"):
        return [r[0] for r in c.execute('SELECT id FROM "%s" ORDER BY id' % table).fetchall()]

    # -- operations -------------------------------------------------------------------

    def insert_rows(self, c, n):
        for _ in range(n):
            if self.rng.random() < 0.7:
                c.execute(
                    "INSERT INTO kv(k, v, n) VALUES (?, ?, ?)",
                    (self.text(self.rng.randint(1, 40)), self.blob(), self.rng.randint(-1 << 40, 1 << 40)),
                )
            else:
                c.execute("INSERT INTO docs(title, body) VALUES (?, ?)", (self.text(20), self.text()))

    def op_insert(self, c):
        c.execute("BEGIN IMMEDIATE")
        self.insert_rows(c, self.rng.randint(1, 40))
        c.execute("COMMIT")

    def op_autocommit_insert(self, c):
        self.insert_rows(c, 1)

    def op_update(self, c):
        ids = self.ids(c)
        if not ids:
            return self.op_insert(c)
        c.execute("BEGIN IMMEDIATE")
        for i in self.rng.sample(ids, min(len(ids), self.rng.randint(1, 30))):
            if self.rng.random() < 0.5:
                c.execute("UPDATE kv SET v = ?, n = n + 1 WHERE id = ?", (self.blob(), i))
            else:
                c.execute("UPDATE kv SET k = ? WHERE id = ?", (self.text(self.rng.randint(1, 60)), i))
        docs = self.ids(c, "docs")
        for i in self.rng.sample(docs, min(len(docs), self.rng.randint(0, 5))):
            c.execute("UPDATE docs SET body = ? WHERE id = ?", (self.text(), i))
        c.execute("COMMIT")

    def op_delete(self, c):
        ids = self.ids(c)
        if not ids:
            return
        c.execute("BEGIN IMMEDIATE")
        if self.rng.random() < 0.3:
            lo = self.rng.choice(ids)
            c.execute("DELETE FROM kv WHERE id BETWEEN ? AND ?", (lo, lo + self.rng.randint(0, 50)))
        else:
            for i in self.rng.sample(ids, min(len(ids), self.rng.randint(1, 20))):
                c.execute("DELETE FROM kv WHERE id = ?", (i,))
        docs = self.ids(c, "docs")
        for i in self.rng.sample(docs, min(len(docs), self.rng.randint(0, 3))):
            c.execute("DELETE FROM docs WHERE id = ?", (i,))
        c.execute("COMMIT")

    def op_big_txn(self, c):
        """A transaction far bigger than the page cache: dirty pages spill into the WAL
        before the commit. Most roll back (their spilled frames must never replicate)."""
        c.execute("PRAGMA cache_size = %d" % self.rng.choice([5, 10, 20]))
        c.execute("BEGIN IMMEDIATE")
        for _ in range(self.rng.randint(150, 400)):
            c.execute(
                "INSERT INTO kv(k, v, n) VALUES (?, ?, ?)",
                ("big", self.rng.randbytes(self.rng.randint(500, 6000)), self.rng.randint(0, 1000)),
            )
        ids = self.ids(c)
        for i in self.rng.sample(ids, min(len(ids), 50)):
            c.execute("UPDATE kv SET n = n + 7 WHERE id = ?", (i,))
        commit = self.rng.random() < 0.35
        c.execute("COMMIT" if commit else "ROLLBACK")
        c.execute("PRAGMA cache_size = -2000")
        self.count("big_commit" if commit else "big_rollback")
        if not commit and self.rng.random() < 0.7:
            # A small commit right after: its frames overwrite the spilled ones in the WAL.
            self.op_autocommit_insert(c)

    def op_savepoints(self, c):
        spill = self.rng.random() < 0.4
        if spill:
            c.execute("PRAGMA cache_size = 10")
        c.execute("BEGIN IMMEDIATE")
        self.insert_rows(c, self.rng.randint(1, 10))
        c.execute("SAVEPOINT a")
        self.insert_rows(c, self.rng.randint(1, 100 if spill else 10))
        c.execute("SAVEPOINT b")
        ids = self.ids(c)
        for i in self.rng.sample(ids, min(len(ids), self.rng.randint(1, 40))):
            c.execute("UPDATE kv SET v = ? WHERE id = ?", (self.blob(), i))
        c.execute("ROLLBACK TO b")
        self.insert_rows(c, self.rng.randint(0, 10))
        c.execute("RELEASE b")
        if self.rng.random() < 0.5:
            c.execute("ROLLBACK TO a")
            self.insert_rows(c, self.rng.randint(0, 5))
        c.execute("RELEASE a")
        if self.rng.random() < 0.15:
            c.execute("ROLLBACK")
        else:
            c.execute("COMMIT")
        if spill:
            c.execute("PRAGMA cache_size = -2000")

    def op_vacuum(self, c):
        c.execute("VACUUM")

    def op_checkpoint(self, c):
        mode = self.rng.choice(["PASSIVE", "FULL", "RESTART", "TRUNCATE"])
        c.execute("PRAGMA wal_checkpoint(%s)" % mode).fetchall()
        self.count("checkpoint_" + mode)

    def op_journal_size_limit(self, c):
        c.execute("PRAGMA journal_size_limit = %d" % self.rng.choice([-1, 0, 4096, 65536, 1 << 20])).fetchall()

    def op_schema(self, c):
        r = self.rng.random()
        if r < 0.3:
            c.execute("CREATE INDEX IF NOT EXISTS kv_n ON kv(n)")
        elif r < 0.45:
            c.execute("DROP INDEX IF EXISTS kv_n")
        elif r < 0.6:
            c.execute("CREATE INDEX IF NOT EXISTS docs_title ON docs(title, id)")
        elif r < 0.85:
            name = "tmp_%d" % self.next_tmp
            self.next_tmp += 1
            c.execute("CREATE TABLE %s AS SELECT id, k, v FROM kv WHERE id %% 3 = %d" % (name, self.rng.randint(0, 2)))
        else:
            tmps = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'tmp_%' ORDER BY name")]
            if tmps:
                c.execute("DROP TABLE %s" % self.rng.choice(tmps))

    def op_reopen(self, _c):
        """Closes every connection (the last close checkpoints and deletes the WAL), then
        opens them again."""
        n = len(self.conns)
        for c in self.conns:
            c.close()
        self.conns = [self.open_conn() for _ in range(n)]

    def count(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1

    # -- an oracle for SQLite's own WAL ---------------------------------------------------
    #
    # SQLite 3.40 can leave committed frames in the WAL whose checksums do not chain: after
    # frames were rewritten in place in a spilled transaction, ROLLBACK TO a savepoint
    # before them keeps SQLite's "recompute checksums from frame N" mark, and the commit
    # then rewrites the checksums from the wrong place. The live database has the
    # transaction; SQLite's own crash recovery would drop it; and the extension, which
    # verifies the chain when it captures, cannot take it and falls back to a snapshot.
    # So the driver checks, after each operation, whether the frames that operation
    # appended chain in the file (reading the wal-index header in -shm for where the log
    # stood before); the test allows capture failures only in those operations.

    @staticmethod
    def wal_index_header():
        try:
            with open("app.db-shm", "rb") as f:
                h = f.read(48)
        except FileNotFoundError:
            return None
        if len(h) < 48:
            return None
        mx_frame = struct.unpack_from("=I", h, 16)[0]
        cksum = struct.unpack_from("=II", h, 24)
        return (mx_frame, cksum, h[32:40])

    @staticmethod
    def wal_checksum(data, s0, s1, fmt):
        words = struct.unpack(fmt % (len(data) // 4), data)
        for i in range(0, len(words), 2):
            s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
            s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
        return s0, s1

    def frames_chain(self, before):
        """Do the frames appended since `before` (a wal_index_header()) chain in the file?"""
        after = self.wal_index_header()
        if after is None:
            return True
        try:
            with open("app.db-wal", "rb") as f:
                header = f.read(32)
                if len(header) < 32 or header[16:24] != after[2]:
                    return True  # no log, or the index describes another generation
                magic, _, page_size, _, _, _, hc1, hc2 = struct.unpack(">8I", header)
                fmt = (">%dI" if magic & 1 else "<%dI")
                if before is None or before[2] != after[2] or before[0] == 0 or before[0] > after[0]:
                    first, cksum = 1, (hc1, hc2)
                else:
                    first, cksum = before[0] + 1, before[1]
                for frame in range(first, after[0] + 1):
                    f.seek(32 + (frame - 1) * (24 + page_size))
                    buf = f.read(24 + page_size)
                    if len(buf) < 24 + page_size or buf[8:16] != after[2]:
                        return False
                    cksum = self.wal_checksum(buf[:8], cksum[0], cksum[1], fmt)
                    cksum = self.wal_checksum(buf[24:], cksum[0], cksum[1], fmt)
                    if cksum != struct.unpack(">II", buf[16:24]):
                        return False
        except FileNotFoundError:
            return True
        return True

    # -- the run ----------------------------------------------------------------------

    def sync_point(self, label):
        c = self.conn()
        txid = c.execute("SELECT replica_sync(10000)").fetchone()[0]
        digest, rows = canonical(c)
        return {"label": label, "txid": txid, "hash": digest, "rows": rows}

    def run(self, out_path):
        self.conns = [self.open_conn() for _ in range(self.rng.randint(2, 3))]
        c = self.conns[0]
        c.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, k TEXT, v BLOB, n INTEGER)")
        c.execute("CREATE TABLE docs(id INTEGER PRIMARY KEY, title TEXT, body TEXT)")
        ops = [
            (self.op_insert, 22),
            (self.op_autocommit_insert, 8),
            (self.op_update, 16),
            (self.op_delete, 10),
            (self.op_big_txn, 5),
            (self.op_savepoints, 8),
            (self.op_vacuum, 1),
            (self.op_checkpoint, 6),
            (self.op_journal_size_limit, 2),
            (self.op_schema, 3),
            (self.op_reopen, 1),
        ]
        funcs = [f for f, _ in ops]
        weights = [w for _, w in ops]
        sync_at = set(int((k + 1) * self.ops / 11) for k in range(10))
        points = []
        started = time.time()
        self.broken_chains = []
        for i in range(self.ops):
            f = self.rng.choices(funcs, weights)[0]
            self.count(f.__name__)
            before = self.wal_index_header()
            # Marks the extension's stderr (REPLICA_LOG=stderr) with the operation it is in.
            print("OP\t%d\t%s" % (i, f.__name__), file=sys.stderr, flush=True)
            f(self.conn())
            if f != self.op_reopen and not self.frames_chain(before):
                self.broken_chains.append(i)
            if i in sync_at:
                points.append(self.sync_point("op%d" % i))
        final = self.sync_point("final")
        status_conn = self.conn()
        cur = status_conn.execute("SELECT * FROM replica_status()")
        cols = [d[0] for d in cur.description]
        status = [dict(zip(cols, r)) for r in cur.fetchall()]
        for c in self.conns:
            c.close()
        # Line-oriented, tab-separated: the Rust test parses it without a JSON crate.
        lines = ["seed\t%d" % self.seed, "connections\t%d" % len(self.conns)]
        for p in points:
            lines.append("point\t%s\t%d\t%s\t%s" % (p["label"], p["txid"], p["hash"], json.dumps(p["rows"], sort_keys=True)))
        lines.append("final\t%d\t%s\t%s" % (final["txid"], final["hash"], json.dumps(final["rows"], sort_keys=True)))
        lines.append("status_rows\t%d" % len(status))
        for row in status:
            for k in sorted(row):
                lines.append("status\t%s\t%s" % (k, row[k]))
        lines.append("open_retries\t%d" % self.open_retries)
        lines.append("sqlite_broken_chains\t%d\t%s" % (len(self.broken_chains), self.broken_chains))
        lines.append("counts\t%s" % json.dumps(self.counts, sort_keys=True))
        lines.append("seconds\t%.2f" % (time.time() - started))
        with open(out_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))


def main():
    mode = sys.argv[1]
    if mode == "run":
        _boot = load_extension()
        Workload(int(sys.argv[2]), int(sys.argv[3])).run(sys.argv[4])
    elif mode == "restore":
        # restore SRC TARGET POINT [SRC TARGET POINT ...]; POINT "latest" = no third argument
        boot = load_extension()
        args = sys.argv[2:]
        for k in range(0, len(args), 3):
            src, target, point = args[k : k + 3]
            try:
                if point == "latest":
                    row = boot.execute("SELECT replica_restore(?, ?)", (src, target)).fetchone()
                else:
                    row = boot.execute("SELECT replica_restore(?, ?, ?)", (src, target, point)).fetchone()
                print("%s\tok\t%d" % (target, row[0]))
            except sqlite3.Error as e:
                print("%s\terror\t%s" % (target, str(e).replace("\n", " ")))
    elif mode == "hash":
        # hash DB...: without the extension; prints DB, hash, integrity_check, row counts
        for path in sys.argv[2:]:
            c = sqlite3.connect(path, isolation_level=None)
            integrity = "; ".join(r[0] for r in c.execute("PRAGMA integrity_check").fetchall())
            digest, rows = canonical(c)
            c.close()
            print("%s\t%s\t%s\t%s" % (path, digest, integrity, json.dumps(rows, sort_keys=True)))
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
