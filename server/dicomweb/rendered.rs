//! Rendered resources (PS3.18 8.3.5 and 10.4.1.1.3): `rendered` and `thumbnail` at study,
//! series, instance and frame level, and WADO-URI (`/wado?requestType=WADO`), all through
//! the REST API's renderer and file download: DICOMweb's parameters (`viewport`, `window`,
//! `quality`) become Orthanc's, and a study or series is shown by one of its instances.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use crate::http::{ApiError, AppState};
use crate::index::UidPath;
use crate::render::Kind;

/// The side of a thumbnail unless `viewport` says otherwise.
const THUMBNAIL: u32 = 128;

/// Rendered (`thumbnail`: small) frame `frame` (from 1) of what `path` names.
pub async fn rendered(
    state: AppState,
    path: UidPath,
    frame: Option<String>,
    thumbnail: bool,
    headers: HeaderMap,
    args: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let frame = match frame {
        None => 0,
        Some(text) => {
            text.parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::bad_request(format!("bad frame number {text:?}")))?
                - 1
        }
    };
    let id = representative(&state, &path).await?;
    let mut orthanc = HashMap::new();
    if let Some(viewport) = args.get("viewport") {
        let sides: Vec<&str> = viewport.split(',').collect();
        orthanc.insert("width".to_string(), sides[0].trim().to_string());
        if let Some(height) = sides.get(1) {
            orthanc.insert("height".to_string(), height.trim().to_string());
        }
    } else if thumbnail {
        orthanc.insert("width".to_string(), THUMBNAIL.to_string());
        orthanc.insert("height".to_string(), THUMBNAIL.to_string());
    }
    if let Some(window) = args.get("window") {
        let parts: Vec<&str> = window.split(',').collect();
        if parts.len() < 2 {
            return Err(ApiError::bad_request("window is center,width[,function]"));
        }
        orthanc.insert("window-center".to_string(), parts[0].trim().to_string());
        orthanc.insert("window-width".to_string(), parts[1].trim().to_string());
    }
    if let Some(quality) = args.get("quality") {
        orthanc.insert("quality".to_string(), quality.clone());
    }
    let headers = image_accept(&headers)?;
    crate::http::render::render(
        state,
        id,
        Some(frame.to_string()),
        Kind::Rendered,
        headers,
        orthanc,
    )
    .await
}

/// The Orthanc ID of the instance that shows what `path` names: the instance itself, or the
/// middle one (in index order) of a series or study's first page.
async fn representative(state: &AppState, path: &UidPath) -> Result<String, ApiError> {
    let instances = state
        .index
        .instances_by_uid(path, "", 1000, false)
        .await
        .map_err(ApiError::index)?;
    instances
        .get(instances.len() / 2)
        .map(|i| i.id.clone())
        .ok_or_else(|| ApiError::not_found("no such study, series or instance"))
}

/// The `Accept` the renderer reads: JPEG unless the client prefers PNG; 406 for a client that
/// takes neither.
fn image_accept(headers: &HeaderMap) -> Result<HeaderMap, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*")
        .to_ascii_lowercase();
    let takes = |media: &str| accept.contains(media);
    let chosen = if takes("image/png") && !takes("image/jpeg") {
        "image/png"
    } else if takes("image/jpeg") || takes("image/*") || takes("*/*") {
        "image/jpeg"
    } else {
        return Err(ApiError::not_acceptable(
            "rendered images are image/jpeg or image/png",
        ));
    };
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT, HeaderValue::from_static(chosen));
    if let Some(tag) = headers.get(header::IF_NONE_MATCH) {
        out.insert(header::IF_NONE_MATCH, tag.clone());
    }
    Ok(out)
}

/// `GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…` (PS3.18 9): the file
/// (`contentType=application/dicom`) or a rendered frame (`image/jpeg`, the default, or
/// `image/png`), with `frameNumber`, `rows`, `columns`, `windowCenter`, `windowWidth`.
pub async fn wado_uri(
    state: AppState,
    args: HashMap<String, String>,
) -> Result<Response, ApiError> {
    if args.get("requestType").map(String::as_str) != Some("WADO") {
        return Err(ApiError::bad_request("requestType must be WADO"));
    }
    let uid = |name: &str| {
        args.get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
    };
    let path = UidPath {
        study: uid("studyUID")?,
        series: Some(uid("seriesUID")?),
        instance: Some(uid("objectUID")?),
    };
    let id = representative(&state, &path).await?;
    let content_type = args
        .get("contentType")
        .map(|t| t.to_ascii_lowercase())
        .unwrap_or_else(|| "image/jpeg".into());
    match content_type.as_str() {
        "application/dicom" => {
            crate::http::files::file(state, id, HeaderMap::new(), HashMap::new()).await
        }
        "image/jpeg" | "image/png" => {
            let mut orthanc = HashMap::new();
            for (from, to) in [
                ("columns", "width"),
                ("rows", "height"),
                ("windowCenter", "window-center"),
                ("windowWidth", "window-width"),
                ("imageQuality", "quality"),
            ] {
                if let Some(value) = args.get(from) {
                    orthanc.insert(to.to_string(), value.clone());
                }
            }
            orthanc.insert(
                "format".to_string(),
                content_type.trim_start_matches("image/").to_string(),
            );
            let frame =
                match args.get("frameNumber") {
                    None => 0,
                    Some(n) => {
                        n.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                            ApiError::bad_request(format!("bad frameNumber {n:?}"))
                        })? - 1
                    }
                };
            crate::http::render::render(
                state,
                id,
                Some(frame.to_string()),
                Kind::Rendered,
                HeaderMap::new(),
                orthanc,
            )
            .await
        }
        other => Err(ApiError::not_acceptable(format!(
            "contentType {other}: application/dicom, image/jpeg or image/png"
        ))),
    }
}
