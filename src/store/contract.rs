//! One body of tests every backend must pass; public (hidden) so that the integration tests
//! can run it against a real S3 server. Built for unit tests and with the `test-support`
//! feature, never into the release library.

use super::*;

pub fn run(store: &dyn ObjectStore) {
    let k1 = keys::s3_key("db", 0, 1, 1);
    let k2 = keys::s3_key("db", 0, 2, 3);
    let k9 = keys::s3_key("db", 9, 1, 3);
    assert!(matches!(store.get(&k1), Err(StoreError::NotFound(_))));
    assert!(store.list("db/").unwrap().is_empty());
    store.put(&k2, b"second").unwrap();
    store.put(&k1, b"first").unwrap();
    store.put(&k9, b"snapshot").unwrap();
    assert_eq!(store.get(&k1).unwrap(), b"first");
    assert_eq!(store.get_range(&k2, 1, 3).unwrap(), b"eco");
    assert_eq!(store.get_range(&k2, 4, 100).unwrap(), b"nd");
    let all: Vec<String> = store
        .list("db/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(all, vec![k1.clone(), k2.clone(), k9.clone()]);
    let l0: Vec<ObjectInfo> = store.list("db/0000/").unwrap();
    assert_eq!(l0.len(), 2);
    assert_eq!(l0[1].size, 6);
    store.put(&k1, b"overwritten").unwrap();
    assert_eq!(store.get(&k1).unwrap(), b"overwritten");
    store.delete(&k1).unwrap();
    store.delete(&k1).unwrap();
    assert!(matches!(store.get(&k1), Err(StoreError::NotFound(_))));
    assert_eq!(store.list("db/0000/").unwrap().len(), 1);
    assert!(store.list("other/").unwrap().is_empty());
    let listed = store.list("db/").unwrap();
    assert!(
        listed.iter().all(|o| o.modified_ms > 1_600_000_000_000),
        "{listed:?}"
    );
    let many: Vec<String> = (10..15).map(|t| keys::s3_key("db", 1, t, t)).collect();
    for k in &many {
        store.put(k, b"x").unwrap();
    }
    store.delete_many(&many).unwrap();
    store.delete_many(&many).unwrap();
    assert!(store.list("db/0001/").unwrap().is_empty());
    // Compare-and-swap: create only if absent, replace only at the version read.
    let lease = "db/lease";
    assert!(matches!(
        store.read_versioned(lease),
        Err(StoreError::NotFound(_))
    ));
    let v1 = store.write_if(lease, b"one", None).unwrap();
    assert!(matches!(
        store.write_if(lease, b"two", None),
        Err(StoreError::PreconditionFailed(_))
    ));
    let (body, seen) = store.read_versioned(lease).unwrap();
    assert_eq!((body.as_slice(), seen.as_str()), (&b"one"[..], v1.as_str()));
    let v2 = store.write_if(lease, b"two", Some(&v1)).unwrap();
    assert_ne!(v1, v2);
    assert!(matches!(
        store.write_if(lease, b"three", Some(&v1)),
        Err(StoreError::PreconditionFailed(_))
    ));
    assert_eq!(store.read_versioned(lease).unwrap(), (b"two".to_vec(), v2));
    store.delete(lease).unwrap();
    let counts = store.request_counts();
    assert!(counts.put >= 4 && counts.get >= 1 && counts.list >= 1 && counts.delete >= 1);
}
