//! Deleting a resource and everything under it, in one transaction: the rows go, a `Deleted`
//! change is logged for each, and their blobs are queued in `blob_deletions` (the caller, or
//! the janitor after a crash, removes the files). Ancestors left empty go too, as in Orthanc.

use sqlx::{AssertSqlSafe, Row};

use super::changes::{self, ChangeType};
use super::read::under;
use super::{Backend, Index, IndexError, Level};

/// What a deletion removed and what is left.
#[derive(Debug, Clone)]
pub struct Deletion {
    /// The nearest ancestor that still exists, if any (Orthanc's `RemainingAncestor`).
    pub remaining_ancestor: Option<(Level, String)>,
    /// Blobs of the deleted instances, queued for removal from the blob store.
    pub blob_keys: Vec<String>,
}

impl Index {
    /// Deletes `level`/`id` and everything under it. `None` when the ID is unknown.
    pub async fn delete_resource(
        &self,
        level: Level,
        id: &str,
        at: &str,
    ) -> Result<Option<Deletion>, IndexError> {
        self.delete_checked(level, id, None, at).await
    }

    /// Deletes instance `id` as `delete_resource` does, but only while its row still points at
    /// `blob_key`: a repair must not remove a copy that a live server has just put in the
    /// place of the one it found broken. `None` when the row is gone or points elsewhere.
    pub async fn delete_instance_with_blob(
        &self,
        id: &str,
        blob_key: &str,
        at: &str,
    ) -> Result<Option<Deletion>, IndexError> {
        self.delete_checked(Level::Instance, id, Some(blob_key), at)
            .await
    }

    async fn delete_checked(
        &self,
        level: Level,
        id: &str,
        blob_key: Option<&str>,
        at: &str,
    ) -> Result<Option<Deletion>, IndexError> {
        let mut tx = self.writer.begin_with(self.backend.begin_write()).await?;

        // Locking the resource first takes locks parent-first, the order ingest takes them in.
        let lock = match self.backend {
            Backend::Postgres => {
                format!("SELECT id FROM {} WHERE id = $1 FOR UPDATE", level.table())
            }
            Backend::Sqlite => format!("SELECT id FROM {} WHERE id = $1", level.table()),
        };
        if sqlx::query(AssertSqlSafe(lock))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        if let Some(expected) = blob_key {
            // The row is locked (or the database, on SQLite): it cannot change from here on.
            let current: String = sqlx::query("SELECT blob_key FROM instances WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("blob_key")?;
            if current != expected {
                return Ok(None);
            }
        }

        // The chain of ancestors, nearest first, read before anything is deleted.
        let mut ancestors = Vec::new();
        let mut current = (level, id.to_string());
        while let (Some(parent), Some(column)) = (current.0.parent(), current.0.parent_column()) {
            let sql = format!(
                "SELECT {column} AS parent FROM {} WHERE id = $1",
                current.0.table()
            );
            let parent_id: String = sqlx::query(AssertSqlSafe(sql))
                .bind(&current.1)
                .fetch_one(&mut *tx)
                .await?
                .try_get("parent")?;
            ancestors.push((parent, parent_id.clone()));
            current = (parent, parent_id);
        }

        // Instances under the resource (or the instance itself).
        let instances = if level == Level::Instance {
            "r.id = $1".to_string()
        } else {
            under(Level::Instance, level, "r")
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT r.blob_key FROM instances r WHERE {instances}"
        )))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let blob_keys = rows
            .iter()
            .map(|row| row.try_get("blob_key"))
            .collect::<Result<Vec<String>, _>>()?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO blob_deletions (blob_key, requested_at)
             SELECT r.blob_key, $2 FROM instances r WHERE {instances}
             ON CONFLICT (blob_key) DO NOTHING"
        )))
        .bind(id)
        .bind(at)
        .execute(&mut *tx)
        .await?;

        // Children before parents, for the foreign keys; each with its `Deleted` changes
        // (written last, see `changes::record_all`).
        let mut deleted: Vec<(Level, String)> = Vec::new();
        for below in Level::ALL.into_iter().rev().filter(|l| *l >= level) {
            let condition = if below == level {
                "r.id = $1".to_string()
            } else {
                under(below, level, "r")
            };
            let ids = format!(
                "SELECT r.id FROM {} r WHERE {condition} ORDER BY r.id",
                below.table()
            );
            for row in sqlx::query(AssertSqlSafe(ids))
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
            {
                deleted.push((below, row.try_get("id")?));
            }
            let delete = format!(
                "DELETE FROM {table} WHERE id IN (SELECT r.id FROM {table} r WHERE {condition})",
                table = below.table()
            );
            sqlx::query(AssertSqlSafe(delete))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }

        // Ancestors left without children go too; the first one that keeps some remains.
        let mut remaining_ancestor = None;
        for (ancestor, ancestor_id) in ancestors {
            let child = ancestor.child().expect("an ancestor has a child level");
            let column = child.parent_column().expect("a child has a parent column");
            let sql = format!(
                "SELECT COUNT(*) AS n FROM {} WHERE {column} = $1",
                child.table()
            );
            let children: i64 = sqlx::query(AssertSqlSafe(sql))
                .bind(&ancestor_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if children > 0 {
                remaining_ancestor = Some((ancestor, ancestor_id));
                break;
            }
            deleted.push((ancestor, ancestor_id.clone()));
            let sql = format!("DELETE FROM {} WHERE id = $1", ancestor.table());
            sqlx::query(AssertSqlSafe(sql))
                .bind(&ancestor_id)
                .execute(&mut *tx)
                .await?;
        }

        let log: Vec<_> = deleted
            .iter()
            .map(|(level, id)| (ChangeType::Deleted, *level, id.as_str(), at))
            .collect();
        changes::record_all(&mut tx, self.backend, &log).await?;
        tx.commit().await?;
        Ok(Some(Deletion {
            remaining_ancestor,
            blob_keys,
        }))
    }

    /// Blobs queued for removal, oldest first.
    pub async fn pending_blob_deletions(&self, limit: u32) -> Result<Vec<String>, IndexError> {
        let rows = sqlx::query(
            "SELECT blob_key FROM blob_deletions ORDER BY requested_at, blob_key LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?;
        rows.iter()
            .map(|row| row.try_get("blob_key").map_err(IndexError::from))
            .collect()
    }

    /// Marks queued blobs as removed from the blob store: one statement per few hundred keys.
    pub async fn blobs_deleted(&self, blob_keys: &[String]) -> Result<(), IndexError> {
        for chunk in blob_keys.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            // Only placeholders are formatted into the statement; the keys are bound.
            let sql = format!(
                "DELETE FROM blob_deletions WHERE blob_key IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for key in chunk {
                query = query.bind(key);
            }
            query.execute(&mut *self.writer.acquire().await?).await?;
        }
        Ok(())
    }
}
