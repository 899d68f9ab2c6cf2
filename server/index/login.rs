//! The PostgreSQL login read from an AWS Secrets Manager secret (`index_secret`): at connect,
//! and again whenever the database refuses a new connection's password, as it does once the
//! secret has been rotated. No password sits in a file or the environment.
//!
//! The secret is the JSON RDS keeps for a master user it manages (`{"username": …,
//! "password": …}`). Connections already open outlive a rotation; only new ones need the new
//! password, so a refused login is the moment to read the secret again: the pools get the new
//! options and the failed acquire is retried once.

use std::sync::Arc;
use std::sync::Mutex as SyncMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sqlx::any::AnyConnectOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::Mutex;

use super::IndexError;

/// A refused login reads the secret at most this often, so that a wrong secret (or one whose
/// rotation has not finished) cannot turn every request into a Secrets Manager call.
const MIN_REREAD: Duration = Duration::from_secs(5);

/// Where the index's PostgreSQL login comes from, and the pools that use it.
pub struct SecretLogin {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    /// The index URL, whose user and password the secret's replace.
    url: url::Url,
    pools: SyncMutex<Vec<AnyPool>>,
    /// Bumped by every re-read: a caller whose login was refused under an older generation
    /// retries at once instead of reading the secret again.
    generation: AtomicU64,
    /// Held while the secret is read; when it was last read.
    reading: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct LoginSecret {
    username: String,
    password: String,
}

impl SecretLogin {
    /// Reads the secret once and returns the connect options it gives for `url`.
    pub(super) async fn open(
        url: &str,
        secret_id: &str,
    ) -> Result<(SecretLogin, AnyConnectOptions), IndexError> {
        let url = url::Url::parse(url).map_err(|e| IndexError::Login(e.to_string()))?;
        let config = crate::aws::sdk_config().await;
        let login = SecretLogin {
            client: aws_sdk_secretsmanager::Client::new(&config),
            secret_id: secret_id.to_string(),
            url,
            pools: SyncMutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            reading: Mutex::new(None),
        };
        let options = login.read().await?;
        Ok((login, options))
    }

    /// The pools whose connect options follow the secret.
    pub(super) fn attach(&self, pool: &AnyPool) {
        self.pools.lock().expect("pools lock").push(pool.clone());
    }

    /// The connect options the secret's current value gives.
    async fn read(&self) -> Result<AnyConnectOptions, IndexError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                IndexError::Login(format!(
                    "cannot read the secret {}: {}",
                    self.secret_id,
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                ))
            })?;
        let text = output.secret_string().ok_or_else(|| {
            IndexError::Login(format!("the secret {} holds no string", self.secret_id))
        })?;
        // The error names no part of the value: serde_json's messages can quote it.
        let secret: LoginSecret = serde_json::from_str(text).map_err(|_| {
            IndexError::Login(format!(
                "the secret {} is not JSON with \"username\" and \"password\"",
                self.secret_id
            ))
        })?;
        let mut url = self.url.clone();
        url.set_username(&secret.username)
            .and_then(|()| url.set_password(Some(&secret.password)))
            .map_err(|()| IndexError::Login("the index URL names no host".into()))?;
        Ok(url.as_str().parse()?)
    }

    /// Runs `attempt` (an acquire, or a begin); if PostgreSQL refused the login, reads the
    /// secret again, hands the new options to every pool and runs it once more.
    pub(super) async fn retry<T, F, Fut>(&self, attempt: F) -> Result<T, sqlx::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let seen = self.generation.load(Ordering::Acquire);
        match attempt().await {
            Err(error) if login_refused(&error) => {
                self.reread(seen).await.map_err(|e| {
                    tracing::warn!(error = %e, "could not read the index login again");
                    error
                })?;
                attempt().await
            }
            result => result,
        }
    }

    /// Reads the secret again unless another caller did since `seen` or it was read within
    /// `MIN_REREAD`; an `Err` means the secret could not be read.
    async fn reread(&self, seen: u64) -> Result<(), IndexError> {
        let mut last = self.reading.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        if last.is_some_and(|at| at.elapsed() < MIN_REREAD) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let options = self.read().await?;
        for pool in self.pools.lock().expect("pools lock").iter() {
            pool.set_connect_options(options.clone());
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::info!(
            secret = %self.secret_id,
            "the database refused the index login; read it again from its secret"
        );
        Ok(())
    }
}

/// PostgreSQL's answer to a wrong password (28P01) or a login it does not accept (28000).
fn login_refused(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => matches!(e.code().as_deref(), Some("28P01" | "28000")),
        _ => false,
    }
}

/// A pool of the index, and the secret its login follows (PostgreSQL with `index_secret`).
/// Connections come from here rather than from sqlx's pool directly, so that a refused login
/// is read again wherever it happens.
#[derive(Clone)]
pub(super) struct Pool {
    pub(super) inner: AnyPool,
    login: Option<Arc<SecretLogin>>,
}

impl Pool {
    pub(super) fn new(inner: AnyPool, login: Option<Arc<SecretLogin>>) -> Pool {
        if let Some(login) = &login {
            login.attach(&inner);
        }
        Pool { inner, login }
    }

    pub(super) async fn acquire(&self) -> Result<PoolConnection<Any>, sqlx::Error> {
        match &self.login {
            Some(login) => login.retry(|| self.inner.acquire()).await,
            None => self.inner.acquire().await,
        }
    }

    pub(super) async fn begin_with(
        &self,
        statement: &'static str,
    ) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match &self.login {
            Some(login) => login.retry(|| self.inner.begin_with(statement)).await,
            None => self.inner.begin_with(statement).await,
        }
    }
}
