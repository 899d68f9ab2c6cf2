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
    /// Password of the index database, when `index_url` carries none (so that the URL can sit
    /// in a config file while the password comes from the environment).
    pub index_password: Secret,
    /// File holding that password (a Secrets Manager export, a Kubernetes secret); trailing
    /// newline ignored.
    pub index_password_file: String,
    /// AWS Secrets Manager secret (name or ARN) holding the PostgreSQL login as JSON
    /// `{"username", "password"}`, as RDS keeps a master user it manages: read at start-up
    /// and again when the database refuses the login (a rotation).
    pub index_secret: String,
    /// `file:///DIR` or `s3://bucket/prefix`; empty means `file://<data_dir>/blobs`.
    pub storage_url: String,
    /// Server-side encryption asked of S3: "" (bucket default), "AES256" or "aws:kms".
    pub s3_sse: String,
    /// KMS key for `s3_sse = "aws:kms"`; empty means the bucket's default key.
    pub s3_kms_key_id: String,
    /// Objects larger than this many MiB go to S3 as a multipart upload.
    pub s3_multipart_mib: u64,
    /// MiB of recently sent blobs kept in memory (0: none).
    pub blob_cache_mib: u64,
    /// Path-style S3 addressing (`endpoint/bucket/key`), for S3-compatible servers.
    pub s3_path_style: bool,
    /// Address of the DICOM listener.
    pub dicom_listen: SocketAddr,
    /// Serve plain (unencrypted) DICOM on `dicom_listen`; turn off to serve DICOM TLS only.
    pub dicom_plain: bool,
    /// Serve DICOM TLS on `dicom_tls_listen`, with the certificate of `tls_cert_file`.
    pub dicom_tls: bool,
    /// Address of the DICOM TLS listener.
    pub dicom_tls_listen: SocketAddr,
    /// PEM bundle of the CAs whose client certificates DICOM TLS peers must present (mutual
    /// TLS); empty accepts peers without a certificate.
    pub dicom_tls_client_ca: String,
    /// PEM bundle of the CAs whose certificates the DICOM TLS peers we call present
    /// (modalities with `tls`); without it they cannot be called. Our certificate
    /// (`tls_cert_file`, or the self-signed one) is presented to those that ask for one.
    pub dicom_tls_peer_ca: String,
    /// Our AE title.
    pub aet: String,
    /// Refuse associations whose called AE title is not ours.
    pub check_called_aet: bool,
    /// Calling AE titles allowed to associate; empty allows any.
    pub allowed_calling_aets: Vec<String>,
    /// The DICOM peers we know (`[[modalities]]`): AE title, where we reach them, the
    /// addresses they call from and what they may do. More can be added over REST.
    pub modalities: Vec<crate::dicom::Modality>,
    /// What a peer that matches no modality may do: associate to C-ECHO, store, query
    /// (C-FIND), retrieve with C-MOVE or with C-GET. With all off, only known peers associate.
    pub dicom_always_allow_echo: bool,
    pub dicom_always_allow_store: bool,
    /// Accept storage of SOP classes we do not know (Orthanc does by default).
    pub accept_unknown_sop_classes: bool,
    pub dicom_always_allow_find: bool,
    pub dicom_always_allow_move: bool,
    pub dicom_always_allow_get: bool,
    /// Most matches a C-FIND answers; past it the query ends with A700 (0: no limit).
    pub dicom_find_limit: u64,
    /// Largest PDU we accept, in bytes (at least 65536: dcmtk's association requests are larger
    /// than 4 KiB and strict mode checks them against this).
    pub max_pdu_length: u32,
    /// Seconds of silence after which an association is aborted.
    pub dicom_timeout_secs: u64,
    /// Seconds a new DICOM connection has to send its association request (PS3.8's ARTIM
    /// timer); it holds no association slot meanwhile.
    pub dicom_artim_secs: u64,
    /// Associations served at once; more are refused until one ends.
    pub max_associations: usize,
    /// What to do with a second copy of a stored instance.
    pub overwrite: OverwritePolicy,
    /// Address of the HTTP listener (HTTPS when `https` is on).
    pub http_listen: SocketAddr,
    /// The name clients reach the site by: the self-signed certificate is made for it and
    /// HTTP is redirected to it.
    pub site_name: String,
    /// Serve the HTTP API over TLS (1.2 and 1.3 only), with HSTS.
    pub https: bool,
    /// PEM certificate chain for HTTPS and DICOM TLS, reloaded when it changes or on SIGHUP.
    /// Empty (with `tls_key_file`) means a self-signed certificate for `site_name`, made at
    /// first start under `<data_dir>/tls`.
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
    /// When set (and `https` is on), a plain HTTP listener here (host:port) that redirects
    /// to HTTPS; empty for none.
    pub http_redirect_listen: String,
    /// Largest request body accepted over HTTP (uploads), in MiB.
    pub max_upload_mib: u64,
    /// Seconds an HTTP(S) client has to send a request's headers, and the longest a kept-alive
    /// connection may sit idle between two requests.
    pub http_header_timeout_secs: u64,
    /// Seconds a request body (an upload) may stop arriving before the request is given up
    /// with 408 and the connection closed.
    pub http_body_timeout_secs: u64,
    /// Seconds without a new instance after which a patient, study or series is stable.
    pub stable_age_secs: u64,
    /// Seconds between retries of blob removals that failed (a bucket that was away, say).
    pub blob_sweep_secs: u64,
    /// Memory for recently rendered frames and previews, in MiB; 0 keeps none.
    pub render_cache_mb: u64,
    /// A built OHIF viewer (npm's `@ohif/app`, its `dist/` folder) to serve at `/ohif/`, set up
    /// for this server's DICOMweb; empty for none.
    pub ohif_dir: String,
    /// Origins (`https://viewer.example.org`) whose pages may call the API from a browser
    /// (CORS); `*` for any origin, without credentials. Empty: same origin only.
    pub cors_allowed_origins: Vec<String>,
    /// Hours a UI session (cookie) lasts.
    pub session_hours: u64,
    /// Milliseconds a failed sign-in waits before its answer.
    pub auth_fail_delay_ms: u64,
    /// Failed sign-ins from one address within `auth_fail_window_secs` after which its
    /// credentialed requests are refused (429) until the window passes.
    pub auth_fail_limit: u32,
    pub auth_fail_window_secs: u64,
    /// `text` for a terminal, `json` for a log collector.
    pub log_format: LogFormat,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./orthweb-data"),
            index_url: String::new(),
            index_password: Secret::default(),
            index_password_file: String::new(),
            index_secret: String::new(),
            storage_url: String::new(),
            s3_sse: String::new(),
            s3_kms_key_id: String::new(),
            s3_multipart_mib: 64,
            blob_cache_mib: 128,
            s3_path_style: false,
            dicom_listen: "0.0.0.0:4242".parse().expect("valid literal"),
            dicom_plain: true,
            dicom_tls: false,
            dicom_tls_listen: "0.0.0.0:11112".parse().expect("valid literal"),
            dicom_tls_client_ca: String::new(),
            dicom_tls_peer_ca: String::new(),
            aet: "ORTHWEB".into(),
            check_called_aet: false,
            allowed_calling_aets: Vec::new(),
            modalities: Vec::new(),
            dicom_always_allow_echo: true,
            dicom_always_allow_store: true,
            accept_unknown_sop_classes: true,
            dicom_always_allow_find: false,
            dicom_always_allow_move: false,
            dicom_always_allow_get: false,
            dicom_find_limit: 0,
            max_pdu_length: 131_072,
            dicom_timeout_secs: 60,
            dicom_artim_secs: 10,
            max_associations: 64,
            overwrite: OverwritePolicy::Never,
            http_listen: "127.0.0.1:8042".parse().expect("valid literal"),
            site_name: "localhost".into(),
            https: false,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            http_redirect_listen: String::new(),
            max_upload_mib: 2048,
            http_header_timeout_secs: 30,
            http_body_timeout_secs: 60,
            stable_age_secs: 60,
            blob_sweep_secs: 60,
            render_cache_mb: 64,
            ohif_dir: String::new(),
            cors_allowed_origins: Vec::new(),
            session_hours: 12,
            auth_fail_delay_ms: 300,
            auth_fail_limit: 10,
            auth_fail_window_secs: 300,
            log_format: LogFormat::Text,
        }
    }
}

