-- The README's flow: load, then open a new database. It is switched to WAL and replicates;
-- each replica_sync() returns the txid the replica reached: 1 for the first upload (a
-- snapshot of the new database; syncing before the first write keeps the numbering
-- independent of when the uploader takes it), then one more per transaction shipped, and the
-- same again when nothing is new.
.load @LIB@
.open app.db
PRAGMA journal_mode;
SELECT replica_sync(10000) AS initial_snapshot;
BEGIN;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);
INSERT INTO t(v) VALUES ('a'), ('b');
COMMIT;
SELECT replica_sync(10000) AS first;
INSERT INTO t(v) VALUES ('c');
SELECT replica_sync(10000) AS second;
UPDATE t SET v = upper(v);
SELECT replica_sync() AS third;
SELECT replica_sync() AS nothing_new;
SELECT * FROM t;
-- Litestream's file layout: a level-9 snapshot, then one level-0 file per shipped batch.
-- Levels 1-8 are left out: compaction runs whenever a window boundary passes.
.system find replicas -type f -not -path '*/ltx/[1-8]/*' | sort
