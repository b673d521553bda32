//! Helpers shared by the integration tests: a store on a fresh temporary directory, chunked
//! bodies, and a look at what is really on disk.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use arca_store::{Blake3Digest, BlobStore, BlobStream, Sha256Digest, StoreError};
use bytes::Bytes;
use futures::{Stream, StreamExt};

pub const MIB: usize = 1024 * 1024;

/// A local store rooted in a fresh temporary directory (kept alive by the returned guard).
pub fn local_store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open("", dir.path(), &[]).unwrap();
    (dir, store)
}

/// Deterministic, non-repeating-looking test bytes.
pub fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// Splits `body` into chunks whose sizes cycle through `sizes`.
pub fn chunks(body: &[u8], sizes: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = Bytes::copy_from_slice(body);
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        out.push(rest.split_to((*size).min(rest.len())));
    }
    out
}

/// A body stream that never fails.
pub fn ok_stream(chunks: Vec<Bytes>) -> impl Stream<Item = Result<Bytes, String>> + Send {
    futures::stream::iter(chunks.into_iter().map(Ok))
}

pub fn blake3_of(bytes: &[u8]) -> Blake3Digest {
    Blake3Digest(*blake3::hash(bytes).as_bytes())
}

pub fn sha256_of(bytes: &[u8]) -> Sha256Digest {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    Sha256Digest(digest.as_ref().try_into().unwrap())
}

/// Every regular file under `root/dir`, as paths relative to `root` (including the `#` staging
/// files that object_store's listings hide).
pub fn files_under(root: &Path, dir: &str) -> Vec<String> {
    fn walk(path: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join(dir), root, &mut out);
    out.sort();
    out
}

/// Asserts that neither a blob nor a temporary object exists.
pub fn assert_store_empty(root: &Path) {
    assert_eq!(
        files_under(root, "blobs"),
        Vec::<String>::new(),
        "blobs/ should be empty"
    );
    assert_eq!(
        files_under(root, "tmp"),
        Vec::<String>::new(),
        "tmp/ should be empty"
    );
}

/// Reads a stream to its end: the Ok bytes in order, and the first error if one came.
pub async fn drain(mut stream: BlobStream) -> (Vec<u8>, Option<StoreError>) {
    let mut bytes = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(e) => return (bytes, Some(e)),
        }
    }
    (bytes, None)
}

/// Reads a stream that must succeed.
pub async fn read_all(stream: BlobStream) -> Vec<u8> {
    match drain(stream).await {
        (bytes, None) => bytes,
        (_, Some(e)) => panic!("stream failed: {e}"),
    }
}
