//! The main DICOM tags Orthanc keeps for each level: which they are, and pulling them from a
//! data set. Ingest stores them; queries may filter on them.

use std::collections::BTreeMap;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::index::{Level, LevelTags};

/// The main tags of one instance, split by level.
#[derive(Debug, Clone, Default)]
pub struct InstanceTags {
    pub patient: LevelTags,
    pub study: LevelTags,
    pub series: LevelTags,
    pub instance: LevelTags,
}

const PATIENT: &[(Tag, &str)] = &[
    (tags::PATIENT_NAME, "PatientName"),
    (tags::PATIENT_ID, "PatientID"),
    (tags::PATIENT_BIRTH_DATE, "PatientBirthDate"),
    (tags::PATIENT_SEX, "PatientSex"),
    // Other Patient IDs (retired, still widely sent).
    (Tag(0x0010, 0x1000), "OtherPatientIDs"),
];

const STUDY: &[(Tag, &str)] = &[
    (tags::STUDY_DATE, "StudyDate"),
    (tags::STUDY_TIME, "StudyTime"),
    (tags::STUDY_ID, "StudyID"),
    (tags::STUDY_DESCRIPTION, "StudyDescription"),
    (tags::ACCESSION_NUMBER, "AccessionNumber"),
    (tags::STUDY_INSTANCE_UID, "StudyInstanceUID"),
    (
        tags::REQUESTED_PROCEDURE_DESCRIPTION,
        "RequestedProcedureDescription",
    ),
    (tags::INSTITUTION_NAME, "InstitutionName"),
    (tags::REQUESTING_PHYSICIAN, "RequestingPhysician"),
    (tags::REFERRING_PHYSICIAN_NAME, "ReferringPhysicianName"),
    (tags::TIMEZONE_OFFSET_FROM_UTC, "TimezoneOffsetFromUTC"),
];

