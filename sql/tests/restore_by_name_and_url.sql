-- Restore by database name and by replica URL; the restored files hold the same rows and
-- pass an integrity check.
.load @LIB@
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
BEGIN;
CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO accounts(owner, balance) SELECT 'user' || i, i * 10 FROM n;
CREATE INDEX accounts_owner ON accounts(owner);
COMMIT;
SELECT replica_sync(10000) AS synced;
UPDATE accounts SET balance = balance + 1 WHERE id % 7 = 0;
SELECT replica_sync(10000) AS synced;
SELECT replica_restore('app.db', 'restored.db') AS by_name;
SELECT replica_restore('file://@TMP@/replicas/app.db', 'by_url.db') AS by_url;
SELECT replica_restore('@TMP@/app.db', 'by_path.db') AS by_path;
.open restored.db
PRAGMA integrity_check;
SELECT count(*), sum(balance), max(owner) FROM accounts;
ATTACH 'app.db' AS src;
ATTACH 'by_url.db' AS url;
ATTACH 'by_path.db' AS path;
SELECT (SELECT count(*) FROM (SELECT * FROM main.accounts EXCEPT SELECT * FROM src.accounts)) AS differs_from_source,
       (SELECT count(*) FROM (SELECT * FROM url.accounts EXCEPT SELECT * FROM src.accounts)) AS url_differs,
       (SELECT count(*) FROM (SELECT * FROM path.accounts EXCEPT SELECT * FROM src.accounts)) AS path_differs,
       (SELECT count(*) FROM src.accounts) - (SELECT count(*) FROM url.accounts) AS row_count_difference;
SELECT name FROM sqlite_schema ORDER BY name;
-- The 'full' option runs PRAGMA integrity_check; options combine with commas.
SELECT replica_restore('app.db', 'full.db', NULL, 'full') > 0 AS full_check;
SELECT replica_restore('app.db', 'full.db', NULL, 'overwrite, full') > 0 AS full_overwrite;
