//! One server on loopback, from open to signed in, through every kind of credential and both
//! roles; the audit trail of what was done; the user commands; and, last (it locks this
//! client out), the limit on failed sign-ins.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{basic, user, user_ok};
use crate::common::dicomgen::{Depth, Spec};
use crate::common::server::{Server, ServerConfig};
use crate::support::{Api, Reply, eventually};

const ADMIN: (&str, &str) = ("alice", "alice-password-1");
const VIEWER: (&str, &str) = ("victor", "victor-password-1");
/// Failed sign-ins before 429, for this server.
const FAIL_LIMIT: usize = 30;

/// Sends with an `Authorization` header (or none).
async fn call(
    api: &Api,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Vec<u8>>,
) -> Reply {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    api.request(method, path, &headers, body).await
}

pub async fn run(work: &Path, extra: Vec<String>) {
    let data = work.join("data");
    let config = extra
        .iter()
        .fold(ServerConfig::default(), |config, arg| {
            config.arg(arg.clone())
        })
        .env("ORTHWEB_AUTH_FAIL_DELAY_MS", "20")
        .env("ORTHWEB_AUTH_FAIL_LIMIT", FAIL_LIMIT.to_string())
        .env("ORTHWEB_AUTH_FAIL_WINDOW_SECS", "120")
        // Reads too, so that the log's secret check below covers every request.
        .env("RUST_LOG", "info,audit=debug");
    let server = Server::start(&data, config);
    let api = Api::new(server.url(""));
    let admin = basic(ADMIN.0, ADMIN.1);
    let viewer = basic(VIEWER.0, VIEWER.1);

    // Loopback and no user: open, as before users existed.
    api.get("/statistics").await.assert_status(200);

    // Users from the command line, while the server runs; short passwords refused.
    let short = user(
        &data,
        &extra,
        &["add", "shorty", "--role", "viewer"],
        "short-pw\n",
    );
    assert!(!short.ok && short.stderr.contains("12"), "{}", short.stderr);
    user_ok(
        &data,
        &extra,
        &["add", ADMIN.0, "--role", "admin"],
        &format!("{}\n", ADMIN.1),
    );
    let password_file = work.join("viewer-password");
    std::fs::write(&password_file, format!("{}\n", VIEWER.1)).unwrap();
    let file_arg = password_file.to_str().unwrap();
    user_ok(
        &data,
        &extra,
        &[
            "add",
            VIEWER.0,
            "--role",
            "viewer",
            "--password-file",
            file_arg,
        ],
        "",
    );
    let listed = user_ok(&data, &extra, &["list"], "");
    assert!(listed.contains(ADMIN.0) && listed.contains(VIEWER.0) && listed.contains("viewer"));
    assert!(
        !listed.contains("$argon2"),
        "list shows no hashes: {listed}"
    );

    // The server notices within seconds: credentials needed now.
    let refused = eventually("the server to require credentials", || async {
        let reply = api.get("/statistics").await;
        (reply.status == 401).then_some(reply)
    })
    .await;
    refused.assert_error(401);
    let challenge = refused.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Basic realm=\"Orthweb\""),
        "{challenge}"
    );
    api.get("/healthz").await.assert_status(200);
    api.get("/readyz").await.assert_status(200);
    api.get("/metrics").await.assert_status(401);

    // HTTP Basic: right, wrong, unknown.
    call(&api, Method::GET, "/statistics", Some(&admin), None)
        .await
        .assert_status(200);
    call(&api, Method::GET, "/metrics", Some(&viewer), None)
        .await
        .assert_status(200);
    call(
        &api,
        Method::GET,
        "/statistics",
        Some(&basic(ADMIN.0, "wrong-password")),
        None,
    )
    .await
    .assert_error(401);
    call(
        &api,
        Method::GET,
        "/statistics",
        Some(&basic("nobody", "whatever-password")),
        None,
    )
    .await
    .assert_error(401);

    // Roles: the viewer reads and finds; uploads and deletions are the admin's.
    let files = work.join("files");
    let mut spec = Spec::new(4242);
    spec.series.clear();
    spec.add_series("OT", 2, 16, 16, 1, Depth::U16);
    let made = spec.write(&files).expect("generate files");
    let bytes = |i: usize| std::fs::read(&made[i].path).unwrap();
    call(
        &api,
        Method::POST,
        "/instances",
        Some(&viewer),
        Some(bytes(0)),
    )
    .await
    .assert_error(403);
    let uploaded = call(
        &api,
        Method::POST,
        "/instances",
        Some(&admin),
        Some(bytes(0)),
    )
    .await
    .ok_json();
    let instance = uploaded["ID"].as_str().unwrap().to_string();
    let study = uploaded["ParentStudy"].as_str().unwrap().to_string();
    call(
        &api,
        Method::GET,
        &format!("/studies/{study}"),
        Some(&viewer),
        None,
    )
    .await
    .assert_status(200);
    call(
        &api,
        Method::GET,
        &format!("/instances/{instance}/file"),
        Some(&viewer),
        None,
    )
    .await
    .assert_status(200);
    let find = json!({"Level": "Study", "Query": {}})
        .to_string()
        .into_bytes();
    let found = call(&api, Method::POST, "/tools/find", Some(&viewer), Some(find))
        .await
        .ok_json();
    assert_eq!(found, json!([study]));
    call(
        &api,
        Method::DELETE,
        &format!("/instances/{instance}"),
        Some(&viewer),
        None,
    )
    .await
    .assert_error(403);
    call(&api, Method::GET, "/audit", Some(&viewer), None)
        .await
        .assert_error(403);
    call(&api, Method::GET, "/users", Some(&viewer), None)
        .await
        .assert_error(403);

    let token = tokens(&api, &data, &extra).await;
    let session = cookies(&api, &admin, &study, &bytes(1)).await;
    call(
        &api,
        Method::DELETE,
        &format!("/instances/{instance}"),
        Some(&admin),
        None,
    )
    .await
    .assert_status(200);
    audit(&api, &admin, &instance, &study).await;
    users(&api, &admin, &data, &extra).await;
    rate_limit(&api).await;

    // No secret reached the log, though every request was logged and audited.
    let log = server.log_text();
    assert!(
        log.contains("action=download") && log.contains("action=delete"),
        "the audit lines are in the log"
    );
    for secret in [
        ADMIN.1,
        VIEWER.1,
        "victor-password-2",
        "carol-password-1",
        &token,
        &session,
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the server log");
    }
}

