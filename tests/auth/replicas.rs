//! Two servers on one PostgreSQL database, as replicas behind a load balancer: started at the
//! same moment on an empty database, both come up and the schema is migrated once; removing
//! two admins at once, one through each, leaves one; failed sign-ins spread over both are
//! blocked after the same count as on one server.

use std::path::Path;
use std::sync::Barrier;

use reqwest::Method;

use crate::cli::{basic, user_ok};
use crate::common::pg::PgCluster;
use crate::common::server::{Server, ServerConfig};
use crate::support::{Api, eventually};

/// Failed sign-ins before 429, for these servers.
const FAIL_LIMIT: usize = 6;
/// Start-ups on a fresh database; the last pair of servers serves the other checks.
const STARTS: usize = 3;
/// Rounds of two admins removed at once.
const REMOVALS: usize = 25;

fn config(db: &str) -> ServerConfig {
    ServerConfig::default()
        .arg("--index")
        .arg(db)
        .env("ORTHWEB_AUTH_FAIL_DELAY_MS", "20")
        .env("ORTHWEB_AUTH_FAIL_LIMIT", FAIL_LIMIT.to_string())
        .env("ORTHWEB_AUTH_FAIL_WINDOW_SECS", "120")
}

/// Two servers on `db`, their processes spawned at the same moment, as an autoscaling group
/// starts them.
fn start_together(work: &Path, db: &str) -> (Server, Server) {
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let start = |name: &str| {
            let (barrier, data) = (&barrier, work.join(name));
            scope.spawn(move || {
                barrier.wait();
                Server::start(&data, config(db))
            })
        };
        let (a, b) = (start("a"), start("b"));
        (a.join().unwrap(), b.join().unwrap())
    })
}

pub async fn run(pg: &PgCluster, work: &Path) {
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    let mut pair = None;
    for start in 0..STARTS {
        let name = format!("replicas{start}");
        let db = tokio::task::block_in_place(|| pg.create_database(&name));
        let work = work.join(&name);
        let (a, b) = tokio::task::block_in_place(|| start_together(&work, &db));
        for server in [&a, &b] {
            Api::new(server.url(""))
                .get("/readyz")
                .await
                .assert_status(200);
        }
        let applied = pg.psql(
            &name,
            "SELECT count(*), count(DISTINCT version), bool_and(success) FROM _sqlx_migrations",
        );
        assert_eq!(
            applied.trim(),
            format!("{migrations}|{migrations}|t"),
            "start {start}: the migrations applied"
        );
        pair = Some((name, db, work, a, b));
    }
    let (name, db, work, a, b) = pair.unwrap();
    let (api_a, api_b) = (Api::new(a.url("")), Api::new(b.url("")));

    // A viewer, so that credentials are required; each server notices within its cache's
    // lifetime.
    user_ok(
        &work.join("a"),
        &["--index".into(), db.clone()],
        &["add", "victor", "--role", "viewer"],
        "victor-password-1\n",
    );
    for api in [&api_a, &api_b] {
        eventually("credentials required", || async {
            (api.get("/statistics").await.status == 401).then_some(())
        })
        .await;
    }

    remove_admins_at_once(pg, &name, &api_a, &api_b).await;
    // Last: it blocks this client's address.
    failures_spread(&api_a, &api_b).await;
}

/// Each round, two admins remove themselves at the same moment, one through each server:
/// one removal succeeds, the other is refused as the last admin's.
async fn remove_admins_at_once(pg: &PgCluster, db: &str, api_a: &Api, api_b: &Api) {
    for round in 0..REMOVALS {
        let (first, second) = (format!("admin{round}a"), format!("admin{round}b"));
        pg.psql(
            db,
            &format!(
                "DELETE FROM users WHERE role = 'admin';
                 INSERT INTO users (name, password_hash, role, created_at) VALUES
                   ('{first}', 'unused', 'admin', '2025-01-01T00:00:00Z'),
                   ('{second}', 'unused', 'admin', '2025-01-01T00:00:00Z');
                 INSERT INTO api_tokens (token_hash, user_name, label, created_at) VALUES
                   (encode(sha256('token-{first}'), 'hex'), '{first}', 't', '2025-01-01T00:00:00Z'),
                   (encode(sha256('token-{second}'), 'hex'), '{second}', 't', '2025-01-01T00:00:00Z');"
            ),
        );
        let remove = |api: &Api, name: &str| {
            let (api, path) = (api.clone(), format!("/users/{name}"));
            let bearer = format!("Bearer token-{name}");
            async move {
                api.request(Method::DELETE, &path, &[("authorization", &bearer)], None)
                    .await
            }
        };
        let (one, other) = tokio::join!(remove(api_a, &first), remove(api_b, &second));
        let mut statuses = [one.status, other.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: {} / {}",
            one.text(),
            other.text()
        );
        let admins = pg.psql(db, "SELECT count(*) FROM users WHERE role = 'admin'");
        assert_eq!(admins.trim(), "1", "round {round}: admins left");
    }
}

/// Wrong passwords sent to each server in turn: the limit counts them all, and the attempt
/// after it is refused by either server, even with the right password.
async fn failures_spread(api_a: &Api, api_b: &Api) {
    let wrong = basic("victor", "not-the-password");
    let right = basic("victor", "victor-password-1");
    let apis = [api_a, api_b];
    let sign_in = |api: &Api, credentials: &str| {
        let (api, credentials) = (api.clone(), credentials.to_string());
        async move {
            api.request(
                Method::GET,
                "/statistics",
                &[("authorization", &credentials)],
                None,
            )
            .await
        }
    };
    sign_in(api_a, &right).await.assert_status(200);
    for attempt in 0..FAIL_LIMIT {
        sign_in(apis[attempt % 2], &wrong).await.assert_status(401);
    }
    for api in apis {
        let refused = sign_in(api, &right).await;
        refused.assert_error(429);
        let wait: u64 = refused
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=120).contains(&wait), "Retry-After {wait}");
        // The sign-in page is limited alike.
        let login = serde_json::json!({"Username": "victor", "Password": "victor-password-1"});
        api.post("/auth/login", login.to_string())
            .await
            .assert_error(429);
    }
}
