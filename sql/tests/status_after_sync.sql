-- replica_status() right after replica_sync() returns: the database is up to date and its
-- counters already count the uploads that sync waited for (every upload is a PUT). Repeated,
-- because a status refreshed after sync wakes up would only show now and then.
.load @LIB@
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
CREATE TABLE t(x);
SELECT replica_sync(10000) AS synced;
INSERT INTO t VALUES (1);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (2);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (3);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (4);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (5);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (6);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (7);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (8);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (9);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (10);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (11);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (12);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (13);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (14);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
INSERT INTO t VALUES (15);
SELECT replica_sync(10000) AS synced;
SELECT state, replicated_txid, uploads, put_requests >= uploads AS puts_counted FROM replica_status();