/// A secret setting: shown as `***` by `Debug`, so it cannot reach a log by accident.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
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
        let mut settings: Settings = figment
            .merge(Env::prefixed("ORTHWEB_").ignore(&["config"]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        let mut anonymous = 0;
        settings.modalities = std::mem::take(&mut settings.modalities)
            .into_iter()
            .map(|mut m| {
                if m.name.is_empty() && m.aet.trim() == "*" {
                    anonymous += 1;
                    if anonymous > 1 {
                        m.name = format!("any-{anonymous}");
                    }
                }
                m.validated()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| ConfigError::Value {
                key: "modalities",
                reason: e.to_string(),
            })?;
        let mut names: Vec<&str> = settings
            .modalities
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::Value {
                key: "modalities",
                reason: format!("two modalities are named {:?}", twice[0]),
            });
        }
        if !settings.index_password_file.is_empty() {
            let path = &settings.index_password_file;
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Value {
                key: "index_password_file",
                reason: format!("cannot read {path}: {e}"),
            })?;
            settings.index_password = Secret(text.trim_end_matches(['\r', '\n']).to_string());
        }
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
        let site = &self.site_name;
        if site.is_empty()
            || site.len() > 253
            || !site
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        {
            return Err(ConfigError::Value {
                key: "site_name",
                reason: "a host name (letters, digits, '.', '-') or an IP address".into(),
            });
        }
        if self.redirect_listen().is_err() {
            return Err(ConfigError::Value {
                key: "http_redirect_listen",
                reason: "host:port, or empty for none".into(),
            });
        }
        if !self.dicom_plain && !self.dicom_tls {
            return Err(ConfigError::Value {
                key: "dicom_plain",
                reason: "with dicom_tls off too, nothing would receive DICOM".into(),
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
        for (key, value) in [
            ("dicom_timeout_secs", self.dicom_timeout_secs),
            ("dicom_artim_secs", self.dicom_artim_secs),
            ("http_header_timeout_secs", self.http_header_timeout_secs),
            ("http_body_timeout_secs", self.http_body_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Value {
                    key,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if !self.ohif_dir.is_empty() && !Path::new(&self.ohif_dir).join("index.html").is_file() {
            return Err(ConfigError::Value {
                key: "ohif_dir",
                reason: format!(
                    "{} holds no index.html: it must be a built OHIF viewer (npm's @ohif/app dist/)",
                    self.ohif_dir
                ),
            });
        }
        for origin in &self.cors_allowed_origins {
            let valid = origin == "*"
                || url::Url::parse(origin)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/");
            if !valid {
                return Err(ConfigError::Value {
                    key: "cors_allowed_origins",
                    reason: format!("{origin:?} is not an origin (https://host[:port]) or *"),
                });
            }
        }
        if self.max_associations == 0 {
            return Err(ConfigError::Value {
                key: "max_associations",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The index URL with the default filled in, and `index_password` in it when the URL has
    /// none. It holds the password: log only [`redact_url`] of it.
    pub fn index_url(&self) -> String {
        if self.index_url.is_empty() {
            return format!("sqlite://{}", self.data_dir.join("index.sqlite").display());
        }
        match url::Url::parse(&self.index_url) {
            Ok(mut url) if url.password().is_none() && !self.index_password.0.is_empty() => {
                // Percent-encodes as needed; fails only for URLs without a host.
                match url.set_password(Some(&self.index_password.0)) {
                    Ok(()) => url.to_string(),
                    Err(()) => self.index_url.clone(),
                }
            }
            _ => self.index_url.clone(),
        }
    }

    /// The address of the HTTP→HTTPS redirect listener, if there is one.
    pub fn redirect_listen(&self) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
        match self.http_redirect_listen.trim() {
            "" => Ok(None),
            address => address.parse().map(Some),
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
    #[allow(clippy::result_large_err)]
    fn the_index_password_comes_from_a_file_into_the_url() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("pw", "s3cr:t/pw\n")?;
            jail.set_env("ORTHWEB_INDEX_URL", "postgres://orthweb@db:5432/pacs");
            jail.set_env("ORTHWEB_INDEX_PASSWORD_FILE", "pw");
            let s = Settings::load(None, Flags::default()).unwrap();
            assert_eq!(
                s.index_url(),
                "postgres://orthweb:s3cr%3At%2Fpw@db:5432/pacs"
            );
            assert!(
                !format!("{s:?}").contains("s3cr"),
                "Debug shows no password"
            );
            jail.set_env("ORTHWEB_INDEX_PASSWORD_FILE", "missing");
            assert!(Settings::load(None, Flags::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
    }
}
