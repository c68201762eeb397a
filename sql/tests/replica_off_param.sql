-- URI parameters override REPLICA_URL: replica=off disables replication of that database,
-- replica=URL sends it elsewhere.
.load @LIB@
.open file:y.db?replica=off
PRAGMA journal_mode;
CREATE TABLE t(x);
INSERT INTO t VALUES (1);
SELECT count(*) AS replicated FROM replica_status();
SELECT replica_sync(100);
.open file:z.db?replica=file://@TMP@/elsewhere/z-copy.db
PRAGMA journal_mode;
SELECT replica_sync(10000) AS initial_snapshot;
BEGIN;
CREATE TABLE t(x);
INSERT INTO t VALUES ('z');
COMMIT;
SELECT replica_sync(10000) AS synced;
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
CREATE TABLE t(x);
SELECT replica_sync(10000) AS synced;
SELECT name, replica_url FROM replica_status();
SELECT replica_restore('z.db', 'z-restored.db') AS restored;
-- Levels 1-8 are left out: compaction runs whenever a window boundary passes.
.system find replicas elsewhere -type f -not -path '*/ltx/[1-8]/*' | sort
.open file:z-restored.db?replica=off
SELECT * FROM t;
