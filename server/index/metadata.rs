//! Instances named by DICOM UIDs (DICOMweb addresses studies, series and instances by UID, not
//! by Orthanc ID), a page at a time, with their stored file and, when asked, their DICOM JSON;
//! and filling in the DICOM JSON of instances stored before it was kept.

use sqlx::{AssertSqlSafe, Row};

use super::{Index, IndexError};

/// Which instances: those of a study, of one of its series, or one instance.
#[derive(Debug, Clone, Default)]
pub struct UidPath {
    pub study: String,
    pub series: Option<String>,
    pub instance: Option<String>,
}

/// One instance under a [`UidPath`].
#[derive(Debug, Clone)]
pub struct UidInstance {
    pub id: String,
    pub study_uid: String,
    pub series_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub blob_key: String,
    pub file_size: u64,
    /// The stored DICOM JSON (bulk data URIs relative to the instance), when it was asked for
    /// and is kept.
    pub metadata: Option<String>,
}

impl Index {
    /// Up to `limit` instances under `path` whose ID sorts after `after` (a page: pass the last
    /// ID of the previous one), in ID order. Each UID is matched on its indexed column.
    pub async fn instances_by_uid(
        &self,
        path: &UidPath,
        after: &str,
        limit: u32,
        with_metadata: bool,
    ) -> Result<Vec<UidInstance>, IndexError> {
        let mut conditions = vec!["st.study_uid = $1", "i.id > $2"];
        let mut binds = vec![path.study.as_str(), after];
        if let Some(series) = &path.series {
            binds.push(series);
            conditions.push("se.series_uid = $3");
        }
        if let Some(instance) = &path.instance {
            binds.push(instance);
            conditions.push(if path.series.is_some() {
                "i.sop_instance_uid = $4"
            } else {
                "i.sop_instance_uid = $3"
            });
        }
        let (column, join) = if with_metadata {
            (
                "m.dicom_json",
                "LEFT JOIN instance_metadata m ON m.instance = i.id",
            )
        } else {
            ("CAST(NULL AS TEXT) AS dicom_json", "")
        };
        let sql = format!(
            "SELECT i.id, st.study_uid, se.series_uid, i.sop_instance_uid, i.sop_class_uid,
                    i.transfer_syntax_uid, i.blob_key, i.file_size, {column}
             FROM instances i
             JOIN series se ON se.id = i.series
             JOIN studies st ON st.id = se.study
             {join}
             WHERE {}
             ORDER BY i.id LIMIT {limit}",
            conditions.join(" AND ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&mut *self.pool.acquire().await?).await?;
        rows.iter()
            .map(|row| {
                Ok(UidInstance {
                    id: row.try_get("id")?,
                    study_uid: row.try_get("study_uid")?,
                    series_uid: row.try_get("series_uid")?,
                    sop_instance_uid: row.try_get("sop_instance_uid")?,
                    sop_class_uid: row.try_get("sop_class_uid")?,
                    transfer_syntax_uid: row.try_get("transfer_syntax_uid")?,
                    blob_key: row.try_get("blob_key")?,
                    file_size: row.try_get::<i64, _>("file_size")? as u64,
                    metadata: row.try_get("dicom_json")?,
                })
            })
            .collect()
    }

    /// The kept DICOM JSON of each of the instances `ids` that has one, by ID.
    pub async fn metadata_of(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, IndexError> {
        let mut sql =
            String::from("SELECT instance, dicom_json FROM instance_metadata WHERE instance IN ");
        super::batch::placeholders(&mut sql, 1, ids.len());
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut *self.pool.acquire().await?).await?;
        rows.iter()
            .map(|row| Ok((row.try_get("instance")?, row.try_get("dicom_json")?)))
            .collect()
    }

    /// Keeps the DICOM JSON of an instance stored before it was kept (read from its file).
    pub async fn fill_metadata(&self, instance: &str, json: &str) -> Result<(), IndexError> {
        sqlx::query(
            "INSERT INTO instance_metadata (instance, dicom_json)
             SELECT id, $2 FROM instances WHERE id = $1
             ON CONFLICT (instance) DO NOTHING",
        )
        .bind(instance)
        .bind(json)
        .execute(&mut *self.writer.acquire().await?)
        .await?;
        Ok(())
    }

    /// How many instances have no DICOM JSON kept.
    pub async fn count_without_metadata(&self) -> Result<u64, IndexError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances i
             WHERE NOT EXISTS (SELECT 1 FROM instance_metadata m WHERE m.instance = i.id)",
        )
        .fetch_one(&mut *self.pool.acquire().await?)
        .await?;
        Ok(count as u64)
    }

