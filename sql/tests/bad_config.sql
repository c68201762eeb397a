-- env: REPLICA_CONFIG=@TMP@/litestream.yml
-- file: litestream.yml
--| dbs:
--|   - path: app.db
--|     replicas:
--|       - type: file
--|         path: @TMP@/replicas/app.db
--|         sync-interval: fast
-- A value of the wrong type fails the load with the key's path; nothing is registered.
.load @LIB@
SELECT replica_version();
.open app.db
PRAGMA journal_mode;
