//! Times C-FIND and C-MOVE against a DICOM server for `bench/qr`, each run over one association
//! (dcmtk's tools spend tens of milliseconds starting up, more than a query takes):
//!
//! - `qr_client find PORT CALLED_AET REPEAT KEY=VALUE...`: a Study Root C-FIND at STUDY level
//!   with the keys given and the return keys a viewer's study list asks for, REPEAT times;
//!   prints `matches median_ms p95_ms`.
//! - `qr_client move PORT CALLED_AET DESTINATION STUDY_UID`: a Study Root C-MOVE of the study;
//!   prints `seconds status`.
//! - `qr_client replay PORT CALLED_AET DIR`: the sink's ceiling. Every part-10 file in DIR is
//!   framed into its C-STORE-RQ and P-DATA-TF PDUs in memory beforehand, then each instance is
//!   written in one call and its response awaited, on one association: a sender that costs
//!   nothing but the socket write. Prints `seconds instances`.

#[path = "../tests/common/scu.rs"]
#[allow(dead_code)]
mod scu;

use std::time::Instant;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const C_FIND_RQ: u16 = 0x0020;
const C_MOVE_RQ: u16 = 0x0021;
const RETURN_KEYS: &[&str] = &[
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
    "StudyInstanceUID",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
];

fn even(mut text: String, pad: char) -> String {
    if text.len() % 2 == 1 {
        text.push(pad);
    }
    text
}

fn put(object: &mut InMemDicomObject, keyword: &str, value: &str) {
    let entry = StandardDataDictionary
        .by_name(keyword)
        .unwrap_or_else(|| panic!("unknown keyword {keyword}"));
    let vr = match entry.vr() {
        VirtualVr::Exact(vr) => vr,
        _ => VR::LO,
    };
    let value = match (value.is_empty(), vr) {
        (true, _) => PrimitiveValue::Empty,
        (false, VR::UI) => PrimitiveValue::from(even(value.to_string(), '\0')),
        (false, _) => PrimitiveValue::from(even(value.to_string(), ' ')),
    };
    object.put(DataElement::new(entry.tag(), vr, value));
}

fn study_identifier(keys: &[(String, String)]) -> InMemDicomObject {
    let mut identifier = InMemDicomObject::new_empty();
    identifier.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from("STUDY "),
    ));
    for keyword in RETURN_KEYS {
        put(&mut identifier, keyword, "");
    }
    for (keyword, value) in keys {
        put(&mut identifier, keyword, value);
    }
    identifier
}

fn connect(port: u16, called: &str, model: &str) -> scu::Scu {
    scu::Scu::connect(port, "BENCHSCU", called, &[(model, &[scu::EXPLICIT_LE])])
        .expect("association accepted")
}

/// Sends a C-FIND or C-MOVE and reads every response to the final one.
fn ask(
    peer: &mut scu::Scu,
    model: &str,
    field: u16,
    identifier: &InMemDicomObject,
    destination: Option<&str>,
) -> Vec<(scu::Response, Vec<u8>)> {
    let context = peer.context_id(model);
    let id = peer.message_id();
    let mut command = scu::request(field, id, Some(model), None, scu::HAS_DATA_SET);
    if let Some(aet) = destination {
        command.put(DataElement::new(
            tags::MOVE_DESTINATION,
            VR::AE,
            PrimitiveValue::from(even(aet.to_string(), ' ')),
        ));
    }
    peer.send_command(context, &scu::encode_command(&command))
        .unwrap();
    peer.send_data(context, &scu::encode_explicit_le(identifier), true)
        .unwrap();
    peer.receive_until_final().unwrap()
}

/// One P-DATA-TF holding one PDV (PS3.8 9.3.5), appended to `out`.
fn frame(out: &mut Vec<u8>, context_id: u8, command: bool, last: bool, data: &[u8]) {
    let item_length = data.len() as u32 + 2;
    out.extend_from_slice(&[0x04, 0]);
    out.extend_from_slice(&(item_length + 4).to_be_bytes());
    out.extend_from_slice(&item_length.to_be_bytes());
    out.push(context_id);
    out.push(u8::from(command) | (u8::from(last) << 1));
    out.extend_from_slice(data);
}

