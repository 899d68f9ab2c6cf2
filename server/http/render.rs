//! Rendered frames: `/instances/{id}/preview`, `/instances/{id}/rendered` and their
//! `/frames/{n}/…` forms, as PNG or JPEG, with ETags and a cache.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha1::{Digest, Sha1};

use super::{ApiError, AppState, not_modified};
use crate::render::{Format, Kind, Params, RenderError};

const CACHE_CONTROL: &str = "private, max-age=3600";
/// The largest box a client may ask for.
const MAX_SIDE: u32 = 4096;

/// `GET /instances/{id}/preview`, `/rendered` and `/frames/{n}/{preview,rendered}`.
pub async fn render(
    state: AppState,
    id: String,
    frame: Option<String>,
    kind: Kind,
    headers: HeaderMap,
    args: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let frame = match frame {
        None => 0,
        Some(text) => text
            .parse::<u32>()
            .map_err(|_| ApiError::bad_request(format!("bad frame number {text:?}")))?,
    };
    let params = params(kind, &args, &headers)?;
    let stored = state.stored_file(&id).await?;
    let etag = etag(&stored.sha256, frame, &params);
    if not_modified(&headers, &etag) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, CACHE_CONTROL.to_string()),
            ],
        )
            .into_response());
    }
    let renderer = &state.renderer;
    let image = match renderer.cached(&etag) {
        Some(image) => image,
        None => {
            if !stored.has_pixel_data {
                return Ok(failure(&id, RenderError::NoPixelData));
            }
            if let Err(e) = crate::render::decodable(&stored.transfer_syntax_uid) {
                return Ok(failure(&id, e));
            }
            match renderer
                .render(state.blobs.clone(), &stored, frame, &params, etag.clone())
                .await
            {
                Ok(image) => image,
                Err(e) => return Ok(failure(&id, e)),
            }
        }
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(params.format.content_type()),
            ),
            (header::ETAG, HeaderValue::from_str(&etag).expect("hex")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_CONTROL),
            ),
        ],
        image,
    )
        .into_response())
}

/// The request's options, checked.
fn params(
    kind: Kind,
    args: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Params, ApiError> {
    let float = |name: &str| -> Result<Option<f64>, ApiError> {
        args.get(name)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| ApiError::bad_request(format!("bad {name}: {v:?}")))
            })
            .transpose()
    };
    let side = |name: &str| -> Result<Option<u32>, ApiError> {
        match args.get(name).map(|v| v.trim()) {
            None | Some("") | Some("0") => Ok(None),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|v| (1..=MAX_SIDE).contains(v))
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("bad {name}: {v:?} (1 to {MAX_SIDE})"))
                }),
        }
    };
    let format = match args.get("format").map(|f| f.to_ascii_lowercase()) {
        Some(f) if f == "png" => Format::Png,
        Some(f) if f == "jpeg" || f == "jpg" => Format::Jpeg,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "bad format {f:?}: png or jpeg"
            )));
        }
        None => accepted_format(headers),
    };
    let quality = match args.get("quality") {
        None => 90,
        Some(q) => q
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| ApiError::bad_request(format!("bad quality {q:?}: 1 to 100")))?,
    };
    let smooth = match args.get("smooth").map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if v.is_empty() || v == "1" || v == "true" => true,
        Some(v) if v == "0" || v == "false" => false,
        Some(v) => return Err(ApiError::bad_request(format!("bad smooth {v:?}"))),
    };
    let rendered = kind == Kind::Rendered;
    Ok(Params {
        kind,
        center: if rendered {
            float("window-center")?
        } else {
            None
        },
        width: if rendered {
            float("window-width")?
        } else {
            None
        },
        box_width: if rendered { side("width")? } else { None },
        box_height: if rendered { side("height")? } else { None },
        smooth: rendered && smooth,
        format,
        quality,
    })
}

/// JPEG when the Accept header prefers `image/jpeg` to PNG; PNG otherwise.
fn accepted_format(headers: &HeaderMap) -> Format {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Format::Png;
    };
    let weight = |wanted: &str| -> f64 {
        accept
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';').map(str::trim);
                let media = pieces.next()?.to_ascii_lowercase();
                let q = pieces
                    .find_map(|p| p.strip_prefix("q="))
                    .and_then(|q| q.parse::<f64>().ok())
                    .unwrap_or(1.0);
                (media == wanted).then_some(q)
            })
            .fold(0.0, f64::max)
    };
    if weight("image/jpeg") > weight("image/png") {
        Format::Jpeg
    } else {
        Format::Png
    }
}

