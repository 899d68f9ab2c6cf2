//! The web UI: the files of `web/`, served under `/ui/`. Release builds embed them in the
//! binary; debug builds read them from the source tree, so a page reload shows an edit.
//!
//! The files hold no patient data, so they are served without credentials: the page itself
//! asks `/auth/me` and shows the sign-in form when nobody is signed in.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::Embed;

use super::{ApiError, AppState};

#[derive(Embed)]
#[folder = "web/"]
struct Assets;

/// The page every client-side route (`/ui/studies/…`) loads; the script reads the URL.
const SHELL: &str = "index.html";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|headers: HeaderMap| async move { asset(SHELL, &headers) }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                asset(&path, &headers)
            }),
        )
}

fn asset(path: &str, headers: &HeaderMap) -> Response {
    if path
        .split('/')
        .any(|part| part.is_empty() || part.starts_with('.'))
    {
        return ApiError::not_found("no such file in the web UI").into_response();
    }
    let file = match Assets::get(path) {
        Some(file) => file,
        // A path without an extension is a page of the UI, not a file.
        None if !path.rsplit('/').next().unwrap_or("").contains('.') => match Assets::get(SHELL) {
            Some(file) => file,
            None => return ApiError::not_found("the web UI is missing").into_response(),
        },
        None => return ApiError::not_found("no such file in the web UI").into_response(),
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let etag = HeaderValue::from_str(&etag).expect("hex is a valid header value");
    // The files change with each release: browsers may keep them but must ask again.
    let cache = HeaderValue::from_static("no-cache");
    if super::not_modified(headers, etag.to_str().expect("hex")) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    let mime = HeaderValue::from_str(file.metadata.mimetype())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        file.data,
    )
        .into_response()
}
