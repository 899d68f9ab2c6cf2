//! `MotoServer`: the moto AWS emulator (PyPI `moto[server]`) on 127.0.0.1 for one test, killed
//! on drop, with a small blocking client for its APIs (requests carry a dummy SigV4 header:
//! moto routes by the credential scope and checks no signature).
//!
//! Every account is 123456789012, every key pair works; [`MotoServer::env`] gives the
//! environment that points an AWS SDK or CLI at it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{find_in_path, missing};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";
pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";

/// moto evaluates bucket policies without their conditions, so the usual "deny anything not
/// over TLS" statement would refuse every request. Started through this launcher, moto stands
/// for AWS's endpoints, which only speak TLS: such a statement never matches. Nothing else
/// changes.
const TLS_ONLY_LAUNCHER: &str = r#"
import json, sys
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3 import models as s3_models

def _denies_plain_http_only(statement):
    condition = statement.get("Condition") or {}
    value = (condition.get("Bool") or {}).get("aws:SecureTransport")
    return statement.get("Effect") == "Deny" and value in ("false", False, ["false"])

def get_permission(self, action, resource):
    if self.policy is None:
        return PermissionResult.NEUTRAL
    document = json.loads(self.policy.decode())
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    document["Statement"] = [s for s in statements if not _denies_plain_http_only(s)]
    if not document["Statement"]:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps(document)).is_action_permitted(action, resource)

s3_models.FakeBucket.get_permission = get_permission

from moto.server import main
main(sys.argv[1:])
"#;

/// A running moto server. Dropping it kills the process (its state lives in memory only).
pub struct MotoServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl MotoServer {
    /// `moto_server -H 127.0.0.1 -p PORT`, as installed from PyPI. `None` (after a skip line)
    /// when moto is not installed; panics instead under `CI=true`.
    pub fn start() -> Option<MotoServer> {
        let Some(exe) = find_in_path("moto_server") else {
            missing("moto_server not installed (pip install 'moto[server]')");
            return None;
        };
        Some(Self::spawn(|port| {
            let mut cmd = Command::new(&exe);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            cmd
        }))
    }

    /// Like [`start`](Self::start), through a launcher that makes bucket policies denying
    /// non-TLS requests behave as on AWS (see `TLS_ONLY_LAUNCHER`): for applying a
    /// configuration that has such policies. Runs moto's own Python (the interpreter of
    /// `moto_server`'s `#!` line, else `python3`).
    pub fn start_tls_only_policies() -> Option<MotoServer> {
        let Some(exe) = find_in_path("moto_server") else {
            missing("moto_server not installed (pip install 'moto[server]')");
            return None;
        };
        let python = python_of(&exe);
        Some(Self::spawn(|port| {
            let mut cmd = Command::new(&python);
            cmd.args(["-c", TLS_ONLY_LAUNCHER, "-H", "127.0.0.1", "-p"])
                .arg(port.to_string());
            cmd
        }))
    }

    fn spawn(command: impl Fn(u16) -> Command) -> MotoServer {
        // The port is picked by binding :0 and releasing it; another process may take it
        // first, hence the retries.
        for attempt in 0..4 {
            let dir = tempfile::Builder::new()
                .prefix("orthweb-moto-")
                .tempdir()
                .expect("create a temp dir for moto");
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
            let child = command(port)
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                // The emulator needs no real credentials, and must not read any.
                .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                .env("AWS_DEFAULT_REGION", REGION)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start moto: {e}"));
            let mut server = MotoServer { child, port, dir };
            match server.wait_ready() {
                Ok(()) => return server,
                // Dropping `server` kills the process.
                Err(why) if attempt < 3 && why.contains("in use") => continue,
                Err(why) => panic!("moto did not start on port {port}: {why}"),
            }
        }
        unreachable!()
    }

