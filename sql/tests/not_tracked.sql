-- In-memory and temporary databases are never replicated, nor are TEMP tables.
.load @LIB@
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
CREATE TABLE t(x);
CREATE TEMP TABLE scratch(y);
WITH RECURSIVE i(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM i WHERE k < 5000)
INSERT INTO scratch SELECT randomblob(1000) FROM i;
SELECT replica_sync(10000) >= 1 AS synced;
ATTACH '' AS tempdb;
CREATE TABLE tempdb.u(z);
INSERT INTO tempdb.u VALUES (2);
ATTACH ':memory:' AS memdb;
CREATE TABLE memdb.v(z);
.open :memory:
PRAGMA journal_mode;
CREATE TABLE m(x);
INSERT INTO m VALUES (1);
-- From a connection whose main database does not replicate, replica_sync() waits for every
-- database of the process.
SELECT replica_sync(10000) >= 1 AS synced_all;
.open ''
CREATE TABLE n(x);
WITH RECURSIVE i(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM i WHERE k < 5000)
INSERT INTO n SELECT randomblob(1000) FROM i;
SELECT count(*) FROM n;
-- Only app.db, with only its one transaction captured.
SELECT name, path, captured_txns FROM replica_status();
.system find replicas -mindepth 1 -maxdepth 1 | sort
