//! `POST /tools/find` (matching, paging, ordering, expansion, requested tags, refusals) and
//! `POST /tools/lookup`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::pg::PgCluster;
use crate::corpus::Corpus;
use crate::resources::check_resource;
use crate::support::{Api, Level, keys, set, without};

/// The IDs a find answers, as a set; each answered once.
async fn found(api: &Api, body: Value) -> BTreeSet<String> {
    let ids = api.find_ids(&body).await;
    let unique = set(&ids);
    assert_eq!(
        unique.len(),
        ids.len(),
        "/tools/find {body}: an ID twice: {ids:?}"
    );
    unique
}

fn ids<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    set(items)
}

/// Wildcards, case (in)sensitivity, lists, date ranges, tags by number, constraints on upper
/// levels, `ModalitiesInStudy`, `Parent*`.
pub async fn matching(api: &Api, c: &Corpus) {
    let (p1, p2, p3) = (c.patient(0), c.patient(1), c.patient(2));
    let (s1, s2, s3, s4) = (c.study(0), c.study(1), c.study(2), c.study(3));
    let find = |level: &str, query: Value| json!({"Level": level, "Query": query});
    let case_sensitive =
        |level: &str, query: Value| json!({"Level": level, "Query": query, "CaseSensitive": true});

    // Patients.
    let cases = [
        (find("Patient", json!({})), ids([p1, p2, p3])),
        (
            find("Patient", json!({"PatientName": "*"})),
            ids([p1, p2, p3]),
        ),
        (
            find("Patient", json!({"PatientName": "DOE*"})),
            ids([p1, p2]),
        ),
        (
            find("Patient", json!({"PatientName": "doe*"})),
            ids([p1, p2]),
        ),
        (
            case_sensitive("Patient", json!({"PatientName": "doe*"})),
            ids([]),
        ),
        (
            case_sensitive("Patient", json!({"PatientName": "DOE*"})),
            ids([p1, p2]),
        ),
        (
            find("Patient", json!({"PatientName": "D?E^J*N"})),
            ids([p1]),
        ),
        (find("Patient", json!({"PatientName": "*JANE"})), ids([p2])),
        (
            find("Patient", json!({"PatientName": "doe^john"})),
            ids([p1]),
        ),
        (find("Patient", json!({"PatientName": "DOE^JO"})), ids([])),
        (
            find("Patient", json!({"PatientName": "Müller*"})),
            ids([p3]),
        ),
        (find("Patient", json!({"PatientID": "RESTP2"})), ids([p2])),
        (find("Patient", json!({"0010,0020": "RESTP3"})), ids([p3])),
        (find("Patient", json!({"PatientSex": "M"})), ids([p1, p3])),
        (
            find("Patient", json!({"PatientBirthDate": "-19800101"})),
            ids([p1, p3]),
        ),
        (
            find("patient", json!({"PatientID": "RESTP1\\RESTP3"})),
            ids([p1, p3]),
        ),
        // Case-insensitive matching applies to every tag in the REST API, not only names.
        (find("Patient", json!({"PatientID": "restp2"})), ids([p2])),
        (
            case_sensitive("Patient", json!({"PatientID": "restp2"})),
            ids([]),
        ),
        // Beyond ASCII.
        (
            find("Patient", json!({"PatientName": "müller*"})),
            ids([p3]),
        ),
        (
            find("Patient", json!({"PatientName": "MÜLLER^JÜRGEN"})),
            ids([p3]),
        ),
        // SQL's wildcards are plain characters in DICOM patterns.
        (find("Patient", json!({"PatientName": "DOE%"})), ids([])),
        (find("Patient", json!({"PatientName": "DOE_JOHN"})), ids([])),
        (find("Patient", json!({"PatientName": "DOE^J%"})), ids([])),
    ];
    for (body, want) in cases {
        assert_eq!(found(api, body.clone()).await, want, "/tools/find {body}");
    }

    // Studies.
    let cases = [
        (
            find("Study", json!({"StudyDate": "20240101-20241231"})),
            ids([s2, s3]),
        ),
        (
            find("Study", json!({"StudyDate": "-20230115"})),
            ids([s1, s4]),
        ),
        (
            find("Study", json!({"StudyDate": "20240220-"})),
            ids([s2, s3]),
        ),
        (find("Study", json!({"StudyDate": "20221231"})), ids([s4])),
        (
            find("Study", json!({"StudyDate": "20230115\\20221231"})),
            ids([s1, s4]),
        ),
        (find("Study", json!({"0008,0020": "20240610"})), ids([s3])),
        (
            find("Study", json!({"StudyDescription": "CT*"})),
            ids([s1, s3]),
        ),
        (
            case_sensitive("Study", json!({"StudyDescription": "CT*"})),
            ids([s1]),
        ),
        (
            find("Study", json!({"StudyDescription": "*brain"})),
            ids([s2]),
        ),
        // A dash is a range only in dates and times.
        (
            find("Study", json!({"AccessionNumber": "A-30?"})),
            ids([s1, s2, s3, s4]),
        ),
        (
            find("Study", json!({"AccessionNumber": "A-302"})),
            ids([s2]),
        ),
        (
            find("Study", json!({"StudyInstanceUID": c.get(s3).uid})),
            ids([s3]),
        ),
        (
            find("Study", json!({"PatientName": "DOE^JOHN"})),
            ids([s1, s2]),
        ),
        (
            find(
                "Study",
                json!({"PatientName": "DOE*", "StudyDate": "20240101-"}),
            ),
            ids([s2, s3]),
        ),
        (
            find("Study", json!({"ModalitiesInStudy": "MR"})),
            ids([s2, s4]),
        ),
        (
            find("Study", json!({"ModalitiesInStudy": "CT\\PT"})),
            ids([s1, s3]),
        ),
        (find("Study", json!({"ModalitiesInStudy": "PT"})), ids([s3])),
        (find("Study", json!({"ModalitiesInStudy": "US"})), ids([])),
        (
            find("Study", json!({"ModalitiesInStudy": "CT\\US"})),
            ids([s1, s3]),
        ),
        // Time ranges, on a tag kept in the JSON of main tags (every study is at 101500).
        (
            find("Study", json!({"StudyTime": "100000-110000"})),
            ids([s1, s2, s3, s4]),
        ),
        (
            find("Study", json!({"StudyTime": "-101500"})),
            ids([s1, s2, s3, s4]),
        ),
        (find("Study", json!({"StudyTime": "101501-"})), ids([])),
        (
            find("Study", json!({"StudyDate": "20241231-20240101"})),
            ids([]),
        ),
        (find("Study", json!({"AccessionNumber": "A_301"})), ids([])),
        (
            json!({"Level": "Study", "Query": {}, "ParentPatient": p1}),
            ids([s1, s2]),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(found(api, body.clone()).await, want, "/tools/find {body}");
    }

    // Series.
    let series = |k: usize, s: usize| c.series(k, s);
    let cases = [
        (
            find("Series", json!({"Modality": "CT"})),
            ids([series(0, 0), series(0, 1), series(2, 0)]),
        ),
        (
            find("Series", json!({"Modality": "CT\\MR"})),
            ids([
                series(0, 0),
                series(0, 1),
                series(1, 0),
                series(2, 0),
                series(3, 0),
            ]),
        ),
        (
            find("Series", json!({"Modality": "mr"})),
            ids([series(1, 0), series(3, 0)]),
        ),
        (case_sensitive("Series", json!({"Modality": "mr"})), ids([])),
        (
            find("Series", json!({"SeriesDescription": "Axial*"})),
            ids([series(0, 0)]),
        ),
        (
            case_sensitive("Series", json!({"SeriesDescription": "*axial"})),
            ids([series(1, 0)]),
        ),
        (
            find("Series", json!({"SeriesDescription": "*AXIAL*"})),
            ids([series(0, 0), series(1, 0)]),
        ),
        (
            find("Series", json!({"StudyDescription": "MR*"})),
            ids([series(1, 0)]),
        ),
        (
            json!({"Level": "Series", "Query": {}, "ParentStudy": s1}),
            ids([series(0, 0), series(0, 1)]),
        ),
        (
            json!({"Level": "Series", "Query": {}, "ParentPatient": p1}),
            ids([series(0, 0), series(0, 1), series(1, 0)]),
        ),
        (
            json!({"Level": "Series", "Query": {"Modality": "CT"}, "ParentPatient": p1}),
            ids([series(0, 0), series(0, 1)]),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(found(api, body.clone()).await, want, "/tools/find {body}");
    }

    // Instances.
    let instance = |k: usize, s: usize, i: usize| c.instance(k, s, i);
    let sop = &c.get(instance(1, 0, 1)).uid;
    let cases = [
        (
            find("Instance", json!({"SOPInstanceUID": sop})),
            ids([instance(1, 0, 1)]),
        ),
        (
            json!({"Level": "Instance", "Query": {}, "ParentSeries": series(0, 0)}),
            ids([instance(0, 0, 0), instance(0, 0, 1), instance(0, 0, 2)]),
        ),
        (
            json!({"Level": "Instance", "Query": {"InstanceNumber": "2"}, "ParentStudy": s1}),
            ids([instance(0, 0, 1), instance(0, 1, 1)]),
        ),
        (
            find("Instance", json!({"StudyInstanceUID": c.get(s3).uid})),
            ids([instance(2, 0, 0), instance(2, 0, 1), instance(2, 1, 0)]),
        ),
        (
            find("Instance", json!({"Modality": "PT"})),
            ids([instance(2, 1, 0)]),
        ),
        (
            json!({"Level": "Instance", "Query": {}, "ParentPatient": p2}),
            ids([instance(2, 0, 0), instance(2, 0, 1), instance(2, 1, 0)]),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(found(api, body.clone()).await, want, "/tools/find {body}");
    }
}

/// `Limit` and `Since` page the answers: pages cover every match once.
pub async fn paging(api: &Api, c: &Corpus) {
    let all = set(c.ids(Level::Study));
    let page = |since: u64, limit: u64| json!({"Level": "Study", "Query": {}, "Since": since, "Limit": limit});
    let mut seen = Vec::new();
    for since in [0, 2, 4] {
        let body = page(since, 2);
        let ids = api.find_ids(&body).await;
        assert_eq!(
            ids.len(),
            if since < 4 { 2 } else { 0 },
            "/tools/find {body}: {ids:?}"
        );
        seen.extend(ids);
    }
    assert_eq!(seen.len(), 4, "pages of 2: {seen:?}");
    assert_eq!(set(&seen), all, "pages of 2 cover every study once");

    let body = json!({"Level": "Patient", "Query": {"PatientName": "DOE*"}, "Limit": 1});
    let one = api.find_ids(&body).await;
    assert_eq!(one.len(), 1, "/tools/find {body}");
    assert!(
        [c.patient(0), c.patient(1)].contains(&one[0].as_str()),
        "/tools/find {body}: {one:?}"
    );
    let body = json!({"Level": "Study", "Query": {}, "Since": 10});
    assert_eq!(
        api.find_ids(&body).await,
        Vec::<String>::new(),
        "/tools/find {body}"
    );

    // In Orthanc, "Limit": 0 means no limit
    // (OrthancRestResources.cpp: `else if (tmp != 0)  // compatibility with Orthanc 1.12.4`).
    let body = json!({"Level": "Study", "Query": {}, "Limit": 0});
    assert_eq!(
        set(api.find_ids(&body).await),
        all,
        "/tools/find {body}: Limit 0 means no limit in Orthanc"
    );
}

/// `OrderBy` on tags of the level and above, several keys, descending, by tag number, by the
/// `LastUpdate` metadata, and with paging applied after ordering.
pub async fn ordering(api: &Api, c: &Corpus) {
    let order = |level: &str, by: Value| json!({"Level": level, "Query": {}, "OrderBy": by});
    let tag = |key: &str, direction: &str| json!({"Type": "DicomTag", "Key": key, "Direction": direction});
    let (s1, s2, s3, s4) = (c.study(0), c.study(1), c.study(2), c.study(3));
    let series = |k: usize, s: usize| c.series(k, s).to_string();
    let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let cases = [
        (
            order("Study", json!([tag("StudyDate", "ASC")])),
            owned(&[s4, s1, s2, s3]),
        ),
        (
            order("Study", json!([tag("StudyDate", "DESC")])),
            owned(&[s3, s2, s1, s4]),
        ),
        (
            order("Study", json!([tag("0008,0020", "ASC")])),
            owned(&[s4, s1, s2, s3]),
        ),
        (
            json!({"Level": "Study", "Query": {}, "OrderBy": [tag("StudyDate", "DESC")],
                   "Limit": 1}),
            owned(&[s3]),
        ),
        (
            json!({"Level": "Study", "Query": {}, "OrderBy": [tag("StudyDate", "DESC")],
                   "Since": 1, "Limit": 2}),
            owned(&[s2, s1]),
        ),
        (
            order("Patient", json!([tag("PatientName", "ASC")])),
            owned(&[c.patient(1), c.patient(0), c.patient(2)]),
        ),
        (
            order("Patient", json!([tag("PatientName", "DESC")])),
            owned(&[c.patient(2), c.patient(0), c.patient(1)]),
        ),
        (
            order(
                "Series",
                json!([tag("Modality", "ASC"), tag("SeriesDescription", "DESC")]),
            ),
            vec![
                series(2, 0), // CT Portal venous
                series(0, 1), // CT Coronal
                series(0, 0), // CT Axial 5mm
                series(1, 0), // MR T1 axial
                series(3, 0), // MR Sagittal T2
                series(2, 1), // PT PET AC
            ],
        ),
        (
            // A study-level tag orders series.
            order(
                "Series",
                json!([tag("StudyDate", "DESC"), tag("SeriesDescription", "ASC")]),
            ),
            vec![
                series(2, 1), // 20240610 PET AC
                series(2, 0), // 20240610 Portal venous
                series(1, 0), // 20240220
                series(0, 0), // 20230115 Axial 5mm
                series(0, 1), // 20230115 Coronal
                series(3, 0), // 20221231
            ],
        ),
        (
            // A patient-level tag orders studies; ties broken by the second key.
            order(
                "Study",
                json!([tag("PatientName", "ASC"), tag("StudyDate", "ASC")]),
            ),
            owned(&[s3, s1, s2, s4]),
        ),
        (
            json!({"Level": "Instance", "Query": {}, "ParentSeries": series(0, 0),
                   "OrderBy": [tag("InstanceNumber", "DESC")]}),
            owned(&[
                c.instance(0, 0, 2),
                c.instance(0, 0, 1),
                c.instance(0, 0, 0),
            ]),
        ),
        (
            order(
                "Study",
                json!([{"Type": "Metadata", "Key": "LastUpdate", "Direction": "ASC"}]),
            ),
            owned(&[s1, s2, s3, s4]),
        ),
        (
            order(
                "Study",
                json!([{"Type": "Metadata", "Key": "LastUpdate", "Direction": "DESC"}]),
            ),
            owned(&[s4, s3, s2, s1]),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(api.find_ids(&body).await, want, "/tools/find {body}");
    }
}

/// With `Expand`, the resources as `GET /{level}/{id}` has them; with `RequestedTags`, a
/// `RequestedTags` object of main and computed tags (values as strings).
pub async fn expand_and_requested_tags(api: &Api, c: &Corpus) {
    let stable = |v: &Value| without(v, &["IsStable", "RequestedTags"]);

    let body =
        json!({"Level": "Instance", "Query": {}, "ParentSeries": c.series(0, 0), "Expand": true});
    let answers = api.find(&body).await;
    assert_eq!(answers.len(), 3, "/tools/find {body}");
    for answer in &answers {
        let id = answer["ID"].as_str().expect("an ID");
        check_resource(answer, c.get(id), &format!("/tools/find {body}"));
        let direct = api.json(&Level::Instance.path(id)).await;
        assert_eq!(stable(answer), stable(&direct), "/tools/find {body}: {id}");
    }

    let requested = [
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "PatientName",
        "StudyDate",
    ];
    let body = json!({"Level": "Study", "Query": {}, "Expand": true, "RequestedTags": requested});
    let answers = api.find(&body).await;
    assert_eq!(answers.len(), 4, "/tools/find {body}");
    let wanted = [
        (c.study(0), "CT", "2", "5", "DOE^JOHN", "20230115"),
        (c.study(1), "MR", "1", "2", "DOE^JOHN", "20240220"),
        (c.study(2), "CT\\PT", "2", "3", "DOE^JANE", "20240610"),
        (c.study(3), "MR", "1", "1", "Müller^Jürgen", "20221231"),
    ];
    for (id, modalities, series, instances, name, date) in wanted {
        let answer = answers
            .iter()
            .find(|a| a["ID"] == id)
            .unwrap_or_else(|| panic!("/tools/find {body}: study {id} missing"));
        let what = format!("/tools/find {body}: study {id}");
        check_resource(&without(answer, &["RequestedTags"]), c.get(id), &what);
        let tags = &answer["RequestedTags"];
        assert_eq!(keys(tags), set(requested), "{what}: RequestedTags {tags}");
        let split = |v: &Value| set(v.as_str().unwrap_or_default().split('\\'));
        assert_eq!(
            split(&tags["ModalitiesInStudy"]),
            set(modalities.split('\\')),
            "{what}: ModalitiesInStudy"
        );
        assert_eq!(tags["NumberOfStudyRelatedSeries"], series, "{what}");
        assert_eq!(tags["NumberOfStudyRelatedInstances"], instances, "{what}");
        assert_eq!(tags["PatientName"], name, "{what}");
        assert_eq!(tags["StudyDate"], date, "{what}");
    }

    let body = json!({"Level": "Series", "Query": {"Modality": "CT"}, "Expand": true,
                      "RequestedTags": ["NumberOfSeriesRelatedInstances"]});
    let answers = api.find(&body).await;
    let counts: BTreeSet<(String, String)> = answers
        .iter()
        .map(|a| {
            (
                a["ID"].as_str().unwrap().to_string(),
                a["RequestedTags"]["NumberOfSeriesRelatedInstances"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [((0, 0), "3"), ((0, 1), "2"), ((2, 0), "2")]
        .into_iter()
        .map(|((k, s), n)| (c.series(k, s).to_string(), n.to_string()))
        .collect();
    assert_eq!(counts, want, "/tools/find {body}");

    let body = json!({"Level": "Patient", "Query": {"PatientName": "DOE*"}, "Expand": true,
                      "RequestedTags": ["NumberOfPatientRelatedStudies"]});
    let answers = api.find(&body).await;
    for (p, n) in [(0, "2"), (1, "1")] {
        let answer = answers
            .iter()
            .find(|a| a["ID"] == c.patient(p))
            .unwrap_or_else(|| panic!("/tools/find {body}: patient {p} missing"));
        assert_eq!(
            answer["RequestedTags"]["NumberOfPatientRelatedStudies"], n,
            "/tools/find {body}"
        );
    }
}

/// Bodies Orthanc refuses with 400, each answered with a JSON error.
pub async fn refusals(api: &Api) {
    let bodies: [&str; 9] = [
        "{",
        "[]",
        "{}",
        r#"{"Level": "Galaxy", "Query": {}}"#,
        r#"{"Level": "Study", "Query": {"PatientName": 3}}"#,
        r#"{"Level": "Study", "Query": "PatientName"}"#,
        r#"{"Level": "Study", "Query": {"Modality": "CT"}}"#,
        r#"{"Level": "Study", "Query": {}, "Limit": -1}"#,
        r#"{"Level": "Study", "Query": {},
            "OrderBy": [{"Type": "DicomTag", "Key": "StudyDate", "Direction": "UP"}]}"#,
    ];
    for body in bodies {
        let reply = api.post("/tools/find", body).await;
        reply.assert_error(400);
    }
    // An unknown tag name is a client error too (Orthanc says 400 or 404 depending on where).
    let reply = api
        .post(
            "/tools/find",
            r#"{"Level": "Study", "Query": {"NoSuchTag": "x"}}"#,
        )
        .await;
    assert!(
        matches!(reply.status, 400 | 404),
        "{}: {} {}",
        reply.what,
        reply.status,
        reply.text()
    );
    reply.assert_error(reply.status);
}

/// `/tools/lookup` finds a resource of any level by its identifier.
pub async fn lookup(api: &Api, c: &Corpus) {
    let targets = [
        (Level::Patient, c.patient(1)),
        (Level::Study, c.study(0)),
        (Level::Series, c.series(2, 1)),
        (Level::Instance, c.instance(0, 1, 1)),
    ];
    for (level, id) in targets {
        let uid = &c.get(id).uid;
        let want = json!([{"ID": id, "Path": level.path(id), "Type": level.name()}]);
        for body in [uid.clone(), format!("{uid}\n")] {
            let answer = api.post("/tools/lookup", body.clone()).await.ok_json();
            assert_eq!(answer, want, "/tools/lookup {body:?}");
        }
    }
    let answer = api.post("/tools/lookup", "1.2.3.999").await.ok_json();
    assert_eq!(answer, json!([]), "/tools/lookup of an unknown UID");
}

/// On PostgreSQL every find on an identifier, at its level and below, and the lookup, are
/// served by an index: the identifier's column is an `Index Cond`, not a `Filter` applied to
/// every row of a scan (of the table, or of its primary key in `ORDER BY id` order, as for
/// `UPPER(sop_instance_uid) = $1` before). Sequential scans are disabled for the database first:
/// tables this small would be read whole whatever the indexes.
pub async fn postgres_plans_use_indexes(pg: &PgCluster, db: &str) {
    use orthweb::index::{FindRequest, Index, Level as IndexLevel};

    // psql blocks; the in-process S3 server runs on this runtime's other workers.
    let psql = |sql: &str| tokio::task::block_in_place(|| pg.psql(db, sql));
    let value = |sql: &str| psql(sql).trim().to_string();
    let (patient_id, study, series, sop) = (
        value("SELECT patient_id FROM patients ORDER BY id LIMIT 1"),
        value("SELECT study_uid FROM studies ORDER BY id LIMIT 1"),
        value("SELECT series_uid FROM series ORDER BY id LIMIT 1"),
        value("SELECT sop_instance_uid FROM instances ORDER BY id LIMIT 1"),
    );
    psql(&format!("ALTER DATABASE {db} SET enable_seqscan = off"));
    let index = Index::connect(&pg.url(db), None).await.unwrap();
    let cases = [
        (IndexLevel::Patient, "PatientID", &patient_id, "patient_id"),
        (IndexLevel::Study, "PatientID", &patient_id, "patient_id"),
        (IndexLevel::Study, "StudyInstanceUID", &study, "study_uid"),
        (
            IndexLevel::Series,
            "SeriesInstanceUID",
            &series,
            "series_uid",
        ),
        (
            IndexLevel::Instance,
            "SOPInstanceUID",
            &sop,
            "sop_instance_uid",
        ),
        (
            IndexLevel::Instance,
            "StudyInstanceUID",
            &study,
            "study_uid",
        ),
    ];
    let searched = |plan: &[String], column: &str| {
        plan.iter()
            .any(|line| line.contains("Index Cond") && line.contains(column))
            && plan.iter().all(|line| !line.contains("Seq Scan"))
    };
    for (level, tag, value, column) in cases {
        for case_sensitive in [false, true] {
            let request = FindRequest {
                level,
                query: vec![(tag.to_string(), value.to_string())],
                case_sensitive,
                names_any_case: false,
                since: 0,
                limit: None,
                order_by: Vec::new(),
                parent: None,
                requested_tags: Vec::new(),
            };
            let plan = index.explain_find(&request).await.unwrap();
            assert!(
                searched(&plan, column),
                "{level} {tag}={value} (case-sensitive: {case_sensitive}):\n{}",
                plan.join("\n")
            );
        }
    }
    let plan = index.explain_lookup(&sop).await.unwrap();
    assert!(
        searched(&plan, "sop_instance_uid"),
        "lookup:\n{}",
        plan.join("\n")
    );
    psql(&format!("ALTER DATABASE {db} RESET enable_seqscan"));
}
