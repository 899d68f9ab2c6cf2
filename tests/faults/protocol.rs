//! DIMSE and the upper layer protocol: commands the server does not serve or cannot parse,
//! fragments out of order, garbage on the port, peers that fall silent, abort or hang up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::common::dicomgen::Instance;
use crate::common::scu::{self, Scu, blocking};
use crate::common::server::ServerConfig;
use crate::site::Site;
use crate::support::{
    CANNOT_UNDERSTAND, Contexts, SUCCESS, Store, UNRECOGNIZED_OPERATION, assert_usable, eventually,
    local_site, local_site_with, on_association, on_default_association,
};

/// Verification, CT Image Storage and Study Root C-FIND (on which the commands below, which
/// the server does not serve, are sent).
const FIND_CONTEXTS: Contexts = &[
    (scu::VERIFICATION, &[scu::IMPLICIT_LE]),
    (scu::CT_IMAGE_STORAGE, &[scu::EXPLICIT_LE]),
    (scu::STUDY_ROOT_FIND, &[scu::EXPLICIT_LE]),
];

/// DIMSE-N commands, which a storage and query archive does not serve.
const N_SET_RQ: u16 = 0x0120;
const N_GET_RQ: u16 = 0x0110;

#[tokio::test(flavor = "multi_thread")]
async fn unknown_commands_get_0211_and_the_association_stays_usable() {
    let Some(site) = local_site() else { return };
    let valid = Store::of(&site.one());
    let (with_data, without_data, store) = on_association(site.port(), FIND_CONTEXTS, move |scu| {
        let find = scu.context_id(scu::STUDY_ROOT_FIND);
        // N-SET-RQ with a data set, in two data PDVs.
        let id = scu.message_id();
        let command = scu::request(N_SET_RQ, id, Some(scu::STUDY_ROOT_FIND), None, 0x0001);
        scu.send_command(find, &scu::encode_command(&command))
            .unwrap();
        let identifier = scu::encode_explicit_le(&InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::QUERY_RETRIEVE_LEVEL,
                VR::CS,
                PrimitiveValue::from("STUDY "),
            ),
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("*")),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::Empty),
        ]));
        let (a, b) = identifier.split_at(identifier.len() / 2);
        scu.send_data(find, a, false).unwrap();
        scu.send_data(find, b, true).unwrap();
        let with_data = scu.receive_response().unwrap();
        assert_eq!(with_data.message_id_responded_to, id);
        // N-GET-RQ, which announces no data set.
        let id = scu.message_id();
        let command = scu::request(
            N_GET_RQ,
            id,
            Some(scu::STUDY_ROOT_FIND),
            None,
            scu::NO_DATA_SET,
        );
        scu.send_command(find, &scu::encode_command(&command))
            .unwrap();
        let without_data = scu.receive_response().unwrap();
        assert_eq!(without_data.message_id_responded_to, id);
        // The association still works for what we do serve.
        assert_usable(scu);
        let store = valid.send(scu).unwrap();
        (with_data, without_data, store)
    })
    .await;
    for (response, field) in [(&with_data, N_SET_RQ), (&without_data, N_GET_RQ)] {
        assert_eq!(response.status, UNRECOGNIZED_OPERATION, "{response:?}");
        assert_eq!(
            response.command_field,
            field | 0x8000,
            "its response: {response:?}"
        );
    }
    assert_eq!(store.status, SUCCESS);
    for field in ["0x0120", "0x0110"] {
        let lines = site.log_lines(&["unsupported DIMSE command", field]);
        assert_eq!(
            lines.len(),
            1,
            "one log line per unknown command: {lines:#?}"
        );
    }
    assert!(site.spool_files().is_empty());
    site.assert_blobs_match_rows().await;
    assert_eq!(site.instance_count().await, 1);
    site.assert_serves().await;
}

/// Protocol violations end the association (A-ABORT); a C-STORE-RQ the server cannot act on is
/// answered with C000. Nothing is left behind either way.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_commands_and_out_of_sequence_pdvs() {
    let Some(site) = local_site() else { return };
    let port = site.port();
    let instance = site.one_of(256);
    let store = Store::of(&instance);

    let no_uid = on_default_association(port, {
        let store = store.clone();
        move |scu| {
            let context = scu.context_id(&store.class);
            // A C-STORE-RQ without Affected SOP Instance UID: answered, association kept.
            let id = scu.message_id();
            let class = Some(store.class.as_str());
            let command = scu::request(scu::C_STORE_RQ, id, class, None, scu::HAS_DATA_SET);
            scu.send_command(context, &scu::encode_command(&command))
                .unwrap();
            scu.send_data(context, &store.data, true).unwrap();
            let response = scu.receive_response().unwrap();
            assert_eq!(response.message_id_responded_to, id);
            assert_usable(scu);
            response
        }
    })
    .await;
    assert_eq!(no_uid.status, CANNOT_UNDERSTAND, "{no_uid:?}");

    // Each of these breaks the protocol: the server aborts.
    for violation in 0..5 {
        let store = store.clone();
        blocking(move || {
            let mut scu = Scu::connect_default(port);
            let context = scu.context_id(&store.class);
            let id = scu.message_id();
            match violation {
                // A command set without a Command Field (a huge element length is
                // `oversized_element_lengths_cost_no_memory`).
                0 => {
                    let mut command = InMemDicomObject::new_empty();
                    command.put(DataElement::new(
                        tags::MESSAGE_ID,
                        VR::US,
                        PrimitiveValue::from(id),
                    ));
                    scu.send_command(context, &scu::encode_command(&command))
                        .unwrap();
                }
                // Data before any command.
                1 => scu.send_data(context, &store.data[..1000], true).unwrap(),
                // A new command in the middle of a data set.
                2 => {
                    store.send_half(&mut scu, context, id);
                    scu.send_command(context, &scu::echo_rq(id + 1)).unwrap();
                }
                // A presentation context that was never negotiated.
                3 => scu
                    .send_command(99, &scu::store_rq(id, &store.class, &store.uid))
                    .unwrap(),
                // A command set of more than 64 KiB, in PDVs that never say "last".
                _ => {
                    for _ in 0..5 {
                        let pdv = [0u8; 16 * 1024];
                        if scu.send_pdvs(context, true, &pdv, false).is_err() {
                            break;
                        }
                    }
                }
            }
            scu.expect_abort();
        })
        .await;
    }
    for reason in [
        "command set too large",
        "command set has no Command Field",
        "fragment out of sequence",
        "presentation context 99 was not accepted",
    ] {
        site.expect_log(&["association ended with an error", reason])
            .await;
    }
    site.assert_not_stored(&instance.sop_instance_uid).await;
    site.assert_serves().await;
    let lines = site.log_lines(&["no Affected SOP Instance UID"]);
    assert!(
        !lines.is_empty(),
        "no log line explains the C000 answer to a C-STORE-RQ without Affected SOP Instance UID:\n{}",
        site.log()
    );
}

