-- replica_restore_points(): its columns, one row per LTX file oldest first (for the
-- connection's database, or one named); replica_verify() drills the replica and reports in
-- replica_status(); restore options parallelism=N; errors of the new surface.
.load @LIB@
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
CREATE TABLE t(x);
SELECT replica_sync(10000) AS txid;
INSERT INTO t VALUES (1), (2);
SELECT replica_sync(10000) AS txid;
SELECT group_concat(name, ',') AS columns FROM (SELECT name FROM pragma_table_xinfo('replica_restore_points') ORDER BY cid);
.headers on
SELECT name, level, min_txid, max_txid, size > 0 AS has_size,
       timestamp GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*Z' AS rfc3339, key
  FROM replica_restore_points();
SELECT count(*) AS by_name FROM replica_restore_points('app.db');
SELECT count(*) AS by_url FROM replica_restore_points('file://@TMP@/replicas/app.db');
SELECT replica_verify() AS verified_txid;
SELECT last_verify LIKE 'ok: txid 3, checksum %' AS verify_ok, last_verify_at IS NOT NULL AS verify_time,
       restore_files_done IS NULL AS no_restore_running
  FROM replica_status();
SELECT replica_restore('app.db', 'par1.db', NULL, 'parallelism=1') AS par1;
.headers off
SELECT count(*) AS empty_replica FROM replica_restore_points('nothing.db');
SELECT * FROM replica_restore_points('ftp://example.com/app.db');
SELECT replica_verify('nothing.db');
SELECT replica_restore('app.db', 'x.db', NULL, 'parallelism=0');
SELECT replica_verify(1, 2);
