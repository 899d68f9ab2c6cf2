//! Calling other DICOM nodes: an association to a known peer (plain or TLS, `TCP_NODELAY`),
//! C-ECHO, and C-STORE of stored instances with their responses.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dicom_object::InMemDicomObject;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::association::client::{AsyncClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValueType, Pdu, PresentationContextNegotiated};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::association::command_fragment;
use super::dimse::{self, Command};
use super::modalities::Modality;
use super::receive;
use super::send::{self, SendError};
use super::syntaxes::VERIFICATION;
use crate::index::RetrieveItem;

/// Largest answer (C-FIND identifier) we read.
const MAX_ANSWER: usize = 1 << 20;

/// Who we are when we call: our AE title and how we talk.
#[derive(Clone)]
pub struct Caller {
    pub aet: String,
    pub max_pdu_length: u32,
    /// For connecting and for each read and write.
    pub timeout: Duration,
    /// For peers with `tls`: our client certificate and the CAs we trust for theirs.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Caller {
    /// `tls`: see `tls::dicom_client_config`.
    pub fn new(
        settings: &crate::config::Settings,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Caller {
        Caller {
            aet: settings.aet.clone(),
            max_pdu_length: settings.max_pdu_length,
            timeout: Duration::from_secs(settings.dicom_timeout_secs),
            tls,
        }
    }
}

/// Why a call failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    #[error("{peer} is not reachable: it has no host and port")]
    Unreachable { peer: String },
    #[error("{peer} is a TLS peer: set dicom_tls_peer_ca to the CAs that sign its certificate")]
    NoTls { peer: String },
    #[error("association with {peer} failed: {error}")]
    Associate { peer: String, error: String },
    #[error("association with {peer}: {error}")]
    Protocol { peer: String, error: String },
    #[error("{peer} did not answer within {0:?}", .timeout)]
    Timeout { peer: String, timeout: Duration },
}

// One per association we open: its size does not matter, boxing would hide the trait impls.
#[allow(clippy::large_enum_variant)]
enum Link {
    Plain(AsyncClientAssociation<TcpStream>),
    Tls(AsyncClientAssociation<dicom_ul::association::client::AsyncTlsStream>),
}

/// Runs `$body` with `$a` bound to the association, whatever its stream.
macro_rules! on_link {
    ($link:expr, $a:ident => $body:expr) => {
        match $link {
            Link::Plain($a) => $body,
            Link::Tls($a) => $body,
        }
    };
}

/// An association we opened.
pub struct Outgoing {
    link: Link,
    peer: String,
    next_message_id: u16,
    timeout: Duration,
    max_pdu_length: u32,
}

/// The response to one C-STORE we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub status: u16,
}

impl Outgoing {
    /// Associates with `peer`, proposing `proposals` (abstract syntax, transfer syntaxes); the
    /// Verification class is always proposed too.
    pub async fn connect(
        caller: &Caller,
        peer: &Modality,
        proposals: &[(String, Vec<String>)],
    ) -> Result<Outgoing, ScuError> {
        let name = format!("{} ({}@{}:{})", peer.name, peer.aet, peer.host, peer.port);
        if !peer.reachable() {
            return Err(ScuError::Unreachable { peer: name });
        }
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(caller.aet.clone())
            .called_ae_title(peer.aet.clone())
            .max_pdu_length(caller.max_pdu_length)
            .connection_timeout(caller.timeout)
            .read_timeout(caller.timeout)
            .write_timeout(caller.timeout)
            .with_presentation_context(
                VERIFICATION.to_string(),
                vec![send::EXPLICIT_LE.to_string(), send::IMPLICIT_LE.to_string()],
            );
        for (abstract_syntax, transfer_syntaxes) in proposals {
            options = options
                .with_presentation_context(abstract_syntax.clone(), transfer_syntaxes.clone());
        }
        let address = (peer.host.clone(), peer.port);
        let associate_error = |e: dicom_ul::association::Error| ScuError::Associate {
            peer: name.clone(),
            error: crate::telemetry::with_causes(&e),
        };
        // The whole negotiation, TLS handshake included, within the timeout.
        let establish = async {
            if peer.tls {
                let config = caller
                    .tls
                    .clone()
                    .ok_or(ScuError::NoTls { peer: name.clone() })?;
                let mut association = options
                    .tls_config(config)
                    .server_name(&peer.host)
                    .establish_tls_async(address)
                    .await
                    .map_err(associate_error)?;
                no_delay(association.inner_stream().get_ref().0);
                Ok(Link::Tls(association))
            } else {
                let mut association = options
                    .establish_async(address)
                    .await
                    .map_err(associate_error)?;
                no_delay(association.inner_stream());
                Ok(Link::Plain(association))
            }
        };
        let link = tokio::time::timeout(caller.timeout, establish)
            .await
            .map_err(|_| ScuError::Timeout {
                peer: name.clone(),
                timeout: caller.timeout,
            })??;
        Ok(Outgoing {
            link,
            peer: name,
            next_message_id: 1,
            timeout: caller.timeout,
            max_pdu_length: caller.max_pdu_length,
        })
    }

