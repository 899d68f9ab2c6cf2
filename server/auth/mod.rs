//! Who may do what over HTTP: users with a role (`admin`, `viewer`) kept in the index, their
//! credentials (HTTP Basic, API tokens, a session cookie for the UI), limits on failed
//! sign-ins, and the audit trail.
//!
//! - `passwords`: Argon2id hashes and random secrets;
//! - `cache`: recent successful password checks, so that Basic does not pay Argon2 each time;
//! - `limiter`: failed sign-ins per client address;
//! - `middleware`: the layer that authenticates, authorises and audits every request;
//! - `audit`: the batched audit writer and what each route counts as;
//! - `cli`: `orthweb user …`.

mod audit;
mod cache;
pub mod cli;
mod limiter;
pub mod middleware;
pub mod passwords;

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::task::spawn_blocking;

pub use audit::AuditLog;

use crate::config::Settings;
use crate::index::{Index, IndexError, User};
use cache::VerifiedCache;
use limiter::FailureLimiter;

/// The name of the UI's session cookie.
pub const SESSION_COOKIE: &str = "orthweb_session";
/// The header a cookie-authenticated unsafe request must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long "are there users?" is remembered (users may be added by `orthweb user add` from
/// another process while the server runs).
const USERS_EXIST_TTL: Duration = Duration::from_secs(2);

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: uploads, deletions, users, the audit trail.
    Admin,
    /// Reads: GET and HEAD, and the read-only POSTs (`/tools/find`, `/tools/lookup`).
    Viewer,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// No user exists and the listener is loopback-only: the server is open.
    Open,
    /// A route that needs no credentials (health checks, the sign-in itself).
    Anonymous,
    Basic,
    Token,
    /// The UI's session cookie; holds the hash of the session ID and its CSRF token.
    Cookie {
        id_hash: String,
        csrf_token: String,
    },
}

/// The user a request acts for, put in the request's extensions by the middleware.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: Option<String>,
    pub role: Role,
    pub via: Via,
}

/// The client's address (from the connection), in the request's extensions; `None` when the
/// listener does not say.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    pub fn describe(self) -> String {
        self.0.map_or_else(|| "unknown".into(), |ip| ip.to_string())
    }
}

/// A user name a handler tried to sign in as, for the audit trail (in the response's
/// extensions).
#[derive(Debug, Clone)]
pub struct AuditUser(pub String);

/// Users, credentials and the audit trail of one server process.
pub struct Auth {
    index: Index,
    verified: VerifiedCache,
    limiter: FailureLimiter,
    fail_delay: Duration,
    session_ttl: Duration,
    /// The HTTP listener only takes connections from this host.
    loopback_only: bool,
    /// Cookies get `Secure` (HTTPS is on).
    secure_cookies: bool,
    users_exist: Mutex<Option<(Instant, bool)>>,
    pub audit: AuditLog,
}

impl Auth {
    /// Starts the audit writer and, when the HTTP listener is reachable from other hosts and
    /// no user exists, creates user `admin` with a random password, printed once on standard
    /// error (never to the log).
    pub async fn start(settings: &Settings, index: Index) -> anyhow::Result<std::sync::Arc<Auth>> {
        let auth = Auth {
            verified: VerifiedCache::new(),
            limiter: FailureLimiter::new(
                index.clone(),
                settings.auth_fail_limit,
                Duration::from_secs(settings.auth_fail_window_secs),
            ),
            fail_delay: Duration::from_millis(settings.auth_fail_delay_ms),
            session_ttl: Duration::from_secs(settings.session_hours.saturating_mul(3600)),
            loopback_only: settings.http_listen.ip().is_loopback(),
            secure_cookies: settings.https,
            users_exist: Mutex::new(None),
            audit: AuditLog::start(index.clone()),
            index,
        };
        if !auth.loopback_only && !auth.index.has_users().await? {
            auth.create_first_admin().await?;
        }
        Ok(std::sync::Arc::new(auth))
    }

    async fn create_first_admin(&self) -> anyhow::Result<()> {
        let password = passwords::generate_password();
        let hash = {
            let password = password.clone();
            spawn_blocking(move || passwords::hash(&password)).await?
        };
        match self
            .index
            .add_user("admin", Role::Admin.name(), &hash, &now_rfc3339())
            .await
        {
            Ok(()) => {
                // Standard error, not the log: a log collector must never receive it.
                eprintln!(
                    "orthweb: no user existed; created user \"admin\" (role admin) with password: {password}\n\
                     orthweb: this password is shown only now; change it with `orthweb user passwd admin`"
                );
                tracing::warn!(
                    "no user existed and HTTP is not loopback-only: created user \"admin\"; its password was printed on the terminal"
                );
                Ok(())
            }
            // Another replica created it at the same moment.
            Err(crate::index::UserChangeError::Exists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }

    /// Whether requests need credentials: always when the listener is reachable from other
    /// hosts; on loopback, once any user exists.
    pub async fn required(&self) -> Result<bool, IndexError> {
        if !self.loopback_only {
            return Ok(true);
        }
        if let Some((at, exist)) = *self.users_exist.lock().expect("lock")
            && at.elapsed() < USERS_EXIST_TTL
        {
            return Ok(exist);
        }
        let exist = self.index.has_users().await?;
        *self.users_exist.lock().expect("lock") = Some((Instant::now(), exist));
        Ok(exist)
    }

    /// How long a client must wait before its next sign-in, when it failed too often. Asks the
    /// index (every server counts the same failures); when it cannot, the caller refuses the
    /// sign-in (503) rather than let it go uncounted.
    pub async fn blocked(&self, client: ClientAddr) -> Result<Option<Duration>, IndexError> {
        match client.0 {
            Some(ip) => self.limiter.blocked(ip).await,
            None => Ok(None),
        }
    }

    /// Counts a failed sign-in and waits the failure delay.
    pub async fn failed(&self, client: ClientAddr) {
        if let Some(ip) = client.0
            && let Err(e) = self.limiter.failed(ip).await
        {
            // The answer is a 401 all the same; while the index stays down, `blocked` fails
            // and further sign-ins are refused.
            tracing::warn!(error = %e, client = %ip, "cannot record a failed sign-in");
        }
        tokio::time::sleep(self.fail_delay).await;
    }

    /// Whether `password` is that of `found`, the user looked up by `name` (`None`: no such
    /// user, checked against a dummy hash all the same so that the time tells nothing).
    /// Argon2 runs on a blocking thread, and only when this password was not verified for
    /// this stored hash lately.
    pub async fn verify_password(
        &self,
        found: Option<User>,
        name: &str,
        password: &str,
    ) -> Option<User> {
        let Some(user) = found else {
            let password = password.to_string();
            let _ = spawn_blocking(move || passwords::verify_nobody(&password)).await;
            return None;
        };
        if self.verified.holds(name, password, &user.password_hash) {
            return Some(user);
        }
        let matches = {
            let (password, hash) = (password.to_string(), user.password_hash.clone());
            spawn_blocking(move || passwords::verify(&password, &hash))
                .await
                .unwrap_or(false)
        };
        if !matches {
            return None;
        }
        self.verified.insert(name, password, &user.password_hash);
        Some(user)
    }

    /// Forgets what this process remembers of a user (after a change of password or removal).
    pub fn forget(&self, name: &str) {
        self.verified.forget(name);
        *self.users_exist.lock().expect("lock") = None;
    }
}

/// Now, RFC 3339 in UTC: timestamps of users, tokens and audit events.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Now, in Unix seconds: session expiry.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
