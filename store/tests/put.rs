//! Uploads: digests, dedup, limits, claims, failures, cancellation.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use arca_store::{BlobStore, Expected, StoreError};
use bytes::Bytes;
use common::*;
use futures::StreamExt;
use proptest::prelude::*;

#[tokio::test]
async fn small_body_round_trips_with_correct_digests() {
    let (dir, store) = local_store();
    let data = b"hello, arca".to_vec();
    let d = store
        .put_stream(
            ok_stream(chunks(&data, &[3, 1, 100])),
            1024,
            &Expected::default(),
        )
        .await
        .unwrap();
    assert_eq!(d.blake3, blake3_of(&data));
    assert_eq!(d.sha256, sha256_of(&data));
    assert_eq!(d.size, data.len() as u64);
    assert!(store.exists(&d.blake3).await.unwrap());
    assert_eq!(store.size(&d.blake3).await.unwrap(), data.len() as u64);
    assert_eq!(
        read_all(store.get(&d.blake3, None).await.unwrap()).await,
        data
    );
    assert_eq!(
        files_under(dir.path(), "blobs"),
        vec![BlobStore::blob_path(&d.blake3)]
    );
    assert!(files_under(dir.path(), "tmp").is_empty());
}

#[tokio::test]
async fn twelve_mib_in_varied_chunks_round_trips() {
    let (dir, store) = local_store();
    let data = body(12 * MIB, 1);
    let sizes = [1, 4096, 65_537, MIB, 3_000_001, 17, 6 * MIB];
    let d = store
        .put_stream(
            ok_stream(chunks(&data, &sizes)),
            64 * MIB as u64,
            &Expected::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (d.blake3, d.sha256, d.size),
        (blake3_of(&data), sha256_of(&data), data.len() as u64)
    );
    assert!(read_all(store.get(&d.blake3, None).await.unwrap()).await == data);
    assert!(files_under(dir.path(), "tmp").is_empty());
}

#[tokio::test]
async fn put_bytes_and_empty_body() {
    let (_dir, store) = local_store();
    let one = body(3 * MIB, 2);
    let d = store
        .put_bytes(Bytes::from(one.clone()), u64::MAX, &Expected::default())
        .await
        .unwrap();
    assert_eq!(d.blake3, blake3_of(&one));
    let empty = store
        .put_stream(ok_stream(vec![]), 0, &Expected::default())
        .await
        .unwrap();
    assert_eq!((empty.blake3, empty.size), (blake3_of(b""), 0));
    assert_eq!(
        read_all(store.get_verified(&empty.blake3, 0).await.unwrap()).await,
        b""
    );
}

#[tokio::test]
async fn same_bytes_twice_store_one_object() {
    let (dir, store) = local_store();
    let data = body(MIB + 3, 3);
    let first = store
        .put_stream(
            ok_stream(chunks(&data, &[1000])),
            u64::MAX,
            &Expected::default(),
        )
        .await
        .unwrap();
    let second = store
        .put_stream(
            ok_stream(chunks(&data, &[77_777])),
            u64::MAX,
            &Expected::default(),
        )
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(
        files_under(dir.path(), "blobs"),
        vec![BlobStore::blob_path(&first.blake3)]
    );
    assert!(files_under(dir.path(), "tmp").is_empty());
    assert_eq!(
        read_all(store.get(&first.blake3, None).await.unwrap()).await,
        data
    );
}

#[tokio::test]
async fn too_large_aborts_and_leaves_nothing() {
    let (dir, store) = local_store();
    // Past the first 5 MiB part, so a part was already written when the limit hits.
    let data = body(12 * MIB, 4);
    let limit = 7 * MIB as u64;
    let err = store
        .put_stream(
            ok_stream(chunks(&data, &[MIB])),
            limit,
            &Expected::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { limit: l } if l == limit),
        "{err:?}"
    );
    assert_store_empty(dir.path());
    // Exactly at the limit is allowed.
    let d = store
        .put_bytes(
            Bytes::from(data[..limit as usize].to_vec()),
            limit,
            &Expected::default(),
        )
        .await
        .unwrap();
    assert_eq!(d.size, limit);
}

