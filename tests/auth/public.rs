//! Secure by default: on an address other hosts can reach, with no user, the server creates
//! user `admin` with a random password, printed once on standard error, and never runs open.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::Method;

use crate::cli::basic;
use crate::support::Api;

struct Running {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `orthweb serve` on 0.0.0.0 (port 0) and waits for its ready line.
fn start(data: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orthweb"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args([
            "--dicom-listen",
            "127.0.0.1:0",
            "--http-listen",
            "0.0.0.0:0",
        ])
        .env_remove("ORTHWEB_CONFIG")
        .env("ORTHWEB_AUTH_FAIL_DELAY_MS", "20")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the orthweb binary starts");
    let (lines, stderr) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let (ready_tx, ready) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("orthweb ready:") {
                let _ = ready_tx.send(line);
            }
        }
    });
    let line = ready
        .recv_timeout(Duration::from_secs(60))
        .expect("orthweb becomes ready");
    let http = line
        .split_whitespace()
        .find_map(|part| part.strip_prefix("http="))
        .expect("the ready line names the HTTP address");
    let port = http.rsplit(':').next().unwrap().parse().unwrap();
    Running {
        child,
        port,
        stderr,
    }
}

/// Everything the server wrote on standard error so far.
fn stderr_so_far(running: &Running) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(200));
    running.stderr.try_iter().collect()
}

pub async fn run(work: &Path) {
    let data = work.join("data");
    let server = start(&data);
    let lines = stderr_so_far(&server);
    let marker = "with password: ";
    let printed: Vec<&String> = lines.iter().filter(|l| l.contains(marker)).collect();
    assert_eq!(printed.len(), 1, "one password line on stderr: {lines:#?}");
    let password = printed[0].split(marker).nth(1).unwrap().trim().to_string();
    assert!(password.len() >= 20, "a long random password: {password:?}");
    // The log says an admin was made, without the password.
    let logged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("created user \"admin\"") && !l.contains(marker))
        .collect();
    assert!(!logged.is_empty(), "{lines:#?}");
    assert!(lines.iter().filter(|l| l.contains(&password)).count() == 1);

    let api = Api::new(format!("http://127.0.0.1:{}", server.port));
    api.get("/statistics").await.assert_error(401);
    let admin = basic("admin", &password);
    let users = api
        .request(Method::GET, "/users", &[("authorization", &admin)], None)
        .await
        .ok_json();
    assert_eq!(users[0]["Name"], "admin");
    assert_eq!(users[0]["Role"], "admin");
    for guess in ["admin", "password", "orthweb", "changeme", ""] {
        api.request(
            Method::GET,
            "/statistics",
            &[("authorization", &basic("admin", guess))],
            None,
        )
        .await
        .assert_error(401);
    }
    // Stopped (SIGTERM) right after a request, the server still writes its audit event.
    let mut server = server;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(server.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "a clean stop: {status}");
    drop(server);

    // Started again, the admin exists: no new password.
    let again = start(&data);
    let lines = stderr_so_far(&again);
    assert!(!lines.iter().any(|l| l.contains(marker)), "{lines:#?}");
    let api = Api::new(format!("http://127.0.0.1:{}", again.port));
    api.request(
        Method::GET,
        "/statistics",
        &[("authorization", &admin)],
        None,
    )
    .await
    .assert_status(200);
    let page = api
        .request(
            Method::GET,
            "/audit?action=sign-in-failed",
            &[("authorization", &admin)],
            None,
        )
        .await
        .ok_json();
    let failed = page["Events"].as_array().unwrap();
    assert_eq!(
        failed.len(),
        5,
        "every failed guess, the last one too: {page}"
    );
    assert!(
        failed
            .iter()
            .all(|e| e["User"] == "admin" && e["Client"] == "127.0.0.1")
    );
}
