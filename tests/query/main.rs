//! Query over DICOM against the real binary, with dcmtk's own `findscu` as the peer: C-FIND at
//! every level in the Patient Root and Study Root models (wildcards, case-insensitive names,
//! date ranges, UID lists, a query matching nothing, the computed keys, keys of ancestor
//! levels), the statuses of a query that does not fit its model, of the result limit and of a
//! peer that may not query; a C-CANCEL from a raw SCU. Retrieval (C-MOVE, C-GET) is in
//! `retrieve.rs`, on the same servers.
//! Each of two servers (SQLite + folder, PostgreSQL + S3) holds three studies, two of them of
//! one patient.

#[path = "../common/mod.rs"]
mod common;
mod retrieve;

use std::collections::BTreeSet;
use std::path::Path;

use common::dcmtk::{self, FindResult, Model};
use common::dicomgen::{Depth, Instance, Spec};
use common::pg::PgCluster;
use common::s3::{self, S3Server};
use common::scu::{self, Scu};
use common::server::{Server, ServerConfig};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// The server answers at most this many matches; one query below asks for more.
const FIND_LIMIT: usize = 7;

struct Site {
    server: Server,
    /// Study A: PID1, CT (3) + MR (2), 2024-01-31.
    a: Vec<Instance>,
    /// Study B: PID2, CT (3), 2023-06-15.
    b: Vec<Instance>,
    /// Study C: PID1 again, CT (3), 2022-01-01.
    c: Vec<Instance>,
    work: tempfile::TempDir,
}

impl Site {
    async fn find(&self, model: Model, keys: &[&str]) -> FindResult {
        self.find_as(dcmtk::CALLING_AET, model, keys).await
    }

    async fn find_as(&self, calling_aet: &str, model: Model, keys: &[&str]) -> FindResult {
        self.find_with(calling_aet, model, keys, &[]).await
    }

    async fn find_with(
        &self,
        calling_aet: &str,
        model: Model,
        keys: &[&str],
        args: &[&str],
    ) -> FindResult {
        let out = tempfile::tempdir_in(self.work.path()).unwrap();
        dcmtk::findscu(
            self.server.dicom_port,
            calling_aet,
            "ORTHWEB",
            model,
            keys,
            args,
            out.path(),
        )
        .await
    }
}

