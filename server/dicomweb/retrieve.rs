//! WADO-RS retrieval of a study, a series or an instance as `multipart/related;
//! type="application/dicom"`: each instance's stored file streamed from the blob store as one
//! part (memory flat whatever the study's size), or converted first when the client accepts
//! only a syntax it is not stored in (PS3.18 8.7.3).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::{MediaRange, content_type, multipart};
use crate::http::{ApiError, AppState};
use crate::index::{Index, UidInstance, UidPath};
use crate::storage::{BlobStore, BlobStream};

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Instances read from the index per statement.
const PAGE: u32 = 200;

/// The transfer syntaxes a client takes instances in.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Wanted {
    /// As stored (`transfer-syntax=*`, or no preference stated).
    AsStored,
    /// These, in the client's order.
    Syntaxes(Vec<String>),
}

impl Wanted {
    /// What an instance stored in `stored` is sent in, or `None` when it cannot be.
    fn syntax_for(&self, stored: &str) -> Option<String> {
        match self {
            Wanted::AsStored => Some(stored.to_string()),
            Wanted::Syntaxes(syntaxes) if syntaxes.iter().any(|s| s == stored) => {
                Some(stored.to_string())
            }
            // Converted only to the uncompressed syntaxes, which dicom-pixeldata writes.
            Wanted::Syntaxes(syntaxes) => syntaxes
                .iter()
                .find(|s| *s == EXPLICIT_LE || *s == IMPLICIT_LE)
                .cloned(),
        }
    }

    fn converts(&self) -> bool {
        matches!(self, Wanted::Syntaxes(s) if s.iter().any(|s| s == EXPLICIT_LE || s == IMPLICIT_LE))
    }
}

/// Reads the `Accept` header of a retrieval of instances (PS3.18 8.7.3.5): media ranges of
/// `multipart/related; type="application/dicom"`, whose `transfer-syntax` defaults to Explicit
/// VR Little Endian. No header, or `*/*`, sends files as stored, as Orthanc does.
pub(super) fn negotiate(headers: &HeaderMap) -> Result<Wanted, ApiError> {
    let Some(ranges) = MediaRange::accepted(headers)? else {
        return Ok(Wanted::AsStored);
    };
    let mut syntaxes = Vec::new();
    for range in ranges {
        match (range.media.as_str(), range.part_type.as_deref()) {
            ("*/*" | "multipart/*", _) => return Ok(Wanted::AsStored),
            ("multipart/related", None | Some("application/dicom")) => {
                match range.transfer_syntax.as_deref() {
                    Some("*") => return Ok(Wanted::AsStored),
                    Some(uid) => syntaxes.push(uid.to_string()),
                    None => syntaxes.push(EXPLICIT_LE.to_string()),
                }
            }
            _ => {}
        }
    }
    if syntaxes.is_empty() {
        return Err(ApiError::not_acceptable(
            "instances are sent as multipart/related; type=\"application/dicom\"",
        ));
    }
    Ok(Wanted::Syntaxes(syntaxes))
}

/// `GET /dicom-web/studies/{study}[/series/{series}[/instances/{instance}]]`.
pub async fn instances(
    state: AppState,
    path: UidPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wanted = negotiate(&headers)?;
    let first = state
        .index
        .instances_by_uid(&path, "", PAGE, false)
        .await
        .map_err(ApiError::index)?;
    if first.is_empty() {
        return Err(ApiError::not_found("no such study, series or instance"));
    }
    // A syntax no instance can be converted to is refused before the body starts.
    if !wanted.converts() {
        check_all_sendable(&state.index, &path, &wanted, &first).await?;
    }
    let boundary = multipart::boundary();
    let value = multipart::content_type(&boundary, "application/dicom", None);
    let parts = Parts {
        index: state.index.clone(),
        blobs: state.blobs.clone(),
        path,
        wanted,
        boundary,
        more: first.len() == PAGE as usize,
        page: first.into(),
        last_id: String::new(),
        sent: 0,
        current: None,
        done: false,
    };
    let body = futures::stream::unfold(parts, |mut parts| async move {
        let chunk = parts.next().await?;
        Some((chunk, parts))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type(&value))],
        Body::from_stream(body),
    )
        .into_response())
}

