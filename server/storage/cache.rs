//! Blobs recently sent, kept in memory (`blob_cache_mib`), as Orthanc keeps its storage cache:
//! a viewer or script that fetches the same instances again (a series scrolled twice, WADO-RS
//! frames after the metadata) is answered without opening a file or asking S3. Blob keys are
//! never reused and a blob's bytes never change, so an entry cannot go stale; a deleted blob
//! leaves the cache with it, and its index row is gone before that, so no request finds it.
//!
//! A blob enters when it has been streamed whole (downloads, WADO-RS, C-MOVE and C-GET sends);
//! reads by range and integrity checks leave the cache as it is. Blobs larger than a
//! sixteenth of the cache pass by, so a large multi-frame never evicts a whole series.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{BlobPages, BlobReader, BlobStore, BlobStream, StorageError};

/// Weighs an entry by its bytes.
#[derive(Clone)]
struct ByLength;

impl quick_cache::Weighter<String, Bytes> for ByLength {
    fn weight(&self, _key: &String, blob: &Bytes) -> u64 {
        blob.len().max(1) as u64
    }
}

pub struct CachedStore {
    inner: Arc<dyn BlobStore>,
    blobs: Arc<quick_cache::sync::Cache<String, Bytes, ByLength>>,
    /// The largest blob kept.
    largest: u64,
}

impl CachedStore {
    /// `inner` with up to `bytes` of recently streamed blobs in memory.
    pub fn new(inner: Arc<dyn BlobStore>, bytes: u64) -> Self {
        // A guess at the entries it will hold (single-frame CT is 512 KiB): only sizes tables.
        let items = (bytes / (512 * 1024)).max(16) as usize;
        CachedStore {
            inner,
            blobs: Arc::new(quick_cache::sync::Cache::with_weighter(
                items, bytes, ByLength,
            )),
            largest: bytes / 16,
        }
    }

    /// The cached bytes of `key` within `range`, if the blob is cached.
    fn cached(&self, key: &str, range: &Option<Range<u64>>) -> Option<Bytes> {
        let blob = self.blobs.get(key)?;
        Some(match range {
            None => blob,
            Some(range) => {
                let end = (range.end as usize).min(blob.len());
                blob.slice((range.start as usize).min(end)..end)
            }
        })
    }
}

#[async_trait]
impl BlobStore for CachedStore {
    async fn place(&self, key: &str, local: &Path) -> Result<Option<PathBuf>, StorageError> {
        self.inner.place(key, local).await
    }

    async fn put_file(&self, key: &str, local: &Path, size: u64) -> Result<(), StorageError> {
        self.inner.put_file(key, local, size).await
    }

    async fn put_pieces(&self, key: &str, pieces: Arc<Vec<Vec<u8>>>) -> Result<(), StorageError> {
        self.inner.put_pieces(key, pieces).await
    }

    async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(BlobReader, u64), StorageError> {
        match self.cached(key, &range) {
            Some(bytes) => {
                let length = bytes.len() as u64;
                Ok((Box::pin(std::io::Cursor::new(bytes)), length))
            }
            None => self.inner.get(key, range).await,
        }
    }

    async fn stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(BlobStream, u64), StorageError> {
        if let Some(bytes) = self.cached(key, &range) {
            let length = bytes.len() as u64;
            return Ok((Box::pin(futures::stream::iter([Ok(bytes)])), length));
        }
        let (chunks, length) = self.inner.stream(key, range.clone()).await?;
        if range.is_some() || length > self.largest {
            return Ok((chunks, length));
        }
        // The chunks go on to the caller as they come; a copy of each is kept (a reference
        // when the blob came as one chunk, as a cached folder read does) and the whole enters
        // the cache once the last one has gone by.
        let blobs = self.blobs.clone();
        let key = key.to_string();
        let mut kept: Vec<Bytes> = Vec::new();
        let mut seen = 0;
        let chunks = chunks.map(move |chunk| {
            if let Ok(bytes) = &chunk {
                seen += bytes.len() as u64;
                kept.push(bytes.clone());
                if seen == length {
                    let whole = match kept.len() {
                        1 => kept.pop().expect("one chunk"),
                        _ => {
                            let mut whole = BytesMut::with_capacity(length as usize);
                            kept.drain(..).for_each(|b| whole.extend_from_slice(&b));
                            whole.freeze()
                        }
                    };
                    blobs.insert(key.clone(), whole);
                }
            }
            chunk
        });
        Ok((Box::pin(chunks), length))
    }

