-- args: -bail
-- env: REPLICA_CONFIG=@TMP@/config/nope.yml
-- A config file named by REPLICA_CONFIG that does not exist fails the load rather than
-- silently not replicating.
.load @LIB@
SELECT 'not reached';
