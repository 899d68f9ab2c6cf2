//! Bulk data (PS3.18 8.4): the values metadata gives by `BulkDataURI`
//! (`…/instances/{instance}/bulk/{tag}[/{item}/{tag}…]`), read from the instance's file, as
//! `application/octet-stream` (whole, or as the one part of a `multipart/related` body when the
//! client asks for that).

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dicom_core::Tag;
use dicom_core::value::Value;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use tokio::io::AsyncReadExt;

use super::{content_type, multipart, one_instance};
use crate::http::{ApiError, AppState};
use crate::index::UidPath;

/// One step of a bulk data path: an element, or an item of the sequence before it.
#[derive(Debug, PartialEq)]
enum Step {
    Tag(Tag),
    Item(usize),
}

fn parse_path(path: &str) -> Result<Vec<Step>, ApiError> {
    let bad = || ApiError::bad_request(format!("bad bulk data path {path:?}"));
    let steps: Vec<Step> = path
        .split('/')
        .enumerate()
        .map(|(n, part)| {
            if n.is_multiple_of(2) {
                super::json::parse_tag(part).map(Step::Tag).ok_or_else(bad)
            } else {
                part.parse().map(Step::Item).map_err(|_| bad())
            }
        })
        .collect::<Result<_, _>>()?;
    if steps.len().is_multiple_of(2) {
        return Err(bad());
    }
    Ok(steps)
}

/// The value at `steps` in `object`, as bytes (little endian; an encapsulated value's
/// fragments joined).
fn value_at(object: &InMemDicomObject, steps: &[Step]) -> Option<Vec<u8>> {
    let Step::Tag(tag) = steps.first()? else {
        return None;
    };
    let element = object.get(*tag)?;
    match (element.value(), steps.get(1)) {
        (Value::Primitive(value), None) => Some(value.to_bytes().into_owned()),
        (Value::PixelSequence(sequence), None) => Some(sequence.fragments().concat()),
        (Value::Sequence(sequence), Some(Step::Item(n))) => {
            value_at(sequence.items().get(*n)?, &steps[2..])
        }
        _ => None,
    }
}

/// `GET …/instances/{instance}/bulk/{path}`.
pub async fn bulk(
    state: AppState,
    path: UidPath,
    tag_path: String,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let steps = parse_path(&tag_path)?;
    let instance = one_instance(&state, &path).await?;
    let (mut reader, size) = state
        .blobs
        .get(&instance.blob_key, None)
        .await
        .map_err(|e| ApiError::unavailable("blob store", e))?;
    let mut file = Vec::with_capacity(size as usize);
    reader
        .read_to_end(&mut file)
        .await
        .map_err(|e| ApiError::unavailable("blob store", e))?;
    let bytes = tokio::task::spawn_blocking(move || {
        let object = OpenFileOptions::new()
            .from_reader(file.get(128..).unwrap_or(&[]))
            .map_err(|e| ApiError::unprocessable(format!("the stored file does not parse: {e}")))?;
        value_at(&object, &steps)
            .ok_or_else(|| ApiError::not_found(format!("the instance has no value at {tag_path}")))
    })
    .await
    .map_err(ApiError::internal)??;
    let multipart = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("multipart/related"));
    if !multipart {
        return Ok((
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                content_type("application/octet-stream"),
            )],
            bytes,
        )
            .into_response());
    }
    let boundary = multipart::boundary();
    let mut body = multipart::part_head(&boundary, 0, "application/octet-stream", None).to_vec();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(&multipart::end(&boundary));
    let value = multipart::content_type(&boundary, "application/octet-stream", None);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type(&value))],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_paths_alternate_tags_and_items() {
        assert_eq!(
            parse_path("7FE00010").unwrap(),
            vec![Step::Tag(Tag(0x7FE0, 0x0010))]
        );
        assert_eq!(
            parse_path("00081140/1/00091002").unwrap(),
            vec![
                Step::Tag(Tag(0x0008, 0x1140)),
                Step::Item(1),
                Step::Tag(Tag(0x0009, 0x1002))
            ]
        );
        for bad in ["", "7FE0", "00081140/1", "00081140/x/00091002", "../etc"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }
}
