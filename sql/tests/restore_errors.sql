-- What restore refuses: replacing a file without 'overwrite', unknown options, a point in
-- time that is neither a txid nor a timestamp, a live database, a replica that is empty.
.load @LIB@
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
BEGIN;
CREATE TABLE t(x);
INSERT INTO t VALUES ('one');
COMMIT;
SELECT replica_sync(10000) AS synced;
SELECT replica_restore('app.db', 'copy.db') AS first_restore;
SELECT replica_restore('app.db', 'copy.db');
SELECT replica_restore('app.db', 'copy.db', NULL, 'force');
SELECT replica_restore('app.db', 'copy.db', 'last tuesday', 'overwrite');
SELECT replica_restore('app.db', 'app.db', NULL, 'overwrite');
INSERT INTO t VALUES ('two');
SELECT replica_sync(10000) AS synced;
SELECT replica_restore('app.db', 'copy.db', NULL, 'overwrite') AS overwritten;
SELECT replica_restore('ghost.db', 'ghost-copy.db');
SELECT replica_restore('file://@TMP@/nowhere/ghost.db', 'ghost-copy.db');
.system ls *.db
.open file:copy.db?replica=off
SELECT group_concat(x) FROM t;
