//! Staged uploads that outlive their `Staged`: detached (the object stays, nothing deletes it
//! and this process's sweep no longer skips it), reattached by path in another store handle
//! (another process sharing the store), committed; and the path check that keeps a path
//! handed back from outside from naming any object but a temporary one.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use arca_store::{BlobStore, Expected, StoreError};
use common::*;

fn expected_for(bytes: &[u8]) -> Expected {
    Expected {
        blake3: Some(blake3_of(bytes)),
        sha256: Some(sha256_of(bytes)),
        size: Some(bytes.len() as u64),
    }
}

#[tokio::test]
async fn a_detached_upload_is_kept_and_commits_through_another_handle() {
    let (dir, store) = local_store();
    let bytes = body(300_000, 1);
    let staged = store
        .stage(ok_stream(chunks(&bytes, &[4096, 70_000])), u64::MAX)
        .await
        .unwrap();
    let path_before = staged.path().to_owned();
    let (path, digests) = staged.detach();
    assert_eq!(path, path_before);
    assert!(path.starts_with("tmp/") && path.len() == 36, "{path}");
    assert_eq!(digests.blake3, blake3_of(&bytes));
    // Dropping the detached upload deleted nothing (no task to wait for: there is none).
    tokio::task::yield_now().await;
    assert_eq!(files_under(dir.path(), "tmp"), vec![path.clone()]);

    // Detached, it is no longer this process's own: only `keep` protects it from the sweep.
    let keep: HashSet<String> = [path.clone()].into();
    assert_eq!(store.sweep_temp(Duration::ZERO, &keep).await.unwrap(), 0);
    assert_eq!(files_under(dir.path(), "tmp"), vec![path.clone()]);

    // Another process on the same store reattaches it and commits it.
    let other = BlobStore::open("", dir.path(), &[]).unwrap();
    let again = other.staged_at(&path, digests).await.unwrap();
    // While reattached, the other process's sweep skips it without being told.
    assert_eq!(
        other
            .sweep_temp(Duration::ZERO, &HashSet::new())
            .await
            .unwrap(),
        0
    );
    let committed = other.commit(again, &expected_for(&bytes)).await.unwrap();
    assert_eq!(committed, digests);
    assert!(files_under(dir.path(), "tmp").is_empty());
    assert_eq!(
        read_all(
            store
                .get_verified(&digests.blake3, digests.size)
                .await
                .unwrap()
        )
        .await,
        bytes
    );

    // Used once: the object is gone, so it cannot be reattached again.
    let gone = other.staged_at(&path, digests).await.unwrap_err();
    assert!(matches!(gone, StoreError::StagedMissing { .. }), "{gone:?}");
}

#[tokio::test]
async fn a_detached_upload_without_keep_is_swept_and_a_reattached_one_dropped_is_deleted() {
    let (dir, store) = local_store();
    let bytes = body(10_000, 2);
    let (path, digests) = store
        .stage(ok_stream(vec![bytes.clone().into()]), u64::MAX)
        .await
        .unwrap()
        .detach();
    assert_eq!(
        store
            .sweep_temp(Duration::ZERO, &HashSet::new())
            .await
            .unwrap(),
        1
    );
    assert!(files_under(dir.path(), "tmp").is_empty());

    // A reattached upload behaves like a fresh one: dropped undecided, it is deleted.
    let (path2, digests2) = store
        .stage(ok_stream(vec![bytes.clone().into()]), u64::MAX)
        .await
        .unwrap()
        .detach();
    assert_ne!(path, path2);
    assert_eq!(digests, digests2);
    drop(store.staged_at(&path2, digests2).await.unwrap());
    for _ in 0..100 {
        if files_under(dir.path(), "tmp").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_store_empty(dir.path());

    // A commit whose claims do not hold publishes nothing and removes the object.
    let (path3, digests3) = store
        .stage(ok_stream(vec![bytes.clone().into()]), u64::MAX)
        .await
        .unwrap()
        .detach();
    let staged = store.staged_at(&path3, digests3).await.unwrap();
    let err = store
        .commit(staged, &expected_for(b"other bytes"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err:?}");
    assert_store_empty(dir.path());

    // remove_temp deletes a detached upload; a missing one is no error.
    let (path4, _) = store
        .stage(ok_stream(vec![bytes.into()]), u64::MAX)
        .await
        .unwrap()
        .detach();
    store.remove_temp(&path4).await.unwrap();
    store.remove_temp(&path4).await.unwrap();
    assert_store_empty(dir.path());
}

#[tokio::test]
async fn only_a_temporary_path_is_reattached_or_removed() {
    let (dir, store) = local_store();
    let kept = body(5_000, 3);
    let blob = store
        .put_bytes(kept.clone().into(), u64::MAX, &Expected::default())
        .await
        .unwrap();
    let blob_path = BlobStore::blob_path(&blob.blake3);
    let (tmp, _) = store
        .stage(ok_stream(vec![body(1_000, 4).into()]), u64::MAX)
        .await
        .unwrap()
        .detach();
    let name = tmp.strip_prefix("tmp/").unwrap().to_owned();
    let bad = [
        blob_path.clone(),
        String::new(),
        "tmp".into(),
        "tmp/".into(),
        name.clone(),
        format!("/{tmp}"),
        format!("{tmp}/x"),
        format!("{tmp}#1"),
        format!("{tmp}0"),
        tmp[..tmp.len() - 1].to_owned(),
        format!("tmp/{}", name.to_uppercase()),
        format!("tmp/../{blob_path}"),
        format!("tmp/../tmp/{name}"),
        format!("tmp//{name}"),
        format!("blobs/../{tmp}"),
        format!("x/{tmp}"),
        format!("tmp/{}g", &name[..31]),
    ];
    for path in &bad {
        // Claims that match the blob: a reattached "upload" would publish and then delete it.
        let e = store.staged_at(path, blob).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::NotTemporary { path: p } if p == path),
            "{path:?}: {e:?}"
        );
        assert!(e.to_string().contains(path.as_str()), "{e}");
        let e = store.remove_temp(path).await.unwrap_err();
        assert!(
            matches!(e, StoreError::NotTemporary { .. }),
            "{path:?}: {e:?}"
        );
    }
    assert_eq!(files_under(dir.path(), "blobs"), vec![blob_path]);
    assert_eq!(files_under(dir.path(), "tmp"), vec![tmp.clone()]);
    assert_eq!(
        read_all(store.get_verified(&blob.blake3, blob.size).await.unwrap()).await,
        kept
    );
    // The genuine path still works.
    store.remove_temp(&tmp).await.unwrap();
    assert!(files_under(dir.path(), "tmp").is_empty());
}
