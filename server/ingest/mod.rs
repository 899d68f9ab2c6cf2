//! The ingest pipeline, shared by C-STORE and (later) REST upload: spool the part-10 file,
//! check and parse it, put it in the blob store, then index it. An instance counts as received
//! only when all of that succeeded.

pub mod inspect;
mod source;
mod spool;
pub mod upload;
mod walk;

use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;
use time::macros::format_description;

use crate::config::OverwritePolicy;
use crate::ids::ResourceIds;
use crate::index::{Index, IndexError, NewInstance, StoreOutcome};
use crate::metrics::METRICS;
use crate::storage::{BlobStore, StorageError};

pub use inspect::{Announced, InspectError};
use spool::Body;
pub use spool::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, Part10Header, Spool};
pub(crate) use walk::{value_size, walk_bytes};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The sender's data is at fault: not a valid or complete data set.
    #[error(transparent)]
    Invalid(#[from] InspectError),
    /// Our side failed: the spool folder, the blob store or the index.
    #[error("spooling failed: {0}")]
    Spool(#[source] std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Reading the upload failed (the client went away, say).
    #[error("reading the upload failed: {0}")]
    Upload(#[source] std::io::Error),
    #[error("the file is larger than the {0}-byte limit")]
    TooLarge(u64),
}

impl IngestError {
    /// A short name of the cause, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::Invalid(_) => "invalid",
            IngestError::Spool(_) => "spool",
            IngestError::Storage(_) => "storage",
            IngestError::Index(_) => "index",
            IngestError::Upload(_) => "upload",
            IngestError::TooLarge(_) => "too-large",
        }
    }
}

/// The result of a successful ingest.
#[derive(Debug, Clone)]
pub struct Received {
    pub ids: ResourceIds,
    pub outcome: StoreOutcome,
    pub size: u64,
    pub uids: InstanceUids,
}

/// The UIDs that name a received instance (DICOMweb's answers give them back).
#[derive(Debug, Clone, Default)]
pub struct InstanceUids {
    pub study: String,
    pub series: String,
    pub sop_instance: String,
    pub sop_class: String,
}

/// The pipeline and what it writes to.
pub struct Ingest {
    blobs: Arc<dyn BlobStore>,
    index: Index,
    spool_dir: PathBuf,
    policy: OverwritePolicy,
}

