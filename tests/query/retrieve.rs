//! Retrieval against the real binary, with dcmtk as both ends: `movescu` asks, a `storescp`
//! started here receives (registered over REST, as an administrator would), and every instance
//! must arrive with its data set byte for byte as stored. Unknown destinations, identifiers
//! without their unique key, a C-CANCEL and a destination that goes away mid-move too.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::Site;
use crate::common::dcmtk::{self, Model, Storescp};
use crate::common::dicomgen::Instance;
use crate::common::orthanc_id;
use crate::common::scu::{self, Scu};
use crate::common::server::{Server, ServerConfig};

const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const C_MOVE_RQ: u16 = 0x0021;

pub async fn exercise(site: &Site) {
    let moved = site.work.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    let scp = tokio::task::block_in_place(|| Storescp::start("STORESCP", &moved, &[]));
    register(site, "archive2", &scp).await;

    // A study, in the Study Root model.
    let study_a = &site.a[0].study_uid;
    let key = format!("StudyInstanceUID={study_a}");
    let result = site
        .move_to(
            "STORESCP",
            Model::StudyRoot,
            &["QueryRetrieveLevel=STUDY", &key],
        )
        .await;
    assert!(result.status.contains("Success"), "{}", result.output);
    assert_eq!(
        (result.completed, result.failed),
        (5, 0),
        "{}",
        result.output
    );
    assert_arrived_as_stored(site, &site.a, &moved).await;

    // A patient, in the Patient Root model (study B is PID2's only study).
    let result = site
        .move_to(
            "STORESCP",
            Model::PatientRoot,
            &["QueryRetrieveLevel=PATIENT", "PatientID=PID2"],
        )
        .await;
    assert_eq!(
        (result.completed, result.failed),
        (3, 0),
        "{}",
        result.output
    );
    assert_arrived_as_stored(site, &site.b, &moved).await;

    // Two images by a UID list.
    let list = format!(
        "SOPInstanceUID={}\\{}",
        site.c[0].sop_instance_uid, site.c[2].sop_instance_uid
    );
    let series = format!("SeriesInstanceUID={}", site.c[0].series_uid);
    let study = format!("StudyInstanceUID={}", site.c[0].study_uid);
    let result = site
        .move_to(
            "STORESCP",
            Model::StudyRoot,
            &["QueryRetrieveLevel=IMAGE", &study, &series, &list],
        )
        .await;
    assert_eq!(
        (result.completed, result.failed),
        (2, 0),
        "{}",
        result.output
    );
    assert_arrived_as_stored(site, &[site.c[0].clone(), site.c[2].clone()], &moved).await;

    // Nowhere to send to: A801, and nothing sent.
    let result = site
        .move_to(
            "NOSUCHAE",
            Model::StudyRoot,
            &["QueryRetrieveLevel=STUDY", &key],
        )
        .await;
    assert!(result.status.contains("0xa801"), "{}", result.output);
    // No StudyInstanceUID: it would send everything; A900 instead.
    let result = site
        .move_to(
            "STORESCP",
            Model::StudyRoot,
            &["QueryRetrieveLevel=STUDY", "PatientID=PID1"],
        )
        .await;
    assert!(result.status.contains("0xa900"), "{}", result.output);
    let received = std::fs::read_dir(&moved).unwrap().count();
    assert_eq!(received, 5 + 3 + 2, "only what was asked for arrived");

    // A peer that may not retrieve.
    let out = dcmtk_move_as(site, "OTHERSCU", &key).await;
    assert!(out.status.contains("0x0124"), "{}", out.output);

    get_sends_over_the_requesters_association(site).await;
    peers_change_over_rest(site).await;
    cancel_ends_a_move(site, &moved).await;
    a_destination_that_goes_away_fails_the_rest(site).await;
    assert_moves_are_audited(site).await;
    compressed_instances_are_decompressed_for_peers_that_want_them(site, &moved).await;
    pull_from_and_push_to_another_orthweb(site).await;
}

impl Site {
    async fn move_to(
        &self,
        destination: &str,
        model: Model,
        keys: &[&str],
    ) -> dcmtk::RetrieveResult {
        dcmtk::movescu(
            self.server.dicom_port,
            dcmtk::CALLING_AET,
            model,
            destination,
            keys,
        )
        .await
    }
}

async fn dcmtk_move_as(site: &Site, calling: &str, key: &str) -> dcmtk::RetrieveResult {
    dcmtk::movescu(
        site.server.dicom_port,
        calling,
        Model::StudyRoot,
        "STORESCP",
        &["QueryRetrieveLevel=STUDY", key],
    )
    .await
}

