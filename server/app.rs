//! Building and running the whole server: settings → index, blob store, DICOM and HTTP
//! listeners.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{Settings, redact_url};
use crate::dicom::{DicomServer, Services};
use crate::http::{AppState, router};
use crate::index::Index;
use crate::ingest::Ingest;
use crate::storage::{self, BlobStore, S3Options};

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
        let index = Index::open(&index_url)
            .await
            .with_context(|| format!("cannot open the index at {}", redact_url(&index_url)))?;
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

/// A server with its listeners bound, ready to run.
pub struct Application {
    dicom: DicomServer,
    http: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let Storage {
            index,
            blobs,
            ingest,
        } = Storage::open(&settings).await?;
        let services = Services {
            ingest: ingest.clone(),
            accept_unknown_sop_classes: settings.accept_unknown_sop_classes,
        };
        let dicom = DicomServer::bind(&settings, services)
            .await
            .with_context(|| format!("cannot listen for DICOM on {}", settings.dicom_listen))?;
        let http = TcpListener::bind(settings.http_listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", settings.http_listen))?;
        let state = AppState {
            dicom_port: dicom.local_addr()?.port(),
            http_port: http.local_addr()?.port(),
            settings: Arc::new(settings),
            index,
            blobs,
            ingest,
        };
        Ok(Application { dicom, http, state })
    }

    pub fn dicom_addr(&self) -> SocketAddr {
        self.dicom
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        crate::janitor::spawn(
            self.state.index.clone(),
            self.state.blobs.clone(),
            Duration::from_secs(self.state.settings.blob_sweep_secs),
        );
        let app = router(self.state);
        let http = axum::serve(self.http, app).with_graceful_shutdown(shutdown_signal());
        tokio::select! {
            result = http => result.context("HTTP server failed")?,
            () = self.dicom.run() => {}
        }
        info!("stopped");
        Ok(())
    }
}

async fn open_blobs(settings: &Settings) -> anyhow::Result<Arc<dyn BlobStore>> {
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
    Ok(blobs)
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
