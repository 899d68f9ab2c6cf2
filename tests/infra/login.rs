//! The server configured as the bootstrap configures it on AWS, against the emulator's AWS:
//! its PostgreSQL login from a Secrets Manager secret (moto's) as RDS keeps it for a master user
//! it manages, the database a real PostgreSQL over TLS with its certificate checked against
//! the CA the bootstrap installed (the RDS trust store's stand-in), the blobs in moto's S3
//! under a KMS key. It stores a study over DICOM TLS, and keeps storing after the secret is
//! rotated; the CLI (`orthweb user list`) takes its login from the secret too.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::bootstrap::{self, Inputs};
use crate::certs::Authority;
use crate::common::dcmtk::{self, CALLING_AET};
use crate::common::dicomgen::Spec;
use crate::common::moto::{self, MotoServer};
use crate::common::pg::PgCluster;
use crate::common::server::{Server, ServerConfig};

/// The master user RDS would create, and its passwords before and after a rotation (the
/// secret holds them; nothing else does).
const MASTER: &str = "pacsadmin";
const FIRST_PASSWORD: &str = "first-pw-3f9a1c";
const ROTATED_PASSWORD: &str = "rotated-pw-8e2b7d";

fn login_json(password: &str) -> String {
    json!({ "username": MASTER, "password": password }).to_string()
}

fn storescu_tls(port: u16, cert: &Path, files: &Path) -> std::process::Output {
    Command::new("storescu")
        .args([
            "-aet",
            CALLING_AET,
            "-aec",
            "ORTHWEB",
            "-to",
            "10",
            "-ta",
            "10",
        ])
        .args(["-td", "30", "+tla", "+cf"])
        .arg(cert)
        .args(["+sd", "127.0.0.1"])
        .arg(port.to_string())
        .arg(files)
        .output()
        .expect("storescu runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_comes_from_the_secret_and_follows_its_rotation() {
    let Some(mut pg) = tokio::task::spawn_blocking(PgCluster::start).await.unwrap() else {
        return;
    };
    let Some(moto) = MotoServer::start() else {
        return;
    };
    if !dcmtk::require_tool("storescu") {
        return;
    }
    // PostgreSQL over TLS only, with a certificate of "the RDS CA".
    let pki = tempfile::tempdir().unwrap();
    let ca = Authority::new(pki.path(), "RDS stand-in CA");
    let db_cert = ca.issue(pki.path(), "db", &["localhost"], false);
    pg.require_tls(&db_cert.cert, &db_cert.key);
    pg.psql(
        "postgres",
        &format!("CREATE ROLE {MASTER} LOGIN PASSWORD '{FIRST_PASSWORD}'"),
    );
    pg.psql("postgres", &format!("CREATE DATABASE pacs OWNER {MASTER}"));

    let secret_arn = moto.create_secret("rds!db-0c8d2e4f", &login_json(FIRST_PASSWORD));
    let key = moto.json("kms", "TrentService.CreateKey", &json!({}));
    let key_arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let bucket = "orthweb-site-instances";
    moto.create_bucket(bucket);

    // The bootstrap writes the configuration (no password in it), as on an instance.
    let Some(booted) = bootstrap::bootstrap(&Inputs {
        region: moto::REGION.into(),
        bucket: bucket.into(),
        kms_key_arn: key_arn,
        db_host: "localhost".into(),
        db_port: pg.port(),
        db_name: "pacs".into(),
        db_user: MASTER.into(),
        secret_arn: secret_arn.clone(),
        site_name: "localhost".into(),
        rds_ca: Some(ca.pem.cert.clone()),
        ..Inputs::default()
    }) else {
        return;
    };
    let written = std::fs::read_to_string(&booted.config).unwrap();
    for password in [FIRST_PASSWORD, ROTATED_PASSWORD] {
        assert!(
            !written.contains(password),
            "a password in the configuration"
        );
    }
    assert!(written.contains("sslmode=verify-full"), "{written}");

    let work = tempfile::tempdir().unwrap();
    let server = Server::start(
        &work.path().join("data"),
        ServerConfig::default()
            .arg("--config")
            .arg(booted.config.to_str().unwrap())
            // Loopback only, on free ports; the rest is the configuration as written.
            .env("ORTHWEB_DICOM_TLS_LISTEN", "127.0.0.1:0")
            .env("ORTHWEB_S3_PATH_STYLE", "true")
            .envs(moto.env()),
    );
    assert!(server.https, "the site is served over HTTPS");
    let cert = written
        .lines()
        .find_map(|l| l.strip_prefix("tls_cert_file = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("the configuration names the site's certificate");

    let first = work.path().join("first");
    let written_first = Spec::new(121).write(&first).unwrap();
    let out = storescu_tls(server.dicom_tls_port, Path::new(&cert), &first);
    assert!(out.status.success(), "storescu +tla: {}", dcmtk::text(&out));
    // HTTPS with the site's certificate, read with curl (the test kit's client is plain HTTP).
    let count = |server: &Server| {
        let out = Command::new("curl")
            .args(["-sf", "--cacert", &cert, "--resolve"])
            .arg(format!("localhost:{}:127.0.0.1", server.http_port))
            .arg(format!("https://localhost:{}/statistics", server.http_port))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "curl /statistics: {out:?}");
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        stats["CountInstances"].as_u64()
    };
    assert_eq!(count(&server), Some(written_first.len() as u64));
    // The blobs went to the bucket, encrypted with the key.
    let (status, listing) = moto.s3("GET", &format!("/{bucket}?list-type=2"), b"");
    assert_eq!(status, 200);
    assert!(listing.contains("<Key>dicom/"), "{listing}");

    // The rotation RDS performs: a new password in the database, then in the secret. The
    // server's open connections outlive it; end them, so that only new logins remain.
    pg.psql(
        "postgres",
        &format!("ALTER ROLE {MASTER} PASSWORD '{ROTATED_PASSWORD}'"),
    );
    moto.put_secret_value(&secret_arn, &login_json(ROTATED_PASSWORD));
    pg.psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE usename = '{MASTER}'"
        ),
    );
    // Past the pool's freshness window, so that each pooled connection is checked (and the
    // dead ones replaced) before it is handed out.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let second = work.path().join("second");
    let more = Spec::new(122).write(&second).unwrap();
    let out = storescu_tls(server.dicom_tls_port, Path::new(&cert), &second);
    assert!(
        out.status.success(),
        "storescu after the rotation: {}\n{}",
        dcmtk::text(&out),
        server.log_text()
    );
    assert_eq!(
        count(&server),
        Some((written_first.len() + more.len()) as u64)
    );
    let log = server.log_text();
    assert!(
        log.contains("read it again from its secret"),
        "the server says it read the login again: {log}"
    );
    for password in [FIRST_PASSWORD, ROTATED_PASSWORD] {
        assert!(!log.contains(password), "the log holds a password");
    }

    // The command line takes its login from the secret too.
    let out = Command::new(env!("CARGO_BIN_EXE_orthweb"))
        .args(["--config"])
        .arg(&booted.config)
        .args(["user", "list", "--data-dir"])
        .arg(work.path().join("data"))
        .envs(moto.env())
        .env("ORTHWEB_S3_PATH_STYLE", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "orthweb user list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