fn text(object: &InMemDicomObject, tag: Tag) -> String {
    object
        .get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

fn values(result: &FindResult, tag: Tag) -> BTreeSet<String> {
    result.matches.iter().map(|m| text(m, tag)).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The three studies stored on a new server, its index at `index_url` and its files on `s3`
/// (None: SQLite and a folder).
async fn start(work: tempfile::TempDir, backend: Option<(String, &S3Server)>) -> Site {
    let mut a = Spec::new(1);
    a.add_series("MR", 2, 64, 64, 1, Depth::U12);
    let mut b = Spec::new(2);
    b.study_date = "20230615".into();
    let mut c = Spec::new(3);
    c.patient_id = a.patient_id.clone();
    c.patient_name = a.patient_name.clone();
    c.study_date = "20220101".into();
    let write = |spec: &Spec, name: &str| spec.write(&work.path().join(name)).unwrap();
    let (a, b, c) = (write(&a, "a"), write(&b, "b"), write(&c, "c"));
    let mut config = ServerConfig::default();
    if let Some((url, s3)) = backend {
        config = config
            .arg("--index")
            .arg(url)
            .arg("--storage")
            .arg(format!("s3://{}/query", s3::BUCKET))
            .env("ORTHWEB_S3_PATH_STYLE", "true")
            .envs(s3.env());
    }
    let server = Server::start(
        &work.path().join("data"),
        config
            .env("ORTHWEB_DICOM_FIND_LIMIT", FIND_LIMIT.to_string())
            // The test kit's SCUs may store, query and retrieve; any other peer may only store.
            .env(
                "ORTHWEB_MODALITIES",
                format!(
                    "[{{aet=\"{}\", find=true, move=true, get=true}}]",
                    dcmtk::CALLING_AET
                ),
            ),
    );
    let dirs = ["a", "b", "c"].map(|d| work.path().join(d));
    let out = dcmtk::storescu("127.0.0.1", server.dicom_port, "ORTHWEB", &dirs, &[]).await;
    assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
    Site {
        server,
        a,
        b,
        c,
        work,
    }
}

fn tools_installed() -> bool {
    ["storescu", "findscu", "movescu", "getscu", "storescp"]
        .iter()
        .all(|tool| dcmtk::require_tool(tool))
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_answers_findscu_at_every_level_of_both_models() {
    if !tools_installed() {
        return;
    }
    exercise(&start(tempfile::tempdir().unwrap(), None).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_s3_answer_findscu_at_every_level_of_both_models() {
    if !tools_installed() {
        return;
    }
    let Some(pg) = tokio::task::block_in_place(PgCluster::start) else {
        return;
    };
    let s3 = S3Server::start();
    let url = tokio::task::block_in_place(|| pg.create_database("query"));
    exercise(&start(tempfile::tempdir().unwrap(), Some((url, &s3))).await).await;
}

async fn exercise(site: &Site) {
    let (a, b, c) = (
        &site.a[0].study_uid,
        &site.b[0].study_uid,
        &site.c[0].study_uid,
    );

    // PATIENT level (Patient Root), with a computed key.
    let found = site
        .find(
            Model::PatientRoot,
            &[
                "QueryRetrieveLevel=PATIENT",
                "PatientID=PID1",
                "PatientName",
                "NumberOfPatientRelatedStudies",
            ],
        )
        .await;
    assert_eq!(found.status, "Success", "{}", found.output);
    assert_eq!(found.matches.len(), 1, "{}", found.output);
    let patient = &found.matches[0];
    assert_eq!(text(patient, tags::PATIENT_NAME), "Test^Patient1");
    assert_eq!(text(patient, tags::NUMBER_OF_PATIENT_RELATED_STUDIES), "2");
    assert_eq!(text(patient, tags::QUERY_RETRIEVE_LEVEL), "PATIENT");

    // STUDY level: a wildcard on the name, in another case than stored.
    let found = site
        .find(
            Model::StudyRoot,
            &[
                "QueryRetrieveLevel=STUDY",
                "PatientName=test^patient*",
                "StudyInstanceUID",
                "ModalitiesInStudy",
                "SOPClassesInStudy",
                "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances",
                "PatientID",
            ],
        )
        .await;
    assert_eq!(found.status, "Success", "{}", found.output);
    assert_eq!(values(&found, tags::STUDY_INSTANCE_UID), set(&[a, b, c]));
    let study_a = found
        .matches
        .iter()
        .find(|m| &text(m, tags::STUDY_INSTANCE_UID) == a)
        .unwrap();
    let modalities: BTreeSet<String> = text(study_a, tags::MODALITIES_IN_STUDY)
        .split('\\')
        .map(str::to_string)
        .collect();
    assert_eq!(modalities, set(&["CT", "MR"]));
    let classes: BTreeSet<String> = text(study_a, tags::SOP_CLASSES_IN_STUDY)
        .split('\\')
        .map(str::to_string)
        .collect();
    let expected: BTreeSet<String> = site.a.iter().map(|i| i.sop_class_uid.clone()).collect();
    assert_eq!(classes, expected);
    assert_eq!(text(study_a, tags::NUMBER_OF_STUDY_RELATED_SERIES), "2");
    assert_eq!(text(study_a, tags::NUMBER_OF_STUDY_RELATED_INSTANCES), "5");
    assert_eq!(text(study_a, tags::PATIENT_ID), "PID1");

    // Other text is matched as written: the accession number is stored as ACC1.
    for (accession, expected) in [("ACC1", 1), ("acc1", 0), ("acc*", 0), ("AC?1", 1)] {
        let key = format!("AccessionNumber={accession}");
        let found = site
            .find(Model::StudyRoot, &["QueryRetrieveLevel=STUDY", &key])
            .await;
        assert_eq!(found.matches.len(), expected, "{key}: {}", found.output);
    }

    // Date ranges, closed and open.
    let by_date = |range: &'static str| {
        let site = &*site;
        async move {
            let key = format!("StudyDate={range}");
            let found = site
                .find(
                    Model::StudyRoot,
                    &["QueryRetrieveLevel=STUDY", &key, "StudyInstanceUID"],
                )
                .await;
            assert_eq!(found.status, "Success", "{}", found.output);
            values(&found, tags::STUDY_INSTANCE_UID)
        }
    };
    assert_eq!(by_date("20230101-20241231").await, set(&[a, b]));
    assert_eq!(by_date("-20221231").await, set(&[c]));
    assert_eq!(by_date("20240131").await, set(&[a]));

    // The same over a deflated presentation context: identifiers inflated and deflated.
    let found = site
        .find_with(
            dcmtk::CALLING_AET,
            Model::StudyRoot,
            &[
                "QueryRetrieveLevel=STUDY",
                "PatientName=TEST^PATIENT1",
                "StudyInstanceUID",
            ],
            &["-xd"],
        )
        .await;
    assert_eq!(found.status, "Success", "{}", found.output);
    assert_eq!(values(&found, tags::STUDY_INSTANCE_UID), set(&[a, c]));

    // A list of UIDs.
    let list = format!("StudyInstanceUID={a}\\{c}");
    let found = site
        .find(Model::StudyRoot, &["QueryRetrieveLevel=STUDY", &list])
        .await;
    assert_eq!(values(&found, tags::STUDY_INSTANCE_UID), set(&[a, c]));

    // SERIES level under one study, by modality.
    let study = format!("StudyInstanceUID={a}");
    let found = site
        .find(
            Model::StudyRoot,
            &[
                "QueryRetrieveLevel=SERIES",
                &study,
                "Modality=MR",
                "SeriesInstanceUID",
                "NumberOfSeriesRelatedInstances",
            ],
        )
        .await;
    assert_eq!(found.status, "Success", "{}", found.output);
    assert_eq!(found.matches.len(), 1, "{}", found.output);
    let mr = site.a.iter().find(|i| i.series_uid != site.a[0].series_uid);
    assert_eq!(
        text(&found.matches[0], tags::SERIES_INSTANCE_UID),
        mr.unwrap().series_uid
    );
    assert_eq!(
        text(&found.matches[0], tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
        "2"
    );

    // IMAGE level (Study Root), with keys of the study and patient above it.
    let series = format!("SeriesInstanceUID={}", site.a[0].series_uid);
    let found = site
        .find(
            Model::StudyRoot,
            &[
                "QueryRetrieveLevel=IMAGE",
                &study,
                &series,
                "InstanceNumber=2",
                "SOPInstanceUID",
                "SOPClassUID",
                "PatientName",
                "StudyDate",
            ],
        )
        .await;
    assert_eq!(found.status, "Success", "{}", found.output);
    assert_eq!(found.matches.len(), 1, "{}", found.output);
    let image = &found.matches[0];
    let second = site.a.iter().find(|i| i.instance_number == 2).unwrap();
    assert_eq!(text(image, tags::SOP_INSTANCE_UID), second.sop_instance_uid);
    assert_eq!(text(image, tags::PATIENT_NAME), "Test^Patient1");
    assert_eq!(text(image, tags::STUDY_DATE), "20240131");

    // IMAGE level (Patient Root), every instance of one patient's studies.
    let found = site
        .find(
            Model::PatientRoot,
            &[
                "QueryRetrieveLevel=IMAGE",
                "PatientID=PID2",
                "SOPInstanceUID",
            ],
        )
        .await;
    let expected: BTreeSet<String> = site.b.iter().map(|i| i.sop_instance_uid.clone()).collect();
    assert_eq!(values(&found, tags::SOP_INSTANCE_UID), expected);

    // Nothing matches: no pending response, success.
    let found = site
        .find(
            Model::StudyRoot,
            &["QueryRetrieveLevel=STUDY", "PatientID=NOBODY"],
        )
        .await;
    assert_eq!(found.status, "Success", "{}", found.output);
    assert!(found.matches.is_empty(), "{}", found.output);

    // PATIENT level does not exist in the Study Root model: A900.
    let found = site
        .find(
            Model::StudyRoot,
            &["QueryRetrieveLevel=PATIENT", "PatientID"],
        )
        .await;
    assert_eq!(
        found.status, "Error: DataSetDoesNotMatchSOPClass",
        "{}",
        found.output
    );
    assert!(found.matches.is_empty());

    // More matches than the limit: that many, then A700 (out of resources).
    let found = site
        .find(
            Model::PatientRoot,
            &[
                "QueryRetrieveLevel=IMAGE",
                "PatientID=PID1",
                "SOPInstanceUID",
            ],
        )
        .await;
    assert_eq!(site.a.len() + site.c.len(), FIND_LIMIT + 1);
    assert_eq!(found.matches.len(), FIND_LIMIT, "{}", found.output);
    assert!(
        found.status.contains("OutOfResources") || found.status.contains("A700"),
        "{}",
        found.output
    );
    assert_log_names_the_caller(&site.server.log);
    assert_queries_are_audited(&site.server).await;
    cancel_ends_a_query(site.server.dicom_port).await;

    // A peer whose rule does not say `find`: 0124, nothing answered.
    let found = site
        .find_as(
            "OTHERSCU",
            Model::StudyRoot,
            &["QueryRetrieveLevel=STUDY", "StudyInstanceUID"],
        )
        .await;
    assert!(found.matches.is_empty(), "{}", found.output);
    assert!(found.status.contains("0x124"), "{}", found.output);

    retrieve::exercise(site).await;
}

/// A C-CANCEL sent right behind the query (in the same TCP write, so the outcome does not
/// hang on scheduling) ends it with status FE00 after the match in flight, and the
/// association goes on.
async fn cancel_ends_a_query(port: u16) {
    let (responses, echo) = scu::blocking(move || {
        let contexts: &[(&str, &[&str])] = &[
            (scu::VERIFICATION, &[scu::IMPLICIT_LE]),
            (scu::STUDY_ROOT_FIND, &[scu::EXPLICIT_LE]),
        ];
        let mut peer = Scu::connect(port, dcmtk::CALLING_AET, "ORTHWEB", contexts).unwrap();
        let context = peer.context_id(scu::STUDY_ROOT_FIND);
        let id = peer.message_id();
        let command = scu::request(
            scu::C_FIND_RQ,
            id,
            Some(scu::STUDY_ROOT_FIND),
            None,
            scu::HAS_DATA_SET,
        );
        peer.send_command(context, &scu::encode_command(&command))
            .unwrap();
        let identifier = scu::encode_explicit_le(&InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::QUERY_RETRIEVE_LEVEL,
                VR::CS,
                PrimitiveValue::from("IMAGE "),
            ),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::Empty),
        ]));
        peer.send_data_and_cancel(context, &identifier, id).unwrap();
        let responses = peer.receive_until_final().unwrap();
        let echo = peer.echo().unwrap();
        peer.release().unwrap();
        (responses, echo)
    })
    .await;
    let (last, _) = responses.last().unwrap();
    assert_eq!(last.status, 0xFE00, "{responses:?}");
    // The query matches every instance (11, past the limit of 7); far fewer are sent.
    assert!(responses.len() - 1 < FIND_LIMIT, "{responses:?}");
    for (pending, data_set) in &responses[..responses.len() - 1] {
        assert_eq!(pending.status, 0xFF00);
        assert!(!data_set.is_empty(), "a pending response without its match");
    }
    assert_eq!(echo.status, 0);
}

/// Each query is in the audit trail, with the peer's address and calling AE title (events
/// reach the index in batches, within a second).
async fn assert_queries_are_audited(server: &Server) {
    let url = server.url("/audit?action=dicom-find&limit=1000");
    for _ in 0..50 {
        let page: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        let events = page["Events"].as_array().unwrap();
        if events.len() >= 10 {
            let first = &events[0];
            assert_eq!(first["Client"], "127.0.0.1", "{first}");
            assert_eq!(first["Level"], "Patient", "{first}");
            let detail = first["Detail"].as_str().unwrap();
            assert!(detail.contains(dcmtk::CALLING_AET), "{first}");
            assert!(detail.contains("PID1"), "{first}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the queries never reached the audit trail");
}

/// Each query is logged with the calling AE title.
fn assert_log_names_the_caller(log: &Path) {
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("C-FIND") && l.contains(dcmtk::CALLING_AET)),
        "no C-FIND line with the calling AE title in the log"
    );
}
