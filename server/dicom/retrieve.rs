//! C-MOVE and C-GET SCP: the identifier resolved to stored instances (the C-FIND matching,
//! unique keys required), each sent with C-STORE — to the destination peer over an association
//! of ours (C-MOVE), or to the requester over its own (C-GET) — with pending responses counting
//! the sub-operations, C-CANCEL honoured and the failed instances listed at the end (PS3.4
//! C.4.2, C.4.3).

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use dicom_ul::pdu::{PDataValueType, Pdu};

use super::association::{AssociationError, Handler, command_fragment};
use super::dimse::{Command, SubOperations, command, status};
use super::find::{self, Query, QueryError};
use super::scu::Outgoing;
use super::send;
use crate::index::{Index, IndexError, Level, RetrieveItem};

/// Patient Root Query/Retrieve Information Model - MOVE.
pub const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
/// Study Root Query/Retrieve Information Model - MOVE.
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
/// Patient Root Query/Retrieve Information Model - GET.
pub const PATIENT_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.1.3";
/// Study Root Query/Retrieve Information Model - GET.
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

/// Matches read from the index at a time while resolving an identifier.
const PAGE: u64 = 500;

/// Why an identifier names nothing we can send.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The instances a C-MOVE or C-GET identifier names, in transfer syntax `ts_uid`, for the
/// retrieve information model whose FIND counterpart is `find_model`.
pub async fn resolve(
    index: &Index,
    identifier: &[u8],
    ts_uid: &str,
    find_model: &str,
) -> Result<Vec<RetrieveItem>, ResolveError> {
    let query = Query::parse(identifier, ts_uid, find_model)?;
    let mut request = query.request;
    // A retrieval names what it wants by unique key (PS3.4 C.4.2.2.1): without the level's,
    // it would send the whole archive.
    let unique = match request.level {
        Level::Patient => "PatientID",
        Level::Study => "StudyInstanceUID",
        Level::Series => "SeriesInstanceUID",
        Level::Instance => "SOPInstanceUID",
    };
    if !request.query.iter().any(|(key, _)| key == unique) {
        return Err(QueryError::DoesNotMatchSopClass(format!(
            "no {unique} at the {} level",
            request.level
        ))
        .into());
    }
    let mut items = Vec::new();
    request.limit = Some(PAGE);
    loop {
        let page = index.find(&request, false).await.map_err(|e| match e {
            crate::index::FindError::Index(e) => ResolveError::Index(e),
            other => QueryError::UnableToProcess(other.to_string()).into(),
        })?;
        for found in &page {
            items.extend(
                index
                    .retrieve_items(request.level, &found.resource.id)
                    .await?,
            );
        }
        if (page.len() as u64) < PAGE {
            break;
        }
        request.since += PAGE;
    }
    Ok(items)
}

/// The FIND model a C-MOVE or C-GET model matches with.
fn find_model(retrieve_model: &str, is_move: bool) -> Option<&'static str> {
    match (retrieve_model, is_move) {
        (PATIENT_ROOT_MOVE, true) | (PATIENT_ROOT_GET, false) => Some(find::PATIENT_ROOT),
        (STUDY_ROOT_MOVE, true) | (STUDY_ROOT_GET, false) => Some(find::STUDY_ROOT),
        _ => None,
    }
}

/// Sub-operation counts and the instances that failed.
struct Tally {
    counts: SubOperations,
    failed: Vec<String>,
}

impl Tally {
    fn new(total: usize) -> Tally {
        Tally {
            counts: SubOperations {
                remaining: saturate(total),
                ..SubOperations::default()
            },
            failed: Vec::new(),
        }
    }

    fn done(&mut self, item: &RetrieveItem, status: Option<u16>) {
        self.counts.remaining = self.counts.remaining.saturating_sub(1);
        match status {
            Some(status::SUCCESS) => {
                self.counts.completed = self.counts.completed.saturating_add(1)
            }
            Some(code) if status::is_warning(code) => {
                self.counts.warning = self.counts.warning.saturating_add(1)
            }
            _ => {
                self.counts.failed = self.counts.failed.saturating_add(1);
                self.failed.push(item.sop_instance_uid.clone());
            }
        }
    }

