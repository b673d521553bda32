//! A download stream that re-hashes what it reads and withholds the end of a wrong body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;

use crate::{Blake3Digest, StoreError};

/// Passes chunks through one step behind the backend: each chunk is released only when the
/// next one arrives, and the last only after the whole body hashed to the expected digest.
pub(crate) struct VerifyingStream {
    inner: BoxStream<'static, Result<Bytes, StoreError>>,
    expected: Blake3Digest,
    expected_size: u64,
    hasher: blake3::Hasher,
    read: u64,
    held: Option<Bytes>,
    done: bool,
}

impl VerifyingStream {
    pub(crate) fn new(
        inner: BoxStream<'static, Result<Bytes, StoreError>>,
        expected: Blake3Digest,
        expected_size: u64,
    ) -> Self {
        Self {
            inner,
            expected,
            expected_size,
            hasher: blake3::Hasher::new(),
            read: 0,
            held: None,
            done: false,
        }
    }

    fn corrupt(&mut self) -> Poll<Option<Result<Bytes, StoreError>>> {
        self.done = true;
        self.held = None;
        Poll::Ready(Some(Err(StoreError::Corrupt {
            digest: self.expected.hex(),
        })))
    }
}

impl Stream for VerifyingStream {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.held = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    this.read += chunk.len() as u64;
                    if this.read > this.expected_size {
                        return this.corrupt();
                    }
                    this.hasher.update(&chunk);
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    let intact = this.read == this.expected_size
                        && this.hasher.finalize().as_bytes() == &this.expected.0;
                    if !intact {
                        return this.corrupt();
                    }
                    this.done = true;
                    return Poll::Ready(this.held.take().map(Ok));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn chunks(parts: &[&'static [u8]]) -> BoxStream<'static, Result<Bytes, StoreError>> {
        let items: Vec<_> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures::stream::iter(items).boxed()
    }

    async fn drain(s: VerifyingStream) -> (Vec<u8>, Option<StoreError>) {
        let mut body = Vec::new();
        let mut s = Box::pin(s);
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => body.extend_from_slice(&b),
                Err(e) => {
                    assert!(s.next().await.is_none(), "stream continued after an error");
                    return (body, Some(e));
                }
            }
        }
        (body, None)
    }

    fn digest(bytes: &[u8]) -> Blake3Digest {
        Blake3Digest(*blake3::hash(bytes).as_bytes())
    }

    #[tokio::test]
    async fn intact_body_passes_through_unchanged() {
        let s = VerifyingStream::new(
            chunks(&[b"hel", b"", b"lo ", b"world"]),
            digest(b"hello world"),
            11,
        );
        let (body, err) = drain(s).await;
        assert_eq!(body, b"hello world");
        assert!(err.is_none());
    }

    #[tokio::test]
    async fn wrong_body_never_arrives_complete() {
        let s = VerifyingStream::new(
            chunks(&[b"hel", b"lo ", b"worle"]),
            digest(b"hello world"),
            11,
        );
        let (body, err) = drain(s).await;
        assert_eq!(body, b"hello ");
        assert!(matches!(err, Some(StoreError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn single_chunk_wrong_body_yields_only_the_error() {
        let s = VerifyingStream::new(chunks(&[b"hello worle"]), digest(b"hello world"), 11);
        let (body, err) = drain(s).await;
        assert!(body.is_empty());
        assert!(matches!(err, Some(StoreError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn wrong_length_is_corrupt_even_with_a_matching_prefix() {
        let long =
            VerifyingStream::new(chunks(&[b"hello", b" world!"]), digest(b"hello world"), 11);
        assert!(matches!(
            drain(long).await.1,
            Some(StoreError::Corrupt { .. })
        ));
        let short = VerifyingStream::new(chunks(&[b"hello"]), digest(b"hello world"), 11);
        assert!(
            matches!(drain(short).await, (b, Some(StoreError::Corrupt { .. })) if b.is_empty())
        );
    }

    #[tokio::test]
    async fn empty_blob_verifies() {
        let s = VerifyingStream::new(chunks(&[]), digest(b""), 0);
        assert_eq!(drain(s).await.0, b"");
    }
}
