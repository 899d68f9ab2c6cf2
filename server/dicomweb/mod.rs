//! DICOMweb under `/dicom-web`: searches (QIDO-RS, `qido.rs`), retrieval of instances as
//! multipart (WADO-RS, `retrieve.rs`), their metadata from the index (`metadata.rs`), and the
//! DICOM JSON all of them speak (`json.rs`). Studies, series and instances are named by their
//! UIDs here, not by Orthanc IDs.

mod bulk;
mod frames;
pub mod json;
pub mod metadata;
mod multipart;
mod qido;
mod rendered;
mod retrieve;
mod stow;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::routing::get;

use std::collections::HashMap;

use crate::http::{ApiError, AppState, Routes, args};
use crate::index::{Level, UidInstance, UidPath};

type St = State<AppState>;

/// DICOM JSON's media type.
const DICOM_JSON: &str = "application/dicom+json";

/// The DICOMweb routes, added to the REST API's.
pub(crate) fn routes(routes: Routes) -> Routes {
    rendered_routes(routes)
        .add(
            "/dicom-web/studies",
            &["get", "post"],
            get(|State(s): St, h: HeaderMap, q: RawQuery| {
                qido::search(s, Level::Study, UidPath::default(), h, q)
            })
            .post(|State(s): St, h: HeaderMap, body: Body| stow::store(s, None, h, body)),
        )
        .add(
            "/dicom-web/series",
            &["get"],
            get(|State(s): St, h: HeaderMap, q: RawQuery| {
                qido::search(s, Level::Series, UidPath::default(), h, q)
            }),
        )
        .add(
            "/dicom-web/instances",
            &["get"],
            get(|State(s): St, h: HeaderMap, q: RawQuery| {
                qido::search(s, Level::Instance, UidPath::default(), h, q)
            }),
        )
        .add(
            "/dicom-web/studies/{study}/series",
            &["get"],
            get(
                |State(s): St, Path(study): Path<String>, h: HeaderMap, q: RawQuery| {
                    qido::search(s, Level::Series, path(study, None, None), h, q)
                },
            ),
        )
        .add(
            "/dicom-web/studies/{study}/instances",
            &["get"],
            get(
                |State(s): St, Path(study): Path<String>, h: HeaderMap, q: RawQuery| {
                    qido::search(s, Level::Instance, path(study, None, None), h, q)
                },
            ),
        )
        .add(
            "/dicom-web/studies/{study}/series/{series}/instances",
            &["get"],
            get(
                |State(s): St,
                 Path((study, series)): Path<(String, String)>,
                 h: HeaderMap,
                 q: RawQuery| {
                    qido::search(s, Level::Instance, path(study, Some(series), None), h, q)
                },
            ),
        )
        .add(
            "/dicom-web/studies/{study}",
            &["get", "post"],
            get(|State(s): St, Path(study): Path<String>, h: HeaderMap| {
                retrieve::instances(s, path(study, None, None), h)
            })
            .post(
                |State(s): St, Path(study): Path<String>, h: HeaderMap, body: Body| {
                    stow::store(s, Some(study), h, body)
                },
            ),
        )
        .add(
            "/dicom-web/studies/{study}/series/{series}",
            &["get"],
            get(
                |State(s): St, Path((study, series)): Path<(String, String)>, h: HeaderMap| {
                    retrieve::instances(s, path(study, Some(series), None), h)
                },
            ),
        )
        .add(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}",
            &["get"],
            get(
                |State(s): St,
                 Path((study, series, instance)): Path<(String, String, String)>,
                 h: HeaderMap| {
                    retrieve::instances(s, path(study, Some(series), Some(instance)), h)
                },
            ),
        )
        .add(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            &["get"],
            get(
                |State(s): St,
                 Path((study, series, instance, list)): Path<(String, String, String, String)>,
                 h: HeaderMap| {
                    frames::frames(s, path(study, Some(series), Some(instance)), list, h)
                },
            ),
        )
        .add(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/bulk/{*path}",
            &["get"],
            get(
                |State(s): St,
                 Path((study, series, instance, tags)): Path<(String, String, String, String)>,
                 h: HeaderMap| {
                    bulk::bulk(s, path(study, Some(series), Some(instance)), tags, h)
                },
            ),
        )
        .add(
            "/dicom-web/studies/{study}/metadata",
            &["get"],
            get(|State(s): St, Path(study): Path<String>, h: HeaderMap| {
                metadata::metadata(s, path(study, None, None), h)
            }),
        )
        .add(
            "/dicom-web/studies/{study}/series/{series}/metadata",
            &["get"],
            get(
                |State(s): St, Path((study, series)): Path<(String, String)>, h: HeaderMap| {
                    metadata::metadata(s, path(study, Some(series), None), h)
                },
            ),
        )
        .add(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/metadata",
            &["get"],
            get(
                |State(s): St,
                 Path((study, series, instance)): Path<(String, String, String)>,
                 h: HeaderMap| {
                    metadata::metadata(s, path(study, Some(series), Some(instance)), h)
                },
            ),
        )
}

