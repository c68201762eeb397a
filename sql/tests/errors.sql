-- Argument errors of the SQL functions, as the sqlite3 shell prints them (the shell goes on
-- after each error).
.load @LIB@
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
CREATE TABLE t(x);
SELECT replica_sync(10000) >= 1 AS synced;
SELECT replica_sync('x');
SELECT replica_sync(1.5);
SELECT replica_sync(-1);
SELECT replica_sync(1000, 'most');
SELECT replica_snapshot('nope');
SELECT replica_snapshot('app.db', 2);
SELECT replica_restore('app.db');
SELECT replica_restore('app.db', 'a.db', 1, 'overwrite', 5);
SELECT replica_restore(NULL, 'a.db');
SELECT replica_restore('app.db', NULL);
SELECT replica_restore('app.db', '');
SELECT replica_version(1);
SELECT 'still usable', replica_sync(10000) >= 1;
