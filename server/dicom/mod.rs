//! The DICOM SCP: accepts associations on a TCP listener and hands each to its own task.

mod artim;
pub(crate) mod association;
mod busy;
pub mod dimse;
mod find;
pub mod modalities;
mod peers;
pub(crate) mod receive;
mod retrieve;
pub(crate) mod scu;
mod send;
pub mod syntaxes;
pub mod transfer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dicom_ul::association::Association;
use dicom_ul::association::server::ServerAssociationOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, debug, info, info_span, warn};

pub use association::Services;
pub use modalities::{Modalities, Modality};
use peers::{PeerPolicy, Permissions};

use crate::config::Settings;

type Options = ServerAssociationOptions<'static, PeerPolicy, syntaxes::Roles>;

/// The DICOM listeners (plain, TLS or both), bound and ready to serve.
pub struct DicomServer {
    plain: Option<TcpListener>,
    tls: Option<TcpListener>,
    options: Options,
    /// The access policy, completed with each peer's address.
    policy: PeerPolicy,
    services: Arc<Services>,
    /// Shared by both listeners: `max_associations` counts every association.
    slots: Arc<Semaphore>,
    /// Connections whose association request has not arrived yet (or that are being turned
    /// away): they hold no slot, but a flood of them must not take every file descriptor.
    waiting: Arc<Semaphore>,
    /// Answers those that find no free slot.
    rejecter: busy::Rejecter,
    /// How long a new connection has to send its association request (ARTIM).
    artim: Duration,
}

/// Connections waiting for their association request at once; more are closed at once.
const MAX_WAITING: usize = 1024;

impl DicomServer {
    /// Binds the listeners the settings ask for; `tls` is the configuration of the TLS one
    /// (needed when `dicom_tls` is on).
    pub async fn bind(
        settings: &Settings,
        services: Services,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<DicomServer> {
        let plain = match settings.dicom_plain {
            true => Some(
                TcpListener::bind(settings.dicom_listen)
                    .await
                    .with_context(|| {
                        format!("cannot listen for DICOM on {}", settings.dicom_listen)
                    })?,
            ),
            false => None,
        };
        // Each read and write of an established association; dicom-ul also bounds its
        // negotiation by it, which our shorter ARTIM timer cuts first.
        let timeout = Duration::from_secs(settings.dicom_timeout_secs);
        let policy = PeerPolicy {
            check_called: settings.check_called_aet,
            allowed_calling: settings.allowed_calling_aets.clone().into(),
            modalities: Vec::new().into(),
            address: None,
            unknown: Permissions {
                store: settings.dicom_always_allow_store,
                find: settings.dicom_always_allow_find,
                r#move: settings.dicom_always_allow_move,
                get: settings.dicom_always_allow_get,
            },
            unknown_may_echo: settings.dicom_always_allow_echo,
        };
        let mut options = ServerAssociationOptions::new()
            .with_negotiation(syntaxes::Roles)
            .ae_access_control(policy.clone())
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
        let rejecter = busy::Rejecter::new(tls.clone());
        let tls = match (settings.dicom_tls, tls) {
            (false, _) => None,
            (true, None) => anyhow::bail!("dicom_tls is on but no TLS configuration was given"),
            (true, Some(config)) => {
                options = options.tls_config(config);
                let address = settings.dicom_tls_listen;
                Some(
                    TcpListener::bind(address)
                        .await
                        .with_context(|| format!("cannot listen for DICOM TLS on {address}"))?,
                )
            }
        };
        Ok(DicomServer {
            plain,
            tls,
            options,
            policy,
            services: Arc::new(services),
            slots: Arc::new(Semaphore::new(settings.max_associations)),
            waiting: Arc::new(Semaphore::new(MAX_WAITING)),
            rejecter,
            artim: Duration::from_secs(settings.dicom_artim_secs),
        })
    }

    /// The plain listener's address, if it is on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The TLS listener's address, if it is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Accepts connections on every listener until the task is dropped.
    pub async fn run(self) {
        let this = Arc::new(self);
        let plain = this.plain.as_ref().map(|l| this.accept_loop(l, false));
        let tls = this.tls.as_ref().map(|l| this.accept_loop(l, true));
        futures::future::join(
            async {
                if let Some(plain) = plain {
                    plain.await
                }
            },
            async {
                if let Some(tls) = tls {
                    tls.await
                }
            },
        )
        .await;
    }

    async fn accept_loop(self: &Arc<Self>, listener: &TcpListener, tls: bool) {
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let span = info_span!("association", %peer, tls);
            let Ok(waiting) = self.waiting.clone().try_acquire_owned() else {
                span.in_scope(|| {
                    warn!("too many connections waiting for their association request: closed")
                });
                continue;
            };
            let this = self.clone();
            tokio::spawn(
                async move { this.admit(socket, peer, tls, waiting).await }.instrument(span),
            );
        }
    }

