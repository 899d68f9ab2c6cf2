//! Writes seed inputs for the fuzz targets in `fuzz/`: `fuzz_seeds OUT_DIR`, one folder per
//! target. Small valid inputs: part-10 files from the tests' generator in every transfer syntax
//! dcmtk here can write, their data sets for the inspection, a ZIP of two of them, association
//! PDUs (built with dicom-ul, and storescu's own A-ASSOCIATE-RQ when dcmtk is installed) and
//! `/tools/find` bodies. `fuzz/run-all` starts from the minimised corpus kept in
//! `fuzz/corpus`; these seeds are what it was grown from.

#[path = "../tests/common/dicomgen.rs"]
#[allow(dead_code)]
mod dicomgen;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_ul::pdu::{
    AbortRQSource, AssociationRQ, PDataValue, PDataValueType, Pdu, PresentationContextProposed,
    UserIdentity, UserIdentityType, UserVariableItem, write_pdu,
};
use dicomgen::{Depth, Spec, Syntax};
use orthweb::dicom::syntaxes::TRANSFER_SYNTAXES;

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds OUT_DIR"));
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let files = part10_files(scratch.path());
    for (name, bytes) in &files {
        save(&out, "part10", &format!("{name}.dcm"), bytes);
        // The inspection's input: the transfer syntax's index, then the data set.
        let ts = dicomgen::file_transfer_syntax(&scratch.path().join(format!("{name}.dcm")))
            .expect("written above");
        let index = TRANSFER_SYNTAXES
            .iter()
            .position(|t| *t == ts)
            .expect("a syntax the server accepts");
        let offset = dicomgen::dataset_offset(bytes).expect("a meta group");
        for announced in [0, 0x80] {
            let mut input = vec![index as u8 | announced];
            input.extend_from_slice(&bytes[offset..]);
            save(&out, "inspect", &format!("{name}-{announced:x}"), &input);
        }
    }
    save(&out, "zip_upload", "two-files.zip", &zip_of(&files[..2]));
    for (name, bytes) in pdus(&files[0].1) {
        save(&out, "pdu_dimse", name, &bytes);
    }
    if let Some(request) = storescu_request(&scratch.path().join(format!("{}.dcm", files[0].0))) {
        save(&out, "pdu_dimse", "storescu-associate-rq", &request);
    }
    for (i, body) in FIND_BODIES.iter().enumerate() {
        save(
            &out,
            "find_json",
            &format!("find-{i}.json"),
            body.as_bytes(),
        );
    }
    println!("seeds written to {}", out.display());
}

fn save(out: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = out.join(target);
    std::fs::create_dir_all(&dir).expect("the seed folder");
    std::fs::write(dir.join(name), bytes).expect("a seed");
}

/// Small images: 12-bit CT, 8-bit, 16-bit multi-frame, each in every syntax dcmtk can write
/// here, and 8-bit RGB and palette color built by hand.
fn part10_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut spec = Spec::new(9100);
    spec.series.clear();
    spec.add_series("CT", 1, 12, 10, 1, Depth::U12);
    spec.add_series("OT", 1, 8, 8, 1, Depth::U8);
    spec.add_series("OT", 1, 6, 4, 3, Depth::U16);
    let source = dir.join("source");
    let instances = spec.write(&source).expect("writing the images");
    let mut files = Vec::new();
    for (n, instance) in instances.iter().enumerate() {
        let depth = [Depth::U12, Depth::U8, Depth::U16][n];
        for syntax in Syntax::ALL {
            if !syntax.supports(depth) || !tool_exists(syntax.tool()) {
                continue;
            }
            let name = format!("image{n}-{syntax:?}").to_lowercase();
            let path = dir.join(format!("{name}.dcm"));
            if syntax == Syntax::ExplicitLE {
                std::fs::copy(&instance.path, &path).expect("copy");
            } else if let Err(e) = dicomgen::transcode(&instance.path, &path, syntax) {
                eprintln!("skipping {name}: {e}");
                continue;
            }
            files.push((name, std::fs::read(&path).expect("transcoded")));
        }
    }
    for (name, object) in [("rgb", rgb()), ("palette", palette())] {
        let path = dir.join(format!("{name}.dcm"));
        object
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
            .expect("a meta group")
            .write_to_file(&path)
            .expect("written");
        files.push((name.to_string(), std::fs::read(&path).expect("written")));
    }
    files
}

fn tool_exists(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
}

