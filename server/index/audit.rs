//! The audit trail (`GET /audit`): one row per audited request, numbered in the order the
//! database assigned. Rows are written in batches by `auth::audit`'s writer task.

use sqlx::any::AnyArguments;
use sqlx::{AssertSqlSafe, Row};

use super::batch::placeholders;
use super::script::add;

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
    /// Writes a batch of events in one transaction, as one multi-row INSERT: a statement per
    /// event was a round trip each to SQLite's connection thread, two thread wake-ups per
    /// audited request (more than a third of the context switches of a file download).
    pub async fn record_audit(&self, events: &[AuditEvent]) -> Result<(), IndexError> {
        let mut tx = self.writer.begin_with(self.backend.begin_write()).await?;
        // 8 parameters a row, 32 rows a statement. On SQLite the parameters are anonymous
        // (`?`): sqlx-sqlite looks each `$N` up by its name in a list as long as the
        // statement's parameters, which made binding grow with the square of the rows (1 % of
        // a kept-alive download's CPU at 32 rows, 4 % at 100).
        let anonymous = self.backend == super::Backend::Sqlite;
        for chunk in events.chunks(32) {
            let mut sql = String::from(
                "INSERT INTO audit_events \
                 (at, user_name, client, action, level, resource_id, detail, http_status) VALUES ",
            );
            let mut args = AnyArguments::default();
            for (i, event) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                if anonymous {
                    sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?)");
                } else {
                    placeholders(&mut sql, 1 + i * 8, 8);
                }
                add(&mut args, &event.at)?;
                add(&mut args, event.user.as_deref())?;
                add(&mut args, &event.client)?;
                add(&mut args, &event.action)?;
                add(&mut args, &event.level)?;
                add(&mut args, &event.resource_id)?;
                add(&mut args, &event.detail)?;
                add(&mut args, i64::from(event.http_status))?;
            }
            sqlx::query_with(AssertSqlSafe(sql), args)
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
        .fetch_all(&mut *self.pool.acquire().await?)
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
            .fetch_one(&mut *self.pool.acquire().await?)
            .await?
            .try_get("last")?,
        };
        Ok(AuditPage { events, done, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets the database file grow by no more than `pages` pages (SQLite's writer connection),
    /// as a full disk would; `None` lifts the limit, as freeing space would.
    async fn fill_disk(index: &Index, pages: Option<i64>) {
        let limit = match pages {
            Some(pages) => {
                let count: i64 = sqlx::query_scalar("PRAGMA page_count")
                    .fetch_one(&index.writer.inner)
                    .await
                    .unwrap();
                count + pages
            }
            None => i64::from(u32::MAX >> 1),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {limit}"
        )))
        .execute(&index.writer.inner)
        .await
        .unwrap();
    }

    fn event(detail: String) -> AuditEvent {
        AuditEvent {
            at: "2026-01-01T00:00:00Z".into(),
            client: "127.0.0.1".into(),
            action: "view".into(),
            detail,
            http_status: 200,
            ..AuditEvent::default()
        }
    }

    /// A batch longer than one statement's rows is written whole, in order.
    #[tokio::test]
    async fn a_long_batch_is_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let batch: Vec<_> = (0..70).map(|n| event(format!("event {n}"))).collect();
        index.record_audit(&batch).await.unwrap();
        let page = index
            .audit(&AuditFilter {
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let details: Vec<_> = page.events.iter().map(|e| e.detail.clone()).collect();
        let expected: Vec<_> = batch.iter().map(|e| e.detail.clone()).collect();
        assert_eq!(details, expected);
        assert!(
            page.events
                .iter()
                .all(|e| e.http_status == 200 && e.client == "127.0.0.1")
        );
    }

    /// A batch of events SQLite rolls back on its own (`database or disk is full`) leaves the
    /// writer usable: once there is room again, the next batches are written without a restart.
    #[tokio::test]
    async fn audit_batches_are_written_again_after_the_disk_was_full() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        index.record_audit(&[event("first".into())]).await.unwrap();

        fill_disk(&index, Some(1)).await;
        let large = [event("x".repeat(1 << 20))];
        let full = index.record_audit(&large).await.unwrap_err();
        assert!(full.to_string().contains("full"), "{full}");

        fill_disk(&index, None).await;
        for batch in [&large[..], &[event("after".into())]] {
            let written = index.record_audit(batch).await;
            assert!(
                written.is_ok(),
                "a batch after the disk was full: {written:?}"
            );
        }
        let filter = AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        };
        assert_eq!(index.audit(&filter).await.unwrap().events.len(), 3);
    }
}
