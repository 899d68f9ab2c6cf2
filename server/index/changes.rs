//! The change log (`GET /changes`): every new resource and every deletion, numbered in the
//! order the database assigned, written in the same transaction as the change itself.

use sqlx::{Any, Row, Transaction};

use super::{Index, IndexError, Level};

/// What happened to a resource, with Orthanc's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    NewPatient,
    NewStudy,
    NewSeries,
    NewInstance,
    Deleted,
}

impl ChangeType {
    pub fn name(self) -> &'static str {
        match self {
            ChangeType::NewPatient => "NewPatient",
            ChangeType::NewStudy => "NewStudy",
            ChangeType::NewSeries => "NewSeries",
            ChangeType::NewInstance => "NewInstance",
            ChangeType::Deleted => "Deleted",
        }
    }

    pub fn new_resource(level: Level) -> ChangeType {
        match level {
            Level::Patient => ChangeType::NewPatient,
            Level::Study => ChangeType::NewStudy,
            Level::Series => ChangeType::NewSeries,
            Level::Instance => ChangeType::NewInstance,
        }
    }
}

/// One entry of the log.
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: i64,
    pub change_type: String,
    pub resource_type: String,
    pub resource_id: String,
    pub date: String,
}

/// A page of the log, as `GET /changes` answers it.
#[derive(Debug, Clone)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// No change after this page (yet).
    pub done: bool,
    /// The last sequence number returned, or the newest in the log when the page is empty.
    pub last: i64,
}

pub(super) async fn record(
    tx: &mut Transaction<'static, Any>,
    change: ChangeType,
    level: Level,
    id: &str,
    date: &str,
) -> Result<(), IndexError> {
    sqlx::query(
        "INSERT INTO changes (change_type, resource_type, resource_id, date) VALUES ($1, $2, $3, $4)",
    )
    .bind(change.name())
    .bind(level.name())
    .bind(id)
    .bind(date)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Index {
    /// Changes with a sequence number above `since`, oldest first, at most `limit`.
    pub async fn changes(&self, since: i64, limit: u32) -> Result<ChangePage, IndexError> {
        // One row more than asked tells whether this page is the last.
        let rows = sqlx::query(
            "SELECT seq, change_type, resource_type, resource_id, date FROM changes
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut changes = rows
            .iter()
            .map(|row| {
                Ok(Change {
                    seq: row.try_get("seq")?,
                    change_type: row.try_get("change_type")?,
                    resource_type: row.try_get("resource_type")?,
                    resource_id: row.try_get("resource_id")?,
                    date: row.try_get("date")?,
                })
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        let done = changes.len() <= limit as usize;
        changes.truncate(limit as usize);
        // As Orthanc: an empty page gives the newest change in the log, so a poller whose
        // `since` ran ahead (a restored database, say) finds its place again.
        let last = match changes.last() {
            Some(change) => change.seq,
            None => {
                sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS last FROM changes")
                    .fetch_one(&self.pool)
                    .await?
                    .try_get("last")?
            }
        };
        Ok(ChangePage {
            changes,
            done,
            last,
        })
    }
}