    pub fn presentation_contexts(&self) -> &[PresentationContextNegotiated] {
        on_link!(&self.link, a => a.presentation_contexts())
    }

    fn message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        id
    }

    /// C-ECHO: the peer's status.
    pub async fn echo(&mut self) -> Result<u16, ScuError> {
        let context = self
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.abstract_syntax.trim_end_matches('\0') == VERIFICATION
                    && pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance
            })
            .map(|pc| pc.id)
            .ok_or_else(|| ScuError::Protocol {
                peer: self.peer.clone(),
                error: "the Verification SOP class was not accepted".into(),
            })?;
        let id = self.message_id();
        let command = dimse::echo_request(id);
        let written = on_link!(&mut self.link, a => {
            send::write_pdv(a.inner_stream(), context, true, true, &command).await
        });
        written.map_err(|e| self.protocol(e.to_string()))?;
        let response = self.response(id).await?;
        response
            .status
            .ok_or_else(|| self.protocol("a response without a status".into()))
    }

    /// C-STORE of one stored instance; `originator` as for `dimse::store_request`. An error
    /// that leaves the association unusable says so (`SendError::association_lost`).
    pub async fn store(
        &mut self,
        item: &RetrieveItem,
        originator: Option<(&str, u16)>,
        opened: send::Opened,
    ) -> Result<Stored, SendError> {
        let choice = send::choose(self.presentation_contexts(), item).ok_or_else(|| {
            SendError::NoContext(item.sop_class_uid.clone(), item.transfer_syntax_uid.clone())
        })?;
        let id = self.message_id();
        on_link!(&mut self.link, a => {
            send::store_request(a, &choice, id, item, originator, opened).await?
        });
        let response = self
            .response(id)
            .await
            .map_err(|e| SendError::Network(std::io::Error::other(e.to_string())))?;
        Ok(Stored {
            status: response.status.unwrap_or(dimse::status::UNABLE_TO_PROCESS),
        })
    }

    /// The response to message `id`: the command set, any data set after it skipped.
    async fn response(&mut self, id: u16) -> Result<Command, ScuError> {
        loop {
            let (response, _) = self.message().await?;
            if response.message_id == id && response.field & dimse::command::RESPONSE_BIT != 0 {
                return Ok(response);
            }
        }
    }

    /// The next message: its command set and the data set after it, if any (at most
    /// `MAX_ANSWER` bytes).
    async fn message(&mut self) -> Result<(Command, Option<Vec<u8>>), ScuError> {
        let max = self.max_pdu_length;
        let timeout = self.timeout;
        let mut command_bytes = Vec::new();
        let mut command: Option<Command> = None;
        let mut data = Vec::new();
        loop {
            let pdu = on_link!(&mut self.link, a => {
                let (stream, buffer) = AsyncAssociation::get_mut(a);
                next_pdu(stream, buffer, max, timeout).await
            });
            let pdu = pdu.map_err(|e| self.protocol(e))?;
            let Pdu::PData { data: values } = pdu else {
                return Err(self.protocol(format!("{pdu:?} instead of a response")));
            };
            for pdv in values {
                match (&command, &pdv.value_type) {
                    (None, PDataValueType::Command) => {
                        if let Some(parsed) = command_fragment(&mut command_bytes, &pdv)
                            .map_err(|e| self.protocol(e.to_string()))?
                        {
                            if !parsed.has_data_set {
                                return Ok((parsed, None));
                            }
                            command = Some(parsed);
                        }
                    }
                    (Some(_), PDataValueType::Data) => {
                        if data.len() + pdv.data.len() > MAX_ANSWER {
                            return Err(self.protocol("an answer over 1 MiB".into()));
                        }
                        data.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            let command = command.take().expect("matched as Some");
                            return Ok((command, Some(data)));
                        }
                    }
                    _ => return Err(self.protocol("a PDV out of sequence".into())),
                }
            }
        }
    }

    /// The accepted context for `abstract_syntax`: its ID and transfer syntax.
    fn context_for(&self, abstract_syntax: &str) -> Result<(u8, String), ScuError> {
        self.presentation_contexts()
            .iter()
            .find(|pc| {
                pc.abstract_syntax.trim_end_matches('\0') == abstract_syntax
                    && pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance
            })
            .map(|pc| (pc.id, pc.transfer_syntax.trim_end_matches('\0').to_string()))
            .ok_or_else(|| self.protocol(format!("{abstract_syntax} was not accepted")))
    }

    /// Sends a C-FIND-RQ or C-MOVE-RQ with its identifier.
    async fn query_request(
        &mut self,
        field: u16,
        model: &str,
        identifier: &InMemDicomObject,
        destination: Option<&str>,
    ) -> Result<(u16, String), ScuError> {
        let (context, ts) = self.context_for(model)?;
        let charset = if identifier
            .iter()
            .any(|e| e.to_str().map(|v| !v.is_ascii()).unwrap_or(false))
        {
            dicom_encoding::text::SpecificCharacterSet::ISO_IR_192
        } else {
            Default::default()
        };
        let data = super::find::encode(identifier, &ts, charset).map_err(|e| self.protocol(e))?;
        let id = self.message_id();
        let command = dimse::query_request(field, id, model, destination);
        let room = self.room();
        let written: std::io::Result<()> = on_link!(&mut self.link, a => {
            let stream = a.inner_stream();
            async {
                send::write_pdv(stream, context, true, true, &command).await?;
                let mut pieces = data.chunks(room).peekable();
                while let Some(piece) = pieces.next() {
                    send::write_pdv(stream, context, false, pieces.peek().is_none(), piece).await?;
                }
                Ok(())
            }
            .await
        });
        written.map_err(|e| self.protocol(e.to_string()))?;
        Ok((id, ts))
    }

    /// The largest PDV value the peer takes.
    fn room(&self) -> usize {
        let max =
            on_link!(&self.link, a => dicom_ul::association::Association::peer_max_pdu_length(a));
        match max {
            0 => 1 << 20,
            max => (max as usize).saturating_sub(6).clamp(1, 1 << 24),
        }
    }

    /// C-FIND in `model`: the identifiers of the matches (the first `limit`; a C-CANCEL stops
    /// the rest) and the final status.
    pub async fn find(
        &mut self,
        model: &str,
        identifier: &InMemDicomObject,
        limit: usize,
    ) -> Result<(Vec<InMemDicomObject>, u16), ScuError> {
        use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
        let (id, ts) = self
            .query_request(dimse::command::C_FIND_RQ, model, identifier, None)
            .await?;
        let syntax = TransferSyntaxRegistry
            .get(&ts)
            .ok_or_else(|| self.protocol(format!("unknown transfer syntax {ts}")))?;
        let mut answers = Vec::new();
        let mut cancelled = false;
        loop {
            let (response, data) = self.message().await?;
            if response.message_id != id {
                continue;
            }
            let code = response.status.unwrap_or(dimse::status::UNABLE_TO_PROCESS);
            if !matches!(code, dimse::status::PENDING | 0xFF01) {
                return Ok((answers, code));
            }
            let Some(data) = data else { continue };
            if answers.len() == limit {
                if !cancelled {
                    cancelled = true;
                    let (context, _) = self.context_for(model)?;
                    let cancel = dimse::cancel_request(id);
                    let written = on_link!(&mut self.link, a => {
                        send::write_pdv(a.inner_stream(), context, true, true, &cancel).await
                    });
                    written.map_err(|e| self.protocol(e.to_string()))?;
                }
                continue;
            }
            // Checked before dicom-rs reads it, as our SCP checks identifiers.
            crate::ingest::walk_bytes(&data, &ts).map_err(|e| self.protocol(e.to_string()))?;
            let answer = InMemDicomObject::read_dataset_with_ts(&data[..], syntax)
                .map_err(|e| self.protocol(format!("an unreadable answer: {e}")))?;
            answers.push(answer);
        }
    }

    /// C-MOVE in `model` of what `identifier` names to `destination`: the final status and
    /// counts.
    pub async fn r#move(
        &mut self,
        model: &str,
        identifier: &InMemDicomObject,
        destination: &str,
    ) -> Result<(u16, dimse::SubOperations), ScuError> {
        let (id, _) = self
            .query_request(
                dimse::command::C_MOVE_RQ,
                model,
                identifier,
                Some(destination),
            )
            .await?;
        loop {
            let (response, _) = self.message().await?;
            if response.message_id != id {
                continue;
            }
            let code = response.status.unwrap_or(dimse::status::UNABLE_TO_PROCESS);
            if code != dimse::status::PENDING {
                return Ok((code, response.sub_operations));
            }
        }
    }

    fn protocol(&self, error: String) -> ScuError {
        ScuError::Protocol {
            peer: self.peer.clone(),
            error,
        }
    }

    /// Releases the association (an abort if the peer does not answer the release).
    pub async fn release(self) {
        let timeout = self.timeout;
        on_link!(self.link, a => {
            if tokio::time::timeout(timeout, a.release()).await.is_err() {
                tracing::debug!("no answer to A-RELEASE");
            }
        })
    }

    /// Aborts the association.
    pub async fn abort(self) {
        on_link!(self.link, a => { let _ = a.abort().await; })
    }
}

async fn next_pdu<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    max: u32,
    timeout: Duration,
) -> Result<Pdu, String> {
    match tokio::time::timeout(timeout, receive::receive_pdu(stream, buffer, max)).await {
        Ok(Ok(pdu)) => Ok(pdu),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Without it, each response waits out the peer's delayed ACK (~40 ms).
fn no_delay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
    }
}