/// API tokens: printed once by `orthweb user token`, good as `Bearer`, dead once revoked.
async fn tokens(api: &Api, data: &Path, extra: &[String]) -> String {
    let token = user_ok(data, extra, &["token", VIEWER.0, "--label", "tests"], "");
    let token = token.trim();
    assert!(token.starts_with("ow_"), "{token}");
    let bearer = format!("Bearer {token}");
    let me = call(api, Method::GET, "/auth/me", Some(&bearer), None)
        .await
        .ok_json();
    assert_eq!(
        (me["User"].as_str(), me["Role"].as_str()),
        (Some(VIEWER.0), Some("viewer"))
    );
    call(api, Method::GET, "/studies", Some(&bearer), None)
        .await
        .assert_status(200);
    call(
        api,
        Method::GET,
        "/studies",
        Some("Bearer ow_not-a-token"),
        None,
    )
    .await
    .assert_error(401);
    user_ok(data, extra, &["revoke-tokens", VIEWER.0], "");
    call(api, Method::GET, "/studies", Some(&bearer), None)
        .await
        .assert_error(401);
    token.to_string()
}

/// The UI's session: the cookie's flags, CSRF on unsafe methods, logout.
async fn cookies(api: &Api, admin: &str, study: &str, upload: &[u8]) -> String {
    let login = json!({"Username": ADMIN.0, "Password": "not-the-password"}).to_string();
    api.post("/auth/login", login).await.assert_error(401);
    let login = json!({"Username": ADMIN.0, "Password": ADMIN.1}).to_string();
    let reply = api.post("/auth/login", login).await;
    let body = reply.ok_json();
    assert_eq!(
        (body["User"].as_str(), body["Role"].as_str()),
        (Some(ADMIN.0), Some("admin"))
    );
    let csrf = body["CsrfToken"].as_str().unwrap().to_string();
    let set_cookie = reply.header("set-cookie").unwrap_or_default().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(flag), "{flag} missing: {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let pair = set_cookie.split(';').next().unwrap().to_string();
    assert!(
        pair.starts_with("orthweb_session=") && pair.len() > 40,
        "{pair}"
    );
    let cookie = [("cookie", pair.as_str())];
    let with_csrf = [("cookie", pair.as_str()), ("x-csrf-token", csrf.as_str())];
    let wrong_csrf = [("cookie", pair.as_str()), ("x-csrf-token", "forged")];

    let me = api.get_with("/auth/me", &cookie).await.ok_json();
    assert_eq!(me["User"].as_str(), Some(ADMIN.0));
    assert_eq!(me["CsrfToken"].as_str(), Some(csrf.as_str()));
    api.get_with(&format!("/studies/{study}"), &cookie)
        .await
        .assert_status(200);

    // Unsafe methods by cookie need the CSRF token; Basic does not.
    let uploaded = api
        .request(Method::POST, "/instances", &cookie, Some(upload.to_vec()))
        .await;
    uploaded.assert_error(403);
    let uploaded = api
        .request(
            Method::POST,
            "/instances",
            &with_csrf,
            Some(upload.to_vec()),
        )
        .await
        .ok_json();
    let id = uploaded["ID"].as_str().unwrap();
    let path = format!("/instances/{id}");
    api.request(Method::DELETE, &path, &cookie, None)
        .await
        .assert_error(403);
    api.request(Method::DELETE, &path, &wrong_csrf, None)
        .await
        .assert_error(403);
    api.request(Method::DELETE, &path, &with_csrf, None)
        .await
        .assert_status(200);
    call(api, Method::GET, "/statistics", Some(admin), None)
        .await
        .assert_status(200);

    // Logout ends the session on the server, not only in the browser.
    let out = api
        .request(Method::POST, "/auth/logout", &with_csrf, None)
        .await;
    out.assert_status(200);
    assert!(
        out.header("set-cookie")
            .unwrap_or_default()
            .contains("Max-Age=0")
    );
    let gone = api.get_with("/auth/me", &cookie).await;
    gone.assert_error(401);
    assert!(
        gone.header("www-authenticate").is_none(),
        "no Basic dialog for the UI"
    );
    pair.trim_start_matches("orthweb_session=").to_string()
}

