//! Entry points of the cargo-fuzz targets in `fuzz/`: each feeds untrusted bytes to the code the
//! server runs on them, through the same functions, stopping where a database, a blob store or
//! a socket would be needed. Built with the `fuzzing` feature, and in unit tests, which replay
//! the inputs kept in `fuzz/regressions/`. Not an API.

use std::cell::RefCell;
use std::io::Cursor;
use std::path::Path;
use std::sync::LazyLock;

use bytes::Bytes;
use dicom_ul::pdu::{PDataValueType, Pdu};

use crate::dicom::association::command_fragment;
use crate::dicom::dimse::{self, status};
use crate::dicom::receive::receive_pdu;
use crate::dicom::syntaxes::TRANSFER_SYNTAXES;
use crate::http::files::{TagFormat, dataset_json, read_until_pixel_data};
use crate::index::Backend;
use crate::index::find::FindSql;
use crate::ingest::upload::{Kind, ZipEvent, sniff, walk_zip};
use crate::ingest::{Announced, Part10Header, inspect::inspect as inspect_file};
use crate::render::{self, Format, Params};

/// The SOP class and instance a fuzzed C-STORE command announces.
const SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.7";
const SOP_INSTANCE: &str = "1.2.826.0.1.3680043.2.1143.1";

/// What the server reads PDUs with: its default maximum PDU length, strict.
static MAX_PDU: LazyLock<u32> = LazyLock::new(|| crate::config::Settings::default().max_pdu_length);

/// Bytes as they come off an association's socket: every PDU the server's reader takes from
/// them, the command sets reassembled from P-DATA and parsed as the association handler does,
/// and the response it would build. The same bytes are also tried as one whole command set, so
/// that the DIMSE parser is reached without PDU framing too.
pub fn pdu_dimse(data: &[u8]) {
    let mut stream = data;
    let mut buffer = bytes::BytesMut::new();
    let mut command = Vec::new();
    futures::executor::block_on(async {
        loop {
            let unread = stream.len() + buffer.len();
            let pdu = match receive_pdu(&mut stream, &mut buffer, *MAX_PDU).await {
                Ok(pdu) => pdu,
                // The server drops the association (or the bytes ran out).
                Err(_) => break,
            };
            // A reader that takes nothing would make the server spin.
            assert!(
                stream.len() + buffer.len() < unread,
                "a PDU read took no bytes"
            );
            let Pdu::PData { data } = pdu else { continue };
            for pdv in data {
                if pdv.value_type != PDataValueType::Command {
                    continue;
                }
                match command_fragment(&mut command, &pdv) {
                    Ok(None) => {}
                    Ok(Some(request)) => {
                        respond(&request);
                        command.clear();
                    }
                    Err(_) => command.clear(),
                }
            }
        }
    });
    if let Ok(request) = dimse::parse(data) {
        respond(&request);
    }
}

/// The response to a parsed request must be a command set the server itself can read.
fn respond(request: &dimse::Command) {
    let response = dimse::response(request, status::CANNOT_UNDERSTAND, Some("fuzzed"));
    let parsed = dimse::parse(&response).expect("our response is a readable command set");
    assert_eq!(parsed.message_id, request.message_id);
}

/// A data set as received by C-STORE: the first byte picks the transfer syntax of the
/// presentation context (among those the server accepts) and whether the command announced the
/// instance (C-STORE) or not (REST upload); the rest is the data set. It is spooled behind the
/// file meta group the server writes, then inspected as before an acknowledgement.
pub fn inspect(data: &[u8]) {
    let Some((&selector, dataset)) = data.split_first() else {
        return;
    };
    let header = Part10Header {
        sop_class_uid: SOP_CLASS.into(),
        sop_instance_uid: SOP_INSTANCE.into(),
        transfer_syntax_uid: TRANSFER_SYNTAXES
            [usize::from(selector & 0x7F) % TRANSFER_SYNTAXES.len()]
        .into(),
        source_aet: Some("FUZZER".into()),
    };
    let announced = (selector & 0x80 != 0).then(|| Announced {
        sop_class_uid: SOP_CLASS.into(),
        sop_instance_uid: SOP_INSTANCE.into(),
    });
    let mut file = header.head().expect("a meta group of constants");
    file.extend_from_slice(dataset);
    with_file(&file, |path| {
        let _ = inspect_file(path, announced.as_ref());
    });
}

/// A part-10 file as uploaded: if the ingest inspection accepts it (only such files are ever
/// stored), what `/instances/{id}/tags` answers about it in its three formats, and a frame
/// rendered as `/rendered` or `/preview` would. The preamble, which readers ignore, picks the
/// frame and the rendering options.
pub fn part10(data: &[u8]) {
    if data.len() < 132 {
        return;
    }
    let inspected = with_file(data, |path| inspect_file(path, None));
    let Ok(inspected) = inspected else { return };
    let Ok(dataset) = read_until_pixel_data(data) else {
        return;
    };
    for format in [TagFormat::Full, TagFormat::Simplified, TagFormat::Short] {
        let json = dataset_json(&dataset, format);
        serde_json::to_vec(&json).expect("JSON values serialise");
    }
    if !inspected.has_pixel_data {
        return;
    }
    // Frames the server renders may be 8192×8192; here a few, to keep each run short.
    let int = |tag| {
        dataset
            .get(tag)
            .and_then(|e| e.to_int::<u64>().ok())
            .unwrap_or(0)
    };
    use dicom_dictionary_std::tags;
    if int(tags::ROWS).saturating_mul(int(tags::COLUMNS)) > 256 * 1024 {
        return;
    }
    let p = &data[..8];
    let rendered = p[1] & 1 != 0;
    let window = rendered && p[1] & 8 != 0;
    let side = |b: u8| (rendered && b != 0).then_some(u32::from(b % 64) + 1);
    let params = Params {
        kind: if rendered {
            render::Kind::Rendered
        } else {
            render::Kind::Preview
        },
        center: window.then(|| f64::from(i16::from_le_bytes([p[4], p[5]]))),
        width: window.then(|| f64::from(i16::from_le_bytes([p[6], p[7]]))),
        box_width: side(p[2]),
        box_height: side(p[3]),
        smooth: rendered && p[1] & 4 != 0,
        format: if p[1] & 2 != 0 {
            Format::Jpeg
        } else {
            Format::Png
        },
        quality: 90,
    };
    let _ = render::render_file(data, u32::from(p[0] & 3), &params);
}

