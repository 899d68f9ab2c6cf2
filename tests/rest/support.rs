//! What the REST tests share: the four levels as Orthanc names them, Orthanc's ID formula, an
//! HTTP client that keeps status, headers and body, a step runner that keeps going after a
//! failed step, polling, and small JSON helpers.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::FutureExt;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// The levels of the DICOM hierarchy, with the names Orthanc's JSON uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Patient,
    Study,
    Series,
    Instance,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Patient, Level::Study, Level::Series, Level::Instance];

    /// `Type`, `ResourceType`, `Level` in Orthanc's JSON.
    pub fn name(self) -> &'static str {
        match self {
            Level::Patient => "Patient",
            Level::Study => "Study",
            Level::Series => "Series",
            Level::Instance => "Instance",
        }
    }

    /// The first segment of the level's routes.
    pub fn plural(self) -> &'static str {
        match self {
            Level::Patient => "patients",
            Level::Study => "studies",
            Level::Series => "series",
            Level::Instance => "instances",
        }
    }

    /// The route segment naming this level as an ancestor: `/series/{id}/study`.
    pub fn singular(self) -> &'static str {
        match self {
            Level::Patient => "patient",
            Level::Study => "study",
            Level::Series => "series",
            Level::Instance => "instance",
        }
    }

    pub fn parent(self) -> Option<Level> {
        match self {
            Level::Patient => None,
            Level::Study => Some(Level::Patient),
            Level::Series => Some(Level::Study),
            Level::Instance => Some(Level::Series),
        }
    }

    /// The field listing the children: `Studies`, `Series`, `Instances`.
    pub fn children_key(self) -> Option<&'static str> {
        match self {
            Level::Patient => Some("Studies"),
            Level::Study => Some("Series"),
            Level::Series => Some("Instances"),
            Level::Instance => None,
        }
    }

    /// `/patients/{id}`, as Orthanc's `Path` fields.
    pub fn path(self, id: &str) -> String {
        format!("/{}/{id}", self.plural())
    }

    /// The levels strictly below this one.
    pub fn below(self) -> impl Iterator<Item = Level> {
        Level::ALL.into_iter().filter(move |l| *l > self)
    }

    /// The levels strictly above this one.
    pub fn above(self) -> impl Iterator<Item = Level> {
        Level::ALL.into_iter().filter(move |l| *l < self)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A client of one server's HTTP API.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    pub base: String,
}

/// A whole answer: status, headers and body.
pub struct Reply {
    pub what: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(2000).collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: the body is not JSON ({e}): {:?}",
                self.what,
                self.text()
            )
        })
    }

    pub fn assert_status(&self, status: u16) -> &Reply {
        assert_eq!(
            self.status,
            status,
            "{}: status {} (body {:?})",
            self.what,
            self.status,
            self.text()
        );
        self
    }

    /// A 200 with a JSON body, which it returns.
    pub fn ok_json(&self) -> Value {
        self.assert_status(200);
        assert_json_type(self);
        self.json()
    }

    /// An error answered as the API documents it: the status, and a JSON body
    /// `{"HttpStatus", "Message", …}` repeating it.
    pub fn assert_error(&self, status: u16) {
        self.assert_status(status);
        assert_json_type(self);
        let body = self.json();
        assert!(body.is_object(), "{}: error body {body}", self.what);
        assert_eq!(
            body["HttpStatus"], status,
            "{}: HttpStatus of {body}",
            self.what
        );
        assert!(
            body["Message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: error without a Message: {body}",
            self.what
        );
    }
}

