-- Restore at earlier txids (decimal and 0x hex), at a timestamp, and the errors for points
-- the replica cannot serve. Txid 1 is the snapshot of the new, empty database.
.load @LIB@
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
BEGIN;
CREATE TABLE t(x);
INSERT INTO t VALUES (1), (2), (3);
COMMIT;
SELECT replica_sync(10000) AS txid;
INSERT INTO t VALUES (4);
SELECT replica_sync(10000) AS txid;
DELETE FROM t WHERE x <= 2;
SELECT replica_sync(10000) AS txid;
SELECT replica_restore('app.db', 'at1.db', 1) AS at1,
       replica_restore('app.db', 'at2.db', 2) AS at2,
       replica_restore('app.db', 'at3.db', '0x3') AS at3,
       replica_restore('app.db', 'latest.db', 'latest') AS latest,
       replica_restore('app.db', 'future.db', '2999-01-01T00:00:00Z') AS future;
SELECT replica_restore('app.db', 'past.db', '2000-01-01T00:00:00Z');
SELECT replica_restore('app.db', 'past.db', 99);
SELECT replica_restore('app.db', 'past.db', 0);
.open file:at1.db?replica=off
SELECT 'at1', count(*) FROM sqlite_schema;
ATTACH 'file:at2.db?replica=off' AS at2;
SELECT 'at2', group_concat(x) FROM at2.t;
ATTACH 'file:at3.db?replica=off' AS at3;
SELECT 'at3', group_concat(x) FROM at3.t;
ATTACH 'file:latest.db?replica=off' AS latest;
SELECT 'latest', group_concat(x) FROM latest.t;
ATTACH 'file:future.db?replica=off' AS future;
SELECT 'future', group_concat(x) FROM future.t;
.system ls *.db
