//! `--repair`: what can be done about each problem, done after every check has run.
//!
//! - A missing blob cannot be recreated: the instance's row goes (with its `Deleted` change and
//!   any ancestor left empty, as a deletion over REST), so the archive no longer lists what it
//!   cannot serve and a resend of the instance is stored instead of being taken for a copy of
//!   it. Its identifiers are logged and written to the audit trail, for an admin to fetch it
//!   again from where it came from.
//! - A corrupt blob (other size or SHA-256) is moved to `quarantine/` first — it may be the
//!   last copy, damaged or not — then its row goes as for a missing one.
//! - An orphan blob is removed once the index confirms again that nothing points at it: it was
//!   never acknowledged, so its sender still holds it.
//! - A spool leftover is removed.
//! - An unreadable blob is left: a store that fails now may not fail later.
//!
//! A run that would remove more than a tenth of the rows or blobs checked (and more than
//! [`SYSTEMIC`]) looks like a wrong setting — another bucket, an unmounted volume, another
//! database — rather than damage, and is refused without `--force`.

use crate::auth::now_rfc3339;
use crate::index::{AuditEvent, Index, IndexedFile};
use crate::ingest::now_orthanc;
use crate::storage::{BlobStore, ListedBlob, StorageError};

use super::{Problem, Repair, Report};

/// Removals up to this many are never taken for a wrong setting.
pub const SYSTEMIC: u64 = 10;

pub(super) async fn run(index: &Index, blobs: &dyn BlobStore, force: bool, report: &mut Report) {
    let rows = report.count("missing") + report.count("size") + report.count("corrupt");
    let refuse_rows = (!force && looks_systemic(rows, report.rows_checked)).then(|| {
        format!(
            "{rows} of the {} rows checked would go: is the storage URL right, the volume \
             mounted? --force repairs anyway",
            report.rows_checked
        )
    });
    let orphans = report.count("orphan");
    let refuse_orphans = (!force && looks_systemic(orphans, report.blobs_listed)).then(|| {
        format!(
            "{orphans} of the {} blobs listed would go: is the index URL right? --force \
             repairs anyway",
            report.blobs_listed
        )
    });
    let mut audit = Vec::new();
    for held in &mut report.held {
        let repair = match (&held.problem, &refuse_rows, &refuse_orphans) {
            (
                Problem::Missing { .. } | Problem::Size { .. } | Problem::Corrupt { .. },
                Some(why),
                _,
            )
            | (Problem::Orphan { .. }, _, Some(why)) => Repair::Left(why.clone()),
            (Problem::Missing { file }, None, _) => {
                remove_row(index, blobs, file, "blob missing", &mut audit).await
            }
            (Problem::Size { file, .. } | Problem::Corrupt { file, .. }, None, _) => {
                quarantine(index, blobs, file, &mut audit).await
            }
            (Problem::Unreadable { .. }, _, _) => Repair::Left(
                "a read that failed may succeed later: check the store, then run verify again"
                    .into(),
            ),
            (Problem::Orphan { blob }, _, None) => {
                remove_orphan(index, blobs, blob, &mut audit).await
            }
            (Problem::Spool { path, .. }, _, _) => match std::fs::remove_file(path) {
                Ok(()) => Repair::Done("removed".into()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Repair::Done("gone meanwhile".into())
                }
                Err(e) => Repair::Left(format!("cannot remove it: {e}")),
            },
        };
        if matches!(repair, Repair::Done(_)) {
            report.repaired += 1;
        }
        held.repair = Some(repair);
    }
    if !audit.is_empty()
        && let Err(e) = index.record_audit(&audit).await
    {
        tracing::error!(error = %e, "the repairs could not be written to the audit trail");
    }
}

fn looks_systemic(removals: u64, checked: u64) -> bool {
    removals > SYSTEMIC && removals * 10 > checked
}

/// Moves a corrupt blob to quarantine, then removes its row.
async fn quarantine(
    index: &Index,
    blobs: &dyn BlobStore,
    file: &IndexedFile,
    audit: &mut Vec<AuditEvent>,
) -> Repair {
    match blobs.quarantine(&file.blob_key).await {
        Ok(()) => {
            let repair = remove_row(index, blobs, file, "blob corrupt, quarantined", audit).await;
            match repair {
                Repair::Done(what) => Repair::Done(format!("blob quarantined, {what}")),
                left => left,
            }
        }
        // Gone since it was checked: only the row is left to repair.
        Err(StorageError::NotFound(_)) => {
            remove_row(index, blobs, file, "blob corrupt, then gone", audit).await
        }
        Err(e) => Repair::Left(format!("cannot quarantine the blob: {e}")),
    }
}

