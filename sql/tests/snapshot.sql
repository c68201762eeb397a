-- replica_snapshot() ships a full snapshot now and returns its txid; a restore after it
-- equals the source, and earlier txids still restore. (Each snapshot follows a sync, so no
-- commit is pending and the txids are deterministic.)
.load @LIB@
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
BEGIN;
CREATE TABLE t(k TEXT PRIMARY KEY, v BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO t SELECT 'k' || i, zeroblob(100 + i) FROM n;
COMMIT;
SELECT replica_sync(10000) AS synced;
DELETE FROM t WHERE rowid % 3 = 0;
SELECT replica_sync(10000) AS synced;
SELECT replica_snapshot() AS snapshot;
SELECT replica_restore('app.db', 'snap.db') AS restored;
UPDATE t SET v = zeroblob(7) WHERE k = 'k1';
SELECT replica_sync(10000) AS synced;
SELECT replica_snapshot('app.db') AS snapshot_by_name;
INSERT INTO t VALUES ('new', x'00');
SELECT replica_sync(10000) AS synced;
SELECT replica_restore('app.db', 'latest.db') AS restored;
SELECT replica_restore('app.db', 'at3.db', 3) AS restored_at_3;
SELECT replica_restore('app.db', 'at2.db', 2) AS restored_at_2;
-- Levels 1-8 are left out: compaction runs whenever a window boundary passes.
.system find replicas -type f -not -path '*/ltx/[1-8]/*' | sort
ATTACH 'file:snap.db?replica=off' AS snap;
ATTACH 'file:latest.db?replica=off' AS latest;
ATTACH 'file:at3.db?replica=off' AS at3;
ATTACH 'file:at2.db?replica=off' AS at2;
SELECT (SELECT count(*) FROM at2.t) AS at2_rows,
       (SELECT count(*) FROM at3.t) AS at3_rows,
       (SELECT count(*) FROM snap.t) AS snap_rows,
       (SELECT count(*) FROM latest.t) AS latest_rows,
       (SELECT count(*) FROM main.t) AS source_rows;
SELECT count(*) AS latest_differs FROM (SELECT * FROM main.t EXCEPT SELECT * FROM latest.t);
SELECT count(*) AS snap_differs_from_at3 FROM (SELECT * FROM at3.t EXCEPT SELECT * FROM snap.t);
SELECT length(v) FROM latest.t WHERE k = 'k1';
SELECT length(v) FROM snap.t WHERE k = 'k1';
