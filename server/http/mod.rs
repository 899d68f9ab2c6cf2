//! The HTTP API: Orthanc's REST routes where Orthanc users expect them, health checks, metrics
//! and the OpenAPI document that describes them all.

mod archive;
mod auth;
mod error;
pub(crate) mod files;
pub(crate) mod find;
mod headers;
mod jobs;
mod modalities;
pub mod ohif;
mod queries;
pub(crate) mod render;
mod resources;
pub mod serve;
mod system;
mod upload;
mod web;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};

pub use error::ApiError;
pub use files::{TagFormat, dataset_json};

use crate::auth::{ClientAddr, Principal};
use crate::config::Settings;
use crate::index::{Index, Level};
use crate::ingest::Ingest;
use crate::metrics::{HttpLabels, METRICS};
use crate::render::Kind;
use crate::storage::BlobStore;

/// What every handler can reach. One `Arc`: axum clones the state for every middleware and
/// extractor of every request, and a clone of the parts was two dozen reference counts each
/// time (~1.5 % of a kept-alive download's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Services {
    pub settings: Arc<Settings>,
    pub index: Index,
    pub blobs: Arc<dyn BlobStore>,
    /// The pipeline uploads go through (the same as C-STORE's).
    pub ingest: Arc<Ingest>,
    /// The DICOM port actually bound (differs from the setting when it asked for port 0).
    pub dicom_port: u16,
    pub http_port: u16,
    /// Users, credentials, sign-in limits and the audit trail.
    pub auth: Arc<crate::auth::Auth>,
    /// The DICOM peers, the settings' and those added over REST.
    pub modalities: crate::dicom::Modalities,
    /// How we call them.
    pub caller: crate::dicom::scu::Caller,
    /// Sending to and retrieving from peers, running or done.
    pub jobs: crate::jobs::Jobs,
    /// Answers of queries asked of peers.
    pub queries: crate::dicom::transfer::Queries,
    /// Rendered frames: the cache and the limit on concurrent decodes.
    pub renderer: Arc<crate::render::Renderer>,
}

type St = State<AppState>;

/// The OpenAPI document of every route below; a test holds the two together.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Query arguments, leniently: a malformed query string never fails a request by itself.
pub(crate) fn args(query: RawQuery) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.0.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Whether `If-None-Match` names this ETag (weak comparison, RFC 9110 13.1.2: proxies that
/// compress make ETags weak).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
        })
}

/// A JSON body, whatever its content type (Orthanc's clients often send none).
pub(crate) fn json_body(
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(&body_bytes(body)?)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

/// A body that may be JSON, a bare AE title (Orthanc's retrieve takes either) or empty.
fn lenient_json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        match std::str::from_utf8(body).map(str::trim) {
            Ok(text) if !text.is_empty() => serde_json::Value::String(text.to_string()),
            _ => serde_json::Value::Null,
        }
    })
}

/// A small body (queries, UIDs), with axum's refusals (too large, unreadable) as JSON errors.
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large("the request body is too large")
        } else {
            ApiError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// The router being built, with the (method, path) of every route recorded for the OpenAPI
/// check.
pub(crate) struct Routes {
    router: Router<AppState>,
    table: Vec<(&'static str, String)>,
}

impl Routes {
    pub(crate) fn add(
        mut self,
        path: &str,
        methods: &[&'static str],
        handler: MethodRouter<AppState>,
    ) -> Self {
        for method in methods {
            self.table.push((method, path.to_string()));
        }
        self.router = self.router.route(path, handler);
        self
    }
}

pub fn router(state: AppState) -> Router {
    let https = state.settings.https;
    let router = routes()
        .router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware::layer,
        ))
        .route_layer(axum::middleware::from_fn(track))
        .merge(web::routes())
        .merge(ohif::routes(&state.settings.ohif_dir))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    let body_timeout = Duration::from_secs(state.settings.http_body_timeout_secs);
    headers::add(router, https)
        // Between two pieces of a request body, not over the whole: a slow upload is fine, one
        // that stops is cut (header and idle timeouts are the connection's, in `serve`).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(compression())
        .layer(tower::util::option_layer(cors(
            &state.settings.cors_allowed_origins,
        )))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// CORS for the origins `cors_allowed_origins` names; none by default, and then no layer at
/// all (an empty `CorsLayer` still adds `Vary: origin` to every answer). Outside
/// authentication, so that preflight requests, which carry no credentials, are answered.
/// Listed origins may send credentials; `*` may not.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_NONE_MATCH,
            header::RANGE,
            HeaderName::from_static("x-csrf-token"),
        ])
        .expose_headers([
            header::WARNING,
            header::ETAG,
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::CONTENT_LOCATION,
        ])
        .max_age(Duration::from_secs(3600));
    if origins.iter().any(|o| o == "*") {
        return Some(layer.allow_origin(AllowOrigin::any()));
    }
    let listed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    Some(
        layer
            .allow_origin(AllowOrigin::list(listed))
            .allow_credentials(true),
    )
}

