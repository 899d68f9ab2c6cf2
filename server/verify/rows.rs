//! The first pass: every index row against its blob — there, of the size the row says, with
//! the SHA-256 the row says — a bounded number of blobs at a time, each hashed as it streams.
//! Rows are read a page at a time by ID, so memory holds one page and the blobs in flight.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::progress::Progress;
use super::{Problem, Report};
use crate::index::{Index, IndexError, IndexedFile};
use crate::storage::{BlobStore, StorageError};

/// Rows read per page.
const PAGE: u32 = 500;
/// Bytes read at a time from a blob.
const CHUNK: usize = 256 * 1024;
/// Before a blob that could not be read is read again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a blob turned out to be.
#[derive(Debug)]
enum Verdict {
    Ok,
    Missing,
    Size(u64),
    Corrupt(String),
    Unreadable(String),
    /// The row changed or went while it was checked (a live server deleted or replaced the
    /// instance): nothing to say about it.
    Changed,
}

/// Checks every row; what is wrong goes into `report`.
pub(super) async fn check(
    index: &Index,
    blobs: &Arc<dyn BlobStore>,
    jobs: usize,
    report: &mut Report,
) -> Result<(), IndexError> {
    let total = index.statistics().await?.instances.max(0) as u64;
    let mut progress = Progress::new("rows", "checked", Some(total));
    let files = futures::stream::try_unfold(Some(String::new()), |after| async move {
        let Some(after) = after else {
            return Ok(None);
        };
        let page = index.indexed_files(&after, PAGE).await?;
        // A short page is the last one.
        let next = match page.last() {
            Some(last) if page.len() == PAGE as usize => Some(last.id.clone()),
            _ => None,
        };
        Ok::<_, IndexError>(Some((
            futures::stream::iter(page).map(Ok::<_, IndexError>),
            next,
        )))
    })
    .try_flatten();
    // Each blob in a task of its own, so that hashing runs on every core.
    let checked = files
        .map_ok(|file| {
            let (index, blobs) = (index.clone(), blobs.clone());
            let task = tokio::spawn(async move {
                let verdict = confirmed(&index, blobs.as_ref(), &file).await;
                (file, verdict)
            });
            async move {
                // A panic in a check is a bug: it ends the run as it would have here.
                Ok(task
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())))
            }
        })
        .try_buffer_unordered(jobs.max(1));
    let mut checked = std::pin::pin!(checked);
    while let Some(result) = checked.next().await {
        let (file, verdict) = result?;
        progress.advance(1);
        report.rows_checked += 1;
        match verdict {
            Verdict::Ok => report.rows_ok += 1,
            Verdict::Changed => report.rows_changed += 1,
            Verdict::Missing => report.add(Problem::Missing { file }),
            Verdict::Size(actual) => report.add(Problem::Size { file, actual }),
            Verdict::Corrupt(actual) => report.add(Problem::Corrupt { file, actual }),
            Verdict::Unreadable(error) => report.add(Problem::Unreadable { file, error }),
        }
    }
    progress.finish();
    Ok(())
}

/// The verdict on `file`'s blob, confirmed: a blob that cannot be read is tried again, and a
/// problem counts only if the row still points at the blob afterwards, since a live server
/// may have deleted or replaced the instance (rows go first, their blobs after) meanwhile.
async fn confirmed(index: &Index, blobs: &dyn BlobStore, file: &IndexedFile) -> Verdict {
    let mut verdict = examine(blobs, file).await;
    if matches!(verdict, Verdict::Unreadable(_)) {
        tokio::time::sleep(RETRY_AFTER).await;
        verdict = examine(blobs, file).await;
    }
    if matches!(verdict, Verdict::Ok) {
        return verdict;
    }
    match index.indexed_file(&file.id).await {
        Ok(Some(now)) if now.blob_key == file.blob_key => verdict,
        Ok(_) => Verdict::Changed,
        Err(e) => Verdict::Unreadable(format!("{verdict:?}, and the index could not confirm: {e}")),
    }
}

