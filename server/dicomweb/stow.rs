//! STOW-RS (PS3.18 10.5): `POST /dicom-web/studies[/{study}]` with a `multipart/related;
//! type="application/dicom"` body, each part streamed into the one ingest pipeline as it
//! arrives (the durability of a C-STORE), answered with the stored instances
//! (ReferencedSOPSequence) and the refused ones with their reason (FailedSOPSequence).

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use futures::TryStreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::StreamReader;

use super::{DICOM_JSON, MediaRange, base_url, content_type, json, resource_url};
use crate::http::{ApiError, AppState};
use crate::ingest::inspect::meta_uids;
use crate::ingest::upload::{Kind, sniff};
use crate::ingest::{IngestError, InspectError};

/// PS3.18 Table 10.5.3-1 failure reasons (PS3.4 C.4.2.1.4 statuses).
const PROCESSING_FAILURE: u16 = 0x0110;
const OUT_OF_RESOURCES: u16 = 0xA700;
const DOES_NOT_MATCH: u16 = 0xA900;
const CANNOT_UNDERSTAND: u16 = 0xC000;
/// The part is not `application/dicom` (SOP class not supported, as dcm4chee answers).
const NOT_SUPPORTED: u16 = 0x0122;

/// The boundary of a `multipart/related` body whose parts are DICOM files.
fn boundary(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let range = MediaRange::parse(value);
    if range.media != "multipart/related"
        || range
            .part_type
            .as_deref()
            .is_some_and(|t| t != "application/dicom")
    {
        return Err(ApiError::unsupported_media_type(
            "STOW-RS takes multipart/related; type=\"application/dicom\"",
        ));
    }
    range
        .boundary
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError::bad_request("the Content-Type names no boundary"))
}

/// What became of one part.
enum Outcome {
    Stored(crate::ingest::Received),
    Failed {
        reason: u16,
        sop_class: String,
        sop_instance: String,
        why: String,
    },
}

/// `POST /dicom-web/studies[/{study}]`.
pub async fn store(
    state: AppState,
    study: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let boundary = boundary(&headers)?;
    let max_size = state.settings.max_upload_mib * 1024 * 1024;
    let limits =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().per_field(max_size));
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, limits);
    let mut outcomes = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            // The body itself is unreadable from here on: what was stored stays stored, and
            // the answer says so along with the error.
            Err(e) => {
                tracing::warn!(error = %e, "a STOW-RS body could not be read to its end");
                if outcomes.is_empty() {
                    return Err(ApiError::bad_request(format!("cannot read the body: {e}")));
                }
                outcomes.push(Outcome::Failed {
                    reason: CANNOT_UNDERSTAND,
                    sop_class: String::new(),
                    sop_instance: String::new(),
                    why: format!("the rest of the body is unreadable: {e}"),
                });
                break;
            }
        };
        let part_type = field
            .content_type()
            .map(|m| m.essence_str().to_ascii_lowercase());
        if part_type
            .as_deref()
            .is_some_and(|t| t != "application/dicom")
        {
            // Drain it: the next part starts after it.
            let mut rest = field;
            while let Ok(Some(_)) = rest.chunk().await {}
            outcomes.push(Outcome::Failed {
                reason: NOT_SUPPORTED,
                sop_class: String::new(),
                sop_instance: String::new(),
                why: format!(
                    "a part of type {} (only application/dicom is stored)",
                    part_type.unwrap_or_default()
                ),
            });
            continue;
        }
        let mut reader = StreamReader::new(field.map_err(std::io::Error::other));
        let mut head = Vec::with_capacity(64 * 1024);
        if let Err(e) = (&mut reader).take(64 * 1024).read_to_end(&mut head).await {
            outcomes.push(failed_read(&e));
            break;
        }
        if sniff(&head) != Kind::Part10 {
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
            outcomes.push(Outcome::Failed {
                reason: CANNOT_UNDERSTAND,
                sop_class: String::new(),
                sop_instance: String::new(),
                why: "not a DICOM part-10 file".into(),
            });
            continue;
        }
        let result = state
            .ingest
            .ingest_part10_in_study(&head, &mut reader, max_size, study.as_deref())
            .await;
        match result {
            Ok(received) => outcomes.push(Outcome::Stored(received)),
            Err(IngestError::Upload(e)) => {
                outcomes.push(failed_read(&e));
                break;
            }
            Err(e) => {
                // Whatever is left of the part is read past, so that the next one is found.
                let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
                let (sop_class, sop_instance) = meta_uids(&head).unwrap_or_default();
                tracing::warn!(error = %e, sop_instance, "a STOW-RS part was refused");
                outcomes.push(Outcome::Failed {
                    reason: reason_of(&e),
                    sop_class,
                    sop_instance,
                    why: e.to_string(),
                });
            }
        }
    }
    if outcomes.is_empty() {
        return Err(ApiError::bad_request("the body holds no part"));
    }
    Ok(answer(&state, &headers, study.as_deref(), &outcomes))
}

