//! The layer in front of every route: finds who the request is from (HTTP Basic, an API
//! token, or the UI's session cookie with its CSRF token), refuses it when it may not do what
//! it asks (401, 403, 429), and records what it did in the audit trail.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

use super::audit::{classify, resource_of};
use super::passwords::sha256_hex;
use super::{
    AuditUser, Auth, CSRF_HEADER, ClientAddr, Principal, Role, SESSION_COOKIE, Via, now_rfc3339,
    unix_now,
};
use crate::http::{ApiError, AppState};
use crate::index::AuditEvent;

/// Routes anyone may call: the load balancer's health checks and the sign-in itself (which
/// checks the password it is given).
fn is_open(method: &Method, route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz") || (method == Method::POST && route == "/auth/login")
}

/// Whether a role may call a route with a method.
pub fn allowed(role: Role, method: &Method, route: &str) -> bool {
    match role {
        Role::Admin => true,
        Role::Viewer => match *method {
            Method::GET | Method::HEAD => !(route == "/audit" || route.starts_with("/users")),
            Method::POST => matches!(route, "/tools/find" | "/tools/lookup" | "/auth/logout"),
            _ => false,
        },
    }
}

/// Credentials a request carries.
enum Credentials {
    None,
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
    Cookie(String),
    /// An `Authorization` header we cannot read.
    Malformed,
}

fn credentials(headers: &HeaderMap) -> Credentials {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else {
            return Credentials::Malformed;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            return match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((user, password)) => Credentials::Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                },
                None => Credentials::Malformed,
            };
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Credentials::Bearer(rest.trim().to_string());
        }
        return Credentials::Malformed;
    }
    match session_cookie(headers) {
        Some(id) => Credentials::Cookie(id),
        None => Credentials::None,
    }
}

/// The value of our session cookie, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// Why a request was refused, and as whom it tried.
struct Refusal {
    error: Response,
    /// Wrong credentials were presented (audited as `sign-in-failed`).
    bad_credentials: bool,
    user: Option<String>,
}

/// A 401, with a Basic challenge when `challenge`.
fn unauthorized(message: &str, challenge: bool) -> Response {
    let mut response = ApiError::unauthorized(message).into_response();
    if challenge {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Orthweb\", charset=\"UTF-8\""),
        );
    }
    response
}

/// Whether a 401 should carry a Basic challenge: yes for scripts and address-bar visits; no
/// for the UI (a request with our cookie, or a `fetch` from a page), where the browser would
/// otherwise open its own password dialog over the sign-in page.
fn challenges(headers: &HeaderMap, presented: &Credentials) -> bool {
    let from_page = headers
        .get("sec-fetch-mode")
        .is_some_and(|mode| mode.as_bytes() != b"navigate");
    !matches!(presented, Credentials::Cookie(_)) && !from_page
}

