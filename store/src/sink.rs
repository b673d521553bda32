//! Writing a stream of chunks to a local file on a thread of its own, with the disk flushes
//! spread over the transfer instead of one long fsync at the end.

use std::io::Write;

use bytes::Bytes;

/// How much is written between two background flushes. Without them the kernel keeps the
/// whole file in dirty pages until the final fsync, which then takes ~0.4 s per GiB here.
pub const FLUSH_EVERY: u64 = 64 << 20;

/// Chunks queued for the writer thread before the feeder waits.
const QUEUE: usize = 16;

/// A file being written by its own thread. [`FileSink::finish`] makes it durable (fsync);
/// dropping the sink without finishing leaves a partial file for the caller to remove.
pub struct FileSink {
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    writer: std::thread::JoinHandle<std::io::Result<()>>,
}

impl FileSink {
    /// Takes over `file` (opened for writing).
    pub fn new(file: std::fs::File) -> std::io::Result<Self> {
        let flusher = file.try_clone()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
        let writer = std::thread::Builder::new()
            .name("arca-write".into())
            .spawn(move || {
                // The flusher works on its own handle, so writing never waits for the disk.
                let (kick, kicked) = std::sync::mpsc::sync_channel::<()>(1);
                let flush = std::thread::Builder::new()
                    .name("arca-flush".into())
                    .spawn(move || -> std::io::Result<()> {
                        for () in kicked {
                            flusher.sync_data()?;
                        }
                        Ok(())
                    })?;
                let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                let mut unflushed = 0u64;
                let written = (|| -> std::io::Result<()> {
                    while let Some(chunk) = rx.blocking_recv() {
                        out.write_all(&chunk)?;
                        unflushed += chunk.len() as u64;
                        if unflushed >= FLUSH_EVERY {
                            out.flush()?;
                            let _ = kick.try_send(());
                            unflushed = 0;
                        }
                    }
                    Ok(())
                })();
                drop(kick);
                let flushed = flush
                    .join()
                    .map_err(|_| std::io::Error::other("the flush thread panicked"))?;
                written?;
                flushed?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()
            })?;
        Ok(FileSink {
            tx: Some(tx),
            writer,
        })
    }

    /// Queues a chunk (waits, without blocking, while the writer is behind). Fails if the
    /// writer stopped on an error; [`FileSink::finish`] then says which.
    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        let tx = self.tx.as_ref().expect("not finished");
        tx.send(chunk)
            .await
            .map_err(|_| std::io::Error::other("the file writer stopped"))
    }

    /// Writes what is queued and fsyncs the file.
    pub async fn finish(mut self) -> std::io::Result<()> {
        drop(self.tx.take());
        let writer = self.writer;
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the file writer panicked"))?
    }
}

/// Chunks smaller than this are joined before they are handed on.
pub const COALESCE: usize = 256 * 1024;

/// Joins the small chunks of a network stream (often 8-64 KiB) into blocks of at least
/// [`COALESCE`] bytes. One memory copy replaces tens of thousands of hand-offs between the
/// receiving task and the hashing and writing threads per GiB.
/// (The result is `Send` when `stream` is.)
pub fn coalesce<S, E>(stream: S) -> impl futures::Stream<Item = Result<Bytes, E>>
where
    S: futures::Stream<Item = Result<Bytes, E>>,
{
    let stream = Box::pin(stream);
    futures::stream::unfold((stream, false), |(mut stream, done)| async move {
        if done {
            return None;
        }
        let mut buf = bytes::BytesMut::new();
        loop {
            match futures::StreamExt::next(&mut stream).await {
                Some(Ok(chunk)) => {
                    if buf.is_empty() && chunk.len() >= COALESCE {
                        return Some((Ok(chunk), (stream, false)));
                    }
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= COALESCE {
                        return Some((Ok(buf.freeze()), (stream, false)));
                    }
                }
                // The stream failed: what is buffered is part of a failed transfer anyway.
                Some(Err(e)) => return Some((Err(e), (stream, true))),
                None if buf.is_empty() => return None,
                None => return Some((Ok(buf.freeze()), (stream, true))),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn coalesce_keeps_bytes_and_order_and_errors() {
        let chunks: Vec<Result<Bytes, String>> = (0..100u32)
            .map(|i| Ok(Bytes::from(vec![i as u8; 10_000 + i as usize])))
            .collect();
        let expected: Vec<u8> = chunks
            .iter()
            .flat_map(|c| c.as_ref().unwrap().to_vec())
            .collect();
        let out: Vec<Result<Bytes, String>> =
            coalesce(futures::stream::iter(chunks)).collect().await;
        assert!(
            out.iter()
                .rev()
                .skip(1)
                .all(|c| c.as_ref().unwrap().len() >= COALESCE)
        );
        let joined: Vec<u8> = out.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(joined, expected);

        let failing = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err("broken".to_owned()),
        ]);
        let out: Vec<Result<Bytes, String>> = coalesce(failing).collect().await;
        assert_eq!(out.last().unwrap().as_ref().unwrap_err(), "broken");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_every_chunk_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut sink = FileSink::new(std::fs::File::create(&path).unwrap()).unwrap();
        let mut expected = Vec::new();
        for i in 0..300u32 {
            let chunk: Vec<u8> = (0..(i * 37 % 70_000)).map(|j| (i + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            sink.write(chunk.into()).await.unwrap();
        }
        sink.finish().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
