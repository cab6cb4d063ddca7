//! Streaming transfers: a file as a re-openable request body, and a response body into a writer, both hashed (md5 for
//! Glance's `checksum`, sha512 for `os_hash_value`) and reported to a progress callback chunk by chunk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use sha2::Sha512;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::error::CloudError;
use super::http::StreamSource;

/// Size of the chunks read from disk: at most this much of a file is in memory per upload.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Called with (bytes done, bytes total) after each chunk. The CLI attaches a progress bar.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What went through a transfer: how many bytes, and their digests where they are known.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransferDigest {
    pub bytes: u64,
    /// Hex md5: Glance's `checksum`; `None` when the bytes were counted, not hashed.
    pub md5: Option<String>,
    /// Hex sha512: Glance's `os_hash_value` when `os_hash_algo` is sha512; `None` when not taken.
    pub sha512: Option<String>,
}

/// md5 on the caller's thread and sha512 on a helper thread fed the same chunks (reference-counted, not copied), so
/// that where a second core is free both digests cost about as much as one: hashing one after the other was a
/// quarter of an embedded build. Small transfers stay on one thread.
#[derive(Default)]
struct Hashes {
    md5: Md5,
    sha512: Sha512Feed,
    bytes: u64,
    /// Counts the bytes without hashing them (the caller knows the file's digest).
    count_only: bool,
}

/// Bytes hashed inline before sha512 moves to its own thread.
const SHA512_THREAD_AFTER: u64 = 1 << 20;
/// Chunks that may wait for the sha512 thread before the transfer waits for it.
const SHA512_QUEUE: usize = 8;

enum Sha512Feed {
    Inline(Sha512),
    Thread { tx: std::sync::mpsc::SyncSender<bytes::Bytes>, thread: std::thread::JoinHandle<Sha512> },
}

impl Default for Sha512Feed {
    fn default() -> Self {
        Sha512Feed::Inline(Sha512::default())
    }
}

impl Hashes {
    fn update(&mut self, chunk: &bytes::Bytes) {
        self.bytes += chunk.len() as u64;
        if self.count_only {
            return;
        }
        self.md5.update(chunk);
        if matches!(self.sha512, Sha512Feed::Inline(_)) && self.bytes >= SHA512_THREAD_AFTER {
            let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(SHA512_QUEUE);
            // The state so far follows once the thread exists: if it cannot be started, hashing stays inline.
            let (state_tx, state_rx) = std::sync::mpsc::channel::<Sha512>();
            let spawned = std::thread::Builder::new().name("sha512".into()).spawn(move || {
                let mut state = state_rx.recv().unwrap_or_default();
                while let Ok(chunk) = rx.recv() {
                    state.update(&chunk);
                }
                state
            });
            if let Ok(thread) = spawned
                && let Sha512Feed::Inline(state) =
                    std::mem::replace(&mut self.sha512, Sha512Feed::Thread { tx, thread })
            {
                let _ = state_tx.send(state);
            }
        }
        match &mut self.sha512 {
            Sha512Feed::Inline(state) => state.update(chunk),
            Sha512Feed::Thread { tx, .. } => {
                // The thread only goes away by panicking; `finish` reports that.
                let _ = tx.send(chunk.clone());
            }
        }
    }

    fn finish(self) -> TransferDigest {
        if self.count_only {
            return TransferDigest { bytes: self.bytes, md5: None, sha512: None };
        }
        let sha512 = match self.sha512 {
            Sha512Feed::Inline(state) => Some(hex::encode(state.finalize())),
            Sha512Feed::Thread { tx, thread } => {
                drop(tx);
                // Only a panic ends the thread early: an unknown digest makes the transfer fail its check.
                thread.join().ok().map(|state| hex::encode(state.finalize()))
            }
        };
        TransferDigest { bytes: self.bytes, md5: Some(hex::encode(self.md5.finalize())), sha512 }
    }
}

/// A file on disk as a request body: reopened for each attempt, read in [`CHUNK_SIZE`] pieces, hashed on the way.
pub struct FileUpload {
    path: PathBuf,
    length: u64,
    progress: Option<Progress>,
    current: Mutex<Option<Arc<Mutex<Hashes>>>>,
    hashed: bool,
}

impl FileUpload {
    pub fn new(path: &Path, progress: Option<Progress>) -> Result<FileUpload, CloudError> {
        let length = std::fs::metadata(path)
            .map_err(|source| CloudError::Io { action: "read", path: path.to_path_buf(), source })?
            .len();
        Ok(FileUpload { path: path.to_path_buf(), length, progress, current: Mutex::new(None), hashed: true })
    }