/// A 429 with `Retry-After` in whole seconds.
pub fn too_many(wait: std::time::Duration) -> Response {
    let mut response =
        ApiError::too_many_requests("too many failed sign-ins from this address; try later")
            .into_response();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

impl Auth {
    /// Who the request is from, or why it is refused.
    async fn authenticate(
        &self,
        method: &Method,
        route: &str,
        headers: &HeaderMap,
        client: ClientAddr,
    ) -> Result<Principal, Refusal> {
        if is_open(method, route) {
            return Ok(Principal {
                user: None,
                role: Role::Viewer,
                via: Via::Anonymous,
            });
        }
        let refuse = |error: Response, bad_credentials: bool, user: Option<String>| Refusal {
            error,
            bad_credentials,
            user,
        };
        let index_down = |e| refuse(ApiError::index(e).into_response(), false, None);
        // Open (loopback, no user yet): credentials are not looked at, as before users
        // existed (scripts written for Orthanc often send some anyway).
        if !self.required().await.map_err(index_down)? {
            return Ok(Principal {
                user: None,
                role: Role::Admin,
                via: Via::Open,
            });
        }
        let presented = credentials(headers);
        let challenge = challenges(headers, &presented);
        let unauthorized = |message: &str| unauthorized(message, challenge);
        let guessable = matches!(
            presented,
            Credentials::Basic { .. } | Credentials::Bearer(_) | Credentials::Malformed
        );
        let too_many_failures = |wait| refuse(too_many(wait), false, None);
        // For credentials that could be guessed, whether the client is blocked is read with
        // the user or token (two round trips at once, not one after the other), and decided
        // before any password is checked.
        let found = match presented {
            Credentials::None => {
                return Err(refuse(unauthorized("credentials required"), false, None));
            }
            Credentials::Malformed => {
                if let Some(wait) = self.blocked(client).await.map_err(index_down)? {
                    return Err(too_many_failures(wait));
                }
                None
            }
            Credentials::Basic { user, password } => {
                let (block, found) = tokio::join!(self.blocked(client), self.index().user(&user));
                if let Some(wait) = block.map_err(index_down)? {
                    return Err(too_many_failures(wait));
                }
                let found = found.map_err(index_down)?;
                match self.verify_password(found, &user, &password).await {
                    Some(found) => Some((found, Via::Basic)),
                    None => {
                        self.failed(client).await;
                        return Err(refuse(
                            unauthorized("wrong user or password"),
                            true,
                            Some(user),
                        ));
                    }
                }
            }
            Credentials::Bearer(token) => {
                let hash = sha256_hex(&token);
                let (block, found) =
                    tokio::join!(self.blocked(client), self.index().token_user(&hash));
                if let Some(wait) = block.map_err(index_down)? {
                    return Err(too_many_failures(wait));
                }
                found.map_err(index_down)?.map(|(user, last_used)| {
                    self.note_token_use(hash, last_used);
                    (user, Via::Token)
                })
            }
            Credentials::Cookie(id) => {
                let id_hash = sha256_hex(&id);
                let session = self
                    .index()
                    .session(&id_hash, unix_now())
                    .await
                    .map_err(index_down)?;
                session.map(|s| {
                    (
                        s.user,
                        Via::Cookie {
                            id_hash,
                            csrf_token: s.csrf_token,
                        },
                    )
                })
            }
        };
        let Some((user, via)) = found else {
            // A session ID cannot be guessed (256 random bits): a stale cookie is no attack,
            // and must not lock out everyone behind the same address.
            if guessable {
                self.failed(client).await;
            }
            return Err(refuse(unauthorized("invalid credentials"), true, None));
        };
        let Some(role) = Role::parse(&user.role) else {
            return Err(refuse(
                ApiError::forbidden("this user has no known role").into_response(),
                false,
                Some(user.name),
            ));
        };
        Ok(Principal {
            user: Some(user.name),
            role,
            via,
        })
    }

    /// Records when a token was last used, at most about once a minute per token, off the
    /// request's path.
    fn note_token_use(&self, hash: String, last_used: Option<String>) {
        let now = now_rfc3339();
        let fresh = last_used.as_deref().is_some_and(|last| {
            let format = &time::format_description::well_known::Rfc3339;
            time::OffsetDateTime::parse(last, format)
                .is_ok_and(|t| time::OffsetDateTime::now_utc() - t < time::Duration::minutes(1))
        });
        if !fresh {
            let index = self.index().clone();
            tokio::spawn(async move {
                if let Err(e) = index.token_used(&hash, &now).await {
                    tracing::warn!(error = %e, "cannot record the use of an API token");
                }
            });
        }
    }
}

/// Authenticates, authorises and audits one request. Needs the matched route, so it runs as a
/// route layer.
pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let auth = state.auth.clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let client = ClientAddr(
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip()),
    );

    let (response, user, bad_credentials) = match auth
        .authenticate(&method, &route, request.headers(), client)
        .await
    {
        Err(refusal) => (refusal.error, refusal.user, refusal.bad_credentials),
        Ok(principal) => {
            let user = principal.user.clone();
            if let Some(refused) = refuse_by_role(&principal, &method, &route, request.headers()) {
                (refused, user, false)
            } else {
                request.extensions_mut().insert(principal);
                request.extensions_mut().insert(client);
                (next.run(request).await, user, false)
            }
        }
    };

    let status = response.status().as_u16();
    let action = if bad_credentials {
        Some("sign-in-failed")
    } else {
        classify(&method, &route, status)
    };
    if let Some(action) = action {
        let (level, resource_id) = resource_of(&path);
        let user = response
            .extensions()
            .get::<AuditUser>()
            .map(|u| u.0.clone())
            .or(user);
        auth.audit.record(AuditEvent {
            at: now_rfc3339(),
            user,
            client: client.describe(),
            action: action.to_string(),
            level,
            resource_id,
            detail: format!("{method} {route}"),
            http_status: status,
            ..AuditEvent::default()
        });
    }
    response
}

/// A 403 when the role does not allow the request, or when a cookie-authenticated unsafe
/// request lacks the session's CSRF token.
fn refuse_by_role(
    principal: &Principal,
    method: &Method,
    route: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    if principal.via == Via::Anonymous {
        return None;
    }
    if !allowed(principal.role, method, route) {
        let message = format!("the {} role may not do this", principal.role.name());
        return Some(ApiError::forbidden(message).into_response());
    }
    if let Via::Cookie { csrf_token, .. } = &principal.via {
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let sent = headers
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !safe && !bool::from(sent.ct_eq(csrf_token.as_bytes())) {
            return Some(
                ApiError::forbidden(format!(
                    "a request signed in by cookie must carry the {CSRF_HEADER} header"
                ))
                .into_response(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_read_and_admins_do_everything() {
        let viewer = Role::Viewer;
        assert!(allowed(viewer, &Method::GET, "/studies/{id}"));
        assert!(allowed(viewer, &Method::POST, "/tools/find"));
        assert!(!allowed(viewer, &Method::POST, "/instances"));
        assert!(!allowed(viewer, &Method::DELETE, "/studies/{id}"));
        assert!(!allowed(viewer, &Method::GET, "/audit"));
        assert!(!allowed(viewer, &Method::GET, "/users"));
        assert!(allowed(Role::Admin, &Method::DELETE, "/studies/{id}"));
    }

    #[test]
    fn credentials_are_read_from_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "Basic YW5uOnNlY3JldDpjb2xvbg==".parse().unwrap(),
        );
        match credentials(&headers) {
            Credentials::Basic { user, password } => {
                assert_eq!((user.as_str(), password.as_str()), ("ann", "secret:colon"));
            }
            _ => panic!("not Basic"),
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; orthweb_session=xyz".parse().unwrap());
        assert_eq!(session_cookie(&headers).as_deref(), Some("xyz"));
    }
}