/// An uploaded body: sniffed as the upload handler does and, if it is a ZIP, read entry by
/// entry up to where each entry would be ingested.
pub fn zip_upload(data: &[u8]) {
    if sniff(&data[..data.len().min(132)]) != Kind::Zip {
        return;
    }
    // Small, so that a run stays short; the server's is `max_upload_mib`.
    const MAX_SIZE: u64 = 4 * 1024 * 1024;
    let mut entry: Option<u64> = None;
    walk_zip(Cursor::new(data), MAX_SIZE, |event| {
        match event {
            ZipEvent::Start(_) => entry = Some(0),
            ZipEvent::Data(bytes) => {
                let size = entry.as_mut().expect("data belongs to an entry");
                *size += bytes.len() as u64;
                assert!(*size <= MAX_SIZE, "an entry went past the limit");
            }
            ZipEvent::End => {
                entry.take().expect("an entry ends once");
            }
            ZipEvent::Broken(_) => entry = None,
        }
        true
    });
}

/// A `/tools/find` body: parsed as the route does, then built into the SQL of both backends.
pub fn find_json(data: &[u8]) {
    let Ok(body) = crate::http::json_body(Ok(Bytes::copy_from_slice(data))) else {
        return;
    };
    let Ok((request, expand)) = crate::http::find::parse_find(&body) else {
        return;
    };
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for expand in [expand, !expand] {
            let Ok(built) = FindSql::new(backend, &request, expand) else {
                continue;
            };
            // Every value goes in as a parameter, and every parameter is used.
            for n in 1..=built.binds.len() {
                assert!(
                    built.sql.contains(&format!("${n}")),
                    "parameter ${n} unused"
                );
            }
            assert!(
                !built.sql.contains(&format!("${}", built.binds.len() + 1)),
                "a placeholder without a parameter"
            );
        }
    }
}

thread_local! {
    /// A scratch file for the inspection, which reads a path: unlinked from the start (in
    /// memory where possible) and named through /proc, so that nothing is left behind when the
    /// fuzzer exits or aborts.
    static SCRATCH: RefCell<Option<std::fs::File>> = const { RefCell::new(None) };
}

fn with_file<T>(bytes: &[u8], f: impl FnOnce(&Path) -> T) -> T {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let file = scratch.get_or_insert_with(|| {
            let shm = Path::new("/dev/shm");
            let dir = if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            };
            tempfile::tempfile_in(dir).expect("a scratch file")
        });
        file.set_len(0).expect("truncating the scratch file");
        file.write_all_at(bytes, 0)
            .expect("writing the scratch file");
        f(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Inputs the fuzzers found to crash, kept after the fix: each must now run through.
    #[test]
    fn regressions_run_through() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 5] = [
            ("pdu_dimse", super::pdu_dimse),
            ("inspect", super::inspect),
            ("part10", super::part10),
            ("zip_upload", super::zip_upload),
            ("find_json", super::find_json),
        ];
        for (name, target) in targets {
            let Ok(entries) = std::fs::read_dir(root.join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                eprintln!("{}", path.display());
                target(&std::fs::read(&path).unwrap());
            }
        }
    }

    #[test]
    fn the_scratch_file_is_what_the_inspection_reads() {
        let element = |group: u16, element: u16, value: &[u8]| {
            let mut bytes = [group.to_le_bytes(), element.to_le_bytes()].concat();
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
            bytes.extend_from_slice(value);
            bytes
        };
        let header = super::Part10Header {
            sop_class_uid: super::SOP_CLASS.into(),
            sop_instance_uid: super::SOP_INSTANCE.into(),
            transfer_syntax_uid: "1.2.840.10008.1.2".into(),
            source_aet: None,
        };
        let mut file = header.head().unwrap();
        file.extend(element(0x0008, 0x0018, b"1.2.826.0.1.3680043.2.1143.1"));
        file.extend(element(0x0020, 0x000D, b"1.2.3.4\0"));
        file.extend(element(0x0020, 0x000E, b"1.2.3.5\0"));
        for _ in 0..2 {
            let inspected = super::with_file(&file, |path| super::inspect_file(path, None));
            assert_eq!(inspected.unwrap().sop_instance_uid, super::SOP_INSTANCE);
            // A shorter input after a longer one: the file is cut to it.
            let cut = super::with_file(&file[..file.len() - 3], |path| {
                super::inspect_file(path, None)
            });
            assert!(cut.is_err());
        }
    }

    #[test]
    fn the_targets_take_empty_and_tiny_inputs() {
        for data in [&[][..], &[0], &[0x80; 200]] {
            super::pdu_dimse(data);
            super::inspect(data);
            super::part10(data);
            super::zip_upload(data);
            super::find_json(data);
        }
    }
}
