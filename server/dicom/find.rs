//! C-FIND SCP queries: a Patient Root or Study Root identifier turned into the index's find
//! (`index::FindRequest`, the matching `/tools/find` uses, so both match alike), and each match
//! turned back into an identifier holding the keys the query asked for.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN as DEFLATED, EXPLICIT_VR_LITTLE_ENDIAN,
};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use serde_json::Value;

use crate::index::{AncestorTags, FindRequest, Found, Index, IndexError, Level, Resource};
use crate::main_tags;

/// Writes an identifier in `ts_uid`, deflating it ourselves for the deflated syntax.
pub fn encode(
    object: &InMemDicomObject,
    ts_uid: &str,
    charset: SpecificCharacterSet,
) -> Result<Vec<u8>, String> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    let mut bytes = Vec::new();
    if ts.uid() == DEFLATED.uid() {
        // dicom-rs reads deflated data sets but writes them uncompressed: the identifier is
        // written in explicit VR little endian, then deflated (raw, as PS3.5 A.5 says).
        object
            .write_dataset_with_ts_cs(&mut bytes, &EXPLICIT_VR_LITTLE_ENDIAN.erased(), charset)
            .map_err(|e| e.to_string())?;
        let mut deflater = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(bytes.len()),
            flate2::Compression::default(),
        );
        std::io::Write::write_all(&mut deflater, &bytes).map_err(|e| e.to_string())?;
        let mut deflated = deflater.finish().map_err(|e| e.to_string())?;
        // Padded to even length with a NUL, as PS3.5 A.5 asks (dcmtk refuses odd PDVs).
        if deflated.len() % 2 == 1 {
            deflated.push(0);
        }
        return Ok(deflated);
    }
    object
        .write_dataset_with_ts_cs(&mut bytes, ts, charset)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Patient Root Query/Retrieve Information Model - FIND.
pub const PATIENT_ROOT: &str = "1.2.840.10008.5.1.4.1.2.1.1";
/// Study Root Query/Retrieve Information Model - FIND.
pub const STUDY_ROOT: &str = "1.2.840.10008.5.1.4.1.2.2.1";

/// Largest identifier we read; real ones are a few hundred bytes.
pub const MAX_IDENTIFIER: usize = 64 * 1024;

/// Tags the index computes rather than keeps, with the level each applies to.
const COMPUTED: &[(Tag, &str, Level)] = &[
    (
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        "NumberOfPatientRelatedStudies",
        Level::Patient,
    ),
    (
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        "NumberOfStudyRelatedSeries",
        Level::Study,
    ),
    (
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        "NumberOfStudyRelatedInstances",
        Level::Study,
    ),
    (
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        "NumberOfSeriesRelatedInstances",
        Level::Series,
    ),
    (tags::MODALITIES_IN_STUDY, "ModalitiesInStudy", Level::Study),
    (
        tags::SOP_CLASSES_IN_STUDY,
        "SOPClassesInStudy",
        Level::Study,
    ),
];

/// Why a query cannot be answered, as a C-FIND status.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A900: the identifier does not fit the information model.
    #[error("{0}")]
    DoesNotMatchSopClass(String),
    /// C000: the identifier cannot be read.
    #[error("{0}")]
    UnableToProcess(String),
}

/// Why a match could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The identifier cannot be written in the context's transfer syntax.
    #[error("cannot encode the identifier: {0}")]
    Encode(String),
}

/// A parsed C-FIND identifier.
#[derive(Debug, Clone)]
pub struct Query {
    pub request: FindRequest,
    /// The keys to return, in the identifier's order (tag, VR).
    keys: Vec<(Tag, VR)>,
}

impl Query {
    /// Reads `bytes`, an identifier in transfer syntax `ts_uid`, for the information model
    /// `sop_class`.
    pub fn parse(bytes: &[u8], ts_uid: &str, sop_class: &str) -> Result<Query, QueryError> {
        let unreadable = |e: String| QueryError::UnableToProcess(format!("identifier: {e}"));
        // Every element header is checked before dicom-rs reads the bytes: its parser would
        // reserve whatever length a header claims.
        crate::ingest::walk_bytes(bytes, ts_uid).map_err(|e| unreadable(e.to_string()))?;
        let ts = TransferSyntaxRegistry
            .get(ts_uid)
            .ok_or_else(|| unreadable(format!("unknown transfer syntax {ts_uid}")))?;
        let identifier = InMemDicomObject::read_dataset_with_ts(bytes, ts)
            .map_err(|e| unreadable(e.to_string()))?;
        let level_text = main_tags::text(&identifier, tags::QUERY_RETRIEVE_LEVEL)
            .ok_or_else(|| QueryError::DoesNotMatchSopClass("no QueryRetrieveLevel".into()))?;
        let level = match (level_text.as_str(), sop_class) {
            ("PATIENT", PATIENT_ROOT) => Level::Patient,
            ("STUDY", _) => Level::Study,
            ("SERIES", _) => Level::Series,
            ("IMAGE", _) => Level::Instance,
            (other, _) => {
                return Err(QueryError::DoesNotMatchSopClass(format!(
                    "QueryRetrieveLevel {other:?} in this information model"
                )));
            }
        };
        let mut query = Vec::new();
        let mut keys = Vec::new();
        for element in identifier.iter() {
            let tag = element.header().tag;
            if tag == tags::SPECIFIC_CHARACTER_SET || tag.group() < 0x0008 {
                continue;
            }
            keys.push((tag, element.header().vr));
            let Some(keyword) = keyword_of(tag) else {
                continue;
            };
            let value = match element.value() {
                dicom_core::DicomValue::Primitive(_) => element
                    .to_str()
                    .map(|v| crate::ids::strip_padding(&v).to_string())
                    .unwrap_or_default(),
                _ => continue,
            };
            if value.is_empty() || tag == tags::QUERY_RETRIEVE_LEVEL {
                continue;
            }
            // Keys the index can match: main tags of this level and above, and the computed
            // ModalitiesInStudy. Others are returned but not matched, as PS3.4 C.2.2.1
            // allows for optional keys.
            let matchable = main_tags::level_of(&keyword).is_some_and(|l| l <= level)
                || (keyword == "ModalitiesInStudy" && level == Level::Study);
            if matchable {
                query.push((keyword, value));
            }
        }
        let requested_tags = COMPUTED
            .iter()
            .filter(|(tag, _, applies)| *applies == level && keys.iter().any(|(t, _)| t == tag))
            .map(|(_, name, _)| name.to_string())
            .collect();
        Ok(Query {
            request: FindRequest {
                level,
                query,
                // Text is matched as written (PS3.4 C.2.2.2.1), except person names, which
                // match whatever their case, as in dcmtk and Orthanc.
                case_sensitive: true,
                names_any_case: true,
                since: 0,
                limit: None,
                order_by: Vec::new(),
                parent: None,
                requested_tags,
            },
            keys,
        })
    }
}

