-- env: REPLICA_DEFAULT_VFS=0
-- REPLICA_DEFAULT_VFS=0: the replica VFS is not the default; a plain open does not
-- replicate, a file: URI with vfs=replica does.
.load @LIB@
.open plain.db
PRAGMA journal_mode;
CREATE TABLE t(x);
INSERT INTO t VALUES ('plain');
SELECT count(*) AS replicated FROM replica_status();
.open file:x.db?vfs=replica
PRAGMA journal_mode;
SELECT replica_sync(10000) AS initial_snapshot;
BEGIN;
CREATE TABLE t(x);
INSERT INTO t VALUES ('x');
COMMIT;
SELECT replica_sync(10000) AS synced;
SELECT name, replica_url, state FROM replica_status();
SELECT replica_restore('x.db', 'x-restored.db') AS restored;
-- Levels 1-8 are left out: compaction runs whenever a window boundary passes.
.system find replicas -type f -not -path '*/ltx/[1-8]/*' | sort
.open file:x-restored.db?vfs=replica&replica=off
SELECT * FROM t;
