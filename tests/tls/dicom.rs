//! DICOM TLS with dcmtk: echoscu and storescu under each BCP 195 profile on the TLS port,
//! mutual TLS against a CA bundle, and clients on the wrong port.

use std::path::Path;
use std::process::{Command, Output};

use crate::certs::Authority;
use crate::common::dcmtk::{self, CALLING_AET};
use crate::common::dicomgen::Spec;
use crate::common::eventually;
use crate::common::scu::{self, Scu, blocking};
use crate::common::server::{Server, ServerConfig};

const AET: &str = "ORTHWEB";

/// echoscu or storescu with `tls` options (empty for plain TCP), as `TESTSCU`.
fn scu(tool: &str, port: u16, tls: &[&str], files: &[&Path]) -> Output {
    Command::new(tool)
        .args([
            "-aet",
            CALLING_AET,
            "-aec",
            AET,
            "-to",
            "10",
            "-ta",
            "10",
            "-td",
            "30",
        ])
        .args(tls)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(files)
        .env("TCP_NODELAY", "1")
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn echo(port: u16, tls: &[&str]) -> Output {
    scu("echoscu", port, tls, &[])
}

fn assert_ok(what: &str, out: &Output) {
    assert!(out.status.success(), "{what}: {}", dcmtk::text(out));
}

fn assert_fails(what: &str, out: &Output) {
    assert!(
        !out.status.success(),
        "{what} succeeded: {}",
        dcmtk::text(out)
    );
}

/// A server in `dir` with the DICOM TLS listener on (on a free port) beside the plain one.
fn with_dicom_tls(dir: &Path, config: ServerConfig) -> Server {
    Server::start(
        &dir.join("data"),
        config
            .env("ORTHWEB_DICOM_TLS", "true")
            .env("ORTHWEB_DICOM_TLS_LISTEN", "127.0.0.1:0"),
    )
}

async fn instances(server: &Server) -> u64 {
    server.get_json("/statistics").await["CountInstances"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_and_store_over_dicom_tls_beside_plain_dicom() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = with_dicom_tls(dir.path(), ServerConfig::default());
    let (plain, tls) = (server.dicom_port, server.dicom_tls_port);
    assert!(plain != 0 && tls != 0, "both DICOM listeners are on");
    // The self-signed certificate, which the peers are told to trust.
    let cert = server.data_dir.join("tls/localhost.crt");
    let trust = ["+tla", "+cf", cert.to_str().unwrap()];

    // Each BCP 195 profile dcmtk has (non-downgrading, plain, extended).
    for profile in ["+py", "+px", "+pz"] {
        let mut args = trust.to_vec();
        args.push(profile);
        assert_ok(
            &format!("echoscu {profile} on the TLS port"),
            &echo(tls, &args),
        );
    }
    // Not trusting the certificate: dcmtk refuses it, so verification is in effect.
    assert_fails(
        "echoscu +tla without the certificate",
        &echo(tls, &["+tla"]),
    );

    let files = dir.path().join("study");
    let written = Spec::new(71).write(&files).unwrap();
    let paths: Vec<&Path> = written.iter().map(|i| i.path.as_path()).collect();
    assert_ok("storescu +tla", &scu("storescu", tls, &trust, &paths));
    assert_eq!(instances(&server).await, written.len() as u64);

    // Wrong port for the client: plain on TLS, TLS on plain. Both fail; both listeners go on.
    assert_fails("plain echoscu on the TLS port", &echo(tls, &[]));
    assert_fails("echoscu +tla on the plain port", &echo(plain, &trust));
    assert_ok("plain echoscu afterwards", &echo(plain, &[]));
    assert_ok("echoscu +tla afterwards", &echo(tls, &trust));
    let log = server.log_text();
    assert!(
        log.contains("association not established"),
        "the failed associations are logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    if !dcmtk::require_tool("echoscu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = Authority::new(&pki, "Hospital CA");
    let server_cert = ca.issue(&pki, "pacs", &["localhost", "127.0.0.1"], false);
    let modality = ca.issue(&pki, "modality", &["ct1.hospital.example"], true);
    let rogue_ca = Authority::new(&pki, "Rogue CA");
    let rogue = rogue_ca.issue(&pki, "rogue", &["ct1.hospital.example"], true);

    let server = with_dicom_tls(
        dir.path(),
        ServerConfig::default()
            .env("ORTHWEB_DICOM_PLAIN", "false")
            .env("ORTHWEB_DICOM_TLS_CLIENT_CA", ca.pem.cert.to_str().unwrap())
            .env("ORTHWEB_TLS_CERT_FILE", server_cert.cert.to_str().unwrap())
            .env("ORTHWEB_TLS_KEY_FILE", server_cert.key.to_str().unwrap()),
    );
    assert_eq!(server.dicom_port, 0, "plain DICOM is off");
    let port = server.dicom_tls_port;
    let trust_server = ca.pem.cert.to_str().unwrap();
    let with = |pem: &crate::certs::Pem| {
        echo(
            port,
            &[
                "+tls",
                pem.key.to_str().unwrap(),
                pem.cert.to_str().unwrap(),
                "-pw",
                "+cf",
                trust_server,
            ],
        )
    };

    assert_ok("echoscu with the modality's certificate", &with(&modality));
    assert_fails(
        "echoscu without a client certificate",
        &echo(port, &["+tla", "+cf", trust_server]),
    );
    assert_fails("echoscu with a certificate of another CA", &with(&rogue));
    assert_ok("the modality again", &with(&modality));
}

/// A full server answers a peer on the TLS port as it answers a plain one: an A-ASSOCIATE-RJ
/// that says why (transient, local limit exceeded), sent inside the TLS session rather than
/// a dropped connection; once the slot frees, the peer is served.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_server_rejects_tls_associations_with_the_reason() {
    if !dcmtk::require_tool("echoscu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = with_dicom_tls(
        dir.path(),
        ServerConfig::default().env("ORTHWEB_MAX_ASSOCIATIONS", "1"),
    );
    let cert = server.data_dir.join("tls/localhost.crt");
    let trust = ["+tla", "+cf", cert.to_str().unwrap()];
    let tls = server.dicom_tls_port;

    // The one slot, taken by a plain association (the limit covers both listeners).
    let plain = server.dicom_port;
    let contexts: &[(&str, &[&str])] = &[(scu::VERIFICATION, &[scu::IMPLICIT_LE])];
    let held = blocking(move || Scu::connect(plain, CALLING_AET, AET, contexts))
        .await
        .expect("the first association fits");

    let refused = echo(tls, &trust);
    let text = dcmtk::text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("Rejected") && text.contains("Local Limit Exceeded"),
        "echoscu on the TLS port is told why: {text}"
    );

    blocking(move || held.release().unwrap()).await;
    eventually("an echo over TLS once the slot is free", || async {
        echo(tls, &trust).status.success().then_some(())
    })
    .await;
}

/// Calling a DICOM TLS peer: a second server, reachable only over TLS and asking for a client
/// certificate, receives a C-MOVE's instances from the first, which checks the peer's
/// certificate against `dicom_tls_peer_ca` and the host it calls (a name the certificate
/// does not hold fails) and presents its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_move_to_a_tls_peer_verifies_it_and_presents_our_certificate() {
    if !dcmtk::require_tool("movescu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = Authority::new(&pki, "Hospital CA");
    let b_cert = ca.issue(&pki, "archive-b", &["localhost"], false);
    let a_cert = ca.issue(&pki, "pacs-a", &["pacs-a.hospital.example"], true);
    let b = with_dicom_tls(
        &dir.path().join("b"),
        ServerConfig::default()
            .env("ORTHWEB_AET", "ARCHIVEB")
            .env("ORTHWEB_DICOM_PLAIN", "false")
            .env("ORTHWEB_DICOM_TLS_CLIENT_CA", ca.pem.cert.to_str().unwrap())
            .env("ORTHWEB_TLS_CERT_FILE", b_cert.cert.to_str().unwrap())
            .env("ORTHWEB_TLS_KEY_FILE", b_cert.key.to_str().unwrap()),
    );
    let peer = |name: &str, host: &str| {
        format!(
            "{{name=\"{name}\", aet=\"ARCHIVEB\", host=\"{host}\", port={}, tls=true}}",
            b.dicom_tls_port
        )
    };
    let a = Server::start(
        &dir.path().join("a/data"),
        ServerConfig::default()
            .env("ORTHWEB_DICOM_TLS_PEER_CA", ca.pem.cert.to_str().unwrap())
            .env("ORTHWEB_TLS_CERT_FILE", a_cert.cert.to_str().unwrap())
            .env("ORTHWEB_TLS_KEY_FILE", a_cert.key.to_str().unwrap())
            .env(
                "ORTHWEB_MODALITIES",
                format!(
                    "[{}, {}, {{aet=\"{CALLING_AET}\", move=true}}]",
                    peer("b", "localhost"),
                    peer("b-by-address", "127.0.0.1")
                ),
            ),
    );
    let files = dir.path().join("study");
    let written = Spec::new(72).write(&files).unwrap();
    let paths: Vec<&Path> = written.iter().map(|i| i.path.as_path()).collect();
    let stored = Command::new("storescu")
        .args(["-aet", CALLING_AET, "-aec", AET, "127.0.0.1"])
        .arg(a.dicom_port.to_string())
        .args(&paths)
        .output()
        .unwrap();
    assert_ok("storescu to A", &stored);

    let client = reqwest::Client::new();
    let echo = |name: &str| {
        client
            .post(a.url(&format!("/modalities/{name}/echo")))
            .send()
    };
    assert_eq!(
        echo("b").await.unwrap().status(),
        200,
        "C-ECHO to B over TLS"
    );
    let refused = echo("b-by-address").await.unwrap();
    assert_eq!(
        refused.status(),
        502,
        "B's certificate does not name 127.0.0.1"
    );
    let body = refused.text().await.unwrap();
    assert!(body.to_lowercase().contains("certificate"), "{body}");

    let moved = dcmtk::movescu(
        a.dicom_port,
        CALLING_AET,
        dcmtk::Model::StudyRoot,
        "ARCHIVEB",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={}", written[0].study_uid),
        ],
    )
    .await;
    assert!(moved.status.contains("Success"), "{}", moved.output);
    assert_eq!(moved.completed, written.len() as u32, "{}", moved.output);
    assert_eq!(instances(&b).await, written.len() as u64);
}
