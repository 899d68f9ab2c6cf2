//! An instance's stored file (`/instances/{id}/file`, streamed, with ranges and ETags) and its
//! tags as JSON (`/tags`, `/simplified-tags`), read from the file up to the pixel data.

use std::collections::HashMap;
use std::io::BufReader;
use std::ops::Range;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::Value as DicomValue;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::io::SyncIoBridge;

use super::{ApiError, AppState};
use crate::index::{Level, StoredFile};

/// Longest string value shown in full, as Orthanc's default.
const MAX_STRING_LENGTH: usize = 256;

/// `GET /instances/{id}/file`.
pub async fn file(
    state: AppState,
    id: String,
    headers: HeaderMap,
    args: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let stored = state.stored_file(&id).await?;
    let etag = format!("\"{}\"", stored.sha256);
    if super::not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(spec) => match parse_range(spec, stored.size) {
            RangeRequest::Whole => None,
            RangeRequest::Part(range) => Some(range),
            RangeRequest::Unsatisfiable => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{}", stored.size))],
                )
                    .into_response());
            }
        },
    };
    // The store's own chunks: `ReaderStream`'s 4 KiB reads over a folder blob were each a
    // blocking-pool hop (128 per 512 KB instance), which held a keep-alive client to ~230/s.
    let (chunks, length) = state
        .blobs
        .stream(&stored.blob_key, range.clone())
        .await
        .map_err(|e| ApiError::unavailable("blob store", e))?;
    let filename = args
        .get("filename")
        .map(|name| safe_filename(name))
        .unwrap_or_else(|| format!("{id}.dcm"));
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, header_value(&etag));
    headers.insert(
        header::CONTENT_DISPOSITION,
        header_value(&format!("attachment; filename=\"{filename}\"")),
    );
    if let Some(range) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            header_value(&format!(
                "bytes {}-{}/{}",
                range.start,
                range.end - 1,
                stored.size
            )),
        );
    }
    Ok(response)
}

/// How the tags are written, after Orthanc's `DicomToJsonFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagFormat {
    /// `{"0010,0010": {"Name", "Type", "Value"}}`
    Full,
    /// `{"PatientName": value}`
    Simplified,
    /// `{"0010,0010": value}`
    Short,
}

/// `GET /instances/{id}/tags` (`?simplify`, `?short`) and `/simplified-tags`.
pub async fn tags(
    state: AppState,
    id: String,
    format: TagFormat,
    args: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let format = requested_format(&args, format);
    let (dataset, has_pixel_data) = read_header(&state, &id).await?;
    let mut json = dataset_json(&dataset, format);
    // The pixel data is never read, only listed, as Orthanc does.
    if has_pixel_data && let Value::Object(map) = &mut json {
        let (key, value) = match format {
            TagFormat::Full => (
                "7fe0,0010",
                json!({ "Name": "PixelData", "Type": "Null", "Value": null }),
            ),
            TagFormat::Simplified => ("PixelData", Value::Null),
            TagFormat::Short => ("7fe0,0010", Value::Null),
        };
        map.insert(key.to_string(), value);
    }
    Ok(axum::Json(json).into_response())
}

/// Reads an instance's data set up to its pixel data, streaming from the blob store. Also
/// says whether the instance has pixel data.
pub async fn read_header(state: &AppState, id: &str) -> Result<(InMemDicomObject, bool), ApiError> {
    let stored = state.stored_file(id).await?;
    Ok((read_stored(state, &stored).await?, stored.has_pixel_data))
}

/// Reads a stored file's data set up to its pixel data.
async fn read_stored(state: &AppState, stored: &StoredFile) -> Result<InMemDicomObject, ApiError> {
    let (reader, _) = open_blob(state, stored, None).await?;
    let bridge = SyncIoBridge::new(reader);
    tokio::task::spawn_blocking(move || read_until_pixel_data(bridge))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            ApiError::internal(format!(
                "stored file {} is unreadable: {e}",
                stored.blob_key
            ))
        })
}

/// Parses a part-10 file, from its first byte, up to its pixel data.
pub(crate) fn read_until_pixel_data<R: std::io::Read>(
    reader: R,
) -> Result<InMemDicomObject, dicom_object::ReadError> {
    let parsed = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .read_until(tags::PIXEL_DATA)
        .from_reader(BufReader::with_capacity(64 * 1024, reader))?;
    Ok(parsed.into_inner())
}

/// `GET /{patients,studies,series}/{id}/shared-tags`: the tags with the same value in every
/// instance under the resource (each file read up to its pixel data, a few at a time).
pub async fn shared_tags(
    state: AppState,
    level: Level,
    id: String,
    args: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let format = requested_format(&args, TagFormat::Full);
    state.resource(level, &id).await?;
    let instances = state
        .index
        .descendants(level, &id, Level::Instance)
        .await
        .map_err(ApiError::index)?;
    let mut reads = futures::stream::iter(instances.into_iter().filter_map(|r| r.file))
        .map(|stored| {
            let state = state.clone();
            async move { read_stored(&state, &stored).await }
        })
        .buffered(8);
    let mut shared: Option<Map<String, Value>> = None;
    while let Some(dataset) = reads.next().await {
        let Value::Object(tags) = dataset_json(&dataset?, format) else {
            continue;
        };
        shared = Some(match shared {
            None => tags,
            Some(mut kept) => {
                kept.retain(|key, value| tags.get(key) == Some(value));
                kept
            }
        });
    }
    Ok(axum::Json(Value::Object(shared.unwrap_or_default())).into_response())
}

