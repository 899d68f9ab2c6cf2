//! The audit trail (`GET /audit`): one row per audited request, numbered in the order the
//! database assigned. Rows are written in batches by `auth::audit`'s writer task.

use sqlx::Row;

use super::{Index, IndexError};

/// One audited request.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    /// Filled in when read back.
    pub seq: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub user: Option<String>,
    /// The client's IP address, or "unknown".
    pub client: String,
    pub action: String,
    pub level: String,
    pub resource_id: String,
    pub detail: String,
    pub http_status: u16,
}

/// A page of the trail, as `GET /audit` answers it.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub done: bool,
    pub last: i64,
}

/// What `GET /audit` filters on.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: i64,
    pub limit: u32,
    pub user: Option<String>,
    pub action: Option<String>,
}

impl Index {
    /// Writes a batch of events in one transaction.
    pub async fn record_audit(&self, events: &[AuditEvent]) -> Result<(), IndexError> {
        let mut tx = self.writer.begin_with(self.backend.begin_write()).await?;
        for event in events {
            sqlx::query(
                "INSERT INTO audit_events
                 (at, user_name, client, action, level, resource_id, detail, http_status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&event.at)
            .bind(event.user.as_deref())
            .bind(&event.client)
            .bind(&event.action)
            .bind(&event.level)
            .bind(&event.resource_id)
            .bind(&event.detail)
            .bind(i64::from(event.http_status))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Events after `since`, oldest first, filtered by user and action.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditPage, IndexError> {
        // Empty filters match everything: `$3 = ''` keeps one statement for all combinations.
        let rows = sqlx::query(
            "SELECT seq, at, user_name, client, action, level, resource_id, detail, http_status
             FROM audit_events
             WHERE seq > $1 AND ($2 = '' OR user_name = $2) AND ($3 = '' OR action = $3)
             ORDER BY seq LIMIT $4",
        )
        .bind(filter.since)
        .bind(filter.user.as_deref().unwrap_or(""))
        .bind(filter.action.as_deref().unwrap_or(""))
        .bind(i64::from(filter.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows
            .iter()
            .map(|row| {
                Ok(AuditEvent {
                    seq: row.try_get("seq")?,
                    at: row.try_get("at")?,
                    user: row.try_get("user_name")?,
                    client: row.try_get("client")?,
                    action: row.try_get("action")?,
                    level: row.try_get("level")?,
                    resource_id: row.try_get("resource_id")?,
                    detail: row.try_get("detail")?,
                    http_status: u16::try_from(row.try_get::<i64, _>("http_status")?)
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        let done = events.len() <= filter.limit as usize;
        events.truncate(filter.limit as usize);
        let last = match events.last() {
            Some(event) => event.seq,
            None => sqlx::query(
                "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS last FROM audit_events",
            )
            .fetch_one(&self.pool)
            .await?
            .try_get("last")?,
        };
        Ok(AuditPage { events, done, last })
    }
}
