//! `GET /{patients,studies,series}/{id}/archive` (a streamed ZIP in Orthanc's layout) and
//! `/{level}/{id}/shared-tags`.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::corpus::{Corpus, PATIENTS};
use crate::support::{Api, Level, UNKNOWN_ID};

/// Where Orthanc puts an instance in an archive: `PatientID - PatientName/AccessionNumber -
/// StudyDescription/SeriesNumber - Modality - SeriesDescription/<MO><index>.dcm`, the index
/// being the InstanceNumber (distinct integers in every corpus series).
fn layout(corpus: &Corpus, instance: &str) -> String {
    let tag = |level: Level, name: &str| {
        let tags = &corpus.ancestor(instance, level).main_tags;
        tags[name].as_str().unwrap().to_string()
    };
    let modality = tag(Level::Series, "Modality");
    let number: u32 = corpus.get(instance).main_tags["InstanceNumber"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    format!(
        "{} - {}/{} - {}/{} - {} - {}/{}{number:06}.dcm",
        tag(Level::Patient, "PatientID"),
        tag(Level::Patient, "PatientName"),
        tag(Level::Study, "AccessionNumber"),
        tag(Level::Study, "StudyDescription"),
        tag(Level::Series, "SeriesNumber"),
        modality,
        tag(Level::Series, "SeriesDescription"),
        &modality[..2],
    )
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The archive of a patient (two studies), a study (two series) and a series (the UTF-8
/// patient): every instance under it once, at its place in the layout, with the bytes of
/// `/instances/{id}/file`; streamed, so without a Content-Length.
pub async fn archives(api: &Api, corpus: &Corpus) {
    let resources = [
        (Level::Patient, corpus.patient(0)),
        (Level::Study, corpus.study(0)),
        (Level::Series, corpus.series(3, 0)),
    ];
    for (level, id) in resources {
        let path = format!("{}/archive", level.path(id));
        let reply = api.get(&path).await;
        reply.assert_status(200);
        assert_eq!(
            reply.header("content-type"),
            Some("application/zip"),
            "GET {path}"
        );
        assert_eq!(reply.header("content-length"), None, "GET {path}: streamed");
        assert_eq!(
            reply.header("transfer-encoding"),
            Some("chunked"),
            "GET {path}"
        );

        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(reply.body.clone()))
            .unwrap_or_else(|e| panic!("GET {path}: not a ZIP: {e}"));
        let mut got = Vec::new();
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).unwrap();
            if entry.is_dir() {
                continue;
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            got.push((entry.name().unwrap().to_string(), sha256(&bytes)));
        }
        let mut want = BTreeMap::new();
        for instance in corpus.under(id, Level::Instance) {
            let file = api.get(&format!("/instances/{instance}/file")).await;
            file.assert_status(200);
            want.insert(layout(corpus, &instance), sha256(&file.body));
        }
        assert_eq!(
            got.len(),
            want.len(),
            "GET {path}: one file per instance: {got:?}"
        );
        assert_eq!(
            got.into_iter().collect::<BTreeMap<_, _>>(),
            want,
            "GET {path}: (name, SHA-256) of the files"
        );
    }

    api.get(&format!("/studies/{UNKNOWN_ID}/archive"))
        .await
        .assert_error(404);
    // A patient's ID is not a series'.
    api.get(&format!("/series/{}/archive", corpus.patient(0)))
        .await
        .assert_error(404);
}

fn string_tag(name: &str, value: &str) -> Value {
    json!({"Name": name, "Type": "String", "Value": value})
}

/// Shared tags: what every instance under the resource has with the same value.
pub async fn shared_tags(api: &Api, corpus: &Corpus) {
    // Series 0 of study 0: three CT instances of DOE^JOHN.
    let series = corpus.series(0, 0);
    let series_uid = &corpus.get(series).uid;
    let path = format!("{}/shared-tags", Level::Series.path(series));
    let full = api.json(&path).await;
    assert_eq!(
        full["0020,000e"],
        string_tag("SeriesInstanceUID", series_uid),
        "GET {path}"
    );
    assert_eq!(
        full["0008,0060"],
        string_tag("Modality", "CT"),
        "GET {path}"
    );
    assert_eq!(
        full["0010,0010"],
        string_tag("PatientName", PATIENTS[0].name),
        "GET {path}"
    );
    assert_eq!(full["0028,0010"], string_tag("Rows", "64"), "GET {path}");
    for (code, name) in [
        ("0008,0018", "SOPInstanceUID"),
        ("0020,0013", "InstanceNumber"),
        ("0020,0032", "ImagePositionPatient"),
    ] {
        assert!(full.get(code).is_none(), "GET {path}: {name} differs");
    }

    let path = format!("{path}?simplify");
    let simplified = api.json(&path).await;
    assert_eq!(simplified["SeriesInstanceUID"], *series_uid, "GET {path}");
    assert_eq!(simplified["Modality"], "CT", "GET {path}");
    assert_eq!(simplified["PatientName"], PATIENTS[0].name, "GET {path}");
    for name in ["SOPInstanceUID", "InstanceNumber"] {
        assert!(simplified.get(name).is_none(), "GET {path}: {name} differs");
    }

    // Patient 0 has a CT and an MR study: same patient, different modalities and studies.
    let path = format!(
        "{}/shared-tags?simplify",
        Level::Patient.path(corpus.patient(0))
    );
    let patient = api.json(&path).await;
    assert_eq!(patient["PatientID"], PATIENTS[0].id, "GET {path}");
    for name in ["Modality", "StudyInstanceUID", "SeriesInstanceUID"] {
        assert!(patient.get(name).is_none(), "GET {path}: {name} differs");
    }
    // A series of one instance shares all of it.
    let (k, s, i) = crate::corpus::EXTENDED;
    let path = format!(
        "{}/shared-tags?simplify",
        Level::Series.path(corpus.series(k, s))
    );
    let single = api.json(&path).await;
    assert_eq!(
        single["SOPInstanceUID"],
        corpus.get(corpus.instance(k, s, i)).uid,
        "GET {path}"
    );

    api.get(&format!("/series/{UNKNOWN_ID}/shared-tags"))
        .await
        .assert_error(404);
}
