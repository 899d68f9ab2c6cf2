//! `S3Server`: a real S3 API (s3s + s3s-fs, SigV4 auth) served in-process on 127.0.0.1 from a temp dir.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::task::{JoinHandle, JoinSet};

pub const ACCESS_KEY: &str = "orthweb-test";
pub const SECRET_KEY: &str = "orthweb-test-secret";
pub const REGION: &str = "us-east-1";
/// Bucket created by `start()`.
pub const BUCKET: &str = "orthweb-test";

/// A running S3 endpoint. `stop()` (or drop) closes the listener and every open connection, so
/// clients see "connection refused/reset" exactly as if the bucket host went away.
pub struct S3Server {
    root: tempfile::TempDir,
    addr: SocketAddr,
    service: S3Service,
    task: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Bind 127.0.0.1:0 and serve on the current tokio runtime (panics outside one), with the
    /// fixed credentials above and the bucket [`BUCKET`] already created.
    pub fn start() -> S3Server {
        let root = tempfile::Builder::new()
            .prefix("orthweb-s3-")
            .tempdir()
            .expect("create S3 root dir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let mut b = S3ServiceBuilder::new(fs);
        // Same wiring as the s3s-fs binary: SigV4 verification against a single key pair.
        // Without set_auth s3s accepts anonymous requests, which would hide credential bugs.
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        // No set_host: only path-style requests (http://127.0.0.1:port/bucket/key) are understood.
        let service = b.build();

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind S3 listener");
        let addr = listener.local_addr().unwrap();
        let mut s = S3Server {
            root,
            addr,
            service,
            task: None,
        };
        s.spawn(listener);
        s.create_bucket(BUCKET);
        s
    }

    /// `http://127.0.0.1:port`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    pub fn bucket(&self) -> &'static str {
        BUCKET
    }

    /// Directory holding the buckets: s3s-fs stores object `key` of bucket `b` at `root/b/key`
    /// (plus `.bucket-*.metadata.json` side files in `root`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Create a bucket. s3s-fs maps a bucket to a directory, so this is just a mkdir (idempotent).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.path().join(name)).expect("create bucket dir");
    }

    /// Path of an object on disk, to assert on stored bytes without going through the API.
    pub fn object_path(&self, bucket: &str, key: &str) -> std::path::PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// Environment for a spawned server process (the AWS SDK reads these).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            // Keep the SDK from probing the EC2 metadata endpoint (slow timeouts) if it falls back.
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Stop serving: the accept loop and all connection tasks are aborted and awaited, so once this
    /// returns the port refuses connections. The stored data is kept (see `restart`).
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serve again on the same port after `stop` (the "bucket comes back" case).
    pub fn restart(&mut self) {
        if self.task.is_none() {
            let listener = std::net::TcpListener::bind(self.addr).expect("rebind S3 listener");
            self.spawn(listener);
        }
    }

    pub fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// An aws-sdk-s3 client for this server (path-style, static credentials, plain-HTTP client).
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_with(ACCESS_KEY, SECRET_KEY)
    }

    /// Same, with other credentials (e.g. to check that wrong ones are refused).
    pub fn client_with(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let creds = Credentials::new(access_key, secret_key, None, None, "orthweb-testkit");
        // aws-sdk-s3 is built without its default HTTPS client, so one must be supplied; the
        // endpoint is plain http, and build_http() avoids TLS set-up entirely.
        let http = aws_smithy_http_client::Builder::new().build_http();
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(creds)
            .force_path_style(true)
            .http_client(http)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    fn spawn(&mut self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener)
            .expect("S3Server::start needs a tokio runtime");
        let service = self.service.clone();
        self.task = Some(tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            // Connections live in this JoinSet: aborting the accept task drops it, which aborts
            // (and closes) every connection, including idle keep-alive ones held by client pools.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    res = listener.accept() => {
                        let Ok((socket, _)) = res else { continue };
                        // As S3 does: without it every GET stalls ~40 ms on a delayed ACK.
                        let _ = socket.set_nodelay(true);
                        let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                        conns.spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    // Reap finished connections so the set does not grow without bound.
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        }));
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