    /// Up to `limit` instances with no DICOM JSON kept, after `after` in ID order: what
    /// `orthweb migrate` fills in.
    pub async fn instances_without_metadata(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>, IndexError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT i.id, i.blob_key FROM instances i
             WHERE i.id > $1
               AND NOT EXISTS (SELECT 1 FROM instance_metadata m WHERE m.instance = i.id)
             ORDER BY i.id LIMIT {limit}"
        )))
        .bind(after)
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("blob_key")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OverwritePolicy;
    use crate::index::batch::tests::instance;

    #[tokio::test]
    async fn instances_are_found_by_uid_a_page_at_a_time_with_their_json() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("i.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        for sop in ["1.9.1", "1.9.2", "1.9.3"] {
            let new = instance("P", "1.2", "1.2.3", sop, "20260101T000000");
            index
                .store_instance(new, OverwritePolicy::Never)
                .await
                .unwrap();
        }
        let other = instance("P", "1.2", "1.2.4", "1.9.4", "20260101T000000");
        index
            .store_instance(other, OverwritePolicy::Never)
            .await
            .unwrap();

        let study = UidPath {
            study: "1.2".into(),
            ..UidPath::default()
        };
        let all = index.instances_by_uid(&study, "", 100, true).await.unwrap();
        assert_eq!(all.len(), 4);
        let first = index.instances_by_uid(&study, "", 3, false).await.unwrap();
        let rest = index
            .instances_by_uid(&study, &first[2].id, 3, false)
            .await
            .unwrap();
        assert_eq!((first.len(), rest.len()), (3, 1));
        assert!(first.iter().all(|i| i.metadata.is_none()));

        let series = UidPath {
            series: Some("1.2.3".into()),
            ..study.clone()
        };
        let in_series = index
            .instances_by_uid(&series, "", 100, true)
            .await
            .unwrap();
        assert_eq!(in_series.len(), 3);
        let json = in_series[0].metadata.as_deref().unwrap();
        assert!(json.contains(&in_series[0].sop_instance_uid), "{json}");

        let one = UidPath {
            instance: Some("1.9.4".into()),
            ..study.clone()
        };
        let found = index.instances_by_uid(&one, "", 100, true).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].series_uid, "1.2.4");
        let wrong_series = UidPath {
            instance: Some("1.9.4".into()),
            ..series
        };
        let none = index.instances_by_uid(&wrong_series, "", 100, true).await;
        assert!(none.unwrap().is_empty());

        // An instance whose JSON is missing (stored before it was kept) gets it filled in once.
        sqlx::query("DELETE FROM instance_metadata WHERE instance = $1")
            .bind(&found[0].id)
            .execute(&index.writer.inner)
            .await
            .unwrap();
        let missing = index.instances_without_metadata("", 10).await.unwrap();
        assert_eq!(
            missing,
            vec![(found[0].id.clone(), "1.9.4.dcm".to_string())]
        );
        index.fill_metadata(&found[0].id, "{}").await.unwrap();
        index
            .fill_metadata(&found[0].id, "{\"x\":1}")
            .await
            .unwrap();
        let filled = index.instances_by_uid(&one, "", 1, true).await.unwrap();
        assert_eq!(filled[0].metadata.as_deref(), Some("{}"));
        assert!(
            index
                .instances_without_metadata("", 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Deleting the instance removes its JSON with it.
        index
            .delete_resource(
                crate::index::Level::Instance,
                &found[0].id,
                "20260102T000000",
            )
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instance_metadata")
            .fetch_one(&index.pool.inner)
            .await
            .unwrap();
        assert_eq!(left, 3);
    }
}
