//! `/instances/{id}/file` (bytes, ETag, ranges) and `/instances/{id}/tags` in its three formats.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::dicomgen;
use crate::corpus::{Corpus, EXTENDED, LONG_TEXT, PATIENTS};
use crate::support::{Api, Level, Reply, files_under, keys, set};

const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// The blob file of an instance: the one file of the blob store named after its `FileUuid`.
pub async fn blob_of(api: &Api, blob_root: &Path, instance: &str) -> PathBuf {
    let body = api.json(&Level::Instance.path(instance)).await;
    let uuid = body["FileUuid"].as_str().expect("FileUuid").to_string();
    let matching: Vec<PathBuf> = files_under(blob_root)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&uuid))
        })
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "instance {instance}: blob files named after FileUuid {uuid} under {}: {matching:?}",
        blob_root.display()
    );
    matching.into_iter().next().unwrap()
}

fn sha256_etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(bytes)))
}

/// Files downloaded one after another over one kept-alive connection, as HTTP libraries and
/// viewers do, come without a pause between them: with Nagle's algorithm on the server's socket,
/// each response's body waited for the client's delayed ACK of its headers, ~40 ms a file.
pub async fn keep_alive(api: &Api, corpus: &Corpus) {
    const DOWNLOADS: usize = 50;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let paths: Vec<String> = corpus
        .all(Level::Instance)
        .map(|i| format!("{}/instances/{}/file", api.base, i.id))
        .collect();
    let started = std::time::Instant::now();
    for path in paths.iter().cycle().take(DOWNLOADS) {
        let response = client.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.bytes().await.unwrap();
    }
    let took = started.elapsed();
    // 50 × 40 ms stalls would be 2 s; without them this takes a few milliseconds a file even
    // on a busy test machine.
    assert!(
        took < std::time::Duration::from_millis(800),
        "{DOWNLOADS} downloads over one connection took {took:?}"
    );
}

/// Every instance's file: the stored blob byte for byte, its data set the one that was sent,
/// with its size, type and validator in the headers.
pub async fn download(api: &Api, corpus: &Corpus, blob_root: &Path, scratch: &Path) {
    assert_eq!(
        files_under(blob_root).len(),
        11,
        "one blob per instance under {}",
        blob_root.display()
    );
    std::fs::create_dir_all(scratch).unwrap();
    for instance in corpus.all(Level::Instance) {
        let path = format!("/instances/{}/file", instance.id);
        let reply = api.get(&path).await;
        reply.assert_status(200);
        assert_eq!(
            reply.header("content-type"),
            Some("application/dicom"),
            "GET {path}"
        );
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str()),
            "GET {path}: Content-Length"
        );
        let resource = api.json(&Level::Instance.path(&instance.id)).await;
        assert_eq!(
            resource["FileSize"],
            reply.body.len(),
            "GET {path}: FileSize is the length of the file"
        );
        assert_eq!(&reply.body[128..132], b"DICM", "GET {path}: part-10 file");

        let offset = dicomgen::dataset_offset(&reply.body).expect("a part-10 file");
        let sent = dicomgen::dataset_bytes(instance.file.as_ref().unwrap()).unwrap();
        assert!(
            reply.body[offset..] == sent[..],
            "GET {path}: the data set differs from the one sent ({} vs {} bytes)",
            reply.body.len() - offset,
            sent.len()
        );
        let copy = scratch.join(format!("{}.dcm", instance.id));
        std::fs::write(&copy, &reply.body).unwrap();
        assert_eq!(
            dicomgen::file_transfer_syntax(&copy).unwrap(),
            EXPLICIT_VR_LE,
            "GET {path}: transfer syntax in the meta group"
        );

        let blob = blob_of(api, blob_root, &instance.id).await;
        assert!(
            std::fs::read(&blob).unwrap() == reply.body,
            "GET {path}: the answer is not the stored blob {}",
            blob.display()
        );
        assert_eq!(
            reply.header("etag"),
            Some(sha256_etag(&reply.body).as_str()),
            "GET {path}: ETag is the quoted SHA-256 of the file"
        );
    }
}

/// `HEAD` on a file: the headers of `GET`, no body.
pub async fn head(api: &Api, corpus: &Corpus) {
    let path = format!("/instances/{}/file", corpus.instance(1, 0, 0));
    let full = api.get(&path).await;
    full.assert_status(200);
    let head = api.request(reqwest::Method::HEAD, &path, &[], None).await;
    head.assert_status(200);
    assert!(head.body.is_empty(), "HEAD {path}: a body");
    for name in ["content-type", "content-length", "etag"] {
        assert_eq!(head.header(name), full.header(name), "HEAD {path}: {name}");
    }
}

