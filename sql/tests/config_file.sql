-- env: REPLICA_CONFIG=
-- env: REPLICA_URL=
-- env: BACKUP_DIR=@TMP@/backups
-- file: config/litestream.yml
--| # A Rails app's file, found as ./config/litestream.yml.
--| addr: ":9090"
--| dbs:
--|   - path: storage/production.sqlite3
--|     monitor-interval: 1s
--|     replicas:
--|       - type: file
--|         path: ${BACKUP_DIR}/production.sqlite3
--|         sync-intervall: 1s
--|   - path: storage/cache.sqlite3
--|     replica:
--|       url: file://$BACKUP_DIR/cache.sqlite3
--|       retention: 24h
-- Databases named in ./config/litestream.yml replicate where it says ($VAR expanded);
-- others do not. Unused Litestream keys and misspelled keys are warnings, not errors.
.load @LIB@
.system mkdir storage
.open storage/production.sqlite3
PRAGMA journal_mode;
SELECT replica_sync(10000) AS initial_snapshot;
BEGIN;
CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO users(name) VALUES ('ada'), ('grace');
COMMIT;
SELECT replica_sync(10000) AS synced;
.open storage/cache.sqlite3
SELECT replica_sync(10000) AS initial_snapshot;
BEGIN;
CREATE TABLE entries(k, v);
INSERT INTO entries VALUES ('a', 1);
COMMIT;
SELECT replica_sync(10000) AS synced;
.open other.db
PRAGMA journal_mode;
CREATE TABLE t(x);
.mode line
SELECT name, replica_url, state FROM replica_status();
SELECT DISTINCT replace(warnings, '; litestream.yml:', char(10) || 'litestream.yml:') AS warnings FROM replica_status();
.mode list
SELECT replica_restore('storage/production.sqlite3', 'restored.db') AS restored;
.system find backups -type f | sort
.open file:restored.db?replica=off
SELECT * FROM users;