const SERIES: &[(Tag, &str)] = &[
    (tags::SERIES_DATE, "SeriesDate"),
    (tags::SERIES_TIME, "SeriesTime"),
    (tags::MODALITY, "Modality"),
    (tags::MANUFACTURER, "Manufacturer"),
    (tags::STATION_NAME, "StationName"),
    (tags::SERIES_DESCRIPTION, "SeriesDescription"),
    (tags::BODY_PART_EXAMINED, "BodyPartExamined"),
    (tags::SEQUENCE_NAME, "SequenceName"),
    (tags::PROTOCOL_NAME, "ProtocolName"),
    (tags::SERIES_NUMBER, "SeriesNumber"),
    (tags::CARDIAC_NUMBER_OF_IMAGES, "CardiacNumberOfImages"),
    (tags::IMAGES_IN_ACQUISITION, "ImagesInAcquisition"),
    (
        tags::NUMBER_OF_TEMPORAL_POSITIONS,
        "NumberOfTemporalPositions",
    ),
    (tags::NUMBER_OF_SLICES, "NumberOfSlices"),
    (tags::NUMBER_OF_TIME_SLICES, "NumberOfTimeSlices"),
    (tags::SERIES_INSTANCE_UID, "SeriesInstanceUID"),
    (tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient"),
    (tags::SERIES_TYPE, "SeriesType"),
    (tags::OPERATORS_NAME, "OperatorsName"),
    (
        tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION,
        "PerformedProcedureStepDescription",
    ),
    (
        tags::ACQUISITION_DEVICE_PROCESSING_DESCRIPTION,
        "AcquisitionDeviceProcessingDescription",
    ),
    (tags::CONTRAST_BOLUS_AGENT, "ContrastBolusAgent"),
];

const INSTANCE: &[(Tag, &str)] = &[
    (tags::INSTANCE_CREATION_DATE, "InstanceCreationDate"),
    (tags::INSTANCE_CREATION_TIME, "InstanceCreationTime"),
    (tags::ACQUISITION_NUMBER, "AcquisitionNumber"),
    (tags::IMAGE_INDEX, "ImageIndex"),
    (tags::INSTANCE_NUMBER, "InstanceNumber"),
    (tags::NUMBER_OF_FRAMES, "NumberOfFrames"),
    (
        tags::TEMPORAL_POSITION_IDENTIFIER,
        "TemporalPositionIdentifier",
    ),
    (tags::SOP_INSTANCE_UID, "SOPInstanceUID"),
    (tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient"),
    (tags::IMAGE_COMMENTS, "ImageComments"),
    (tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient"),
];

/// Pulls the main tags of every level. Absent tags are left out, as Orthanc does.
pub fn extract(dataset: &InMemDicomObject) -> InstanceTags {
    InstanceTags {
        patient: level(dataset, PATIENT),
        study: level(dataset, STUDY),
        series: level(dataset, SERIES),
        instance: level(dataset, INSTANCE),
    }
}

fn level(dataset: &InMemDicomObject, wanted: &[(Tag, &'static str)]) -> LevelTags {
    let map: BTreeMap<&'static str, String> = wanted
        .iter()
        .filter_map(|&(tag, keyword)| text(dataset, tag).map(|value| (keyword, value)))
        .collect();
    LevelTags(map)
}

/// The value of `tag` as text, multiple values joined by `\`, with DICOM padding removed.
/// `None` when the element is absent or is not text (a sequence, say).
pub fn text(dataset: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = dataset.get(tag)?;
    let value = element.to_str().ok()?;
    Some(crate::ids::strip_padding(&value).to_string())
}

/// The level whose main tags include `keyword`, the highest if several do.
/// The main tags of `level` (tag, keyword).
pub fn of_level(level: Level) -> &'static [(Tag, &'static str)] {
    match level {
        Level::Patient => PATIENT,
        Level::Study => STUDY,
        Level::Series => SERIES,
        Level::Instance => INSTANCE,
    }
}

pub fn level_of(keyword: &str) -> Option<Level> {
    [
        (Level::Patient, PATIENT),
        (Level::Study, STUDY),
        (Level::Series, SERIES),
        (Level::Instance, INSTANCE),
    ]
    .into_iter()
    .find(|(_, tags)| tags.iter().any(|&(_, k)| k == keyword))
    .map(|(level, _)| level)
}

/// The keyword of a tag named either by keyword (`PatientName`) or as `gggg,eeee`.
pub fn keyword(name: &str) -> Option<String> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    let dictionary = dicom_dictionary_std::StandardDataDictionary;
    let entry = match parse_tag(name) {
        Some(tag) => dictionary.by_tag(tag),
        None => dictionary.by_name(name),
    }?;
    Some(entry.alias().to_string())
}

/// `gggg,eeee` (or `ggggeeee`) as a tag.
pub fn parse_tag(text: &str) -> Option<Tag> {
    let hex: String = text.chars().filter(|c| *c != ',').collect();
    if hex.len() != 8 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let group = u16::from_str_radix(&hex[..4], 16).ok()?;
    let element = u16::from_str_radix(&hex[4..], 16).ok()?;
    Some(Tag(group, element))
}

/// Whether a tag holds UIDs (VR UI): digits and dots, so matched as written, whatever a
/// query's case sensitivity (PS3.5 9.1), which lets the match use the column's index.
pub fn is_uid(keyword: &str) -> bool {
    use dicom_core::VR;
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let dictionary = dicom_dictionary_std::StandardDataDictionary;
    dictionary
        .by_name(keyword)
        .is_some_and(|entry| matches!(entry.vr(), VirtualVr::Exact(VR::UI)))
}

/// Whether a tag holds person names (VR PN).
pub fn is_person_name(keyword: &str) -> bool {
    use dicom_core::VR;
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let dictionary = dicom_dictionary_std::StandardDataDictionary;
    dictionary
        .by_name(keyword)
        .is_some_and(|entry| matches!(entry.vr(), VirtualVr::Exact(VR::PN)))
}

/// Whether a tag holds a date, a time or both (DA, TM, DT), where `-` means a range.
pub fn is_date_or_time(keyword: &str) -> bool {
    use dicom_core::VR;
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let dictionary = dicom_dictionary_std::StandardDataDictionary;
    dictionary.by_name(keyword).is_some_and(|entry| {
        matches!(
            entry.vr(),
            VirtualVr::Exact(VR::DA) | VirtualVr::Exact(VR::TM) | VirtualVr::Exact(VR::DT)
        )
    })
}
