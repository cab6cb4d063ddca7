//! Image data on disk: streams chunks to a file while md5 and sha512 are computed on the fly, with memory bounded by a few chunks whatever the image size.
//!
//! The request body arrives in pieces of a few KiB to a few hundred KiB. They are copied into one of a small pool
//! of 4 MiB buffers; each full buffer is shared (not copied) by three threads: one computes md5, one
//! sha512, one writes it to the file. So both digests run in parallel, each on its own core when there is one, and
//! neither waits for the disk. The last thread done with a buffer sends it back to the pool, and the producer waits
//! for a free buffer when all four are in flight: backpressure all the way to the socket, and no memory is
//! allocated (or page-faulted in) per chunk.
//!
//! The writer bypasses the page cache (`O_DIRECT`) where the file system allows it: a buffered write of a freshly
//! uploaded image copies every byte into page-cache pages and, with memory full of cache as on any long-running
//! host, reclaims as many pages elsewhere first; on the 2-core benchmark machine that cost almost as much CPU as md5.
//! A direct write lets the disk take the bytes from the buffer. Where direct writes are refused (tmpfs, some
//! network file systems), or for the unaligned tail of an image, the same bytes go through an ordinary write.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use bytes::Bytes;
use md5::{Digest, Md5};
use sha2::Sha512;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// The size of the chunks the writer and the digest threads work on: a few hundred hand-offs per GiB.
const CHUNK: usize = 4 << 20;
/// How many chunk buffers one upload may use: image data in memory stays below `BUFFERS` × [`CHUNK`].
const BUFFERS: usize = 4;
/// Direct writes need the buffer address, the file offset and the length aligned to the device's logical block
/// size; 4 KiB suits every common device.
const ALIGN: usize = 4096;
/// Buffers kept for the next upload once one ends. A fresh 4 MiB buffer costs a page fault per 4 KiB touched, and
/// glibc serves a repeated 4 MiB `calloc` from its heap, zeroing it first: for the small uploads of a build (an
/// installer ISO, the driver media) that cost more than hashing them.
const SPARE_BUFFERS: usize = BUFFERS;

/// Buffers of uploads that ended, process-wide.
static SPARE: std::sync::Mutex<Vec<Buffer>> = std::sync::Mutex::new(Vec::new());

/// A buffer from [`SPARE`], or a new one.
fn take_buffer() -> Buffer {
    let spare = SPARE.lock().ok().and_then(|mut spare| spare.pop());
    spare.unwrap_or_else(Buffer::new)
}

/// Keeps `buffer` in [`SPARE`] if there is room; frees it otherwise.
fn keep_buffer(mut buffer: Buffer) {
    buffer.len = 0;
    if let Ok(mut spare) = SPARE.lock()
        && spare.len() < SPARE_BUFFERS
    {
        spare.push(buffer);
    }
}

/// What a finished write learned about the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    /// Hex md5, Glance's `checksum`.
    pub md5: String,
    /// Hex sha512, Glance's `os_hash_value` for `os_hash_algo` = `sha512`.
    pub sha512: String,
}

/// A [`CHUNK`]-sized buffer whose data starts on an [`ALIGN`] boundary.
struct Buffer {
    storage: Box<[u8]>,
    start: usize,
    len: usize,
}

impl Buffer {
    fn new() -> Buffer {
        let storage = vec![0u8; CHUNK + ALIGN].into_boxed_slice();
        let start = (ALIGN - storage.as_ptr().addr() % ALIGN) % ALIGN;
        Buffer { storage, start, len: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    fn is_full(&self) -> bool {
        self.len == CHUNK
    }

    /// The free space after the data.
    fn room(&mut self) -> &mut [u8] {
        &mut self.storage[self.start + self.len..self.start + CHUNK]
    }

    /// Appends as much of `bytes` as fits and returns how much that was.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(CHUNK - self.len);
        self.room()[..n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }
}

/// A full buffer shared by the writer and the digest threads; dropping the last reference returns it to the pool.
struct Chunk {
    buffer: Option<Buffer>,
    pool: UnboundedSender<Buffer>,
}

impl Chunk {
    fn data(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], Buffer::data)
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(mut buffer) = self.buffer.take() {
            buffer.len = 0;
            // The producer is gone once the upload ended; the buffer then waits for the next upload.
            if let Err(returned) = self.pool.send(buffer) {
                keep_buffer(returned.0);
            }
        }
    }
}