    /// The file sent without hashing it (its digest is known to the caller): [`FileUpload::digest`] gives the length
    /// sent and unknown digests.
    pub fn unhashed(mut self) -> FileUpload {
        self.hashed = false;
        self
    }

    pub fn length(&self) -> u64 {
        self.length
    }

    /// The digest of what the last attempt sent (taken: ask once per attempt); an error if it did not send the whole
    /// file.
    pub fn digest(&self) -> Result<TransferDigest, CloudError> {
        let hashes = self
            .current
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .and_then(|h| h.lock().ok().map(|mut h| std::mem::take(&mut *h)));
        let digest = hashes.unwrap_or_default().finish();
        if digest.bytes != self.length {
            return Err(CloudError::Io {
                action: "upload",
                path: self.path.clone(),
                source: std::io::Error::other(format!("sent {} of {} bytes", digest.bytes, self.length)),
            });
        }
        Ok(digest)
    }
}

impl StreamSource for FileUpload {
    fn open(&self) -> Result<(reqwest::Body, u64), CloudError> {
        let io_error = |source| CloudError::Io { action: "open", path: self.path.clone(), source };
        let file = std::fs::File::open(&self.path).map_err(io_error)?;
        let length = file.metadata().map_err(io_error)?.len();
        if length != self.length {
            return Err(CloudError::Io {
                action: "upload",
                path: self.path.clone(),
                source: std::io::Error::other(format!("the file changed size ({} → {length} bytes)", self.length)),
            });
        }
        let hashes = Arc::new(Mutex::new(Hashes { count_only: !self.hashed, ..Hashes::default() }));
        if let Ok(mut current) = self.current.lock() {
            *current = Some(hashes.clone());
        }
        let progress = self.progress.clone();
        let total = self.length;
        let stream = ReaderStream::with_capacity(tokio::fs::File::from_std(file), CHUNK_SIZE).map_ok(move |chunk| {
            let done = match hashes.lock() {
                Ok(mut h) => {
                    h.update(&chunk);
                    h.bytes
                }
                Err(_) => 0,
            };
            if let Some(progress) = &progress {
                progress(done, total);
            }
            chunk
        });
        Ok((reqwest::Body::wrap_stream(stream), length))
    }
}

/// Copies a body stream into `writer`, hashing it; `total` is the expected length when known.
pub async fn copy_hashed<S, W>(
    stream: S,
    writer: &mut W,
    total: Option<u64>,
    progress: Option<&Progress>,
) -> Result<TransferDigest, HashedCopyError>
where
    S: Stream<Item = Result<bytes::Bytes, CloudError>> + Send,
    W: AsyncWrite + Unpin,
{
    let mut hashes = Hashes::default();
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(HashedCopyError::Source)?;
        hashes.update(&chunk);
        writer.write_all(&chunk).await.map_err(HashedCopyError::Write)?;
        if let Some(progress) = progress {
            progress(hashes.bytes, total.unwrap_or(hashes.bytes));
        }
    }
    writer.flush().await.map_err(HashedCopyError::Write)?;
    Ok(hashes.finish())
}

/// The hex md5 of a local file, streamed.
pub fn md5_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Which side of [`copy_hashed`] failed.
#[derive(Debug)]
pub enum HashedCopyError {
    Source(CloudError),
    Write(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both digests in one go, the reference the streamed ones must match.
    fn one_shot(data: &[u8]) -> TransferDigest {
        TransferDigest {
            bytes: data.len() as u64,
            md5: Some(hex::encode(Md5::digest(data))),
            sha512: Some(hex::encode(Sha512::digest(data))),
        }
    }

    #[test]
    fn streamed_digests_match_one_shot_digests_below_and_above_the_thread_threshold() {
        let data: Vec<u8> = (0..3 * SHA512_THREAD_AFTER as usize + 12345).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1000, SHA512_THREAD_AFTER as usize - 1, SHA512_THREAD_AFTER as usize, data.len()] {
            for piece in [1000, 65536, CHUNK_SIZE + 7] {
                let mut hashes = Hashes::default();
                for chunk in data[..len].chunks(piece) {
                    hashes.update(&bytes::Bytes::copy_from_slice(chunk));
                }
                assert_eq!(hashes.finish(), one_shot(&data[..len]), "{len} bytes in pieces of {piece}");
            }
        }
    }
}
