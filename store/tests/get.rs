//! Downloads: ranges, missing blobs, verification against tampering; sweeping temp objects.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use arca_store::{BlobStore, Expected, StoreError};
use bytes::Bytes;
use common::*;

#[tokio::test]
async fn ranges_return_the_right_slices() {
    let (_dir, store) = local_store();
    let data = body(300_000, 10);
    let d = store
        .put_bytes(Bytes::from(data.clone()), u64::MAX, &Expected::default())
        .await
        .unwrap();
    let n = data.len() as u64;
    for range in [
        0..1,
        0..n,
        1..n,
        8191..8193,
        123_456..234_567,
        n - 1..n,
        5..5,
        n..n,
    ] {
        let got = read_all(store.get(&d.blake3, Some(range.clone())).await.unwrap()).await;
        assert!(
            got == data[range.start as usize..range.end as usize],
            "range {range:?}"
        );
    }
}

#[tokio::test]
async fn bad_ranges_are_refused() {
    let (_dir, store) = local_store();
    let d = store
        .put_bytes(Bytes::from_static(b"0123456789"), 100, &Expected::default())
        .await
        .unwrap();
    #[allow(clippy::reversed_empty_ranges)]
    for (start, end) in [(5, 4), (0, 11), (10, 11), (11, 11), (u64::MAX, u64::MAX)] {
        let err = store
            .get(&d.blake3, Some(start..end))
            .await
            .err()
            .expect("range accepted");
        assert!(
            matches!(err, StoreError::InvalidRange { start: s, end: e, size: 10 } if s == start && e == end),
            "{start}..{end}: {err:?}"
        );
    }
}

#[tokio::test]
async fn missing_blob_is_not_found_everywhere() {
    let (_dir, store) = local_store();
    let absent = blake3_of(b"never stored");
    let is_not_found =
        |e: StoreError| matches!(&e, StoreError::NotFound { digest } if *digest == absent.hex());
    assert!(!store.exists(&absent).await.unwrap());
    assert!(is_not_found(store.size(&absent).await.unwrap_err()));
    assert!(is_not_found(store.get(&absent, None).await.err().unwrap()));
    assert!(is_not_found(
        store.get(&absent, Some(0..1)).await.err().unwrap()
    ));
    assert!(is_not_found(
        store.get_verified(&absent, 0).await.err().unwrap()
    ));
}

#[tokio::test]
async fn get_verified_returns_intact_blobs_unchanged() {
    let (_dir, store) = local_store();
    let data = body(MIB + 5, 11);
    let d = store
        .put_bytes(Bytes::from(data.clone()), u64::MAX, &Expected::default())
        .await
        .unwrap();
    assert!(read_all(store.get_verified(&d.blake3, d.size).await.unwrap()).await == data);
}

#[tokio::test]
async fn get_verified_withholds_the_end_of_an_altered_blob() {
    let (dir, store) = local_store();
    let data = body(MIB, 12);
    let d = store
        .put_bytes(Bytes::from(data.clone()), u64::MAX, &Expected::default())
        .await
        .unwrap();
    let mut altered = data.clone();
    altered[MIB / 2] ^= 0x01;
    std::fs::write(dir.path().join(BlobStore::blob_path(&d.blake3)), &altered).unwrap();
    // The unverified path serves the altered bytes, which is what makes verification matter.
    assert!(read_all(store.get(&d.blake3, None).await.unwrap()).await == altered);

    let (served, err) = drain(store.get_verified(&d.blake3, d.size).await.unwrap()).await;
    assert!(
        matches!(&err, Some(StoreError::Corrupt { digest }) if *digest == d.blake3.hex()),
        "{err:?}"
    );
    assert!(
        served.len() < altered.len(),
        "the complete altered body was served"
    );
    assert!(altered.starts_with(&served));
}

#[tokio::test]
async fn get_verified_refuses_a_truncated_or_grown_blob() {
    let (dir, store) = local_store();
    let data = body(100_000, 13);
    let d = store
        .put_bytes(Bytes::from(data.clone()), u64::MAX, &Expected::default())
        .await
        .unwrap();
    let file = dir.path().join(BlobStore::blob_path(&d.blake3));
    for replacement in [&data[..99_999], &[data.as_slice(), b"!"].concat()[..]] {
        std::fs::write(&file, replacement).unwrap();
        let err = match store.get_verified(&d.blake3, d.size).await {
            Err(e) => e,
            Ok(stream) => drain(stream).await.1.expect("altered blob verified"),
        };
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn sweep_removes_abandoned_temp_objects_and_keeps_blobs() {
    let (dir, store) = local_store();
    let d = store
        .put_bytes(Bytes::from_static(b"keep me"), 100, &Expected::default())
        .await
        .unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // A finished-but-unpublished upload, and a multipart staging file left by a crash.
    std::fs::write(tmp.join("0123456789abcdef0123456789abcdef"), b"abandoned").unwrap();
    std::fs::write(
        tmp.join("fedcba9876543210fedcba9876543210#1"),
        b"half written",
    )
    .unwrap();

    assert_eq!(
        store
            .sweep_temp(Duration::from_secs(3600), &HashSet::new())
            .await
            .unwrap(),
        0,
        "fresh uploads are kept"
    );
    assert_eq!(files_under(dir.path(), "tmp").len(), 2);

    assert_eq!(
        store
            .sweep_temp(Duration::ZERO, &HashSet::new())
            .await
            .unwrap(),
        2
    );
    assert!(files_under(dir.path(), "tmp").is_empty());
    assert_eq!(
        files_under(dir.path(), "blobs"),
        vec![BlobStore::blob_path(&d.blake3)]
    );
    assert_eq!(
        read_all(store.get_verified(&d.blake3, 7).await.unwrap()).await,
        b"keep me"
    );
}

#[tokio::test]
async fn sweep_on_a_fresh_store_finds_nothing() {
    let (_dir, store) = local_store();
    assert_eq!(
        store
            .sweep_temp(Duration::ZERO, &HashSet::new())
            .await
            .unwrap(),
        0
    );
}