/// Builds the identifiers of matches, reading the ancestors whose keys were asked for (each
/// once per query).
pub struct Answers<'a> {
    query: &'a Query,
    retrieve_aet: &'a str,
    ancestors: AncestorTags<'a>,
}

impl<'a> Answers<'a> {
    pub fn new(index: &'a Index, query: &'a Query, retrieve_aet: &'a str) -> Self {
        Answers {
            query,
            retrieve_aet,
            ancestors: AncestorTags::new(index),
        }
    }

    /// The identifier answering `found`, encoded in `ts_uid`.
    pub async fn identifier(
        &mut self,
        found: &Found,
        ts_uid: &str,
    ) -> Result<Vec<u8>, AnswerError> {
        let level = self.query.request.level;
        let mut object = InMemDicomObject::new_empty();
        let mut non_ascii = false;
        for &(tag, vr) in &self.query.keys {
            let value = if tag == tags::QUERY_RETRIEVE_LEVEL {
                Some(level_name(level).to_string())
            } else if tag == tags::RETRIEVE_AE_TITLE {
                Some(self.retrieve_aet.to_string())
            } else if let Some((_, name, _)) = COMPUTED.iter().find(|(t, _, _)| *t == tag) {
                found.computed.get(*name).map(|v| {
                    // The index lists values with commas; DICOM separates them with `\`.
                    v.replace(',', "\\")
                })
            } else if let Some(keyword) = keyword_of(tag) {
                match main_tags::level_of(&keyword) {
                    Some(tag_level) if tag_level <= level => {
                        self.main_tag(&found.resource, tag_level, &keyword).await?
                    }
                    _ => None,
                }
            } else {
                None
            };
            let value = value.unwrap_or_default();
            non_ascii |= !value.is_ascii();
            object.put(element(tag, vr, value));
        }
        let charset = if non_ascii {
            object.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from("ISO_IR 192"),
            ));
            SpecificCharacterSet::ISO_IR_192
        } else {
            SpecificCharacterSet::default()
        };
        encode(&object, ts_uid, charset).map_err(AnswerError::Encode)
    }

    /// The value of a main tag of `tag_level`, from the match itself or one of its ancestors.
    async fn main_tag(
        &mut self,
        resource: &Resource,
        tag_level: Level,
        keyword: &str,
    ) -> Result<Option<String>, IndexError> {
        let tags = self.ancestors.of(resource, tag_level).await?;
        Ok(tags
            .get(keyword)
            .and_then(Value::as_str)
            .map(str::to_string))
    }
}

fn keyword_of(tag: Tag) -> Option<String> {
    StandardDataDictionary
        .by_tag(tag)
        .map(|entry| entry.alias().to_string())
}

/// The QueryRetrieveLevel value of `level`.
pub(super) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Patient => "PATIENT",
        Level::Study => "STUDY",
        Level::Series => "SERIES",
        Level::Instance => "IMAGE",
    }
}

/// A return key holding `value` (empty: zero length), in the VR the query used.
pub(super) fn element(tag: Tag, vr: VR, value: String) -> DataElement<InMemDicomObject> {
    if vr == VR::SQ {
        return DataElement::new(tag, VR::SQ, DataSetSequence::empty());
    }
    let vr = match StandardDataDictionary.by_tag(tag).map(|e| e.vr()) {
        Some(VirtualVr::Exact(vr)) => vr,
        _ => vr,
    };
    if value.is_empty() {
        return DataElement::new(tag, vr, PrimitiveValue::Empty);
    }
    // UIDs are padded to even length with NUL (dicom-rs would pad with a space).
    let value = if vr == VR::UI && value.len() % 2 == 1 {
        value + "\0"
    } else {
        value
    };
    let number = |v: &str| v.trim().parse::<f64>().ok();
    let primitive = match vr {
        VR::US => number(&value).map(|n| PrimitiveValue::from(n as u16)),
        VR::UL => number(&value).map(|n| PrimitiveValue::from(n as u32)),
        VR::SS => number(&value).map(|n| PrimitiveValue::from(n as i16)),
        VR::SL => number(&value).map(|n| PrimitiveValue::from(n as i32)),
        VR::FL => number(&value).map(|n| PrimitiveValue::from(n as f32)),
        VR::FD => number(&value).map(PrimitiveValue::from),
        _ => Some(PrimitiveValue::from(value)),
    };
    DataElement::new(tag, vr, primitive.unwrap_or(PrimitiveValue::Empty))
}
