//! DICOM JSON (PS3.18 F.2), written from a parsed data set: numbers as JSON numbers (IS, DS and
//! the binary numeric VRs), person names as `Alphabetic`/`Ideographic`/`Phonetic` objects, AT
//! as `GGGGEEEE` strings, sequences nested, binary values inline (base64) up to
//! [`INLINE_LIMIT`] bytes and as a `BulkDataURI` above it, pixel data always by URI.
//!
//! Written by hand: the `dicom-json` crate writes IS/DS as strings, inlines every binary value
//! (native pixel data as one huge base64 string), gives no `BulkDataURI` and keeps only the
//! alphabetic name group. The bulk data URIs written here are relative to the instance's
//! WADO-RS URL (`bulk/7FE00010`, `bulk/00089215/0/00081150` for a nested one); [`absolute`]
//! makes them whole when the metadata is served.

use std::fmt::Write as _;

use base64::Engine as _;
use dicom_core::header::Header as _;
use dicom_core::value::{DicomValueType, Value};
use dicom_core::{Tag, VR};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

/// Binary values longer than this are given by URI rather than inline.
pub const INLINE_LIMIT: usize = 1024;

/// What the metadata says about the root pixel data, which the parser stopped before.
#[derive(Debug, Clone, Copy)]
pub struct PixelData {
    pub tag: Tag,
    pub vr: VR,
}

/// The data set as a DICOM JSON object, without the file meta group and group lengths; the
/// root pixel data (not read) as a bulk data reference.
pub fn dataset(object: &InMemDicomObject, pixel_data: Option<PixelData>) -> String {
    let mut out = String::with_capacity(4096);
    let mut path = String::from("bulk");
    write_object(&mut out, object, &mut path, pixel_data);
    out
}

/// The stored metadata of an instance with its bulk data URIs under `instance_url`.
pub fn absolute(stored: &str, instance_url: &str) -> String {
    stored.replace(
        "\"BulkDataURI\":\"",
        &format!("\"BulkDataURI\":\"{instance_url}/"),
    )
}

fn write_object(
    out: &mut String,
    object: &InMemDicomObject,
    path: &mut String,
    pixel_data: Option<PixelData>,
) {
    out.push('{');
    let mut first = true;
    for element in object {
        let tag = element.tag();
        if tag.group() == 0x0002 || tag.element() == 0x0000 {
            continue;
        }
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        write_element(out, element, path);
    }
    if let Some(pixel) = pixel_data {
        if !first {
            out.push(',');
        }
        let _ = write!(
            out,
            "\"{}\":{{\"vr\":\"{}\",\"BulkDataURI\":\"bulk/{}\"}}",
            tag_key(pixel.tag),
            pixel.vr.to_string(),
            tag_key(pixel.tag)
        );
    }
    out.push('}');
}

fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// A tag written as DICOM JSON keys it (`GGGGEEEE`, hexadecimal digits of either case).
pub fn parse_tag(key: &str) -> Option<Tag> {
    if key.len() != 8 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let group = u16::from_str_radix(&key[..4], 16).ok()?;
    let element = u16::from_str_radix(&key[4..], 16).ok()?;
    Some(Tag(group, element))
}

fn write_element(out: &mut String, element: &InMemElement, path: &mut String) {
    let tag = tag_key(element.tag());
    let vr = element.vr();
    let _ = write!(out, "\"{tag}\":{{\"vr\":\"{}\"", vr.to_string());
    let start = path.len();
    let _ = write!(path, "/{tag}");
    match element.value() {
        Value::Sequence(sequence) => {
            if !sequence.items().is_empty() {
                out.push_str(",\"Value\":[");
                for (n, item) in sequence.items().iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    let item_start = path.len();
                    let _ = write!(path, "/{n}");
                    write_object(out, item, path, None);
                    path.truncate(item_start);
                }
                out.push(']');
            }
        }
        // Encapsulated pixel data is only ever met nested (an icon image): by URI.
        Value::PixelSequence(_) => {
            let _ = write!(out, ",\"BulkDataURI\":\"{path}\"");
        }
        Value::Primitive(value) if value.value_type() == dicom_core::value::ValueType::Empty => {}
        Value::Primitive(value) => write_value(out, vr, value, path),
    }
    path.truncate(start);
    out.push('}');
}

