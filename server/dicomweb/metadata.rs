//! WADO-RS metadata of a study, a series or an instance: the DICOM JSON kept in the index at
//! ingest, a page of instances at a time into the response, so that no blob is opened and
//! memory does not grow with the study. An instance stored before the JSON was kept has it
//! read from its file once, then kept.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{DICOM_JSON, base_url, content_type, json, resource_url};
use crate::http::{ApiError, AppState};
use crate::index::{Index, UidInstance, UidPath};
use crate::storage::BlobStore;

/// Instances read from the index per statement.
const PAGE: u32 = 500;

/// `GET …/metadata`.
pub async fn metadata(
    state: AppState,
    path: UidPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let first = state
        .index
        .instances_by_uid(&path, "", PAGE, true)
        .await
        .map_err(ApiError::index)?;
    if first.is_empty() {
        return Err(ApiError::not_found("no such study, series or instance"));
    }
    let pages = Pages {
        index: state.index.clone(),
        blobs: state.blobs.clone(),
        spool: state.settings.spool_dir(),
        path,
        base: base_url(&state, &headers),
        page: Some(first),
        opened: false,
    };
    let body = futures::stream::unfold(pages, |mut pages| async move {
        let chunk = pages.next().await?;
        Some((chunk, pages))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type(DICOM_JSON))],
        Body::from_stream(body),
    )
        .into_response())
}

/// The response body being written: `[`, the instances a page at a time, `]`.
struct Pages {
    index: Index,
    blobs: Arc<dyn BlobStore>,
    spool: PathBuf,
    path: UidPath,
    base: String,
    /// The page to write next; `None` once the last has been written.
    page: Option<Vec<UidInstance>>,
    opened: bool,
}

impl Pages {
    /// The next piece of the body, or `None` after the closing bracket. An error once the body
    /// has started can only end the response early (its status is sent): it is logged.
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let page = self.page.take()?;
        let mut text = String::with_capacity(page.len() * 4096 + 2);
        for instance in &page {
            // `[` before the first instance of the body, `,` before every other.
            text.push(if std::mem::replace(&mut self.opened, true) {
                ','
            } else {
                '['
            });
            let stored = match &instance.metadata {
                Some(stored) => Cow::Borrowed(stored.as_str()),
                None => match self.read_from_file(instance).await {
                    Ok(stored) => Cow::Owned(stored),
                    Err(e) => {
                        tracing::error!(instance = %instance.id, error = %e, "cannot read an instance's metadata");
                        return Some(Err(std::io::Error::other(e)));
                    }
                },
            };
            let url = resource_url(
                &self.base,
                &instance.study_uid,
                Some(&instance.series_uid),
                Some(&instance.sop_instance_uid),
            );
            text.push_str(&json::absolute(&stored, &url));
        }
        if page.len() == PAGE as usize {
            let last = &page[page.len() - 1].id;
            match self
                .index
                .instances_by_uid(&self.path, last, PAGE, true)
                .await
            {
                Ok(next) if !next.is_empty() => self.page = Some(next),
                Ok(_) => text.push(']'),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the next page of metadata");
                    return Some(Err(std::io::Error::other(e)));
                }
            }
        } else {
            text.push(']');
        }
        Some(Ok(Bytes::from(text)))
    }

    async fn read_from_file(&self, instance: &UidInstance) -> anyhow::Result<String> {
        fill(
            &self.index,
            &*self.blobs,
            &self.spool,
            &instance.id,
            &instance.blob_key,
        )
        .await
    }
}

/// The DICOM JSON of an instance stored before it was kept: read from its file (spooled to a
/// temporary file, as ingest reads it), then kept for the next time.
pub async fn fill(
    index: &Index,
    blobs: &dyn BlobStore,
    spool: &Path,
    id: &str,
    blob_key: &str,
) -> anyhow::Result<String> {
    let (mut reader, _) = blobs.get(blob_key, None).await?;
    let file = tempfile::NamedTempFile::new_in(spool)?;
    let mut out = tokio::fs::File::create(file.path()).await?;
    tokio::io::copy(&mut reader, &mut out).await?;
    drop(out);
    let path = file.path().to_path_buf();
    let inspected =
        tokio::task::spawn_blocking(move || crate::ingest::inspect::inspect(&path, None)).await??;
    index.fill_metadata(id, &inspected.metadata).await?;
    Ok(inspected.metadata)
}

/// Fills in the DICOM JSON of every instance stored before it was kept (`orthweb migrate`),
/// with progress; returns how many were filled and how many could not be (logged).
pub async fn fill_all(
    index: &Index,
    blobs: &dyn BlobStore,
    spool: &Path,
) -> anyhow::Result<(u64, u64)> {
    let total = index.count_without_metadata().await?;
    if total == 0 {
        return Ok((0, 0));
    }
    let mut progress = crate::verify::progress::Progress::of(
        "migrate",
        "instances",
        "given metadata",
        Some(total),
    );
    let (mut filled, mut failed) = (0, 0);
    let mut after = String::new();
    loop {
        let page = index.instances_without_metadata(&after, PAGE).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = last.clone();
        for (id, blob_key) in &page {
            match fill(index, blobs, spool, id, blob_key).await {
                Ok(_) => filled += 1,
                Err(e) => {
                    failed += 1;
                    tracing::warn!(instance = %id, error = %e, "cannot read an instance's metadata from its file");
                }
            }
            progress.advance(1);
        }
    }
    progress.finish();
    Ok((filled, failed))
}
