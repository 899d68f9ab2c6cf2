//! A small HTTP client for the rendering routes: whole answers (status, headers, body), and
//! uploads with `POST /instances`.

use std::path::Path;
use std::time::Duration;

use reqwest::header::HeaderMap;

pub struct Client {
    client: reqwest::Client,
    base: String,
}

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

    /// The start of the body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(500)]).into_owned()
    }

    /// Err unless the status is `status`.
    pub fn expect_status(&self, status: u16) -> Result<(), String> {
        if self.status == status {
            return Ok(());
        }
        Err(format!(
            "{}: status {}, expected {status} (body {:?})",
            self.what,
            self.status,
            self.text()
        ))
    }

    /// Err unless this is an error answer of the API: `status`, and a JSON body with a
    /// non-empty `Message`.
    pub fn expect_error(&self, status: u16) -> Result<(), String> {
        self.expect_status(status)?;
        let content_type = self.header("content-type").unwrap_or("");
        if !content_type.starts_with("application/json") {
            return Err(format!("{}: Content-Type {content_type:?}", self.what));
        }
        let body: serde_json::Value = serde_json::from_slice(&self.body)
            .map_err(|e| format!("{}: body not JSON ({e}): {:?}", self.what, self.text()))?;
        match body["Message"].as_str() {
            Some(message) if !message.is_empty() => Ok(()),
            _ => Err(format!("{}: no Message in {body}", self.what)),
        }
    }
}

impl Client {
    pub fn new(base: String) -> Client {
        Client {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            base,
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let what = if headers.is_empty() {
            format!("GET {path}")
        } else {
            format!("GET {path} {headers:?}")
        };
        let mut request = self.client.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{what}: body: {e}"))
            .to_vec();
        Reply {
            what,
            status,
            headers,
            body,
        }
    }

    /// `POST /instances` with the file; returns the instance's ID.
    pub async fn upload(&self, file: &Path) -> String {
        let bytes = std::fs::read(file).expect("read a generated file");
        let response = self
            .client
            .post(format!("{}/instances", self.base))
            .header("content-type", "application/dicom")
            .body(bytes)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /instances {}: {e}", file.display()));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "POST /instances {}: {status} {text}",
            file.display()
        );
        let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
        assert_eq!(
            answer["Status"],
            "Success",
            "POST /instances {}: {answer}",
            file.display()
        );
        answer["ID"].as_str().expect("an ID").to_string()
    }
}
