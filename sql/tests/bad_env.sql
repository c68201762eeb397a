-- args: -bail
-- env: REPLICA_SYNC_INTERVAL=soon
-- A bad environment variable fails the load, naming the variable; with -bail the shell stops
-- there (nothing below runs).
.load @LIB@
SELECT 'not reached';
