//! Opening the index: backend choice by URL scheme, connection set-up and migrations.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Connection, Executor};

use super::login::{Pool, SecretLogin};
use super::quick::QuickReads;
use super::write::{Committer, Writer};
use super::{Index, IndexError};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which SQL database holds the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, IndexError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(IndexError::UnsupportedUrl(url.into()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// SQLite must take its write lock when the transaction starts: a deferred transaction
    /// that upgrades later fails with `SQLITE_BUSY` instead of waiting.
    pub(super) fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// Reads an instance's blob key before replacing it, with a row lock on PostgreSQL
    /// (SQLite's write transaction locks the whole database already).
    pub(super) fn select_blob_for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT blob_key FROM instances WHERE id = $1",
            Backend::Postgres => "SELECT blob_key FROM instances WHERE id = $1 FOR UPDATE",
        }
    }

    /// The names of the admins, locked to the end of the transaction on PostgreSQL (see
    /// `Index::remove_user`); SQLite's write transaction locks the whole database already.
    pub(super) fn lock_admins(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT name FROM users WHERE role = 'admin' ORDER BY name",
            Backend::Postgres => {
                "SELECT name FROM users WHERE role = 'admin' ORDER BY name FOR UPDATE"
            }
        }
    }

    /// `options` for a pool whose connections run write transactions: a connection goes back
    /// to the pool only if sqlx counts no transaction open on it; otherwise it is closed and
    /// the pool opens a fresh one.
    ///
    /// A failed statement or COMMIT can make SQLite end the transaction itself (`SQLITE_FULL`,
    /// `SQLITE_IOERR`, `SQLITE_BUSY`, `SQLITE_NOMEM`). The ROLLBACK that the dropped
    /// `Transaction` then queues fails with "no transaction is active", and sqlx-sqlite lowers
    /// its depth counter only when that ROLLBACK succeeds: the connection would stay at depth 1
    /// for good, and every later `begin_with` on it fail with "attempted to call begin_with at
    /// non-zero transaction depth" (a full disk once wedged every write until a restart).
    /// sqlx-postgres lowers the counter as it queues the ROLLBACK; the check covers it alike.
    pub(super) fn writer_pool(self, options: AnyPoolOptions) -> AnyPoolOptions {
        options.after_release(move |conn, _| {
            Box::pin(async move {
                if self == Backend::Sqlite {
                    // The queued ROLLBACK runs on the connection's worker thread, in order:
                    // once a ping has come back, the counter says how it went.
                    conn.ping().await?;
                }
                let stuck = conn.is_in_transaction();
                if stuck {
                    tracing::warn!(
                        backend = self.name(),
                        "an index connection still counts a transaction after a failed write; \
                         replacing it"
                    );
                }
                Ok(!stuck)
            })
        })
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

impl Index {
    /// Connects to the index at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Index, IndexError> {
        Self::open_with_login(url, None).await
    }

    /// Like `open`, with the PostgreSQL login read from the Secrets Manager secret
    /// `login_secret` (see `login.rs`) when there is one.
    pub async fn open_with_login(
        url: &str,
        login_secret: Option<&str>,
    ) -> Result<Index, IndexError> {
        let index = Self::connect(url, login_secret).await?;
        index.migrate().await?;
        Ok(index)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str, login_secret: Option<&str>) -> Result<Index, IndexError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        match backend {
            Backend::Sqlite => {
                if login_secret.is_some() {
                    return Err(IndexError::Login(
                        "a login secret is for PostgreSQL; SQLite has no login".into(),
                    ));
                }
                let (url, path) = sqlite_url(url)?;
                let options = AnyConnectOptions::from_str(&url)?;
                let pool = sqlite_pool(8).connect_with(options.clone()).await?;
                let writer = backend
                    .writer_pool(sqlite_pool(1))
                    .connect_with(options)
                    .await?;
                let committer = Committer::start(Writer::Sqlite(writer.clone()));
                Ok(Index {
                    backend,
                    pool: Pool::new(pool, None),
                    writer: Pool::new(writer, None),
                    committer,
                    quick: Some(Arc::new(QuickReads::new(path))),
                })
            }
            Backend::Postgres => {
                let (options, login) = match login_secret {
                    Some(secret) => {
                        let (login, options) = SecretLogin::open(url, secret).await?;
                        (options, Some(Arc::new(login)))
                    }
                    None => (AnyConnectOptions::from_str(url)?, None),
                };
                let pool = backend
                    .writer_pool(pool_options())
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options.clone())
                    .await?;
                let pool = Pool::new(pool, login.clone());
                let committer = Committer::start(Writer::Postgres(options, login));
                Ok(Index {
                    backend,
                    writer: pool.clone(),
                    pool,
                    committer,
                    quick: None,
                })
            }
        }
    }

    /// Applies pending migrations. Safe to run from several servers at once: `run` takes one
    /// connection from the pool and holds it throughout, and on PostgreSQL sqlx takes a
    /// session advisory lock on it before it even creates `_sqlx_migrations`, so a second
    /// server waits, then finds every migration applied (without the lock, two servers starting
    /// together both ran migration 1 and one failed; `tests/auth/replicas.rs`). On SQLite
    /// each migration's transaction takes the write lock.
    pub async fn migrate(&self) -> Result<(), IndexError> {
        let mut conn = self.writer.acquire().await?;
        self.backend.migrator().run(&mut *conn).await?;
        Ok(())
    }
}

/// Creates the database file (and its folder) if missing; the URL for sqlx, and the file.
fn sqlite_url(url: &str) -> Result<(String, std::path::PathBuf), IndexError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| IndexError::Database(sqlx::Error::Io(e)))?;
    }
    let query = if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        query.to_string()
    };
    Ok((format!("sqlite://{path}?{query}"), path.into()))
}

/// How long a pooled connection may sit idle and still be handed out without a ping.
const FRESH: Duration = Duration::from_secs(5);

/// Pool options that ping a connection before handing it out only when it sat idle longer
/// than `FRESH`: sqlx's default pings every time, a second round trip per query (to the
/// SQLite worker thread, or to the PostgreSQL server) that doubled the index's share of a
/// file download. A connection that broke while in use is still found out: sqlx pings each one
/// as it comes back to the pool and drops it when that fails.
fn pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > FRESH {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

fn sqlite_pool(size: u32) -> AnyPoolOptions {
    pool_options()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _| {
            Box::pin(async move {
                // WAL lets readers work while the writer commits; synchronous=FULL makes each
                // commit durable before we acknowledge the instance. LIKE is case-sensitive
                // in PostgreSQL; SQLite must match it (finds fold case explicitly when asked).
                // Reads through a memory map share the OS page cache among connections
                // instead of copying each page into every connection's own cache: a C-FIND
                // over 100,000 instances spent a third of its time in pread.
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                     PRAGMA case_sensitive_like = ON; PRAGMA mmap_size = 268435456;",
                )
                .await?;
                Ok(())
            })
        })
}
