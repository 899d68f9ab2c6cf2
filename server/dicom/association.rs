//! One association, from the accepted A-ASSOCIATE to release or abort: reassembles command sets,
//! streams data sets into the ingest pipeline and answers each request with its Message ID.
//! Generic over the stream, so plain TCP and TLS share it.

use std::net::SocketAddr;

use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::association::{Association, AsyncAssociation};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use super::dimse::{self, Command, command, status};
use super::find;
use super::receive::{self, ReceiveError};
use super::syntaxes;
use crate::index::{Index, StoreOutcome};
use crate::ingest::{Announced, Ingest, IngestError, InspectError, Part10Header, Spool};
use crate::metrics::METRICS;

/// Largest command set we reassemble; real ones are a few hundred bytes.
const MAX_COMMAND_SET: usize = 64 * 1024;

/// What the association handler needs from the server.
pub struct Services {
    pub ingest: std::sync::Arc<Ingest>,
    /// The index C-FIND reads.
    pub index: Index,
    /// The peers we know.
    pub modalities: super::Modalities,
    /// The stored files C-MOVE and C-GET send.
    pub blobs: std::sync::Arc<dyn crate::storage::BlobStore>,
    /// How we call C-MOVE destinations.
    pub caller: super::scu::Caller,
    /// The audit trail, which records each query.
    pub audit: crate::auth::AuditLog,
    /// Our AE title (the Retrieve AE Title of C-FIND matches).
    pub aet: String,
    /// Most matches one C-FIND answers (0: no limit).
    pub find_limit: u64,
    pub accept_unknown_sop_classes: bool,
    /// How long an established association may wait for its peer's next PDU.
    pub idle_timeout: std::time::Duration,
}

/// Where we are in the current DIMSE message.
enum State {
    /// Waiting for (more of) a command set.
    Command(Vec<u8>),
    /// Receiving the data set of a C-STORE into the spool (or discarding it after a failure,
    /// with the status to answer).
    StoreData {
        request: Command,
        context_id: u8,
        /// The SOP Class and Instance the data set must be.
        announced: Announced,
        spool: Result<Box<Spool>, (u16, String)>,
        /// When the command arrived, for the C-STORE latency metric.
        started: std::time::Instant,
    },
    /// Discarding the data set of a request we do not serve.
    SkipData { request: Command, context_id: u8 },
    /// Reading the identifier of a C-FIND, C-MOVE or C-GET.
    Identifier {
        request: Command,
        context_id: u8,
        identifier: Vec<u8>,
    },
}

/// Matches read from the index at a time.
const FIND_PAGE: u64 = 500;

/// Why an association ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AssociationError {
    #[error("network: {0}")]
    Network(#[from] dicom_ul::association::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Receive(#[from] ReceiveError),
    #[error("no PDU from the peer for {0:?}")]
    Idle(std::time::Duration),
}

pub struct Handler<'a, S> {
    pub(super) association: AsyncServerAssociation<S>,
    pub(super) services: &'a Services,
    pub(super) peer: SocketAddr,
    /// What this peer may do (modalities and `dicom_always_allow_*`).
    pub(super) permissions: super::peers::Permissions,
    /// The last Message ID of our own requests on this association (C-GET's C-STOREs).
    pub(super) next_message_id: u16,
}