    /// The final status (PS3.4 C.4.2.1.5): success, some failed (B000), or all failed (A702).
    fn status(&self) -> u16 {
        let c = self.counts;
        match (c.failed, c.warning, c.completed) {
            (0, 0, _) => status::SUCCESS,
            (_, 0, 0) => status::SUB_OPERATIONS_IMPOSSIBLE,
            _ => status::SUB_OPERATIONS_FAILED,
        }
    }
}

/// Counts are 16-bit in DIMSE; a retrieval of more than 65,535 instances reports 65,535.
fn saturate(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Where the sub-operations go.
enum Target {
    /// C-MOVE: a peer, over an association of ours.
    Peer(Box<Outgoing>, String),
    /// C-GET: the requester, over its own association.
    Requester,
}

impl<S> Handler<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Answers a C-MOVE or a C-GET.
    pub(super) async fn retrieve(
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
        let is_move = request.field == command::C_MOVE_RQ;
        let operation = if is_move { "C-MOVE" } else { "C-GET" };
        let calling = self.calling_aet();
        let allowed = if is_move {
            self.permissions.r#move
        } else {
            self.permissions.get
        };
        let refused = if !allowed {
            Some((
                status::NOT_AUTHORIZED,
                "this peer may not retrieve (modalities)".to_string(),
            ))
        } else if find_model(&model, is_move).is_none() {
            Some((
                status::SOP_CLASS_NOT_SUPPORTED,
                "only Patient Root and Study Root retrievals".to_string(),
            ))
        } else {
            None
        };
        if let Some((code, comment)) = refused {
            warn!(peer = %self.peer, calling_aet = %calling, reason = %comment, "{operation} refused");
            return self.refuse(request, context_id, &ts, code, &comment).await;
        }
        let destination = if is_move {
            match self
                .services
                .modalities
                .destination(&request.move_destination)
                .await
            {
                Ok(Some(destination)) => Some(destination),
                Ok(None) => {
                    let comment =
                        format!("unknown move destination {:?}", request.move_destination);
                    warn!(peer = %self.peer, calling_aet = %calling, reason = %comment, "C-MOVE refused");
                    return self
                        .refuse(
                            request,
                            context_id,
                            &ts,
                            status::MOVE_DESTINATION_UNKNOWN,
                            &comment,
                        )
                        .await;
                }
                Err(e) => {
                    warn!(peer = %self.peer, error = %e, "C-MOVE failed: cannot read the peers");
                    return self
                        .refuse(
                            request,
                            context_id,
                            &ts,
                            status::OUT_OF_RESOURCES,
                            "the index is unavailable",
                        )
                        .await;
                }
            }
        } else {
            None
        };
        let find_model = find_model(&model, is_move).unwrap_or_default();
        let items = match resolve(&self.services.index, identifier, &ts, find_model).await {
            Ok(items) => items,
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "{operation} refused");
                let code = match e {
                    ResolveError::Query(QueryError::DoesNotMatchSopClass(_)) => {
                        status::DATA_SET_MISMATCH
                    }
                    ResolveError::Query(QueryError::UnableToProcess(_)) => {
                        status::UNABLE_TO_PROCESS
                    }
                    ResolveError::Index(_) => status::OUT_OF_RESOURCES,
                };
                return self
                    .refuse(request, context_id, &ts, code, &e.to_string())
                    .await;
            }
        };
        let to = match &destination {
            Some(d) => format!("{} ({})", d.name, d.aet),
            None => calling.clone(),
        };
        info!(peer = %self.peer, calling_aet = %calling, to = %to, instances = items.len(), "{operation}");
        self.services.audit.record(crate::index::AuditEvent {
            at: crate::auth::now_rfc3339(),
            user: None,
            client: self.peer.ip().to_string(),
            action: if is_move { "dicom-move" } else { "dicom-get" }.into(),
            level: String::new(),
            detail: format!(
                "{operation} from {calling} to {to}: {} instances",
                items.len()
            ),
            ..Default::default()
        });
        let mut tally = Tally::new(items.len());
        if items.is_empty() {
            return self
                .final_response(request, context_id, &ts, status::SUCCESS, &tally, None)
                .await;
        }
        let mut target = match destination {
            None => Target::Requester,
            Some(destination) => {
                let proposals = send::proposals(&items);
                match Outgoing::connect(&self.services.caller, &destination, &proposals).await {
                    Ok(outgoing) => Target::Peer(Box::new(outgoing), destination.name),
                    Err(e) => {
                        warn!(peer = %self.peer, error = %e, "C-MOVE failed");
                        for item in &items {
                            tally.done(item, None);
                        }
                        return self
                            .final_response(
                                request,
                                context_id,
                                &ts,
                                status::SUB_OPERATIONS_IMPOSSIBLE,
                                &tally,
                                Some(&e.to_string()),
                            )
                            .await;
                    }
                }
            }
        };
        let (lost, cancelled) = self
            .sub_operations(
                request,
                context_id,
                &items,
                &mut tally,
                &mut target,
                &calling,
            )
            .await?;
        if let Target::Peer(outgoing, _) = target {
            if lost {
                outgoing.abort().await;
            } else {
                outgoing.release().await;
            }
        }
        let code = if cancelled {
            status::CANCEL
        } else {
            tally.status()
        };
        let c = tally.counts;
        info!(peer = %self.peer, to = %to, completed = c.completed, failed = c.failed,
            warning = c.warning, cancelled, "{operation} done");
        self.final_response(request, context_id, &ts, code, &tally, None)
            .await
    }

    /// Sends each item, with a pending response after each; whether the target was lost
    /// (the rest then counts as failed) and whether the requester cancelled.
    async fn sub_operations(
        &mut self,
        request: &Command,
        context_id: u8,
        items: &[RetrieveItem],
        tally: &mut Tally,
        target: &mut Target,
        calling: &str,
    ) -> Result<(bool, bool), AssociationError> {
        let blobs = self.services.blobs.clone();
        let mut prefetch = send::Prefetch::new(blobs.clone());
        let mut cancelled = false;
        let mut lost = false;
        let mut rest = items.iter().enumerate();
        for (i, item) in rest.by_ref() {
            let opened = match prefetch.open(items, i).await {
                Ok(opened) => opened,
                Err(e) => {
                    warn!(sop_instance_uid = %item.sop_instance_uid, error = %e, "sub-operation failed");
                    tally.done(item, None);
                    continue;
                }
            };
            let outcome = match target {
                Target::Peer(outgoing, name) => {
                    match outgoing
                        .store(item, Some((calling, request.message_id)), opened)
                        .await
                    {
                        Ok(stored) => Ok(stored.status),
                        Err(e) => {
                            lost = e.association_lost();
                            Err(format!("{e} (to {name})"))
                        }
                    }
                }
                Target::Requester => {
                    self.store_to_requester(item, request.message_id, &mut cancelled, opened)
                        .await?
                }
            };
            match outcome {
                Ok(code) => {
                    if code != status::SUCCESS {
                        warn!(sop_instance_uid = %item.sop_instance_uid,
                            status = format!("{code:#06x}"), "sub-operation not successful");
                    }
                    tally.done(item, Some(code));
                }
                Err(e) => {
                    warn!(sop_instance_uid = %item.sop_instance_uid, error = %e, "sub-operation failed");
                    tally.done(item, None);
                }
            }
            if lost {
                break;
            }
            cancelled = cancelled || self.cancelled(request.message_id)?;
            if cancelled {
                break;
            }
            if tally.counts.remaining > 0 {
                self.retrieve_pending(request, context_id, tally.counts)
                    .await?;
            }
        }
        if lost {
            // The destination went away: what is left cannot be sent.
            for (_, item) in rest {
                tally.done(item, None);
            }
        }
        Ok((lost, cancelled))
    }

    /// C-STORE of one item to the requester of a C-GET, on its association: the status it
    /// answered, or why it was not sent. A C-CANCEL of the C-GET arriving meanwhile sets
    /// `cancelled`.
    async fn store_to_requester(
        &mut self,
        item: &RetrieveItem,
        get_message_id: u16,
        cancelled: &mut bool,
        opened: send::Opened,
    ) -> Result<Result<u16, String>, AssociationError> {
        let Some(choice) = send::choose(self.association.presentation_contexts(), item) else {
            return Ok(Err(format!(
                "the requester proposed no context for SOP class {} in {} or an uncompressed syntax",
                item.sop_class_uid, item.transfer_syntax_uid
            )));
        };
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        let id = self.next_message_id;
        match send::store_request(&mut self.association, &choice, id, item, None, opened).await {
            Ok(()) => {}
            Err(e) if e.association_lost() => {
                return Err(AssociationError::Protocol(format!(
                    "sending to the requester: {e}"
                )));
            }
            Err(e) => return Ok(Err(e.to_string())),
        }
        let mut buffer = Vec::new();
        loop {
            let pdu = self.receive().await?;
            let Pdu::PData { data } = pdu else {
                return Err(AssociationError::Protocol(format!(
                    "{} while waiting for a C-STORE response",
                    super::association::pdu_name(&pdu)
                )));
            };
            for pdv in data {
                if pdv.value_type != PDataValueType::Command {
                    return Err(AssociationError::Protocol(
                        "a data set while waiting for a C-STORE response".into(),
                    ));
                }
                let Some(command) = command_fragment(&mut buffer, &pdv)? else {
                    continue;
                };
                buffer.clear();
                match command.field {
                    f if f == command::C_STORE_RQ | command::RESPONSE_BIT
                        && command.message_id == id =>
                    {
                        return Ok(Ok(command.status.unwrap_or(status::UNABLE_TO_PROCESS)));
                    }
                    command::C_CANCEL_RQ if command.message_id == get_message_id => {
                        *cancelled = true;
                    }
                    other => {
                        return Err(AssociationError::Protocol(format!(
                            "command {other:#06x} while waiting for a C-STORE response"
                        )));
                    }
                }
            }
        }
    }

    async fn retrieve_pending(
        &mut self,
        request: &Command,
        context_id: u8,
        counts: SubOperations,
    ) -> Result<(), AssociationError> {
        let command =
            super::dimse::retrieve_response(request, status::PENDING, counts, None, false);
        self.send_pdv(context_id, PDataValueType::Command, true, command)
            .await
    }

    /// A final response to a retrieval that sent nothing.
    async fn refuse(
        &mut self,
        request: &Command,
        context_id: u8,
        ts: &str,
        code: u16,
        comment: &str,
    ) -> Result<(), AssociationError> {
        self.final_response(request, context_id, ts, code, &Tally::new(0), Some(comment))
            .await
    }

    /// The last response, with the Failed SOP Instance UID List when some failed.
    async fn final_response(
        &mut self,
        request: &Command,
        context_id: u8,
        ts: &str,
        code: u16,
        tally: &Tally,
        comment: Option<&str>,
    ) -> Result<(), AssociationError> {
        let identifier = if tally.failed.is_empty() {
            None
        } else {
            let mut object = InMemDicomObject::new_empty();
            object.put(DataElement::new(
                tags::FAILED_SOP_INSTANCE_UID_LIST,
                VR::UI,
                PrimitiveValue::Strs(tally.failed.iter().cloned().collect()),
            ));
            find::encode(&object, ts, Default::default()).ok()
        };
        let command = super::dimse::retrieve_response(
            request,
            code,
            tally.counts,
            comment,
            identifier.is_some(),
        );
        self.send_pdv(context_id, PDataValueType::Command, true, command)
            .await?;
        if let Some(data) = identifier {
            self.send_data_set(context_id, data).await?;
        }
        Ok(())
    }
}
