//! C-MOVE SCP: the identifier resolved to stored instances (the C-FIND matching, unique keys
//! required), each sent to the destination peer over an association of ours, with pending
//! responses counting the sub-operations, C-CANCEL honoured and the failed instances listed
//! at the end (PS3.4 C.4.2).

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::association::{AssociationError, Handler};
use super::dimse::{Command, SubOperations, status};
use super::find::{self, Query, QueryError};
use super::scu::Outgoing;
use super::send;
use crate::index::{Index, IndexError, Level, RetrieveItem};

/// Patient Root Query/Retrieve Information Model - MOVE.
pub const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
/// Study Root Query/Retrieve Information Model - MOVE.
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";

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

/// The FIND model a retrieve model matches with.
fn find_model(retrieve_model: &str) -> Option<&'static str> {
    match retrieve_model {
        PATIENT_ROOT_MOVE => Some(find::PATIENT_ROOT),
        STUDY_ROOT_MOVE => Some(find::STUDY_ROOT),
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

impl<S> Handler<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Answers a C-MOVE.
    pub(super) async fn r#move(
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
        let calling = self.calling_aet();
        let refuse = |code: u16, comment: String| (code, comment);
        let refused = if !self.permissions.r#move {
            Some(refuse(
                status::NOT_AUTHORIZED,
                "this peer may not retrieve (modalities)".into(),
            ))
        } else if find_model(&model).is_none() {
            Some(refuse(
                status::SOP_CLASS_NOT_SUPPORTED,
                "only Patient Root and Study Root retrievals".into(),
            ))
        } else {
            None
        };
        if let Some((code, comment)) = refused {
            warn!(peer = %self.peer, calling_aet = %calling, reason = %comment, "C-MOVE refused");
            return self
                .final_response(
                    request,
                    context_id,
                    &ts,
                    code,
                    &Tally::new(0),
                    Some(&comment),
                )
                .await;
        }
        let destination = match self
            .services
            .modalities
            .destination(&request.move_destination)
            .await
        {
            Ok(Some(destination)) => destination,
            Ok(None) => {
                let comment = format!("unknown move destination {:?}", request.move_destination);
                warn!(peer = %self.peer, calling_aet = %calling, reason = %comment, "C-MOVE refused");
                return self
                    .final_response(
                        request,
                        context_id,
                        &ts,
                        status::MOVE_DESTINATION_UNKNOWN,
                        &Tally::new(0),
                        Some(&comment),
                    )
                    .await;
            }
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "C-MOVE failed: cannot read the peers");
                return self
                    .final_response(
                        request,
                        context_id,
                        &ts,
                        status::OUT_OF_RESOURCES,
                        &Tally::new(0),
                        Some("the index is unavailable"),
                    )
                    .await;
            }
        };
        let items = match resolve(
            &self.services.index,
            identifier,
            &ts,
            find_model(&model).unwrap_or_default(),
        )
        .await
        {
            Ok(items) => items,
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "C-MOVE refused");
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
                    .final_response(
                        request,
                        context_id,
                        &ts,
                        code,
                        &Tally::new(0),
                        Some(&e.to_string()),
                    )
                    .await;
            }
        };
        info!(peer = %self.peer, calling_aet = %calling, destination = %destination.name,
            instances = items.len(), "C-MOVE");
        self.services.audit.record(crate::index::AuditEvent {
            at: crate::auth::now_rfc3339(),
            user: None,
            client: self.peer.ip().to_string(),
            action: "dicom-move".into(),
            level: String::new(),
            detail: format!(
                "C-MOVE from {calling} to {} ({}): {} instances",
                destination.name,
                destination.aet,
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
        let mut outgoing = match Outgoing::connect(
            &self.services.caller,
            &destination,
            &send::proposals(&items),
        )
        .await
        {
            Ok(outgoing) => outgoing,
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
        };
        let blobs = self.services.blobs.clone();
        let mut lost = false;
        let mut cancelled = false;
        let mut items = items.iter();
        for item in items.by_ref() {
            let sent = outgoing
                .store(item, Some((&calling, request.message_id)), blobs.as_ref())
                .await;
            match sent {
                Ok(stored) => {
                    if stored.status != status::SUCCESS {
                        warn!(sop_instance_uid = %item.sop_instance_uid, status = format!("{:#06x}", stored.status),
                            destination = %destination.name, "C-MOVE sub-operation not successful");
                    }
                    tally.done(item, Some(stored.status));
                }
                Err(e) => {
                    warn!(sop_instance_uid = %item.sop_instance_uid, error = %e,
                        destination = %destination.name, "C-MOVE sub-operation failed");
                    tally.done(item, None);
                    if e.association_lost() {
                        lost = true;
                        break;
                    }
                }
            }
            if tally.counts.remaining > 0 {
                self.retrieve_pending(request, context_id, tally.counts)
                    .await?;
            }
            if self.cancelled(request.message_id)? {
                cancelled = true;
                break;
            }
        }
        if lost {
            // The destination went away: what is left cannot be sent.
            for item in items {
                tally.done(item, None);
            }
            outgoing.abort().await;
        } else {
            outgoing.release().await;
        }
        let code = if cancelled {
            status::CANCEL
        } else {
            tally.status()
        };
        info!(peer = %self.peer, destination = %destination.name, completed = tally.counts.completed,
            failed = tally.counts.failed, warning = tally.counts.warning, cancelled, "C-MOVE done");
        self.final_response(request, context_id, &ts, code, &tally, None)
            .await
    }

    async fn retrieve_pending(
        &mut self,
        request: &Command,
        context_id: u8,
        counts: SubOperations,
    ) -> Result<(), AssociationError> {
        let command =
            super::dimse::retrieve_response(request, status::PENDING, counts, None, false);
        self.send_pdv(
            context_id,
            dicom_ul::pdu::PDataValueType::Command,
            true,
            command,
        )
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
        self.send_pdv(
            context_id,
            dicom_ul::pdu::PDataValueType::Command,
            true,
            command,
        )
        .await?;
        if let Some(data) = identifier {
            self.send_data_set(context_id, data).await?;
        }
        Ok(())
    }
}