/// Writes the image file at explicit offsets: directly from the buffers where it can, through the page cache
/// otherwise.
struct DirectWriter {
    buffered: File,
    direct: Option<File>,
    offset: u64,
}

impl DirectWriter {
    /// Creates (truncates) `path`.
    fn create(path: &Path) -> io::Result<DirectWriter> {
        let buffered = File::create(path)?;
        let direct = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok();
        Ok(DirectWriter { buffered, direct, offset: 0 })
    }

    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let aligned = data.len() / ALIGN * ALIGN;
            let direct = match &self.direct {
                Some(file)
                    if aligned > 0
                        && self.offset.is_multiple_of(ALIGN as u64)
                        && data.as_ptr().addr().is_multiple_of(ALIGN) =>
                {
                    Some(file)
                }
                _ => None,
            };
            let written = match direct {
                Some(file) => file.write_at(&data[..aligned], self.offset),
                None => self.buffered.write_at(data, self.offset),
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.offset += n as u64;
                    data = &data[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The file system opened the file for direct i/o but refuses the write itself.
                Err(e) if direct.is_some() && e.kind() == io::ErrorKind::InvalidInput => self.direct = None,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn spawn_digest<D: Digest + Send + 'static>(
    name: &str,
    chunks: std_mpsc::Receiver<Arc<Chunk>>,
) -> io::Result<JoinHandle<String>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let mut digest = D::new();
        while let Ok(chunk) = chunks.recv() {
            digest.update(chunk.data());
        }
        hex::encode(digest.finalize())
    })
}

/// The shared core of [`DataSink`] and [`copy_file`]: the buffer pool and the three threads.
struct Pipeline {
    /// The buffer being filled.
    current: Option<Buffer>,
    free: UnboundedReceiver<Buffer>,
    pool: UnboundedSender<Buffer>,
    /// Buffers allocated so far, at most [`BUFFERS`].
    made: usize,
    to_writer: std_mpsc::Sender<Arc<Chunk>>,
    to_md5: std_mpsc::Sender<Arc<Chunk>>,
    to_sha512: std_mpsc::Sender<Arc<Chunk>>,
    writer: JoinHandle<io::Result<()>>,
    md5: JoinHandle<String>,
    sha512: JoinHandle<String>,
    size: u64,
}

impl Pipeline {
    fn create(path: &Path) -> io::Result<Pipeline> {
        let mut file = DirectWriter::create(path)?;
        let (to_writer, written) = std_mpsc::channel::<Arc<Chunk>>();
        let writer = std::thread::Builder::new().name("glance-writer".into()).spawn(move || {
            while let Ok(chunk) = written.recv() {
                file.write(chunk.data())?;
            }
            Ok(())
        })?;
        let (to_md5, md5_chunks) = std_mpsc::channel();
        let md5 = spawn_digest::<Md5>("glance-md5", md5_chunks)?;
        let (to_sha512, sha512_chunks) = std_mpsc::channel();
        let sha512 = spawn_digest::<Sha512>("glance-sha512", sha512_chunks)?;
        let (pool, free) = unbounded_channel();
        Ok(Pipeline { current: None, free, pool, made: 0, to_writer, to_md5, to_sha512, writer, md5, sha512, size: 0 })
    }

    /// A free buffer if one is at hand without waiting.
    fn free_buffer(&mut self) -> Option<Buffer> {
        if let Ok(buffer) = self.free.try_recv() {
            return Some(buffer);
        }
        (self.made < BUFFERS).then(|| {
            self.made += 1;
            take_buffer()
        })
    }

    /// Hands the current buffer to the three threads.
    fn dispatch(&mut self) -> io::Result<()> {
        let Some(buffer) = self.current.take().filter(|b| b.len > 0) else { return Ok(()) };
        let chunk = Arc::new(Chunk { buffer: Some(buffer), pool: self.pool.clone() });
        // A thread only stops early when its work failed; `finish` then reports why.
        let stopped = |_| io::Error::other("the image writer stopped: writing the data failed");
        self.to_md5.send(chunk.clone()).map_err(stopped)?;
        self.to_sha512.send(chunk.clone()).map_err(stopped)?;
        self.to_writer.send(chunk).map_err(stopped)
    }

