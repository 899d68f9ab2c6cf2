//! `POST /instances`: one part-10 file (kept byte for byte), a ZIP of them (one answer per
//! entry), and the refusals (413 over `max_upload_mib`, 400 for what is not DICOM or is cut
//! short). Each step removes what it stored, so the deletion steps find the corpus alone.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::changes::{self, all_since};
use crate::common::dicomgen::{Depth, Spec};
use crate::common::orthanc_id;
use crate::corpus::Corpus;
use crate::delete::last_seq;
use crate::support::{Api, Level, eventually, files_under, keys, set};

/// The upload limit the REST servers run with (`ORTHWEB_MAX_UPLOAD_MIB`).
pub const MAX_UPLOAD_MIB: u64 = 1;

/// A generated file and the IDs Orthanc gives it.
pub struct Made {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub patient: String,
    pub study: String,
    pub series: String,
    pub id: String,
}

/// Writes under `dir` a study of patient `PID<seed>` with one series per count, of `size`²
/// 16-bit single-frame instances.
pub fn generate(seed: u64, dir: &Path, counts: &[u32], size: u16) -> Vec<Made> {
    let mut spec = Spec::new(seed);
    spec.series.clear();
    for &count in counts {
        spec.add_series("OT", count, size, size, 1, Depth::U16);
    }
    let patient = spec.patient_id.clone();
    let written = spec.write(dir).expect("generate the files");
    written
        .into_iter()
        .map(|i| Made {
            bytes: std::fs::read(&i.path).unwrap(),
            path: i.path,
            patient: orthanc_id(&[&patient]),
            study: orthanc_id(&[&patient, &i.study_uid]),
            series: orthanc_id(&[&patient, &i.study_uid, &i.series_uid]),
            id: orthanc_id(&[&patient, &i.study_uid, &i.series_uid, &i.sop_instance_uid]),
        })
        .collect()
}

/// Orthanc's answer for a stored file.
fn stored_answer(made: &Made, status: &str) -> Value {
    json!({
        "ID": made.id,
        "ParentPatient": made.patient,
        "ParentStudy": made.study,
        "ParentSeries": made.series,
        "Path": Level::Instance.path(&made.id),
        "Status": status,
    })
}

/// What the REST uploads stored, for `/metrics`.
#[derive(Default)]
pub struct Tally {
    pub stored: Cell<u64>,
    pub bytes: Cell<u64>,
}

impl Tally {
    fn add(&self, made: &Made) {
        self.stored.set(self.stored.get() + 1);
        self.bytes.set(self.bytes.get() + made.bytes.len() as u64);
    }
}

async fn post(api: &Api, body: &[u8]) -> Value {
    api.post("/instances", body.to_vec()).await.ok_json()
}

/// Deletes the resource at `path`, the last of its patient, and waits for the blob store to
/// hold `blobs` files again.
async fn remove(api: &Api, path: &str, blob_root: &Path, blobs: usize) {
    let answer = api.delete(path).await.ok_json();
    assert_eq!(answer, json!({"RemainingAncestor": null}), "DELETE {path}");
    let root = blob_root.to_path_buf();
    eventually("the uploaded blobs to be removed", || {
        let count = files_under(&root).len();
        async move { (count == blobs).then_some(()) }
    })
    .await;
}

