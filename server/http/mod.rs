//! The HTTP API. For now: `/system`, `/statistics` and the health checks.

mod error;
mod system;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use error::ApiError;

use crate::config::Settings;
use crate::index::Index;
use crate::storage::BlobStore;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub index: Index,
    pub blobs: Arc<dyn BlobStore>,
    /// The DICOM port actually bound (differs from the setting when it asked for port 0).
    pub dicom_port: u16,
    pub http_port: u16,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/system", get(system::system))
        .route("/statistics", get(system::statistics))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .fallback(error::not_found)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