fn write_value(out: &mut String, vr: VR, value: &dicom_core::PrimitiveValue, path: &str) {
    match vr {
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN => {
            let bytes = value.to_bytes();
            if bytes.len() > INLINE_LIMIT {
                let _ = write!(out, ",\"BulkDataURI\":\"{path}\"");
            } else {
                out.push_str(",\"InlineBinary\":\"");
                out.push_str(&base64::engine::general_purpose::STANDARD.encode(&bytes));
                out.push('"');
            }
        }
        VR::SS | VR::US | VR::SL | VR::UL | VR::SV | VR::UV => values(
            out,
            value.to_multi_int::<i128>().unwrap_or_default(),
            |out, n| {
                let _ = write!(out, "{n}");
            },
        ),
        VR::FL | VR::FD => values(
            out,
            value.to_multi_float64().unwrap_or_default(),
            write_float,
        ),
        VR::AT => {
            if let dicom_core::PrimitiveValue::Tags(tags) = value {
                values(out, tags.to_vec(), |out, tag| {
                    let _ = write!(out, "\"{}\"", tag_key(tag));
                })
            }
        }
        VR::IS | VR::DS => {
            let texts = value.to_multi_str();
            values(
                out,
                texts.iter().map(|t| t.trim()).collect(),
                |out, text| write_number_text(out, vr, text),
            )
        }
        VR::PN => {
            let texts = value.to_multi_str();
            values(out, texts.iter().map(|t| trim_end(t)).collect(), write_name)
        }
        // Text: multi-valued VRs split on `\` by the parser; LT, ST, UT and UR are one value.
        _ => {
            let texts = value.to_multi_str();
            let leading = matches!(
                vr,
                VR::AE | VR::AS | VR::CS | VR::DA | VR::DT | VR::TM | VR::UI
            );
            values(
                out,
                texts
                    .iter()
                    .map(|t| if leading { t.trim_start() } else { t })
                    .map(trim_end)
                    .collect(),
                |out, text| {
                    if text.is_empty() {
                        out.push_str("null");
                    } else {
                        write_string(out, text);
                    }
                },
            )
        }
    }
}

fn trim_end(text: &str) -> &str {
    text.trim_end_matches([' ', '\0'])
}

/// `,"Value":[…]` with each value written by `each`; nothing for no values.
fn values<T>(out: &mut String, values: Vec<T>, each: impl Fn(&mut String, T)) {
    if values.is_empty() {
        return;
    }
    out.push_str(",\"Value\":[");
    for (n, value) in values.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        each(out, value);
    }
    out.push(']');
}

fn write_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::to_string(text).expect("a string serialises"));
}

/// JSON has no NaN or infinities: those become null.
fn write_float(out: &mut String, number: f64) {
    match serde_json::Number::from_f64(number) {
        Some(number) => {
            let _ = write!(out, "{number}");
        }
        None => out.push_str("null"),
    }
}

/// An IS or DS value as a number; an empty one as null; one that is not a number (a
/// non-conforming file) as the string it is, rather than losing it.
fn write_number_text(out: &mut String, vr: VR, text: &str) {
    if text.is_empty() {
        out.push_str("null");
        return;
    }
    if vr == VR::IS
        && let Ok(n) = text.parse::<i64>()
    {
        let _ = write!(out, "{n}");
        return;
    }
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => write_float(out, n),
        _ => write_string(out, text),
    }
}