/// The ETag of one rendering: the stored file's hash, the frame and the options.
fn etag(sha256: &str, frame: u32, params: &Params) -> String {
    let digest = Sha1::digest(format!("{sha256}/{frame}/{}", params.key()).as_bytes());
    format!("\"{}\"", hex::encode(digest))
}

/// A render that could not be made: 404 for a missing frame, 415 for what this server cannot
/// decode, 422 for broken pixel data, 503 for the blob store.
fn failure(id: &str, error: RenderError) -> Response {
    let message = error.to_string();
    let answer = match error {
        RenderError::NoFrame { .. } => return ApiError::not_found(message).into_response(),
        RenderError::NoPixelData | RenderError::Unsupported(_) => {
            ApiError::unsupported_media_type(&message)
        }
        RenderError::Corrupt(_) => ApiError::unprocessable(&message),
        RenderError::Storage(_) => {
            return ApiError::unavailable("blob store", error).into_response();
        }
        RenderError::Encode(_) | RenderError::Task(_) => {
            return ApiError::internal(error).into_response();
        }
    };
    tracing::warn!(instance = id, error = %message, "cannot render");
    answer.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn args(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn etags_change_with_the_file_the_frame_and_the_options() {
        let none = HeaderMap::new();
        let png = params(Kind::Rendered, &args(&[]), &none).unwrap();
        let jpeg = params(Kind::Rendered, &args(&[("format", "jpeg")]), &none).unwrap();
        let windowed = params(Kind::Rendered, &args(&[("window-center", "40")]), &none).unwrap();
        let base = etag("abc", 0, &png);
        assert_eq!(base, etag("abc", 0, &png));
        for other in [
            etag("abd", 0, &png),
            etag("abc", 1, &png),
            etag("abc", 0, &jpeg),
            etag("abc", 0, &windowed),
        ] {
            assert_ne!(base, other);
        }
        // Options that do not apply do not change it: quality with PNG, windows on previews.
        let quality = params(Kind::Rendered, &args(&[("quality", "50")]), &none).unwrap();
        assert_eq!(base, etag("abc", 0, &quality));
        let preview = params(Kind::Preview, &args(&[]), &none).unwrap();
        let preview_windowed =
            params(Kind::Preview, &args(&[("window-center", "40")]), &none).unwrap();
        assert_eq!(etag("abc", 0, &preview), etag("abc", 0, &preview_windowed));
    }

    #[test]
    fn if_none_match_answers_304() {
        let tag = "\"0123\"";
        assert!(not_modified(&headers(&[(header::IF_NONE_MATCH, tag)]), tag));
        assert!(not_modified(
            &headers(&[(header::IF_NONE_MATCH, "W/\"0123\"")]),
            tag
        ));
        assert!(not_modified(
            &headers(&[(header::IF_NONE_MATCH, "\"x\", \"0123\"")]),
            tag
        ));
        assert!(not_modified(&headers(&[(header::IF_NONE_MATCH, "*")]), tag));
        assert!(!not_modified(
            &headers(&[(header::IF_NONE_MATCH, "\"x\"")]),
            tag
        ));
        assert!(!not_modified(&HeaderMap::new(), tag));
    }

    #[test]
    fn the_format_follows_the_query_then_accept() {
        let format = |a: &[(&str, &str)], h: &[(header::HeaderName, &str)]| {
            params(Kind::Rendered, &args(a), &headers(h))
                .unwrap()
                .format
        };
        assert_eq!(format(&[], &[]), Format::Png);
        assert_eq!(format(&[], &[(header::ACCEPT, "image/jpeg")]), Format::Jpeg);
        assert_eq!(
            format(&[], &[(header::ACCEPT, "image/png, image/jpeg;q=0.9")]),
            Format::Png
        );
        assert_eq!(
            format(&[], &[(header::ACCEPT, "image/png;q=0.5, image/jpeg")]),
            Format::Jpeg
        );
        assert_eq!(format(&[], &[(header::ACCEPT, "*/*")]), Format::Png);
        assert_eq!(
            format(&[("format", "png")], &[(header::ACCEPT, "image/jpeg")]),
            Format::Png
        );
        assert_eq!(format(&[("format", "jpeg")], &[]), Format::Jpeg);
        assert!(
            params(
                Kind::Rendered,
                &args(&[("format", "gif")]),
                &HeaderMap::new()
            )
            .is_err()
        );
        assert!(
            params(
                Kind::Rendered,
                &args(&[("quality", "0")]),
                &HeaderMap::new()
            )
            .is_err()
        );
        assert!(params(Kind::Rendered, &args(&[("width", "-1")]), &HeaderMap::new()).is_err());
    }
}
