//! Litestream 0.3 replicas, read only: the layout (`generations/<id>/snapshots/<index>.snapshot.lz4`
//! and `generations/<id>/wal/<index>_<offset>.wal.lz4`, each an LZ4 frame), the restore
//! plan Litestream 0.3.13 would make from a listing (`plan`), and the LZ4 frame decoder
//! (`crate::lz4frame`), re-exported. Pure: bytes and listings in, data out; a replica's content is hostile, so
//! every size read from it is bounded before anything is allocated from it.

mod plan;

pub use crate::lz4frame::{encode_frame, xxh32, FrameReader, Lz4Error};
pub use plan::{
    choose_generation, generations_prefix, key_of, parse_listing, plan, Kind, Ls03Object, Ls03Plan,
    PlanError,
};
