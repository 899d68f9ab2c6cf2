//! The DIMSE command set: parsing requests and building responses (dicom-ul has no DIMSE
//! layer). Command sets are always Implicit VR Little Endian.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Command Field values (PS3.7 E.1).
pub mod command {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
    /// Responses have this bit set.
    pub const RESPONSE_BIT: u16 = 0x8000;
}

/// Status codes we answer with (PS3.4 B.2.3, PS3.7 C).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: out of resources — our storage or index failed.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (or announced instance).
    pub const DATA_SET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand — the data set could not be parsed.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Refused: SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Refused: not authorized (a general status of PS3.7 Annex C).
    pub const NOT_AUTHORIZED: u16 = 0x0124;
    /// Unrecognized operation: a command we do not provide.
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    /// Error: unable to process (a C-FIND identifier that cannot be read).
    pub const UNABLE_TO_PROCESS: u16 = 0xC000;
    /// Pending: a match follows, more may come (C-FIND).
    pub const PENDING: u16 = 0xFF00;
    /// Cancel: the operation ended on the peer's C-CANCEL.
    pub const CANCEL: u16 = 0xFE00;
    /// Refused: out of resources, unable to perform sub-operations (C-MOVE, C-GET).
    pub const SUB_OPERATIONS_IMPOSSIBLE: u16 = 0xA702;
    /// Refused: move destination unknown.
    pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
    /// Warning: sub-operations complete, one or more failures or warnings.
    pub const SUB_OPERATIONS_FAILED: u16 = 0xB000;

    /// Whether a C-STORE status is a warning (the instance was stored): B000, B007, B006…
    pub fn is_warning(code: u16) -> bool {
        code & 0xF000 == 0xB000 || code == 0x0001
    }
}

/// The counts a C-MOVE or C-GET response carries (PS3.7 9.3.4.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubOperations {
    pub remaining: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// Command Data Set Type value meaning "no data set follows".
const NO_DATA_SET: u16 = 0x0101;

/// The parts of a request command set we act on.
#[derive(Debug, Clone, Default)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub has_data_set: bool,
    /// The Status of a response.
    pub status: Option<u16>,
    /// The Move Destination of a C-MOVE-RQ.
    pub move_destination: String,
    /// The counts of a C-MOVE or C-GET response.
    pub sub_operations: SubOperations,
}

