//! The HTTP API: Orthanc's REST routes where Orthanc users expect them, and health checks.

mod archive;
mod error;
mod files;
mod find;
mod resources;
mod system;
mod upload;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};

pub use error::ApiError;
pub use files::{TagFormat, dataset_json};

use crate::config::Settings;
use crate::index::{Index, Level};
use crate::ingest::Ingest;
use crate::storage::BlobStore;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub index: Index,
    pub blobs: Arc<dyn BlobStore>,
    /// The pipeline uploads go through (the same as C-STORE's).
    pub ingest: Arc<Ingest>,
    /// The DICOM port actually bound (differs from the setting when it asked for port 0).
    pub dicom_port: u16,
    pub http_port: u16,
}

type St = State<AppState>;

/// Query arguments, leniently: a malformed query string never fails a request by itself.
fn args(query: RawQuery) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.0.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A JSON body, whatever its content type (Orthanc's clients often send none).
fn json_body(body: &Bytes) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/system", get(system::system))
        .route("/statistics", get(system::statistics))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route(
            "/tools/find",
            post(|State(s): St, body: Bytes| async move { find::find(s, json_body(&body)?).await }),
        )
        .route(
            "/tools/lookup",
            post(|State(s): St, body: String| find::lookup(s, body)),
        )
        .route(
            "/changes",
            get(|State(s): St, q: RawQuery| find::changes(s, args(q))),
        )
        .route(
            "/instances",
            post(|State(s): St, headers: HeaderMap, body: axum::body::Body| {
                upload::upload(s, headers, body)
            }),
        )
        .route(
            "/instances/{id}/file",
            get(
                |State(s): St, Path(id): Path<String>, headers: HeaderMap, q: RawQuery| {
                    files::file(s, id, headers, args(q))
                },
            ),
        )
        .route(
            "/instances/{id}/tags",
            get(|State(s): St, Path(id): Path<String>, q: RawQuery| {
                files::tags(s, id, TagFormat::Full, args(q))
            }),
        )
        .route(
            "/instances/{id}/simplified-tags",
            get(|State(s): St, Path(id): Path<String>, q: RawQuery| {
                files::tags(s, id, TagFormat::Simplified, args(q))
            }),
        );
    for level in Level::ALL {
        app = resource_routes(app, level);
    }
    app.fallback(error::not_found)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// `/{level}`, `/{level}/{id}` and its sub-routes, for one level.
fn resource_routes(mut app: Router<AppState>, level: Level) -> Router<AppState> {
    let base = format!("/{}", level.plural());
    app = app
        .route(
            &base,
            get(move |State(s): St, q: RawQuery| resources::list(s, level, args(q))),
        )
        .route(
            &format!("{base}/{{id}}"),
            get(move |State(s): St, Path(id): Path<String>| resources::get(s, level, id)).delete(
                move |State(s): St, Path(id): Path<String>| resources::delete(s, level, id),
            ),
        )
        .route(
            &format!("{base}/{{id}}/statistics"),
            get(move |State(s): St, Path(id): Path<String>| resources::statistics(s, level, id)),
        );
    if level != Level::Instance {
        app = app.route(
            &format!("{base}/{{id}}/archive"),
            get(move |State(s): St, Path(id): Path<String>| archive::archive(s, level, id)),
        );
    }
    for below in Level::ALL.into_iter().filter(|l| *l > level) {
        app = app.route(
            &format!("{base}/{{id}}/{}", below.plural()),
            get(move |State(s): St, Path(id): Path<String>, q: RawQuery| {
                resources::descendants(s, level, below, id, args(q))
            }),
        );
    }
    for above in level.ancestors() {
        app = app.route(
            &format!("{base}/{{id}}/{}", above.name().to_lowercase()),
            get(move |State(s): St, Path(id): Path<String>| {
                resources::ancestor(s, level, above, id)
            }),
        );
    }
    app
}
