//! What operators scrape and read: `/metrics` (OpenMetrics text) and `/openapi.json`.

use std::collections::BTreeMap;

use crate::corpus::Corpus;
use crate::support::{Api, Level};
use crate::uploads::Tally;

/// One sample line: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The samples of an OpenMetrics/Prometheus text exposition (comments skipped).
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').expect("a closing brace");
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close]),
                    &line[close + 1..],
                )
            }
            None => {
                let (name, rest) = line.split_once(' ').expect("a value");
                (name, BTreeMap::new(), rest)
            }
        };
        let value = rest.split_whitespace().next().expect("a value");
        let value = value
            .parse()
            .unwrap_or_else(|_| panic!("/metrics: bad value in {line:?}"));
        out.push((name.to_string(), labels, value));
    }
    out
}

/// `a="x",b="y"`, with `\"` and `\\` escapes.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "/metrics: labels {text:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// The value of the sample `name` whose labels include `labels`, if exactly one has them.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert!(found.len() <= 1, "/metrics: several {name}{labels:?}");
    found.first().copied()
}

/// After the ingest (11 C-STOREs) and the uploads: the counters say what was received and
/// how, the C-STORE histogram counts every C-STORE, requests are counted by route template.
pub async fn metrics(api: &Api, corpus: &Corpus, uploads: &Tally) {
    let reply = api.get("/metrics").await;
    reply.assert_status(200);
    let content_type = reply.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "/metrics: Content-Type {content_type:?}"
    );
    let text = String::from_utf8(reply.body.clone()).expect("UTF-8");
    assert!(
        text.ends_with("# EOF\n"),
        "/metrics: OpenMetrics ends with # EOF"
    );
    let samples = samples(&text);
    let get = |name: &str, labels: &[(&str, &str)]| {
        value(&samples, name, labels).unwrap_or_else(|| panic!("/metrics: no {name}{labels:?}"))
    };

    let instances: Vec<_> = corpus.all(Level::Instance).collect();
    let mut dicom_bytes = 0;
    for instance in &instances {
        let body = api.json(&Level::Instance.path(&instance.id)).await;
        dicom_bytes += body["FileSize"].as_u64().unwrap();
    }
    let dicom = [("source", "dicom")];
    let rest = [("source", "rest")];
    assert_eq!(
        get("orthweb_instances_received_total", &dicom),
        instances.len() as f64,
        "/metrics: instances stored by storescu"
    );
    assert_eq!(
        get("orthweb_received_bytes_total", &dicom),
        dicom_bytes as f64,
        "/metrics: bytes stored over DICOM (the corpus' FileSizes)"
    );
    assert_eq!(
        get("orthweb_instances_received_total", &rest),
        uploads.stored.get() as f64,
        "/metrics: instances stored by POST /instances"
    );
    assert_eq!(
        get("orthweb_received_bytes_total", &rest),
        uploads.bytes.get() as f64,
        "/metrics: bytes uploaded and stored"
    );
    assert_eq!(
        get("orthweb_cstore_duration_seconds_count", &[]),
        instances.len() as f64,
        "/metrics: one observation per C-STORE"
    );
    assert!(
        get("orthweb_ingest_errors_total", &[("kind", "invalid")]) >= 1.0,
        "/metrics: the truncated upload is an invalid instance"
    );
    let request = |method: &str, route: &str, status: &str| {
        get(
            "orthweb_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert!(request("GET", "/studies/{id}", "200") >= 1.0);
    assert!(request("GET", "/instances/{id}/file", "200") >= 1.0);
    assert!(request("POST", "/instances", "400") >= 1.0);
    assert!(
        samples
            .iter()
            .filter(|(n, _, _)| n == "orthweb_http_requests_total")
            .all(|(_, l, _)| !l["route"].contains(&corpus.study(0)[..8])),
        "/metrics: routes are templates, never raw paths"
    );
}

/// The OpenAPI document is served as JSON.
pub async fn openapi(api: &Api) {
    let document = api.json("/openapi.json").await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "/openapi.json: openapi {}",
        document["openapi"]
    );
    for (path, method) in [
        ("/tools/find", "post"),
        ("/instances", "post"),
        ("/studies/{id}/archive", "get"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "/openapi.json: no {method} {path}"
        );
    }
}

/// Text is gzipped for clients that accept it, and only then; DICOM files never are.
pub async fn compression(api: &Api, corpus: &Corpus) {
    let gzip = [("accept-encoding", "gzip")];
    let plain = api.get("/openapi.json").await;
    plain.assert_status(200);
    assert_eq!(plain.header("content-encoding"), None, "not asked for");
    let packed = api.get_with("/openapi.json", &gzip).await;
    packed.assert_status(200);
    assert_eq!(packed.header("content-encoding"), Some("gzip"));
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(packed.body.as_slice()),
        &mut unpacked,
    )
    .unwrap();
    assert_eq!(unpacked, plain.body, "the same document");
    assert!(packed.body.len() * 4 < plain.body.len(), "JSON shrinks");

    let instance = corpus.all(Level::Instance).next().unwrap();
    let file = api
        .get_with(&format!("/instances/{}/file", instance.id), &gzip)
        .await;
    file.assert_status(200);
    assert_eq!(
        file.header("content-encoding"),
        None,
        "DICOM files as stored"
    );
}
