//! Reading a spooled part-10 file back: check that it is whole and well formed (`walk`), that
//! it is the instance the command announced, and pull out the attributes the index keeps.
//! Pixel data is never loaded.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use super::source::{InMemory, Source};
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
    /// The data set as DICOM JSON, bulk data by reference (what DICOMweb `/metadata` serves).
    pub metadata: String,
}

/// Parses the file at `path` up to its pixel data and checks that its data set is complete.
/// With `announced` (a C-STORE), the data set must carry the SOP Class and Instance UIDs the
/// command announced.
pub fn inspect(path: &Path, announced: Option<&Announced>) -> Result<Inspected, InspectError> {
    inspect_source(&path, announced)
}

/// `inspect` of a file whose bytes are all in `pieces`, in order.
pub(super) fn inspect_in_memory(
    pieces: &[Vec<u8>],
    announced: Option<&Announced>,
) -> Result<Inspected, InspectError> {
    inspect_source(&InMemory(pieces), announced)
}

fn inspect_source<S: Source>(
    source: &S,
    announced: Option<&Announced>,
) -> Result<Inspected, InspectError> {
    // The structure check comes first: it only skips values, while the parser below reserves
    // whatever length an element header claims. Once every length is known to fit in the
    // file, parsing costs at most the file's own size.
    let (data_offset, ts_uid) = read_meta(source)?;
    let pixel_data = walk::walk(source, data_offset, &ts_uid)?;
    let object = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .read_preamble(ReadPreamble::Always)
        .from_reader(source.open()?)
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
        has_pixel_data: pixel_data.is_some(),
        metadata: crate::dicomweb::json::dataset(dataset, pixel_data),
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

/// The largest file meta group accepted; real ones are a few hundred bytes.
const MAX_META_GROUP: u32 = 1024 * 1024;

/// Where the data set starts (after preamble, magic and meta group) and its transfer syntax.
fn read_meta<S: Source>(source: &S) -> Result<(u64, String), InspectError> {
    let malformed = |what: String| InspectError::Malformed(format!("file meta group: {what}"));
    let mut file = source.open()?;
    file.seek(SeekFrom::Start(128))?;
    // `DICM`, then the group length element, (0002,0000) UL of 4 bytes.
    let mut head = [0u8; 16];
    file.read_exact(&mut head)
        .map_err(|_| malformed("the file ends before it".into()))?;
    if head[4..12] != [0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00] {
        return Err(malformed("no group length first".into()));
    }
    let group_length = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    if group_length > MAX_META_GROUP {
        return Err(malformed(format!("{group_length} bytes long")));
    }
    let mut group = head.to_vec();
    (&mut file)
        .take(u64::from(group_length))
        .read_to_end(&mut group)?;
    if group.len() != head.len() + group_length as usize {
        return Err(InspectError::Truncated(128 + group.len() as u64));
    }
    let meta = parse_meta(&group).map_err(malformed)?;
    // Preamble, magic, the group length element itself, then the group as declared: that is
    // where dicom-object's reader stops. Not `meta.information_group_length`, which
    // dicom-object recomputes from the decoded values (a version name with bytes outside
    // ASCII re-encodes longer) and would start the walk past where the parser starts.
    let offset = 128 + 4 + 12 + u64::from(group_length);
    Ok((offset, trim(meta.transfer_syntax()).to_string()))
}

/// A meta group (from `DICM` on, group length element included) parsed, once every element
/// is known to fit in it: dicom-object reserves (and zeroes) whatever length a meta element
/// claims before it reads the value.
fn parse_meta(group: &[u8]) -> Result<dicom_object::FileMetaTable, String> {
    check_meta_lengths(group.get(16..).unwrap_or(&[]))?;
    dicom_object::FileMetaTable::from_reader(group).map_err(|e| e.to_string())
}

/// The SOP Class and Instance UIDs a part-10 file's meta group names, read from the file's
/// first bytes (`head`, from its preamble on) as leniently as an error report needs: `None`
/// when the group is not whole in `head` or does not parse.
pub fn meta_uids(head: &[u8]) -> Option<(String, String)> {
    let length = u32::from_le_bytes(head.get(140..144)?.try_into().ok()?) as usize;
    let group = head.get(128..144usize.checked_add(length)?)?;
    let meta = parse_meta(group).ok()?;
    Some((
        trim(meta.media_storage_sop_class_uid()).to_string(),
        trim(meta.media_storage_sop_instance_uid()).to_string(),
    ))
}

/// Checks that each element of a meta group (Explicit VR Little Endian, headers read by the
/// decoder dicom-object uses) ends within the group.
fn check_meta_lengths(mut group: &[u8]) -> Result<(), String> {
    use dicom_encoding::decode::{Decode, file_header_decoder};
    let decoder = file_header_decoder();
    while !group.is_empty() {
        let (header, _) = decoder
            .decode_header(&mut group)
            .map_err(|e| e.to_string())?;
        let length = header
            .len
            .get()
            .filter(|length| *length as usize <= group.len())
            .ok_or_else(|| {
                format!(
                    "element {} of {} bytes exceeds the group",
                    header.tag, header.len
                )
            })?;
        group = &group[length as usize..];
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file meta group whose elements follow the group length element.
    fn file_with_meta(elements: &[u8]) -> tempfile::NamedTempFile {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00]);
        bytes.extend_from_slice(&(elements.len() as u32).to_le_bytes());
        bytes.extend_from_slice(elements);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        file
    }

    /// A small CT part-10 file with pixel data and a sequence.
    fn ct_file() -> Vec<u8> {
        use dicom_core::value::DataSetSequence;
        use dicom_core::{DataElement, PrimitiveValue, VR};
        use dicom_object::meta::FileMetaTableBuilder;
        let mut object = InMemDicomObject::new_empty();
        let mut put = |tag, vr, value: &str| {
            object.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        };
        put(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2");
        put(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5");
        put(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3");
        put(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4");
        put(tags::PATIENT_ID, VR::LO, "P1");
        put(tags::PATIENT_NAME, VR::PN, "Doe^Jane");
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(
            tags::CODE_VALUE,
            VR::SH,
            PrimitiveValue::from("T-D0050"),
        ));
        object.put(DataElement::new(
            tags::ANATOMIC_REGION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        ));
        object.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(vec![7u8; 4096]),
        ));
        let file = object
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax("1.2.840.10008.1.2.1")
                    .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
                    .media_storage_sop_instance_uid("1.2.3.4.5"),
            )
            .unwrap();
        let mut bytes = Vec::new();
        file.write_all(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn pieces_in_memory_inspect_as_the_file_does() {
        let bytes = ct_file();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        let announced = Announced {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: "1.2.3.4.5".into(),
        };
        let from_file = inspect(file.path(), Some(&announced)).unwrap();
        // Cut anywhere, even inside an element header.
        let pieces: Vec<Vec<u8>> = bytes.chunks(37).map(<[u8]>::to_vec).collect();
        let in_memory = inspect_in_memory(&pieces, Some(&announced)).unwrap();
        assert_eq!(in_memory.metadata, from_file.metadata);
        assert_eq!(in_memory.tags.patient.0, from_file.tags.patient.0);
        assert_eq!(in_memory.tags.study.0, from_file.tags.study.0);
        assert_eq!(in_memory.sop_instance_uid, "1.2.3.4.5");
        assert!(in_memory.has_pixel_data);
        assert!(from_file.metadata.contains("T-D0050"));

        let short = vec![bytes[..bytes.len() - 10].to_vec()];
        assert!(matches!(
            inspect_in_memory(&short, Some(&announced)),
            Err(InspectError::Truncated(_))
        ));
        let other = Announced {
            sop_instance_uid: "1.2.3.4.6".into(),
            ..announced
        };
        assert!(matches!(
            inspect_in_memory(&pieces, Some(&other)),
            Err(InspectError::Mismatch { .. })
        ));
    }

    #[test]
    fn a_meta_element_longer_than_its_group_is_refused_before_it_is_read() {
        // Found by the part10 fuzz target: (0002,0002) with an unknown VR (read as UN, with a
        // 32-bit length) claiming 2.8 GB, which dicom-object reserved and zeroed from a
        // 200-byte upload.
        let mut element = vec![0x02, 0x00, 0x02, 0x00, 0xAA, 0xAA, 0x00, 0x00];
        element.extend_from_slice(&0xAAAA_AAAAu32.to_le_bytes());
        element.extend_from_slice(&[0xAA; 40]);
        let file = file_with_meta(&element);
        match read_meta(&file.path()) {
            Err(InspectError::Malformed(message)) => {
                assert!(message.contains("exceeds the group"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(check_meta_lengths(&element).is_err());
    }

    #[test]
    fn the_data_set_starts_where_the_declared_group_ends() {
        // Found by the part10 fuzz target: an implementation version name of bytes outside
        // ASCII, which dicom-object decodes to U+FFFD and counts again, three bytes each, in
        // the group length it recomputes. The walk started there, past where the parser
        // starts, and passed a data set whose first header (to the parser) claimed 924 MB.
        let mut bytes = ct_file();
        let name = bytes
            .windows(4)
            .position(|w| w == [0x02, 0x00, 0x13, 0x00])
            .expect("a version name");
        let len = u16::from_le_bytes([bytes[name + 6], bytes[name + 7]]) as usize;
        bytes[name + 8..name + 8 + len].fill(0xC9);
        let declared = u32::from_le_bytes(bytes[140..144].try_into().unwrap());
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        let (offset, _) = read_meta(&file.path()).unwrap();
        assert_eq!(offset, 144 + u64::from(declared));
        assert_eq!(
            inspect(file.path(), None).unwrap().sop_instance_uid,
            "1.2.3.4.5"
        );
    }

    #[test]
    fn meta_groups_are_bounded_and_must_be_whole() {
        let file = file_with_meta(&[]);
        let mut bytes = std::fs::read(file.path()).unwrap();
        bytes[140..144].copy_from_slice(&(MAX_META_GROUP + 1).to_le_bytes());
        std::fs::write(file.path(), &bytes).unwrap();
        assert!(matches!(
            read_meta(&file.path()),
            Err(InspectError::Malformed(_))
        ));
        bytes[140..144].copy_from_slice(&100u32.to_le_bytes());
        std::fs::write(file.path(), &bytes).unwrap();
        assert!(matches!(
            read_meta(&file.path()),
            Err(InspectError::Truncated(_))
        ));
    }
}