/// `PUT /modalities/{name}` for `scp`, as Orthanc's clients do.
async fn register(site: &Site, name: &str, scp: &Storescp) {
    let client = reqwest::Client::new();
    let body = serde_json::json!({"AET": scp.aet, "Host": "127.0.0.1", "Port": scp.port});
    let response = client
        .put(site.server.url(&format!("/modalities/{name}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let listed = site.server.get_json("/modalities?expand").await;
    assert_eq!(listed[name]["AET"], scp.aet.as_str(), "{listed}");
    assert_eq!(listed[name]["Port"], scp.port, "{listed}");
    let echo = client
        .post(site.server.url(&format!("/modalities/{name}/echo")))
        .send()
        .await
        .unwrap();
    assert!(echo.status().is_success(), "echo: {}", echo.status());
}

/// The data set after a part-10 file's meta group.
fn data_set(bytes: &[u8]) -> &[u8] {
    assert_eq!(&bytes[128..132], b"DICM");
    let group = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    &bytes[144 + group..]
}

/// Each instance arrived in `dir` (storescp names files by modality and SOP Instance UID) with
/// the data set the server holds, byte for byte.
async fn assert_arrived_as_stored(site: &Site, instances: &[Instance], dir: &Path) {
    for instance in instances {
        let received = received_file(dir, &instance.sop_instance_uid);
        let received = std::fs::read(&received).unwrap();
        let patient = patient_of(instance);
        let id = orthanc_id(&[
            &patient,
            &instance.study_uid,
            &instance.series_uid,
            &instance.sop_instance_uid,
        ]);
        let stored = reqwest::get(site.server.url(&format!("/instances/{id}/file")))
            .await
            .unwrap();
        assert!(stored.status().is_success(), "{id}: {}", stored.status());
        let stored = stored.bytes().await.unwrap();
        assert!(
            data_set(&received) == data_set(&stored),
            "{}: the data set that arrived is not the one stored",
            instance.sop_instance_uid
        );
    }
}

fn received_file(dir: &Path, sop_instance_uid: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(&format!(".{sop_instance_uid}"))
        })
        .unwrap_or_else(|| panic!("{sop_instance_uid} did not arrive in {}", dir.display()))
}

/// Each study's Spec seed gives its patient, except study C's, which is PID1's second study.
fn patient_of(instance: &Instance) -> String {
    let seed = (1..=4)
        .find(|seed| crate::common::dicomgen::uid(*seed, &[1]) == instance.study_uid)
        .expect("a study of this test");
    format!("PID{}", if seed == 3 { 1 } else { seed })
}

/// A C-CANCEL right behind the C-MOVE, to a destination that takes a second per instance:
/// the move ends with FE00 after the instance in flight, and the association goes on.
async fn cancel_ends_a_move(site: &Site, moved: &Path) {
    let slow_dir = moved.with_file_name("slow");
    std::fs::create_dir(&slow_dir).unwrap();
    let slow = tokio::task::block_in_place(|| {
        Storescp::start("SLOWSCP", &slow_dir, &["--sleep-during", "1"])
    });
    register(site, "slow", &slow).await;
    let port = site.server.dicom_port;
    let study = site.a[0].study_uid.clone();
    let (responses, echo) = scu::blocking(move || {
        let contexts: &[(&str, &[&str])] = &[
            (scu::VERIFICATION, &[scu::IMPLICIT_LE]),
            (STUDY_ROOT_MOVE, &[scu::EXPLICIT_LE]),
        ];
        let mut peer = Scu::connect(port, dcmtk::CALLING_AET, "ORTHWEB", contexts).unwrap();
        let context = peer.context_id(STUDY_ROOT_MOVE);
        let id = peer.message_id();
        let mut command = scu::request(
            C_MOVE_RQ,
            id,
            Some(STUDY_ROOT_MOVE),
            None,
            scu::HAS_DATA_SET,
        );
        command.put(DataElement::new(
            tags::MOVE_DESTINATION,
            VR::AE,
            PrimitiveValue::from("SLOWSCP "),
        ));
        peer.send_command(context, &scu::encode_command(&command))
            .unwrap();
        let identifier = scu::encode_explicit_le(&InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::QUERY_RETRIEVE_LEVEL,
                VR::CS,
                PrimitiveValue::from("STUDY "),
            ),
            DataElement::new(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(even(&study)),
            ),
        ]));
        peer.send_data(context, &identifier, true).unwrap();
        peer.send_command(context, &scu::cancel_rq(id)).unwrap();
        let responses = peer.receive_until_final().unwrap();
        let echo = peer.echo().unwrap();
        peer.release().unwrap();
        (responses, echo)
    })
    .await;
    let (last, _) = responses.last().unwrap();
    assert_eq!(last.status, 0xFE00, "{responses:?}");
    let arrived = std::fs::read_dir(&slow_dir).unwrap().count();
    assert!(
        (1..5).contains(&arrived),
        "{arrived} of 5 instances sent after the cancel"
    );
    assert_eq!(echo.status, 0);
}

