//! `replica_restore_points`: every LTX file of a replica (of each destination of a
//! database) whose end state a restore reaches, as a row, with when it was written (or
//! every object of a Litestream 0.3 replica). It only reads the replica (a listing and the
//! files' headers); it must not download whole files, nor offer a point no chain reaches.

use super::scope::{open_replica, replicas_of};
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
    "replica",
    "db HIDDEN",
];

/// A Litestream 0.3 replica's objects as rows: no level (NULL), the WAL index as both
/// txids, the object's modification time, in (generation, snapshots, WAL) order.
fn ls03_rows(
    name: &str,
    replica: Option<&str>,
    objects: &[crate::ls03::Ls03Object],
    db_arg: Option<&str>,
) -> Vec<Vec<Cell>> {
    objects
        .iter()
        .map(|o| {
            let index = i64::from(o.kind.index());
            vec![
                name.into(),
                Cell::Null,
                Cell::Int(index),
                Cell::Int(index),
                Cell::Text(crate::base::clock::format_rfc3339(o.modified_ms)),
                Cell::Int(o.size as i64),
                o.key.as_str().into(),
                replica.map(str::to_string).into(),
                db_arg.map(str::to_string).into(),
            ]
        })
        .collect()
}

/// Every LTX file of the replica whose end state a restore reaches (files older than the
/// oldest snapshot, or past a hole, are left out), or every object of a Litestream 0.3
/// replica, oldest first: level, txid range, when it was written
/// (the LTX header's timestamp, read with parallel 100-byte ranged GETs; the store's
/// modified time where a header cannot be read) and its size.
pub fn restore_points(
    db_arg: Option<&str>,
    conn_db: Option<&Path>,
) -> Result<crate::status::Rows, Error> {
    let mut rows = Vec::new();
    for (name, source) in replicas_of(db_arg, conn_db, "replica_restore_points")? {
        let (replica, dest) = (source.target, source.name.as_deref());
        let (store, prefix) = open_replica(&replica)?;
        let listed = restore::list_objects(store.as_ref(), &prefix);
        if matches!(&listed, Ok(objects) if objects.is_empty()) {
            let old = restore::list_ls03(store.as_ref(), &prefix);
            crate::database::note_outside_requests(&replica, store.request_counts());
            rows.extend(ls03_rows(&name, dest, &old?, db_arg));
            continue;
        }
        let listed = listed.map(|mut objects| {
            let restorable = restore::restorable_txids(&objects);
            objects.retain(|o| restorable.contains(&o.max_txid));
            objects.sort_by_key(|o| (o.min_txid, o.max_txid, o.level));
            let headers =
                restore::read_headers(store.as_ref(), &objects, restore::DEFAULT_PARALLELISM);
            (objects, headers)
        });
        // Counted whether or not the listing failed: its requests were made.
        crate::database::note_outside_requests(&replica, store.request_counts());
        let (objects, headers) = listed?;
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
                dest.map(str::to_string).into(),
                db_arg.map(str::to_string).into(),
            ]);
        }
    }
    Ok(rows)
}