    /// Waits for the peer's association request, then serves it in a free slot or turns it
    /// away with an A-ASSOCIATE-RJ.
    async fn admit(
        &self,
        socket: TcpStream,
        peer: SocketAddr,
        tls: bool,
        waiting: OwnedSemaphorePermit,
    ) {
        // Without TCP_NODELAY, peers that also leave Nagle on (dcmtk by default) stall ~40 ms
        // per message on delayed ACKs.
        if let Err(e) = socket.set_nodelay(true) {
            warn!(error = %e, "cannot set TCP_NODELAY");
        }
        match tokio::time::timeout(self.artim, artim::request_arrived(&socket, tls)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "connection closed before its association request");
                return;
            }
            Err(_) => {
                warn!(
                    artim_secs = self.artim.as_secs(),
                    "no association request in time (ARTIM): connection closed"
                );
                return;
            }
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.rejecter.reject(socket, tls).await;
            return;
        };
        drop(waiting);
        // Read for each association, so that a peer added over REST (on any replica) counts
        // from the next one.
        let modalities = match self.services.modalities.all().await {
            Ok(all) => all,
            Err(e) => {
                warn!(error = %e, "cannot read the DICOM peers from the index: using the settings' alone");
                self.services.modalities.configured()
            }
        };
        let policy = PeerPolicy {
            address: Some(peer.ip()),
            modalities: modalities.into(),
            ..self.policy.clone()
        };
        let options = self.options.clone().ae_access_control(policy.clone());
        serve(
            socket,
            peer,
            tls,
            options,
            policy,
            &self.services,
            self.artim,
        )
        .await;
        drop(slot);
    }
}

/// Negotiates the association (the TLS handshake first, on the TLS port) within `artim`, then
/// runs it.
async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    tls: bool,
    options: Options,
    policy: PeerPolicy,
    services: &Services,
    artim: Duration,
) {
    // `None` when the association request did not come in time.
    let failure = if tls {
        match tokio::time::timeout(artim, options.establish_tls_async(socket)).await {
            Ok(Ok(association)) => {
                return run_association(association, services, &policy, peer).await;
            }
            Ok(Err(e)) => Some(e),
            Err(_) => None,
        }
    } else {
        match tokio::time::timeout(artim, options.establish_async(socket)).await {
            Ok(Ok(association)) => {
                return run_association(association, services, &policy, peer).await;
            }
            Ok(Err(e)) => Some(e),
            Err(_) => None,
        }
    };
    // A plain client on the TLS port, or a TLS one on the plain port, ends up here too.
    match failure {
        Some(e) => warn!(error = %e, "association not established"),
        None => warn!(
            error = "no association request in time (ARTIM)",
            "association not established"
        ),
    }
}

async fn run_association<S>(
    established: dicom_ul::association::server::AsyncServerAssociation<S>,
    services: &Services,
    policy: &PeerPolicy,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let calling = established.peer_ae_title().to_string();
    info!(calling_aet = %calling, called_aet = established.called_ae_title(), "association accepted");
    let permissions = policy.permissions(&calling);
    debug!(calling_aet = %calling, ?permissions, "permissions");
    let handler = association::Handler::new(established, services, peer, permissions);
    if let Err(e) = handler.run().await {
        warn!(calling_aet = %calling, error = %e, "association ended with an error");
    }
}
