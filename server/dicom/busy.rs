//! Turning a peer away when every association slot is taken: an A-ASSOCIATE-RJ saying so
//! (transient, local limit exceeded), as PS3.8 asks, rather than a dropped connection that
//! the peer's log can only call a network error. dcmtk and most SCUs retry a transient
//! rejection later.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dicom_ul::association::read_pdu_from_wire_async;
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJSource, Pdu, write_pdu,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::{Instrument, warn};

/// How long a turned-away peer gets to send its request (it is costing us a task).
const WAIT: Duration = Duration::from_secs(5);
/// Rejections answered at once; beyond, connections are closed without a word.
const AT_ONCE: usize = 16;
/// An A-ASSOCIATE-RQ is small: a few kilobytes even with every storage class proposed.
const MAX_REQUEST: u32 = 256 * 1024;

/// Answers connections that found no free association slot.
#[derive(Clone)]
pub struct Rejecter {
    tls: Option<tokio_rustls::TlsAcceptor>,
    answering: Arc<Semaphore>,
}

impl Rejecter {
    pub fn new(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Rejecter {
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            answering: Arc::new(Semaphore::new(AT_ONCE)),
        }
    }

    /// Rejects the association `socket` is about to request, in a task of its own (within
    /// the current span).
    pub fn reject(&self, socket: TcpStream, tls: bool) {
        let Ok(permit) = self.answering.clone().try_acquire_owned() else {
            warn!("too many associations, and too many rejections under way: connection closed");
            return;
        };
        let acceptor = if tls { self.tls.clone() } else { None };
        tokio::spawn(
            async move {
                let _ = socket.set_nodelay(true);
                let answered = tokio::time::timeout(WAIT, async move {
                    match acceptor {
                        Some(acceptor) => answer(acceptor.accept(socket).await?).await,
                        None => answer(socket).await,
                    }
                })
                .await;
                match answered {
                    Ok(Ok(())) => warn!("too many associations: request rejected (local limit)"),
                    Ok(Err(e)) => warn!(error = %e, "too many associations; connection closed"),
                    Err(_) => warn!("too many associations; silent peer disconnected"),
                }
                drop(permit);
            }
            .instrument(tracing::Span::current()),
        );
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> std::io::Result<()> {
    let mut buffer = BytesMut::new();
    let request = read_pdu_from_wire_async(&mut stream, &mut buffer, MAX_REQUEST, false)
        .await
        .map_err(std::io::Error::other)?;
    if !matches!(request, Pdu::AssociationRQ(_)) {
        return Err(std::io::Error::other("not an association request"));
    }
    let rejection = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut bytes = Vec::new();
    write_pdu(&mut bytes, &rejection).map_err(std::io::Error::other)?;
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}
