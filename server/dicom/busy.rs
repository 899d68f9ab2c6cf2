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
use tracing::warn;

/// How long a turned-away peer gets to finish sending its request.
const WAIT: Duration = Duration::from_secs(5);
/// An A-ASSOCIATE-RQ is small: a few kilobytes even with every storage class proposed.
const MAX_REQUEST: u32 = 256 * 1024;

/// Answers connections that found no free association slot.
#[derive(Clone)]
pub struct Rejecter {
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Rejecter {
    pub fn new(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Rejecter {
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
        }
    }

    /// Rejects the association the peer on `socket` requests. Its request has arrived (or, on
    /// TLS, its handshake has begun), so this takes a round trip, not a timeout.
    pub async fn reject(&self, socket: TcpStream, tls: bool) {
        let acceptor = if tls { self.tls.clone() } else { None };
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
