-- Runs in Debian's sqlite3 with REPLICA_URL=file:///.../replicas (see demo.sh).
.load @LIB@
.open app.db
.mode box
PRAGMA journal_mode;
CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);
INSERT INTO accounts(owner, balance) VALUES ('ada', 100), ('grace', 250), ('linus', 75);
SELECT replica_sync(5000) AS replicated_txid;
BEGIN;
UPDATE accounts SET balance = balance - 25 WHERE owner = 'grace';
UPDATE accounts SET balance = balance + 25 WHERE owner = 'ada';
COMMIT;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO accounts(owner, balance) SELECT 'user' || i, i FROM n;
SELECT replica_sync(5000) AS replicated_txid;
SELECT name, replica_url, state, replicated_txid, pending_txns, uploads FROM replica_status();
SELECT replica_restore('app.db', 'restored.db') AS restored_txid;
