//! Users, their API tokens and their browser sessions. Secrets the clients hold (tokens,
//! session IDs) are looked up by their SHA-256; passwords are Argon2id hashes made by
//! `auth::passwords`. Nothing here logs or returns a secret.

use sqlx::Row;

use super::{Index, IndexError};

/// A user as the index keeps it.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub role: String,
    /// The Argon2id PHC string.
    pub password_hash: String,
    pub created_at: String,
}

/// A live browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// Why a user could not be removed or changed.
#[derive(Debug, thiserror::Error)]
pub enum UserChangeError {
    #[error("no user {0:?}")]
    Unknown(String),
    #[error("a user {0:?} exists already")]
    Exists(String),
    #[error("{0:?} is the last admin; add another admin first")]
    LastAdmin(String),
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl From<sqlx::Error> for UserChangeError {
    fn from(e: sqlx::Error) -> Self {
        UserChangeError::Index(e.into())
    }
}

fn user_from(row: &sqlx::any::AnyRow) -> Result<User, IndexError> {
    Ok(User {
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Index {
    /// Whether any user exists (then every request needs credentials).
    pub async fn has_users(&self) -> Result<bool, IndexError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM (SELECT 1 FROM users LIMIT 1) AS u")
            .fetch_one(&mut *self.pool.acquire().await?)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, IndexError> {
        let row =
            sqlx::query("SELECT name, role, password_hash, created_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *self.pool.acquire().await?)
                .await?;
        row.as_ref().map(user_from).transpose()
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>, IndexError> {
        let rows =
            sqlx::query("SELECT name, role, password_hash, created_at FROM users ORDER BY name")
                .fetch_all(&mut *self.pool.acquire().await?)
                .await?;
        rows.iter().map(user_from).collect()
    }

    /// Adds a user; `Exists` when the name is taken.
    pub async fn add_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        at: &str,
    ) -> Result<(), UserChangeError> {
        let done = sqlx::query(
            "INSERT INTO users (name, password_hash, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(password_hash)
        .bind(role)
        .bind(at)
        .execute(&mut *self.writer.acquire().await?)
        .await?;
        if done.rows_affected() == 0 {
            return Err(UserChangeError::Exists(name.into()));
        }
        Ok(())
    }

    /// Replaces a user's password and ends their sessions.
    pub async fn set_password(
        &self,
        name: &str,
        password_hash: &str,
    ) -> Result<(), UserChangeError> {
        let mut tx = self.writer.begin_with(self.backend.begin_write()).await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(UserChangeError::Unknown(name.into()));
        }
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a user with their tokens and sessions, unless they are the last admin.
    ///
    /// One conditional DELETE is not enough on PostgreSQL: under READ COMMITTED two of them,
    /// removing two different admins, both count two admins and both delete. So the admin
    /// rows are locked first (`FOR UPDATE`, in name order so that two removals cannot
    /// deadlock); the second removal waits for the first to commit, then no longer sees the
    /// admin it removed. On SQLite the write transaction holds the database's only write lock.
    pub async fn remove_user(&self, name: &str) -> Result<(), UserChangeError> {
        let mut tx = self.writer.begin_with(self.backend.begin_write()).await?;
        let admins: Vec<String> = sqlx::query_scalar(self.backend.lock_admins())
            .fetch_all(&mut *tx)
            .await?;
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        match role.as_deref() {
            None => return Err(UserChangeError::Unknown(name.into())),
            Some("admin") if !admins.iter().any(|admin| admin != name) => {
                return Err(UserChangeError::LastAdmin(name.into()));
            }
            Some(_) => {}
        }
        sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// When the `limit`-th most recent failed sign-in of `client` since `since_ms` (Unix
    /// milliseconds) happened: the client is blocked until it leaves the window.
    pub async fn sign_in_block(
        &self,
        client: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Option<i64>, IndexError> {
        let at = sqlx::query_scalar(
            "SELECT at_ms FROM sign_in_failures WHERE client = $1 AND at_ms > $2
             ORDER BY at_ms DESC LIMIT 1 OFFSET $3",
        )
        .bind(client)
        .bind(since_ms)
        .bind(i64::from(limit.max(1)) - 1)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        Ok(at)
    }

    /// Records a failed sign-in of `client` at `at_ms`, then prunes every failure at or before
    /// `prune_ms`, which no window reaches any more.
    pub async fn add_sign_in_failure(
        &self,
        client: &str,
        at_ms: i64,
        prune_ms: i64,
    ) -> Result<(), IndexError> {
        sqlx::query("INSERT INTO sign_in_failures (client, at_ms) VALUES ($1, $2)")
            .bind(client)
            .bind(at_ms)
            .execute(&mut *self.writer.acquire().await?)
            .await?;
        // Best effort: two servers pruning at once may deadlock on PostgreSQL, and a row left
        // behind is outside every window anyway; the next failure prunes it.
        if let Err(e) = sqlx::query("DELETE FROM sign_in_failures WHERE at_ms <= $1")
            .bind(prune_ms)
            .execute(&mut *self.writer.acquire().await?)
            .await
        {
            tracing::debug!(error = %e, "pruning old failed sign-ins failed");
        }
        Ok(())
    }

    /// Records an API token (by its hash) for a user.
    pub async fn add_token(
        &self,
        user: &str,
        token_hash: &str,
        label: &str,
        at: &str,
    ) -> Result<(), UserChangeError> {
        if self.user(user).await?.is_none() {
            return Err(UserChangeError::Unknown(user.into()));
        }
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_name, label, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user)
        .bind(label)
        .bind(at)
        .execute(&mut *self.writer.acquire().await?)
        .await?;
        Ok(())
    }

    /// The user an API token (by its hash) belongs to, with when it was last used.
    pub async fn token_user(
        &self,
        token_hash: &str,
    ) -> Result<Option<(User, Option<String>)>, IndexError> {
        let row = sqlx::query(
            "SELECT u.name, u.role, u.password_hash, u.created_at, t.last_used_at
             FROM api_tokens t JOIN users u ON u.name = t.user_name WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        row.as_ref()
            .map(|row| Ok((user_from(row)?, row.try_get("last_used_at")?)))
            .transpose()
    }

    pub async fn token_used(&self, token_hash: &str, at: &str) -> Result<(), IndexError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
            .bind(at)
            .bind(token_hash)
            .execute(&mut *self.writer.acquire().await?)
            .await?;
        Ok(())
    }

    /// Revokes every API token of a user; returns how many there were.
    pub async fn revoke_tokens(&self, user: &str) -> Result<u64, IndexError> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE user_name = $1")
            .bind(user)
            .execute(&mut *self.writer.acquire().await?)
            .await?;
        Ok(done.rows_affected())
    }

    /// Opens a session; expired sessions are cleared on the way.
    pub async fn add_session(
        &self,
        id_hash: &str,
        user: &str,
        csrf_token: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), IndexError> {
        let mut tx = self.writer.begin_with(self.backend.begin_write()).await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_name, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id_hash)
        .bind(user)
        .bind(csrf_token)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session with this ID hash, if any.
    pub async fn session(&self, id_hash: &str, now: i64) -> Result<Option<Session>, IndexError> {
        let row = sqlx::query(
            "SELECT u.name, u.role, u.password_hash, u.created_at, s.csrf_token, s.expires_at
             FROM sessions s JOIN users u ON u.name = s.user_name
             WHERE s.id_hash = $1 AND s.expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        row.as_ref()
            .map(|row| {
                Ok(Session {
                    user: user_from(row)?,
                    csrf_token: row.try_get("csrf_token")?,
                    expires_at: row.try_get("expires_at")?,
                })
            })
            .transpose()
    }

    pub async fn remove_session(&self, id_hash: &str) -> Result<(), IndexError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *self.writer.acquire().await?)
            .await?;
        Ok(())
    }
}
