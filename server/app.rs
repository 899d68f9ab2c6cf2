//! Building and running the whole server: settings → index, blob store, DICOM and HTTP
//! listeners.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::serve::{Listener, ListenerExt};

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{Settings, redact_url};
use crate::dicom::{DicomServer, Services};
use crate::http::serve::serve;
use crate::http::{AppState, router};
use crate::index::Index;
use crate::ingest::Ingest;
use crate::storage::{self, BlobStore, S3Options};
use crate::tls::{Certificate, TlsListener};

/// The index, the blob store and the ingest pipeline on them: what the server and
/// `orthweb import` share.
pub struct Storage {
    pub index: Index,
    pub blobs: Arc<dyn BlobStore>,
    pub ingest: Arc<Ingest>,
}

impl Storage {
    /// Opens (and migrates) the index and the blob store named by the settings.
    pub async fn open(settings: &Settings) -> anyhow::Result<Storage> {
        let spool_dir = settings.spool_dir();
        std::fs::create_dir_all(&spool_dir)
            .with_context(|| format!("cannot create {}", spool_dir.display()))?;
        remove_stale_spool_files(&spool_dir);

        let index_url = settings.index_url();
        let index = open_index(settings).await?;
        let blobs = open_blobs(settings).await?;
        info!(index = %redact_url(&index_url), storage = %blobs.describe(), "storage ready");

        let ingest = Arc::new(Ingest::new(
            blobs.clone(),
            index.clone(),
            spool_dir,
            settings.overwrite,
        ));
        Ok(Storage {
            index,
            blobs,
            ingest,
        })
    }
}

/// Opens (and migrates) the index the settings name, with its login from `index_secret` when
/// that is set.
pub async fn open_index(settings: &Settings) -> anyhow::Result<Index> {
    let url = settings.index_url();
    let secret = Some(settings.index_secret.as_str()).filter(|s| !s.is_empty());
    Index::open_with_login(&url, secret)
        .await
        .with_context(|| format!("cannot open the index at {}", redact_url(&url)))
}

/// A server with its listeners bound, ready to run.
pub struct Application {
    dicom: DicomServer,
    http: HttpListener,
    /// Plain HTTP that only redirects to HTTPS.
    redirect: Option<TcpListener>,
    certificate: Option<Arc<Certificate>>,
    state: AppState,
}

enum HttpListener {
    Plain(TcpListener),
    Tls(TlsListener),
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        crate::tls::install_crypto_provider();
        raise_open_file_limit();
        let Storage {
            index,
            blobs,
            ingest,
        } = Storage::open(&settings).await?;
        let certificate =
            match settings.https || settings.dicom_tls || !settings.dicom_tls_peer_ca.is_empty() {
                true => Some(Certificate::from_settings(&settings)?),
                false => None,
            };
        let dicom_tls = match (&certificate, settings.dicom_tls) {
            (Some(certificate), true) => {
                let client_ca = Some(settings.dicom_tls_client_ca.as_str())
                    .filter(|p| !p.is_empty())
                    .map(Path::new);
                Some(certificate.dicom_config(client_ca)?)
            }
            _ => None,
        };
        // Users, sessions and the audit trail; creates the first admin when the HTTP listener
        // is reachable from other hosts and nobody could sign in.
        let auth = crate::auth::Auth::start(&settings, index.clone()).await?;
        let peer_tls = match settings.dicom_tls_peer_ca.as_str() {
            "" => None,
            bundle => Some(crate::tls::dicom_client_config(
                Path::new(bundle),
                certificate.clone(),
            )?),
        };
        let caller = crate::dicom::scu::Caller::new(&settings, peer_tls);
        let modalities = crate::dicom::Modalities::new(settings.modalities.clone(), index.clone());
        let services = Services {
            ingest: ingest.clone(),
            audit: auth.audit.clone(),
            index: index.clone(),
            modalities: modalities.clone(),
            blobs: blobs.clone(),
            caller: caller.clone(),
            aet: settings.aet.clone(),
            find_limit: settings.dicom_find_limit,
            accept_unknown_sop_classes: settings.accept_unknown_sop_classes,
            idle_timeout: std::time::Duration::from_secs(settings.dicom_timeout_secs),
        };
        let dicom = DicomServer::bind(&settings, services, dicom_tls).await?;
        let listener = TcpListener::bind(settings.http_listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", settings.http_listen))?;
        let http_port = listener.local_addr()?.port();
        let http = match (&certificate, settings.https) {
            (Some(certificate), true) => {
                HttpListener::Tls(TlsListener::new(listener, certificate.https_config())?)
            }
            _ => HttpListener::Plain(listener),
        };
        let redirect = match (settings.https, settings.redirect_listen()?) {
            (true, Some(address)) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen for HTTP redirects on {address}"))?,
            ),
            _ => None,
        };
        let state = AppState::new(crate::http::Services {
            dicom_port: dicom
                .local_addr()
                .or(dicom.tls_addr())
                .map_or(0, |a| a.port()),
            http_port,
            modalities,
            caller,
            jobs: crate::jobs::Jobs::default(),
            queries: Default::default(),
            renderer: Arc::new(crate::render::Renderer::new(settings.render_cache_mb)),
            settings: Arc::new(settings),
            index,
            blobs,
            ingest,
            auth,
        });
        Ok(Application {
            dicom,
            http,
            redirect,
            certificate,
            state,
        })
    }

    /// What is listening where, in one line: `dicom=… dicom-tls=… http=… redirect=…` (absent
    /// listeners left out), with `https` after the HTTP address when it is TLS.
    pub fn listening(&self) -> String {
        let mut parts = Vec::new();
        if let Some(address) = self.dicom.local_addr() {
            parts.push(format!("dicom={address}"));
        }
        if let Some(address) = self.dicom.tls_addr() {
            parts.push(format!("dicom-tls={address}"));
        }
        match &self.http {
            HttpListener::Plain(l) => parts.push(format!("http={}", Self::address(l.local_addr()))),
            HttpListener::Tls(l) => {
                parts.push(format!("http={} https", Self::address(l.local_addr())))
            }
        }
        if let Some(redirect) = &self.redirect {
            parts.push(format!("redirect={}", Self::address(redirect.local_addr())));
        }
        parts.join(" ")
    }

    fn address(address: std::io::Result<SocketAddr>) -> String {
        address.map_or_else(|e| format!("?({e})"), |a| a.to_string())
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        crate::janitor::spawn(
            self.state.index.clone(),
            self.state.blobs.clone(),
            Duration::from_secs(self.state.settings.blob_sweep_secs),
        );
        if let Some(certificate) = &self.certificate {
            certificate.spawn_reloader(Duration::from_secs(2));
        }
        let header_timeout = Duration::from_secs(self.state.settings.http_header_timeout_secs);
        if let Some(redirect) = self.redirect {
            let settings = &self.state.settings;
            let target = redirect_target(&settings.site_name, self.state.http_port);
            let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let target = target.clone();
                async move { redirect_to_https(&target, &uri) }
            });
            let redirect = redirect.tap_io(|s| crate::http::serve::no_delay(s));
            tokio::spawn(serve(redirect, app, header_timeout, std::future::pending()));
        }
        let auth = self.state.auth.clone();
        let app = router(self.state);
        let http = async move {
            match self.http {
                HttpListener::Plain(l) => {
                    let l = l.tap_io(|s| crate::http::serve::no_delay(s));
                    serve(l, app, header_timeout, shutdown_signal()).await
                }
                // Its sockets get TCP_NODELAY before their handshake.
                HttpListener::Tls(l) => serve(l, app, header_timeout, shutdown_signal()).await,
            }
        };
        tokio::select! {
            () = http => {}
            () = self.dicom.run() => {}
        }
        // What the last requests did goes to the index before the process ends.
        auth.audit.flush().await;
        info!("stopped");
        Ok(())
    }
}

