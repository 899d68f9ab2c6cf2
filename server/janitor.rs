//! Removing blobs the index no longer points at. Deletions and replacements queue them in the
//! index (`blob_deletions`) in the same transaction that drops the reference; they are removed
//! right after, and whatever could not be (a crash, an unreachable bucket) is retried here
//! periodically (`blob_sweep_secs`). Several servers may sweep at once: removing a blob twice is harmless.

use std::sync::Arc;
use std::time::Duration;

use crate::index::Index;
use crate::storage::BlobStore;

/// Blobs taken from the queue per round.
const SWEEP_BATCH: u32 = 500;

/// Removes `keys` from the blob store and from the queue; failures stay queued and are logged.
pub async fn remove_blobs(index: &Index, blobs: &dyn BlobStore, keys: &[String]) -> usize {
    let mut removed = Vec::with_capacity(keys.len());
    for key in keys {
        match blobs.delete(key).await {
            Ok(()) => removed.push(key.clone()),
            Err(e) => {
                tracing::warn!(blob = key, error = %e, "could not remove a blob; will retry");
            }
        }
    }
    if let Err(e) = index.blobs_deleted(&removed).await {
        // Harmless: the next sweep removes them again (deleting a missing blob succeeds).
        tracing::warn!(blobs = removed.len(), error = %e, "blobs removed but still queued");
        return 0;
    }
    removed.len()
}

/// One pass over the queue. Returns how many blobs were removed.
pub async fn sweep(index: &Index, blobs: &dyn BlobStore) -> usize {
    match index.pending_blob_deletions(SWEEP_BATCH).await {
        Ok(keys) if keys.is_empty() => 0,
        Ok(keys) => {
            let removed = remove_blobs(index, blobs, &keys).await;
            tracing::info!(removed, queued = keys.len(), "swept deleted blobs");
            removed
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the blob deletion queue");
            0
        }
    }
}

/// Sweeps now and then every `every`, for as long as the server runs.
pub fn spawn(index: Index, blobs: Arc<dyn BlobStore>, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            sweep(&index, blobs.as_ref()).await;
        }
    });
}
