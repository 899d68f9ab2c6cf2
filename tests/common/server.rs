//! Runs the real `orthweb` binary for a test: port 0 for both listeners, the real ports read
//! from its ready line, its log kept in a file shown when a test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Server {
    child: Option<Child>,
    /// 0 when the plain DICOM listener is off.
    pub dicom_port: u16,
    /// 0 when DICOM TLS is off.
    pub dicom_tls_port: u16,
    pub http_port: u16,
    /// Whether the HTTP listener speaks HTTPS.
    pub https: bool,
    /// 0 when there is no HTTP→HTTPS redirect listener.
    pub redirect_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// How to start a server: extra flags and environment on top of a private data folder.
#[derive(Clone, Default)]
pub struct ServerConfig {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl ServerConfig {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs(mut self, pairs: Vec<(String, String)>) -> Self {
        self.env.extend(pairs);
        self
    }
}

impl Server {
    /// Starts a server whose data lives in `data_dir`.
    pub fn start(data_dir: &Path, config: ServerConfig) -> Server {
        let mut server = Server {
            child: None,
            dicom_port: 0,
            dicom_tls_port: 0,
            http_port: 0,
            https: false,
            redirect_port: 0,
            data_dir: data_dir.to_path_buf(),
            log: data_dir.join("server.log"),
            args: config.args,
            env: config.env,
        };
        server.spawn(0, 0);
        server
    }

    /// Starts again after a stop or kill, on the same ports and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart needs a stopped server");
        let (dicom, http) = (self.dicom_port, self.http_port);
        self.spawn(dicom, http);
    }

    fn spawn(&mut self, dicom_port: u16, http_port: u16) {
        std::fs::create_dir_all(&self.data_dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_orthweb"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--dicom-listen")
            .arg(format!("127.0.0.1:{dicom_port}"))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{http_port}"))
            .args(&self.args)
            .env_remove("ORTHWEB_CONFIG")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().expect("the orthweb binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("orthweb ready:") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("orthweb did not become ready; log:\n{}", self.log_text());
            }
        };
        self.dicom_port = port_of(&line, "dicom=").unwrap_or(0);
        self.dicom_tls_port = port_of(&line, "dicom-tls=").unwrap_or(0);
        self.http_port = port_of(&line, "http=").expect("the ready line names the HTTP port");
        self.https = line.split_whitespace().any(|w| w == "https");
        self.redirect_port = port_of(&line, "redirect=").unwrap_or(0);
        self.child = Some(child);
    }

    /// `kill -9`: no chance to clean up or finish anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// Peak resident memory of the server so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.http_port, path)
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = reqwest::get(self.url(path)).await.expect("HTTP request");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("JSON body")
    }
}

/// The secrets the test kit gives servers: the PostgreSQL password and the S3 secret key.
pub const SECRETS: [&str; 2] = [super::pg::PASSWORD, super::s3::SECRET_KEY];

/// Which of [`SECRETS`] appear in `log`.
pub fn leaked_secrets(log: &str) -> Vec<&'static str> {
    SECRETS.into_iter().filter(|s| log.contains(s)).collect()
}

impl Drop for Server {
    /// Stops the server, and fails the test if its log holds a secret: every server of every
    /// test run has its log searched, whatever the test was about.
    fn drop(&mut self) {
        self.kill9();
        let leaked = leaked_secrets(&self.log_text());
        if !leaked.is_empty() && !std::thread::panicking() {
            panic!(
                "the server log {} holds secrets: {leaked:?}",
                self.log.display()
            );
        }
        if std::thread::panicking() {
            eprintln!(
                "--- orthweb log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// The port of `key=host:port` in the ready line, if the line has that key.
fn port_of(line: &str, key: &str) -> Option<u16> {
    let addr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key))?;
    let port = addr.rsplit(':').next()?.parse().expect("a port number");
    Some(port)
}