fn assert_json_type(reply: &Reply) {
    let content_type = reply.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "{}: Content-Type {content_type:?}",
        reply.what
    );
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            base,
        }
    }

    /// Sends `head` (request line and headers, without the blank line) and no body on a
    /// connection of its own, and returns the status code and the lowercased headers of the
    /// answer, read until the server closes (send `Connection: close` unless the server
    /// closes by itself). For answers the server gives before reading a body: with reqwest the server's
    /// close can race the client still writing the body, and the client then reports an error.
    pub async fn head_only(&self, head: &str) -> (u16, Vec<(String, String)>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect to the HTTP listener");
        let request = format!("{head}\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
            .await
            .expect("the server answers and closes within 30 s")
            .expect("read the answer");
        let text = String::from_utf8_lossy(&answer);
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{head:?}: no status line"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers)
    }

    /// Another client of the same server, with its own connections.
    pub fn fresh(&self) -> Api {
        Api::new(self.base.clone())
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let what = format!("{method} {path}");
        self.send(method, path, headers, body.map(reqwest::Body::from))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Like [`Api::request`], but a transport error (connection refused or cut, even while the
    /// body is read) is returned instead of failing the test. A streamed body
    /// (`reqwest::Body::wrap_stream`) goes out chunked, without a Content-Length.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<reqwest::Body>,
    ) -> Result<Reply, reqwest::Error> {
        let what = format!("{method} {path}");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Reply {
            what,
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[], None).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(Method::GET, path, headers, None).await
    }

    pub async fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.request(Method::POST, path, &[], Some(body.into()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, &[], None).await
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn json(&self, path: &str) -> Value {
        self.get(path).await.ok_json()
    }

    /// `POST /tools/find` with `body`, which must answer 200 with a JSON array.
    pub async fn find(&self, body: &Value) -> Vec<Value> {
        let reply = self.post("/tools/find", body.to_string()).await;
        let answer = reply.ok_json();
        match answer {
            Value::Array(items) => items,
            other => panic!("/tools/find {body}: not an array: {other}"),
        }
    }

    /// The IDs `/tools/find` answers (without `Expand`), in its order.
    pub async fn find_ids(&self, body: &Value) -> Vec<String> {
        self.find(body)
            .await
            .iter()
            .map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("/tools/find {body}: {v} is not an ID"))
                    .to_string()
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Steps

/// Runs the checks of one backend one after the other, recording failed ones instead of
/// stopping at the first, so that one run reports every broken behaviour.
#[derive(Default)]
pub struct Steps {
    ran: usize,
    failures: Vec<String>,
}

impl Steps {
    pub async fn run(&mut self, name: &str, step: impl Future<Output = ()>) {
        self.ran += 1;
        let started = Instant::now();
        match AssertUnwindSafe(step).catch_unwind().await {
            Ok(()) => eprintln!("step ok: {name} ({:.1?})", started.elapsed()),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".into());
                eprintln!("step FAILED: {name}: {message}");
                let short: String = message.chars().take(600).collect();
                self.failures.push(format!("{name}: {short}"));
            }
        }
    }

    /// Fails the test if any step failed, listing them all.
    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} steps failed:\n- {}",
            self.failures.len(),
            self.ran,
            self.failures.join("\n- ")
        );
    }
}

pub use crate::common::eventually;

// ---------------------------------------------------------------------------------------------
// Files and JSON

/// Every file under `dir`, recursively (none if `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The keys of a JSON object.
pub fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {value}"))
        .keys()
        .cloned()
        .collect()
}

/// A set of strings, for comparisons that ignore order.
pub fn set<S: ToString>(items: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    items.into_iter().map(|s| s.to_string()).collect()
}

/// The strings of a JSON array, in order.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v}"))
                .to_string()
        })
        .collect()
}

/// The `ID`s of a JSON array of resources, in order.
pub fn ids_of(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {value}"))
        .iter()
        .map(|v| {
            v["ID"]
                .as_str()
                .unwrap_or_else(|| panic!("resource without an ID: {v}"))
                .to_string()
        })
        .collect()
}

/// `value` without the given keys (for comparing resources whose `IsStable` may change).
pub fn without(value: &Value, drop: &[&str]) -> Value {
    let mut object = value
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {value}"))
        .clone();
    for key in drop {
        object.remove(*key);
    }
    Value::Object(object)
}

/// `YYYYMMDDTHHMMSS`, as Orthanc's `LastUpdate` and change dates.
pub fn is_timestamp(text: &str) -> bool {
    text.len() == 15
        && text
            .char_indices()
            .all(|(i, c)| if i == 8 { c == 'T' } else { c.is_ascii_digit() })
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (Orthanc's attachment UUIDs).
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// A syntactically valid resource ID that no resource has.
pub const UNKNOWN_ID: &str = "00000000-00000000-00000000-00000000-00000000";