fn even(uid: &str) -> String {
    let mut uid = uid.to_string();
    if uid.len() % 2 == 1 {
        uid.push('\0');
    }
    uid
}

/// A destination that aborts during the first instance: every instance counts as failed, with
/// the failed ones listed, and the server goes on serving.
async fn a_destination_that_goes_away_fails_the_rest(site: &Site) {
    let dir = site.work.path().join("aborting");
    std::fs::create_dir(&dir).unwrap();
    let aborting =
        tokio::task::block_in_place(|| Storescp::start("ABORTSCP", &dir, &["--abort-during"]));
    register(site, "aborting", &aborting).await;
    let key = format!("StudyInstanceUID={}", site.b[0].study_uid);
    let result = site
        .move_to(
            "ABORTSCP",
            Model::StudyRoot,
            &["QueryRetrieveLevel=STUDY", &key],
        )
        .await;
    assert_eq!(
        (result.completed, result.failed),
        (0, 3),
        "{}",
        result.output
    );
    assert!(result.status.contains("0xa702"), "{}", result.output);
    for instance in &site.b {
        assert!(
            result.output.contains(&instance.sop_instance_uid),
            "{} not in the Failed SOP Instance UID List: {}",
            instance.sop_instance_uid,
            result.output
        );
    }
    let echo = dcmtk::echoscu("127.0.0.1", site.server.dicom_port, "ORTHWEB").await;
    assert!(echo.status.success(), "{}", dcmtk::text(&echo));
}

