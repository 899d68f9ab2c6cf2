//! The REST API over real HTTP against the real `orthweb` binary, after an ingest with dcmtk's
//! `storescu`, on both backend pairs: SQLite + folder and PostgreSQL + S3. Expectations come
//! from Orthanc's documented shapes and from what the generated files contain, not from the
//! server's answers.
//!
//! Each backend runs one server through every step below, read-only steps first, deletions
//! last; a failed step is recorded and the others still run (see [`support::Steps`]).
//!
//! - [`corpus`] — the studies sent (3 patients, 4 studies, 6 series, 11 instances) and what
//!   Orthanc would index;
//! - [`resources`] — `/{level}`, `/{level}/{id}` and sub-routes, paging, `LastUpdate`,
//!   statistics;
//! - [`files`] — `/instances/{id}/file` (bytes, ETag, ranges) and `/tags`;
//! - [`find`] — `/tools/find` and `/tools/lookup`;
//! - [`changes`] — `/changes`;
//! - [`archive`] — ZIP archives and shared tags;
//! - [`uploads`] — `POST /instances` (a file, a ZIP, refusals);
//! - [`ops`] — `/metrics` and `/openapi.json`;
//! - [`delete`] — `DELETE /{level}/{id}`, with the blobs and the change log;
//! - [`errors`] — 404 and 400 bodies;
//! - [`import`] — `orthweb import`, in its own test on SQLite and after the steps on
//!   PostgreSQL + S3.

#[path = "../common/mod.rs"]
mod common;

mod archive;
mod changes;
mod corpus;
mod delete;
mod errors;
mod files;
mod find;
mod import;
mod ops;
mod resources;
mod support;
mod uploads;

use std::path::Path;

use common::dcmtk;
use common::pg::PgCluster;
use common::s3::{self, S3Server};
use common::server::{Server, ServerConfig};
use corpus::Corpus;
use support::{Api, Steps};

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_and_folder_serve_the_rest_api() {
    if !tools_installed() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let server = Server::start(&data, config());
    exercise(&server, &data.join("blobs"), work.path())
        .await
        .finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_s3_serve_the_rest_api() {
    if !tools_installed() {
        return;
    }
    // Started without blocking the runtime's other tasks (the in-process S3 server runs on them).
    let Some(pg) = tokio::task::block_in_place(PgCluster::start) else {
        return;
    };
    let s3 = S3Server::start();
    let db = tokio::task::block_in_place(|| pg.create_database("rest"));
    let work = tempfile::tempdir().unwrap();
    let on_s3 = |db: String, prefix: &str| {
        config()
            .arg("--index")
            .arg(db)
            .arg("--storage")
            .arg(format!("s3://{}/{prefix}", s3::BUCKET))
            .env("ORTHWEB_S3_PATH_STYLE", "true")
            .envs(s3.env())
    };
    let server =
        tokio::task::block_in_place(|| Server::start(&work.path().join("data"), on_s3(db, "rest")));
    // s3s-fs keeps object `rest/KEY` of the bucket as the file `<bucket dir>/rest/KEY`.
    let mut steps = exercise(&server, &s3.object_path(s3::BUCKET, "rest"), work.path()).await;
    steps
        .run(
            "PostgreSQL: identifier matches use an index",
            find::postgres_plans_use_indexes(&pg, "rest"),
        )
        .await;
    steps
        .run("PostgreSQL: counters match the rows", async {
            tokio::task::block_in_place(|| resources::postgres_counters_match_the_rows(&pg, "rest"))
        })
        .await;

    // `orthweb import` into another database and prefix, while a server serves them.
    let db = tokio::task::block_in_place(|| pg.create_database("import"));
    steps
        .run(
            "orthweb import beside a server",
            import::round_trip(work.path(), on_s3(db, "import"), true),
        )
        .await;
    steps.finish();
}

/// `orthweb import` into SQLite + folder, first with no server running, then beside one.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_and_folder_import() {
    let work = tempfile::tempdir().unwrap();
    import::round_trip(work.path(), config(), false).await;
}

/// dcmtk's storescu sends the studies; its dcmconv writes one of the files.
fn tools_installed() -> bool {
    dcmtk::require_tool("storescu") && dcmtk::require_tool("dcmconv")
}