impl<'a, S> Handler<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    pub fn new(
        association: AsyncServerAssociation<S>,
        services: &'a Services,
        peer: SocketAddr,
        permissions: super::peers::Permissions,
    ) -> Self {
        Handler {
            association,
            services,
            peer,
            permissions,
            next_message_id: 0,
        }
    }

    /// Serves the association until it is released or aborted.
    pub async fn run(mut self) -> Result<(), AssociationError> {
        let mut state = State::Command(Vec::new());
        loop {
            let pdu = match self.receive().await {
                Ok(pdu) => pdu,
                Err(e @ AssociationError::Receive(ReceiveError::Io(_) | ReceiveError::Closed)) => {
                    return Err(e);
                }
                Err(e) => {
                    let _ = self.association.abort().await;
                    return Err(e);
                }
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        state = match self.on_pdv(state, pdv).await {
                            Ok(next) => next,
                            Err(e) => {
                                let _ = self.association.abort().await;
                                return Err(e);
                            }
                        };
                    }
                }
                Pdu::ReleaseRQ => {
                    self.association.send(&Pdu::ReleaseRP).await?;
                    debug!(peer = %self.peer, "association released");
                    return Ok(());
                }
                Pdu::AbortRQ { source } => {
                    info!(peer = %self.peer, ?source, "association aborted by peer");
                    return Ok(());
                }
                other => {
                    let _ = self.association.abort().await;
                    return Err(AssociationError::Protocol(format!(
                        "unexpected PDU {}",
                        pdu_name(&other)
                    )));
                }
            }
        }
    }

    /// The next PDU, within the idle timeout.
    pub(super) async fn receive(&mut self) -> Result<Pdu, AssociationError> {
        let max = self.association.acceptor_max_pdu_length();
        let idle = self.services.idle_timeout;
        let (stream, buffer) = AsyncAssociation::get_mut(&mut self.association);
        match tokio::time::timeout(idle, receive::receive_pdu(stream, buffer, max)).await {
            Ok(received) => Ok(received?),
            Err(_) => Err(AssociationError::Idle(idle)),
        }
    }

    async fn on_pdv(&mut self, state: State, pdv: PDataValue) -> Result<State, AssociationError> {
        match (state, &pdv.value_type) {
            (State::Command(mut buffer), PDataValueType::Command) => {
                match command_fragment(&mut buffer, &pdv)? {
                    None => Ok(State::Command(buffer)),
                    Some(request) => self.on_command(request, pdv.presentation_context_id).await,
                }
            }
            (
                State::StoreData {
                    request,
                    context_id,
                    announced,
                    spool,
                    started,
                },
                PDataValueType::Data,
            ) => {
                let spool = match spool {
                    Ok(mut spool) => match spool.write_owned(pdv.data).await {
                        Ok(()) => Ok(spool),
                        Err(e) => {
                            warn!(peer = %self.peer, error = %e, "spooling failed");
                            Err((
                                status::OUT_OF_RESOURCES,
                                "cannot spool the data set".to_string(),
                            ))
                        }
                    },
                    failed => failed,
                };
                if !pdv.is_last {
                    return Ok(State::StoreData {
                        request,
                        context_id,
                        announced,
                        spool,
                        started,
                    });
                }
                self.finish_store(request, context_id, announced, spool)
                    .await?;
                METRICS.cstore(started.elapsed());
                Ok(State::Command(Vec::new()))
            }
            (
                State::SkipData {
                    request,
                    context_id,
                },
                PDataValueType::Data,
            ) => {
                if !pdv.is_last {
                    return Ok(State::SkipData {
                        request,
                        context_id,
                    });
                }
                self.refuse_operation(&request, context_id).await
            }
            (
                State::Identifier {
                    request,
                    context_id,
                    mut identifier,
                },
                PDataValueType::Data,
            ) => {
                if identifier.len() + pdv.data.len() > find::MAX_IDENTIFIER {
                    return Err(AssociationError::Protocol(format!(
                        "an identifier over {} bytes",
                        find::MAX_IDENTIFIER
                    )));
                }
                identifier.extend_from_slice(&pdv.data);
                if !pdv.is_last {
                    return Ok(State::Identifier {
                        request,
                        context_id,
                        identifier,
                    });
                }
                match request.field {
                    command::C_MOVE_RQ | command::C_GET_RQ => {
                        self.retrieve(&request, context_id, &identifier).await?
                    }
                    _ => self.find(&request, context_id, &identifier).await?,
                }
                Ok(State::Command(Vec::new()))
            }
            (_, value_type) => Err(AssociationError::Protocol(format!(
                "{value_type:?} fragment out of sequence"
            ))),
        }
    }

    /// Answers a C-FIND: a pending response per match, read from the index a page at a time,
    /// then the final status.
    async fn find(
        &mut self,
        request: &Command,
        context_id: u8,
        identifier: &[u8],
    ) -> Result<(), AssociationError> {
        let Some((model, ts)) = self.accepted_context(context_id) else {
            return Err(AssociationError::Protocol(format!(
                "presentation context {context_id} was not accepted"
            )));
        };
        if !self.permissions.find {
            warn!(peer = %self.peer, "C-FIND refused: this peer may not query (modalities)");
            return self
                .respond(
                    request,
                    context_id,
                    status::NOT_AUTHORIZED,
                    Some("this peer may not query"),
                )
                .await;
        }
        if model != find::PATIENT_ROOT && model != find::STUDY_ROOT {
            return self
                .respond(
                    request,
                    context_id,
                    status::SOP_CLASS_NOT_SUPPORTED,
                    Some("only Patient Root and Study Root queries"),
                )
                .await;
        }
        let query = match find::Query::parse(identifier, &ts, &model) {
            Ok(query) => query,
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "C-FIND refused");
                let code = match e {
                    find::QueryError::DoesNotMatchSopClass(_) => status::DATA_SET_MISMATCH,
                    find::QueryError::UnableToProcess(_) => status::UNABLE_TO_PROCESS,
                };
                return self
                    .respond(request, context_id, code, Some(&e.to_string()))
                    .await;
            }
        };
        let calling = self.association.peer_ae_title().to_string();
        info!(
            calling_aet = %calling,
            peer = %self.peer,
            level = %query.request.level,
            keys = ?query.request.query,
            "C-FIND"
        );
        // Who queried for what, in the audit trail as HTTP finds are.
        self.services.audit.record(crate::index::AuditEvent {
            at: crate::auth::now_rfc3339(),
            user: None,
            client: self.peer.ip().to_string(),
            action: "dicom-find".into(),
            level: query.request.level.to_string(),
            detail: format!("C-FIND from {calling}: {:?}", query.request.query),
            ..Default::default()
        });
        let index = self.services.index.clone();
        let aet = self.services.aet.clone();
        let limit = self.services.find_limit;
        let mut answers = find::Answers::new(&index, &query, &aet);
        let mut request_page = query.request.clone();
        let mut sent = 0u64;
        loop {
            request_page.limit = Some(FIND_PAGE);
            let page = match index.find(&request_page, true).await {
                Ok(page) => page,
                Err(e) => {
                    warn!(peer = %self.peer, error = %e, "C-FIND failed");
                    return self
                        .respond(
                            request,
                            context_id,
                            status::OUT_OF_RESOURCES,
                            Some("the index is unavailable"),
                        )
                        .await;
                }
            };
            for found in &page {
                if limit > 0 && sent == limit {
                    warn!(peer = %self.peer, limit, "C-FIND stopped at the find limit");
                    let comment = format!("more than {limit} matches; narrow the query");
                    return self
                        .respond(
                            request,
                            context_id,
                            status::OUT_OF_RESOURCES,
                            Some(&comment),
                        )
                        .await;
                }
                let data = match answers.identifier(found, &ts).await {
                    Ok(data) => data,
                    Err(e) => {
                        warn!(peer = %self.peer, error = %e, "C-FIND failed");
                        let (code, comment) = match e {
                            find::AnswerError::Index(_) => {
                                (status::OUT_OF_RESOURCES, "the index is unavailable")
                            }
                            find::AnswerError::Encode(_) => {
                                (status::UNABLE_TO_PROCESS, "cannot encode the matches")
                            }
                        };
                        return self.respond(request, context_id, code, Some(comment)).await;
                    }
                };
                self.respond_with_data_set(request, context_id, status::PENDING, data)
                    .await?;
                sent += 1;
                // One read attempt that does not wait: cheap enough to make after each match.
                if self.cancelled(request.message_id)? {
                    info!(peer = %self.peer, sent, "C-FIND cancelled");
                    return self
                        .respond(request, context_id, status::CANCEL, None)
                        .await;
                }
            }
            if (page.len() as u64) < FIND_PAGE {
                break;
            }
            request_page.since += FIND_PAGE;
        }
        debug!(peer = %self.peer, sent, "C-FIND done");
        self.respond(request, context_id, status::SUCCESS, None)
            .await
    }

    /// The peer's AE title.
    pub(super) fn calling_aet(&self) -> String {
        self.association.peer_ae_title().trim().to_string()
    }

    /// Whether the peer has sent a C-CANCEL for `message_id` (looked at without waiting).
    /// Anything else arriving in the middle of an operation ends the association.
    pub(super) fn cancelled(&mut self, message_id: u16) -> Result<bool, AssociationError> {
        let max = self.association.acceptor_max_pdu_length();
        let (stream, buffer) = AsyncAssociation::get_mut(&mut self.association);
        let Some(pdu) = receive::ready_pdu(stream, buffer, max)? else {
            return Ok(false);
        };
        let cancel = match &pdu {
            Pdu::PData { data } => match data.as_slice() {
                [pdv] if pdv.value_type == PDataValueType::Command && pdv.is_last => {
                    dimse::parse(&pdv.data)
                        .ok()
                        .filter(|c| c.field == command::C_CANCEL_RQ && c.message_id == message_id)
                }
                _ => None,
            },
            _ => None,
        };
        match cancel {
            Some(_) => Ok(true),
            None => Err(AssociationError::Protocol(format!(
                "{} in the middle of an operation",
                pdu_name(&pdu)
            ))),
        }
    }

    async fn on_command(
        &mut self,
        request: Command,
        context_id: u8,
    ) -> Result<State, AssociationError> {
        let Some((abstract_syntax, transfer_syntax)) = self.accepted_context(context_id) else {
            return Err(AssociationError::Protocol(format!(
                "presentation context {context_id} was not accepted"
            )));
        };
        match request.field {
            command::C_ECHO_RQ if !request.has_data_set => {
                debug!(peer = %self.peer, message_id = request.message_id, "C-ECHO");
                self.respond(&request, context_id, status::SUCCESS, None)
                    .await?;
                Ok(State::Command(Vec::new()))
            }
            command::C_STORE_RQ if request.has_data_set => {
                debug!(message_id = request.message_id, "C-STORE-RQ");
                let started = std::time::Instant::now();
                let announced = Announced {
                    sop_class_uid: if request.sop_class_uid.is_empty() {
                        abstract_syntax.clone()
                    } else {
                        request.sop_class_uid.clone()
                    },
                    sop_instance_uid: request.sop_instance_uid.clone(),
                };
                let spool = self
                    .begin_store(&announced, context_id, &abstract_syntax, &transfer_syntax)
                    .await;
                Ok(State::StoreData {
                    request,
                    context_id,
                    announced,
                    spool,
                    started,
                })
            }
            command::C_FIND_RQ | command::C_MOVE_RQ | command::C_GET_RQ if request.has_data_set => {
                Ok(State::Identifier {
                    request,
                    context_id,
                    identifier: Vec::new(),
                })
            }
            command::C_CANCEL_RQ => Ok(State::Command(Vec::new())),
            field if field & command::RESPONSE_BIT != 0 => {
                warn!(peer = %self.peer, field, "ignoring a response sent to us");
                Ok(if request.has_data_set {
                    State::SkipData {
                        request,
                        context_id,
                    }
                } else {
                    State::Command(Vec::new())
                })
            }
            field => {
                warn!(peer = %self.peer, field = format!("{field:#06x}"), "unsupported DIMSE command");
                if request.has_data_set {
                    Ok(State::SkipData {
                        request,
                        context_id,
                    })
                } else {
                    self.refuse_operation(&request, context_id).await
                }
            }
        }
    }

    /// Answers a request we do not serve (its data set, if any, already read off the wire).
    async fn refuse_operation(
        &mut self,
        request: &Command,
        context_id: u8,
    ) -> Result<State, AssociationError> {
        self.respond(
            request,
            context_id,
            status::UNRECOGNIZED_OPERATION,
            Some("operation not supported"),
        )
        .await?;
        Ok(State::Command(Vec::new()))
    }

    /// Opens the spool for a C-STORE, or decides the failure status to answer once the data
    /// set has been read off the wire.
    async fn begin_store(
        &self,
        announced: &Announced,
        context_id: u8,
        abstract_syntax: &str,
        transfer_syntax: &str,
    ) -> Result<Box<Spool>, (u16, String)> {
        if !self.permissions.store {
            return Err((
                status::NOT_AUTHORIZED,
                "this peer may not store (modalities)".into(),
            ));
        }
        if announced.sop_instance_uid.is_empty() {
            return Err((
                status::CANNOT_UNDERSTAND,
                "no Affected SOP Instance UID".into(),
            ));
        }
        let sop_class = announced.sop_class_uid.as_str();
        // A presentation context carries the one SOP class negotiated for it: an instance of
        // another class on it was never agreed to, so it is refused as an unsupported class
        // (0122) before any of it is read, not as a data set fault (A900).
        if sop_class != abstract_syntax.trim_end_matches(['\0', ' ']) {
            return Err((
                status::SOP_CLASS_NOT_SUPPORTED,
                format!(
                    "SOP class {sop_class} is not the abstract syntax {abstract_syntax} of \
                     presentation context {context_id}"
                ),
            ));
        }
        if !self.services.accept_unknown_sop_classes
            && !syntaxes::is_standard_storage_class(sop_class)
        {
            return Err((
                status::SOP_CLASS_NOT_SUPPORTED,
                format!("SOP class {sop_class} not accepted"),
            ));
        }
        let header = Part10Header {
            sop_class_uid: sop_class.to_string(),
            sop_instance_uid: announced.sop_instance_uid.clone(),
            transfer_syntax_uid: transfer_syntax.to_string(),
            source_aet: Some(self.association.peer_ae_title().to_string()),
        };
        self.services
            .ingest
            .begin(&header)
            .await
            .map(Box::new)
            .map_err(|e| {
                warn!(peer = %self.peer, error = %e, "cannot start spooling");
                (status::OUT_OF_RESOURCES, "cannot spool the data set".into())
            })
    }

    async fn finish_store(
        &mut self,
        request: Command,
        context_id: u8,
        announced: Announced,
        spool: Result<Box<Spool>, (u16, String)>,
    ) -> Result<(), AssociationError> {
        let sop_uid = request.sop_instance_uid.clone();
        let (code, comment) = match spool {
            Err((code, comment)) => {
                warn!(peer = %self.peer, sop_instance_uid = %sop_uid, status = format!("{code:#06x}"),
                    reason = %comment, "C-STORE refused");
                (code, Some(comment))
            }
            Ok(spool) => {
                let calling = self.association.peer_ae_title().to_string();
                match self
                    .services
                    .ingest
                    .finish(*spool, Some(announced), &calling)
                    .await
                {
                    Ok(received) => {
                        let duplicate = received.outcome == StoreOutcome::AlreadyStored;
                        info!(peer = %self.peer, calling_aet = %calling, sop_instance_uid = %sop_uid,
                            instance = %received.ids.instance, bytes = received.size, duplicate, "stored");
                        (status::SUCCESS, None)
                    }
                    Err(e) => {
                        let code = store_failure_status(&e);
                        warn!(peer = %self.peer, calling_aet = %calling, sop_instance_uid = %sop_uid,
                            status = format!("{code:#06x}"), error = %e, "C-STORE failed");
                        (code, Some(e.to_string()))
                    }
                }
            }
        };
        self.respond(&request, context_id, code, comment.as_deref())
            .await
    }

    async fn respond(
        &mut self,
        request: &Command,
        context_id: u8,
        code: u16,
        comment: Option<&str>,
    ) -> Result<(), AssociationError> {
        let command = dimse::response(request, code, comment);
        self.send_pdv(context_id, PDataValueType::Command, true, command)
            .await
    }

    /// A response followed by its data set, in PDUs no larger than the peer takes.
    async fn respond_with_data_set(
        &mut self,
        request: &Command,
        context_id: u8,
        code: u16,
        data: Vec<u8>,
    ) -> Result<(), AssociationError> {
        let command = dimse::response_with_data_set(request, code);
        // Both in one P-DATA-TF when they fit (a C-FIND match usually does): one write
        // instead of two for every match.
        let room = match self.association.requestor_max_pdu_length() {
            0 => usize::MAX,
            max => max as usize,
        };
        if command.len() + data.len() + 12 <= room {
            let pdv = |value_type, data| PDataValue {
                presentation_context_id: context_id,
                value_type,
                is_last: true,
                data,
            };
            self.association
                .send(&Pdu::PData {
                    data: vec![
                        pdv(PDataValueType::Command, command),
                        pdv(PDataValueType::Data, data),
                    ],
                })
                .await?;
            return Ok(());
        }
        self.send_pdv(context_id, PDataValueType::Command, true, command)
            .await?;
        self.send_data_set(context_id, data).await
    }

    /// A data set, in PDUs no larger than the peer takes.
    pub(super) async fn send_data_set(
        &mut self,
        context_id: u8,
        data: Vec<u8>,
    ) -> Result<(), AssociationError> {
        // A PDU holds the 6-byte item header and the value; 0 means no limit.
        let room = match self.association.requestor_max_pdu_length() {
            0 => usize::MAX,
            max => (max as usize).saturating_sub(6).max(1),
        };
        let mut pieces = data.chunks(room).peekable();
        while let Some(piece) = pieces.next() {
            let is_last = pieces.peek().is_none();
            self.send_pdv(context_id, PDataValueType::Data, is_last, piece.to_vec())
                .await?;
        }
        Ok(())
    }

    /// One PDV in a P-DATA-TF of its own.
    pub(super) async fn send_pdv(
        &mut self,
        presentation_context_id: u8,
        value_type: PDataValueType,
        is_last: bool,
        data: Vec<u8>,
    ) -> Result<(), AssociationError> {
        self.association
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id,
                    value_type,
                    is_last,
                    data,
                }],
            })
            .await?;
        Ok(())
    }

    pub(super) fn accepted_context(&self, id: u8) -> Option<(String, String)> {
        self.association
            .presentation_contexts()
            .iter()
            .find(|pc| pc.id == id && pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| (pc.abstract_syntax.clone(), pc.transfer_syntax.clone()))
    }
}