#[derive(Debug, thiserror::Error)]
pub enum DimseError {
    #[error("malformed command set: {0}")]
    Malformed(String),
    #[error("command set has no {0}")]
    Missing(&'static str),
}

fn uint(object: &InMemDicomObject, tag: Tag) -> Option<u16> {
    object.get(tag)?.to_int::<u16>().ok()
}

fn uid(object: &InMemDicomObject, tag: Tag) -> String {
    object
        .get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

/// Parses a complete command set.
pub fn parse(bytes: &[u8]) -> Result<Command, DimseError> {
    check_lengths(bytes)?;
    let object = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| DimseError::Malformed(e.to_string()))?;
    let field = uint(&object, tags::COMMAND_FIELD).ok_or(DimseError::Missing("Command Field"))?;
    let data_set_type = uint(&object, tags::COMMAND_DATA_SET_TYPE)
        .ok_or(DimseError::Missing("Command Data Set Type"))?;
    // Requests carry a Message ID; C-CANCEL refers to one instead.
    let message_id = uint(&object, tags::MESSAGE_ID)
        .or_else(|| uint(&object, tags::MESSAGE_ID_BEING_RESPONDED_TO))
        .ok_or(DimseError::Missing("Message ID"))?;
    Ok(Command {
        field,
        message_id,
        sop_class_uid: uid(&object, tags::AFFECTED_SOP_CLASS_UID),
        sop_instance_uid: uid(&object, tags::AFFECTED_SOP_INSTANCE_UID),
        has_data_set: data_set_type != NO_DATA_SET,
        status: uint(&object, tags::STATUS),
        move_destination: uid(&object, tags::MOVE_DESTINATION),
        sub_operations: SubOperations {
            remaining: uint(&object, tags::NUMBER_OF_REMAINING_SUBOPERATIONS).unwrap_or(0),
            completed: uint(&object, tags::NUMBER_OF_COMPLETED_SUBOPERATIONS).unwrap_or(0),
            failed: uint(&object, tags::NUMBER_OF_FAILED_SUBOPERATIONS).unwrap_or(0),
            warning: uint(&object, tags::NUMBER_OF_WARNING_SUBOPERATIONS).unwrap_or(0),
        },
    })
}

/// Checks that every element fits in the bytes we have before handing them to the parser,
/// which would otherwise reserve whatever length a header claims (gigabytes, from 12 bytes).
/// Command sets are flat: a sequence (a tag the dictionary calls SQ) is refused, since the
/// parser would read items whose lengths this walk does not see. So is a value that is not a
/// whole number of its VR's fixed-size values: the parser (dicom-parser 0.10.1) reads only the
/// whole values and goes on from there, out of step with the headers, at lengths read from
/// the middle of values.
fn check_lengths(bytes: &[u8]) -> Result<(), DimseError> {
    use dicom_encoding::decode::{Decode, implicit_le::ImplicitVRLittleEndianDecoder};
    let decoder = ImplicitVRLittleEndianDecoder::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (header, _) = decoder
            .decode_header(&mut rest)
            .map_err(|_| DimseError::Malformed("truncated element header".into()))?;
        let length = header.len.0 as usize;
        if header.vr == VR::SQ {
            return Err(DimseError::Malformed(format!(
                "element {} is a sequence",
                header.tag
            )));
        }
        if let Some(size) = crate::ingest::value_size(header.vr)
            && !header.len.0.is_multiple_of(size)
        {
            return Err(DimseError::Malformed(format!(
                "element {} of VR {} has a length of {length}, not a multiple of {size}",
                header.tag,
                header.vr.to_string()
            )));
        }
        rest = rest.get(length..).ok_or_else(|| {
            DimseError::Malformed(format!("element length {length} exceeds the command set"))
        })?;
    }
    Ok(())
}

/// Builds the response to `request` with `status`. An error comment (at most 64 characters)
/// tells the peer what went wrong.
pub fn response(request: &Command, status: u16, comment: Option<&str>) -> Vec<u8> {
    command_set(request, status, comment, false, None)
}

/// A response to `request` after which a data set follows (a C-FIND match).
pub fn response_with_data_set(request: &Command, status: u16) -> Vec<u8> {
    command_set(request, status, None, true, None)
}

/// A C-MOVE or C-GET response with its sub-operation counts; a data set (the Failed SOP
/// Instance UID List) follows when `data_set`.
pub fn retrieve_response(
    request: &Command,
    status: u16,
    counts: SubOperations,
    comment: Option<&str>,
    data_set: bool,
) -> Vec<u8> {
    command_set(request, status, comment, data_set, Some(counts))
}

/// A C-STORE-RQ; `originator` is the calling AE title and Message ID of the C-MOVE it serves.
pub fn store_request(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    originator: Option<(&str, u16)>,
) -> Vec<u8> {
    let mut object = InMemDicomObject::new_empty();
    put_uid(&mut object, tags::AFFECTED_SOP_CLASS_UID, sop_class_uid);
    put_us(&mut object, tags::COMMAND_FIELD, command::C_STORE_RQ);
    put_us(&mut object, tags::MESSAGE_ID, message_id);
    put_us(&mut object, tags::PRIORITY, 0);
    put_us(&mut object, tags::COMMAND_DATA_SET_TYPE, DATA_SET);
    put_uid(
        &mut object,
        tags::AFFECTED_SOP_INSTANCE_UID,
        sop_instance_uid,
    );
    if let Some((aet, id)) = originator {
        put_ae(
            &mut object,
            tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
            aet,
        );
        put_us(&mut object, tags::MOVE_ORIGINATOR_MESSAGE_ID, id);
    }
    with_group_length(&object)
}

