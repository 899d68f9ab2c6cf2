//! The write path of the index, with group commit: callers hand their instance to one task,
//! which writes everything waiting in a single transaction. With many associations storing at
//! once, one commit (one fsync) then serves many instances; with one, it costs nothing extra.

use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::changes::{self, ChangeType};
use super::{Backend, IndexError, Level, NewInstance, StoreOutcome};
use crate::config::OverwritePolicy;

/// Most instances committed together.
const MAX_BATCH: usize = 64;

struct Job {
    new: NewInstance,
    policy: OverwritePolicy,
    reply: oneshot::Sender<Result<StoreOutcome, IndexError>>,
}

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the commit task on the current runtime.
    pub(super) fn start(writer: AnyPool, backend: Backend) -> Committer {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(commit_loop(writer, backend, queue));
        Committer { jobs }
    }

    pub(super) async fn store(
        &self,
        new: NewInstance,
        policy: OverwritePolicy,
    ) -> Result<StoreOutcome, IndexError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { new, policy, reply })
            .await
            .map_err(|_| IndexError::WriterStopped)?;
        answer.await.map_err(|_| IndexError::WriterStopped)?
    }
}

async fn commit_loop(writer: AnyPool, backend: Backend, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // One order for every batch of every server, so that two batches on PostgreSQL never
        // wait on each other's rows in opposite orders (a deadlock).
        jobs.sort_by(|a, b| {
            let (a, b) = (&a.new.ids, &b.new.ids);
            (&a.patient, &a.study, &a.series, &a.instance).cmp(&(
                &b.patient,
                &b.study,
                &b.series,
                &b.instance,
            ))
        });
        let started = std::time::Instant::now();
        let result = write_batch(&writer, backend, &jobs).await;
        tracing::debug!(
            batch = jobs.len(),
            commit_us = started.elapsed().as_micros() as u64,
            "index commit"
        );
        match result {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(_) if jobs.len() > 1 => {
                // Something in the batch failed: retry one by one, so that each caller gets
                // its own answer and one bad row cannot fail the others.
                for job in jobs {
                    let result = write_batch(&writer, backend, std::slice::from_ref(&job))
                        .await
                        .map(|mut outcomes| outcomes.remove(0));
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                if let Some(job) = jobs.pop() {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
    }
}

async fn write_batch(
    writer: &AnyPool,
    backend: Backend,
    jobs: &[Job],
) -> Result<Vec<StoreOutcome>, IndexError> {
    let mut tx = writer.begin_with(backend.begin_write()).await?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(write_one(&mut tx, backend, &job.new, job.policy).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Writes one instance and its ancestors inside `tx`, parents first, with their entries in
/// the change log.
async fn write_one(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    new: &NewInstance,
    policy: OverwritePolicy,
) -> Result<StoreOutcome, IndexError> {
    let at = &new.received_at;
    let patient_created = sqlx::query(
        "INSERT INTO patients (id, patient_id, patient_name, patient_name_folded, birth_date, sex,
            main_tags, created_at, last_update)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&new.ids.patient)
    .bind(new.patient.get("PatientID"))
    .bind(new.patient.get("PatientName"))
    .bind(fold_case(new.patient.get("PatientName")))
    .bind(new.patient.get("PatientBirthDate"))
    .bind(new.patient.get("PatientSex"))
    .bind(new.patient.to_json())
    .bind(at)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    let study_created = sqlx::query(
        "INSERT INTO studies (id, patient, study_uid, study_date, accession_number, description,
            main_tags, created_at, last_update)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&new.ids.study)
    .bind(&new.ids.patient)
    .bind(new.study.get("StudyInstanceUID"))
    .bind(new.study.get("StudyDate"))
    .bind(new.study.get("AccessionNumber"))
    .bind(new.study.get("StudyDescription"))
    .bind(new.study.to_json())
    .bind(at)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    let series_created = sqlx::query(
        "INSERT INTO series (id, study, series_uid, modality, series_number, main_tags, created_at,
            last_update)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&new.ids.series)
    .bind(&new.ids.study)
    .bind(new.series.get("SeriesInstanceUID"))
    .bind(new.series.get("Modality"))
    .bind(new.series.get("SeriesNumber"))
    .bind(new.series.to_json())
    .bind(at)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    let inserted = bind_instance(sqlx::query(INSERT_INSTANCE), new)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    let outcome = if inserted == 1 {
        StoreOutcome::Stored
    } else {
        match policy {
            // The instance row is untouched and its ancestors already existed: nothing to undo.
            OverwritePolicy::Never => return Ok(StoreOutcome::AlreadyStored),
            OverwritePolicy::Always => {
                let old_blob_key: String = sqlx::query(backend.select_blob_for_update())
                    .bind(&new.ids.instance)
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get("blob_key")?;
                bind_instance(sqlx::query(REPLACE_INSTANCE), new)
                    .execute(&mut **tx)
                    .await?;
                // Recorded with the change, so that the old file is removed even if we stop
                // before removing it ourselves.
                schedule_blob_deletion(tx, &old_blob_key, at).await?;
                StoreOutcome::Replaced { old_blob_key }
            }
        }
    };

    let levels = [
        (Level::Patient, &new.ids.patient, patient_created),
        (Level::Study, &new.ids.study, study_created),
        (Level::Series, &new.ids.series, series_created),
    ];
    for (level, id, created) in levels {
        if created {
            changes::record(tx, ChangeType::new_resource(level), level, id, at).await?;
        } else {
            touch(tx, level, id, at).await?;
        }
    }
    changes::record(
        tx,
        ChangeType::NewInstance,
        Level::Instance,
        &new.ids.instance,
        at,
    )
    .await?;
    Ok(outcome)
}

/// Moves an existing ancestor's `last_update` forward (never back: batches are not in time order).
async fn touch(
    tx: &mut Transaction<'static, Any>,
    level: Level,
    id: &str,
    at: &str,
) -> Result<(), IndexError> {
    let sql = match level {
        Level::Patient => "UPDATE patients SET last_update = $2 WHERE id = $1 AND last_update < $2",
        Level::Study => "UPDATE studies SET last_update = $2 WHERE id = $1 AND last_update < $2",
        Level::Series => "UPDATE series SET last_update = $2 WHERE id = $1 AND last_update < $2",
        Level::Instance => return Ok(()),
    };
    sqlx::query(sql)
        .bind(id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Queues a blob for removal from the blob store (see the `blob_deletions` table).
pub(super) async fn schedule_blob_deletion(
    tx: &mut Transaction<'static, Any>,
    blob_key: &str,
    at: &str,
) -> Result<(), IndexError> {
    sqlx::query(
        "INSERT INTO blob_deletions (blob_key, requested_at) VALUES ($1, $2)
         ON CONFLICT (blob_key) DO NOTHING",
    )
    .bind(blob_key)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Case folding for case-insensitive matching of person names, done here rather than in SQL
/// because SQLite's `UPPER` only knows ASCII.
pub fn fold_case(value: &str) -> String {
    value.to_uppercase()
}

const INSERT_INSTANCE: &str = "INSERT INTO instances (id, series, sop_instance_uid, sop_class_uid,
        instance_number, transfer_syntax_uid, blob_key, file_size, sha256, remote_aet, main_tags, received_at,
        has_pixel_data)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (id) DO NOTHING";

/// The same row, replacing a stored copy (overwrite policy `always`).
const REPLACE_INSTANCE: &str = "INSERT INTO instances (id, series, sop_instance_uid, sop_class_uid,
        instance_number, transfer_syntax_uid, blob_key, file_size, sha256, remote_aet, main_tags, received_at,
        has_pixel_data)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (id) DO UPDATE SET sop_class_uid = excluded.sop_class_uid,
        instance_number = excluded.instance_number, transfer_syntax_uid = excluded.transfer_syntax_uid,
        blob_key = excluded.blob_key, file_size = excluded.file_size, sha256 = excluded.sha256,
        remote_aet = excluded.remote_aet, main_tags = excluded.main_tags, received_at = excluded.received_at,
        has_pixel_data = excluded.has_pixel_data";

/// Binds the thirteen columns of an instance row, in the order of `INSERT_INSTANCE`.
fn bind_instance<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    new: &'q NewInstance,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    query
        .bind(&new.ids.instance)
        .bind(&new.ids.series)
        .bind(&new.sop_instance_uid)
        .bind(&new.sop_class_uid)
        .bind(new.instance.get("InstanceNumber"))
        .bind(&new.transfer_syntax_uid)
        .bind(&new.blob_key)
        .bind(new.file_size as i64)
        .bind(&new.sha256)
        .bind(&new.remote_aet)
        .bind(new.instance.to_json())
        .bind(&new.received_at)
        .bind(i64::from(new.has_pixel_data))
}