fn failed_read(error: &std::io::Error) -> Outcome {
    Outcome::Failed {
        reason: CANNOT_UNDERSTAND,
        sop_class: String::new(),
        sop_instance: String::new(),
        why: format!("the body stopped: {error}"),
    }
}

fn reason_of(error: &IngestError) -> u16 {
    match error {
        IngestError::Invalid(InspectError::Mismatch { .. }) => DOES_NOT_MATCH,
        IngestError::Invalid(_) => CANNOT_UNDERSTAND,
        IngestError::TooLarge(_) | IngestError::Spool(_) | IngestError::Storage(_) => {
            OUT_OF_RESOURCES
        }
        IngestError::Index(_) | IngestError::Upload(_) => PROCESSING_FAILURE,
    }
}

/// The response: 200 when every part was stored, 202 when some were, 409 when none was.
fn answer(
    state: &AppState,
    headers: &HeaderMap,
    study: Option<&str>,
    outcomes: &[Outcome],
) -> Response {
    let base = base_url(state, headers);
    let mut response = InMemDicomObject::new_empty();
    let mut stored = Vec::new();
    let mut failed = Vec::new();
    // Why each part was refused, for people: in a Warning header, the JSON having no place.
    let mut reasons = Vec::new();
    for outcome in outcomes {
        let mut item = InMemDicomObject::new_empty();
        match outcome {
            Outcome::Stored(received) => {
                let uids = &received.uids;
                text(
                    &mut item,
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    &uids.sop_class,
                );
                text(
                    &mut item,
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &uids.sop_instance,
                );
                let url = resource_url(
                    &base,
                    &uids.study,
                    Some(&uids.series),
                    Some(&uids.sop_instance),
                );
                text(&mut item, tags::RETRIEVE_URL, VR::UR, &url);
                stored.push(item);
            }
            Outcome::Failed {
                reason,
                sop_class,
                sop_instance,
                why,
            } => {
                text(&mut item, tags::REFERENCED_SOP_CLASS_UID, VR::UI, sop_class);
                text(
                    &mut item,
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    sop_instance,
                );
                item.put(DataElement::new(
                    tags::FAILURE_REASON,
                    VR::US,
                    PrimitiveValue::from(*reason),
                ));
                reasons.push(format!("{sop_instance}: {why}"));
                failed.push(item);
            }
        }
    }
    let study_uid = study.map(str::to_string).or_else(|| {
        outcomes.iter().find_map(|o| match o {
            Outcome::Stored(r) => Some(r.uids.study.clone()),
            Outcome::Failed { .. } => None,
        })
    });
    if let Some(study_uid) = &study_uid {
        text(
            &mut response,
            tags::RETRIEVE_URL,
            VR::UR,
            &resource_url(&base, study_uid, None, None),
        );
    }
    let status = match (stored.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    if !stored.is_empty() {
        response.put(DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(stored),
        ));
    }
    if !failed.is_empty() {
        response.put(DataElement::new(
            tags::FAILED_SOP_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(failed),
        ));
    }
    let mut answer = (
        status,
        [(header::CONTENT_TYPE, content_type(DICOM_JSON))],
        json::dataset(&response, None),
    )
        .into_response();
    if !reasons.is_empty() {
        let text: String = reasons
            .join("; ")
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"')
            .take(2000)
            .collect();
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("299 orthweb \"{text}\"")) {
            answer.headers_mut().insert(header::WARNING, value);
        }
    }
    answer
}

fn text(object: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    let value = if value.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::from(value)
    };
    object.put(DataElement::new(tag, vr, value));
}