/// `If-None-Match` with the ETag (or `*`, or a list holding it) gives 304 without a body;
/// another tag gives the file.
pub async fn etag(api: &Api, corpus: &Corpus) {
    let path = format!("/instances/{}/file", corpus.instance(0, 0, 0));
    let full = api.get(&path).await;
    full.assert_status(200);
    let tag = full.header("etag").expect("an ETag").to_string();
    let other = api
        .get(&format!("/instances/{}/file", corpus.instance(0, 0, 1)))
        .await;
    assert_ne!(
        other.header("etag"),
        Some(tag.as_str()),
        "two instances, two ETags"
    );

    for condition in [tag.clone(), "*".to_string(), format!("\"abc\", {tag}")] {
        let reply = api
            .get_with(&path, &[("if-none-match", condition.as_str())])
            .await;
        reply.assert_status(304);
        assert!(reply.body.is_empty(), "GET {path} 304 with a body");
        assert_eq!(reply.header("etag"), Some(tag.as_str()), "GET {path} 304");
    }
    let reply = api.get_with(&path, &[("if-none-match", "\"0000\"")]).await;
    reply.assert_status(200);
    assert!(reply.body == full.body, "GET {path} with another ETag");

    // If-None-Match compares entity tags weakly
    // (RFC 9110 §13.1.2), so W/"<tag>" — what a proxy such as nginx hands back after gzip —
    // must give 304 too.
    let weak = format!("W/{tag}");
    let reply = api
        .get_with(&path, &[("if-none-match", weak.as_str())])
        .await;
    assert_eq!(
        reply.status, 304,
        "GET {path} with If-None-Match: {weak} (weak comparison, RFC 9110 13.1.2)"
    );
}

fn assert_part(reply: &Reply, full: &[u8], start: usize, end: usize) {
    let n = full.len();
    reply.assert_status(206);
    assert_eq!(
        reply.header("content-range"),
        Some(format!("bytes {start}-{}/{n}", end - 1).as_str()),
        "{}: Content-Range",
        reply.what
    );
    assert_eq!(
        reply.header("content-length"),
        Some((end - start).to_string().as_str()),
        "{}: Content-Length",
        reply.what
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/dicom"),
        "{}",
        reply.what
    );
    assert!(
        reply.body == full[start..end],
        "{}: wrong bytes ({} bytes)",
        reply.what,
        reply.body.len()
    );
}

/// Single byte ranges (`a-b`, `a-`, `-n`, past the end) give 206 with the right bytes and
/// `Content-Range`; ranges starting past the end give 416; other units are ignored.
pub async fn ranges(api: &Api, corpus: &Corpus) {
    let path = format!("/instances/{}/file", corpus.instance(2, 0, 1));
    let full = api.get(&path).await;
    full.assert_status(200);
    let full = full.body;
    let n = full.len();
    let path = path.as_str();
    let range = |spec: String| async move {
        let reply = api.get_with(path, &[("range", spec.as_str())]).await;
        Reply {
            what: format!("{} (Range: {spec})", reply.what),
            ..reply
        }
    };

    assert_part(&range("bytes=0-131".into()).await, &full, 0, 132);
    let dicm = range("bytes=128-131".into()).await;
    assert_part(&dicm, &full, 128, 132);
    assert_eq!(dicm.body, b"DICM");
    assert_part(&range("bytes=100-".into()).await, &full, 100, n);
    assert_part(&range("bytes=-10".into()).await, &full, n - 10, n);
    assert_part(&range(format!("bytes=0-{}", n + 1000)).await, &full, 0, n);
    assert_part(&range(format!("bytes={}-", n - 1)).await, &full, n - 1, n);

    for spec in [format!("bytes={n}-"), format!("bytes={}-{}", n + 5, n + 10)] {
        let reply = range(spec).await;
        reply.assert_status(416);
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes */{n}").as_str()),
            "{}: Content-Range",
            reply.what
        );
    }

    let reply = range("items=0-1".into()).await;
    reply.assert_status(200);
    assert!(reply.body == full, "{}: the whole file", reply.what);
}

fn full_tag(name: &str, kind: &str, value: Value) -> Value {
    json!({"Name": name, "Type": kind, "Value": value})
}

