//! Feeds restore planning a listing of arbitrary key names and sizes, as a bucket anyone
//! can write would list: `parse_listing` (key names to LTX objects), `plan` (the snapshot
//! and chain a restore applies, which refuses impossible names and mixed listings first),
//! and the key parsers of `store::keys`. The input drives a generator (`arbitrary`): most
//! keys are well-formed LTX names under one or two prefixes with small txids, so that chains
//! form; some are any text or txids of any size. Nothing may panic, hang or allocate beyond
//! the listing; a plan starts with a snapshot, continues without a hole and ends at the
//! target (or at the newest file), using only listed files; every name the planner takes is
//! one the key parser reads the same way.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use replica::restore::{parse_listing, plan, LtxObject};
use replica::store::keys::{chain_prefix, parse_ltx_filename, parse_s3_key, s3_key};
use replica::store::ObjectInfo;

const PREFIXES: &[&str] = &["db", "a/b.db", "", "db/0000"];

fn txid(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0..=7)? {
        0 => u.arbitrary()?,
        1 => u64::MAX - u.int_in_range(0..=2)?,
        _ => u.int_in_range(0..=24)?,
    })
}

fn object(u: &mut Unstructured) -> Result<ObjectInfo> {
    let key = match u.int_in_range(0..=9)? {
        0 => u.arbitrary::<String>()?,
        1 => {
            let name: String = u.arbitrary()?;
            format!("{}/{name}", u.choose(PREFIXES)?)
        }
        2 => {
            let (min, max) = (txid(u)?, txid(u)?);
            format!(
                "{}/{:x}/{min:016x}-{max:016x}.ltx",
                u.choose(PREFIXES)?,
                u.arbitrary::<u16>()?
            )
        }
        n => {
            let prefix = if n == 3 {
                u.choose(PREFIXES)?
            } else {
                PREFIXES[0]
            };
            let level = *u.choose(&[0u8, 0, 1, 2, 9, 9, u8::MAX])?;
            let min = txid(u)?;
            let max = if u.ratio(1, 4)? {
                txid(u)?
            } else {
                min.saturating_add(u.int_in_range(0..=6)?)
            };
            s3_key(prefix, level, min, max)
        }
    };
    let size = if u.ratio(1, 8)? {
        u.arbitrary()?
    } else {
        u.int_in_range(0..=1 << 20)?
    };
    Ok(ObjectInfo {
        key,
        size,
        modified_ms: u.arbitrary()?,
    })
}

fn listing(u: &mut Unstructured) -> Result<(Vec<ObjectInfo>, Option<u64>)> {
    let target = if u.arbitrary()? { Some(txid(u)?) } else { None };
    let mut objects = Vec::new();
    for _ in 0..u.int_in_range(0..=48)? {
        objects.push(object(u)?);
    }
    // As every store lists: sorted by key, each key once.
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    objects.dedup_by(|a, b| a.key == b.key);
    Ok((objects, target))
}

fn check_plan(objects: &[LtxObject], target: Option<u64>, chain: &[LtxObject]) {
    let first = chain.first().expect("a plan has a snapshot");
    assert_eq!(first.min_txid, 1, "{chain:?}");
    for pair in chain.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            b.min_txid <= a.max_txid.saturating_add(1),
            "hole: {chain:?}"
        );
        assert!(b.max_txid > a.max_txid, "no progress: {chain:?}");
    }
    for o in chain {
        assert!(objects.contains(o));
        assert!(o.min_txid <= o.max_txid);
    }
    let end = chain.last().unwrap().max_txid;
    match target {
        Some(t) => assert_eq!(end, t),
        None => assert_eq!(Some(end), objects.iter().map(|o| o.max_txid).max()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok((infos, target)) = listing(&mut Unstructured::new(data)) else {
        return;
    };
    let objects = parse_listing(&infos);
    for o in &objects {
        let name = o.key.rsplit('/').next().unwrap();
        assert_eq!(parse_ltx_filename(name), Some((o.min_txid, o.max_txid)));
        assert_eq!(
            parse_s3_key(chain_prefix(&o.key), &o.key),
            Some((o.level, o.min_txid, o.max_txid)),
            "{:?}",
            o.key
        );
    }
    if let Ok(chain) = plan(&objects, target) {
        check_plan(&objects, target, &chain);
    }
});
