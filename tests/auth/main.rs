//! Users, roles, credentials, sign-in limits and the audit trail, over real HTTP against the
//! real `orthweb` binary, with users managed by its own `orthweb user` commands.
//!
//! - [`flow`] — one server taken from open (loopback, no user) to signed in: Basic, tokens,
//!   the UI's cookie with CSRF, roles, `/users`, the audit trail, the user commands, and last
//!   the limit on failed sign-ins; on SQLite + folder and on PostgreSQL;
//! - [`public`] — a server on a non-loopback address with no user creates an admin with a
//!   random password printed once;
//! - [`replicas`] — two servers on one PostgreSQL database: started at once on an empty
//!   database, removing admins at once, failed sign-ins spread over both.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../rest/support.rs"]
mod support;

mod cli;
mod flow;
mod public;
mod replicas;

use common::pg::PgCluster;

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_users_roles_sessions_and_audit() {
    let work = tempfile::tempdir().unwrap();
    flow::run(work.path(), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_users_roles_sessions_and_audit() {
    let Some(pg) = tokio::task::block_in_place(PgCluster::start) else {
        return;
    };
    let db = tokio::task::block_in_place(|| pg.create_database("auth"));
    let work = tempfile::tempdir().unwrap();
    flow::run(work.path(), vec!["--index".into(), db]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_listener_never_runs_open() {
    let work = tempfile::tempdir().unwrap();
    public::run(work.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_replicas_share_migrations_limits_and_the_last_admin() {
    let Some(pg) = tokio::task::block_in_place(PgCluster::start) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    replicas::run(&pg, work.path()).await;
}