fn text(tag: dicom_core::Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn us(tag: dicom_core::Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// The identifying attributes every seed image carries, and a sequence.
fn base(class: &str, instance: &str) -> InMemDicomObject {
    let reference = InMemDicomObject::from_element_iter([
        text(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            uids::CT_IMAGE_STORAGE,
        ),
        text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5"),
    ]);
    InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, class),
        text(tags::SOP_INSTANCE_UID, VR::UI, instance),
        text(tags::STUDY_DATE, VR::DA, "20240131"),
        text(tags::MODALITY, VR::CS, "OT"),
        text(tags::PATIENT_NAME, VR::PN, "Fuzz^Seed"),
        text(tags::PATIENT_ID, VR::LO, "FUZZ1"),
        text(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.2.1143.2",
        ),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.2.1143.3",
        ),
        DataElement::new(
            tags::REFERENCED_IMAGE_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![reference]),
        ),
    ])
}

fn rgb() -> InMemDicomObject {
    // The instance the fuzz target's C-STORE announces: its data set passes the check.
    let mut o = base(
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        "1.2.826.0.1.3680043.2.1143.1",
    );
    for element in [
        us(tags::SAMPLES_PER_PIXEL, 3),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"),
        us(tags::PLANAR_CONFIGURATION, 0),
        us(tags::ROWS, 4),
        us(tags::COLUMNS, 6),
        us(tags::BITS_ALLOCATED, 8),
        us(tags::BITS_STORED, 8),
        us(tags::HIGH_BIT, 7),
        us(tags::PIXEL_REPRESENTATION, 0),
    ] {
        o.put(element);
    }
    let pixels: Vec<u8> = (0..4 * 6 * 3).map(|i| (i * 11) as u8).collect();
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixels),
    ));
    o
}

fn palette() -> InMemDicomObject {
    let mut o = base(
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        "1.2.826.0.1.3680043.2.1143.5",
    );
    // Four entries, first mapped value 0, 16 bits each.
    let words = |values: &[u16]| PrimitiveValue::U16(values.iter().copied().collect());
    let element = |tag, vr, values: &[u16]| DataElement::new(tag, vr, words(values));
    let descriptor = [4, 0, 16];
    for element in [
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "PALETTE COLOR"),
        us(tags::ROWS, 4),
        us(tags::COLUMNS, 4),
        us(tags::BITS_ALLOCATED, 8),
        us(tags::BITS_STORED, 8),
        us(tags::HIGH_BIT, 7),
        us(tags::PIXEL_REPRESENTATION, 0),
        element(
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            VR::US,
            &descriptor,
        ),
        element(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            VR::US,
            &descriptor,
        ),
        element(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            VR::US,
            &descriptor,
        ),
        element(
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            VR::OW,
            &[0, 65535, 0, 0],
        ),
        element(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            VR::OW,
            &[0, 0, 65535, 0],
        ),
        element(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            VR::OW,
            &[0, 0, 0, 65535],
        ),
    ] {
        o.put(element);
    }
    let pixels: Vec<u8> = (0..16).map(|i| (i % 4) as u8).collect();
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixels),
    ));
    o
}

/// A ZIP of `files`: the first stored, the others deflated, and a folder.
fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .add_directory("study/", SimpleFileOptions::default())
        .expect("a folder");
    for (i, (name, bytes)) in files.iter().enumerate() {
        let method = if i == 0 {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        writer
            .start_file(
                format!("study/{name}.dcm"),
                SimpleFileOptions::default().compression_method(method),
            )
            .expect("an entry");
        writer.write_all(bytes).expect("written");
    }
    writer.finish().expect("a ZIP").into_inner()
}

/// An Implicit VR Little Endian command set, its group length first.
fn command(elements: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (element, value) in elements {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(0);
        }
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&element.to_le_bytes());
        body.extend_from_slice(&(value.len() as u32).to_le_bytes());
        body.extend_from_slice(&value);
    }
    let mut set = vec![0, 0, 0, 0, 4, 0, 0, 0];
    set.extend_from_slice(&(body.len() as u32).to_le_bytes());
    set.extend_from_slice(&body);
    set
}

fn pdata(context: u8, value_type: PDataValueType, is_last: bool, data: Vec<u8>) -> Pdu {
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context,
            value_type,
            is_last,
            data,
        }],
    }
}