#[tokio::test]
async fn body_error_midway_leaves_nothing() {
    let (dir, store) = local_store();
    let data = body(7 * MIB, 5);
    let mut items: Vec<Result<Bytes, String>> = chunks(&data, &[MIB]).into_iter().map(Ok).collect();
    items.push(Err("client went away".into()));
    let err = store
        .put_stream(futures::stream::iter(items), u64::MAX, &Expected::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Body(m) if m == "client went away"),
        "{err:?}"
    );
    assert_store_empty(dir.path());
}

#[tokio::test]
async fn every_wrong_claim_is_refused_and_stores_nothing() {
    let (dir, store) = local_store();
    let data = body(6 * MIB, 6);
    let other = b"other bytes";
    let cases = [
        (
            "size",
            Expected {
                size: Some(data.len() as u64 - 1),
                ..Expected::default()
            },
        ),
        (
            "blake3",
            Expected {
                blake3: Some(blake3_of(other)),
                ..Expected::default()
            },
        ),
        (
            "sha256",
            Expected {
                sha256: Some(sha256_of(other)),
                ..Expected::default()
            },
        ),
    ];
    for (field, expected) in cases {
        let err = store
            .put_bytes(Bytes::from(data.clone()), u64::MAX, &expected)
            .await
            .unwrap_err();
        match err {
            StoreError::DigestMismatch { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: expected DigestMismatch, got {other:?}"),
        }
        assert_store_empty(dir.path());
    }
    let all_right = Expected {
        blake3: Some(blake3_of(&data)),
        sha256: Some(sha256_of(&data)),
        size: Some(data.len() as u64),
    };
    store
        .put_bytes(Bytes::from(data), u64::MAX, &all_right)
        .await
        .unwrap();
}

#[tokio::test]
async fn claiming_an_existing_digest_cannot_replace_its_bytes() {
    let (_dir, store) = local_store();
    let original = body(1000, 7);
    let d = store
        .put_bytes(
            Bytes::from(original.clone()),
            u64::MAX,
            &Expected::default(),
        )
        .await
        .unwrap();
    let claim = Expected {
        blake3: Some(d.blake3),
        ..Expected::default()
    };
    let err = store
        .put_bytes(Bytes::from(body(1000, 8)), u64::MAX, &claim)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::DigestMismatch {
            field: "blake3",
            ..
        }
    ));
    assert_eq!(
        read_all(store.get_verified(&d.blake3, 1000).await.unwrap()).await,
        original
    );
}

#[tokio::test]
async fn upload_dropped_midway_is_cleaned_up() {
    let (dir, store) = local_store();
    let first = futures::stream::iter([Ok::<_, String>(Bytes::from(body(6 * MIB, 9)))]);
    let stalled = first.chain(futures::stream::pending());
    let nothing = Expected::default();
    let upload = store.put_stream(stalled, u64::MAX, &nothing);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), upload)
            .await
            .is_err()
    );
    // Cleanup runs in a task spawned on drop; give it a moment.
    for _ in 0..100 {
        if files_under(dir.path(), "tmp").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_store_empty(dir.path());
}

#[test]
fn put_stream_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (_dir, store) = local_store();
    let nothing = Expected::default();
    let fut = store.put_stream(ok_stream(vec![]), 1, &nothing);
    assert_send(&fut);
    assert_send(&store.get_verified(&blake3_of(b""), 0));
    assert_send(&store.sweep_temp(Duration::ZERO, &HashSet::new()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn streamed_digests_equal_one_shot_hashes(
        data in proptest::collection::vec(any::<u8>(), 0..300_000),
        sizes in proptest::collection::vec(1usize..70_000, 1..8),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (dir, store) = local_store();
        let d = runtime.block_on(store.put_stream(ok_stream(chunks(&data, &sizes)), u64::MAX, &Expected::default())).unwrap();
        prop_assert_eq!(d.blake3, blake3_of(&data));
        prop_assert_eq!(d.sha256, sha256_of(&data));
        prop_assert_eq!(d.size, data.len() as u64);
        prop_assert_eq!(files_under(dir.path(), "blobs"), vec![BlobStore::blob_path(&d.blake3)]);
        prop_assert!(files_under(dir.path(), "tmp").is_empty());
    }
}
