//! `/jobs`: the long operations of this process (sending to and retrieving from peers), in
//! Orthanc's JSON. Each replica lists its own; a restart forgets them.

use std::collections::HashMap;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState};

/// `GET /jobs`: the IDs, or with `expand` each job.
pub async fn list(state: AppState, args: HashMap<String, String>) -> Response {
    let jobs = state.jobs.list();
    let body: Value = if args.contains_key("expand") {
        jobs.iter().map(|j| j.to_json()).collect()
    } else {
        jobs.iter().map(|j| Value::from(j.id.clone())).collect()
    };
    Json(body).into_response()
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no job {id:?} on this server (jobs are kept in the memory of the server that runs them)"
    ))
}

/// `GET /jobs/{id}`.
pub async fn get(state: AppState, id: String) -> Result<Response, ApiError> {
    let job = state.jobs.get(&id).ok_or_else(|| unknown(&id))?;
    Ok(Json(job.to_json()).into_response())
}

/// `POST /jobs/{id}/cancel`: the job stops before its next step.
pub async fn cancel(state: AppState, id: String) -> Result<Response, ApiError> {
    state.jobs.cancel(&id).ok_or_else(|| unknown(&id))?;
    Ok(Json(json!({})).into_response())
}

/// Answers a request that started `job`: at once with its ID (`Asynchronous`), or once it
/// ends with its content (502 with the error when it failed).
pub async fn answer(job: std::sync::Arc<crate::jobs::Job>, asynchronous: bool) -> Response {
    if asynchronous {
        let path = format!("/jobs/{}", job.id);
        return Json(json!({"ID": job.id, "Path": path})).into_response();
    }
    let state = job.finished().await;
    let shown = job.to_json();
    match state {
        crate::jobs::State::Success => Json(shown["Content"].clone()).into_response(),
        _ => ApiError::bad_gateway(
            shown["ErrorDetails"]
                .as_str()
                .unwrap_or("the job failed")
                .to_string(),
        )
        .into_response(),
    }
}

/// Orthanc's `Asynchronous` (or `Synchronous: false`) in a request body.
pub fn asynchronous(body: &Value) -> bool {
    body.get("Asynchronous").and_then(Value::as_bool) == Some(true)
        || body.get("Synchronous").and_then(Value::as_bool) == Some(false)
}
