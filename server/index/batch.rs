//! One batch of received instances written in one transaction, each level's rows in one
//! statement: a batch costs the same few round trips to the database whatever its size.

use std::collections::HashSet;
use std::fmt::Write as _;

use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use super::changes::{self, ChangeType};
use super::{Backend, IndexError, Level, NewInstance, StoreOutcome};
use crate::config::OverwritePolicy;

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// Writes `batch` (sorted by resource IDs, see the commit loop) inside `tx`, parents first,
/// with the change log entries. Outcomes come in the order of `batch`.
///
/// `ready` is awaited between the rows and the change log; an error from it ends the write.
/// The commit loop waits there for the batch's files to be durable: the rows are written
/// meanwhile, and the log lock (see `record_all`) is only taken once nothing is left to wait on.
pub(super) async fn write(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    batch: &[(&NewInstance, OverwritePolicy)],
    ready: impl Future<Output = Result<(), IndexError>>,
) -> Result<Vec<StoreOutcome>, IndexError> {
    let news: Vec<&NewInstance> = batch.iter().map(|(new, _)| *new).collect();
    let patients = first_of_each(&news, |n| &n.ids.patient);
    let studies = first_of_each(&news, |n| &n.ids.study);
    let series = first_of_each(&news, |n| &n.ids.series);
    let instances = first_of_each(&news, |n| &n.ids.instance);

    let new_patients = insert_new(tx, Level::Patient, &patients, bind_patient).await?;
    let new_studies = insert_new(tx, Level::Study, &studies, bind_study).await?;
    let new_series = insert_new(tx, Level::Series, &series, bind_series).await?;
    let mut inserted = insert_new(tx, Level::Instance, &instances, bind_instance).await?;

    let mut outcomes = Vec::with_capacity(batch.len());
    for (new, policy) in batch {
        // `remove`: a second copy of the same instance in this batch finds it stored.
        let outcome = if inserted.remove(&new.ids.instance) {
            StoreOutcome::Stored
        } else {
            match policy {
                OverwritePolicy::Never => StoreOutcome::AlreadyStored,
                OverwritePolicy::Always => replace(tx, backend, new).await?,
            }
        };
        outcomes.push(outcome);
    }

    // Existing ancestors of what changed move their `last_update` forward.
    let changed: Vec<&NewInstance> = news
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| **outcome != StoreOutcome::AlreadyStored)
        .map(|(new, _)| *new)
        .collect();
    write_metadata(tx, &changed).await?;
    if let Some(at) = changed.iter().map(|n| n.received_at.as_str()).max() {
        let touched = |id: fn(&NewInstance) -> &String, created: &HashSet<String>| {
            first_of_each(&changed, id)
                .into_iter()
                .map(id)
                .filter(|id| !created.contains(*id))
                .collect::<Vec<_>>()
        };
        touch(
            tx,
            "patients",
            &touched(|n| &n.ids.patient, &new_patients),
            at,
        )
        .await?;
        touch(tx, "studies", &touched(|n| &n.ids.study, &new_studies), at).await?;
        touch(tx, "series", &touched(|n| &n.ids.series, &new_series), at).await?;
    }

    let mut log: Vec<(ChangeType, Level, &str, &str)> = Vec::new();
    let levels = [
        (Level::Patient, &patients, &new_patients),
        (Level::Study, &studies, &new_studies),
        (Level::Series, &series, &new_series),
    ];
    for (level, rows, created) in levels {
        for new in rows {
            let id = level_id(new, level);
            if created.contains(id) {
                let change = ChangeType::new_resource(level);
                log.push((change, level, id, &new.received_at));
            }
        }
    }
    for new in &changed {
        let id = &new.ids.instance;
        log.push((
            ChangeType::NewInstance,
            Level::Instance,
            id,
            &new.received_at,
        ));
    }
    ready.await?;
    // Last: see `record_all` on the order of the log.
    changes::record_all(tx, backend, &log).await?;
    Ok(outcomes)
}