/// Removes the row of an instance whose blob is gone or quarantined, if it still points at it.
async fn remove_row(
    index: &Index,
    blobs: &dyn BlobStore,
    file: &IndexedFile,
    why: &str,
    audit: &mut Vec<AuditEvent>,
) -> Repair {
    // Read before the row goes: what an admin needs to fetch the instance again.
    let origin = index
        .instance_origin(&file.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let deletion = match index
        .delete_instance_with_blob(&file.id, &file.blob_key, &now_orthanc())
        .await
    {
        Ok(Some(deletion)) => deletion,
        Ok(None) => return Repair::Done("deleted or replaced meanwhile: nothing to do".into()),
        Err(e) => return Repair::Left(format!("cannot remove the index row: {e}")),
    };
    // The deletion queued the blob for removal; it is gone or quarantined already, so this
    // only takes it off the queue.
    crate::janitor::remove_blobs(index, blobs, &deletion.blob_keys).await;
    let from = if origin.remote_aet.is_empty() {
        String::new()
    } else {
        format!(", sent by {}", origin.remote_aet)
    };
    let refetch = format!(
        "PatientID {}, StudyInstanceUID {}, SeriesInstanceUID {}, SOPInstanceUID {}{from}",
        origin.patient_id, origin.study_uid, origin.series_uid, file.sop_instance_uid
    );
    tracing::warn!(
        instance = %file.id,
        sop_instance_uid = %file.sop_instance_uid,
        patient_id = %origin.patient_id,
        study_uid = %origin.study_uid,
        series_uid = %origin.series_uid,
        remote_aet = %origin.remote_aet,
        blob = %file.blob_key,
        "verify: {why}; index row removed, the instance must be sent again"
    );
    audit.push(event(
        "Instance",
        &file.id,
        format!("orthweb verify: {why}; row removed; {refetch}"),
    ));
    Repair::Done(format!("index row removed; send it again: {refetch}"))
}

/// Removes an orphan blob once the index confirms that still nothing points at it.
async fn remove_orphan(
    index: &Index,
    blobs: &dyn BlobStore,
    blob: &ListedBlob,
    audit: &mut Vec<AuditEvent>,
) -> Repair {
    match index
        .unreferenced_blobs(std::slice::from_ref(&blob.key))
        .await
    {
        Ok(unreferenced) if unreferenced.is_empty() => {
            return Repair::Done("indexed meanwhile: nothing to do".into());
        }
        Ok(_) => {}
        Err(e) => return Repair::Left(format!("cannot look it up in the index: {e}")),
    }
    match blobs.delete(&blob.key).await {
        Ok(()) => {
            tracing::info!(blob = %blob.key, size = blob.size, "verify: orphan blob removed");
            audit.push(event(
                "",
                "",
                format!("orthweb verify: orphan blob {} removed", blob.key),
            ));
            Repair::Done("removed".into())
        }
        Err(e) => Repair::Left(format!("cannot remove it: {e}")),
    }
}

/// An audit event for a repair: done on this host, by whoever ran the command.
fn event(level: &str, resource_id: &str, detail: String) -> AuditEvent {
    AuditEvent {
        at: now_rfc3339(),
        user: None,
        client: "local".into(),
        action: "repair".into(),
        level: level.into(),
        resource_id: resource_id.into(),
        detail,
        http_status: 0,
        ..AuditEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_many_removals_and_a_large_share_look_systemic() {
        assert!(!looks_systemic(SYSTEMIC, SYSTEMIC));
        assert!(looks_systemic(SYSTEMIC + 1, SYSTEMIC + 1));
        assert!(looks_systemic(50, 100));
        assert!(!looks_systemic(50, 1000));
    }
}

#[cfg(test)]
mod store_tests {
    use std::time::SystemTime;

    use super::*;
    use crate::config::OverwritePolicy;
    use crate::index::test_instance;
    use crate::storage::FolderStore;
    use crate::verify::Held;

    fn orphan(key: &str) -> Held {
        Held {
            problem: Problem::Orphan {
                blob: ListedBlob {
                    key: key.into(),
                    size: 3,
                    modified: SystemTime::UNIX_EPOCH,
                },
            },
            repair: None,
        }
    }

    /// An orphan that a live server has indexed since it was found is not removed.
    #[tokio::test]
    async fn orphans_are_looked_up_again_before_they_go() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("i.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let blobs = FolderStore::open(&dir.path().join("blobs")).await.unwrap();
        for key in ["1.2.3.4.dcm", "abcd.dcm"] {
            let file = dir.path().join("f");
            std::fs::write(&file, b"abc").unwrap();
            blobs.put_file(key, &file, 3).await.unwrap();
        }
        // test_instance's blob key is "<SOP Instance UID>.dcm".
        let new = test_instance("P", "1.2", "1.2.3", "1.2.3.4", "20260101T000000");
        index
            .store_instance(new, OverwritePolicy::Never)
            .await
            .unwrap();

        let mut report = Report {
            blobs_listed: 2,
            ..Report::default()
        };
        report.add(orphan("1.2.3.4.dcm").problem);
        report.add(orphan("abcd.dcm").problem);
        run(&index, &blobs, false, &mut report).await;
        assert_eq!(report.repaired, 2, "{}", report.render());
        assert!(
            blobs.get("1.2.3.4.dcm", None).await.is_ok(),
            "indexed: kept"
        );
        assert!(matches!(
            blobs.get("abcd.dcm", None).await,
            Err(StorageError::NotFound(_))
        ));
    }

    /// Most of the archive missing looks like a wrong setting: nothing is removed unasked.
    #[tokio::test]
    async fn a_repair_that_would_empty_the_archive_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("i.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let blobs = FolderStore::open(&dir.path().join("blobs")).await.unwrap();
        let mut report = Report::default();
        for n in 0..=SYSTEMIC {
            report.rows_checked += 1;
            report.add(Problem::Missing {
                file: IndexedFile {
                    id: format!("id{n}"),
                    sop_instance_uid: format!("1.2.{n}"),
                    blob_key: format!("key{n}.dcm"),
                    size: 1,
                    sha256: String::new(),
                },
            });
        }
        run(&index, &blobs, false, &mut report).await;
        assert_eq!(report.repaired, 0);
        assert!(
            report
                .held
                .iter()
                .all(|h| matches!(&h.repair, Some(Repair::Left(why)) if why.contains("--force")))
        );
    }
}