/// Each move is in the audit trail with the caller and the destination.
async fn assert_moves_are_audited(site: &Site) {
    let url = site.server.url("/audit?action=dicom-move&limit=100");
    for _ in 0..50 {
        let page: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        let events = page["Events"].as_array().unwrap();
        if let Some(event) = events
            .iter()
            .find(|e| e["Detail"].as_str().unwrap_or("").contains("STORESCP"))
        {
            assert_eq!(event["Client"], "127.0.0.1", "{event}");
            let detail = event["Detail"].as_str().unwrap();
            assert!(detail.contains(dcmtk::CALLING_AET), "{event}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the moves never reached the audit trail");
}

/// Peers added over REST take effect from the next association; those of the settings cannot
/// be changed there; bad definitions are refused.
async fn peers_change_over_rest(site: &Site) {
    let client = reqwest::Client::new();
    let url = |path: &str| site.server.url(path);
    let query = || {
        site.find_as(
            "QUERIER",
            Model::StudyRoot,
            &["QueryRetrieveLevel=STUDY", "StudyInstanceUID"],
        )
    };
    assert!(query().await.status.contains("0x124"), "not known yet");
    let put = client
        .put(url("/modalities/querier"))
        .json(&serde_json::json!({"AET": "QUERIER", "AllowFind": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let found = query().await;
    assert_eq!(found.status, "Success", "{}", found.output);
    assert_eq!(found.matches.len(), 3, "{}", found.output);
    let config = site
        .server
        .get_json("/modalities/querier/configuration")
        .await;
    assert_eq!(config["AllowFind"], true, "{config}");
    let deleted = client
        .delete(url("/modalities/querier"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert!(query().await.status.contains("0x124"), "removed");

    let status = |r: reqwest::Response| r.status().as_u16();
    let configured = client.delete(url(&format!("/modalities/{}", dcmtk::CALLING_AET)));
    assert_eq!(
        status(configured.send().await.unwrap()),
        409,
        "settings peers are read-only"
    );
    let missing = client
        .delete(url("/modalities/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(missing), 404);
    for bad in [
        serde_json::json!({"Host": "127.0.0.1", "Port": 104}),
        serde_json::json!({"AET": "X", "Host": "127.0.0.1"}),
        serde_json::json!({"AET": "X", "Port": "not a port", "Host": "h"}),
    ] {
        let put = client
            .put(url("/modalities/bad"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(status(put), 400, "{bad}");
    }
    let unreachable = client
        .post(url("/modalities/nobody/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(unreachable), 404);
}

/// getscu of a series: the instances come back over its own association, as stored.
async fn get_sends_over_the_requesters_association(site: &Site) {
    let got = site.work.path().join("got");
    std::fs::create_dir(&got).unwrap();
    let series_uid = &site.a.last().unwrap().series_uid;
    let series: Vec<Instance> = site
        .a
        .iter()
        .filter(|i| &i.series_uid == series_uid)
        .cloned()
        .collect();
    let keys = [
        "QueryRetrieveLevel=SERIES".to_string(),
        format!("StudyInstanceUID={}", site.a[0].study_uid),
        format!("SeriesInstanceUID={series_uid}"),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let get = |calling: &'static str, keys: Vec<&'static str>| {
        let got = got.clone();
        let port = site.server.dicom_port;
        async move { dcmtk::getscu(port, calling, Model::StudyRoot, &keys, &[], &got).await }
    };
    let result = dcmtk::getscu(
        site.server.dicom_port,
        dcmtk::CALLING_AET,
        Model::StudyRoot,
        &keys,
        &[],
        &got,
    )
    .await;
    assert!(result.status.contains("Success"), "{}", result.output);
    assert_eq!(
        (result.completed, result.failed),
        (series.len() as u32, 0),
        "{}",
        result.output
    );
    assert_arrived_as_stored(site, &series, &got).await;
    assert_eq!(std::fs::read_dir(&got).unwrap().count(), series.len());

    // A peer that may not retrieve gets 0124 and nothing.
    let refused = get(
        "OTHERSCU",
        vec!["QueryRetrieveLevel=PATIENT", "PatientID=PID2"],
    )
    .await;
    assert!(refused.status.contains("0x0124"), "{}", refused.output);
    assert_eq!(std::fs::read_dir(&got).unwrap().count(), series.len());
}

/// A study with one RLE-compressed instance, moved to a storescp that takes only uncompressed
/// syntaxes: that instance arrives decompressed (Explicit VR Little Endian, the same pixels),
/// the others as stored.
async fn compressed_instances_are_decompressed_for_peers_that_want_them(site: &Site, moved: &Path) {
    let work = site.work.path().join("d");
    let d = crate::common::dicomgen::Spec::new(4).write(&work).unwrap();
    let original = d[0].path.clone();
    let rle = work.join("rle.dcm");
    let out = std::process::Command::new("dcmcrle")
        .arg(&original)
        .arg(&rle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", dcmtk::text(&out));
    std::fs::remove_file(&original).unwrap();
    let out = dcmtk::storescu(
        "127.0.0.1",
        site.server.dicom_port,
        "ORTHWEB",
        &[&work],
        &["-xr"],
    )
    .await;
    assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
    let uncompressed = moved.with_file_name("uncompressed");
    std::fs::create_dir(&uncompressed).unwrap();
    let scp = tokio::task::block_in_place(|| Storescp::start("PLAINSCP", &uncompressed, &[]));
    register(site, "plain", &scp).await;
    let key = format!("StudyInstanceUID={}", d[0].study_uid);
    let result = site
        .move_to(
            "PLAINSCP",
            Model::StudyRoot,
            &["QueryRetrieveLevel=STUDY", &key],
        )
        .await;
    assert_eq!(
        (result.completed, result.failed),
        (3, 0),
        "{}",
        result.output
    );
    assert_arrived_as_stored(site, &d[1..], &uncompressed).await;

    let stored = dicom_object::open_file(&rle).unwrap();
    assert_eq!(
        stored.meta().transfer_syntax().trim_end_matches('\0'),
        "1.2.840.10008.1.2.5",
        "the instance was stored compressed"
    );
    let received =
        dicom_object::open_file(received_file(&uncompressed, &d[0].sop_instance_uid)).unwrap();
    assert_eq!(
        received.meta().transfer_syntax().trim_end_matches('\0'),
        scu::EXPLICIT_LE
    );
    let pixels = |path: &Path| {
        dicom_object::open_file(path)
            .unwrap()
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec()
    };
    // The original was written before compression; rle.dcm went through dcmcrle.
    let expected = {
        let regenerated = site.work.path().join("d-original");
        crate::common::dicomgen::Spec::new(4)
            .write(&regenerated)
            .unwrap();
        pixels(&regenerated.join(original.file_name().unwrap()))
    };
    let got = pixels(&received_file(&uncompressed, &d[0].sop_instance_uid));
    assert!(
        got == expected,
        "the decompressed pixels differ from the original"
    );
}

/// A second Orthweb as the old PACS: a REST query finds a study there, its retrieval (C-MOVE to
/// us) brings it here as it is there, and `POST /modalities/{name}/store` pushes one back,
/// synchronously and as a job.
async fn pull_from_and_push_to_another_orthweb(site: &Site) {
    let dir = site.work.path().join("oldpacs");
    let old = tokio::task::block_in_place(|| {
        Server::start(
            &dir.join("data"),
            ServerConfig::default().env("ORTHWEB_AET", "OLDPACS").env(
                "ORTHWEB_MODALITIES",
                format!(
                    "[{{name=\"new\", aet=\"ORTHWEB\", host=\"127.0.0.1\", port={}, find=true, move=true}}]",
                    site.server.dicom_port
                ),
            ),
        )
    });
    let e = crate::common::dicomgen::Spec::new(5)
        .write(&dir.join("e"))
        .unwrap();
    let out = dcmtk::storescu(
        "127.0.0.1",
        old.dicom_port,
        "OLDPACS",
        &[dir.join("e")],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", dcmtk::text(&out));

    let client = reqwest::Client::new();
    let body = serde_json::json!({"AET": "OLDPACS", "Host": "127.0.0.1", "Port": old.dicom_port});
    let put = client
        .put(site.server.url("/modalities/oldpacs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let post = |path: String, body: serde_json::Value| {
        let request = client.post(site.server.url(&path)).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(status.is_success(), "POST {path}: {status} {body}");
            body
        }
    };

    // Query: the old PACS's study of PID5, and only it.
    let query = post(
        "/modalities/oldpacs/query".into(),
        serde_json::json!({"Level": "Study", "Query": {"PatientID": "PID5"}}),
    )
    .await;
    let id = query["ID"].as_str().unwrap().to_string();
    let answers = site
        .server
        .get_json(&format!("/queries/{id}/answers?expand"))
        .await;
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["StudyInstanceUID"], e[0].study_uid.as_str());
    assert_eq!(answers[0]["PatientName"], "Test^Patient5");

    // Retrieve it here.
    let retrieved = post(format!("/queries/{id}/retrieve"), serde_json::json!({})).await;
    assert_eq!(retrieved["CompletedSubOperations"], 3, "{retrieved}");
    for instance in &e {
        let id = orthanc_id(&[
            "PID5",
            &instance.study_uid,
            &instance.series_uid,
            &instance.sop_instance_uid,
        ]);
        let here = reqwest::get(site.server.url(&format!("/instances/{id}/file")))
            .await
            .unwrap();
        assert_eq!(
            here.status(),
            200,
            "{} was not retrieved",
            instance.sop_instance_uid
        );
        let there = reqwest::get(old.url(&format!("/instances/{id}/file")))
            .await
            .unwrap();
        let (here, there) = (here.bytes().await.unwrap(), there.bytes().await.unwrap());
        assert!(
            data_set(&here) == data_set(&there),
            "retrieved as stored there"
        );
    }

    // Push study A back, synchronously, then study B as a job.
    let study_a = orthanc_id(&["PID1", &site.a[0].study_uid]);
    let sent = post(
        "/modalities/oldpacs/store".into(),
        serde_json::json!([study_a]),
    )
    .await;
    assert_eq!(sent["InstancesCount"], 5, "{sent}");
    assert_eq!(sent["FailedInstancesCount"], 0, "{sent}");
    let there = old.get_json(&format!("/studies/{study_a}/instances")).await;
    assert_eq!(there.as_array().map(Vec::len), Some(5), "study A is there");
    let study_b = orthanc_id(&["PID2", &site.b[0].study_uid]);
    let job = post(
        "/modalities/oldpacs/store".into(),
        serde_json::json!({"Resources": [study_b], "Asynchronous": true}),
    )
    .await;
    let job_path = job["Path"].as_str().unwrap().to_string();
    let mut state = serde_json::Value::Null;
    for _ in 0..100 {
        state = site.server.get_json(&job_path).await;
        if state["State"] == "Success" || state["State"] == "Failure" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state["State"], "Success", "{state}");
    assert_eq!(state["Type"], "DicomModalityStore", "{state}");
    assert_eq!(state["Progress"], 100, "{state}");
    assert_eq!(state["Content"]["InstancesCount"], 3, "{state}");
    let statistics = old.get_json("/statistics").await;
    assert_eq!(statistics["CountInstances"], 3 + 5 + 3, "{statistics}");

    // A peer that is down: a clear 502, and the server goes on.
    let down = old.url("/");
    drop(old);
    let failed = client
        .post(site.server.url("/modalities/oldpacs/store"))
        .json(&serde_json::json!([study_b]))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502, "{down}");
}