/// gzip for text the client accepts it for (JSON answers, the UI's scripts and styles):
/// listings shrink ten-fold. DICOM files, pixel data, images and archives are left alone:
/// they are compressed already or too costly to compress on every download.
fn compression()
-> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{Predicate, SizeAbove};
    let textual = |_: axum::http::StatusCode,
                   _: axum::http::Version,
                   headers: &HeaderMap,
                   _: &axum::http::Extensions| {
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.starts_with("text/")
                    || t.starts_with("application/json")
                    || t.starts_with("application/javascript")
                    || t.starts_with("image/svg+xml")
            })
    };
    tower_http::compression::CompressionLayer::new()
        .gzip(true)
        .compress_when(SizeAbove::new(1024).and(textual))
}

fn routes() -> Routes {
    let mut routes = Routes {
        router: Router::new(),
        table: Vec::new(),
    }
    .add("/system", &["get"], get(system::system))
    .add("/statistics", &["get"], get(system::statistics))
    .add("/healthz", &["get"], get(system::healthz))
    .add("/readyz", &["get"], get(system::readyz))
    .add("/metrics", &["get"], get(metrics))
    .add("/openapi.json", &["get"], get(openapi))
    .add(
        "/tools/find",
        &["post"],
        post(
            |State(s): St, body: Result<Bytes, BytesRejection>| async move {
                find::find(s, json_body(body)?).await
            },
        ),
    )
    .add(
        "/tools/lookup",
        &["post"],
        post(
            |State(s): St, body: Result<Bytes, BytesRejection>| async move {
                let body = body_bytes(body)?;
                let uid = std::str::from_utf8(&body)
                    .map_err(|_| ApiError::bad_request("the body must be text"))?;
                find::lookup(s, uid.to_string()).await
            },
        ),
    )
    .add(
        "/changes",
        &["get"],
        get(|State(s): St, q: RawQuery| find::changes(s, args(q))),
    )
    .add(
        "/instances/{id}/file",
        &["get"],
        get(
            |State(s): St, Path(id): Path<String>, headers: HeaderMap, q: RawQuery| {
                files::file(s, id, headers, args(q))
            },
        ),
    )
    .add(
        "/instances/{id}/tags",
        &["get"],
        get(|State(s): St, Path(id): Path<String>, q: RawQuery| {
            files::tags(s, id, TagFormat::Full, args(q))
        }),
    )
    .add(
        "/instances/{id}/preview",
        &["get"],
        get(
            |State(s): St, Path(id): Path<String>, h: HeaderMap, q: RawQuery| {
                render::render(s, id, None, Kind::Preview, h, args(q))
            },
        ),
    )
    .add(
        "/instances/{id}/frames/{frame}/preview",
        &["get"],
        get(
            |State(s): St, Path((id, n)): Path<(String, String)>, h: HeaderMap, q: RawQuery| {
                render::render(s, id, Some(n), Kind::Preview, h, args(q))
            },
        ),
    )
    .add(
        "/instances/{id}/rendered",
        &["get"],
        get(
            |State(s): St, Path(id): Path<String>, h: HeaderMap, q: RawQuery| {
                render::render(s, id, None, Kind::Rendered, h, args(q))
            },
        ),
    )
    .add(
        "/instances/{id}/frames/{frame}/rendered",
        &["get"],
        get(
            |State(s): St, Path((id, n)): Path<(String, String)>, h: HeaderMap, q: RawQuery| {
                render::render(s, id, Some(n), Kind::Rendered, h, args(q))
            },
        ),
    )
    .add(
        "/instances/{id}/simplified-tags",
        &["get"],
        get(|State(s): St, Path(id): Path<String>, q: RawQuery| {
            files::tags(s, id, TagFormat::Simplified, args(q))
        }),
    );
    for level in Level::ALL {
        routes = resource_routes(routes, level);
    }
    crate::dicomweb::routes(modality_routes(auth_routes(routes)))
}

