//! The rendering tests' HTTP: the REST tests' client and answers, checks that return an error
//! instead of panicking (a run reports every failing case at once), and uploads.

use std::path::Path;

use crate::support::Api;
pub use crate::support::Reply;

pub struct Client(Api);

impl Client {
    pub fn new(base: String) -> Client {
        Client(Api::new(base))
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.0.get_with(path, headers).await
    }

    /// `POST /instances` with the file; returns the instance's ID.
    pub async fn upload(&self, file: &Path) -> String {
        let bytes = std::fs::read(file).expect("read a generated file");
        let answer = self
            .0
            .request(
                reqwest::Method::POST,
                "/instances",
                &[("content-type", "application/dicom")],
                Some(bytes),
            )
            .await
            .ok_json();
        assert_eq!(answer["Status"], "Success", "{}: {answer}", file.display());
        answer["ID"].as_str().expect("an ID").to_string()
    }
}

/// Checks on an answer that give an error message instead of panicking.
pub trait Expect {
    /// Err unless the status is `status`.
    fn expect_status(&self, status: u16) -> Result<(), String>;
    /// Err unless this is an error answer of the API: `status`, and a JSON body with a
    /// non-empty `Message`.
    fn expect_error(&self, status: u16) -> Result<(), String>;
}

impl Expect for Reply {
    fn expect_status(&self, status: u16) -> Result<(), String> {
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

    fn expect_error(&self, status: u16) -> Result<(), String> {
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