/// The DICOM JSON of the instances stored or replaced, one row each (the last copy of an
/// instance stored twice in the batch wins, as its row does).
async fn write_metadata(
    tx: &mut Transaction<'static, Any>,
    changed: &[&NewInstance],
) -> Result<(), IndexError> {
    let mut seen = HashSet::new();
    let rows: Vec<&NewInstance> = changed
        .iter()
        .rev()
        .filter(|new| seen.insert(new.ids.instance.as_str()))
        .copied()
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("INSERT INTO instance_metadata (instance, dicom_json) VALUES ");
    for row in 0..rows.len() {
        if row > 0 {
            sql.push_str(", ");
        }
        placeholders(&mut sql, 1 + row * 2, 2);
    }
    sql.push_str(" ON CONFLICT (instance) DO UPDATE SET dicom_json = excluded.dicom_json");
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for new in rows {
        query = query.bind(&new.ids.instance).bind(&new.metadata);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// The first instance of each distinct `key`, in order.
fn first_of_each<'a>(
    news: &[&'a NewInstance],
    key: fn(&NewInstance) -> &String,
) -> Vec<&'a NewInstance> {
    let mut seen = HashSet::new();
    news.iter()
        .filter(|new| seen.insert(key(new).as_str()))
        .copied()
        .collect()
}

fn level_id(new: &NewInstance, level: Level) -> &str {
    match level {
        Level::Patient => &new.ids.patient,
        Level::Study => &new.ids.study,
        Level::Series => &new.ids.series,
        Level::Instance => &new.ids.instance,
    }
}

/// `$first, $first+1, …` for `count` values, in parentheses.
pub(super) fn placeholders(sql: &mut String, first: usize, count: usize) {
    sql.push('(');
    for n in first..first + count {
        if n > first {
            sql.push_str(", ");
        }
        let _ = write!(sql, "${n}");
    }
    sql.push(')');
}

/// Inserts one row per element of `rows` where none exists yet; returns the IDs it created.
async fn insert_new<'q>(
    tx: &mut Transaction<'static, Any>,
    level: Level,
    rows: &[&'q NewInstance],
    bind: fn(AnyQuery<'q>, &'q NewInstance) -> AnyQuery<'q>,
) -> Result<HashSet<String>, IndexError> {
    let (table, columns) = match level {
        Level::Patient => ("patients", PATIENT_COLUMNS),
        Level::Study => ("studies", STUDY_COLUMNS),
        Level::Series => ("series", SERIES_COLUMNS),
        Level::Instance => ("instances", INSTANCE_COLUMNS),
    };
    let width = columns.split(',').count();
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    for row in 0..rows.len() {
        if row > 0 {
            sql.push_str(", ");
        }
        placeholders(&mut sql, 1 + row * width, width);
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for new in rows {
        query = bind(query, new);
    }
    query
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| Ok(row.try_get::<String, _>("id")?))
        .collect()
}

const PATIENT_COLUMNS: &str = "id, patient_id, patient_name, patient_name_folded, birth_date, \
    sex, main_tags, created_at, last_update";
const STUDY_COLUMNS: &str = "id, patient, study_uid, study_date, accession_number, description, \
    main_tags, created_at, last_update";
const SERIES_COLUMNS: &str = "id, study, series_uid, modality, series_number, main_tags, \
    created_at, last_update";
const INSTANCE_COLUMNS: &str = "id, series, sop_instance_uid, sop_class_uid, instance_number, \
    transfer_syntax_uid, blob_key, file_size, sha256, remote_aet, main_tags, received_at, \
    has_pixel_data";

fn bind_patient<'q>(query: AnyQuery<'q>, new: &'q NewInstance) -> AnyQuery<'q> {
    query
        .bind(&new.ids.patient)
        .bind(new.patient.get("PatientID"))
        .bind(new.patient.get("PatientName"))
        .bind(super::write::fold_case(new.patient.get("PatientName")))
        .bind(new.patient.get("PatientBirthDate"))
        .bind(new.patient.get("PatientSex"))
        .bind(new.patient.to_json())
        .bind(&new.received_at)
        .bind(&new.received_at)
}

fn bind_study<'q>(query: AnyQuery<'q>, new: &'q NewInstance) -> AnyQuery<'q> {
    query
        .bind(&new.ids.study)
        .bind(&new.ids.patient)
        .bind(new.study.get("StudyInstanceUID"))
        .bind(new.study.get("StudyDate"))
        .bind(new.study.get("AccessionNumber"))
        .bind(new.study.get("StudyDescription"))
        .bind(new.study.to_json())
        .bind(&new.received_at)
        .bind(&new.received_at)
}

fn bind_series<'q>(query: AnyQuery<'q>, new: &'q NewInstance) -> AnyQuery<'q> {
    query
        .bind(&new.ids.series)
        .bind(&new.ids.study)
        .bind(new.series.get("SeriesInstanceUID"))
        .bind(new.series.get("Modality"))
        .bind(new.series.get("SeriesNumber"))
        .bind(new.series.to_json())
        .bind(&new.received_at)
        .bind(&new.received_at)
}

/// Binds an instance row, in the order of `INSTANCE_COLUMNS`.
fn bind_instance<'q>(query: AnyQuery<'q>, new: &'q NewInstance) -> AnyQuery<'q> {
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

/// Replaces a stored copy (overwrite policy `always`), queueing its blob for deletion.
async fn replace(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    new: &NewInstance,
) -> Result<StoreOutcome, IndexError> {
    let old_blob_key: String = sqlx::query(backend.select_blob_for_update())
        .bind(&new.ids.instance)
        .fetch_one(&mut **tx)
        .await?
        .try_get("blob_key")?;
    bind_instance(sqlx::query(REPLACE_INSTANCE), new)
        .execute(&mut **tx)
        .await?;
    // Recorded with the change, so that the old file is removed even if we stop before
    // removing it ourselves.
    super::write::schedule_blob_deletion(tx, &old_blob_key, &new.received_at).await?;
    Ok(StoreOutcome::Replaced { old_blob_key })
}

const REPLACE_INSTANCE: &str = "INSERT INTO instances (id, series, sop_instance_uid, sop_class_uid,
        instance_number, transfer_syntax_uid, blob_key, file_size, sha256, remote_aet, main_tags,
        received_at, has_pixel_data)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (id) DO UPDATE SET sop_class_uid = excluded.sop_class_uid,
        instance_number = excluded.instance_number, transfer_syntax_uid = excluded.transfer_syntax_uid,
        blob_key = excluded.blob_key, file_size = excluded.file_size, sha256 = excluded.sha256,
        remote_aet = excluded.remote_aet, main_tags = excluded.main_tags,
        received_at = excluded.received_at, has_pixel_data = excluded.has_pixel_data";

/// Moves `last_update` of the rows `ids` of `table` forward to `at` (never back).
async fn touch(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    ids: &[&String],
    at: &str,
) -> Result<(), IndexError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut sql = format!("UPDATE {table} SET last_update = $1 WHERE last_update < $1 AND id IN ");
    placeholders(&mut sql, 2, ids.len());
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(at);
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::ResourceIds;
    use crate::index::{Index, LevelTags};

    /// A new instance with the main tags of each level.
    pub(crate) fn instance(
        patient: &str,
        study: &str,
        series: &str,
        sop: &str,
        at: &str,
    ) -> NewInstance {
        let tags = |pairs: &[(&'static str, &str)]| {
            LevelTags(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
        };
        NewInstance {
            ids: ResourceIds::derive(patient, study, series, sop),
            patient: tags(&[("PatientID", patient), ("PatientName", "Doe^Jane")]),
            study: tags(&[("StudyInstanceUID", study)]),
            series: tags(&[("SeriesInstanceUID", series), ("Modality", "CT")]),
            instance: tags(&[("SOPInstanceUID", sop)]),
            sop_instance_uid: sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            has_pixel_data: true,
            metadata: format!("{{\"00080018\":{{\"vr\":\"UI\",\"Value\":[\"{sop}\"]}}}}"),
            blob_key: format!("{sop}.dcm"),
            file_size: 10,
            sha256: String::new(),
            remote_aet: String::new(),
            received_at: at.into(),
        }
    }

    async fn write_batch(
        index: &Index,
        batch: &[(&NewInstance, OverwritePolicy)],
    ) -> Vec<StoreOutcome> {
        let mut tx = index.writer.inner.begin().await.unwrap();
        let outcomes = write(&mut tx, index.backend, batch, async { Ok(()) })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        outcomes
    }

    async fn changes(index: &Index) -> Vec<(String, String)> {
        let page = index.changes(0, 100).await.unwrap();
        page.changes
            .into_iter()
            .map(|c| (c.change_type, c.resource_id))
            .collect()
    }

    /// One batch with two instances of a new series, a second copy of one of them and an
    /// instance of another patient: each row once, each creation logged once, parents first.
    #[tokio::test]
    async fn a_batch_writes_each_row_and_change_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let never = OverwritePolicy::Never;
        let a1 = instance("P1", "1.1", "1.1.1", "1.1.1.1", "20260101T000000");
        let a2 = instance("P1", "1.1", "1.1.1", "1.1.1.2", "20260101T000001");
        let b1 = instance("P2", "2.1", "2.1.1", "2.1.1.1", "20260101T000002");
        let outcomes = write_batch(
            &index,
            &[(&a1, never), (&a1, never), (&a2, never), (&b1, never)],
        )
        .await;
        use StoreOutcome::*;
        assert_eq!(outcomes, [Stored, AlreadyStored, Stored, Stored]);
        let stats = index.statistics().await.unwrap();
        assert_eq!(
            (stats.patients, stats.studies, stats.series, stats.instances),
            (2, 2, 2, 3)
        );
        let logged = changes(&index).await;
        let count = |kind: &str| logged.iter().filter(|(k, _)| k == kind).count();
        assert_eq!(
            (count("NewPatient"), count("NewStudy"), count("NewSeries")),
            (2, 2, 2)
        );
        assert_eq!(count("NewInstance"), 3);
        let first_instance = logged.iter().position(|(k, _)| k == "NewInstance").unwrap();
        assert_eq!(
            first_instance, 6,
            "ancestors are logged before instances: {logged:?}"
        );

        // A later batch: the existing ancestors are touched, not created again; a copy of a
        // stored instance changes nothing.
        let a3 = instance("P1", "1.1", "1.1.1", "1.1.1.3", "20260102T000000");
        let outcomes = write_batch(&index, &[(&a2, never), (&a3, never)]).await;
        assert_eq!(outcomes, [AlreadyStored, Stored]);
        assert_eq!(changes(&index).await.len(), logged.len() + 1);
        let last_update: String = sqlx::query("SELECT last_update FROM series WHERE id = $1")
            .bind(&a3.ids.series)
            .fetch_one(&index.pool.inner)
            .await
            .unwrap()
            .get("last_update");
        assert_eq!(last_update, "20260102T000000");
        let untouched: String = sqlx::query("SELECT last_update FROM series WHERE id = $1")
            .bind(&b1.ids.series)
            .fetch_one(&index.pool.inner)
            .await
            .unwrap()
            .get("last_update");
        assert_eq!(untouched, "20260101T000002");

        // Overwrite `always`: the second copy replaces the first, its blob queued for deletion.
        let mut copy = a3.clone();
        copy.blob_key = "copy.dcm".into();
        let outcomes = write_batch(&index, &[(&copy, OverwritePolicy::Always)]).await;
        assert_eq!(
            outcomes,
            [Replaced {
                old_blob_key: "1.1.1.3.dcm".into()
            }]
        );
    }
}