impl Ingest {
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        index: Index,
        spool_dir: PathBuf,
        policy: OverwritePolicy,
    ) -> Self {
        Ingest {
            blobs,
            index,
            spool_dir,
            policy,
        }
    }

    /// Where temporary files go (on the same file system as a folder blob store).
    pub fn spool_dir(&self) -> &std::path::Path {
        &self.spool_dir
    }

    /// Starts receiving an instance announced by a DIMSE command.
    pub async fn begin(&self, header: &Part10Header) -> Result<Spool, IngestError> {
        Spool::create(&self.spool_dir, header)
            .await
            .map_err(IngestError::Spool)
    }

    /// Completes an instance whose bytes are all in `spool`. `announced` is what the command
    /// announced (SOP Class and Instance UIDs); the data set must carry the same.
    pub async fn finish(
        &self,
        spool: Spool,
        announced: Option<Announced>,
        remote_aet: &str,
    ) -> Result<Received, IngestError> {
        self.finish_in_study(spool, announced, remote_aet, None)
            .await
    }

    /// Like `finish`, refusing an instance of another study than `study` (STOW-RS to a
    /// study's URL) before anything of it is indexed.
    pub async fn finish_in_study(
        &self,
        spool: Spool,
        announced: Option<Announced>,
        remote_aet: &str,
        study: Option<&str>,
    ) -> Result<Received, IngestError> {
        let source = if remote_aet.is_empty() {
            "rest"
        } else {
            "dicom"
        };
        let result = self.store(spool, announced, remote_aet, study).await;
        match &result {
            Ok(received) if received.outcome != StoreOutcome::AlreadyStored => {
                METRICS.received(source, received.size)
            }
            Ok(_) => {}
            Err(e) => METRICS.ingest_failed(e.kind()),
        }
        result
    }

    async fn store(
        &self,
        spool: Spool,
        announced: Option<Announced>,
        remote_aet: &str,
        study: Option<&str>,
    ) -> Result<Received, IngestError> {
        let started = std::time::Instant::now();
        let file = spool.finish().await.map_err(IngestError::Spool)?;
        // Every write gets a fresh key: a second copy never overwrites the blob the index
        // points at, even when two servers receive the same instance at once.
        let blob_key = format!("{}.dcm", uuid::Uuid::new_v4());
        // A spooled file: a local store takes it now, others read it from the spool. In
        // memory: the store writes it where it belongs, one hand-off to a blocking thread in
        // all, and it is inspected from memory meanwhile.
        let local = match &file.body {
            Body::Memory(pieces) => Local::Memory(pieces.clone()),
            Body::File(path) => Local::File(match self.blobs.place(&blob_key, path).await? {
                Some(placed) => placed,
                None => path.to_path_buf(),
            }),
        };
        // The file is made durable (fsync or upload) while it is inspected and its rows are
        // written; the index commits only once the file is stored. Both only read the file.
        let (stored_tx, stored_rx) = tokio::sync::oneshot::channel();
        let storing = async {
            let stored = match &local {
                Local::Memory(pieces) => self.blobs.put_pieces(&blob_key, pieces.clone()).await,
                Local::File(path) => self.blobs.put_file(&blob_key, path, file.size).await,
            };
            let _ = stored_tx.send(stored.is_ok());
            (stored, started.elapsed())
        };
        let indexing = async {
            let inspected = match &local {
                // At most one write batch (a MiB) of parsing: short enough for this thread.
                Local::Memory(pieces) => inspect::inspect_in_memory(pieces, announced.as_ref())?,
                Local::File(path) => inspect_file(path.clone(), announced).await?,
            };
            let inspected_at = started.elapsed();
            let found = inspected.tags.study.get("StudyInstanceUID");
            if let Some(expected) = study
                && expected != found
            {
                return Err(IngestError::Invalid(InspectError::Mismatch {
                    attribute: "Study Instance UID",
                    expected: expected.to_string(),
                    found: found.to_string(),
                }));
            }
            let new = new_instance(inspected, &blob_key, &file, remote_aet);
            let ids = new.ids.clone();
            let uids = InstanceUids {
                study: new.study.get("StudyInstanceUID").to_string(),
                series: new.series.get("SeriesInstanceUID").to_string(),
                sop_instance: new.sop_instance_uid.clone(),
                sop_class: new.sop_class_uid.clone(),
            };
            let outcome = self
                .index
                .store_instance_once_stored(new, self.policy, stored_rx)
                .await?;
            Ok::<_, IngestError>((ids, uids, outcome, inspected_at))
        };
        let ((stored, stored_at), indexed) = tokio::join!(storing, indexing);
        // Not indexed, so not received: the blob must not linger. A storage failure comes
        // first: it is why the index did not commit.
        let (ids, uids, outcome, inspected_at) = match (stored, indexed) {
            (Ok(()), Ok(indexed)) => indexed,
            (Err(e), _) => {
                self.delete_quietly(&blob_key).await;
                return Err(e.into());
            }
            (Ok(()), Err(IngestError::Index(e))) if e.may_have_committed() => {
                // A row may point at the blob: it stays. If none does, it is an orphan for
                // `orthweb verify --repair`; the sender was refused and still has the instance.
                tracing::warn!(blob = %blob_key, error = %e, "commit outcome unknown: blob kept");
                return Err(IngestError::Index(e));
            }
            (Ok(()), Err(e)) => {
                self.delete_quietly(&blob_key).await;
                return Err(e);
            }
        };
        tracing::debug!(
            inspect_us = inspected_at.as_micros() as u64,
            stored_us = stored_at.as_micros() as u64,
            indexed_us = started.elapsed().as_micros() as u64,
            "ingest timings"
        );
        match &outcome {
            StoreOutcome::Stored => {}
            StoreOutcome::AlreadyStored => self.delete_quietly(&blob_key).await,
            StoreOutcome::Replaced { old_blob_key } => self.delete_quietly(old_blob_key).await,
        }
        Ok(Received {
            ids,
            outcome,
            size: file.size,
            uids,
        })
    }

    /// Removes a blob nothing points at. A failure only leaves an orphan file behind, which is
    /// logged; it never makes an acknowledged instance unreadable.
    async fn delete_quietly(&self, key: &str) {
        if let Err(e) = self.blobs.delete(key).await {
            tracing::warn!(blob = key, error = %e, "could not delete an unused blob");
        }
    }
}

/// Where the blob store and the inspection read a received instance from.
enum Local {
    Memory(std::sync::Arc<Vec<Vec<u8>>>),
    /// The spooled file, or where the store placed it.
    File(PathBuf),
}

/// The index row of an inspected file stored under `blob_key`.
fn new_instance(
    inspected: inspect::Inspected,
    blob_key: &str,
    file: &spool::SpooledFile,
    remote_aet: &str,
) -> NewInstance {
    let tags = &inspected.tags;
    let ids = ResourceIds::derive(
        tags.patient.get("PatientID"),
        tags.study.get("StudyInstanceUID"),
        tags.series.get("SeriesInstanceUID"),
        &inspected.sop_instance_uid,
    );
    NewInstance {
        ids,
        patient: inspected.tags.patient,
        study: inspected.tags.study,
        series: inspected.tags.series,
        instance: inspected.tags.instance,
        sop_instance_uid: inspected.sop_instance_uid,
        sop_class_uid: inspected.sop_class_uid,
        transfer_syntax_uid: inspected.transfer_syntax_uid,
        has_pixel_data: inspected.has_pixel_data,
        metadata: inspected.metadata,
        blob_key: blob_key.to_string(),
        file_size: file.size,
        sha256: file.sha256.clone(),
        remote_aet: remote_aet.trim().to_string(),
        received_at: now_orthanc(),
    }
}

/// Inspects a spooled or placed file on a blocking thread.
async fn inspect_file(
    path: PathBuf,
    announced: Option<Announced>,
) -> Result<inspect::Inspected, IngestError> {
    tokio::task::spawn_blocking(move || inspect::inspect(&path, announced.as_ref()))
        .await
        .map_err(|e| IngestError::Spool(std::io::Error::other(e)))?
        .map_err(IngestError::from)
}

/// Now in UTC as `YYYYMMDDTHHMMSS`, Orthanc's date format.
pub fn now_orthanc() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]"
        ))
        .expect("a fixed format always formats")
}
