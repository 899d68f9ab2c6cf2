//! One batch of received instances written in one transaction, each level's rows in one
//! statement, the statements sent together where the database allows (`Script`): a batch costs
//! the same few round trips to the database whatever its size.

use std::collections::HashSet;
use std::fmt::Write as _;

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Row, Transaction};

use super::changes::{self, ChangeType};
use super::script::{Script, add};
use super::{Backend, IndexError, Level, NewInstance, StoreOutcome};
use crate::config::OverwritePolicy;

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

    let mut inserts = Script::new(backend);
    insert_new(&mut inserts, Level::Patient, &patients, bind_patient)?;
    insert_new(&mut inserts, Level::Study, &studies, bind_study)?;
    insert_new(&mut inserts, Level::Series, &series, bind_series)?;
    insert_new(&mut inserts, Level::Instance, &instances, bind_instance)?;
    let mut created: [HashSet<String>; 4] = Default::default();
    for row in inserts.fetch_all(tx).await? {
        let level: i64 = row.try_get("level")?;
        created[level as usize].insert(row.try_get("id")?);
    }
    let [new_patients, new_studies, new_series, mut inserted] = created;

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut changed: Vec<&NewInstance> = Vec::with_capacity(batch.len());
    for (new, policy) in batch {
        // `remove`: a second copy of the same instance in this batch finds it stored.
        if inserted.remove(&new.ids.instance) {
            outcomes.push(StoreOutcome::Stored);
            changed.push(new);
            continue;
        }
        let stored_key: String = sqlx::query(match policy {
            OverwritePolicy::Never => "SELECT blob_key FROM instances WHERE id = $1",
            OverwritePolicy::Always => backend.select_blob_for_update(),
        })
        .bind(&new.ids.instance)
        .fetch_one(&mut **tx)
        .await?
        .try_get("blob_key")?;
        // Every receive writes a blob of its own key, so a row with this one is this very
        // instance, committed by an earlier attempt whose answer was lost (see the commit loop).
        if stored_key == new.blob_key {
            outcomes.push(StoreOutcome::Stored);
            continue;
        }
        outcomes.push(match policy {
            OverwritePolicy::Never => StoreOutcome::AlreadyStored,
            OverwritePolicy::Always => {
                changed.push(new);
                replace(tx, new, stored_key).await?
            }
        });
    }

    // Existing ancestors of what changed move their `last_update` forward.
    let mut updates = Script::new(backend);
    write_metadata(&mut updates, &changed)?;
    if let Some(at) = changed.iter().map(|n| n.received_at.as_str()).max() {
        let touched = |id: fn(&NewInstance) -> &String, created: &HashSet<String>| {
            first_of_each(&changed, id)
                .into_iter()
                .map(id)
                .filter(|id| !created.contains(*id))
                .collect::<Vec<_>>()
        };
        let patients = touched(|n| &n.ids.patient, &new_patients);
        touch(&mut updates, "patients", &patients, at)?;
        let studies = touched(|n| &n.ids.study, &new_studies);
        touch(&mut updates, "studies", &studies, at)?;
        let series = touched(|n| &n.ids.series, &new_series);
        touch(&mut updates, "series", &series, at)?;
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
    // SQLite: one writer holds the whole database from `BEGIN IMMEDIATE`, so the log goes out
    // with the other updates, one round trip fewer; PostgreSQL: last (see `record_all`).
    let log_now = backend == Backend::Sqlite;
    if log_now {
        changes::add_all(&mut updates, &log)?;
    }
    updates.execute(tx).await?;
    ready.await?;
    if !log_now {
        changes::record_all(tx, backend, &log).await?;
    }
    Ok(outcomes)
}

