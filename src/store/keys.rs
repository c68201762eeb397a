//! Names of LTX objects in Litestream v0.5's two layouts (S3-style keys and file-replica paths); pure string functions, no I/O.
//!
//! - S3 (and other object stores): `<prefix>/<level as %04x>/<min %016x>-<max %016x>.ltx`,
//!   as litestream's s3 client builds them (`c.Path + "/" + "%04x/" + filename`).
//! - File replica: `<replica dir>/ltx/<level as decimal>/<min>-<max>.ltx`; checked against
//!   litestream v0.5.17, which wrote `ltx/0/0000000000000001-0000000000000001.ltx` and
//!   `ltx/9/0000000000000001-0000000000000001.ltx` for a fresh database.
//!
//! Level 9 holds full snapshots; levels 0..=8 hold incremental and compacted files.

/// The level litestream keeps full-database snapshots in.
pub const SNAPSHOT_LEVEL: u8 = crate::lifecycle::SNAPSHOT_LEVEL;

/// `%016x-%016x.ltx`, lowercase, as ltx's `FormatFilename`.
pub fn ltx_filename(min_txid: u64, max_txid: u64) -> String {
    format!("{min_txid:016x}-{max_txid:016x}.ltx")
}

/// Inverse of [`ltx_filename`]; accepts exactly 16 lowercase hex digits on each side
/// (ltx's `^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$`), so temp files and strays are skipped.
pub fn parse_ltx_filename(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".ltx")?;
    let (min, max) = stem.split_once('-')?;
    Some((parse_txid(min)?, parse_txid(max)?))
}

fn parse_txid(s: &str) -> Option<u64> {
    if s.len() != 16
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// The directory-like part of an S3 key for `level`, ending in `/`: `<prefix>/<level %04x>/`.
/// Slashes around `prefix` are trimmed and an empty prefix adds nothing, so keys never
/// start with `/`.
pub fn s3_level_prefix(prefix: &str, level: u8) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{level:04x}/")
    } else {
        format!("{prefix}/{level:04x}/")
    }
}

/// `<prefix>/<level %04x>/<min>-<max>.ltx` (see [`s3_level_prefix`] for the prefix rules).
pub fn s3_key(prefix: &str, level: u8, min_txid: u64, max_txid: u64) -> String {
    s3_level_prefix(prefix, level) + &ltx_filename(min_txid, max_txid)
}

/// Inverse of [`s3_key`] for the same `prefix`: `(level, min_txid, max_txid)`.
pub fn parse_s3_key(prefix: &str, key: &str) -> Option<(u8, u64, u64)> {
    let prefix = prefix.trim_matches('/');
    let rest = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let (level, name) = rest.split_once('/')?;
    if level.len() != 4 || !level.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let level = u8::try_from(u16::from_str_radix(level, 16).ok()?).ok()?;
    let (min, max) = parse_ltx_filename(name)?;
    Some((level, min, max))
}

/// The part of an LTX object's key before `/<level>/<name>`: the prefix of the replica it
/// belongs to (`a/b` for `a/b/0000/…ltx`, empty for `0000/…ltx`). A listing whose keys
/// have more than one is a listing of several replicas.
pub fn chain_prefix(key: &str) -> &str {
    let mut parts = key.rsplitn(3, '/');
    let (_name, _level) = (parts.next(), parts.next());
    parts.next().unwrap_or("")
}

/// A file replica's level directory relative to the replica dir: `ltx/<level decimal>`.
pub fn file_level_dir(level: u8) -> String {
    format!("ltx/{level}")
}