/// Signing in and out, users and the audit trail.
fn auth_routes(routes: Routes) -> Routes {
    routes
        .add(
            "/auth/login",
            &["post"],
            post(
                |State(s): St,
                 Extension(client): Extension<ClientAddr>,
                 body: Result<Bytes, BytesRejection>| async move {
                    match json_body(body) {
                        Ok(body) => auth::login(s, client, body).await,
                        Err(e) => e.into_response(),
                    }
                },
            ),
        )
        .add(
            "/auth/logout",
            &["post"],
            post(|State(s): St, Extension(p): Extension<Principal>| auth::logout(s, p)),
        )
        .add(
            "/auth/me",
            &["get"],
            get(|Extension(p): Extension<Principal>| auth::me(p)),
        )
        .add(
            "/users",
            &["get", "post"],
            get(|State(s): St| auth::list_users(s)).post(
                |State(s): St, body: Result<Bytes, BytesRejection>| async move {
                    auth::add_user(s, json_body(body)?).await
                },
            ),
        )
        .add(
            "/users/{name}",
            &["delete"],
            delete(|State(s): St, Path(name): Path<String>| auth::remove_user(s, name)),
        )
        .add(
            "/users/{name}/password",
            &["put"],
            put(
                |State(s): St, Path(name): Path<String>, body: Result<Bytes, BytesRejection>| async move {
                    auth::set_password(s, name, json_body(body)?).await
                },
            ),
        )
        .add(
            "/audit",
            &["get"],
            get(|State(s): St, q: RawQuery| auth::audit(s, args(q))),
        )
}

/// The DICOM peers and what is done with them.
fn modality_routes(routes: Routes) -> Routes {
    routes
        .add(
            "/modalities",
            &["get"],
            get(|State(s): St, q: RawQuery| modalities::list(s, args(q))),
        )
        .add(
            "/modalities/{name}",
            &["get", "put", "delete"],
            get(|State(s): St, Path(name): Path<String>| modalities::operations(s, name))
                .put(
                    |State(s): St,
                     Path(name): Path<String>,
                     body: Result<Bytes, BytesRejection>| async move {
                        modalities::put(s, name, json_body(body)?).await
                    },
                )
                .delete(|State(s): St, Path(name): Path<String>| modalities::delete(s, name)),
        )
        .add(
            "/modalities/{name}/echo",
            &["post"],
            post(|State(s): St, Path(name): Path<String>| modalities::echo(s, name)),
        )
        .add(
            "/modalities/{name}/store",
            &["post"],
            post(
                |State(s): St, Path(name): Path<String>, body: Result<Bytes, BytesRejection>| async move {
                    modalities::store(s, name, json_body(body)?).await
                },
            ),
        )
        .add(
            "/modalities/{name}/query",
            &["post"],
            post(
                |State(s): St, Path(name): Path<String>, body: Result<Bytes, BytesRejection>| async move {
                    modalities::query(s, name, json_body(body)?).await
                },
            ),
        )
        .add("/queries", &["get"], get(|State(s): St| queries::list(s)))
        .add(
            "/queries/{id}",
            &["get"],
            get(|State(s): St, Path(id): Path<String>| queries::operations(s, id)),
        )
        .add(
            "/queries/{id}/level",
            &["get"],
            get(|State(s): St, Path(id): Path<String>| queries::about(s, id, "level")),
        )
        .add(
            "/queries/{id}/modality",
            &["get"],
            get(|State(s): St, Path(id): Path<String>| queries::about(s, id, "modality")),
        )
        .add(
            "/queries/{id}/answers",
            &["get"],
            get(|State(s): St, Path(id): Path<String>, q: RawQuery| {
                queries::answers(s, id, args(q))
            }),
        )
        .add(
            "/queries/{id}/answers/{index}/content",
            &["get"],
            get(
                |State(s): St, Path((id, index)): Path<(String, String)>, q: RawQuery| {
                    queries::content(s, id, index, args(q))
                },
            ),
        )
        .add(
            "/queries/{id}/retrieve",
            &["post"],
            post(
                |State(s): St, Path(id): Path<String>, body: Bytes| async move {
                    queries::retrieve(s, id, None, lenient_json(&body)).await
                },
            ),
        )
        .add(
            "/queries/{id}/answers/{index}/retrieve",
            &["post"],
            post(
                |State(s): St, Path((id, index)): Path<(String, String)>, body: Bytes| async move {
                    queries::retrieve(s, id, Some(index), lenient_json(&body)).await
                },
            ),
        )
        .add("/jobs", &["get"], get(|State(s): St, q: RawQuery| jobs::list(s, args(q))))
        .add(
            "/jobs/{id}",
            &["get"],
            get(|State(s): St, Path(id): Path<String>| jobs::get(s, id)),
        )
        .add(
            "/jobs/{id}/cancel",
            &["post"],
            post(|State(s): St, Path(id): Path<String>| jobs::cancel(s, id)),
        )
        .add(
            "/modalities/{name}/configuration",
            &["get"],
            get(|State(s): St, Path(name): Path<String>| modalities::configuration(s, name)),
        )
}