/// An echo association and a store association, as byte streams from the requestor.
fn pdus(file: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let request = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "STORESCU".into(),
        called_ae_title: "ORTHWEB".into(),
        application_context_name: uids::DICOM_APPLICATION_CONTEXT.into(),
        presentation_contexts: vec![
            PresentationContextProposed {
                id: 1,
                abstract_syntax: uids::VERIFICATION.into(),
                transfer_syntaxes: vec![uids::IMPLICIT_VR_LITTLE_ENDIAN.into()],
            },
            PresentationContextProposed {
                id: 3,
                abstract_syntax: uids::CT_IMAGE_STORAGE.into(),
                transfer_syntaxes: vec![
                    uids::EXPLICIT_VR_LITTLE_ENDIAN.into(),
                    uids::IMPLICIT_VR_LITTLE_ENDIAN.into(),
                ],
            },
        ],
        user_variables: vec![
            UserVariableItem::MaxLength(16384),
            UserVariableItem::ImplementationClassUID("1.2.826.0.1.3680043.2.1143".into()),
            UserVariableItem::ImplementationVersionName("FUZZSEED".into()),
            UserVariableItem::UserIdentityItem(UserIdentity::new(
                false,
                UserIdentityType::Username,
                b"alice".to_vec(),
                Vec::new(),
            )),
        ],
    });
    let echo = command(&[
        (0x0002, uids::VERIFICATION.as_bytes()),
        (0x0100, &0x0030u16.to_le_bytes()),
        (0x0110, &1u16.to_le_bytes()),
        (0x0800, &0x0101u16.to_le_bytes()),
    ]);
    let store = command(&[
        (0x0002, uids::CT_IMAGE_STORAGE.as_bytes()),
        (0x0100, &0x0001u16.to_le_bytes()),
        (0x0110, &2u16.to_le_bytes()),
        (0x0700, &0u16.to_le_bytes()),
        (0x0800, &0x0000u16.to_le_bytes()),
        (0x1000, b"1.2.826.0.1.3680043.2.1143.1"),
    ]);
    let offset = dicomgen::dataset_offset(file).expect("a meta group");
    let write = |pdus: &[Pdu]| {
        let mut bytes = Vec::new();
        for pdu in pdus {
            write_pdu(&mut bytes, pdu).expect("a PDU");
        }
        bytes
    };
    let (first, second) = store.split_at(store.len() / 2);
    vec![
        (
            "echo-association",
            write(&[
                request,
                pdata(1, PDataValueType::Command, true, echo),
                Pdu::ReleaseRQ,
            ]),
        ),
        (
            "store-split-command",
            write(&[
                pdata(3, PDataValueType::Command, false, first.to_vec()),
                pdata(3, PDataValueType::Command, true, second.to_vec()),
                pdata(3, PDataValueType::Data, true, file[offset..].to_vec()),
                Pdu::AbortRQ {
                    source: AbortRQSource::ServiceUser,
                },
            ]),
        ),
    ]
}

/// The A-ASSOCIATE-RQ storescu sends to store `file` (every storage class it knows is proposed),
/// caught on a loopback listener; `None` without dcmtk.
fn storescu_request(file: &Path) -> Option<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0").ok()?;
    let port = listener.local_addr().ok()?.port();
    let mut child = std::process::Command::new("storescu")
        .args([
            "-to",
            "5",
            "-aet",
            "STORESCU",
            "-aec",
            "ORTHWEB",
            "127.0.0.1",
        ])
        .arg(port.to_string())
        .arg(file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let caught = (|| {
        let (mut socket, _) = listener.accept().ok()?;
        socket.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut header = [0u8; 6];
        socket.read_exact(&mut header).ok()?;
        let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        let mut request = header.to_vec();
        request.resize(6 + length as usize, 0);
        socket.read_exact(&mut request[6..]).ok()?;
        Some(request)
    })();
    let _ = child.kill();
    let _ = child.wait();
    caught
}

const FIND_BODIES: &[&str] = &[
    r#"{"Level":"Study","Query":{"PatientName":"DOE*","StudyDate":"20240101-"},"Expand":true}"#,
    r#"{"Level":"Instance","Query":{"SOPInstanceUID":"1.2.3.4"},"Limit":10,"Since":5}"#,
    r#"{"Level":"Series","Query":{"Modality":"CT\\MR","0008,103e":"*chest?"},"CaseSensitive":true,"ParentStudy":"abc-def"}"#,
    r#"{"Level":"Patient","Query":{"PatientID":"ab%_c\\d"},"OrderBy":[{"Type":"DicomTag","Key":"PatientName","Direction":"DESC"},{"Type":"Metadata","Key":"LastUpdate"}]}"#,
    r#"{"Level":"Study","Query":{"ModalitiesInStudy":"CT","StudyTime":"-1200"},"RequestedTags":["ModalitiesInStudy","NumberOfStudyRelatedInstances","NumberOfStudyRelatedSeries"],"Expand":false}"#,
    r#"{"Level":"series","Query":{},"ParentPatient":"x","RequestedTags":["NumberOfSeriesRelatedInstances"],"Labels":[]}"#,
];
