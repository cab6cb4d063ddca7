//! Image data on disk: streams chunks to a file while md5 and sha512 are computed on the fly, with memory bounded by a few chunks whatever the image size.
//!
//! The writer thread writes each chunk and feeds md5; a second thread computes sha512 from the
//! same (reference-counted) chunks, so on a machine with two cores both digests cost about as
//! much as the slower one. Bounded channels give backpressure all the way to the socket.
//!
//! The socket delivers the body in pieces of a few KiB; they are gathered into [`BATCH`]-sized
//! chunks before they cross to the threads, so that an upload costs a few thousand channel
//! hand-offs per GiB instead of a hundred thousand (each one a thread wake-up): one memory copy,
//! which the buffered file writer made anyway.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use sha2::Sha512;

/// How many chunks may wait for each thread before the producer blocks: with [`BATCH`]-sized chunks, a few MiB
/// of slack between the socket, the disk and the two digests, and a bounded memory whatever the image size.
const QUEUE_DEPTH: usize = 4;
/// The size of the chunks handed to the writer and hashing threads.
pub const BATCH: usize = 1 << 20;
/// Read size when importing from a local file.
const FILE_CHUNK: usize = 1 << 20;

/// What a finished write learned about the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    /// Hex md5, Glance's `checksum`.
    pub md5: String,
    /// Hex sha512, Glance's `os_hash_value` for `os_hash_algo` = `sha512`.
    pub sha512: String,
}

/// The synchronous core: a file, an md5 state, and a sha512 thread fed through a bounded channel.
struct Pipeline {
    file: BufWriter<File>,
    md5: Md5,
    sha_tx: std_mpsc::SyncSender<Bytes>,
    sha: JoinHandle<String>,
    size: u64,
}

impl Pipeline {
    fn create(path: &Path) -> io::Result<Pipeline> {
        let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let (sha_tx, sha_rx) = std_mpsc::sync_channel::<Bytes>(QUEUE_DEPTH);
        let sha = std::thread::Builder::new().name("glance-sha512".into()).spawn(move || {
            let mut sha = Sha512::new();
            while let Ok(chunk) = sha_rx.recv() {
                sha.update(&chunk);
            }
            hex::encode(sha.finalize())
        })?;
        Ok(Pipeline { file, md5: Md5::new(), sha_tx, sha, size: 0 })
    }

    fn feed(&mut self, chunk: Bytes) -> io::Result<()> {
        self.size += chunk.len() as u64;
        self.sha_tx.send(chunk.clone()).map_err(|_| io::Error::other("the sha512 thread stopped"))?;
        self.file.write_all(&chunk)?;
        self.md5.update(&chunk);
        Ok(())
    }

    fn finish(self) -> io::Result<Digests> {
        let Pipeline { mut file, md5, sha_tx, sha, size } = self;
        file.flush()?;
        drop(sha_tx);
        let sha512 = sha.join().map_err(|_| io::Error::other("the sha512 thread panicked"))?;
        Ok(Digests { size, md5: hex::encode(md5.finalize()), sha512 })
    }
}

/// Copies `src` to `dst` as an upload would, hashing on the way; at most `cap` bytes.
pub fn copy_file(src: &Path, dst: &Path, cap: u64) -> Result<Digests, CopyError> {
    let mut input = File::open(src).map_err(CopyError::Io)?;
    let mut pipeline = Pipeline::create(dst).map_err(CopyError::Io)?;
    loop {
        let mut buf = BytesMut::zeroed(FILE_CHUNK);
        let n = input.read(&mut buf).map_err(CopyError::Io)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        if pipeline.size + n as u64 > cap {
            return Err(CopyError::TooLarge);
        }
        pipeline.feed(buf.freeze()).map_err(CopyError::Io)?;
    }
    pipeline.finish().map_err(CopyError::Io)
}

/// Why [`copy_file`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("image data i/o failed: {0}")]
    Io(#[source] io::Error),
    #[error("the image is larger than the size cap")]
    TooLarge,
}