/// What both servers share: a stable age short enough to see resources become stable, an
/// upload limit small enough to exceed cheaply.
fn config() -> ServerConfig {
    ServerConfig::default()
        .env("ORTHWEB_STABLE_AGE_SECS", STABLE_AGE_SECS.to_string())
        .env(
            "ORTHWEB_MAX_UPLOAD_MIB",
            uploads::MAX_UPLOAD_MIB.to_string(),
        )
}

const STABLE_AGE_SECS: u64 = 3;

/// Sends the corpus, then runs every step against `server`, whose blobs are files under
/// `blob_root`; returns the steps for the caller to add its own and finish.
async fn exercise(server: &Server, blob_root: &Path, work: &Path) -> Steps {
    let corpus = Corpus::generate(&work.join("sent"));
    corpus.send(server).await;
    let api = Api::new(server.url(""));
    let (api, c) = (&api, &corpus);
    let mut steps = Steps::default();

    steps
        .run(
            "IDs follow Orthanc's formula",
            resources::ids_follow_the_formula(api, c),
        )
        .await;
    steps
        .run("resource shapes", resources::shapes(api, c))
        .await;
    steps.run("sub-routes", resources::sub_routes(api, c)).await;
    steps
        .run("listing and paging", resources::listing_and_paging(api, c))
        .await;
    steps
        .run("LastUpdate", resources::last_update(api, c))
        .await;
    steps.run("statistics", resources::statistics(api, c)).await;
    steps
        .run(
            "file download",
            files::download(api, c, blob_root, &work.join("got")),
        )
        .await;
    steps
        .run("file keep-alive downloads", files::keep_alive(api, c))
        .await;
    steps.run("file HEAD", files::head(api, c)).await;
    steps.run("file ETag", files::etag(api, c)).await;
    steps.run("file ranges", files::ranges(api, c)).await;
    steps.run("tags", files::tags(api, c)).await;
    steps.run("find: matching", find::matching(api, c)).await;
    steps.run("find: paging", find::paging(api, c)).await;
    steps.run("find: ordering", find::ordering(api, c)).await;
    steps
        .run(
            "find: expand and requested tags",
            find::expand_and_requested_tags(api, c),
        )
        .await;
    steps.run("find: refusals", find::refusals(api)).await;
    steps.run("lookup", find::lookup(api, c)).await;
    steps
        .run("changes after ingest", changes::after_ingest(api, c))
        .await;
    steps.run("errors: 404", errors::not_found(api, c)).await;
    steps.run("errors: 400", errors::bad_requests(api)).await;
    steps.run("IsStable", resources::stability(api, c)).await;
    steps.run("archives", archive::archives(api, c)).await;
    steps.run("shared tags", archive::shared_tags(api, c)).await;
    steps.run("OpenAPI document", ops::openapi(api)).await;
    steps.run("compression", ops::compression(api, c)).await;

    // Uploads add resources after the checks of the corpus' counts and change log, and delete
    // them again before the deletion steps, which count what remains.
    let scratch = work.join("uploads");
    let tally = uploads::Tally::default();
    steps
        .run(
            "upload: a file",
            uploads::round_trip(api, blob_root, &scratch, &tally),
        )
        .await;
    steps
        .run(
            "upload: a ZIP",
            uploads::zip(api, c, blob_root, &scratch, &tally),
        )
        .await;
    steps
        .run(
            "upload: refusals",
            uploads::refusals(api, blob_root, &scratch),
        )
        .await;
    steps.run("metrics", ops::metrics(api, c, &tally)).await;

    let since = delete::last_seq(api).await;
    let deleting = delete::Deleting::new(api, c, blob_root);
    steps
        .run("delete: unknown IDs", delete::unknown(api, c))
        .await;
    steps
        .run("delete: an instance", delete::instance(&deleting))
        .await;
    steps.run("delete: a study", delete::study(&deleting)).await;
    steps
        .run(
            "delete: the last study of a patient",
            delete::last_study_of_a_patient(&deleting),
        )
        .await;
    steps
        .run("delete: a series", delete::series(&deleting))
        .await;
    steps
        .run("delete: a patient", delete::patient(&deleting))
        .await;
    steps
        .run("delete: changes", delete::changes(&deleting, since))
        .await;
    steps
}