/// The events of one action, once they are in the index.
async fn events(api: &Api, admin: &str, query: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("an audit event for {query}"), || async {
        let page = call(
            api,
            Method::GET,
            &format!("/audit?{query}"),
            Some(admin),
            None,
        )
        .await
        .ok_json();
        page["Events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| wanted(e))
            .cloned()
    })
    .await
}

/// Who did what, from where, as `/audit` tells it.
async fn audit(api: &Api, admin: &str, instance: &str, study: &str) {
    let event = events(api, admin, "action=view&user=victor", |e| {
        e["ResourceId"] == study
    })
    .await;
    assert_eq!(event["Level"], "Study");
    assert_eq!(event["Client"], "127.0.0.1");
    assert_eq!(event["HttpStatus"], 200);
    assert!(
        event["Time"].as_str().is_some_and(|t| t.starts_with("20")),
        "{event}"
    );
    let event = events(api, admin, "action=download", |e| {
        e["ResourceId"] == instance
    })
    .await;
    assert_eq!(event["User"], VIEWER.0);
    let event = events(api, admin, "action=upload", |e| e["User"] == ADMIN.0).await;
    assert_eq!(event["HttpStatus"], 200);
    events(api, admin, "action=upload", |e| {
        e["User"] == VIEWER.0 && e["HttpStatus"] == 403
    })
    .await;
    events(api, admin, "action=delete", |e| {
        e["ResourceId"] == instance && e["User"] == ADMIN.0 && e["HttpStatus"] == 200
    })
    .await;
    events(api, admin, "action=find", |e| e["User"] == VIEWER.0).await;
    events(api, admin, "action=sign-in", |e| e["User"] == ADMIN.0).await;
    let failed = events(api, admin, "action=sign-in-failed", |e| {
        e["User"] == ADMIN.0
    })
    .await;
    assert_eq!(failed["HttpStatus"], 401);
    // Paging as /changes: Last and Done.
    let page = call(api, Method::GET, "/audit?limit=1", Some(admin), None)
        .await
        .ok_json();
    assert_eq!(page["Events"].as_array().unwrap().len(), 1);
    assert_eq!(page["Done"], false);
    assert_eq!(page["Last"], page["Events"][0]["Seq"]);
}

