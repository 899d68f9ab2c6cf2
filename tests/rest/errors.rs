//! Errors: unknown resources and routes are 404s, malformed arguments 400s, each with a JSON
//! body repeating the status.

use crate::corpus::Corpus;
use crate::support::{Api, Level, UNKNOWN_ID};

pub async fn not_found(api: &Api, corpus: &Corpus) {
    let mut paths = vec![
        "/no/such/route".to_string(),
        "/patients/not-an-id".to_string(),
        format!("/instances/{UNKNOWN_ID}/file"),
        format!("/instances/{UNKNOWN_ID}/tags"),
        format!("/instances/{UNKNOWN_ID}/simplified-tags"),
        format!("/patients/{UNKNOWN_ID}/studies"),
        format!("/patients/{UNKNOWN_ID}/instances?expand=false"),
        format!("/studies/{UNKNOWN_ID}/patient"),
        format!("/instances/{UNKNOWN_ID}/series"),
        // The ID of a patient is not a study's, nor a study's a series'.
        Level::Study.path(corpus.patient(0)),
        format!("/series/{}/instances", corpus.study(0)),
        format!("/instances/{}/file", corpus.series(0, 0)),
    ];
    for level in Level::ALL {
        paths.push(level.path(UNKNOWN_ID));
        paths.push(format!("{}/statistics", level.path(UNKNOWN_ID)));
    }
    // Path traversal, percent-encoded (IDs are looked up in the index, never used as paths).
    for encoded in ["..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..%5C..%5Cwindows"] {
        paths.push(format!("/instances/{encoded}/file"));
        paths.push(format!("/studies/{encoded}/archive"));
    }
    for path in paths {
        api.get(&path).await.assert_error(404);
    }
    // And raw, as clients that do not normalise dot segments send it.
    for raw in [
        "/instances/../../../../etc/passwd",
        "/instances/../../../../etc/passwd/file",
        "/../../../../etc/passwd",
    ] {
        let (status, _) = api
            .head_only(&format!("GET {raw} HTTP/1.1\r\nConnection: close"))
            .await;
        assert_eq!(status, 404, "GET {raw}");
    }
}

pub async fn bad_requests(api: &Api) {
    for path in [
        "/patients?limit=x",
        "/studies?since=x&limit=2",
        "/series?expand&limit=two",
    ] {
        api.get(path).await.assert_error(400);
    }
}