/// A C-FIND-RQ or C-MOVE-RQ (with its destination) in `model`; the identifier follows.
pub fn query_request(
    field: u16,
    message_id: u16,
    model: &str,
    move_destination: Option<&str>,
) -> Vec<u8> {
    let mut object = InMemDicomObject::new_empty();
    put_uid(&mut object, tags::AFFECTED_SOP_CLASS_UID, model);
    put_us(&mut object, tags::COMMAND_FIELD, field);
    put_us(&mut object, tags::MESSAGE_ID, message_id);
    put_us(&mut object, tags::PRIORITY, 0);
    put_us(&mut object, tags::COMMAND_DATA_SET_TYPE, DATA_SET);
    if let Some(aet) = move_destination {
        put_ae(&mut object, tags::MOVE_DESTINATION, aet);
    }
    with_group_length(&object)
}

/// A C-CANCEL-RQ for the request `message_id`.
pub fn cancel_request(message_id: u16) -> Vec<u8> {
    let mut object = InMemDicomObject::new_empty();
    put_us(&mut object, tags::COMMAND_FIELD, command::C_CANCEL_RQ);
    put_us(&mut object, tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id);
    put_us(&mut object, tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET);
    with_group_length(&object)
}

/// A C-ECHO-RQ.
pub fn echo_request(message_id: u16) -> Vec<u8> {
    let mut object = InMemDicomObject::new_empty();
    put_uid(
        &mut object,
        tags::AFFECTED_SOP_CLASS_UID,
        super::syntaxes::VERIFICATION,
    );
    put_us(&mut object, tags::COMMAND_FIELD, command::C_ECHO_RQ);
    put_us(&mut object, tags::MESSAGE_ID, message_id);
    put_us(&mut object, tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET);
    with_group_length(&object)
}

fn put_uid(object: &mut InMemDicomObject, tag: Tag, uid: &str) {
    object.put(DataElement::new(
        tag,
        VR::UI,
        PrimitiveValue::from(even_uid(uid)),
    ));
}

/// AE titles are padded to even length with a space.
fn put_ae(object: &mut InMemDicomObject, tag: Tag, aet: &str) {
    let mut aet = aet.trim().to_string();
    if aet.len() % 2 == 1 {
        aet.push(' ');
    }
    object.put(DataElement::new(tag, VR::AE, PrimitiveValue::from(aet)));
}

fn put_us(object: &mut InMemDicomObject, tag: Tag, value: u16) {
    object.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
}

/// Command Data Set Type of a command that a data set follows (any value but 0101H).
const DATA_SET: u16 = 0x0102;

