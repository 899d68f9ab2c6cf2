//! The change log (`GET /changes`): every new resource and every deletion, numbered in the
//! order the database assigned, written in the same transaction as the change itself.

use sqlx::{Any, Arguments, Row, Transaction};

use super::script::{Script, add};
use super::{Backend, Index, IndexError, Level};

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

/// Key of the PostgreSQL advisory lock that orders the change log (see `record_all`).
pub const LOG_LOCK: i64 = 0x4f52_5448_5745_4201;

/// Appends `changes` (type, level, resource ID, date), in order, as the last writes of `tx`.
///
/// On PostgreSQL `seq` comes from a sequence, handed out when a row is inserted: two
/// transactions committing in the other order would let a poller that already read the higher
/// number skip the lower one for good. So every transaction logs its changes last, under an
/// advisory lock it keeps until its commit: the numbers then come in commit order. Taken after
/// every row lock of the transaction, it never waits on a writer that waits on it. SQLite has
/// one writer at a time already.
pub(super) async fn record_all(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    changes: &[(ChangeType, Level, &str, &str)],
) -> Result<(), IndexError> {
    if changes.is_empty() {
        return Ok(());
    }
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOG_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    let mut script = Script::new(backend);
    add_all(&mut script, changes)?;
    script.execute(tx).await
}

/// The statements that append `changes` to the log. Only where one writer at a time holds
/// the whole database (SQLite) may they go out before the transaction's other writes are
/// done; elsewhere `record_all` orders them.
pub(super) fn add_all(
    script: &mut Script,
    changes: &[(ChangeType, Level, &str, &str)],
) -> Result<(), IndexError> {
    for chunk in changes.chunks(1000) {
        let (sql, args) = script.statement();
        let first = args.len() + 1;
        sql.push_str("INSERT INTO changes (change_type, resource_type, resource_id, date) VALUES ");
        for n in 0..chunk.len() {
            if n > 0 {
                sql.push_str(", ");
            }
            super::batch::placeholders(sql, first + n * 4, 4);
        }
        for (change, level, id, date) in chunk {
            add(args, change.name())?;
            add(args, level.name())?;
            add(args, *id)?;
            add(args, *date)?;
        }
    }
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
        .fetch_all(&mut *self.pool.acquire().await?)
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
                    .fetch_one(&mut *self.pool.acquire().await?)
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
