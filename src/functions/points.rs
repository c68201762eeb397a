//! `replica_restore_points`: every LTX file of a replica as a row, with when it was written.
//! It only reads the replica (a listing and the files' headers); it must not download whole
//! files.

use super::scope::{open_replica, replica_of};
use crate::error::Error;
use crate::restore;
use crate::status::Cell;
use std::path::Path;

/// Columns of `replica_restore_points`; `db` is the hidden argument.
pub const RESTORE_POINT_COLUMNS: &[&str] = &[
    "name",
    "level",
    "min_txid",
    "max_txid",
    "timestamp",
    "size",
    "key",
    "db HIDDEN",
];

/// Every LTX file of the replica, oldest first: level, txid range, when it was written
/// (the LTX header's timestamp, read with parallel 100-byte ranged GETs; the store's
/// modified time where a header cannot be read) and its size.
pub fn restore_points(
    db_arg: Option<&str>,
    conn_db: Option<&Path>,
) -> Result<crate::status::Rows, Error> {
    let mut rows = Vec::new();
    for (name, replica) in replica_of(db_arg, conn_db, "replica_restore_points")? {
        let (store, prefix) = open_replica(&replica)?;
        let mut objects = restore::list_objects(store.as_ref(), &prefix)?;
        objects.sort_by_key(|o| (o.min_txid, o.max_txid, o.level));
        let headers = restore::read_headers(store.as_ref(), &objects, restore::DEFAULT_PARALLELISM);
        for (o, h) in objects.iter().zip(headers) {
            let ts = h.map(|h| h.timestamp_ms).unwrap_or(o.modified_ms);
            rows.push(vec![
                name.as_str().into(),
                Cell::Int(o.level as i64),
                Cell::Int(o.min_txid as i64),
                Cell::Int(o.max_txid as i64),
                Cell::Text(crate::base::clock::format_rfc3339(ts)),
                Cell::Int(o.size as i64),
                o.key.as_str().into(),
                db_arg.map(str::to_string).into(),
            ]);
        }
    }
    Ok(rows)
}
