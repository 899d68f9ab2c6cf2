//! `/system`, `/statistics` and the health checks, shaped as Orthanc's where Orthanc has them.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub async fn system(State(state): State<AppState>) -> Json<Value> {
    let settings = &state.settings;
    Json(json!({
        "Name": "Orthweb",
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": 31,
        "DicomAet": settings.aet,
        "DicomPort": state.dicom_port,
        "HttpPort": state.http_port,
        "DatabaseBackendPlugin": null,
        "StorageAreaPlugin": null,
        "DatabaseBackend": state.index.backend().name(),
        "StorageArea": state.blobs.describe(),
        "CheckRevisions": false,
        "HasLabels": false,
        "IsHttpServerSecure": settings.https,
        "OverwriteInstances": settings.overwrite == crate::config::OverwritePolicy::Always,
        "Capabilities": { "HasExtendedFind": true, "HasExtendedChanges": false },
        // Where the OHIF viewer is served, when it is (`ohif_dir`).
        "OhifViewer": (!settings.ohif_dir.is_empty()).then_some("/ohif/"),
    }))
}

pub async fn statistics(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let stats = state
        .index
        .statistics()
        .await
        .map_err(|e| ApiError::unavailable("index", e))?;
    let mb = stats.total_size / (1024 * 1024);
    // Orthanc gives sizes as strings (they may exceed what JSON numbers hold exactly).
    Ok(Json(json!({
        "CountPatients": stats.patients,
        "CountStudies": stats.studies,
        "CountSeries": stats.series,
        "CountInstances": stats.instances,
        "TotalDiskSize": stats.total_size.to_string(),
        "TotalDiskSizeMB": mb,
        "TotalUncompressedSize": stats.total_size.to_string(),
        "TotalUncompressedSizeMB": mb,
    })))
}

/// Liveness: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "Status": "ok" }))
}

/// Readiness: the index and the blob store both answer.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .index
        .ping()
        .await
        .map_err(|e| ApiError::unavailable("index", e))?;
    state
        .blobs
        .ping()
        .await
        .map_err(|e| ApiError::unavailable("blob store", e))?;
    Ok(Json(json!({ "Status": "ready" })))
}
