//! The blob store: where each instance's part-10 file is kept.
//!
//! One contract, two implementations chosen once at start-up by URL scheme: a local folder
//! (`file:///dir`) and S3 (`s3://bucket/prefix`).
//!
//! Blobs live flat under the store's root; `quarantine/` beside them holds blobs taken out of
//! the archive by `orthweb verify --repair` (corrupted files, kept for an admin), which
//! listings leave out.

mod cache;
mod folder;
mod s3;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::AsyncRead;

pub use cache::CachedStore;
pub use folder::FolderStore;
pub use s3::{S3Options, S3Store};

/// A stream over a stored blob.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// A blob's bytes as chunks, ready to be a response body.
pub type BlobStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Bytes per chunk when a blob is streamed: memory per download is bounded by this whatever the
/// file's size, and a single-frame CT or MR instance (512×512×16 bits and its header, just over
/// 512 KiB) is one chunk, so one blocking-pool read on the folder store.
pub const STREAM_CHUNK: usize = 1024 * 1024;

/// One blob as a listing shows it.
#[derive(Debug, Clone)]
pub struct ListedBlob {
    pub key: String,
    pub size: u64,
    /// When it was last written (S3: `LastModified`; for a multipart upload, when it began).
    pub modified: SystemTime,
}

/// A listing, one page at a time.
pub type BlobPages<'a> = BoxStream<'a, Result<Vec<ListedBlob>, StorageError>>;

/// Where quarantined blobs go, under the store's root.
pub const QUARANTINE: &str = "quarantine";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unsupported storage URL {0:?}: use file:///DIR or s3://BUCKET/PREFIX")]
    UnsupportedUrl(String),
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("blob store I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("S3 request failed: {0}")]
    S3(String),
}

/// The contract every blob store fulfils.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Moves a finished local file to where `key` will live, without making it durable yet,
    /// and returns its new path; for stores on the local file system, which can then make it
    /// durable (`put_file` with that path) while it is still being read. Other stores return
    /// `None` and take the file in `put_file`. A placed file not yet made durable is not a
    /// stored blob: nothing points at it until the index commits, and it is deleted like one.
    async fn place(&self, _key: &str, _local: &Path) -> Result<Option<PathBuf>, StorageError> {
        Ok(None)
    }
    /// Takes the finished local file at `local` and stores it under `key`. When this returns
    /// `Ok`, the blob is durable (fsynced, or the S3 PUT completed). A store may move the local
    /// file into place; whatever is left at `local` is the caller's to remove (the spool's
    /// temporary path does it when dropped).
    async fn put_file(&self, key: &str, local: &Path, size: u64) -> Result<(), StorageError>;
    /// Stores a file held in memory (`pieces`, in order) under `key`, durable when this
    /// returns `Ok` as with `put_file`. For instances small enough never to have been spooled:
    /// a folder store writes them straight where they belong.
    async fn put_pieces(&self, key: &str, pieces: Arc<Vec<Vec<u8>>>) -> Result<(), StorageError>;
    /// Opens a stored blob for reading, with its size; with `range`, only those bytes (the
    /// caller checks the range against the size it knows from the index).
    async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(BlobReader, u64), StorageError>;
    /// Opens a stored blob as a stream of chunks for a response, with the length it yields
    /// (`range` as for `get`). Stores override it to hand over chunks without an extra copy or
    /// hop: the default reads `get` in `STREAM_CHUNK` pieces.
    async fn stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(BlobStream, u64), StorageError> {
        let (reader, length) = self.get(key, range).await?;
        let chunks = tokio_util::io::ReaderStream::with_capacity(reader, STREAM_CHUNK);
        Ok((Box::pin(chunks), length))
    }
    /// Opens a whole blob as the store holds it, for an integrity check that hashes every
    /// byte itself: unlike `get`, S3's own checksum is not checked on the way, since a mismatch
    /// there would end the stream before the caller's hash has seen it all.
    async fn get_unverified(&self, key: &str) -> Result<(BlobReader, u64), StorageError> {
        self.get(key, None).await
    }
    /// Removes a blob; removing a missing blob is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Lists every blob (quarantined ones left out), a page at a time: one fan-out folder, or
    /// one ListObjectsV2 answer, so that memory holds one page whatever the store's size.
    fn list(&self) -> BlobPages<'_>;
    /// Moves a blob out of the archive to `quarantine/<key>`, where listings, readers and
    /// the janitor never look, and where it stays for an admin to examine. A missing blob is
    /// `NotFound`.
    async fn quarantine(&self, key: &str) -> Result<(), StorageError>;
    /// Checks that the store answers (for readiness probes and start-up).
    async fn ping(&self) -> Result<(), StorageError>;
    /// A short description for logs and `/system`, without secrets.
    fn describe(&self) -> String;
}

/// Opens the store named by `url`.
pub async fn open(url: &str, s3: S3Options) -> Result<Arc<dyn BlobStore>, StorageError> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Arc::new(FolderStore::open(Path::new(path)).await?));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::UnsupportedUrl(url.into()));
        }
        return Ok(Arc::new(S3Store::connect(bucket, prefix, s3).await?));
    }
    Err(StorageError::UnsupportedUrl(url.into()))
}

/// Writes every piece, in as few system calls as the kernel takes.
pub(crate) fn write_all_vectored(
    file: &mut std::fs::File,
    pieces: &[Vec<u8>],
) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
