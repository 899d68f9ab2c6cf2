//! Running `orthweb user …` against a server's data folder and index, and HTTP credentials.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;

/// What a command printed and whether it succeeded.
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `orthweb user ARGS --data-dir DATA EXTRA`, with `stdin` as its standard input.
pub fn user(data: &Path, extra: &[String], args: &[&str], stdin: &str) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orthweb"))
        .arg("user")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("ORTHWEB_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the orthweb binary starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Outcome {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into(),
        stderr: String::from_utf8_lossy(&output.stderr).into(),
    }
}

/// Like [`user`], and it must succeed.
pub fn user_ok(data: &Path, extra: &[String], args: &[&str], stdin: &str) -> String {
    let outcome = user(data, extra, args, stdin);
    assert!(
        outcome.ok,
        "orthweb user {args:?} failed: {}{}",
        outcome.stdout, outcome.stderr
    );
    outcome.stdout
}

/// An `Authorization: Basic` value.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
