//! The index: patients, studies, series and instances in SQL (SQLite or PostgreSQL).
//!
//! Both backends run the same SQL through sqlx's `Any` driver (`$N` parameters and
//! `ON CONFLICT` upserts work in both); what differs — migrations, connection set-up and how
//! writers are serialised — is chosen once, from the URL scheme.

mod connect;
mod records;

use sqlx::{AnyPool, Row};

pub use connect::Backend;
pub use records::{LevelTags, NewInstance, StoreOutcome};

use crate::config::OverwritePolicy;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("unsupported index URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Counts and sizes for `/statistics`.
#[derive(Debug, Clone, Default)]
pub struct Statistics {
    pub patients: i64,
    pub studies: i64,
    pub series: i64,
    pub instances: i64,
    pub total_size: i64,
}

/// A handle on the index; cheap to clone.
#[derive(Clone)]
pub struct Index {
    backend: Backend,
    /// Reads, and writes on PostgreSQL.
    pool: AnyPool,
    /// Writes on SQLite go through a single connection: SQLite has one writer at a time, and
    /// queuing in the pool is cheaper than retrying on `SQLITE_BUSY`.
    writer: AnyPool,
}

impl Index {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Records one instance and its ancestors in one transaction. Ancestors are created if
    /// missing; the instance row decides whether this is a new instance or a second copy.
    pub async fn store_instance(
        &self,
        new: &NewInstance,
        policy: OverwritePolicy,
    ) -> Result<StoreOutcome, IndexError> {
        let mut tx = self.writer.begin_with(self.backend.begin_write()).await?;
        sqlx::query(
            "INSERT INTO patients (id, patient_id, patient_name, birth_date, sex, main_tags, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&new.ids.patient)
        .bind(new.patient.get("PatientID"))
        .bind(new.patient.get("PatientName"))
        .bind(new.patient.get("PatientBirthDate"))
        .bind(new.patient.get("PatientSex"))
        .bind(new.patient.to_json())
        .bind(&new.received_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO studies (id, patient, study_uid, study_date, accession_number, description, main_tags, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&new.ids.study)
        .bind(&new.ids.patient)
        .bind(new.study.get("StudyInstanceUID"))
        .bind(new.study.get("StudyDate"))
        .bind(new.study.get("AccessionNumber"))
        .bind(new.study.get("StudyDescription"))
        .bind(new.study.to_json())
        .bind(&new.received_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO series (id, study, series_uid, modality, series_number, main_tags, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&new.ids.series)
        .bind(&new.ids.study)
        .bind(new.series.get("SeriesInstanceUID"))
        .bind(new.series.get("Modality"))
        .bind(new.series.get("SeriesNumber"))
        .bind(new.series.to_json())
        .bind(&new.received_at)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO instances (id, series, sop_instance_uid, sop_class_uid, instance_number,
                 transfer_syntax_uid, blob_key, file_size, sha256, remote_aet, main_tags, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO NOTHING",
        )
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
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            tx.commit().await?;
            return Ok(StoreOutcome::Stored);
        }
        match policy {
            OverwritePolicy::Never => {
                tx.rollback().await?;
                Ok(StoreOutcome::AlreadyStored)
            }
            OverwritePolicy::Always => {
                let old = sqlx::query(self.backend.select_blob_for_update())
                    .bind(&new.ids.instance)
                    .fetch_one(&mut *tx)
                    .await?;
                let old_key: String = old.try_get("blob_key")?;
                sqlx::query(
                    "UPDATE instances SET sop_class_uid = $2, instance_number = $3, transfer_syntax_uid = $4,
                         blob_key = $5, file_size = $6, sha256 = $7, remote_aet = $8, main_tags = $9, received_at = $10
                     WHERE id = $1",
                )
                .bind(&new.ids.instance)
                .bind(&new.sop_class_uid)
                .bind(new.instance.get("InstanceNumber"))
                .bind(&new.transfer_syntax_uid)
                .bind(&new.blob_key)
                .bind(new.file_size as i64)
                .bind(&new.sha256)
                .bind(&new.remote_aet)
                .bind(new.instance.to_json())
                .bind(&new.received_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(StoreOutcome::Replaced {
                    old_blob_key: old_key,
                })
            }
        }
    }

    /// Counts of each level and the total size of the stored files.
    pub async fn statistics(&self) -> Result<Statistics, IndexError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM patients) AS patients,
                    (SELECT COUNT(*) FROM studies) AS studies,
                    (SELECT COUNT(*) FROM series) AS series,
                    (SELECT COUNT(*) FROM instances) AS instances,
                    (SELECT CAST(COALESCE(SUM(file_size), 0) AS BIGINT) FROM instances) AS total_size",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Statistics {
            patients: row.try_get("patients")?,
            studies: row.try_get("studies")?,
            series: row.try_get("series")?,
            instances: row.try_get("instances")?,
            total_size: row.try_get("total_size")?,
        })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), IndexError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