// ---------------------------------------------------------------------------------------------
// Garbage, silence and aborts on the wire

/// Writes `bytes` to the DICOM port and waits for the server to close the connection.
/// Returns how long that took, or panics when it stays open for 20 s.
fn send_garbage(port: u16, bytes: &[u8]) -> Duration {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may close before reading everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            // An A-ABORT or A-ASSOCIATE-RJ may come first.
            Ok(n) if n > 0 => continue,
            Ok(_) => return start.elapsed(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "the server kept the connection open after {:?}",
                    start.elapsed()
                )
            }
            Err(_) => return start.elapsed(), // reset
        }
    }
}

fn pseudo_random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_dicom_port_is_dropped() {
    let Some(site) = local_site() else { return };
    let mut absurd_rq = vec![0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xF0, 0x00, 0x01, 0x00, 0x00];
    absurd_rq.extend_from_slice(b"ORTHWEB         TESTSCU         ");
    absurd_rq.extend_from_slice(&[0u8; 32]);
    // A P-DATA-TF before any association.
    let early_pdata = vec![0x04, 0, 0, 0, 0, 6, 0, 0, 0, 2, 1, 3];
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", pseudo_random_bytes(7, 4096)),
        (
            "an HTTP request",
            b"GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        ),
        ("an A-ASSOCIATE-RQ claiming ~4 GiB", absurd_rq),
        ("a P-DATA-TF before association", early_pdata),
    ];
    let port = site.port();
    let count = payloads.len();
    for (what, bytes) in payloads {
        let took = blocking(move || send_garbage(port, &bytes)).await;
        eprintln!("{what}: closed after {took:?}");
    }
    let refused = eventually("one log line per refused connection", || async {
        let lines = site.log_lines(&["association not established"]);
        (lines.len() >= count).then_some(lines)
    })
    .await;
    assert_eq!(refused.len(), count, "{refused:#?}");
    assert!(site.spool_files().is_empty());
    assert_eq!(site.instance_count().await, 0);
    site.assert_serves().await;
}

/// Starts a C-STORE of a fresh ~512 KiB instance (32 data PDVs) on a default association and
/// sends half of it; returns once the server is receiving (its spool file exists), with the
/// association still open.
async fn half_sent_store(site: &Site) -> (Instance, Scu) {
    // 4 MB: half of it is more than the spool keeps in memory (1 MiB), so a file is on disk.
    let instance = site.one_of(1448);
    let store = Store::of(&instance);
    let port = site.port();
    let scu = blocking(move || {
        let mut scu = Scu::connect_default(port);
        let context = scu.context_id(&store.class);
        let id = scu.message_id();
        store.send_half(&mut scu, context, id);
        scu
    })
    .await;
    eventually("a spool file for the partial instance", || async {
        (!site.spool_files().is_empty()).then_some(())
    })
    .await;
    (instance, scu)
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_peers_are_dropped_after_the_timeout() {
    let config = ServerConfig::default()
        .env("ORTHWEB_DICOM_TIMEOUT_SECS", "2")
        .env("ORTHWEB_DICOM_ARTIM_SECS", "2");
    let Some(site) = local_site_with(config) else {
        return;
    };
    let port = site.port();
    // A connection that never sends an A-ASSOCIATE-RQ: closed by the ARTIM timer.
    blocking(move || send_garbage(port, &[])).await;
    site.expect_log(&["no association request in time (ARTIM)"])
        .await;

    // An association that stops in the middle of a data set.
    let (instance, scu) = half_sent_store(&site).await;
    site.expect_log(&["association ended with an error"]).await;
    site.assert_not_stored(&instance.sop_instance_uid).await;
    drop(scu);
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aborted_associations_leave_nothing_behind() {
    let Some(site) = local_site() else { return };
    for abort in [true, false] {
        let (instance, scu) = half_sent_store(&site).await;
        if abort {
            blocking(move || scu.abort().unwrap()).await;
            site.expect_log(&["association aborted by peer"]).await;
        } else {
            blocking(move || scu.drop_connection()).await;
            site.expect_log(&["association ended with an error"]).await;
        }
        site.assert_not_stored(&instance.sop_instance_uid).await;
    }
    site.assert_serves().await;
}
