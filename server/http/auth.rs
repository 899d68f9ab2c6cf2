//! Signing in and out of the UI (`/auth/login`, `/auth/logout`, `/auth/me`), users
//! (`/users`, admins only) and the audit trail (`/audit`, admins only). Who may call what is
//! decided by `auth::middleware`.

use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::auth::passwords::{self, random_secret, sha256_hex};
use crate::auth::{
    AuditUser, ClientAddr, Principal, Role, SESSION_COOKIE, Via, cli::check_name, now_rfc3339,
    unix_now,
};
use crate::index::{AuditFilter, UserChangeError};

/// Most audit events one `/audit` call returns.
const MAX_AUDIT: u32 = 10_000;

fn string_field<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{key} is required (a string)")))
}

fn cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .expect("a cookie of base64url characters is a valid header")
}

/// `POST /auth/login` with `{"Username", "Password"}`: a session cookie and its CSRF token.
pub async fn login(state: AppState, client: ClientAddr, body: Value) -> Response {
    let auth = &state.auth;
    let (Ok(name), Ok(password)) = (
        string_field(&body, "Username"),
        string_field(&body, "Password"),
    ) else {
        return ApiError::bad_request("Username and Password are required").into_response();
    };
    let attempted = AuditUser(name.to_string());
    let (block, found) = tokio::join!(auth.blocked(client), auth.index().user(name));
    let found = match (block, found) {
        (Ok(Some(wait)), _) => {
            let mut response = crate::auth::middleware::too_many(wait);
            response.extensions_mut().insert(attempted);
            return response;
        }
        (Ok(None), Ok(found)) => found,
        (Err(e), _) | (_, Err(e)) => return ApiError::index(e).into_response(),
    };
    let Some(user) = auth.verify_password(found, name, password).await else {
        auth.failed(client).await;
        let mut response = ApiError::unauthorized("wrong user or password").into_response();
        response.extensions_mut().insert(attempted);
        return response;
    };
    let (id, csrf) = (random_secret(), random_secret());
    let ttl = auth.session_ttl().as_secs();
    let expires = unix_now().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX / 2));
    if let Err(e) = auth
        .index()
        .add_session(&sha256_hex(&id), &user.name, &csrf, expires, unix_now())
        .await
    {
        return ApiError::index(e).into_response();
    }
    let mut response = Json(json!({
        "User": user.name,
        "Role": user.role,
        "CsrfToken": csrf,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&id, ttl, auth.secure_cookies()));
    response.extensions_mut().insert(attempted);
    response
}

/// `POST /auth/logout`: ends the session (when signed in by cookie) and clears the cookie.
pub async fn logout(state: AppState, principal: Principal) -> Result<Response, ApiError> {
    if let Via::Cookie { id_hash, .. } = &principal.via {
        state
            .auth
            .index()
            .remove_session(id_hash)
            .await
            .map_err(ApiError::index)?;
    }
    let mut response = Json(json!({})).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie("", 0, state.auth.secure_cookies()),
    );
    Ok(response)
}

/// `GET /auth/me`: who the request is from (and the CSRF token, when by cookie, so that a
/// reloaded page finds it again).
pub async fn me(principal: Principal) -> Json<Value> {
    let csrf = match &principal.via {
        Via::Cookie { csrf_token, .. } => Some(csrf_token.clone()),
        _ => None,
    };
    Json(json!({
        "User": principal.user,
        "Role": principal.role.name(),
        "CsrfToken": csrf,
    }))
}

fn user_error(e: UserChangeError) -> ApiError {
    match e {
        UserChangeError::Unknown(_) => ApiError::not_found(e.to_string()),
        UserChangeError::Exists(_) | UserChangeError::LastAdmin(_) => {
            ApiError::conflict(e.to_string())
        }
        UserChangeError::Index(e) => ApiError::index(e),
    }
}

async fn checked_hash(body: &Value) -> Result<String, ApiError> {
    let password = string_field(body, "Password")?.to_string();
    passwords::check_rules(&password).map_err(ApiError::bad_request)?;
    tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(ApiError::internal)
}

/// `GET /users`: names, roles and creation times (never hashes).
pub async fn list_users(state: AppState) -> Result<Json<Value>, ApiError> {
    let users = state.index.users().await.map_err(ApiError::index)?;
    Ok(Json(Value::Array(
        users
            .iter()
            .map(|u| json!({ "Name": u.name, "Role": u.role, "CreatedAt": u.created_at }))
            .collect(),
    )))
}

/// `POST /users` with `{"Username", "Password", "Role"}`.
pub async fn add_user(state: AppState, body: Value) -> Result<Json<Value>, ApiError> {
    let name = string_field(&body, "Username")?;
    check_name(name).map_err(ApiError::bad_request)?;
    let role = string_field(&body, "Role")?;
    let role = Role::parse(role)
        .ok_or_else(|| ApiError::bad_request(format!("unknown Role {role:?}: admin or viewer")))?;
    let hash = checked_hash(&body).await?;
    state
        .index
        .add_user(name, role.name(), &hash, &now_rfc3339())
        .await
        .map_err(user_error)?;
    state.auth.forget(name);
    Ok(Json(json!({ "Name": name, "Role": role.name() })))
}

/// `DELETE /users/{name}`: the user with their tokens and sessions; never the last admin.
pub async fn remove_user(state: AppState, name: String) -> Result<Json<Value>, ApiError> {
    state.index.remove_user(&name).await.map_err(user_error)?;
    state.auth.forget(&name);
    Ok(Json(json!({})))
}

/// `PUT /users/{name}/password` with `{"Password"}`; ends the user's sessions.
pub async fn set_password(
    state: AppState,
    name: String,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let hash = checked_hash(&body).await?;
    state
        .index
        .set_password(&name, &hash)
        .await
        .map_err(user_error)?;
    state.auth.forget(&name);
    Ok(Json(json!({})))
}

/// `GET /audit?since=&limit=&user=&action=`, shaped as `/changes`.
pub async fn audit(
    state: AppState,
    args: HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    let number = |key: &str, default: i64| -> Result<i64, ApiError> {
        args.get(key).map_or(Ok(default), |v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::bad_request(format!("{key} must be a number")))
        })
    };
    let text = |key: &str| args.get(key).filter(|v| !v.is_empty()).cloned();
    let filter = AuditFilter {
        since: number("since", 0)?,
        limit: u32::try_from(number("limit", 100)?)
            .unwrap_or(MAX_AUDIT)
            .min(MAX_AUDIT),
        user: text("user"),
        action: text("action"),
    };
    let page = state.index.audit(&filter).await.map_err(ApiError::index)?;
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| {
            json!({
                "Seq": e.seq,
                "Time": e.at,
                "User": e.user,
                "Client": e.client,
                "Action": e.action,
                "Level": e.level,
                "ResourceId": e.resource_id,
                "Detail": e.detail,
                "HttpStatus": e.http_status,
            })
        })
        .collect();
    Ok(Json(
        json!({ "Events": events, "Done": page.done, "Last": page.last }),
    ))
}
