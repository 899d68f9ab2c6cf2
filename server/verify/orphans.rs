//! The second pass: blobs no index row points at. A crash between a file's fsync and its
//! index commit leaves one, but so, for a moment, does every instance being stored right now:
//! only blobs older than the grace period count, and each is looked up in the index again
//! before it is removed. The store is listed a page at a time and each page looked up in one
//! statement, so memory holds one page, not every key of the archive.

use std::collections::HashSet;
use std::time::SystemTime;

use futures::StreamExt;

use super::progress::Progress;
use super::{Problem, Report};
use crate::index::{Index, IndexError};
use crate::storage::BlobStore;

/// Lists the store and reports the orphans older than `cutoff`. A listing that fails leaves
/// the pass incomplete (said in the report), not the run failed: the rows were checked.
pub(super) async fn find(
    index: &Index,
    blobs: &dyn BlobStore,
    cutoff: SystemTime,
    report: &mut Report,
) -> Result<(), IndexError> {
    let mut progress = Progress::new("blobs", "listed", None);
    let mut pages = blobs.list();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                report
                    .incomplete
                    .push(format!("listing the blob store failed: {e}"));
                break;
            }
        };
        progress.advance(page.len() as u64);
        report.blobs_listed += page.len() as u64;
        let keys: Vec<String> = page.iter().map(|b| b.key.clone()).collect();
        let unreferenced: HashSet<String> =
            index.unreferenced_blobs(&keys).await?.into_iter().collect();
        if unreferenced.is_empty() {
            continue;
        }
        for blob in page {
            if !unreferenced.contains(&blob.key) {
                continue;
            }
            if blob.modified <= cutoff {
                report.add(Problem::Orphan { blob });
            } else {
                report.young_blobs += 1;
            }
        }
    }
    progress.finish();
    Ok(())
}
