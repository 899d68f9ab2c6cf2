//! One server under test, its private folders, and how to look at what it stored: the index
//! rows, the blob files, the spool folder and the log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{AnyPool, Row};

use crate::common::dcmtk;
use crate::common::dicomgen::{Depth, Instance, Spec};
use crate::common::pg::PgCluster;
use crate::common::s3::{self, S3Server};
use crate::common::server::{Server, ServerConfig};
use crate::support::{assert_same_dataset, eventually};

/// Where the blobs of a server end up on disk.
enum Blobs {
    /// `<root>/abc/<key>`
    Folder(PathBuf),
    /// s3s-fs keeps `<bucket>/<prefix>/<key>` as `<root>/<key>`.
    S3(PathBuf),
}

/// One server under test, its private folders and how to look at what it stored.
pub struct Site {
    // Dropped first: the server prints its log from a temporary folder that must still exist.
    pub server: Server,
    pub work: tempfile::TempDir,
    pub data: PathBuf,
    index_url: String,
    blobs: Blobs,
    /// How the server was configured, for other `orthweb` commands on the same data.
    config: ServerConfig,
}

/// Distinct seeds for generated instances across one test binary.
static SEED: AtomicU64 = AtomicU64::new(50_000);

impl Site {
    /// SQLite + folder, the default set-up.
    pub fn local(config: ServerConfig) -> Site {
        Site::local_in(tempfile::tempdir().unwrap(), config)
    }

    /// SQLite + folder, configured by `toml` (written to the site's `orthweb.toml`).
    pub fn configured(toml: &str) -> Site {
        let work = tempfile::tempdir().unwrap();
        let path = work.path().join("orthweb.toml");
        std::fs::write(&path, toml).unwrap();
        let config = ServerConfig::default()
            .arg("--config")
            .arg(path.display().to_string());
        Site::local_in(work, config)
    }

    fn local_in(work: tempfile::TempDir, config: ServerConfig) -> Site {
        let data = work.path().join("data");
        let server = Server::start(&data, config.clone());
        Site {
            index_url: format!("sqlite://{}", data.join("index.sqlite").display()),
            blobs: Blobs::Folder(data.join("blobs")),
            work,
            data,
            server,
            config,
        }
    }

    /// PostgreSQL + S3.
    pub fn cloud(pg: &PgCluster, s3: &S3Server, db: &str, config: ServerConfig) -> Site {
        Site::cloud_through(pg, s3, db, pg.port(), config)
    }

    /// PostgreSQL + S3, the server reaching PostgreSQL through `port` on 127.0.0.1 (a relay);
    /// the site's own looks at the index go straight to PostgreSQL.
    pub fn cloud_through(
        pg: &PgCluster,
        s3: &S3Server,
        db: &str,
        port: u16,
        config: ServerConfig,
    ) -> Site {
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("data");
        let index_url = pg.create_database(db);
        let through = index_url.replace(&format!(":{}/", pg.port()), &format!(":{port}/"));
        let config = config
            .arg("--index")
            .arg(through)
            .arg("--storage")
            .arg(format!("s3://{}/{db}", s3::BUCKET))
            .env("ORTHWEB_S3_PATH_STYLE", "true")
            .envs(s3.env());
        let server = Server::start(&data, config.clone());
        Site {
            index_url,
            blobs: Blobs::S3(s3.object_path(s3::BUCKET, db)),
            work,
            data,
            server,
            config,
        }
    }

    /// Runs `orthweb ARGS…` (a subcommand and its flags) on the site's data folder, index and
    /// storage, as its server is configured.
    pub async fn orthweb(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orthweb"));
        command
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.config.args)
            .env_remove("ORTHWEB_CONFIG")
            .envs(
                self.config
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
        tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .expect("run orthweb")
    }

    pub fn port(&self) -> u16 {
        self.server.dicom_port
    }

    /// Writes a fresh study of `count` single-frame `size`×`size` instances.
    pub fn generate(&self, count: u32, size: u16) -> Vec<Instance> {
        let seed = SEED.fetch_add(1, Ordering::Relaxed);
        let mut spec = Spec::new(seed);
        spec.series.clear();
        spec.add_series("CT", count, size, size, 1, Depth::U12);
        spec.write(&self.work.path().join(format!("gen-{seed}")))
            .expect("generate instances")
    }

    /// A fresh single-frame `size`×`size` instance.
    pub fn one_of(&self, size: u16) -> Instance {
        self.generate(1, size).pop().unwrap()
    }

    /// A fresh small instance.
    pub fn one(&self) -> Instance {
        self.one_of(64)
    }