/// `/{level}`, `/{level}/{id}` and its sub-routes, for one level.
fn resource_routes(mut routes: Routes, level: Level) -> Routes {
    let base = format!("/{}", level.plural());
    let list = get(move |State(s): St, q: RawQuery| resources::list(s, level, args(q)));
    routes = if level == Level::Instance {
        routes.add(
            &base,
            &["get", "post"],
            list.post(|State(s): St, headers: HeaderMap, body: axum::body::Body| {
                upload::upload(s, headers, body)
            }),
        )
    } else {
        routes.add(&base, &["get"], list)
    };
    routes = routes
        .add(
            &format!("{base}/{{id}}"),
            &["get", "delete"],
            get(move |State(s): St, Path(id): Path<String>| resources::get(s, level, id)).delete(
                move |State(s): St, Path(id): Path<String>| resources::delete(s, level, id),
            ),
        )
        .add(
            &format!("{base}/{{id}}/statistics"),
            &["get"],
            get(move |State(s): St, Path(id): Path<String>| resources::statistics(s, level, id)),
        );
    if level != Level::Instance {
        routes = routes
            .add(
                &format!("{base}/{{id}}/archive"),
                &["get"],
                get(move |State(s): St, Path(id): Path<String>| archive::archive(s, level, id)),
            )
            .add(
                &format!("{base}/{{id}}/shared-tags"),
                &["get"],
                get(move |State(s): St, Path(id): Path<String>, q: RawQuery| {
                    files::shared_tags(s, level, id, args(q))
                }),
            );
    }
    for below in Level::ALL.into_iter().filter(|l| *l > level) {
        routes = routes.add(
            &format!("{base}/{{id}}/{}", below.plural()),
            &["get"],
            get(move |State(s): St, Path(id): Path<String>, q: RawQuery| {
                resources::descendants(s, level, below, id, args(q))
            }),
        );
    }
    for above in level.ancestors() {
        routes = routes.add(
            &format!("{base}/{{id}}/{}", above.name().to_lowercase()),
            &["get"],
            get(move |State(s): St, Path(id): Path<String>| {
                resources::ancestor(s, level, above, id)
            }),
        );
    }
    routes
}

/// `GET /metrics`, in the text format Prometheus scrapes.
async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        METRICS.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

/// Counts each request by route template and status, and times it.
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    METRICS
        .http_seconds
        .observe(started.elapsed().as_secs_f64());
    METRICS
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the router serves is in the OpenAPI document, with the same methods, and
    /// the document describes no route that does not exist.
    #[test]
    fn openapi_matches_the_router() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = document["paths"].as_object().unwrap();
        // OpenAPI writes a catch-all segment (`{*path}`) as a plain parameter.
        let table: Vec<(&str, String)> = routes()
            .table
            .into_iter()
            .map(|(method, path)| (method, path.replace("{*", "{")))
            .collect();
        for (method, path) in &table {
            assert!(
                paths.get(path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} is served but not in openapi.json"
            );
        }
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    table.iter().any(|(m, p)| m == method && p == path),
                    "{method} {path} is in openapi.json but not served"
                );
            }
        }
    }
}
