-- replica_status(): its columns, in order, and the deterministic ones of a database that is
-- up to date after two shipped transactions.
.load @LIB@
.open app.db
SELECT replica_sync(10000) AS initial_snapshot;
SELECT group_concat(name, ',') AS columns FROM (SELECT name FROM pragma_table_xinfo('replica_status') ORDER BY cid);
SELECT count(*) AS rows_after_open FROM replica_status();
BEGIN;
CREATE TABLE t(x);
INSERT INTO t VALUES (1);
COMMIT;
SELECT replica_sync(10000);
INSERT INTO t VALUES (2);
SELECT replica_sync(10000);
.mode line
SELECT name, path, replica_url, state, local_txid, replicated_txid, pending_bytes,
       pending_txns, last_error, upload_errors, uploads, snapshots, captured_txns,
       delete_requests, compactions, files_deleted, warnings
  FROM replica_status();
SELECT lag_ms = 0 AS no_lag,
       last_upload_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z' AS rfc3339_upload_time,
       list_requests >= 1 AS listed_at_start,
       oldest_pending_at IS NULL AS nothing_pending,
       request_budget IS NULL AS no_budget,
       requests_month >= 1 AS counted_this_month,
       typeof(request_cost_month_usd) AS cost_type,
       encrypted = 0 AND sealed_to_other_keys IS NULL AS not_encrypted
  FROM replica_status();
.mode list
.headers on
SELECT typeof(name), typeof(local_txid), typeof(lag_ms), typeof(last_upload_at),
       typeof(last_error), typeof(warnings)
  FROM replica_status();