/// Reads the blob through and compares it with the row.
async fn examine(blobs: &dyn BlobStore, file: &IndexedFile) -> Verdict {
    let (mut reader, size) = match blobs.get_unverified(&file.blob_key).await {
        Ok(opened) => opened,
        Err(StorageError::NotFound(_)) => return Verdict::Missing,
        Err(e) => return Verdict::Unreadable(e.to_string()),
    };
    if size != file.size {
        // Not worth reading: it cannot hash to the same.
        return Verdict::Size(size);
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut read = 0u64;
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                read += n as u64;
            }
            Err(e) => {
                return Verdict::Unreadable(format!("reading failed after {read} bytes: {e}"));
            }
        }
    }
    if read != file.size {
        return Verdict::Size(read);
    }
    let actual = hex::encode(hasher.finalize());
    if actual.eq_ignore_ascii_case(&file.sha256) {
        Verdict::Ok
    } else {
        Verdict::Corrupt(actual)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::path::{Path, PathBuf};

    use async_trait::async_trait;

    use super::*;
    use crate::config::OverwritePolicy;
    use crate::index::{Level, test_instance};
    use crate::storage::{BlobPages, BlobReader};

    /// A store that has no blob at all. With `deletes`, reading one first deletes that
    /// instance, as a live server may between verify's reading the row and the blob.
    struct Empty {
        index: Index,
        deletes: Option<String>,
    }

    #[async_trait]
    impl BlobStore for Empty {
        async fn put_file(&self, _: &str, _: &Path, _: u64) -> Result<(), StorageError> {
            unreachable!("verify stores nothing")
        }
        async fn put_pieces(
            &self,
            _: &str,
            _: std::sync::Arc<Vec<Vec<u8>>>,
        ) -> Result<(), StorageError> {
            unreachable!("verify stores nothing")
        }
        async fn get(
            &self,
            key: &str,
            _: Option<Range<u64>>,
        ) -> Result<(BlobReader, u64), StorageError> {
            if let Some(id) = &self.deletes {
                self.index
                    .delete_resource(Level::Instance, id, "20260101T000000")
                    .await
                    .unwrap();
            }
            Err(StorageError::NotFound(key.into()))
        }
        async fn delete(&self, _: &str) -> Result<(), StorageError> {
            unreachable!("checking removes nothing")
        }
        fn list(&self) -> BlobPages<'_> {
            unreachable!("the rows pass lists nothing")
        }
        async fn quarantine(&self, _: &str) -> Result<(), StorageError> {
            unreachable!("checking moves nothing")
        }
        async fn ping(&self) -> Result<(), StorageError> {
            Ok(())
        }
        fn describe(&self) -> String {
            "empty".into()
        }
    }

    async fn index_with_one(dir: &Path) -> (Index, String) {
        let url = format!("sqlite://{}", PathBuf::from(dir).join("i.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let new = test_instance("P", "1.2", "1.2.3", "1.2.3.4", "20260101T000000");
        let id = new.ids.instance.clone();
        index
            .store_instance(new, OverwritePolicy::Never)
            .await
            .unwrap();
        (index, id)
    }

    #[tokio::test]
    async fn a_missing_blob_counts_only_while_its_row_is_still_there() {
        let dir = tempfile::tempdir().unwrap();
        let (index, id) = index_with_one(dir.path()).await;
        let missing: Arc<dyn BlobStore> = Arc::new(Empty {
            index: index.clone(),
            deletes: None,
        });
        let mut report = Report::default();
        check(&index, &missing, 4, &mut report).await.unwrap();
        assert_eq!(report.count("missing"), 1);
        assert!(matches!(&report.held[0].problem, Problem::Missing { file } if file.id == id));

        let deleted_meanwhile: Arc<dyn BlobStore> = Arc::new(Empty {
            index: index.clone(),
            deletes: Some(id),
        });
        let mut report = Report::default();
        check(&index, &deleted_meanwhile, 4, &mut report)
            .await
            .unwrap();
        assert_eq!((report.rows_checked, report.rows_changed), (1, 1));
        assert_eq!(report.problems(), 0, "{}", report.render());
    }
}