/// The async front of the write-and-hash pipeline: chunks arrive from a request body, a writer thread does the rest.
pub struct DataSink {
    path: PathBuf,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    writer: JoinHandle<io::Result<Digests>>,
    size: u64,
    /// Pieces gathered until a [`BATCH`] is full.
    pending: BytesMut,
}

impl DataSink {
    /// Creates (truncates) `path` and starts the writer and hashing threads.
    pub fn create(path: &Path) -> io::Result<DataSink> {
        let mut pipeline = Pipeline::create(path)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE_DEPTH);
        let writer = std::thread::Builder::new().name("glance-writer".into()).spawn(move || {
            while let Some(chunk) = rx.blocking_recv() {
                pipeline.feed(chunk)?;
            }
            pipeline.finish()
        })?;
        Ok(DataSink { path: path.to_path_buf(), tx, writer, size: 0, pending: BytesMut::new() })
    }

    /// Bytes accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one piece of data, waiting while the writer is behind.
    pub async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        self.size += chunk.len() as u64;
        if self.pending.is_empty() && chunk.len() >= BATCH {
            return self.send(chunk).await;
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve(BATCH);
        }
        self.pending.extend_from_slice(&chunk);
        if self.pending.len() >= BATCH {
            let batch = self.pending.split().freeze();
            self.send(batch).await?;
        }
        Ok(())
    }

    async fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        // The writer only stops early when a write failed; `finish` then reports that error.
        self.tx.send(chunk).await.map_err(|_| io::Error::other("the image writer stopped: writing the data failed"))
    }

    /// Waits for every chunk to be written and both digests to be computed.
    pub async fn finish(mut self) -> io::Result<Digests> {
        if !self.pending.is_empty() {
            let rest = self.pending.split().freeze();
            self.send(rest).await?;
        }
        let DataSink { tx, writer, .. } = self;
        drop(tx);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(io::Error::other)?
            .map_err(|_| io::Error::other("the image writer panicked"))?
    }
}

/// Hex md5 and sha512 of a byte slice (for tests and callers checking data they hold).
pub fn digests_of(data: &[u8]) -> Digests {
    Digests { size: data.len() as u64, md5: hex::encode(Md5::digest(data)), sha512: hex::encode(Sha512::digest(data)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_hashes_like_the_one_shot_digests() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(3 * FILE_CHUNK + 17)).map(|i| (i * 31 % 251) as u8).collect();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let dst = dir.path().join("dst");
        let got = copy_file(&src, &dst, u64::MAX).unwrap();
        assert_eq!(got, digests_of(&data));
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        assert!(matches!(copy_file(&src, &dir.path().join("capped"), 1000), Err(CopyError::TooLarge)));
    }

    #[tokio::test]
    async fn sink_hashes_streamed_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut sink = DataSink::create(&path).unwrap();
        let mut all = Vec::new();
        for i in 0..100u32 {
            let chunk: Vec<u8> = (0..(1000 + i)).map(|j| (i ^ j) as u8).collect();
            all.extend_from_slice(&chunk);
            sink.push(Bytes::from(chunk)).await.unwrap();
        }
        assert_eq!(sink.size(), all.len() as u64);
        let got = sink.finish().await.unwrap();
        assert_eq!(got, digests_of(&all));
        assert_eq!(std::fs::read(&path).unwrap(), all);
    }

    #[tokio::test]
    async fn pieces_around_the_batch_size_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut sink = DataSink::create(&path).unwrap();
        let mut all = Vec::new();
        let sizes = [BATCH / 3, BATCH / 3, BATCH / 3, BATCH / 3, BATCH + 5, 17, 2 * BATCH, 1, BATCH - 1];
        for (i, size) in sizes.into_iter().enumerate() {
            let piece: Vec<u8> = (0..size).map(|j| (j * 7 + i * 13) as u8).collect();
            all.extend_from_slice(&piece);
            sink.push(Bytes::from(piece)).await.unwrap();
        }
        let got = sink.finish().await.unwrap();
        assert_eq!(got, digests_of(&all));
        assert_eq!(std::fs::read(&path).unwrap(), all);
    }
}