fn command_set(
    request: &Command,
    status: u16,
    comment: Option<&str>,
    data_set: bool,
    counts: Option<SubOperations>,
) -> Vec<u8> {
    let mut object = InMemDicomObject::new_empty();
    if !request.sop_class_uid.is_empty() {
        object.put(DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(even_uid(&request.sop_class_uid)),
        ));
    }
    object.put(DataElement::new(
        tags::COMMAND_FIELD,
        VR::US,
        PrimitiveValue::from(request.field | command::RESPONSE_BIT),
    ));
    object.put(DataElement::new(
        tags::MESSAGE_ID_BEING_RESPONDED_TO,
        VR::US,
        PrimitiveValue::from(request.message_id),
    ));
    object.put(DataElement::new(
        tags::COMMAND_DATA_SET_TYPE,
        VR::US,
        PrimitiveValue::from(if data_set { DATA_SET } else { NO_DATA_SET }),
    ));
    object.put(DataElement::new(
        tags::STATUS,
        VR::US,
        PrimitiveValue::from(status),
    ));
    if !request.sop_instance_uid.is_empty() {
        object.put(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(even_uid(&request.sop_instance_uid)),
        ));
    }
    if let Some(counts) = counts {
        // Remaining is only meaningful while pending (PS3.4 C.4.2.1.6).
        if status == self::status::PENDING {
            put_us(
                &mut object,
                tags::NUMBER_OF_REMAINING_SUBOPERATIONS,
                counts.remaining,
            );
        }
        put_us(
            &mut object,
            tags::NUMBER_OF_COMPLETED_SUBOPERATIONS,
            counts.completed,
        );
        put_us(
            &mut object,
            tags::NUMBER_OF_FAILED_SUBOPERATIONS,
            counts.failed,
        );
        put_us(
            &mut object,
            tags::NUMBER_OF_WARNING_SUBOPERATIONS,
            counts.warning,
        );
    }
    if let Some(comment) = comment {
        let mut text: String = comment
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .take(64)
            .collect();
        if text.len() % 2 == 1 {
            text.push(' ');
        }
        object.put(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            PrimitiveValue::from(text),
        ));
    }
    with_group_length(&object)
}

/// The command set's bytes, Command Group Length first.
fn with_group_length(object: &InMemDicomObject) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    object
        .write_dataset_with_ts(&mut body, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("writing a command set to memory cannot fail");
    // Command Group Length (0000,0000) UL comes first and counts every byte after it.
    let mut bytes = Vec::with_capacity(body.len() + 12);
    bytes.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// UIDs are padded to even length with a NUL.
fn even_uid(uid: &str) -> String {
    let mut uid = uid.to_string();
    if uid.len() % 2 == 1 {
        uid.push('\0');
    }
    uid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_round_trips_and_answers_the_message_id() {
        let request = Command {
            field: command::C_STORE_RQ,
            message_id: 77,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: "1.2.3".into(),
            has_data_set: true,
            ..Command::default()
        };
        let bytes = response(&request, status::CANNOT_UNDERSTAND, Some("bad"));
        let length = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(length, bytes.len() - 12);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.field, 0x8001);
        assert_eq!(parsed.message_id, 77);
        assert_eq!(parsed.sop_instance_uid, "1.2.3");
        assert!(!parsed.has_data_set);
        let object =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        assert_eq!(uint(&object, tags::STATUS), Some(0xC000));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse(&[1, 2, 3]).is_err());
        assert!(parse(&[]).is_err());
        // An element claiming 1 GiB must be refused before anything is allocated for it.
        assert!(parse(&[0x08, 0, 0x01, 0, 0, 0, 0, 0x40]).is_err());
    }

    #[test]
    fn values_out_of_step_with_their_headers_are_refused() {
        // Found by the pdu_dimse fuzz target: (0000,0000) UL of 5 bytes. The parser read one
        // value, went on a byte early and read a header from the middle of the next element,
        // which claimed 2 GiB.
        let mut bytes = vec![0, 0, 0, 0, 5, 0, 0, 0, 1, 2, 3, 4, 5];
        bytes.extend_from_slice(&[0, 0, 0, 0x01, 0, 0, 0]);
        assert!(
            matches!(check_lengths(&bytes), Err(DimseError::Malformed(m)) if m.contains("multiple"))
        );
        // (0008,1140) Referenced Image Sequence: items the walk would not check.
        let sequence = [
            0x08, 0, 0x40, 0x11, 8, 0, 0, 0, 0xFE, 0xFF, 0, 0xE0, 0, 0, 0, 0x80,
        ];
        assert!(
            matches!(check_lengths(&sequence), Err(DimseError::Malformed(m)) if m.contains("sequence"))
        );
        // A real command set passes.
        let request = Command {
            field: command::C_ECHO_RQ,
            message_id: 1,
            ..Command::default()
        };
        check_lengths(&response(&request, status::SUCCESS, Some("fine"))).unwrap();
    }
}
