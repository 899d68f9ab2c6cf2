//! Reading a spooled part-10 file back: check that it is whole and well formed (`walk`), that
//! it is the instance the command announced, and pull out the attributes the index keeps.
//! Pixel data is never loaded.

use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use super::walk;
use crate::main_tags::{self, InstanceTags};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot parse the data set: {0}")]
    Malformed(String),
    #[error("the data set is truncated at byte {0}")]
    Truncated(u64),
    #[error("the data set has no {0}")]
    MissingUid(&'static str),
    /// The data set is another instance, or of another class, than the command announced.
    #[error("the data set's {attribute} {found:?} differs from the command's {expected:?}")]
    Mismatch {
        attribute: &'static str,
        expected: String,
        found: String,
    },
    #[error("unknown transfer syntax {0}")]
    UnknownTransferSyntax(String),
    #[error("I/O error reading the spooled file: {0}")]
    Io(#[from] std::io::Error),
}

/// What a DIMSE command announced about the data set that follows it.
#[derive(Debug, Clone)]
pub struct Announced {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// What the index needs from one file.
#[derive(Debug)]
pub struct Inspected {
    pub tags: InstanceTags,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// Whether the root data set has pixel data (integer, float or double).
    pub has_pixel_data: bool,
}

/// Parses the file at `path` up to its pixel data and checks that its data set is complete.
/// With `announced` (a C-STORE), the data set must carry the SOP Class and Instance UIDs the
/// command announced.
pub fn inspect(path: &Path, announced: Option<&Announced>) -> Result<Inspected, InspectError> {
    // The structure check comes first: it only skips values, while the parser below reserves
    // whatever length an element header claims. Once every length is known to fit in the
    // file, parsing costs at most the file's own size.
    let (data_offset, ts_uid) = read_meta(path)?;
    let has_pixel_data = walk::walk(path, data_offset, &ts_uid)?;
    let object = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| InspectError::Malformed(e.to_string()))?;
    let meta = object.meta();

    let dataset: &InMemDicomObject = &object;
    let sop_instance_uid = required(dataset, tags::SOP_INSTANCE_UID, "SOP Instance UID")?;
    let sop_class_uid = match announced {
        // What the command announced is what the file meta group says: the data set must
        // agree, or the file would contradict itself.
        Some(announced) => {
            let sop_class_uid = required(dataset, tags::SOP_CLASS_UID, "SOP Class UID")?;
            same("SOP Class UID", &announced.sop_class_uid, &sop_class_uid)?;
            same(
                "SOP Instance UID",
                &announced.sop_instance_uid,
                &sop_instance_uid,
            )?;
            sop_class_uid
        }
        None => main_tags::text(dataset, tags::SOP_CLASS_UID)
            .unwrap_or_else(|| trim(meta.media_storage_sop_class_uid()).to_string()),
    };
    required(dataset, tags::STUDY_INSTANCE_UID, "Study Instance UID")?;
    required(dataset, tags::SERIES_INSTANCE_UID, "Series Instance UID")?;
    Ok(Inspected {
        tags: main_tags::extract(dataset),
        sop_class_uid,
        sop_instance_uid,
        transfer_syntax_uid: ts_uid,
        has_pixel_data,
    })
}

fn same(attribute: &'static str, expected: &str, found: &str) -> Result<(), InspectError> {
    if trim(expected) == found {
        return Ok(());
    }
    Err(InspectError::Mismatch {
        attribute,
        expected: trim(expected).into(),
        found: found.into(),
    })
}

/// Where the data set starts (after preamble, magic and meta group) and its transfer syntax.
fn read_meta(path: &Path) -> Result<(u64, String), InspectError> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    file.seek(SeekFrom::Start(128))?;
    let meta = dicom_object::FileMetaTable::from_reader(&mut file)
        .map_err(|e| InspectError::Malformed(format!("file meta group: {e}")))?;
    // Preamble, magic, the group length element itself, then the group.
    let offset = 128 + 4 + 12 + u64::from(meta.information_group_length);
    Ok((offset, trim(meta.transfer_syntax()).to_string()))
}

fn trim(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

fn required(
    dataset: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<String, InspectError> {
    main_tags::text(dataset, tag)
        .filter(|v| !v.is_empty())
        .ok_or(InspectError::MissingUid(name))
}
