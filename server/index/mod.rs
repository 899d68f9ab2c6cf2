//! The index: patients, studies, series and instances in SQL (SQLite or PostgreSQL).
//!
//! Both backends run the same SQL through sqlx's `Any` driver (`$N` parameters and
//! `ON CONFLICT` upserts work in both); what differs — migrations, connection set-up and how
//! writers are serialised — is chosen once, from the URL scheme.

mod ancestors;
mod audit;
mod batch;
mod changes;
mod connect;
mod delete;
mod explain;
pub(crate) mod find;
mod integrity;
mod level;
mod login;
mod metadata;
mod modalities;
mod quick;
mod read;
mod records;
mod retrieve;
mod script;
mod statistics;
mod users;
mod write;

use tokio::sync::oneshot;

pub use ancestors::AncestorTags;
pub use audit::{AuditEvent, AuditFilter, AuditPage};
/// A new instance with plausible tags, for tests outside the index.
#[cfg(test)]
pub(crate) use batch::tests::instance as test_instance;
pub use changes::{Change, ChangePage, ChangeType, LOG_LOCK};
pub use connect::Backend;
pub use delete::Deletion;
pub use find::{FindError, FindRequest, Found, OrderBy, OrderKey};
pub use integrity::{IndexedFile, InstanceOrigin};
pub use level::Level;
pub use metadata::{UidInstance, UidPath};
pub use read::{ArchiveInstance, ArchiveSeries, Resource, ResourceStatistics, StoredFile};
pub use records::{LevelTags, NewInstance, StoreOutcome};
pub use retrieve::RetrieveItem;
pub use statistics::Statistics;
pub use users::{Session, User, UserChangeError};
pub use write::fold_case;

use crate::config::OverwritePolicy;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("unsupported index URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// Not marked as the error's source: sqlx's messages already hold their causes, and
    /// `{:#}` would print each of them twice more.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The login could not be read from its secret (`index_secret`).
    #[error("index login: {0}")]
    Login(String),
    #[error("the index writer has stopped")]
    WriterStopped,
    /// The instance's file could not be made durable, so its rows were not committed.
    #[error("the instance's file was not stored")]
    BlobNotStored,
    /// The connection failed while the transaction was being committed: it may have
    /// committed. Its rows may point at its file, which must therefore stay.
    #[error("commit outcome unknown: {0}")]
    CommitUnknown(Box<IndexError>),
}

impl IndexError {
    /// Whether the write may have committed although it failed (see `CommitUnknown`).
    pub fn may_have_committed(&self) -> bool {
        matches!(self, IndexError::CommitUnknown(_))
    }
}

impl From<sqlx::Error> for IndexError {
    fn from(error: sqlx::Error) -> Self {
        IndexError::Database(error)
    }
}

/// A handle on the index; cheap to clone.
#[derive(Clone)]
pub struct Index {
    backend: Backend,
    /// Reads, and writes on PostgreSQL.
    pool: login::Pool,
    /// Writes on SQLite go through a single connection: SQLite has one writer at a time, and
    /// queuing in the pool is cheaper than retrying on `SQLITE_BUSY`.
    writer: login::Pool,
    committer: write::Committer,
    /// Point reads on the caller's thread (SQLite only).
    quick: Option<std::sync::Arc<quick::QuickReads>>,
}

impl Index {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Refreshes the planner's statistics after a bulk load, as PostgreSQL's "Populating a
    /// Database" advises: otherwise autovacuum does it a little later, in the middle of the
    /// first queries. SQLite's plans are made without statistics and are left alone.
    pub async fn analyze(&self) -> Result<(), IndexError> {
        if self.backend == Backend::Postgres {
            sqlx::query("ANALYZE")
                .execute(&mut *self.pool.acquire().await?)
                .await?;
        }
        Ok(())
    }

    /// Records one instance and its ancestors. Ancestors are created if missing; the instance
    /// row decides whether this is a new instance or a second copy. Returns once the row is
    /// committed; concurrent callers share commits (see `write`).
    pub async fn store_instance(
        &self,
        new: NewInstance,
        policy: OverwritePolicy,
    ) -> Result<StoreOutcome, IndexError> {
        self.committer.store(new, policy, None).await
    }

    /// Like `store_instance`, for an instance whose file is still being made durable: its rows
    /// are written meanwhile but committed only once `stored` says `true` (and not at all on
    /// `false`, or if it is dropped). This takes the index's statements off the path to the
    /// acknowledgement without ever committing a row whose file a crash could lose.
    pub async fn store_instance_once_stored(
        &self,
        new: NewInstance,
        policy: OverwritePolicy,
        stored: oneshot::Receiver<bool>,
    ) -> Result<StoreOutcome, IndexError> {
        self.committer.store(new, policy, Some(stored)).await
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), IndexError> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }
}
