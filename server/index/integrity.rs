//! What `orthweb verify` asks of the index: every instance's file, a page at a time; one
//! instance's file again, to confirm a problem; which of a page of blobs nothing points at; and
//! where an instance belongs, for the report.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Index, IndexError};

/// An instance's row, as far as its file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedFile {
    pub id: String,
    pub sop_instance_uid: String,
    pub blob_key: String,
    pub size: u64,
    /// Lowercase hex, of the file as received.
    pub sha256: String,
}

/// The identifiers an admin needs to fetch an instance again from where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceOrigin {
    pub patient_id: String,
    pub study_uid: String,
    pub series_uid: String,
    pub remote_aet: String,
}

const FILE_COLUMNS: &str = "id, sop_instance_uid, blob_key, file_size, sha256";

fn decode(row: &AnyRow) -> Result<IndexedFile, IndexError> {
    Ok(IndexedFile {
        id: row.try_get("id")?,
        sop_instance_uid: row.try_get("sop_instance_uid")?,
        blob_key: row.try_get("blob_key")?,
        size: row.try_get::<i64, _>("file_size")?.max(0) as u64,
        sha256: row.try_get("sha256")?,
    })
}

impl Index {
    /// Up to `limit` instances with IDs after `after` ("" for the first page), by ID. Paging
    /// by key rather than by offset keeps every page as cheap as the first, and rows written
    /// or deleted meanwhile shift nothing.
    pub async fn indexed_files(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<IndexedFile>, IndexError> {
        let sql =
            format!("SELECT {FILE_COLUMNS} FROM instances WHERE id > $1 ORDER BY id LIMIT $2");
        sqlx::query(AssertSqlSafe(sql))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// Instance `id`'s file as the index has it now, if the instance is still there.
    pub async fn indexed_file(&self, id: &str) -> Result<Option<IndexedFile>, IndexError> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM instances WHERE id = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *self.pool.acquire().await?)
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// Those of `keys` that no instance points at and that are not queued for removal either
    /// (the janitor owns those), in the order given. One statement per few hundred keys.
    pub async fn unreferenced_blobs(&self, keys: &[String]) -> Result<Vec<String>, IndexError> {
        let mut unreferenced = Vec::new();
        for chunk in keys.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let list = placeholders.join(", ");
            // Only placeholders are formatted into the statement; the keys are bound.
            let sql = format!(
                "SELECT blob_key FROM instances WHERE blob_key IN ({list})
                 UNION SELECT blob_key FROM blob_deletions WHERE blob_key IN ({list})"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for key in chunk {
                query = query.bind(key);
            }
            let known = query
                .fetch_all(&mut *self.pool.acquire().await?)
                .await?
                .iter()
                .map(|row| row.try_get("blob_key"))
                .collect::<Result<std::collections::HashSet<String>, _>>()?;
            unreferenced.extend(chunk.iter().filter(|k| !known.contains(*k)).cloned());
        }
        Ok(unreferenced)
    }

    /// The patient, study and series of instance `id`, and the AE title that sent it.
    pub async fn instance_origin(&self, id: &str) -> Result<Option<InstanceOrigin>, IndexError> {
        let row = sqlx::query(
            "SELECT p.patient_id, st.study_uid, s.series_uid, i.remote_aet
             FROM instances i
             JOIN series s ON s.id = i.series
             JOIN studies st ON st.id = s.study
             JOIN patients p ON p.id = st.patient
             WHERE i.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        row.map(|row| {
            Ok(InstanceOrigin {
                patient_id: row.try_get("patient_id")?,
                study_uid: row.try_get("study_uid")?,
                series_uid: row.try_get("series_uid")?,
                remote_aet: row.try_get("remote_aet")?,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OverwritePolicy;
    use crate::index::batch::tests::instance;

    #[tokio::test]
    async fn pages_by_id_and_finds_unreferenced_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let mut stored = Vec::new();
        for n in 0..5 {
            let sop = format!("1.2.3.{n}");
            let new = instance("P", "1.2", "1.2.3", &sop, "20260101T000000");
            stored.push((new.ids.instance.clone(), new.blob_key.clone()));
            index
                .store_instance(new, OverwritePolicy::Never)
                .await
                .unwrap();
        }
        stored.sort();

        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let page = index.indexed_files(&after, 2).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            seen.extend(page.into_iter().map(|f| (f.id, f.blob_key)));
        }
        assert_eq!(seen, stored, "every row once, in ID order");

        let (id, key) = &stored[0];
        assert_eq!(
            index.indexed_file(id).await.unwrap().unwrap().blob_key,
            *key
        );
        assert!(index.indexed_file("no-such-id").await.unwrap().is_none());
        let origin = index.instance_origin(id).await.unwrap().unwrap();
        assert!(!origin.study_uid.is_empty());

        // A key queued for removal belongs to the janitor, not to verify.
        sqlx::query("INSERT INTO blob_deletions (blob_key, requested_at) VALUES ('queued', '')")
            .execute(&index.writer.inner)
            .await
            .unwrap();
        let keys = vec![
            "stray".to_string(),
            stored[1].1.clone(),
            "queued".to_string(),
            "stray2".to_string(),
        ];
        assert_eq!(
            index.unreferenced_blobs(&keys).await.unwrap(),
            ["stray", "stray2"]
        );
    }
}