/// `https://site[:port]`, the port left out when it is HTTPS' own.
fn redirect_target(site_name: &str, port: u16) -> String {
    let host = match site_name.contains(':') {
        true => format!("[{site_name}]"),
        false => site_name.to_string(),
    };
    match port {
        443 => format!("https://{host}"),
        port => format!("https://{host}:{port}"),
    }
}

/// Sends a plain HTTP request to the same path over HTTPS (308 keeps the method and body). The
/// host is the configured site name, never the request's Host header, so the redirect cannot
/// be pointed elsewhere.
fn redirect_to_https(target: &str, uri: &axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    (
        axum::http::StatusCode::PERMANENT_REDIRECT,
        [(axum::http::header::LOCATION, format!("{target}{path}"))],
    )
        .into_response()
}

/// Opens the blob store named by the settings and checks that it answers.
pub async fn open_blobs(settings: &Settings) -> anyhow::Result<Arc<dyn BlobStore>> {
    let url = settings.storage_url();
    let options = S3Options {
        sse: settings.s3_sse.clone(),
        kms_key_id: settings.s3_kms_key_id.clone(),
        multipart_bytes: settings.s3_multipart_mib * 1024 * 1024,
        path_style: settings.s3_path_style,
    };
    let blobs = storage::open(&url, options).await?;
    blobs
        .ping()
        .await
        .with_context(|| format!("the blob store {} does not answer", blobs.describe()))?;
    if settings.blob_cache_mib == 0 {
        return Ok(blobs);
    }
    Ok(Arc::new(storage::CachedStore::new(
        blobs,
        settings.blob_cache_mib * 1024 * 1024,
    )))
}

/// Spool files left by a crash were never acknowledged: they can go. Only old ones, in case
/// another process shares the folder.
fn remove_stale_spool_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let cutoff = SystemTime::now() - Duration::from_secs(3600);
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff);
        if old && let Err(e) = std::fs::remove_file(entry.path()) {
            warn!(path = %entry.path().display(), error = %e, "cannot remove a stale spool file");
        }
    }
}

/// Raises the soft limit on open files to the hard one: every HTTP connection, association and
/// blob being written holds a descriptor, and systemd's default soft limit (1024) is reached by
/// a busy site long before the hard limit (524288) is.
fn raise_open_file_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        warn!(error = %e, "cannot raise the limit on open files");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    info!("shutting down");
}
