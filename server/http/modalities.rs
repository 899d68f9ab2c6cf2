//! `/modalities`: the DICOM peers, as Orthanc lists and edits them. Those of the settings file
//! are read-only here; those added over REST live in the index, for every replica.

use std::collections::HashMap;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::index::Level;

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
    Ok(Json(json!(["configuration", "echo", "query", "store"])).into_response())
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

/// The resources of a store request: Orthanc's body is an ID, a list of IDs, or
/// `{"Resources": [...], "Asynchronous": …}`.
fn resources_of(body: &Value) -> Result<Vec<String>, ApiError> {
    let list = match body {
        Value::String(id) => return Ok(vec![id.clone()]),
        Value::Array(ids) => ids,
        Value::Object(fields) => match fields.get("Resources") {
            Some(Value::Array(ids)) => ids,
            _ => return Err(ApiError::bad_request("Resources: a list of resource IDs")),
        },
        _ => return Err(ApiError::bad_request("a resource ID or a list of them")),
    };
    list.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad_request("resource IDs are strings"))
        })
        .collect()
}

/// `POST /modalities/{name}/store`: C-STORE of the instances under the given resources, as a
/// job (answered when it ends, or at once with `Asynchronous`).
pub async fn store(state: AppState, name: String, body: Value) -> Result<Response, ApiError> {
    let peer = find(&state, &name).await?;
    if !peer.reachable() {
        return Err(ApiError::bad_request(format!(
            "modality {name:?} has no host and port to send to"
        )));
    }
    let resources = resources_of(&body)?;
    if resources.is_empty() {
        return Err(ApiError::bad_request("no resources to send"));
    }
    let mut items = Vec::new();
    for id in &resources {
        let mut level = None;
        for candidate in Level::ALL {
            if state
                .index
                .resource(candidate, id)
                .await
                .map_err(ApiError::index)?
                .is_some()
            {
                level = Some(candidate);
                break;
            }
        }
        let level = level.ok_or_else(|| ApiError::not_found(format!("no resource {id:?}")))?;
        items.extend(
            state
                .index
                .retrieve_items(level, id)
                .await
                .map_err(ApiError::index)?,
        );
    }
    tracing::info!(peer = %name, resources = resources.len(), instances = items.len(), "sending to peer");
    let (caller, blobs) = (state.caller.clone(), state.blobs.clone());
    let job = state.jobs.start(
        "DicomModalityStore",
        json!({"RemoteAet": peer.aet, "ParentResources": resources}),
        move |job| crate::dicom::transfer::store(caller, blobs, peer, items, resources, job),
    );
    Ok(super::jobs::answer(job, super::jobs::asynchronous(&body)).await)
}

/// `POST /modalities/{name}/query` with `{"Level": "Study", "Query": {"PatientName": "A*"}}`:
/// a C-FIND to the peer; the answers are kept under `/queries/{id}`.
pub async fn query(state: AppState, name: String, body: Value) -> Result<Response, ApiError> {
    let peer = find(&state, &name).await?;
    let level = body
        .get("Level")
        .and_then(Value::as_str)
        .and_then(|l| {
            Level::ALL
                .into_iter()
                .find(|x| x.name().eq_ignore_ascii_case(l))
        })
        .ok_or_else(|| ApiError::bad_request("Level: Patient, Study, Series or Instance"))?;
    let keys: Vec<(String, String)> = match body.get("Query") {
        None => Vec::new(),
        Some(Value::Object(fields)) => fields
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::bad_request(format!("Query.{k}: a string"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::bad_request("Query: an object of tag → value")),
    };
    let answers = crate::dicom::transfer::query(&state.caller, &peer, level, &keys)
        .await
        .map_err(|e| match e {
            crate::dicom::transfer::QueryError::UnknownTag(_) => {
                ApiError::bad_request(e.to_string())
            }
            other => {
                tracing::warn!(peer = %name, error = %other, "C-FIND to peer failed");
                ApiError::bad_gateway(format!("C-FIND to {name} failed: {other}"))
            }
        })?;
    tracing::info!(peer = %name, level = %level, answers = answers.len(), "queried peer");
    let kept = state.queries.keep(name, level, answers);
    let path = format!("/queries/{}", kept.id);
    Ok(Json(json!({"ID": kept.id, "Path": path})).into_response())
}
