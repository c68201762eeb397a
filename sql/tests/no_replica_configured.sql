-- env: REPLICA_URL=
-- Without REPLICA_URL (or a config file, or a replica= URI parameter) nothing replicates:
-- the database keeps its journal mode, and the functions say why they have nothing to do.
.load @LIB@
.open app.db
PRAGMA journal_mode;
CREATE TABLE t(x);
INSERT INTO t VALUES (1);
SELECT count(*) AS replicated FROM replica_status();
SELECT replica_sync(100);
SELECT replica_snapshot();
SELECT replica_restore('app.db', 'restored.db');
SELECT substr(replica_version(), 1, 11) AS version;
.system ls -a