    /// Copies `bytes` into the current buffer; returns how much fit, and dispatches the buffer once it is full.
    fn fill(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some(buffer) = self.current.as_mut() else { return Ok(0) };
        let n = buffer.fill(bytes);
        self.filled(n)?;
        Ok(n)
    }

    /// Counts `n` bytes just put in the current buffer, and dispatches the buffer once it is full.
    fn filled(&mut self, n: usize) -> io::Result<()> {
        self.size += n as u64;
        if self.current.as_ref().is_some_and(Buffer::is_full) {
            self.dispatch()?;
        }
        Ok(())
    }

    /// Waits for the threads; the writer's error comes first.
    fn finish(mut self) -> io::Result<Digests> {
        self.dispatch()?;
        let Pipeline { to_writer, to_md5, to_sha512, writer, md5, sha512, size, mut free, .. } = self;
        drop((to_writer, to_md5, to_sha512));
        let panicked = |what: &str| io::Error::other(format!("the image {what} thread panicked"));
        let written = writer.join().map_err(|_| panicked("writer"));
        let md5 = md5.join().map_err(|_| panicked("md5"));
        let sha512 = sha512.join().map_err(|_| panicked("sha512"));
        // Every chunk is dropped now: its buffer is back in `free`.
        while let Ok(buffer) = free.try_recv() {
            keep_buffer(buffer);
        }
        written??;
        Ok(Digests { size, md5: md5?, sha512: sha512? })
    }
}

/// Copies `src` to `dst` as an upload would, hashing on the way; at most `cap` bytes.
pub fn copy_file(src: &Path, dst: &Path, cap: u64) -> Result<Digests, CopyError> {
    // Waiting for a free buffer blocks, which a thread of an async runtime must not do; callers may be on one.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("glance-copy".into())
            .spawn_scoped(scope, || copy_file_here(src, dst, cap))
            .map_err(CopyError::Io)?
            .join()
            .unwrap_or_else(|_| Err(CopyError::Io(io::Error::other("the image copy panicked"))))
    })
}

