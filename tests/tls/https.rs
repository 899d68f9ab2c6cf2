//! HTTPS: the self-signed certificate made at first start, TLS versions, security headers,
//! plain HTTP on the TLS port, the redirect listener, and certificate files reloaded on change
//! and on SIGHUP.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::certs::{Authority, presented};
use crate::common::dcmtk::text;
use crate::common::eventually;
use crate::common::server::{Server, ServerConfig};

fn require(tool: &str) -> bool {
    crate::common::find_in_path(tool).is_some()
        || crate::common::missing(&format!("{tool} not installed"))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// curl against the server as `https://localhost:PORT`, pinned to 127.0.0.1.
fn curl(port: u16, args: &[&str], path: &str) -> Output {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}{path}");
    let mut all = vec!["-sS", "--max-time", "20", "--resolve", &resolve];
    all.extend_from_slice(args);
    all.push(&url);
    run("curl", &all)
}

fn https_server(dir: &Path, config: ServerConfig) -> Server {
    let server = Server::start(
        dir,
        config
            .env("ORTHWEB_HTTPS", "true")
            .env("ORTHWEB_SITE_NAME", "localhost"),
    );
    assert!(server.https, "the ready line says https");
    server
}

#[tokio::test]
async fn https_with_the_self_signed_certificate() {
    if !require("curl") || !require("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = https_server(
        dir.path(),
        ServerConfig::default().env("ORTHWEB_HTTP_REDIRECT_LISTEN", "127.0.0.1:0"),
    );
    let port = server.http_port;
    let cert = dir.path().join("tls/localhost.crt");
    let ca = cert.to_str().unwrap();

    // curl --cacert with the generated certificate, and the headers every answer carries.
    let out = curl(
        port,
        &["--cacert", ca, "-D", "-", "-o", "/dev/null"],
        "/system",
    );
    assert!(out.status.success(), "curl --cacert: {}", text(&out));
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    for expected in [
        "strict-transport-security: max-age=31536000",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "frame-ancestors 'none'",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(expected), "no {expected:?} in\n{head}");
    }
    // No CORS origins are configured, so nothing varies by Origin.
    assert!(!head.contains("vary: origin"), "{head}");
    let csp = head
        .lines()
        .find(|l| l.starts_with("content-security-policy:"))
        .unwrap_or_else(|| panic!("no CSP in\n{head}"));
    assert!(
        !csp.contains("unsafe-inline") && csp.contains("script-src 'self'"),
        "{csp}"
    );

    // Without being told to trust it, curl refuses the certificate: the check is real.
    let out = curl(port, &[], "/system");
    assert_eq!(
        out.status.code(),
        Some(60),
        "curl without --cacert: {}",
        text(&out)
    );

    // TLS 1.2 and 1.3 are served; 1.0 and 1.1 are refused by the server (the client is told
    // to offer them, with OpenSSL's security level lowered so that it may).
    for version in ["--tlsv1.2 --tls-max 1.2", "--tlsv1.3"] {
        let mut args: Vec<&str> = version.split(' ').collect();
        args.extend(["--cacert", ca, "-o", "/dev/null"]);
        let out = curl(port, &args, "/system");
        assert!(out.status.success(), "curl {version}: {}", text(&out));
    }
    let connect = format!("127.0.0.1:{port}");
    for version in ["-tls1", "-tls1_1"] {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &connect, version])
            .args(["-cipher", "DEFAULT:@SECLEVEL=0", "-servername", "localhost"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let said = text(&out);
        assert!(!out.status.success(), "openssl {version} connected: {said}");
        // The client offered (wrote its hello) and the server answered with no more than an
        // alert: no ServerHello, no certificate.
        let (read, written) = handshake_bytes(&said);
        assert!(
            written > 0 && read < 64,
            "openssl {version}: the server did not refuse the hello: {said}"
        );
    }

    // Plain HTTP on the TLS port fails cleanly; the server goes on serving.
    let out = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "20",
            &format!("http://127.0.0.1:{port}/system"),
        ],
    );
    assert!(
        !out.status.success(),
        "plain HTTP on the TLS port: {}",
        text(&out)
    );
    let out = curl(port, &["--cacert", ca, "-f", "-o", "/dev/null"], "/system");
    assert!(out.status.success(), "after a plain client: {}", text(&out));
    assert!(
        server.log_text().contains("TLS handshake failed"),
        "the refused handshakes are logged"
    );

    // The redirect listener sends plain HTTP to the same path over HTTPS, on the site name.
    assert_ne!(
        server.redirect_port, 0,
        "the ready line names the redirect port"
    );
    let out = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            &format!("http://127.0.0.1:{}/studies?limit=2", server.redirect_port),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("308 https://localhost:{port}/studies?limit=2"),
        "{}",
        text(&out)
    );

    // The certificate is kept: a restart presents the same one.
    let first = std::fs::read(&cert).unwrap();
    drop(server);
    let server = https_server(dir.path(), ServerConfig::default());
    assert_eq!(std::fs::read(&cert).unwrap(), first);
    let out = curl(
        server.http_port,
        &["--cacert", ca, "-f", "-o", "/dev/null"],
        "/system",
    );
    assert!(out.status.success(), "after a restart: {}", text(&out));

    // Over HTTPS the UI's session cookie is Secure (and HttpOnly, SameSite=Strict).
    let password = "a long enough password";
    let password_file = dir.path().join("admin-password");
    std::fs::write(&password_file, password).unwrap();
    let added = Command::new(env!("CARGO_BIN_EXE_orthweb"))
        .args(["user", "add", "admin", "--role", "admin", "--password-file"])
        .arg(&password_file)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("ORTHWEB_CONFIG")
        .output()
        .unwrap();
    assert!(added.status.success(), "orthweb user add: {}", text(&added));
    let login = serde_json::json!({"Username": "admin", "Password": password}).to_string();
    let out = curl(
        server.http_port,
        &[
            "--cacert",
            ca,
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "--data",
            &login,
        ],
        "/auth/login",
    );
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie: orthweb_session="))
        .unwrap_or_else(|| panic!("no session cookie in\n{head}"));
    for flag in ["; secure", "; httponly", "; samesite=strict"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
}