/// The DICOM JSON of the instances stored or replaced, one row each (the last copy of an
/// instance stored twice in the batch wins, as its row does).
fn write_metadata(script: &mut Script, changed: &[&NewInstance]) -> Result<(), IndexError> {
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
    let (sql, args) = script.statement();
    sql.push_str("INSERT INTO instance_metadata (instance, dicom_json) VALUES ");
    for (n, new) in rows.into_iter().enumerate() {
        if n > 0 {
            sql.push_str(", ");
        }
        placeholders(sql, args.len() + 1, 2);
        add(args, &new.ids.instance)?;
        add(args, &new.metadata)?;
    }
    sql.push_str(" ON CONFLICT (instance) DO UPDATE SET dicom_json = excluded.dicom_json");
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

/// Inserts one row per element of `rows` where none exists yet; the statement returns the IDs
/// it created, each with its level.
fn insert_new(
    script: &mut Script,
    level: Level,
    rows: &[&NewInstance],
    bind: fn(&mut AnyArguments, &NewInstance) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    let (table, columns) = match level {
        Level::Patient => ("patients", PATIENT_COLUMNS),
        Level::Study => ("studies", STUDY_COLUMNS),
        Level::Series => ("series", SERIES_COLUMNS),
        Level::Instance => ("instances", INSTANCE_COLUMNS),
    };
    let width = columns.split(',').count();
    let (sql, args) = script.statement();
    let _ = write!(sql, "INSERT INTO {table} ({columns}) VALUES ");
    for (n, new) in rows.iter().enumerate() {
        if n > 0 {
            sql.push_str(", ");
        }
        placeholders(sql, args.len() + 1, width);
        bind(args, new)?;
    }
    // The level tells the rows of the statements SQLite runs together apart.
    let _ = write!(
        sql,
        " ON CONFLICT (id) DO NOTHING RETURNING id, CAST({} AS BIGINT) AS level",
        level as i64
    );
    Ok(())
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

fn bind_patient(args: &mut AnyArguments, new: &NewInstance) -> Result<(), IndexError> {
    add(args, &new.ids.patient)?;
    add(args, new.patient.get("PatientID"))?;
    add(args, new.patient.get("PatientName"))?;
    add(
        args,
        super::write::fold_case(new.patient.get("PatientName")),
    )?;
    add(args, new.patient.get("PatientBirthDate"))?;
    add(args, new.patient.get("PatientSex"))?;
    add(args, new.patient.to_json())?;
    add(args, &new.received_at)?;
    add(args, &new.received_at)?;
    Ok(())
}

fn bind_study(args: &mut AnyArguments, new: &NewInstance) -> Result<(), IndexError> {
    add(args, &new.ids.study)?;
    add(args, &new.ids.patient)?;
    add(args, new.study.get("StudyInstanceUID"))?;
    add(args, new.study.get("StudyDate"))?;
    add(args, new.study.get("AccessionNumber"))?;
    add(args, new.study.get("StudyDescription"))?;
    add(args, new.study.to_json())?;
    add(args, &new.received_at)?;
    add(args, &new.received_at)?;
    Ok(())
}

fn bind_series(args: &mut AnyArguments, new: &NewInstance) -> Result<(), IndexError> {
    add(args, &new.ids.series)?;
    add(args, &new.ids.study)?;
    add(args, new.series.get("SeriesInstanceUID"))?;
    add(args, new.series.get("Modality"))?;
    add(args, new.series.get("SeriesNumber"))?;
    add(args, new.series.to_json())?;
    add(args, &new.received_at)?;
    add(args, &new.received_at)?;
    Ok(())
}

/// Binds an instance row, in the order of `INSTANCE_COLUMNS`.
fn bind_instance(args: &mut AnyArguments, new: &NewInstance) -> Result<(), IndexError> {
    add(args, &new.ids.instance)?;
    add(args, &new.ids.series)?;
    add(args, &new.sop_instance_uid)?;
    add(args, &new.sop_class_uid)?;
    add(args, new.instance.get("InstanceNumber"))?;
    add(args, &new.transfer_syntax_uid)?;
    add(args, &new.blob_key)?;
    add(args, new.file_size as i64)?;
    add(args, &new.sha256)?;
    add(args, &new.remote_aet)?;
    add(args, new.instance.to_json())?;
    add(args, &new.received_at)?;
    add(args, i64::from(new.has_pixel_data))?;
    Ok(())
}

/// Replaces a stored copy (overwrite policy `always`) whose blob is `old_blob_key`, queueing
/// that blob for deletion.
async fn replace(
    tx: &mut Transaction<'static, Any>,
    new: &NewInstance,
    old_blob_key: String,
) -> Result<StoreOutcome, IndexError> {
    let mut args = AnyArguments::default();
    bind_instance(&mut args, new)?;
    sqlx::query_with(REPLACE_INSTANCE, args)
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
fn touch(script: &mut Script, table: &str, ids: &[&String], at: &str) -> Result<(), IndexError> {
    if ids.is_empty() {
        return Ok(());
    }
    let (sql, args) = script.statement();
    let first = args.len() + 1;
    let _ = write!(
        sql,
        "UPDATE {table} SET last_update = ${first} WHERE last_update < ${first} AND id IN "
    );
    placeholders(sql, first + 1, ids.len());
    add(args, at)?;
    for id in ids {
        add(args, *id)?;
    }
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
        // Each receive writes a blob of its own key.
        let copy = |new: &NewInstance| NewInstance {
            blob_key: format!("copy-{}", new.blob_key),
            ..new.clone()
        };
        let outcomes = write_batch(
            &index,
            &[
                (&a1, never),
                (&copy(&a1), never),
                (&a2, never),
                (&b1, never),
            ],
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
        let outcomes = write_batch(&index, &[(&copy(&a2), never), (&a3, never)]).await;
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
        let outcomes = write_batch(&index, &[(&copy(&a3), OverwritePolicy::Always)]).await;
        assert_eq!(
            outcomes,
            [Replaced {
                old_blob_key: "1.1.1.3.dcm".into()
            }]
        );
    }

    /// A batch written again after its commit went through unanswered (a connection lost
    /// with the COMMIT sent): each instance is found as its own, stored, under either
    /// policy, with nothing logged, replaced or queued for deletion a second time.
    #[tokio::test]
    async fn a_batch_written_again_finds_its_own_committed_rows() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let a1 = instance("P1", "1.1", "1.1.1", "1.1.1.1", "20260101T000000");
        let a2 = instance("P1", "1.1", "1.1.1", "1.1.1.2", "20260101T000001");
        for policy in [OverwritePolicy::Never, OverwritePolicy::Always] {
            write_batch(&index, &[(&a1, policy), (&a2, policy)]).await;
            let logged = changes(&index).await;
            let outcomes = write_batch(&index, &[(&a1, policy), (&a2, policy)]).await;
            assert_eq!(outcomes, [StoreOutcome::Stored, StoreOutcome::Stored]);
            assert_eq!(changes(&index).await, logged, "nothing logged again");
            let queued: i64 = sqlx::query("SELECT COUNT(*) AS n FROM blob_deletions")
                .fetch_one(&index.pool.inner)
                .await
                .unwrap()
                .get("n");
            assert_eq!(queued, 0, "no blob of theirs queued for deletion");
        }
    }
}
