//! The index on PostgreSQL over TLS with the server's certificate checked
//! (`sslmode=verify-full`, as RDS should be reached), the password from a file.

use std::path::Path;
use std::process::Command;

use crate::certs::Authority;
use crate::common::dcmtk;
use crate::common::dicomgen::Spec;
use crate::common::pg::{PASSWORD, PgCluster, USER};
use crate::common::server::{Server, ServerConfig};

/// `orthweb migrate` against `url` with the password file; its exit status and stderr.
fn migrate(data: &Path, url: &str, password_file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orthweb"))
        .args(["migrate", "--data-dir"])
        .arg(data)
        .env("ORTHWEB_INDEX_URL", url)
        .env("ORTHWEB_INDEX_PASSWORD_FILE", password_file)
        .env_remove("ORTHWEB_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_index_over_tls_with_the_certificate_verified() {
    let Some(mut pg) = tokio::task::spawn_blocking(PgCluster::start).await.unwrap() else {
        return;
    };
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = Authority::new(&pki, "Database CA");
    let db_cert = ca.issue(&pki, "db", &["localhost"], false);
    pg.require_tls(&db_cert.cert, &db_cert.key);
    pg.create_database("tlsindex");
    let password_file = dir.path().join("db-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let url_with = |host: &str, root: &Path| {
        format!(
            "postgres://{USER}@{host}:{}/tlsindex?sslmode=verify-full&sslrootcert={}",
            pg.port(),
            root.display()
        )
    };

    // A certificate from another CA, or one for another name: refused, and said clearly.
    let rogue = Authority::new(&pki, "Rogue CA");
    let data = dir.path().join("data");
    for (why, url) in [
        ("an unknown CA", url_with("localhost", &rogue.pem.cert)),
        (
            "a certificate for another name",
            url_with("127.0.0.1", &ca.pem.cert),
        ),
    ] {
        let (ok, said) = migrate(&data, &url, &password_file);
        assert!(!ok, "{why}: migrate succeeded");
        assert!(
            said.contains("cannot open the index") && said.to_lowercase().contains("certificate"),
            "{why}: {said}"
        );
        assert!(
            !said.contains(PASSWORD),
            "{why}: the password is shown: {said}"
        );
    }

    let url = url_with("localhost", &ca.pem.cert);
    let server = Server::start(
        &data,
        ServerConfig::default().env("ORTHWEB_INDEX_URL", &url).env(
            "ORTHWEB_INDEX_PASSWORD_FILE",
            password_file.to_str().unwrap(),
        ),
    );
    let files = dir.path().join("study");
    let written = Spec::new(91).write(&files).unwrap();
    let out = dcmtk::storescu("127.0.0.1", server.dicom_port, "ORTHWEB", &[&files], &[]).await;
    assert!(out.status.success(), "{}", dcmtk::text(&out));
    let statistics = server.get_json("/statistics").await;
    assert_eq!(statistics["CountInstances"], written.len());

    // Every connection of the server's pool is encrypted (pg_hba would refuse others anyway).
    let connections = pg.psql(
        "tlsindex",
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = 'tlsindex' AND a.pid <> pg_backend_pid()",
    );
    let counts: Vec<u32> = connections
        .trim()
        .split('|')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(counts[0] >= 1 && counts[1] == 0, "TLS, plain: {counts:?}");

    let system = server.get_json("/system").await.to_string();
    assert!(
        !system.contains(PASSWORD),
        "/system shows the password: {system}"
    );
    // The server's log is searched for the password when `server` is dropped.
}
