//! `/modalities`: the DICOM peers, as Orthanc lists and edits them. Those of the settings file
//! are read-only here; those added over REST live in the index, for every replica.

use std::collections::HashMap;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{ApiError, AppState};
use crate::dicom::Modality;
use crate::dicom::modalities::{ModalityChangeError, check_name};
use crate::dicom::scu::Outgoing;

fn change_error(error: ModalityChangeError) -> ApiError {
    match error {
        ModalityChangeError::Configured(_) => ApiError::conflict(error.to_string()),
        ModalityChangeError::Index(e) => ApiError::index(e),
    }
}

/// `GET /modalities`: the names, or with `expand` each one's configuration.
pub async fn list(state: AppState, args: HashMap<String, String>) -> Result<Response, ApiError> {
    let all = state.modalities.all().await.map_err(ApiError::index)?;
    if args.contains_key("expand") {
        let expanded: Map<String, Value> = all
            .iter()
            .map(|m| (m.name.clone(), m.to_orthanc()))
            .collect();
        return Ok(Json(expanded).into_response());
    }
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    Ok(Json(names).into_response())
}

async fn find(state: &AppState, name: &str) -> Result<Modality, ApiError> {
    state
        .modalities
        .by_name(name)
        .await
        .map_err(ApiError::index)?
        .ok_or_else(|| ApiError::not_found(format!("no modality {name:?}")))
}

/// `GET /modalities/{name}`: what can be done with it, as Orthanc lists it.
pub async fn operations(state: AppState, name: String) -> Result<Response, ApiError> {
    find(&state, &name).await?;
    Ok(Json(json!(["configuration", "echo"])).into_response())
}

/// `GET /modalities/{name}/configuration`.
pub async fn configuration(state: AppState, name: String) -> Result<Response, ApiError> {
    Ok(Json(find(&state, &name).await?.to_orthanc()).into_response())
}

/// `PUT /modalities/{name}` with Orthanc's modality JSON.
pub async fn put(state: AppState, name: String, body: Value) -> Result<Response, ApiError> {
    check_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let modality =
        Modality::from_orthanc(&name, &body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state
        .modalities
        .put(&modality)
        .await
        .map_err(change_error)?;
    tracing::info!(name, aet = %modality.aet, host = %modality.host, port = modality.port,
        "DICOM peer saved");
    Ok(Json(json!({})).into_response())
}

/// `DELETE /modalities/{name}`.
pub async fn delete(state: AppState, name: String) -> Result<Response, ApiError> {
    if !state.modalities.delete(&name).await.map_err(change_error)? {
        return Err(ApiError::not_found(format!("no modality {name:?}")));
    }
    tracing::info!(name, "DICOM peer removed");
    Ok(Json(json!({})).into_response())
}

/// `POST /modalities/{name}/echo`: a C-ECHO to the peer; 502 when it does not answer success.
pub async fn echo(state: AppState, name: String) -> Result<Response, ApiError> {
    let peer = find(&state, &name).await?;
    let failed = |e: String| {
        tracing::warn!(name, error = %e, "C-ECHO failed");
        ApiError::bad_gateway(format!("C-ECHO to {name} failed: {e}"))
    };
    let mut outgoing = Outgoing::connect(&state.caller, &peer, &[])
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = outgoing.echo().await;
    outgoing.release().await;
    match status.map_err(|e| failed(e.to_string()))? {
        0 => Ok(Json(json!({})).into_response()),
        code => Err(failed(format!("status {code:#06x}"))),
    }
}