    async fn get_unverified(&self, key: &str) -> Result<(BlobReader, u64), StorageError> {
        self.inner.get_unverified(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.blobs.remove(key);
        self.inner.delete(key).await
    }

    fn list(&self) -> BlobPages<'_> {
        self.inner.list()
    }

    async fn quarantine(&self, key: &str) -> Result<(), StorageError> {
        self.blobs.remove(key);
        self.inner.quarantine(key).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.inner.ping().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FolderStore;
    use tokio::io::AsyncReadExt;

    async fn collect(stream: BlobStream) -> Vec<u8> {
        let chunks: Vec<_> = stream.collect().await;
        chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect()
    }

    /// A folder store under a cache of `cache` bytes, with blob `key` holding `bytes`; and the
    /// blob's file, to take it away behind the cache's back.
    async fn store_with(dir: &Path, cache: u64, key: &str, bytes: &[u8]) -> (CachedStore, PathBuf) {
        let inner = FolderStore::open(&dir.join("blobs")).await.unwrap();
        let file = dir.join("f");
        std::fs::write(&file, bytes).unwrap();
        inner
            .put_file(key, &file, bytes.len() as u64)
            .await
            .unwrap();
        let path = inner.path_of(key).unwrap();
        (CachedStore::new(Arc::new(inner), cache), path)
    }

    /// A blob streamed whole is answered from memory afterwards, whole, by range and to a
    /// reader, even when its file is gone; deleting it through the store forgets it.
    #[tokio::test]
    async fn a_streamed_blob_is_served_from_memory_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (store, path) = store_with(dir.path(), 16 << 20, "k1.dcm", &bytes).await;

        // A range read does not fill the cache.
        let (part, length) = store.stream("k1.dcm", Some(10..20)).await.unwrap();
        assert_eq!((collect(part).await, length), (bytes[10..20].to_vec(), 10));
        let (whole, length) = store.stream("k1.dcm", None).await.unwrap();
        assert_eq!(length, bytes.len() as u64);
        assert_eq!(collect(whole).await, bytes);

        std::fs::remove_file(&path).unwrap();
        let (whole, _) = store.stream("k1.dcm", None).await.unwrap();
        assert_eq!(collect(whole).await, bytes);
        let (part, length) = store.stream("k1.dcm", Some(99_990..100_000)).await.unwrap();
        assert_eq!(
            (collect(part).await, length),
            (bytes[99_990..].to_vec(), 10)
        );
        let (mut reader, length) = store.get("k1.dcm", Some(5..9)).await.unwrap();
        let mut read = Vec::new();
        reader.read_to_end(&mut read).await.unwrap();
        assert_eq!((read, length), (bytes[5..9].to_vec(), 4));

        store.delete("k1.dcm").await.unwrap();
        assert!(matches!(
            store.stream("k1.dcm", None).await,
            Err(StorageError::NotFound(_))
        ));
    }

    /// A blob over a sixteenth of the cache is streamed but not kept; a blob whose stream was
    /// not read to the end is not kept either.
    #[tokio::test]
    async fn large_and_unfinished_blobs_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = vec![7u8; 70_000];
        let (store, path) = store_with(dir.path(), 1 << 20, "big.dcm", &bytes).await;
        let (whole, _) = store.stream("big.dcm", None).await.unwrap();
        assert_eq!(collect(whole).await, bytes);
        std::fs::remove_file(&path).unwrap();
        assert!(store.stream("big.dcm", None).await.is_err());

        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_with(dir.path(), 16 << 20, "cut.dcm", &bytes).await;
        let (stream, _) = store.stream("cut.dcm", Some(0..10)).await.unwrap();
        drop(stream);
        let (stream, _) = store.stream("cut.dcm", None).await.unwrap();
        drop(stream);
        std::fs::remove_file(&path).unwrap();
        assert!(store.stream("cut.dcm", None).await.is_err());
    }
}