    /// Polls until moto answers an HTTP request, or the process dies, or a minute passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", self.log_text()));
            }
            if let Ok((200, _)) = self.request("GET", "s3", "/", &[], b"") {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("no answer after 60 s:\n{}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The environment that points an AWS SDK or CLI at this emulator, with its dummy
    /// credentials and region, and no instance metadata lookups.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// What moto printed (its request log and any traceback).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// A Query-protocol call (EC2, RDS, IAM, ELBv2, Auto Scaling…): form parameters in, XML out.
    /// Panics unless the answer is 200.
    pub fn query(&self, service: &str, params: &[(&str, &str)]) -> String {
        let body = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        self.expect_ok("POST", service, "/", &headers, body.as_bytes())
    }

    /// A JSON-protocol call (KMS, Secrets Manager, CloudWatch Logs, SSM…): `target` is the
    /// `X-Amz-Target` (e.g. `secretsmanager.GetSecretValue`). Panics unless the answer is 200.
    pub fn json(&self, service: &str, target: &str, body: &serde_json::Value) -> serde_json::Value {
        let headers = [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", target),
        ];
        let text = self.expect_ok("POST", service, "/", &headers, body.to_string().as_bytes());
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{target}: not JSON ({e}): {text}"))
    }

    /// An S3 REST call, path-style (`/BUCKET?versioning`). Returns the status and the body.
    pub fn s3(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        self.request(method, "s3", path, &[], body)
            .unwrap_or_else(|e| panic!("S3 {method} {path}: {e}"))
    }

    /// Creates a Secrets Manager secret holding `value`; returns its ARN.
    pub fn create_secret(&self, name: &str, value: &str) -> String {
        let answer = self.json(
            "secretsmanager",
            "secretsmanager.CreateSecret",
            &serde_json::json!({ "Name": name, "SecretString": value }),
        );
        answer["ARN"]
            .as_str()
            .expect("CreateSecret answers an ARN")
            .to_string()
    }

    /// Stores a new current value of a secret (what a rotation does).
    pub fn put_secret_value(&self, secret_id: &str, value: &str) {
        self.json(
            "secretsmanager",
            "secretsmanager.PutSecretValue",
            &serde_json::json!({ "SecretId": secret_id, "SecretString": value }),
        );
    }

    /// The current value of a secret.
    pub fn secret_value(&self, secret_id: &str) -> String {
        let answer = self.json(
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            &serde_json::json!({ "SecretId": secret_id }),
        );
        answer["SecretString"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Creates an S3 bucket.
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.s3("PUT", &format!("/{bucket}"), b"");
        assert_eq!(status, 200, "CreateBucket {bucket}: {body}");
    }

    fn expect_ok(
        &self,
        method: &str,
        service: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> String {
        let (status, text) = self
            .request(method, service, path, headers, body)
            .unwrap_or_else(|e| panic!("{service} {method} {path}: {e}"));
        assert_eq!(status, 200, "{service} {method} {path}: {text}");
        text
    }

    /// One HTTP/1.1 request on a fresh connection.
    fn request(
        &self,
        method: &str,
        service: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
             Content-Length: {len}\r\nX-Amz-Date: 20240101T000000Z\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240101/{REGION}/{service}/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=0\r\n",
            port = self.port,
            len = body.len(),
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .map_err(|e| e.to_string())?;
        stream.write_all(body).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        parse_response(&raw)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body of an HTTP/1.1 response read to its end (plain or chunked).
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header in the answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body)?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn unchunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The Python that runs `moto_server`: its `#!` interpreter when that is a Python (a pip
/// install), else `python3` (a pyenv shim or similar wrapper).
fn python_of(moto_server: &std::path::Path) -> PathBuf {
    let first_line = std::fs::read(moto_server)
        .ok()
        .and_then(|bytes| {
            let line = bytes.split(|b| *b == b'\n').next()?.to_vec();
            String::from_utf8(line).ok()
        })
        .unwrap_or_default();
    match first_line.strip_prefix("#!") {
        Some(interpreter) if interpreter.contains("python") && !interpreter.contains(' ') => {
            PathBuf::from(interpreter.trim())
        }
        _ => PathBuf::from("python3"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
