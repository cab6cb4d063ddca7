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

/// What went through a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferDigest {
    pub bytes: u64,
    /// Hex md5: Glance's `checksum`.
    pub md5: String,
    /// Hex sha512: Glance's `os_hash_value` when `os_hash_algo` is sha512.
    pub sha512: String,
}

#[derive(Clone, Default)]
struct Hashes {
    md5: Md5,
    sha512: Sha512,
    bytes: u64,
}

impl Hashes {
    fn update(&mut self, chunk: &[u8]) {
        self.md5.update(chunk);
        self.sha512.update(chunk);
        self.bytes += chunk.len() as u64;
    }

    fn finish(self) -> TransferDigest {
        TransferDigest {
            bytes: self.bytes,
            md5: hex::encode(self.md5.finalize()),
            sha512: hex::encode(self.sha512.finalize()),
        }
    }
}

/// A file on disk as a request body: reopened for each attempt, read in [`CHUNK_SIZE`] pieces, hashed on the way.
pub struct FileUpload {
    path: PathBuf,
    length: u64,
    progress: Option<Progress>,
    current: Mutex<Option<Arc<Mutex<Hashes>>>>,
}

impl FileUpload {
    pub fn new(path: &Path, progress: Option<Progress>) -> Result<FileUpload, CloudError> {
        let length = std::fs::metadata(path)
            .map_err(|source| CloudError::Io { action: "read", path: path.to_path_buf(), source })?
            .len();
        Ok(FileUpload { path: path.to_path_buf(), length, progress, current: Mutex::new(None) })
    }

    pub fn length(&self) -> u64 {
        self.length
    }

    /// The digest of what the last attempt sent; an error if it did not send the whole file.
    pub fn digest(&self) -> Result<TransferDigest, CloudError> {
        let hashes = self.current.lock().ok().and_then(|c| c.clone()).and_then(|h| h.lock().ok().map(|h| h.clone()));
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
        let hashes = Arc::new(Mutex::new(Hashes::default()));
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
) -> Result<TransferDigest, CopyError>
where
    S: Stream<Item = Result<bytes::Bytes, CloudError>> + Send,
    W: AsyncWrite + Unpin,
{
    let mut hashes = Hashes::default();
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CopyError::Source)?;
        hashes.update(&chunk);
        writer.write_all(&chunk).await.map_err(CopyError::Write)?;
        if let Some(progress) = progress {
            progress(hashes.bytes, total.unwrap_or(hashes.bytes));
        }
    }
    writer.flush().await.map_err(CopyError::Write)?;
    Ok(hashes.finish())
}

/// Which side of [`copy_hashed`] failed.
#[derive(Debug)]
pub enum CopyError {
    Source(CloudError),
    Write(std::io::Error),
}