/// Adds a command PDV to the command set reassembled in `buffer`; once the last one is in,
/// parses the whole command set.
pub(crate) fn command_fragment(
    buffer: &mut Vec<u8>,
    pdv: &PDataValue,
) -> Result<Option<Command>, AssociationError> {
    if buffer.len() + pdv.data.len() > MAX_COMMAND_SET {
        return Err(AssociationError::Protocol("command set too large".into()));
    }
    buffer.extend_from_slice(&pdv.data);
    if !pdv.is_last {
        return Ok(None);
    }
    dimse::parse(buffer)
        .map(Some)
        .map_err(|e| AssociationError::Protocol(e.to_string()))
}

/// The DIMSE status for a failed ingest: the sender's fault or ours.
fn store_failure_status(error: &IngestError) -> u16 {
    match error {
        IngestError::Invalid(InspectError::Mismatch { .. }) => status::DATA_SET_MISMATCH,
        IngestError::Invalid(_) => status::CANNOT_UNDERSTAND,
        IngestError::Spool(_)
        | IngestError::Storage(_)
        | IngestError::Index(_)
        | IngestError::Upload(_)
        | IngestError::TooLarge(_) => status::OUT_OF_RESOURCES,
    }
}

pub(crate) fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::Unknown { .. } => "unknown",
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
    }
}