fn copy_file_here(src: &Path, dst: &Path, cap: u64) -> Result<Digests, CopyError> {
    let mut input = File::open(src).map_err(CopyError::Io)?;
    let mut pipeline = Pipeline::create(dst).map_err(CopyError::Io)?;
    loop {
        if pipeline.current.is_none() {
            let buffer = match pipeline.free_buffer() {
                Some(b) => b,
                None => pipeline.free.blocking_recv().ok_or_else(|| CopyError::Io(io::Error::other("no buffer")))?,
            };
            pipeline.current = Some(buffer);
        }
        let Some(buffer) = pipeline.current.as_mut() else { continue };
        let n = match input.read(buffer.room()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Io(e)),
        };
        if pipeline.size + n as u64 > cap {
            return Err(CopyError::TooLarge);
        }
        buffer.len += n;
        pipeline.filled(n).map_err(CopyError::Io)?;
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

/// The async front of the write-and-hash pipeline: pieces arrive from a request body, three threads do the rest.
pub struct DataSink {
    path: PathBuf,
    pipeline: Pipeline,
}

impl DataSink {
    /// Creates (truncates) `path` and starts the writer and digest threads.
    pub fn create(path: &Path) -> io::Result<DataSink> {
        Ok(DataSink { path: path.to_path_buf(), pipeline: Pipeline::create(path)? })
    }

    /// Bytes accepted so far.
    pub fn size(&self) -> u64 {
        self.pipeline.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes one piece of data, waiting while every buffer is in flight.
    pub async fn push(&mut self, piece: Bytes) -> io::Result<()> {
        let mut rest = &piece[..];
        while !rest.is_empty() {
            let pipeline = &mut self.pipeline;
            if pipeline.current.is_none() {
                let buffer = match pipeline.free_buffer() {
                    Some(b) => b,
                    None => pipeline.free.recv().await.ok_or_else(|| io::Error::other("no free image buffer"))?,
                };
                pipeline.current = Some(buffer);
            }
            let n = pipeline.fill(rest)?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Waits for every chunk to be written and both digests to be computed.
    pub async fn finish(self) -> io::Result<Digests> {
        let pipeline = self.pipeline;
        tokio::task::spawn_blocking(move || pipeline.finish())
            .await
            .map_err(|_| io::Error::other("the image writer panicked"))?
    }
}

/// Hex md5 and sha512 of a byte slice (for tests and callers checking data they hold).
pub fn digests_of(data: &[u8]) -> Digests {
    Digests { size: data.len() as u64, md5: hex::encode(Md5::digest(data)), sha512: hex::encode(Sha512::digest(data)) }
}

#[cfg(test)]
// The guard only keeps tests apart; each test has a runtime of its own, so holding it across an await is harmless.
#[allow(clippy::await_holding_lock)]
mod tests {
    use super::*;

    /// The tests share [`SPARE`]; one at a time, so that what one test sees there is its own doing.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn generated(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 31 + seed * 7) % 251) as u8).collect()
    }

    #[test]
    fn buffers_outlive_their_upload_up_to_a_bound() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        // Three buffers' worth, so one upload returns several buffers.
        std::fs::write(&src, generated(3 * CHUNK - 5, 4)).unwrap();
        for i in 0..3 {
            let dst = dir.path().join(format!("dst{i}"));
            let digests = copy_file(&src, &dst, u64::MAX).unwrap();
            assert_eq!(digests, digests_of(&std::fs::read(&src).unwrap()));
            let spare = SPARE.lock().unwrap();
            assert!(!spare.is_empty() && spare.len() <= SPARE_BUFFERS, "{} spare buffers", spare.len());
            assert!(spare.iter().all(|b| b.len == 0), "a kept buffer must come back empty");
        }
    }

    #[test]
    fn copy_hashes_like_the_one_shot_digests() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        // More chunks than buffers, so the copy waits for recycled ones, and an unaligned tail.
        let data = generated((BUFFERS + 3) * CHUNK + 17, 0);
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let dst = dir.path().join("dst");
        let got = copy_file(&src, &dst, u64::MAX).unwrap();
        assert_eq!(got, digests_of(&data));
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        assert!(matches!(copy_file(&src, &dir.path().join("capped"), 1000), Err(CopyError::TooLarge)));
    }

    #[tokio::test]
    async fn sink_hashes_streamed_pieces() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut sink = DataSink::create(&path).unwrap();
        let mut all = Vec::new();
        for i in 0..100 {
            let piece = generated(1000 + i, i);
            all.extend_from_slice(&piece);
            sink.push(Bytes::from(piece)).await.unwrap();
        }
        assert_eq!(sink.size(), all.len() as u64);
        let got = sink.finish().await.unwrap();
        assert_eq!(got, digests_of(&all));
        assert_eq!(std::fs::read(&path).unwrap(), all);
    }

    #[tokio::test]
    async fn pieces_around_the_chunk_size_keep_their_order() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut sink = DataSink::create(&path).unwrap();
        let mut all = Vec::new();
        let sizes = [CHUNK / 3, CHUNK / 3, CHUNK / 3, CHUNK / 3, CHUNK + 5, 17, 2 * CHUNK, 1, CHUNK - 1, 3 * CHUNK];
        for (i, size) in sizes.into_iter().enumerate() {
            let piece = generated(size, i);
            all.extend_from_slice(&piece);
            sink.push(Bytes::from(piece)).await.unwrap();
        }
        let got = sink.finish().await.unwrap();
        assert_eq!(got, digests_of(&all));
        assert_eq!(std::fs::read(&path).unwrap(), all);
    }

    #[test]
    fn unaligned_pieces_fall_back_to_ordinary_writes() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut file = DirectWriter::create(&path).unwrap();
        let mut buffer = Buffer::new();
        let data = generated(3 * ALIGN + 100, 1);
        buffer.fill(&data);
        // Aligned start and unaligned tail, then a piece at an unaligned address and offset.
        file.write(buffer.data()).unwrap();
        file.write(&buffer.data()[1..ALIGN + 1]).unwrap();
        let mut expected = data.clone();
        expected.extend_from_slice(&data[1..ALIGN + 1]);
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
