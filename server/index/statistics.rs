//! `/statistics`: the counts of each level and the total size of the stored files, read from
//! the `resource_counts` table rather than counted.
//!
//! Triggers on the level tables keep that table up to date in the transaction that inserts,
//! replaces or deletes the rows (migration 0004), so the counts are exact whatever writes them
//! (the group commit, deletions, several servers on one PostgreSQL) and the Rust write path
//! does nothing for them. On PostgreSQL a transaction adds to one of 16 rows, chosen by its
//! transaction ID, so that writers of several servers seldom wait on each other's counter
//! row; the read sums the rows.

use sqlx::Row;

use super::{Index, IndexError};

/// Counts and sizes for `/statistics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statistics {
    pub patients: i64,
    pub studies: i64,
    pub series: i64,
    pub instances: i64,
    pub total_size: i64,
}

/// The counters, summed over their rows (one on SQLite, 16 on PostgreSQL).
const READ_COUNTERS: &str = "SELECT CAST(SUM(patients) AS BIGINT) AS patients,
        CAST(SUM(studies) AS BIGINT) AS studies, CAST(SUM(series) AS BIGINT) AS series,
        CAST(SUM(instances) AS BIGINT) AS instances,
        CAST(SUM(total_size) AS BIGINT) AS total_size
    FROM resource_counts";

impl Index {
    /// Counts of each level and the total size of the stored files.
    pub async fn statistics(&self) -> Result<Statistics, IndexError> {
        let row = sqlx::query(READ_COUNTERS)
            .fetch_one(&mut *self.pool.acquire().await?)
            .await?;
        Ok(Statistics {
            patients: row.try_get("patients")?,
            studies: row.try_get("studies")?,
            series: row.try_get("series")?,
            instances: row.try_get("instances")?,
            total_size: row.try_get("total_size")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OverwritePolicy;
    use crate::index::batch::tests::instance;
    use crate::index::{Level, NewInstance, StoreOutcome};

    /// What the counters must say: the rows, counted.
    async fn counted(index: &Index) -> Statistics {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM patients) AS patients,
                    (SELECT COUNT(*) FROM studies) AS studies,
                    (SELECT COUNT(*) FROM series) AS series,
                    (SELECT COUNT(*) FROM instances) AS instances,
                    (SELECT CAST(COALESCE(SUM(file_size), 0) AS BIGINT) FROM instances)
                        AS total_size",
        )
        .fetch_one(&index.pool.inner)
        .await
        .unwrap();
        Statistics {
            patients: row.get("patients"),
            studies: row.get("studies"),
            series: row.get("series"),
            instances: row.get("instances"),
            total_size: row.get("total_size"),
        }
    }

    fn sized(mut new: NewInstance, size: u64) -> NewInstance {
        new.file_size = size;
        new
    }

    /// Another receive of `new`'s instance, so with a blob of its own.
    fn copy(mut new: NewInstance, size: u64) -> NewInstance {
        new.blob_key = format!("copy-{}", new.blob_key);
        sized(new, size)
    }

    /// The counters follow stores (concurrent, so batched, with a second copy), a replaced
    /// copy of another size and deletions at every level; reading them scans no level table.
    #[tokio::test]
    async fn counters_follow_stores_replacements_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let at = "20260101T000000";
        let news = [
            sized(instance("P1", "1.1", "1.1.1", "1.1.1.1", at), 100),
            sized(instance("P1", "1.1", "1.1.1", "1.1.1.2", at), 200),
            sized(instance("P1", "1.1", "1.1.2", "1.1.2.1", at), 300),
            sized(instance("P1", "1.2", "1.2.1", "1.2.1.1", at), 400),
            sized(instance("P2", "2.1", "2.1.1", "2.1.1.1", at), 500),
            // A second copy, in the same batch or the next: not counted.
            copy(instance("P1", "1.1", "1.1.1", "1.1.1.1", at), 999),
        ];
        let stores = news.iter().map(|new| {
            let index = index.clone();
            let new = new.clone();
            async move { index.store_instance(new, OverwritePolicy::Never).await }
        });
        for outcome in futures::future::join_all(stores).await {
            outcome.unwrap();
        }
        let want = Statistics {
            patients: 2,
            studies: 3,
            series: 4,
            instances: 5,
            total_size: 1500,
        };
        assert_eq!(index.statistics().await.unwrap(), want);
        assert_eq!(counted(&index).await, want);

        // A replaced copy changes the size only.
        let replacement = copy(instance("P1", "1.1", "1.1.1", "1.1.1.2", at), 250);
        let outcome = index
            .store_instance(replacement, OverwritePolicy::Always)
            .await
            .unwrap();
        assert!(matches!(outcome, StoreOutcome::Replaced { .. }));
        let stats = index.statistics().await.unwrap();
        assert_eq!((stats.instances, stats.total_size), (5, 1550));
        assert_eq!(stats, counted(&index).await);

        // Deletions, with the ancestors they empty.
        let ids = |n: &NewInstance| n.ids.clone();
        let (a, c, d, e) = (ids(&news[0]), ids(&news[2]), ids(&news[3]), ids(&news[4]));
        let deletions = [
            (Level::Instance, a.instance.clone(), (2, 3, 4, 4, 1450)),
            (Level::Series, c.series, (2, 3, 3, 3, 1150)),
            (Level::Study, d.study, (2, 2, 2, 2, 750)),
            (Level::Patient, e.patient, (1, 1, 1, 1, 250)),
            (Level::Patient, a.patient, (0, 0, 0, 0, 0)),
        ];
        for (level, id, (patients, studies, series, instances, total_size)) in deletions {
            index
                .delete_resource(level, &id, at)
                .await
                .unwrap()
                .unwrap();
            let want = Statistics {
                patients,
                studies,
                series,
                instances,
                total_size,
            };
            assert_eq!(
                index.statistics().await.unwrap(),
                want,
                "after {level} {id}"
            );
            assert_eq!(counted(&index).await, want, "after {level} {id}");
        }

        // Before the counters, this read counted every table.
        let plan = index.explain(READ_COUNTERS, &[]).await.unwrap();
        assert!(
            plan.iter().all(|step| step.contains("resource_counts")),
            "{plan:?}"
        );
    }
}