    pub async fn pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.index_url)
            .await
            .expect("test connects to the index")
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        let pool = self.pool().await;
        let n: i64 = sqlx::query(sql).fetch_one(&pool).await.unwrap().get(0);
        pool.close().await;
        n
    }

    pub async fn instance_count(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM instances").await
    }

    /// The blob key of the instance with this SOP Instance UID, if it is indexed.
    pub async fn blob_key(&self, sop_instance_uid: &str) -> Option<String> {
        let pool = self.pool().await;
        let keys: Vec<String> =
            sqlx::query("SELECT blob_key FROM instances WHERE sop_instance_uid = $1")
                .bind(sop_instance_uid)
                .fetch_all(&pool)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.get(0))
                .collect();
        pool.close().await;
        assert!(
            keys.len() <= 1,
            "{sop_instance_uid} indexed {} times",
            keys.len()
        );
        keys.into_iter().next()
    }

    /// (SOP Instance UID, blob key) of every indexed instance.
    pub async fn rows(&self) -> BTreeMap<String, String> {
        self.pairs("SELECT sop_instance_uid, blob_key FROM instances")
            .await
    }

    /// (SOP Instance UID, instance ID) of every indexed instance.
    pub async fn instance_ids(&self) -> BTreeMap<String, String> {
        self.pairs("SELECT sop_instance_uid, id FROM instances")
            .await
    }

    /// The two text columns of every row of `sql`, as a map.
    async fn pairs(&self, sql: &'static str) -> BTreeMap<String, String> {
        let pool = self.pool().await;
        let pairs = sqlx::query(sql)
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        pool.close().await;
        pairs
    }

    pub fn blob_path(&self, key: &str) -> PathBuf {
        match &self.blobs {
            Blobs::Folder(root) => root.join(&key[0..3]).join(key),
            Blobs::S3(root) => root.join(key),
        }
    }

    /// Where `orthweb verify --repair` moves the blob `key` when it is corrupt.
    pub fn quarantine_path(&self, key: &str) -> PathBuf {
        self.blob_root().join("quarantine").join(key)
    }

    fn blob_root(&self) -> &Path {
        match &self.blobs {
            Blobs::Folder(root) | Blobs::S3(root) => root,
        }
    }

    /// Names (= keys) of every blob file, quarantined ones left out.
    pub fn blob_keys(&self) -> BTreeSet<String> {
        let root = self.blob_root().to_path_buf();
        let quarantine = root.join("quarantine");
        let mut keys = BTreeSet::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if !path.is_dir() {
                    keys.insert(entry.file_name().to_string_lossy().into_owned());
                } else if path != quarantine {
                    dirs.push(path);
                }
            }
        }
        keys
    }

    pub fn spool_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.data.join("tmp"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// The server log without colour codes.
    pub fn log(&self) -> String {
        strip_ansi(&self.server.log_text())
    }

    /// Log lines that contain every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// Waits until a log line contains every one of `needles`; returns it.
    pub async fn expect_log(&self, needles: &[&str]) -> String {
        eventually(&format!("a log line with {needles:?}"), || async {
            self.log_lines(needles).into_iter().next()
        })
        .await
    }

    /// Nothing of `sop_instance_uid` was kept: no index row, every blob belongs to an indexed
    /// instance, and (once the server has cleaned up) no spool file.
    pub async fn assert_not_stored(&self, sop_instance_uid: &str) {
        assert_eq!(
            self.blob_key(sop_instance_uid).await,
            None,
            "{sop_instance_uid} must not be indexed"
        );
        self.assert_no_spool_files().await;
        self.assert_blobs_match_rows().await;
    }

    pub async fn assert_no_spool_files(&self) {
        eventually("the spool folder to be empty", || async {
            self.spool_files().is_empty().then_some(())
        })
        .await;
    }

    /// One blob per instance row and one row per blob.
    pub async fn assert_blobs_match_rows(&self) {
        let referenced: BTreeSet<String> = self.rows().await.into_values().collect();
        assert_eq!(self.blob_keys(), referenced, "blob files vs. index rows");
    }

    /// echoscu as `TESTSCU` → `called`.
    pub async fn echoscu(&self, called: &str) -> Output {
        dcmtk::echoscu("127.0.0.1", self.port(), called).await
    }

    /// storescu of `files` (folders are scanned) as `TESTSCU` → `ORTHWEB`.
    pub async fn storescu<P: AsRef<Path>>(&self, files: &[P], args: &[&str]) -> Output {
        dcmtk::storescu("127.0.0.1", self.port(), "ORTHWEB", files, args).await
    }

    /// C-ECHO with dcmtk succeeds; `when` says in what situation, for the failure message.
    pub async fn assert_echoes(&self, when: &str) {
        let echo = self.echoscu("ORTHWEB").await;
        assert!(
            echo.status.success(),
            "echoscu{when}: {}",
            dcmtk::text(&echo)
        );
    }

    /// storescu of `instance` is acknowledged, and the instance indexed with a blob that holds
    /// the data set sent.
    pub async fn assert_stores(&self, instance: &Instance) {
        let out = self.storescu(&[&instance.path], &[]).await;
        assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
        let key = self
            .blob_key(&instance.sop_instance_uid)
            .await
            .unwrap_or_else(|| panic!("{} is indexed", instance.sop_instance_uid));
        assert_same_dataset(&self.blob_path(&key), &instance.path);
    }

    /// Still serving: C-ECHO with dcmtk, and a valid store of a fresh instance is acknowledged
    /// and indexed.
    pub async fn assert_serves(&self) {
        self.assert_echoes("").await;
        self.assert_stores(&self.one()).await;
    }

    /// GET `path`, returning the HTTP status only.
    pub async fn http_status(&self, path: &str) -> u16 {
        reqwest::get(self.server.url(path))
            .await
            .expect("HTTP request")
            .status()
            .as_u16()
    }

    /// Waits until GET /readyz answers `status`.
    pub async fn wait_ready(&self, status: u16) {
        eventually(&format!("GET /readyz to answer {status}"), || async {
            (self.http_status("/readyz").await == status).then_some(())
        })
        .await;
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