/// Sends every file of `dir` as pre-framed bytes; returns the seconds taken and the count.
fn replay(port: u16, called: &str, dir: &str) -> (f64, usize) {
    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    let mut peer = scu::Scu::connect(port, "BENCHSCU", called, &[(CT, &[scu::EXPLICIT_LE])])
        .expect("association accepted");
    let context = peer.context_id(CT);
    let room = match peer.peer_max_pdu_length() {
        0 => 1 << 20,
        max => max as usize - 6,
    } - 6;
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("DIR")
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let framed: Vec<Vec<u8>> = paths
        .iter()
        .map(|path| {
            let file = dicom_object::open_file(path).expect("a part-10 file");
            let meta = file.meta();
            assert_eq!(
                meta.transfer_syntax().trim_end_matches('\0'),
                scu::EXPLICIT_LE
            );
            let instance = meta.media_storage_sop_instance_uid().trim_end_matches('\0');
            let bytes = std::fs::read(path).unwrap();
            let offset = 144 + u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
            let mut out = Vec::with_capacity(bytes.len() + bytes.len() / room * 12 + 256);
            frame(
                &mut out,
                context,
                true,
                true,
                &scu::store_rq(1, CT, instance),
            );
            let mut pieces = bytes[offset..].chunks(room).peekable();
            while let Some(piece) = pieces.next() {
                frame(&mut out, context, false, pieces.peek().is_none(), piece);
            }
            out
        })
        .collect();
    let started = Instant::now();
    for bytes in &framed {
        peer.write_raw(bytes).expect("write");
        let response = peer.receive_response().expect("response");
        assert_eq!(response.status, 0, "{response:?}");
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = peer.release();
    (seconds, framed.len())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "qr_client find PORT AET REPEAT KEY=VALUE... | move PORT AET DESTINATION STUDY_UID | replay PORT AET DIR";
    let port: u16 = args.get(1).and_then(|p| p.parse().ok()).expect(usage);
    let called = args.get(2).expect(usage);
    match args[0].as_str() {
        "find" => {
            let repeat: usize = args.get(3).and_then(|r| r.parse().ok()).expect(usage);
            let keys: Vec<(String, String)> = args[4..]
                .iter()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("KEY=VALUE");
                    (k.to_string(), v.to_string())
                })
                .collect();
            let identifier = study_identifier(&keys);
            let mut peer = connect(port, called, STUDY_ROOT_FIND);
            // One unmeasured query first: caches, statements.
            let mut matches =
                ask(&mut peer, STUDY_ROOT_FIND, C_FIND_RQ, &identifier, None).len() - 1;
            let mut times = Vec::with_capacity(repeat);
            for _ in 0..repeat {
                let started = Instant::now();
                let responses = ask(&mut peer, STUDY_ROOT_FIND, C_FIND_RQ, &identifier, None);
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                let (last, _) = responses.last().unwrap();
                assert_eq!(last.status, 0, "final status");
                matches = responses.len() - 1;
            }
            let _ = peer.release();
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
            println!("{matches} {:.2} {:.2}", at(0.5), at(0.95));
        }
        "move" => {
            let destination = args.get(3).expect(usage);
            let study = args.get(4).expect(usage);
            let identifier = {
                let mut object = InMemDicomObject::new_empty();
                object.put(DataElement::new(
                    tags::QUERY_RETRIEVE_LEVEL,
                    VR::CS,
                    PrimitiveValue::from("STUDY "),
                ));
                put(&mut object, "StudyInstanceUID", study);
                object
            };
            let mut peer = connect(port, called, STUDY_ROOT_MOVE);
            let started = Instant::now();
            let responses = ask(
                &mut peer,
                STUDY_ROOT_MOVE,
                C_MOVE_RQ,
                &identifier,
                Some(destination),
            );
            let seconds = started.elapsed().as_secs_f64();
            let _ = peer.release();
            let (last, _) = responses.last().unwrap();
            println!("{seconds:.3} {:#06x}", last.status);
        }
        "replay" => {
            let dir = args.get(3).expect(usage);
            let (seconds, count) = replay(port, called, dir);
            println!("{seconds:.3} {count}");
        }
        _ => panic!("{usage}"),
    }
}