/// A file not yet stored: `Success` with Orthanc's IDs, kept exactly as sent (meta group
/// included), one `New*` change per level; sent again: `AlreadyStored`, nothing changes.
pub async fn round_trip(api: &Api, blob_root: &Path, scratch: &Path, tally: &Tally) {
    let blobs = files_under(blob_root).len();
    let since = last_seq(api).await;
    let made = generate(401, &scratch.join("single"), &[1], 32).remove(0);
    api.get(&Level::Instance.path(&made.id))
        .await
        .assert_error(404);

    let answer = post(api, &made.bytes).await;
    if answer["Status"] == "Success" {
        tally.add(&made);
    }
    assert_eq!(answer, stored_answer(&made, "Success"), "POST /instances");
    let file = api.get(&format!("/instances/{}/file", made.id)).await;
    file.assert_status(200);
    assert!(
        file.body == made.bytes,
        "GET /instances/{}/file is not the uploaded file ({} vs {} bytes)",
        made.id,
        file.body.len(),
        made.bytes.len()
    );
    let resource = api.json(&Level::Instance.path(&made.id)).await;
    assert_eq!(resource["ParentSeries"], made.series, "{resource}");
    assert_eq!(resource["FileSize"], made.bytes.len(), "{resource}");
    assert_eq!(files_under(blob_root).len(), blobs + 1, "one blob more");

    let statistics = api.json("/statistics").await;
    let again = post(api, &made.bytes).await;
    assert_eq!(again, stored_answer(&made, "AlreadyStored"), "POST again");
    assert_eq!(
        api.json("/statistics").await,
        statistics,
        "/statistics after AlreadyStored"
    );
    assert_eq!(files_under(blob_root).len(), blobs + 1, "no second blob");

    let logged = all_since(api, since, 100).await;
    let want = [
        (Level::Patient, &made.patient),
        (Level::Study, &made.study),
        (Level::Series, &made.series),
        (Level::Instance, &made.id),
    ]
    .into_iter()
    .map(|(level, id)| {
        let name = level.name().to_string();
        ((format!("New{name}"), name, id.clone()), 1)
    })
    .collect();
    assert_eq!(
        changes::tally(&logged),
        want,
        "/changes since {since}: the upload's New* changes, once"
    );

    remove(api, &Level::Instance.path(&made.id), blob_root, blobs).await;
}