/// Checks what every format has in common: lowercase `gggg,eeee` keys (none from the file meta
/// group), the same elements in the three formats.
fn check_formats(full: &Value, simplified: &Value, short: &Value, what: &str) {
    let full_keys = keys(full);
    for key in &full_keys {
        let valid = key.len() == 9
            && key.char_indices().all(|(i, c)| {
                if i == 4 {
                    c == ','
                } else {
                    c.is_ascii_digit() || ('a'..='f').contains(&c)
                }
            });
        assert!(valid, "{what}: key {key:?} is not lowercase gggg,eeee");
        assert!(
            !key.starts_with("0002,"),
            "{what}: the file meta group is not part of the tags ({key})"
        );
        let entry = &full[key];
        assert_eq!(
            keys(entry),
            set(["Name", "Type", "Value"]),
            "{what}: {key}: {entry}"
        );
    }
    assert_eq!(keys(short), full_keys, "{what}: ?short has the same tags");
    let names: std::collections::BTreeSet<String> = full_keys
        .iter()
        .map(|k| full[k]["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys(simplified),
        names,
        "{what}: simplified keys are the names"
    );
}

/// `/tags` (full), `?simplify` and `/simplified-tags`, `?short`, for a plain instance and for
/// the one with a sequence, a binary element and a long text.
pub async fn tags(api: &Api, corpus: &Corpus) {
    // A plain instance: DOE^JOHN, CT, instance number 1.
    let id = corpus.instance(0, 0, 0);
    let study_uid = &corpus.get(corpus.study(0)).uid;
    let base = format!("/instances/{id}");
    let full = api.json(&format!("{base}/tags")).await;
    let simplified = api.json(&format!("{base}/simplified-tags")).await;
    let simplify = api.json(&format!("{base}/tags?simplify")).await;
    let short = api.json(&format!("{base}/tags?short")).await;
    assert_eq!(simplified, simplify, "/simplified-tags and /tags?simplify");
    check_formats(&full, &simplified, &short, &base);

    let expect = [
        ("0010,0010", "PatientName", "DOE^JOHN"),
        ("0010,0020", "PatientID", PATIENTS[0].id),
        ("0020,000d", "StudyInstanceUID", study_uid.as_str()),
        ("0008,0060", "Modality", "CT"),
        ("0008,0008", "ImageType", "ORIGINAL\\PRIMARY\\AXIAL"),
        ("0028,0010", "Rows", "64"),
        ("0028,0011", "Columns", "64"),
        ("0028,0100", "BitsAllocated", "16"),
        ("0020,0013", "InstanceNumber", "1"),
        ("0008,0090", "ReferringPhysicianName", ""),
    ];
    for (code, name, value) in expect {
        assert_eq!(
            full[code],
            full_tag(name, "String", json!(value)),
            "{base}/tags: {code}"
        );
        assert_eq!(simplified[name], value, "{base}/simplified-tags: {name}");
        assert_eq!(short[code], value, "{base}/tags?short: {code}");
    }

    // The extended instance: UTF-8 name, a sequence, a binary element, a long text.
    let (k, s, i) = EXTENDED;
    let id = corpus.instance(k, s, i);
    let base = format!("/instances/{id}");
    let full = api.json(&format!("{base}/tags")).await;
    let simplified = api.json(&format!("{base}/simplified-tags")).await;
    let short = api.json(&format!("{base}/tags?short")).await;
    check_formats(&full, &simplified, &short, &base);

    assert_eq!(
        full["0010,0010"],
        full_tag("PatientName", "String", json!(PATIENTS[2].name)),
        "{base}/tags: a UTF-8 name"
    );
    assert_eq!(simplified["PatientName"], PATIENTS[2].name);
    assert_eq!(
        full["0008,1032"],
        full_tag(
            "ProcedureCodeSequence",
            "Sequence",
            json!([{
                "0008,0100": full_tag("CodeValue", "String", json!("CT123")),
                "0008,0102": full_tag("CodingSchemeDesignator", "String", json!("LOCAL")),
                "0008,0104": full_tag("CodeMeaning", "String", json!("Chest")),
            }])
        ),
        "{base}/tags: a sequence"
    );
    assert_eq!(
        simplified["ProcedureCodeSequence"],
        json!([{"CodeValue": "CT123", "CodingSchemeDesignator": "LOCAL", "CodeMeaning": "Chest"}]),
        "{base}/simplified-tags: a sequence"
    );
    assert_eq!(
        short["0008,1032"],
        json!([{"0008,0100": "CT123", "0008,0102": "LOCAL", "0008,0104": "Chest"}]),
        "{base}/tags?short: a sequence"
    );
    assert_eq!(
        full["0028,1201"],
        full_tag("RedPaletteColorLookupTableData", "Null", Value::Null),
        "{base}/tags: binary values are null"
    );
    assert_eq!(simplified["RedPaletteColorLookupTableData"], Value::Null);
    assert_eq!(short["0028,1201"], Value::Null);
    const { assert!(LONG_TEXT > 256) };
    assert_eq!(
        full["0010,21b0"],
        full_tag("AdditionalPatientHistory", "TooLong", Value::Null),
        "{base}/tags: values over 256 characters are TooLong"
    );
    assert_eq!(simplified["AdditionalPatientHistory"], Value::Null);
    assert_eq!(short["0010,21b0"], Value::Null);

    // Orthanc lists the pixel data too, as a null binary
    // value (DicomToJsonFlags_Default has IncludePixelData; ServerContext's
    // InjectEmptyPixelData adds it when reading up to the pixel data), so clients see that the
    // instance has an image.
    assert_eq!(
        full["7fe0,0010"],
        full_tag("PixelData", "Null", Value::Null),
        "{base}/tags has no \"7fe0,0010\" PixelData entry, Orthanc's has one"
    );
    assert!(
        simplified.get("PixelData").is_some_and(Value::is_null),
        "{base}/simplified-tags has no \"PixelData\": null"
    );
}