/// A person name as its component groups; an empty one as null.
fn write_name(out: &mut String, text: &str) {
    if text.is_empty() {
        out.push_str("null");
        return;
    }
    out.push('{');
    let mut first = true;
    for (group, name) in ["Alphabetic", "Ideographic", "Phonetic"]
        .into_iter()
        .zip(text.split('='))
    {
        if name.is_empty() {
            continue;
        }
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        let _ = write!(out, "\"{group}\":");
        write_string(out, name);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, dicom_value};
    use dicom_dictionary_std::tags;
    use serde_json::{Value as Json, json};

    fn element(tag: Tag, vr: VR, value: PrimitiveValue) -> InMemElement {
        DataElement::new(tag, vr, value)
    }

    fn to_json(object: &InMemDicomObject, pixel: Option<PixelData>) -> Json {
        let text = dataset(object, pixel);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn each_vr_takes_its_json_form() {
        let mut object = InMemDicomObject::new_empty();
        object.put(element(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ));
        object.put(element(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            dicom_value!(Strs, ["-125.5", " 3", "1e2 "]),
        ));
        object.put(element(
            tags::INSTANCE_NUMBER,
            VR::IS,
            PrimitiveValue::from(" 42 "),
        ));
        object.put(element(tags::ROWS, VR::US, dicom_value!(U16, [512])));
        object.put(element(
            tags::FRAME_INCREMENT_POINTER,
            VR::AT,
            dicom_value!(Tags, [tags::FRAME_TIME]),
        ));
        object.put(element(
            tags::IMAGE_TYPE,
            VR::CS,
            dicom_value!(Strs, ["ORIGINAL", "", "AXIAL"]),
        ));
        object.put(element(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3\0"),
        ));
        object.put(element(
            Tag(0x0009, 0x0010),
            VR::LO,
            PrimitiveValue::from("ACME 1.0 "),
        ));
        object.put(element(
            Tag(0x0009, 0x1001),
            VR::UN,
            dicom_value!(U8, [1, 2, 3]),
        ));
        object.put(element(tags::PATIENT_AGE, VR::AS, PrimitiveValue::Empty));
        let got = to_json(
            &object,
            Some(PixelData {
                tag: tags::PIXEL_DATA,
                vr: VR::OW,
            }),
        );
        assert_eq!(
            got,
            json!({
                "00080018": {"vr": "UI", "Value": ["1.2.3"]},
                "00080008": {"vr": "CS", "Value": ["ORIGINAL", null, "AXIAL"]},
                "00090010": {"vr": "LO", "Value": ["ACME 1.0"]},
                "00091001": {"vr": "UN", "InlineBinary": "AQID"},
                "00100010": {"vr": "PN", "Value": [{
                    "Alphabetic": "Yamada^Tarou",
                    "Ideographic": "山田^太郎",
                    "Phonetic": "やまだ^たろう"
                }]},
                "00101010": {"vr": "AS"},
                "00200013": {"vr": "IS", "Value": [42]},
                "00200032": {"vr": "DS", "Value": [-125.5, 3.0, 100.0]},
                "00280009": {"vr": "AT", "Value": ["00181063"]},
                "00280010": {"vr": "US", "Value": [512]},
                "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}
            })
        );
        // Keys in ascending tag order, as the standard asks.
        let text = dataset(&object, None);
        let keys: Vec<usize> = ["00080008", "00080018", "00090010", "00100010"]
            .iter()
            .map(|k| text.find(k).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn sequences_nest_and_large_binaries_go_by_uri() {
        let mut item = InMemDicomObject::new_empty();
        item.put(element(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.840.1"),
        ));
        item.put(element(
            Tag(0x0009, 0x1002),
            VR::OB,
            PrimitiveValue::U8(vec![7u8; INLINE_LIMIT + 1].into()),
        ));
        let mut object = InMemDicomObject::new_empty();
        object.put(DataElement::new(
            tags::REFERENCED_IMAGE_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![InMemDicomObject::new_empty(), item]),
        ));
        let got = to_json(&object, None);
        assert_eq!(
            got,
            json!({"00081140": {"vr": "SQ", "Value": [{}, {
                "00081155": {"vr": "UI", "Value": ["1.2.840.1"]},
                "00091002": {"vr": "OB", "BulkDataURI": "bulk/00081140/1/00091002"}
            }]}})
        );
        let served = absolute(
            &dataset(&object, None),
            "http://h/dicom-web/studies/1/series/2/instances/3",
        );
        assert!(served.contains(
            "\"BulkDataURI\":\"http://h/dicom-web/studies/1/series/2/instances/3/bulk/00081140/1/00091002\""
        ));
    }

    #[test]
    fn text_that_looks_like_a_bulk_reference_is_left_alone() {
        let mut object = InMemDicomObject::new_empty();
        object.put(element(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            PrimitiveValue::from("\"BulkDataURI\":\"x"),
        ));
        let stored = dataset(&object, None);
        assert_eq!(absolute(&stored, "http://h"), stored);
    }
}
