//! What the REST API asks of other DICOM nodes: sending stored resources to a peer (C-STORE, as
//! a job), querying a peer (C-FIND; the answers kept for a while) and retrieving what a query
//! found (C-MOVE, to us or another node, as a job).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;
use serde_json::{Value, json};

use super::dimse::status;
use super::find::{self, element};
use super::modalities::Modality;
use super::scu::{Caller, Outgoing, ScuError};
use super::send;
use crate::index::{Level, RetrieveItem};
use crate::jobs::{Job, Outcome};
use crate::storage::BlobStore;

/// Most answers one query keeps.
pub const MAX_ANSWERS: usize = 10_000;
/// Queries kept for `/queries`; older ones are forgotten.
const KEPT_QUERIES: usize = 100;

/// C-STOREs `items` (the instances of `parents`) to `peer`; the job's content is Orthanc's.
pub async fn store(
    caller: Caller,
    blobs: Arc<dyn BlobStore>,
    peer: Modality,
    items: Vec<RetrieveItem>,
    parents: Vec<String>,
    job: Arc<Job>,
) -> Outcome {
    let total = items.len();
    let content = |sent: usize, failed: usize| {
        json!({
            "Description": "REST API",
            "LocalAet": caller.aet,
            "RemoteAet": peer.aet,
            "ParentResources": parents,
            "InstancesCount": sent,
            "FailedInstancesCount": failed,
        })
    };
    if items.is_empty() {
        return (content(0, 0), None);
    }
    let mut outgoing = match Outgoing::connect(&caller, &peer, &send::proposals(&items)).await {
        Ok(outgoing) => outgoing,
        Err(e) => return (content(0, total), Some(e.to_string())),
    };
    let (mut sent, mut failed) = (0, 0);
    let mut lost = None;
    let mut prefetch = send::Prefetch::new(blobs.clone());
    for (i, item) in items.iter().enumerate() {
        if job.cancelled() {
            lost = Some("cancelled".to_string());
            break;
        }
        let sent_now = match prefetch.open(&items, i).await {
            Ok(opened) => outgoing.store(item, None, opened).await,
            Err(e) => Err(e),
        };
        match sent_now {
            Ok(stored) if stored.status == status::SUCCESS || status::is_warning(stored.status) => {
                sent += 1
            }
            Ok(stored) => {
                tracing::warn!(peer = %peer.name, sop_instance_uid = %item.sop_instance_uid,
                    status = format!("{:#06x}", stored.status), "C-STORE refused by the peer");
                failed += 1;
            }
            Err(e) => {
                tracing::warn!(peer = %peer.name, sop_instance_uid = %item.sop_instance_uid,
                    error = %e, "C-STORE failed");
                failed += 1;
                if e.association_lost() {
                    lost = Some(e.to_string());
                    break;
                }
            }
        }
        job.advance(i + 1, total, content(sent, failed));
    }
    match lost {
        Some(_) => outgoing.abort().await,
        None => outgoing.release().await,
    }
    let failed = total - sent;
    tracing::info!(peer = %peer.name, sent, failed, "sent to peer");
    let error = match (lost, failed) {
        (Some(why), _) => Some(format!("{failed} of {total} instances not sent: {why}")),
        (None, 0) => None,
        (None, n) => Some(format!("{n} of {total} instances not sent")),
    };
    (content(sent, failed), error)
}

/// The information model for queries and retrievals at `level`.
fn model(level: Level, is_move: bool) -> &'static str {
    match (level, is_move) {
        (Level::Patient, false) => find::PATIENT_ROOT,
        (Level::Patient, true) => super::retrieve::PATIENT_ROOT_MOVE,
        (_, false) => find::STUDY_ROOT,
        (_, true) => super::retrieve::STUDY_ROOT_MOVE,
    }
}

/// The unique keys identifying a resource of `level`, its ancestors' included.
fn unique_keys(level: Level) -> &'static [Tag] {
    match level {
        Level::Patient => &[tags::PATIENT_ID],
        Level::Study => &[tags::PATIENT_ID, tags::STUDY_INSTANCE_UID],
        Level::Series => &[tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID],
        Level::Instance => &[
            tags::STUDY_INSTANCE_UID,
            tags::SERIES_INSTANCE_UID,
            tags::SOP_INSTANCE_UID,
        ],
    }
}

/// Why a query could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("unknown tag {0:?}")]
    UnknownTag(String),
    #[error(transparent)]
    Peer(#[from] ScuError),
    #[error("the peer answered status {0:#06x}")]
    Status(u16),
}

