//! The DICOM SCP: accepts associations on a TCP listener and hands each to its own task.

mod association;
pub mod dimse;
pub mod syntaxes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::association::Association;
use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{Instrument, info, info_span, warn};

pub use association::Services;

use crate::config::Settings;

/// Who may open an association: our called AE title (optionally checked) and a list of
/// calling AE titles (empty allows any).
#[derive(Debug, Clone)]
struct PeerPolicy {
    check_called: bool,
    allowed_calling: Vec<String>,
}

impl AccessControl for PeerPolicy {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if self.check_called && called_ae_title.trim() != this_ae_title.trim() {
            warn!(
                called_aet = called_ae_title,
                "association refused: called AE title is not ours"
            );
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.allowed_calling.is_empty()
            && !self
                .allowed_calling
                .iter()
                .any(|a| a.trim() == calling_ae_title.trim())
        {
            warn!(
                calling_aet = calling_ae_title,
                "association refused: calling AE title not allowed"
            );
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// The DICOM listener, bound and ready to serve.
pub struct DicomServer {
    listener: TcpListener,
    options: ServerAssociationOptions<
        'static,
        PeerPolicy,
        dicom_ul::association::server::DefaultNegotiation,
    >,
    services: Arc<Services>,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl DicomServer {
    pub async fn bind(settings: &Settings, services: Services) -> std::io::Result<DicomServer> {
        let listener = TcpListener::bind(settings.dicom_listen).await?;
        let timeout = Duration::from_secs(settings.dicom_timeout_secs);
        let mut options = ServerAssociationOptions::new()
            .ae_access_control(PeerPolicy {
                check_called: settings.check_called_aet,
                allowed_calling: settings.allowed_calling_aets.clone(),
            })
            .ae_title(settings.aet.clone())
            .max_pdu_length(settings.max_pdu_length)
            .strict(true)
            // Any abstract syntax is accepted here; storage of unknown SOP classes is refused
            // per request (status 0122) when the settings say so.
            .promiscuous(true)
            .with_abstract_syntax(syntaxes::VERIFICATION)
            .read_timeout(timeout)
            .write_timeout(timeout);
        for ts in syntaxes::TRANSFER_SYNTAXES {
            options = options.with_transfer_syntax(*ts);
        }
        Ok(DicomServer {
            listener,
            options,
            services: Arc::new(services),
            slots: Arc::new(Semaphore::new(settings.max_associations)),
            timeout,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) {
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                warn!(%peer, "too many associations; connection closed");
                continue;
            };
            let options = self.options.clone();
            let services = self.services.clone();
            let timeout = self.timeout;
            let span = info_span!("association", %peer);
            tokio::spawn(
                async move {
                    serve(socket, peer, options, services, timeout).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
}

async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    options: ServerAssociationOptions<
        'static,
        PeerPolicy,
        dicom_ul::association::server::DefaultNegotiation,
    >,
    services: Arc<Services>,
    timeout: Duration,
) {
    // Without TCP_NODELAY, peers that also leave Nagle on (dcmtk by default) stall ~40 ms per
    // message on delayed ACKs.
    if let Err(e) = socket.set_nodelay(true) {
        warn!(error = %e, "cannot set TCP_NODELAY");
    }
    let established = match tokio::time::timeout(timeout, options.establish_async(socket)).await {
        Ok(Ok(association)) => association,
        Ok(Err(e)) => {
            warn!(error = %e, "association not established");
            return;
        }
        Err(_) => {
            warn!("association request timed out");
            return;
        }
    };
    let calling = established.peer_ae_title().to_string();
    info!(calling_aet = %calling, called_aet = established.called_ae_title(), "association accepted");
    let handler = association::Handler::new(established, &services, peer);
    if let Err(e) = handler.run().await {
        warn!(calling_aet = %calling, error = %e, "association ended with an error");
    }
}
