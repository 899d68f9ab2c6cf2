//! `/queries`: the answers of C-FINDs asked of peers (`POST /modalities/{name}/query`), and
//! their retrieval (C-MOVE from the peer to us or another node) as a job. Kept in this
//! process's memory, as in Orthanc.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use dicom_object::InMemDicomObject;
use serde_json::{Value, json};

use super::{ApiError, AppState, TagFormat, dataset_json};
use crate::dicom::transfer::{self, Query};

fn find(state: &AppState, id: &str) -> Result<Arc<Query>, ApiError> {
    state.queries.get(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no query {id:?} on this server (queries are kept in the memory of the server that asked them)"
        ))
    })
}

/// `GET /queries`.
pub async fn list(state: AppState) -> Response {
    Json(state.queries.ids()).into_response()
}

/// `GET /queries/{id}`: what can be done with it.
pub async fn operations(state: AppState, id: String) -> Result<Response, ApiError> {
    find(&state, &id)?;
    Ok(Json(json!(["answers", "level", "modality", "retrieve"])).into_response())
}

/// `GET /queries/{id}/level` and `/modality`.
pub async fn about(state: AppState, id: String, what: &'static str) -> Result<Response, ApiError> {
    let query = find(&state, &id)?;
    let text = match what {
        "level" => query.level.name().to_string(),
        _ => query.modality.clone(),
    };
    Ok(text.into_response())
}

/// `GET /queries/{id}/answers`: their indexes, or with `expand` each one simplified.
pub async fn answers(
    state: AppState,
    id: String,
    args: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let query = find(&state, &id)?;
    let body: Value = if args.contains_key("expand") {
        query.answers.iter().map(transfer::answer_json).collect()
    } else {
        (0..query.answers.len())
            .map(|i| Value::from(i.to_string()))
            .collect()
    };
    Ok(Json(body).into_response())
}

fn answer(query: &Query, index: &str) -> Result<InMemDicomObject, ApiError> {
    index
        .parse::<usize>()
        .ok()
        .and_then(|i| query.answers.get(i))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no answer {index:?}")))
}

/// `GET /queries/{id}/answers/{n}/content`, with `simplify` as Orthanc's simplified tags.
pub async fn content(
    state: AppState,
    id: String,
    index: String,
    args: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let query = find(&state, &id)?;
    let answer = answer(&query, &index)?;
    let format = match args.contains_key("simplify") {
        true => TagFormat::Simplified,
        false => TagFormat::Full,
    };
    Ok(Json(dataset_json(&answer, format)).into_response())
}

/// `POST /queries/{id}/retrieve` (every answer) and `/answers/{n}/retrieve` (one): C-MOVE from
/// the queried peer to `TargetAet` (a string body, or `{"TargetAet": …}`; default: us).
pub async fn retrieve(
    state: AppState,
    id: String,
    index: Option<String>,
    body: Value,
) -> Result<Response, ApiError> {
    let query = find(&state, &id)?;
    let answers = match &index {
        Some(index) => vec![answer(&query, index)?],
        None => query.answers.clone(),
    };
    let target = match &body {
        Value::String(aet) => aet.clone(),
        Value::Object(fields) => fields
            .get("TargetAet")
            .and_then(Value::as_str)
            .unwrap_or(&state.settings.aet)
            .to_string(),
        _ => state.settings.aet.clone(),
    };
    let peer = state
        .modalities
        .by_name(&query.modality)
        .await
        .map_err(ApiError::index)?
        .ok_or_else(|| ApiError::not_found(format!("no modality {:?}", query.modality)))?;
    let caller = state.caller.clone();
    let level = query.level;
    let job = state.jobs.start(
        "DicomMoveScu",
        json!({"RemoteAet": peer.aet, "TargetAet": target}),
        move |job| transfer::retrieve(caller, peer, level, answers, target, job),
    );
    Ok(super::jobs::answer(job, super::jobs::asynchronous(&body)).await)
}