/// The `rendered` and `thumbnail` routes of every level.
fn rendered_routes(mut routes: Routes) -> Routes {
    const LEVELS: [&str; 4] = [
        "/dicom-web/studies/{study}",
        "/dicom-web/studies/{study}/series/{series}",
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}",
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    ];
    for level in LEVELS {
        for (resource, thumbnail) in [("rendered", false), ("thumbnail", true)] {
            routes = routes.add(
                &format!("{level}/{resource}"),
                &["get"],
                get(
                    move |State(s): St,
                          Path(p): Path<HashMap<String, String>>,
                          h: HeaderMap,
                          q: RawQuery| {
                        let frame = p
                            .get("frames")
                            .map(|list| list.split(',').next().unwrap_or("").to_string());
                        let uids = path(
                            p.get("study").cloned().unwrap_or_default(),
                            p.get("series").cloned(),
                            p.get("instance").cloned(),
                        );
                        rendered::rendered(s, uids, frame, thumbnail, h, args(q))
                    },
                ),
            );
        }
    }
    routes.add(
        "/wado",
        &["get"],
        get(|State(s): St, q: RawQuery| rendered::wado_uri(s, args(q))),
    )
}

fn path(study: String, series: Option<String>, instance: Option<String>) -> UidPath {
    UidPath {
        study,
        series,
        instance,
    }
}

/// Where clients reach `/dicom-web`, for the absolute URLs answers hold (RetrieveURL,
/// BulkDataURI): the scheme the server serves and the host the client asked for. A `Host`
/// without a port (dicomweb-client sends one) gets the port we serve on, unless that is the
/// scheme's own.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let (scheme, default_port) = if state.settings.https {
        ("https", 443)
    } else {
        ("http", 80)
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| state.settings.site_name.clone());
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if has_port || state.http_port == default_port || state.http_port == 0 {
        format!("{scheme}://{host}/dicom-web")
    } else {
        format!("{scheme}://{host}:{}/dicom-web", state.http_port)
    }
}

/// The WADO-RS URL of what `path` names, under `base`.
fn resource_url(base: &str, study: &str, series: Option<&str>, instance: Option<&str>) -> String {
    let mut url = format!("{base}/studies/{study}");
    if let Some(series) = series {
        url.push_str("/series/");
        url.push_str(series);
        if let Some(instance) = instance {
            url.push_str("/instances/");
            url.push_str(instance);
        }
    }
    url
}

/// The instance `path` names (study, series and SOP Instance UIDs), or 404.
async fn one_instance(state: &AppState, path: &UidPath) -> Result<UidInstance, ApiError> {
    state
        .index
        .instances_by_uid(path, "", 1, false)
        .await
        .map_err(ApiError::index)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("no such instance"))
}

/// One media range of an `Accept` or `Content-Type` header: the media type (lower case) and
/// the parameters DICOMweb reads (`type`, lower case; `transfer-syntax`; `boundary`), unquoted.
#[derive(Debug, Default, PartialEq)]
struct MediaRange {
    media: String,
    part_type: Option<String>,
    transfer_syntax: Option<String>,
    boundary: Option<String>,
}

impl MediaRange {
    fn parse(range: &str) -> MediaRange {
        let mut parts = range.split(';').map(str::trim);
        let mut parsed = MediaRange {
            media: parts.next().unwrap_or("").to_ascii_lowercase(),
            ..MediaRange::default()
        };
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_string();
            match key.trim().to_ascii_lowercase().as_str() {
                "type" => parsed.part_type = Some(value.to_ascii_lowercase()),
                "transfer-syntax" => parsed.transfer_syntax = Some(value),
                "boundary" => parsed.boundary = Some(value),
                _ => {}
            }
        }
        parsed
    }

    /// The ranges of an `Accept` header; `None` without one.
    fn accepted(headers: &HeaderMap) -> Result<Option<Vec<MediaRange>>, ApiError> {
        let Some(accept) = headers.get(header::ACCEPT) else {
            return Ok(None);
        };
        let accept = accept
            .to_str()
            .map_err(|_| ApiError::bad_request("the Accept header is not text"))?;
        Ok(Some(accept.split(',').map(MediaRange::parse).collect()))
    }
}

fn content_type(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("a media type is a valid header value")
}