/// C-FIND at `level` with `keys` (keyword or `gggg,eeee` → value), returning the level's main
/// tags and the unique keys above it.
pub async fn query(
    caller: &Caller,
    peer: &Modality,
    level: Level,
    keys: &[(String, String)],
) -> Result<Vec<InMemDicomObject>, QueryError> {
    let mut identifier = InMemDicomObject::new_empty();
    // `element` takes the dictionary's VR; LO for tags it does not know.
    let mut put = |tag: Tag, value: String| identifier.put(element(tag, VR::LO, value));
    put(tags::QUERY_RETRIEVE_LEVEL, find::level_name(level).into());
    for &tag in unique_keys(level) {
        put(tag, String::new());
    }
    let mut return_keys: Vec<Tag> = crate::main_tags::of_level(level)
        .iter()
        .map(|(tag, _)| *tag)
        .collect();
    if level == Level::Study {
        return_keys.extend(
            crate::main_tags::of_level(Level::Patient)
                .iter()
                .map(|(t, _)| *t),
        );
        return_keys.push(tags::MODALITIES_IN_STUDY);
    }
    for tag in return_keys {
        put(tag, String::new());
    }
    for (name, value) in keys {
        let tag = crate::main_tags::parse_tag(name)
            .or_else(|| StandardDataDictionary.by_name(name).map(|e| e.tag()))
            .ok_or_else(|| QueryError::UnknownTag(name.clone()))?;
        put(tag, value.clone());
    }
    let proposals = [(
        model(level, false).to_string(),
        vec![send::EXPLICIT_LE.into(), send::IMPLICIT_LE.into()],
    )];
    let mut outgoing = Outgoing::connect(caller, peer, &proposals).await?;
    let found = outgoing
        .find(model(level, false), &identifier, MAX_ANSWERS)
        .await;
    outgoing.release().await;
    match found? {
        (answers, status::SUCCESS | status::CANCEL) => Ok(answers),
        (_, code) => Err(QueryError::Status(code)),
    }
}

/// C-MOVEs each answer (by its unique keys) from `peer` to `target`; the job's content is
/// Orthanc's.
pub async fn retrieve(
    caller: Caller,
    peer: Modality,
    level: Level,
    answers: Vec<InMemDicomObject>,
    target: String,
    job: Arc<Job>,
) -> Outcome {
    let total = answers.len();
    let (mut completed, mut failed, mut warning) = (0u64, 0u64, 0u64);
    let content = |completed: u64, failed: u64, warning: u64| {
        json!({
            "Description": "REST API",
            "LocalAet": caller.aet,
            "RemoteAet": peer.aet,
            "TargetAet": target,
            "Query": answers.len(),
            "CompletedSubOperations": completed,
            "FailedSubOperations": failed,
            "WarningSubOperations": warning,
        })
    };
    let proposals = [(
        model(level, true).to_string(),
        vec![send::EXPLICIT_LE.into(), send::IMPLICIT_LE.into()],
    )];
    let mut outgoing = match Outgoing::connect(&caller, &peer, &proposals).await {
        Ok(outgoing) => outgoing,
        Err(e) => return (content(0, 0, 0), Some(e.to_string())),
    };
    let mut errors = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        if job.cancelled() {
            errors.push("cancelled".to_string());
            break;
        }
        let mut identifier = InMemDicomObject::new_empty();
        identifier.put(element(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            find::level_name(level).into(),
        ));
        for &tag in unique_keys(level) {
            if let Some(e) = answer.get(tag) {
                identifier.put(e.clone());
            }
        }
        match outgoing
            .r#move(model(level, true), &identifier, &target)
            .await
        {
            Ok((code, counts)) => {
                completed += u64::from(counts.completed);
                failed += u64::from(counts.failed);
                warning += u64::from(counts.warning);
                if code != status::SUCCESS {
                    errors.push(format!("answer {i}: status {code:#06x}"));
                }
            }
            Err(e) => {
                errors.push(e.to_string());
                break;
            }
        }
        job.advance(i + 1, total, content(completed, failed, warning));
    }
    outgoing.release().await;
    tracing::info!(peer = %peer.name, target, completed, failed, "retrieved from peer");
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    (content(completed, failed, warning), error)
}

/// A query's answers, kept for `/queries/{id}`.
pub struct Query {
    pub id: String,
    pub modality: String,
    pub level: Level,
    pub answers: Vec<InMemDicomObject>,
}

/// The queries of this process (each replica keeps its own, as Orthanc does).
#[derive(Clone, Default)]
pub struct Queries {
    all: Arc<Mutex<VecDeque<Arc<Query>>>>,
}

impl Queries {
    pub fn keep(
        &self,
        modality: String,
        level: Level,
        answers: Vec<InMemDicomObject>,
    ) -> Arc<Query> {
        let query = Arc::new(Query {
            id: uuid::Uuid::new_v4().to_string(),
            modality,
            level,
            answers,
        });
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.push_back(query.clone());
        while all.len() > KEPT_QUERIES {
            all.pop_front();
        }
        query
    }

    pub fn get(&self, id: &str) -> Option<Arc<Query>> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().find(|q| q.id == id).cloned()
    }

    pub fn ids(&self) -> Vec<String> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|q| q.id.clone()).collect()
    }
}

/// An answer as Orthanc's simplified JSON (keyword → value), for listings.
pub fn answer_json(answer: &InMemDicomObject) -> Value {
    crate::http::dataset_json(answer, crate::http::TagFormat::Simplified)
}
