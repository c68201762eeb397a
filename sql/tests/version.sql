-- env: REPLICA_URL=
-- replica_version(): "libreplica <version> (git <sha>, <profile> build, SQLite <version>)";
-- loading twice is harmless; connections opened after the load have the functions too.
.load @LIB@
.load @LIB@
SELECT substr(replica_version(), 1, 11) AS prefix;
SELECT replica_version() LIKE 'libreplica %.%.% (git %, % build, SQLite ' || sqlite_version() || ')' AS well_formed;
.open other.db
SELECT substr(replica_version(), 1, 11) AS prefix;