/// Users over REST and the user commands: password changes take effect at once, the last
/// admin stays.
async fn users(api: &Api, admin: &str, data: &Path, extra: &[String]) {
    let post = |body: Value| {
        call(
            api,
            Method::POST,
            "/users",
            Some(admin),
            Some(body.to_string().into_bytes()),
        )
    };
    post(json!({"Username": "carol", "Password": "short", "Role": "viewer"}))
        .await
        .assert_error(400);
    post(json!({"Username": "carol", "Password": "carol-password-1", "Role": "root"}))
        .await
        .assert_error(400);
    post(json!({"Username": "carol", "Password": "carol-password-1", "Role": "viewer"}))
        .await
        .assert_status(200);
    post(json!({"Username": "carol", "Password": "carol-password-1", "Role": "viewer"}))
        .await
        .assert_error(409);
    let carol = basic("carol", "carol-password-1");
    call(api, Method::GET, "/studies", Some(&carol), None)
        .await
        .assert_status(200);
    let listed = call(api, Method::GET, "/users", Some(admin), None)
        .await
        .ok_json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["Name"].as_str())
        .collect();
    assert_eq!(names, ["alice", "carol", "victor"]);
    assert!(!listed.to_string().contains("argon2"));

    let put = json!({"Password": "carol-password-2"})
        .to_string()
        .into_bytes();
    call(
        api,
        Method::PUT,
        "/users/carol/password",
        Some(admin),
        Some(put),
    )
    .await
    .assert_status(200);
    call(api, Method::GET, "/studies", Some(&carol), None)
        .await
        .assert_error(401);
    call(
        api,
        Method::GET,
        "/studies",
        Some(&basic("carol", "carol-password-2")),
        None,
    )
    .await
    .assert_status(200);
    call(api, Method::DELETE, "/users/carol", Some(admin), None)
        .await
        .assert_status(200);
    call(api, Method::DELETE, "/users/carol", Some(admin), None)
        .await
        .assert_error(404);
    call(api, Method::DELETE, "/users/alice", Some(admin), None)
        .await
        .assert_error(409);

    // The same from the command line, the server noticing the new password at once.
    user_ok(data, extra, &["passwd", VIEWER.0], "victor-password-2\n");
    call(
        api,
        Method::GET,
        "/studies",
        Some(&basic(VIEWER.0, VIEWER.1)),
        None,
    )
    .await
    .assert_error(401);
    call(
        api,
        Method::GET,
        "/studies",
        Some(&basic(VIEWER.0, "victor-password-2")),
        None,
    )
    .await
    .assert_status(200);
    user_ok(data, extra, &["remove", VIEWER.0], "");
    let last = user(data, extra, &["remove", ADMIN.0], "");
    assert!(
        !last.ok && last.stderr.contains("last admin"),
        "{}",
        last.stderr
    );
    let listed = user_ok(data, extra, &["list"], "");
    assert!(
        listed.contains(ADMIN.0) && !listed.contains(VIEWER.0),
        "{listed}"
    );
}

/// Failed sign-ins from one address: 429 with Retry-After once over the limit, even for the
/// right password. Last: this client stays locked out for the window.
async fn rate_limit(api: &Api) {
    let wrong = basic(ADMIN.0, "guess-guess-guess");
    let mut refused = None;
    for _ in 0..=FAIL_LIMIT {
        let reply = call(api, Method::GET, "/statistics", Some(&wrong), None).await;
        if reply.status == 429 {
            refused = Some(reply);
            break;
        }
        reply.assert_error(401);
    }
    let refused = refused.expect("429 after the limit of failed sign-ins");
    refused.assert_error(429);
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=120).contains(&wait), "Retry-After {wait}");
    let right = basic(ADMIN.0, ADMIN.1);
    call(api, Method::GET, "/statistics", Some(&right), None)
        .await
        .assert_error(429);
    let login = json!({"Username": ADMIN.0, "Password": ADMIN.1}).to_string();
    api.post("/auth/login", login).await.assert_error(429);
    // Health checks carry no credentials and still answer.
    api.get("/healthz").await.assert_status(200);
}
