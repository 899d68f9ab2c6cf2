//! Settings, layered: built-in defaults → TOML file (`--config`) → `ORTHWEB_*` environment →
//! command-line flags. `orthweb.sample.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// What to do when an instance arrives whose ID is already in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OverwritePolicy {
    /// Keep the copy already stored; acknowledge the new one without storing it (Orthanc's default).
    #[default]
    Never,
    /// Replace the stored copy with the new one.
    Always,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Every setting of the server. Keys are flat so that each maps to one `ORTHWEB_<KEY>`
/// environment variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Folder for the default SQLite index, the default blob folder and temporary files.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; empty means `sqlite://<data_dir>/index.sqlite`.
    pub index_url: String,
    /// `file:///DIR` or `s3://bucket/prefix`; empty means `file://<data_dir>/blobs`.
    pub storage_url: String,
    /// Server-side encryption asked of S3: "" (bucket default), "AES256" or "aws:kms".
    pub s3_sse: String,
    /// KMS key for `s3_sse = "aws:kms"`; empty means the bucket's default key.
    pub s3_kms_key_id: String,
    /// Objects larger than this many MiB go to S3 as a multipart upload.
    pub s3_multipart_mib: u64,
    /// Path-style S3 addressing (`endpoint/bucket/key`), for S3-compatible servers.
    pub s3_path_style: bool,
    /// Address of the DICOM listener.
    pub dicom_listen: SocketAddr,
    /// Our AE title.
    pub aet: String,
    /// Refuse associations whose called AE title is not ours.
    pub check_called_aet: bool,
    /// Calling AE titles allowed to associate; empty allows any.
    pub allowed_calling_aets: Vec<String>,
    /// Accept storage of SOP classes we do not know (Orthanc does by default).
    pub accept_unknown_sop_classes: bool,
    /// Largest PDU we accept, in bytes (at least 65536: dcmtk's association requests are larger
    /// than 4 KiB and strict mode checks them against this).
    pub max_pdu_length: u32,
    /// Seconds of silence after which an association is aborted.
    pub dicom_timeout_secs: u64,
    /// Associations served at once; more are refused until one ends.
    pub max_associations: usize,
    /// What to do with a second copy of a stored instance.
    pub overwrite: OverwritePolicy,
    /// Address of the HTTP listener.
    pub http_listen: SocketAddr,
    /// Largest request body accepted over HTTP (uploads), in MiB.
    pub max_upload_mib: u64,
    /// Seconds without a new instance after which a patient, study or series is stable.
    pub stable_age_secs: u64,
    /// Seconds between retries of blob removals that failed (a bucket that was away, say).
    pub blob_sweep_secs: u64,
    /// `text` for a terminal, `json` for a log collector.
    pub log_format: LogFormat,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./orthweb-data"),
            index_url: String::new(),
            storage_url: String::new(),
            s3_sse: String::new(),
            s3_kms_key_id: String::new(),
            s3_multipart_mib: 64,
            s3_path_style: false,
            dicom_listen: "0.0.0.0:4242".parse().expect("valid literal"),
            aet: "ORTHWEB".into(),
            check_called_aet: false,
            allowed_calling_aets: Vec::new(),
            accept_unknown_sop_classes: true,
            max_pdu_length: 131_072,
            dicom_timeout_secs: 60,
            max_associations: 64,
            overwrite: OverwritePolicy::Never,
            http_listen: "127.0.0.1:8042".parse().expect("valid literal"),
            max_upload_mib: 2048,
            stable_age_secs: 60,
            blob_sweep_secs: 60,
            log_format: LogFormat::Text,
        }
    }
}

/// Errors in the settings: reported at start-up, before anything listens.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid settings: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid setting {key}: {reason}")]
    Value { key: &'static str, reason: String },
}

impl Settings {
    /// Loads the layers. `overrides` holds the command-line flags that were given (serialised
    /// with absent flags skipped), so they win over everything else.
    pub fn load<T: Serialize>(
        config_file: Option<&Path>,
        overrides: T,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Settings = figment
            .merge(Env::prefixed("ORTHWEB_").ignore(&["config"]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let aet = self.aet.trim();
        if aet.is_empty() || aet.len() > 16 {
            return Err(ConfigError::Value {
                key: "aet",
                reason: "an AE title has 1 to 16 characters".into(),
            });
        }
        if self.max_pdu_length < 65_536 {
            return Err(ConfigError::Value {
                key: "max_pdu_length",
                reason: "must be at least 65536".into(),
            });
        }
        if self.blob_sweep_secs == 0 {
            return Err(ConfigError::Value {
                key: "blob_sweep_secs",
                reason: "must be at least 1".into(),
            });
        }
        if self.max_associations == 0 {
            return Err(ConfigError::Value {
                key: "max_associations",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The index URL with the default filled in.
    pub fn index_url(&self) -> String {
        if self.index_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("index.sqlite").display())
        } else {
            self.index_url.clone()
        }
    }

    /// The storage URL with the default filled in.
    pub fn storage_url(&self) -> String {
        if self.storage_url.is_empty() {
            format!("file://{}", self.data_dir.join("blobs").display())
        } else {
            self.storage_url.clone()
        }
    }

    /// Where incoming instances are spooled before they reach the blob store.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
}

/// The URL with any password replaced, for logs and `/system`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        aet: Option<String>,
    }

    // figment's Jail API returns its own large error type.
    #[test]
    #[allow(clippy::result_large_err)]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "o.toml",
                "aet = \"FROMFILE\"\nhttp_listen = \"127.0.0.1:1\"\n",
            )?;
            jail.set_env("ORTHWEB_HTTP_LISTEN", "127.0.0.1:2");
            let s = Settings::load(Some(Path::new("o.toml")), Flags::default()).unwrap();
            assert_eq!(s.aet, "FROMFILE");
            assert_eq!(s.http_listen.port(), 2);
            let s = Settings::load(
                Some(Path::new("o.toml")),
                Flags {
                    aet: Some("FLAG".into()),
                },
            )
            .unwrap();
            assert_eq!(s.aet, "FLAG");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn unknown_keys_and_bad_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "no_such_key = 1\n")?;
            assert!(Settings::load(Some(Path::new("bad.toml")), Flags::default()).is_err());
            jail.create_file("pdu.toml", "max_pdu_length = 4096\n")?;
            assert!(Settings::load(Some(Path::new("pdu.toml")), Flags::default()).is_err());
            Ok(())
        });
    }

    /// The sample file documents every key with its default: loading it changes nothing.
    #[test]
    fn sample_config_lists_the_defaults() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("orthweb.sample.toml");
        let loaded: Settings = Figment::from(Toml::file_exact(&sample)).extract().unwrap();
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        assert_eq!(serde_json::to_value(&loaded).unwrap(), defaults);
        let keys = defaults.as_object().unwrap().len();
        let text = std::fs::read_to_string(&sample).unwrap();
        let documented = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(" = "))
            .count();
        assert_eq!(documented, keys, "every key appears once in the sample");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
    }
}