/// The byte counts of openssl's "SSL handshake has read R bytes and written W bytes".
fn handshake_bytes(said: &str) -> (u64, u64) {
    let line = said
        .lines()
        .find(|l| l.starts_with("SSL handshake has read"))
        .unwrap_or_else(|| panic!("no handshake summary in {said}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Replaces `to` with `from`, atomically and keeping `to`'s modification time, so that only
/// a SIGHUP can tell the server.
fn swap_quietly(from: &Path, to: &Path) {
    let modified = std::fs::metadata(to).unwrap().modified().unwrap();
    let staged = to.with_extension("staged");
    std::fs::copy(from, &staged).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    std::fs::rename(&staged, to).unwrap();
}

#[tokio::test]
async fn certificate_files_are_reloaded_when_they_change_and_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = Authority::new(&pki, "Test CA");
    let first = ca.issue(&pki, "first", &["localhost"], false);
    let second = ca.issue(&pki, "second", &["localhost"], false);
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let (cert, key) = (live.join("site.crt"), live.join("site.key"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();

    let server = https_server(
        &dir.path().join("data"),
        ServerConfig::default()
            .env("ORTHWEB_TLS_CERT_FILE", cert.to_str().unwrap())
            .env("ORTHWEB_TLS_KEY_FILE", key.to_str().unwrap()),
    );
    let port = server.http_port;
    let roots = [ca.pem.cert.as_path()];
    assert_eq!(presented(port, &roots).await.unwrap(), first.der());

    // A renewal writes new files: the server picks them up without a restart.
    std::fs::copy(&second.key, &key).unwrap();
    std::fs::copy(&second.cert, &cert).unwrap();
    let wanted = second.der();
    eventually("the changed files to be served", || async {
        (presented(port, &roots).await.ok()? == wanted).then_some(())
    })
    .await;

    // Files that do not load are refused; the certificate in use stays.
    let refusals = || {
        server
            .log_text()
            .matches("TLS certificate not reloaded")
            .count()
    };
    let before = refusals();
    std::fs::write(&cert, "not a certificate").unwrap();
    eventually("the refused reload to be logged", || async {
        (refusals() > before).then_some(())
    })
    .await;
    assert_eq!(presented(port, &roots).await.unwrap(), second.der());

    // Files swapped without a new modification time: SIGHUP makes the server read them.
    std::fs::copy(&second.cert, &cert).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    swap_quietly(&first.key, &key);
    swap_quietly(&first.cert, &cert);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        presented(port, &roots).await.unwrap(),
        second.der(),
        "unchanged modification times alone trigger no reload"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let wanted = first.der();
    eventually("SIGHUP to reload the files", || async {
        (presented(port, &roots).await.ok()? == wanted).then_some(())
    })
    .await;
    assert!(
        server.log_text().contains("reason=\"SIGHUP\""),
        "{}",
        server.log_text()
    );
}

#[tokio::test]
async fn half_a_certificate_setting_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orthweb"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--dicom-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("ORTHWEB_HTTPS", "true")
        .env("ORTHWEB_TLS_CERT_FILE", "/nonexistent/site.crt")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("tls_cert_file and tls_key_file go together"),
        "{said}"
    );
}
