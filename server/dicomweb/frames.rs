//! WADO-RS frames (`…/instances/{instance}/frames/{list}`): each frame's bytes as stored, read
//! by range from the blob store (native samples, or an encapsulated frame's fragments joined),
//! one part per frame, typed by the stored syntax (PS3.18 8.7.3.3.2: `application/octet-stream`
//! for native pixel data, `image/jpeg`, `image/jls`, `image/jp2` … for compressed ones), as
//! viewers such as OHIF ask for them (`transfer-syntax=*`).

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{MediaRange, content_type, multipart, one_instance};
use crate::http::{ApiError, AppState};
use crate::index::{StoredFile, UidPath};
use crate::render::RenderError;

/// Most frames one request names.
const MAX_FRAMES: usize = 1000;

/// The media type of a frame stored in `ts`.
fn media_type(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => "application/octet-stream",
    }
}

/// Native little-endian syntaxes, whose frames are the same bytes whichever of them is asked.
fn native_le(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.1.99"
    )
}

/// Whether a client with this `Accept` takes frames stored in `ts` as they are.
fn acceptable(headers: &HeaderMap, ts: &str) -> Result<bool, ApiError> {
    let Some(ranges) = MediaRange::accepted(headers)? else {
        return Ok(true);
    };
    let stored_type = media_type(ts);
    Ok(ranges.iter().any(|range| {
        let syntax = range.transfer_syntax.as_deref();
        match (range.media.as_str(), range.part_type.as_deref(), syntax) {
            ("*/*" | "multipart/*", _, _) => true,
            ("multipart/related", _, Some("*")) => true,
            ("multipart/related", Some(t), Some(s)) => {
                (t == stored_type || t == "application/octet-stream")
                    && (s == ts || (native_le(s) && native_le(ts)))
            }
            // Without a syntax: the media type's default (PS3.18 Table 8.7.3-3), which for
            // octet-stream is Explicit VR Little Endian and for an image type the stored one.
            ("multipart/related", Some("application/octet-stream") | None, None) => native_le(ts),
            ("multipart/related", Some(t), None) => t == stored_type,
            _ => false,
        }
    }))
}

/// Frame numbers (from 1) of a `frames/{list}` path.
fn frame_list(list: &str) -> Result<Vec<u32>, ApiError> {
    let frames: Vec<u32> = list
        .split(',')
        .map(|n| n.trim().parse::<u32>().ok().filter(|n| *n >= 1))
        .collect::<Option<_>>()
        .ok_or_else(|| ApiError::bad_request(format!("bad frame list {list:?}")))?;
    if frames.is_empty() || frames.len() > MAX_FRAMES {
        return Err(ApiError::bad_request(format!(
            "name 1 to {MAX_FRAMES} frames"
        )));
    }
    Ok(frames)
}

/// `GET /dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{list}`.
pub async fn frames(
    state: AppState,
    path: UidPath,
    list: String,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let numbers = frame_list(&list)?;
    let instance = one_instance(&state, &path).await?;
    let ts = instance.transfer_syntax_uid.clone();
    if !acceptable(&headers, &ts)? {
        return Err(ApiError::not_acceptable(format!(
            "the frames are stored in {ts} ({}), and are sent only as stored",
            media_type(&ts)
        )));
    }
    let stored = StoredFile {
        blob_key: instance.blob_key,
        size: instance.file_size,
        sha256: String::new(),
        transfer_syntax_uid: ts.clone(),
        has_pixel_data: true,
    };
    let part_type = format!("{}; transfer-syntax={ts}", media_type(&ts));
    let boundary = multipart::boundary();
    let mut body = Vec::new();
    for (n, number) in numbers.iter().enumerate() {
        let bytes = crate::render::raw_frame(&*state.blobs, &stored, number - 1)
            .await
            .map_err(|e| match e {
                RenderError::NoFrame { frames, .. } => ApiError::not_found(format!(
                    "frame {number} does not exist: the instance has {frames} (from 1)"
                )),
                RenderError::NoPixelData => ApiError::not_found(e.to_string()),
                RenderError::Storage(cause) => ApiError::unavailable("blob store", cause),
                RenderError::Unsupported(m) => ApiError::not_acceptable(m),
                other => ApiError::unprocessable(other.to_string()),
            })?;
        body.push(multipart::part_head(&boundary, n, &part_type, None));
        body.push(bytes.into());
    }
    body.push(multipart::end(&boundary));
    let value = multipart::content_type(&boundary, media_type(&ts), None);
    let chunks = futures::stream::iter(body.into_iter().map(Ok::<_, std::io::Error>));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type(&value))],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn frames_go_as_stored_to_whoever_takes_them() {
        let jpeg = "1.2.840.10008.1.2.4.50";
        let explicit = "1.2.840.10008.1.2.1";
        let any = "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*";
        assert!(acceptable(&accept(any), jpeg).unwrap());
        assert!(acceptable(&HeaderMap::new(), jpeg).unwrap());
        let octet = "multipart/related; type=\"application/octet-stream\"";
        assert!(acceptable(&accept(octet), explicit).unwrap());
        assert!(acceptable(&accept(octet), "1.2.840.10008.1.2").unwrap());
        assert!(!acceptable(&accept(octet), jpeg).unwrap());
        let image = "multipart/related; type=\"image/jpeg\"";
        assert!(acceptable(&accept(image), jpeg).unwrap());
        assert!(!acceptable(&accept(image), "1.2.840.10008.1.2.4.90").unwrap());
        assert!(!acceptable(&accept("application/json"), explicit).unwrap());
    }

    #[test]
    fn frame_lists_are_numbers_from_one() {
        assert_eq!(frame_list("1,3, 2").unwrap(), vec![1, 3, 2]);
        assert!(frame_list("0").is_err());
        assert!(frame_list("1,x").is_err());
        assert!(frame_list("").is_err());
    }
}