async fn check_all_sendable(
    index: &Index,
    path: &UidPath,
    wanted: &Wanted,
    first: &[UidInstance],
) -> Result<(), ApiError> {
    let mut page = first.to_vec();
    loop {
        if let Some(instance) = page
            .iter()
            .find(|i| wanted.syntax_for(&i.transfer_syntax_uid).is_none())
        {
            return Err(ApiError::not_acceptable(format!(
                "instance {} is stored in {}, which was not asked for, and is converted only \
                 to uncompressed syntaxes",
                instance.sop_instance_uid, instance.transfer_syntax_uid
            )));
        }
        if page.len() < PAGE as usize {
            return Ok(());
        }
        let last = page[page.len() - 1].id.clone();
        page = index
            .instances_by_uid(path, &last, PAGE, false)
            .await
            .map_err(ApiError::index)?;
    }
}

/// The response body being written, one part per instance.
struct Parts {
    index: Index,
    blobs: Arc<dyn BlobStore>,
    path: UidPath,
    wanted: Wanted,
    boundary: String,
    page: VecDeque<UidInstance>,
    /// Whether a page after this one may exist.
    more: bool,
    /// The ID of the last instance sent, where the next page starts.
    last_id: String,
    sent: usize,
    /// The part being written.
    current: Option<BlobStream>,
    done: bool,
}

impl Parts {
    /// The next piece of the body. A failure once the body has started can only cut it short
    /// (the status is sent): it is logged, and the client sees a body without its close
    /// delimiter.
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            if let Some(part) = &mut self.current {
                match part.next().await {
                    Some(chunk) => return Some(chunk),
                    None => self.current = None,
                }
            }
            if self.done {
                return None;
            }
            let Some(instance) = self.page.pop_front() else {
                if self.more {
                    if let Err(e) = self.next_page().await {
                        return Some(Err(e));
                    }
                    if !self.page.is_empty() {
                        continue;
                    }
                }
                self.done = true;
                return Some(Ok(multipart::end(&self.boundary)));
            };
            return Some(self.open(instance).await);
        }
    }

    async fn next_page(&mut self) -> std::io::Result<()> {
        let last = self.last_id.clone();
        let page = self
            .index
            .instances_by_uid(&self.path, &last, PAGE, false)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read the next page of a WADO-RS retrieval");
                std::io::Error::other(e)
            })?;
        self.more = page.len() == PAGE as usize;
        self.page = page.into();
        Ok(())
    }

    /// Opens `instance`'s part: its head now, its bytes as `current`.
    async fn open(&mut self, instance: UidInstance) -> std::io::Result<Bytes> {
        let fail = |e: &dyn std::fmt::Display| {
            tracing::error!(instance = %instance.id, error = %e, "cannot send an instance over WADO-RS");
            std::io::Error::other(e.to_string())
        };
        let stored = &instance.transfer_syntax_uid;
        let syntax = self
            .wanted
            .syntax_for(stored)
            .ok_or_else(|| fail(&"no acceptable transfer syntax"))?;
        let part = if &syntax == stored {
            let (chunks, _) = self
                .blobs
                .stream(&instance.blob_key, None)
                .await
                .map_err(|e| fail(&e))?;
            chunks
        } else {
            let (mut reader, size) = self
                .blobs
                .get(&instance.blob_key, None)
                .await
                .map_err(|e| fail(&e))?;
            let mut file = Vec::with_capacity(size as usize);
            reader.read_to_end(&mut file).await?;
            let target = syntax.clone();
            let converted =
                tokio::task::spawn_blocking(move || crate::transcode::part10(&file, &target))
                    .await
                    .map_err(|e| fail(&e))?
                    .map_err(|e| fail(&e))?;
            futures::stream::once(async move { Ok(Bytes::from(converted)) }).boxed()
        };
        let part_type = format!("application/dicom; transfer-syntax={syntax}");
        let head = multipart::part_head(&self.boundary, self.sent, &part_type, None);
        self.sent += 1;
        self.last_id = instance.id;
        self.current = Some(part);
        Ok(head)
    }
}
