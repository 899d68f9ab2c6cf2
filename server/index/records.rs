//! What the ingest pipeline hands to the index.

use std::collections::BTreeMap;

use crate::ids::ResourceIds;

/// The main DICOM tags of one level, by keyword (as Orthanc's `MainDicomTags`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelTags(pub BTreeMap<&'static str, String>);

impl LevelTags {
    /// The value of a tag, or "" when absent (columns are never NULL, as in Orthanc).
    pub fn get(&self, keyword: &str) -> &str {
        self.0.get(keyword).map(String::as_str).unwrap_or("")
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a map of strings always serialises")
    }
}

/// One received instance, ready to be indexed.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub ids: ResourceIds,
    pub patient: LevelTags,
    pub study: LevelTags,
    pub series: LevelTags,
    pub instance: LevelTags,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    /// Whether the data set has pixel data (the tags route lists it without reading it).
    pub has_pixel_data: bool,
    /// The data set as DICOM JSON (`dicomweb::json`), served by DICOMweb `/metadata` without
    /// opening the blob.
    pub metadata: String,
    pub blob_key: String,
    pub file_size: u64,
    pub sha256: String,
    /// Calling AE title of the sender, or "" for uploads.
    pub remote_aet: String,
    /// `YYYYMMDDTHHMMSS` in UTC, as Orthanc writes dates.
    pub received_at: String,
}

/// What `store_instance` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// A new instance.
    Stored,
    /// The instance was already indexed; the index is unchanged and the new blob is unused.
    AlreadyStored,
    /// The instance replaced an older copy, whose blob is now unused.
    Replaced { old_blob_key: String },
}
