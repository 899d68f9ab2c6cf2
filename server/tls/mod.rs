//! TLS for both listeners (HTTPS and DICOM TLS): one certificate, reloaded without a restart
//! when its files change or on SIGHUP, and the rustls configurations built on it.
//!
//! rustls speaks only TLS 1.2 and 1.3, and its default suites (ECDHE with AES-GCM or
//! ChaCha20-Poly1305, forward secrecy only) are those BCP 195 / RFC 9325 recommend, which
//! dcmtk's and dcm4che's BCP 195 profiles offer.

mod certs;
mod listener;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tracing::{info, warn};

pub use certs::CertFiles;
pub use listener::TlsListener;

use crate::config::Settings;

/// The server's certificate, swapped in place when it is reloaded.
#[derive(Debug)]
pub struct Certificate {
    files: CertFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times just before they were first read: a change made after
    /// that (even before the reloader starts) is picked up.
    first_stamps: [Option<SystemTime>; 2],
}

impl Certificate {
    /// The certificate the settings name (`tls_cert_file` and `tls_key_file`), or the
    /// self-signed one for `site_name` when they are empty.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Arc<Certificate>> {
        let files = match (
            settings.tls_cert_file.as_str(),
            settings.tls_key_file.as_str(),
        ) {
            ("", "") => certs::self_signed(&settings.data_dir.join("tls"), &settings.site_name)?,
            ("", _) | (_, "") => anyhow::bail!(
                "tls_cert_file and tls_key_file go together: give both, or neither for a \
                 self-signed certificate"
            ),
            (cert, key) => CertFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            },
        };
        let first_stamps = stamps(&files);
        let current = certs::load(&files)?;
        info!(cert = %files.cert.display(), "TLS certificate loaded");
        Ok(Arc::new(Certificate {
            files,
            current: RwLock::new(current),
            first_stamps,
        }))
    }

    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// Reads the files again; on failure the current certificate stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = certs::load(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Reloads on SIGHUP, and whenever either file's modification time changes (polled: a
    /// renewal by certbot or a bootstrap script replaces the files, and a poll every few
    /// seconds is enough for that). After a failed reload (say the files were read while
    /// being written) every poll tries again, quietly, until one succeeds. Runs until the
    /// process ends.
    pub fn spawn_reloader(self: &Arc<Self>, poll: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut seen = this.first_stamps;
            let mut failing = false;
            loop {
                let why = tokio::select! {
                    _ = tokio::time::sleep(poll) => {
                        let now = stamps(&this.files);
                        if now != seen {
                            seen = now;
                            "the files changed"
                        } else if failing {
                            "retry"
                        } else {
                            continue;
                        }
                    }
                    Some(()) = async { hangup.as_mut()?.recv().await } => "SIGHUP",
                };
                let result = this.reload();
                failing = result.is_err();
                match result {
                    Ok(()) => info!(reason = why, "TLS certificate reloaded"),
                    Err(_) if why == "retry" => {}
                    Err(e) => warn!(
                        reason = why,
                        error = format!("{e:#}"),
                        "TLS certificate not reloaded; the previous one stays in use"
                    ),
                }
            }
        });
    }

    /// For HTTPS: HTTP/1.1 over ALPN, no client certificates.
    pub fn https_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// For DICOM TLS: with `client_ca` (a PEM bundle), peers must present a certificate it
    /// signed (mutual TLS).
    pub fn dicom_config(
        self: &Arc<Self>,
        client_ca: Option<&Path>,
    ) -> anyhow::Result<Arc<ServerConfig>> {
        let builder = ServerConfig::builder();
        let config = match client_ca {
            None => builder.with_no_client_auth(),
            Some(bundle) => {
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots(bundle)?))
                    .build()
                    .context("cannot build the client certificate verifier")?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        Ok(Arc::new(config.with_cert_resolver(self.clone())))
    }
}

/// For calling DICOM TLS peers: their certificates must chain to a CA of `peer_ca` (a PEM
/// bundle) and name the host we call; ours, when there is one, is presented to peers that ask
/// for a client certificate (mutual TLS).
pub fn dicom_client_config(
    peer_ca: &Path,
    certificate: Option<Arc<Certificate>>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots(peer_ca)?);
    Ok(Arc::new(match certificate {
        Some(certificate) => builder.with_client_cert_resolver(certificate),
        None => builder.with_no_client_auth(),
    }))
}

/// The CA certificates of a PEM bundle.
fn roots(bundle: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(bundle)
        .with_context(|| format!("cannot read {}", bundle.display()))?
    {
        let cert = cert.with_context(|| format!("{}: not a PEM bundle", bundle.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{}: unusable CA certificate", bundle.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{}: no CA certificate in it", bundle.display());
    }
    Ok(roots)
}

/// The modification times of the certificate and key files.
fn stamps(files: &CertFiles) -> [Option<SystemTime>; 2] {
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [stamp(&files.cert), stamp(&files.key)]
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl rustls::client::ResolvesClientCert for Certificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Installs ring as the process' rustls crypto provider (sqlx, the S3 client and our
/// listeners all use ring; with one provider compiled in rustls would pick it anyway, this
/// makes it explicit and cheap to call twice).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