/// A ZIP of three new files in a folder, a file already stored and a text file: one answer
/// per file in the ZIP's order, the folder skipped.
pub async fn zip(api: &Api, corpus: &Corpus, blob_root: &Path, scratch: &Path, tally: &Tally) {
    let blobs = files_under(blob_root).len();
    let made = generate(402, &scratch.join("zipped"), &[3], 32);
    let old = corpus.get(corpus.instance(1, 0, 0));
    let old_bytes = std::fs::read(old.file.as_ref().unwrap()).unwrap();

    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    writer.add_directory("new/", options).unwrap();
    let mut entries: Vec<(String, &[u8])> = made
        .iter()
        .map(|m| {
            let name = m.path.file_name().unwrap().to_string_lossy();
            (format!("new/{name}"), m.bytes.as_slice())
        })
        .collect();
    entries.push(("old.dcm".into(), &old_bytes));
    entries.push(("readme.txt".into(), b"not a DICOM file\n"));
    for (name, bytes) in &entries {
        writer.start_file(name.as_str(), options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    let body = writer.finish().unwrap().into_inner();

    let answer = post(api, &body).await;
    let answers = answer
        .as_array()
        .unwrap_or_else(|| panic!("POST a ZIP: not an array: {answer}"));
    for (m, got) in made.iter().zip(answers) {
        if got["Status"] == "Success" {
            tally.add(m);
        }
    }
    assert_eq!(
        answers.len(),
        5,
        "POST a ZIP: one answer per file: {answer}"
    );
    for (m, got) in made.iter().zip(answers) {
        assert_eq!(got, &stored_answer(m, "Success"), "POST a ZIP");
    }
    let parent = |level| corpus.ancestor(&old.id, level).id.clone();
    assert_eq!(
        answers[3],
        json!({
            "ID": old.id,
            "ParentPatient": parent(Level::Patient),
            "ParentStudy": parent(Level::Study),
            "ParentSeries": parent(Level::Series),
            "Path": Level::Instance.path(&old.id),
            "Status": "AlreadyStored",
        }),
        "POST a ZIP: the file already stored"
    );
    let failure = &answers[4];
    assert_eq!(
        keys(failure),
        set(["Message", "Name", "Status"]),
        "{failure}"
    );
    assert_eq!(failure["Name"], "readme.txt", "{failure}");
    assert_eq!(failure["Status"], "Failure", "{failure}");
    assert!(
        failure["Message"].as_str().is_some_and(|m| !m.is_empty()),
        "{failure}"
    );

    for m in &made {
        let file = api.get(&format!("/instances/{}/file", m.id)).await;
        file.assert_status(200);
        assert!(file.body == m.bytes, "{}: not the file in the ZIP", m.id);
    }
    let listed = api
        .json(&format!(
            "{}/instances",
            Level::Series.path(&made[0].series)
        ))
        .await;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(3),
        "the uploaded series: {listed}"
    );
    assert_eq!(files_under(blob_root).len(), blobs + 3, "three blobs more");

    remove(
        api,
        &Level::Patient.path(&made[0].patient),
        blob_root,
        blobs,
    )
    .await;
}

/// Over the limit (declared, or found while a chunked body streams in) → 413; not DICOM, or a
/// file cut in its pixel data → 400. Nothing is stored and the server carries on.
pub async fn refusals(api: &Api, blob_root: &Path, scratch: &Path) {
    let statistics = api.json("/statistics").await;
    let blobs = files_under(blob_root).len();
    let large = generate(403, &scratch.join("large"), &[1], 1024).remove(0);
    assert!(large.bytes.len() as u64 > MAX_UPLOAD_MIB * 1024 * 1024);

    // Told the size up front, the server refuses before reading the body and closes: on a
    // raw connection that sends only the head, so no half-written body races the answer.
    let (status, headers) = api
        .head_only(&format!(
            "POST /instances HTTP/1.1\r\nContent-Type: application/dicom\r\nContent-Length: {}",
            large.bytes.len()
        ))
        .await;
    assert_eq!(
        status, 413,
        "POST /instances over the limit, by Content-Length"
    );
    let mut without_close = Vec::new();
    if !headers.contains(&("connection".into(), "close".into())) {
        without_close.push("with a Content-Length");
    }
    // Real clients send the body at once: the 413 may reach them, or the close may cut their
    // write first. Either way the server keeps serving (checked below).
    let whole = reqwest::Body::from(large.bytes.clone());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = large
        .bytes
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let chunked = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    for (how, body) in [("whole", whole), ("chunked", chunked)] {
        match api
            .fresh()
            .send(Method::POST, "/instances", &[], Some(body))
            .await
        {
            Ok(reply) => {
                reply.assert_error(413);
                if reply.header("connection") != Some("close") {
                    without_close.push(how);
                }
            }
            Err(e) => eprintln!("{how} upload over the limit: connection error {e}"),
        }
    }

    for garbage in [&b""[..], b"hello", &[b'x'; 4096]] {
        api.post("/instances", garbage.to_vec())
            .await
            .assert_error(400);
    }

    let cut = generate(404, &scratch.join("cut"), &[1], 32).remove(0);
    let truncated = &cut.bytes[..cut.bytes.len() - 100];
    api.post("/instances", truncated.to_vec())
        .await
        .assert_error(400);

    api.get("/system").await.assert_status(200);
    for id in [&large.id, &cut.id] {
        api.get(&Level::Instance.path(id)).await.assert_error(404);
    }
    assert_eq!(
        api.json("/statistics").await,
        statistics,
        "/statistics after refused uploads"
    );
    assert_eq!(
        files_under(blob_root).len(),
        blobs,
        "no blob from refused uploads"
    );

    // A 413 answered before the body is read ends the connection, and must say so
    // (RFC 9112 §9.6): otherwise keep-alive clients (reqwest/hyper's pool) put the connection
    // back in their pool and their next request on it fails ("error sending request").
    assert!(
        without_close.is_empty(),
        "413 answers without `Connection: close` although the server closes the connection \
         ({without_close:?})"
    );
}