fn requested_format(args: &HashMap<String, String>, default: TagFormat) -> TagFormat {
    if args.contains_key("simplify") {
        TagFormat::Simplified
    } else if args.contains_key("short") {
        TagFormat::Short
    } else {
        default
    }
}

async fn open_blob(
    state: &AppState,
    stored: &StoredFile,
    range: Option<Range<u64>>,
) -> Result<(crate::storage::BlobReader, u64), ApiError> {
    state
        .blobs
        .get(&stored.blob_key, range)
        .await
        .map_err(|e| ApiError::unavailable("blob store", e))
}

/// A data set as Orthanc's JSON.
pub fn dataset_json(dataset: &InMemDicomObject, format: TagFormat) -> Value {
    let mut out = Map::new();
    for element in dataset {
        let tag = element.tag();
        let code = format!("{:04x},{:04x}", tag.group(), tag.element());
        let name = tag_name(tag);
        let value = match element.value() {
            DicomValue::Sequence(sequence) => {
                let items: Vec<Value> = sequence
                    .items()
                    .iter()
                    .map(|item| dataset_json(item, format))
                    .collect();
                if format == TagFormat::Full {
                    json!({ "Name": name.clone().unwrap_or_else(unknown_name), "Type": "Sequence", "Value": items })
                } else {
                    Value::Array(items)
                }
            }
            DicomValue::PixelSequence(_) => leaf(format, &name, "Null", Value::Null),
            DicomValue::Primitive(_) if is_binary(element.vr()) => {
                leaf(format, &name, "Null", Value::Null)
            }
            DicomValue::Primitive(_) => match element.to_str() {
                Ok(text) => {
                    let text = crate::ids::strip_padding(&text).to_string();
                    if text.len() > MAX_STRING_LENGTH {
                        leaf(format, &name, "TooLong", Value::Null)
                    } else {
                        leaf(format, &name, "String", Value::String(text))
                    }
                }
                Err(_) => leaf(format, &name, "Null", Value::Null),
            },
        };
        let key = match (format, &name) {
            (TagFormat::Simplified, Some(name)) => name.clone(),
            _ => code,
        };
        out.insert(key, value);
    }
    Value::Object(out)
}

fn leaf(format: TagFormat, name: &Option<String>, kind: &str, value: Value) -> Value {
    match format {
        TagFormat::Full => json!({
            "Name": name.clone().unwrap_or_else(unknown_name),
            "Type": kind,
            "Value": value,
        }),
        _ => value,
    }
}

fn unknown_name() -> String {
    "Unknown Tag & Data".into()
}

/// The dictionary keyword of a public tag; `None` for private and unknown tags.
fn tag_name(tag: Tag) -> Option<String> {
    if tag.group() % 2 == 1 {
        return None;
    }
    StandardDataDictionary
        .by_tag(tag)
        .map(|entry| entry.alias().to_string())
}

/// Value representations holding bytes rather than text, shown as null (as Orthanc does).
fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
    )
}

/// What a `Range` header asks for, against a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

/// Parses a single byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`). Anything else, and
/// several ranges, get the whole file, which HTTP allows.
fn parse_range(spec: &str, size: u64) -> RangeRequest {
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, false) => match parse(end) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(suffix) => size.saturating_sub(suffix)..size,
            None => return RangeRequest::Whole,
        },
        (false, true) => match parse(start) {
            Some(start) => start..size,
            None => return RangeRequest::Whole,
        },
        (false, false) => match (parse(start), parse(end)) {
            (Some(start), Some(end)) if start <= end => start..(end + 1).min(size),
            _ => return RangeRequest::Whole,
        },
        (true, true) => return RangeRequest::Whole,
    };
    if range.start >= size {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Part(range)
    }
}

/// A file name that cannot break out of the header or name a path.
fn safe_filename(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if cleaned.is_empty() {
        "instance.dcm".into()
    } else {
        cleaned
    }
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeRequest::Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), RangeRequest::Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Part(90..100));
        assert_eq!(parse_range("bytes=-500", 100), RangeRequest::Part(0..100));
        assert_eq!(
            parse_range("bytes=50-500", 100),
            RangeRequest::Part(50..100)
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Whole);
        assert_eq!(parse_range("bytes=9-2", 100), RangeRequest::Whole);
    }

    #[test]
    fn file_names_are_cleaned() {
        assert_eq!(safe_filename("../a b\"\r\n.dcm"), ".._a_b___.dcm");
    }
}
