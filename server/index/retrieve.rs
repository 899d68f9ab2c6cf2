//! What a retrieval (C-MOVE, C-GET, "send to") sends: the instances under a resource, with
//! what the sender needs to offer and stream each one.

use sqlx::{AssertSqlSafe, Row};

use super::read::under;
use super::{Index, IndexError, Level};

/// One instance to send.
#[derive(Debug, Clone)]
pub struct RetrieveItem {
    pub id: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub blob_key: String,
    pub size: u64,
}

impl Index {
    /// The instances under `level`/`id` (itself, for an instance), in series then ID order.
    pub async fn retrieve_items(
        &self,
        level: Level,
        id: &str,
    ) -> Result<Vec<RetrieveItem>, IndexError> {
        let condition = match level {
            Level::Instance => "r.id = $1".to_string(),
            _ => under(Level::Instance, level, "r"),
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT r.id, r.sop_class_uid, r.sop_instance_uid, r.transfer_syntax_uid, r.blob_key,
                r.file_size FROM instances r WHERE {condition} ORDER BY r.series, r.id"
        )))
        .bind(id)
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RetrieveItem {
                    id: row.try_get("id")?,
                    sop_class_uid: row.try_get("sop_class_uid")?,
                    sop_instance_uid: row.try_get("sop_instance_uid")?,
                    transfer_syntax_uid: row.try_get("transfer_syntax_uid")?,
                    blob_key: row.try_get("blob_key")?,
                    size: row.try_get::<i64, _>("file_size")?.max(0) as u64,
                })
            })
            .collect()
    }
}