/// A file replica's LTX path relative to the replica dir: `ltx/<level decimal>/<min>-<max>.ltx`.
pub fn file_relpath(level: u8, min_txid: u64, max_txid: u64) -> String {
    format!(
        "{}/{}",
        file_level_dir(level),
        ltx_filename(min_txid, max_txid)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filename_round_trips_and_is_fixed_width() {
        assert_eq!(ltx_filename(1, 1), "0000000000000001-0000000000000001.ltx");
        assert_eq!(
            ltx_filename(0x3e8, u64::MAX),
            "00000000000003e8-ffffffffffffffff.ltx"
        );
        for (min, max) in [(1, 1), (2, 0xabc), (u64::MAX, u64::MAX)] {
            assert_eq!(
                parse_ltx_filename(&ltx_filename(min, max)),
                Some((min, max))
            );
        }
    }

    #[test]
    fn parse_filename_rejects_strays() {
        for name in [
            "",
            "0000000000000001.ltx",
            "0000000000000001-0000000000000001",
            "0000000000000001-0000000000000001.ltx.tmp",
            "0000000000000001-000000000000001.ltx",
            "0000000000000001-00000000000000001.ltx",
            "000000000000000A-0000000000000001.ltx", // ltx only writes lowercase
            "000000000000000z-0000000000000001.ltx",
            "+000000000000001-0000000000000001.ltx",
            "0000000000000001_0000000000000001.ltx",
        ] {
            assert_eq!(parse_ltx_filename(name), None, "{name:?}");
        }
    }

    #[test]
    fn s3_keys_match_litestream_layout() {
        assert_eq!(
            s3_key("db", 0, 1, 2),
            "db/0000/0000000000000001-0000000000000002.ltx"
        );
        assert_eq!(
            s3_key("a/b", SNAPSHOT_LEVEL, 1, 0x10),
            "a/b/0009/0000000000000001-0000000000000010.ltx"
        );
        assert_eq!(
            s3_key("", 1, 3, 4),
            "0001/0000000000000003-0000000000000004.ltx"
        );
        assert_eq!(
            s3_key("/db/", 0, 1, 1),
            "db/0000/0000000000000001-0000000000000001.ltx"
        );
        assert_eq!(s3_level_prefix("db", 9), "db/0009/");
        assert_eq!(s3_level_prefix("", 9), "0009/");
    }

    #[test]
    fn s3_keys_parse_back() {
        for (prefix, level, min, max) in
            [("db", 0u8, 1u64, 1u64), ("", 9, 1, 7), ("x/y", 255, 5, 9)]
        {
            let key = s3_key(prefix, level, min, max);
            assert_eq!(parse_s3_key(prefix, &key), Some((level, min, max)), "{key}");
        }
        assert_eq!(
            parse_s3_key("db", "other/0000/0000000000000001-0000000000000001.ltx"),
            None
        );
        assert_eq!(
            parse_s3_key("db", "db/000/0000000000000001-0000000000000001.ltx"),
            None
        );
        assert_eq!(
            parse_s3_key("db", "db/0100/0000000000000001-0000000000000001.ltx"),
            None
        );
        assert_eq!(
            parse_s3_key("db", "db/0000/x/0000000000000001-0000000000000001.ltx"),
            None
        );
        assert_eq!(
            parse_s3_key("", "db/0000/0000000000000001-0000000000000001.ltx"),
            None
        );
    }

    #[test]
    fn chain_prefixes_are_what_comes_before_the_level() {
        assert_eq!(chain_prefix(&s3_key("a/b", 0, 1, 1)), "a/b");
        assert_eq!(chain_prefix(&s3_key("db", 9, 1, 1)), "db");
        assert_eq!(chain_prefix(&s3_key("", 9, 1, 1)), "");
        assert_eq!(chain_prefix("0000000000000001-0000000000000001.ltx"), "");
    }

    #[test]
    fn file_paths_match_litestream_layout() {
        assert_eq!(
            file_relpath(0, 2, 2),
            "ltx/0/0000000000000002-0000000000000002.ltx"
        );
        assert_eq!(
            file_relpath(SNAPSHOT_LEVEL, 1, 1),
            "ltx/9/0000000000000001-0000000000000001.ltx"
        );
        // Decimal, not %04x: level 10 would be "ltx/10", never "ltx/000a".
        assert_eq!(file_level_dir(10), "ltx/10");
    }
}
