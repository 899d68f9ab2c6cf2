//! `POST /instances`: a part-10 file or a ZIP of them, through the same ingest pipeline as
//! C-STORE, answered as Orthanc answers.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures::TryStreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::StreamReader;

use super::{ApiError, AppState};
use crate::index::{Level, StoreOutcome};
use crate::ingest::upload::{Kind, sniff};
use crate::ingest::{IngestError, Received};

pub async fn upload(
    state: AppState,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let max_size = state.settings.max_upload_mib * 1024 * 1024;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_size) {
        return Err(too_large(max_size));
    }
    let mut reader = StreamReader::new(body.into_data_stream().map_err(body_error));
    let mut head = Vec::with_capacity(132);
    (&mut reader)
        .take(132)
        .read_to_end(&mut head)
        .await
        .map_err(|e| ApiError::body_read(&e))?;
    match sniff(&head) {
        Kind::Part10 => {
            let received = state
                .ingest
                .ingest_part10(&head, reader, max_size)
                .await
                .map_err(|e| ingest_error(e, max_size))?;
            tracing::info!(
                id = received.ids.instance,
                status = status(&received),
                "uploaded"
            );
            Ok(Json(received_json(&received)))
        }
        Kind::Zip => {
            // A ZIP's directory is at its end: it must be whole on disk before it is read.
            let spooled = tempfile::Builder::new()
                .prefix("upload-")
                .suffix(".zip")
                .tempfile_in(state.ingest.spool_dir())
                .map_err(ApiError::internal)?;
            let (file, path) = spooled.into_parts();
            let mut file = tokio::fs::File::from_std(file);
            file.write_all(&head).await.map_err(ApiError::internal)?;
            let copied = tokio::io::copy(&mut (&mut reader).take(max_size + 1), &mut file)
                .await
                .map_err(|e| ApiError::body_read(&e))?;
            if copied + head.len() as u64 > max_size {
                return Err(too_large(max_size));
            }
            file.flush().await.map_err(ApiError::internal)?;
            drop(file);
            let outcomes = state.ingest.ingest_zip(&path, max_size).await;
            let stored = outcomes.iter().filter(|o| o.result.is_ok()).count();
            tracing::info!(files = outcomes.len(), stored, "uploaded a ZIP");
            Ok(Json(Value::Array(
                outcomes
                    .iter()
                    .map(|outcome| match &outcome.result {
                        Ok(received) => received_json(received),
                        Err(e) => json!({
                            "Name": outcome.name,
                            "Status": "Failure",
                            "Message": e.to_string(),
                        }),
                    })
                    .collect(),
            )))
        }
        Kind::Unknown => Err(ApiError::bad_request(
            "the body is neither a DICOM part-10 file nor a ZIP",
        )),
    }
}

fn status(received: &Received) -> &'static str {
    match received.outcome {
        StoreOutcome::AlreadyStored => "AlreadyStored",
        StoreOutcome::Stored | StoreOutcome::Replaced { .. } => "Success",
    }
}

fn received_json(received: &Received) -> Value {
    let ids = &received.ids;
    json!({
        "ID": ids.instance,
        "ParentPatient": ids.patient,
        "ParentStudy": ids.study,
        "ParentSeries": ids.series,
        "Path": Level::Instance.path(&ids.instance),
        "Status": status(received),
    })
}

fn too_large(max_size: u64) -> ApiError {
    ApiError::payload_too_large(format!(
        "the upload is larger than the {} MiB limit (max_upload_mib)",
        max_size / (1024 * 1024)
    ))
}

/// A body error as I/O: `TimedOut` when the body timeout (a layer of the router) fired.
fn body_error(error: axum::Error) -> std::io::Error {
    let inner = error.into_inner();
    if inner.is::<tower_http::timeout::TimeoutError>() {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request body stopped arriving",
        )
    } else {
        std::io::Error::other(inner)
    }
}

/// The sender's faults are 4xx with the reason; ours are 5xx with the cause logged.
fn ingest_error(error: IngestError, max_size: u64) -> ApiError {
    match error {
        IngestError::Invalid(e) => ApiError::bad_request(format!("not a valid DICOM file: {e}")),
        IngestError::TooLarge(_) => too_large(max_size),
        IngestError::Upload(e) => ApiError::body_read(&e),
        IngestError::Index(e) => ApiError::index(e),
        IngestError::Storage(e) => ApiError::unavailable("blob store", e),
        IngestError::Spool(e) => ApiError::internal(e),
    }
}
