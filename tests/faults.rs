//! Faults: malformed and unexpected DIMSE traffic, refused associations, garbage on the port,
//! aborted associations, the database or the bucket going away, and `kill -9` in the middle of a
//! send. Each test checks the DICOM answer, that nothing was half-stored (no index row, no blob,
//! no spool file), that the log says why, and that the server keeps serving.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::dcmtk;
use common::dicomgen::{self, Depth, Instance, Spec};
use common::pg::PgCluster;
use common::s3::{self, S3Server};
use common::scu::{self, Scu, blocking};
use common::server::{Server, ServerConfig};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use sqlx::{AnyPool, Row};

const SUCCESS: u16 = 0x0000;
const DATA_SET_MISMATCH: u16 = 0xA900;
const CANNOT_UNDERSTAND: u16 = 0xC000;
const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
const UNRECOGNIZED_OPERATION: u16 = 0x0211;

/// Long enough for a loaded 2-core machine; polls end as soon as the condition holds.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Where the blobs of a server end up on disk.
enum Blobs {
    /// `<root>/ab/cd/<key>`
    Folder(PathBuf),
    /// s3s-fs keeps `<bucket>/<prefix>/<key>` as `<root>/<key>`.
    S3(PathBuf),
}

/// One server under test, its private folders and how to look at what it stored.
struct Site {
    // Dropped first: the server prints its log from a temporary folder that must still exist.
    server: Server,
    work: tempfile::TempDir,
    data: PathBuf,
    index_url: String,
    blobs: Blobs,
}

/// Distinct seeds for generated instances across one test binary.
static SEED: AtomicU64 = AtomicU64::new(50_000);

impl Site {
    /// SQLite + folder, the default set-up.
    fn local(config: ServerConfig) -> Site {
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("data");
        let server = Server::start(&data, config);
        Site {
            index_url: format!("sqlite://{}", data.join("index.sqlite").display()),
            blobs: Blobs::Folder(data.join("blobs")),
            work,
            data,
            server,
        }
    }

    /// PostgreSQL + S3.
    fn cloud(pg: &PgCluster, s3: &S3Server, db: &str, config: ServerConfig) -> Site {
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("data");
        let index_url = pg.create_database(db);
        let config = config
            .arg("--index")
            .arg(index_url.clone())
            .arg("--storage")
            .arg(format!("s3://{}/{db}", s3::BUCKET))
            .env("ORTHWEB_S3_PATH_STYLE", "true")
            .envs(s3.env());
        let server = Server::start(&data, config);
        Site {
            index_url,
            blobs: Blobs::S3(s3.object_path(s3::BUCKET, db)),
            work,
            data,
            server,
        }
    }

    fn port(&self) -> u16 {
        self.server.dicom_port
    }

    /// Writes a fresh study of `count` single-frame `size`×`size` instances.
    fn generate(&self, count: u32, size: u16) -> Vec<Instance> {
        let seed = SEED.fetch_add(1, Ordering::Relaxed);
        let mut spec = Spec::new(seed);
        spec.series.clear();
        spec.add_series("CT", count, size, size, 1, Depth::U12);
        spec.write(&self.work.path().join(format!("gen-{seed}")))
            .expect("generate instances")
    }

    fn one(&self) -> Instance {
        self.generate(1, 64).pop().unwrap()
    }

    async fn pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.index_url)
            .await
            .expect("test connects to the index")
    }

    async fn count(&self, sql: &'static str) -> i64 {
        let pool = self.pool().await;
        let n: i64 = sqlx::query(sql).fetch_one(&pool).await.unwrap().get(0);
        pool.close().await;
        n
    }

    async fn instance_count(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM instances").await
    }

    /// The blob key of the instance with this SOP Instance UID, if it is indexed.
    async fn blob_key(&self, sop_instance_uid: &str) -> Option<String> {
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
    async fn rows(&self) -> BTreeMap<String, String> {
        let pool = self.pool().await;
        let rows = sqlx::query("SELECT sop_instance_uid, blob_key FROM instances")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        pool.close().await;
        rows
    }

    fn blob_path(&self, key: &str) -> PathBuf {
        match &self.blobs {
            Blobs::Folder(root) => root.join(&key[0..2]).join(&key[2..4]).join(key),
            Blobs::S3(root) => root.join(key),
        }
    }

    /// Names (= keys) of every blob file.
    fn blob_keys(&self) -> BTreeSet<String> {
        let root = match &self.blobs {
            Blobs::Folder(root) | Blobs::S3(root) => root,
        };
        let mut keys = BTreeSet::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    keys.insert(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        keys
    }

    fn spool_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.data.join("tmp"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// The server log without colour codes.
    fn log(&self) -> String {
        strip_ansi(&self.server.log_text())
    }

    /// Log lines that contain every one of `needles`.
    fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// Waits until a log line contains every one of `needles`; returns it.
    async fn expect_log(&self, needles: &[&str]) -> String {
        eventually(&format!("a log line with {needles:?}"), || async {
            self.log_lines(needles).into_iter().next()
        })
        .await
    }

    /// Nothing of `sop_instance_uid` was kept: no index row, every blob belongs to an indexed
    /// instance, and (once the server has cleaned up) no spool file.
    async fn assert_not_stored(&self, sop_instance_uid: &str) {
        assert_eq!(
            self.blob_key(sop_instance_uid).await,
            None,
            "{sop_instance_uid} must not be indexed"
        );
        self.assert_no_spool_files().await;
        self.assert_blobs_match_rows().await;
    }

    async fn assert_no_spool_files(&self) {
        eventually("the spool folder to be empty", || async {
            self.spool_files().is_empty().then_some(())
        })
        .await;
    }

    /// One blob per instance row and one row per blob.
    async fn assert_blobs_match_rows(&self) {
        let referenced: BTreeSet<String> = self.rows().await.into_values().collect();
        assert_eq!(self.blob_keys(), referenced, "blob files vs. index rows");
    }

    /// Still serving: C-ECHO with dcmtk, and a valid store of a fresh instance is acknowledged
    /// and indexed.
    async fn assert_serves(&self) {
        let echo = dcmtk::echoscu("127.0.0.1", self.port(), "ORTHWEB").await;
        assert!(echo.status.success(), "echoscu: {}", dcmtk::text(&echo));
        let instance = self.one();
        let out =
            dcmtk::storescu("127.0.0.1", self.port(), "ORTHWEB", &[&instance.path], &[]).await;
        assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
        let key = self
            .blob_key(&instance.sop_instance_uid)
            .await
            .expect("the valid instance is indexed");
        assert_same_dataset(&self.blob_path(&key), &instance.path);
    }

    /// GET `path`, returning the HTTP status only.
    async fn http_status(&self, path: &str) -> u16 {
        reqwest::get(self.server.url(path))
            .await
            .expect("HTTP request")
            .status()
            .as_u16()
    }
}

/// Polls `probe` every 20 ms until it yields a value, or panics after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
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

fn assert_same_dataset(stored: &Path, sent: &Path) {
    let kept = dicomgen::dataset_bytes(stored)
        .unwrap_or_else(|e| panic!("blob {} unreadable: {e}", stored.display()));
    let sent_bytes = dicomgen::dataset_bytes(sent).unwrap();
    assert!(
        kept == sent_bytes,
        "stored data set {} differs from the sent {}",
        stored.display(),
        sent.display()
    );
}

/// The data set of `instance` (Explicit VR LE), as a file sends it.
fn dataset(instance: &Instance) -> Vec<u8> {
    dicomgen::dataset_bytes(&instance.path).unwrap()
}

/// The data set of `instance` after `edit`, re-encoded in Explicit VR LE.
fn edited_dataset(instance: &Instance, edit: impl FnOnce(&mut InMemDicomObject)) -> Vec<u8> {
    let file = dicom_object::open_file(&instance.path).expect("open generated file");
    let mut object: InMemDicomObject = file.into_inner();
    edit(&mut object);
    scu::encode_explicit_le(&object)
}

/// Offset of the Pixel Data element header in an Explicit VR LE data set.
fn pixel_data_offset(dataset: &[u8]) -> usize {
    dataset
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .expect("pixel data present")
}

fn config_file(site_dir: &Path, toml: &str) -> ServerConfig {
    let path = site_dir.join("orthweb.toml");
    std::fs::write(&path, toml).unwrap();
    ServerConfig::default()
        .arg("--config")
        .arg(path.display().to_string())
}

// ---------------------------------------------------------------------------------------------
// 1–4: malformed DIMSE traffic on an otherwise healthy association

/// One C-STORE to send as is.
struct Case {
    what: &'static str,
    class: String,
    /// The Affected SOP Instance UID of the command.
    announced: String,
    data: Vec<u8>,
}

impl Case {
    fn new(what: &'static str, instance: &Instance, data: Vec<u8>) -> Case {
        Case {
            what,
            class: instance.sop_class_uid.clone(),
            announced: instance.sop_instance_uid.clone(),
            data,
        }
    }
}

/// Sends every case on one association (Verification + CT storage), then `valid`, which must
/// be acknowledged with 0000: a refused store leaves the association usable. Returns each
/// case's response.
async fn store_cases(
    port: u16,
    cases: Vec<Case>,
    valid: &Instance,
) -> Vec<(&'static str, scu::Response)> {
    let valid = (
        valid.sop_class_uid.clone(),
        valid.sop_instance_uid.clone(),
        dataset(valid),
    );
    blocking(move || {
        let mut scu = Scu::connect_default(port);
        let mut out = Vec::new();
        for case in cases {
            let response = scu
                .store(&case.class, &case.announced, &case.data)
                .unwrap_or_else(|e| panic!("{}: no response: {e}", case.what));
            assert_eq!(
                response.affected_sop_instance_uid.as_deref(),
                Some(case.announced.as_str()),
                "{}",
                case.what
            );
            out.push((case.what, response));
        }
        let response = scu.store(&valid.0, &valid.1, &valid.2).unwrap();
        assert_eq!(
            response.status, SUCCESS,
            "valid store after faulty ones: {response:?}"
        );
        assert_eq!(scu.echo().unwrap().status, SUCCESS);
        scu.release().expect("release");
        out
    })
    .await
}

fn assert_statuses(responses: &[(&'static str, scu::Response)], expected: u16) {
    for (what, response) in responses {
        assert_eq!(
            response.status, expected,
            "{what}: expected {expected:#06x}, got {response:?}"
        );
        assert!(
            response
                .error_comment
                .as_deref()
                .is_some_and(|c| !c.is_empty()),
            "{what}: a refusal carries an Error Comment: {response:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_data_sets_are_refused_with_c000() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let instance = site.one();
    let full = dataset(&instance);
    let pixel = pixel_data_offset(&full);
    let study_uid = full
        .windows(4)
        .position(|w| w == [0x20, 0x00, 0x0D, 0x00])
        .expect("Study Instance UID element");
    let cuts = [
        (
            "cut inside pixel data",
            pixel + 12 + (full.len() - pixel - 12) / 2,
        ),
        ("cut one byte short", full.len() - 1),
        ("cut inside the pixel data element header", pixel + 6),
        ("cut inside the first element header", 5),
        ("cut inside the Study Instance UID value", study_uid + 8 + 3),
    ];
    let cases = cuts
        .iter()
        .map(|&(what, cut)| Case::new(what, &instance, full[..cut].to_vec()))
        .collect();
    let valid = site.one();
    let responses = store_cases(site.port(), cases, &valid).await;
    assert_statuses(&responses, CANNOT_UNDERSTAND);

    site.assert_not_stored(&instance.sop_instance_uid).await;
    assert!(site.blob_key(&valid.sop_instance_uid).await.is_some());
    let uid = instance.sop_instance_uid.as_str();
    let refusals = site.log_lines(&["C-STORE failed", uid, "0xc000"]);
    assert_eq!(
        refusals.len(),
        cuts.len(),
        "one log line per refusal: {refusals:#?}"
    );
    let truncated = site.log_lines(&["C-STORE failed", uid, "truncated"]);
    assert!(
        truncated.len() >= 2,
        "cuts inside pixel data are named as truncation: {refusals:#?}"
    );
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sop_instance_uid_differing_from_the_command_is_refused_with_a900() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let instance = site.one();
    let announced = format!("{}.99", instance.sop_instance_uid);
    let mut case = Case::new("UID mismatch", &instance, dataset(&instance));
    case.announced = announced.clone();
    let valid = site.one();
    let responses = store_cases(site.port(), vec![case], &valid).await;
    assert_statuses(&responses, DATA_SET_MISMATCH);

    site.assert_not_stored(&instance.sop_instance_uid).await;
    site.assert_not_stored(&announced).await;
    site.expect_log(&[
        "C-STORE failed",
        &announced,
        "0xa900",
        "differs from the command",
    ])
    .await;
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_sets_without_study_series_or_sop_instance_uid_are_refused_with_c000() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let instance = site.one();
    let without = |tag: Tag| {
        edited_dataset(&instance, |o| {
            assert!(o.remove_element(tag));
        })
    };
    let empty_study = edited_dataset(&instance, |o| {
        o.put(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::Empty,
        ));
    });
    let cases = vec![
        Case::new(
            "no Study Instance UID",
            &instance,
            without(tags::STUDY_INSTANCE_UID),
        ),
        Case::new(
            "no Series Instance UID",
            &instance,
            without(tags::SERIES_INSTANCE_UID),
        ),
        Case::new("empty Study Instance UID", &instance, empty_study),
        Case::new(
            "no SOP Instance UID",
            &instance,
            without(tags::SOP_INSTANCE_UID),
        ),
    ];
    let valid = site.one();
    let responses = store_cases(site.port(), cases, &valid).await;
    assert_statuses(&responses, CANNOT_UNDERSTAND);

    site.assert_not_stored(&instance.sop_instance_uid).await;
    let uid = instance.sop_instance_uid.as_str();
    for missing in [
        "has no Study Instance UID",
        "has no Series Instance UID",
        "has no SOP Instance UID",
    ] {
        site.expect_log(&["C-STORE failed", uid, "0xc000", missing])
            .await;
    }
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_commands_get_0211_and_the_association_stays_usable() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let valid = site.one();
    let (class, uid, data) = (
        valid.sop_class_uid.clone(),
        valid.sop_instance_uid.clone(),
        dataset(&valid),
    );
    let port = site.port();
    let (with_data, without_data, store) = blocking(move || {
        let mut scu = Scu::connect(
            port,
            "TESTSCU",
            "ORTHWEB",
            &[
                (scu::VERIFICATION, &[scu::IMPLICIT_LE]),
                (scu::CT_IMAGE_STORAGE, &[scu::EXPLICIT_LE]),
                (scu::STUDY_ROOT_FIND, &[scu::EXPLICIT_LE]),
            ],
        )
        .unwrap();
        let find = scu.context_id(scu::STUDY_ROOT_FIND);
        // C-FIND-RQ with its identifier, in two data PDVs.
        let id = scu.message_id();
        let command = scu::request(scu::C_FIND_RQ, id, Some(scu::STUDY_ROOT_FIND), None, 0x0001);
        scu.send_command(find, &scu::encode_command(&command))
            .unwrap();
        let identifier = scu::encode_explicit_le(&InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::QUERY_RETRIEVE_LEVEL,
                VR::CS,
                PrimitiveValue::from("STUDY "),
            ),
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("*")),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::Empty),
        ]));
        let (a, b) = identifier.split_at(identifier.len() / 2);
        scu.send_data(find, a, false).unwrap();
        scu.send_data(find, b, true).unwrap();
        let with_data = scu.receive_response().unwrap();
        assert_eq!(with_data.message_id_responded_to, id);
        // C-FIND-RQ that announces no data set.
        let id = scu.message_id();
        let command = scu::request(
            scu::C_FIND_RQ,
            id,
            Some(scu::STUDY_ROOT_FIND),
            None,
            scu::NO_DATA_SET,
        );
        scu.send_command(find, &scu::encode_command(&command))
            .unwrap();
        let without_data = scu.receive_response().unwrap();
        assert_eq!(without_data.message_id_responded_to, id);
        // The association still works for what we do serve.
        assert_eq!(scu.echo().unwrap().status, SUCCESS);
        let store = scu.store(&class, &uid, &data).unwrap();
        scu.release().unwrap();
        (with_data, without_data, store)
    })
    .await;
    for response in [&with_data, &without_data] {
        assert_eq!(response.status, UNRECOGNIZED_OPERATION, "{response:?}");
        assert_eq!(response.command_field, 0x8020, "a C-FIND-RSP: {response:?}");
    }
    assert_eq!(store.status, SUCCESS);
    let lines = site.log_lines(&["unsupported DIMSE command", "0x0020"]);
    assert_eq!(
        lines.len(),
        2,
        "one log line per unknown command: {lines:#?}"
    );
    assert!(site.spool_files().is_empty());
    site.assert_blobs_match_rows().await;
    assert_eq!(site.instance_count().await, 1);
    site.assert_serves().await;
}

// ---------------------------------------------------------------------------------------------
// 5–6: policy

/// Not in the standard dictionary.
const MADE_UP_SOP_CLASS: &str = "1.2.826.0.1.3680043.9.7433.1.1";

/// Stores `instance` as an instance of a made-up SOP class (command and data set agree).
async fn store_made_up_class(port: u16, instance: &Instance) -> scu::Response {
    let data = edited_dataset(instance, |o| {
        o.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(MADE_UP_SOP_CLASS),
        ));
    });
    let uid = instance.sop_instance_uid.clone();
    blocking(move || {
        let mut scu = Scu::connect(
            port,
            "TESTSCU",
            "ORTHWEB",
            &[
                (scu::VERIFICATION, &[scu::IMPLICIT_LE]),
                (MADE_UP_SOP_CLASS, &[scu::EXPLICIT_LE]),
            ],
        )
        .unwrap();
        let response = scu.store(MADE_UP_SOP_CLASS, &uid, &data).unwrap();
        assert_eq!(
            scu.echo().unwrap().status,
            SUCCESS,
            "association still usable"
        );
        scu.release().unwrap();
        response
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sop_classes_are_refused_with_0122_only_when_configured() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let strict = Site::local(config_file(
        dir.path(),
        "accept_unknown_sop_classes = false\n",
    ));
    let instance_refused = strict.one();
    let response = store_made_up_class(strict.port(), &instance_refused).await;
    assert_eq!(response.status, SOP_CLASS_NOT_SUPPORTED, "{response:?}");
    strict
        .assert_not_stored(&instance_refused.sop_instance_uid)
        .await;
    // Standard storage classes still go in.
    strict.assert_serves().await;

    // The default accepts it, as Orthanc does, and records the class the data set names.
    let open = Site::local(ServerConfig::default());
    let instance = open.one();
    let response = store_made_up_class(open.port(), &instance).await;
    assert_eq!(response.status, SUCCESS, "{response:?}");
    let pool = open.pool().await;
    let class: String =
        sqlx::query("SELECT sop_class_uid FROM instances WHERE sop_instance_uid = $1")
            .bind(&instance.sop_instance_uid)
            .fetch_one(&pool)
            .await
            .expect("indexed")
            .get(0);
    pool.close().await;
    assert_eq!(class, MADE_UP_SOP_CLASS);
    open.assert_blobs_match_rows().await;

    // The refusal is in the log, with the instance and the class (written before the response
    // was sent, so no need to wait for it).
    let lines = strict.log_lines(&[&instance_refused.sop_instance_uid, MADE_UP_SOP_CLASS]);
    assert!(
        !lines.is_empty(),
        "no log line explains the 0122 refusal of {}:\n{}",
        instance_refused.sop_instance_uid,
        strict.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ae_title_policy_refuses_associations() {
    if !dcmtk::require_tool("echoscu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let site = Site::local(config_file(
        dir.path(),
        "check_called_aet = true\nallowed_calling_aets = [\"TESTSCU\", \"GOODSCU\"]\n",
    ));
    let port = site.port();
    let ok = dcmtk::echoscu("127.0.0.1", port, "ORTHWEB").await;
    assert!(ok.status.success(), "{}", dcmtk::text(&ok));

    let wrong_called = dcmtk::echoscu("127.0.0.1", port, "NOTORTHWEB").await;
    assert!(
        !wrong_called.status.success(),
        "{}",
        dcmtk::text(&wrong_called)
    );
    assert!(
        dcmtk::text(&wrong_called).contains("Rejected"),
        "echoscu sees a rejection: {}",
        dcmtk::text(&wrong_called)
    );
    site.expect_log(&["called AE title is not ours", "NOTORTHWEB"])
        .await;

    let (evil, good) = blocking(move || {
        let contexts: &[(&str, &[&str])] = &[(scu::VERIFICATION, &[scu::IMPLICIT_LE])];
        let evil = Scu::connect(port, "EVILSCU", "ORTHWEB", contexts).map(|_| ());
        let mut good = Scu::connect(port, "GOODSCU", "ORTHWEB", contexts).expect("GOODSCU allowed");
        let echo = good.echo().unwrap();
        good.release().unwrap();
        (evil, echo)
    })
    .await;
    let evil = evil.expect_err("EVILSCU must be refused");
    assert!(
        format!("{evil:?}").contains("Rejected"),
        "an A-ASSOCIATE-RJ, not a dropped connection: {evil:?}"
    );
    assert_eq!(good.status, SUCCESS);
    site.expect_log(&["calling AE title not allowed", "EVILSCU"])
        .await;
    site.assert_serves().await;

    // By default the called AE title is not checked.
    let open = Site::local(ServerConfig::default());
    let any = dcmtk::echoscu("127.0.0.1", open.port(), "ANYTHING").await;
    assert!(any.status.success(), "{}", dcmtk::text(&any));
}

// ---------------------------------------------------------------------------------------------
// 7–8: garbage, silence and aborts on the wire

/// Writes `bytes` to the DICOM port and waits for the server to close the connection.
/// Returns how long that took, or panics when it stays open for 20 s.
fn send_garbage(port: u16, bytes: &[u8]) -> Duration {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may close before reading everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            // An A-ABORT or A-ASSOCIATE-RJ may come first.
            Ok(n) if n > 0 => continue,
            Ok(_) => return start.elapsed(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "the server kept the connection open after {:?}",
                    start.elapsed()
                )
            }
            Err(_) => return start.elapsed(), // reset
        }
    }
}

fn pseudo_random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_dicom_port_is_dropped() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let mut absurd_rq = vec![0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xF0, 0x00, 0x01, 0x00, 0x00];
    absurd_rq.extend_from_slice(b"ORTHWEB         TESTSCU         ");
    absurd_rq.extend_from_slice(&[0u8; 32]);
    // A P-DATA-TF before any association.
    let early_pdata = vec![0x04, 0, 0, 0, 0, 6, 0, 0, 0, 2, 1, 3];
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", pseudo_random_bytes(7, 4096)),
        (
            "an HTTP request",
            b"GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        ),
        ("an A-ASSOCIATE-RQ claiming ~4 GiB", absurd_rq),
        ("a P-DATA-TF before association", early_pdata),
    ];
    let port = site.port();
    let count = payloads.len();
    for (what, bytes) in payloads {
        let took = blocking(move || send_garbage(port, &bytes)).await;
        eprintln!("{what}: closed after {took:?}");
    }
    let refused = eventually("one log line per refused connection", || async {
        let lines = site.log_lines(&["association not established"]);
        (lines.len() >= count).then_some(lines)
    })
    .await;
    assert_eq!(refused.len(), count, "{refused:#?}");
    assert!(site.spool_files().is_empty());
    assert_eq!(site.instance_count().await, 0);
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_peers_are_dropped_after_the_timeout() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default().env("ORTHWEB_DICOM_TIMEOUT_SECS", "2"));
    let port = site.port();
    // A connection that never sends an A-ASSOCIATE-RQ.
    blocking(move || send_garbage(port, &[])).await;
    // dicom-ul's own read timeout (the same length) usually fires before ours.
    site.expect_log(&["association not established", "timed out"])
        .await;

    // An association that stops in the middle of a data set.
    let instance = site.generate(1, 512).pop().unwrap();
    let data = dataset(&instance);
    let (class, uid) = (
        instance.sop_class_uid.clone(),
        instance.sop_instance_uid.clone(),
    );
    let scu = blocking(move || {
        let mut scu = Scu::connect_default(port);
        let context = scu.context_id(&class);
        let id = scu.message_id();
        scu.send_command(context, &scu::store_rq(id, &class, &uid))
            .unwrap();
        scu.send_data(context, &data[..data.len() / 2], false)
            .unwrap();
        scu
    })
    .await;
    eventually("a spool file for the partial instance", || async {
        (!site.spool_files().is_empty()).then_some(())
    })
    .await;
    site.expect_log(&["association ended with an error"]).await;
    site.assert_not_stored(&instance.sop_instance_uid).await;
    drop(scu);
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aborted_associations_leave_nothing_behind() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let port = site.port();
    for abort in [true, false] {
        // ~512 KiB: 32 data PDVs, of which half are sent.
        let instance = site.generate(1, 512).pop().unwrap();
        let data = dataset(&instance);
        let (class, uid) = (
            instance.sop_class_uid.clone(),
            instance.sop_instance_uid.clone(),
        );
        let scu = blocking(move || {
            let mut scu = Scu::connect_default(port);
            let context = scu.context_id(&class);
            let id = scu.message_id();
            scu.send_command(context, &scu::store_rq(id, &class, &uid))
                .unwrap();
            scu.send_data(context, &data[..data.len() / 2], false)
                .unwrap();
            scu
        })
        .await;
        // The server is receiving: the spool file exists.
        eventually("a spool file for the partial instance", || async {
            (!site.spool_files().is_empty()).then_some(())
        })
        .await;
        if abort {
            blocking(move || scu.abort().unwrap()).await;
            site.expect_log(&["association aborted by peer"]).await;
        } else {
            blocking(move || scu.drop_connection()).await;
            site.expect_log(&["association ended with an error"]).await;
        }
        site.assert_not_stored(&instance.sop_instance_uid).await;
    }
    site.assert_serves().await;
}

// ---------------------------------------------------------------------------------------------
// Duplicates

#[tokio::test(flavor = "multi_thread")]
async fn the_same_instance_twice_is_acknowledged_and_kept_once() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let instance = site.one();
    for _ in 0..2 {
        let out = dcmtk::storescu(
            "127.0.0.1",
            site.port(),
            "ORTHWEB",
            &[&instance.path],
            &["-v"],
        )
        .await;
        assert!(out.status.success(), "{}", dcmtk::text(&out));
        assert!(dcmtk::text(&out).contains("Received Store Response (Success)"));
    }
    // And twice on one association.
    let (class, uid, data) = (
        instance.sop_class_uid.clone(),
        instance.sop_instance_uid.clone(),
        dataset(&instance),
    );
    let port = site.port();
    let statuses = blocking(move || {
        let mut scu = Scu::connect_default(port);
        let statuses = [
            scu.store(&class, &uid, &data).unwrap().status,
            scu.store(&class, &uid, &data).unwrap().status,
        ];
        scu.release().unwrap();
        statuses
    })
    .await;
    assert_eq!(statuses, [SUCCESS, SUCCESS]);

    assert_eq!(site.instance_count().await, 1);
    let key = site.blob_key(&instance.sop_instance_uid).await.unwrap();
    assert_eq!(site.blob_keys(), BTreeSet::from([key.clone()]), "one blob");
    assert_same_dataset(&site.blob_path(&key), &instance.path);
    let duplicates = site.log_lines(&["stored", &instance.sop_instance_uid, "duplicate=true"]);
    assert_eq!(duplicates.len(), 3, "{duplicates:#?}");
    site.assert_no_spool_files().await;
}

// ---------------------------------------------------------------------------------------------
// 9–10: the database or the bucket goes away (PostgreSQL + S3)

/// Starts a private PostgreSQL cluster without blocking the runtime's other tasks (the
/// in-process S3 server runs on them).
fn start_pg() -> Option<PgCluster> {
    tokio::task::block_in_place(PgCluster::start)
}

fn start_cloud_site(pg: &PgCluster, s3: &S3Server, db: &str) -> Site {
    tokio::task::block_in_place(|| Site::cloud(pg, s3, db, ServerConfig::default()))
}

/// storescu -v of one file that must be refused with A700 (Refused: Out of Resources).
async fn store_refused_a700(site: &Site, instance: &Instance) {
    let out = dcmtk::storescu(
        "127.0.0.1",
        site.port(),
        "ORTHWEB",
        &[&instance.path],
        &["-v"],
    )
    .await;
    let text = dcmtk::text(&out);
    assert!(!out.status.success(), "storescu must fail: {text}");
    assert!(
        text.contains("Received Store Response (Refused: OutOfResources)"),
        "status A700 expected: {text}"
    );
    site.expect_log(&["C-STORE failed", &instance.sop_instance_uid, "0xa700"])
        .await;
}

async fn wait_ready(site: &Site, status: u16) {
    eventually(&format!("GET /readyz to answer {status}"), || async {
        (site.http_status("/readyz").await == status).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_fails_stores_with_a700_and_recovers() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let Some(mut pg) = start_pg() else { return };
    let s3 = S3Server::start();
    let site = start_cloud_site(&pg, &s3, "dbaway");
    site.assert_serves().await;
    assert_eq!(site.http_status("/readyz").await, 200);
    let before = site.blob_keys();
    assert_eq!(before.len(), 1);

    tokio::task::block_in_place(|| pg.stop());
    let failed = site.one();
    store_refused_a700(&site, &failed).await;
    let log = site.log();
    assert!(log.contains("database error"), "the cause is logged: {log}");
    let echo = dcmtk::echoscu("127.0.0.1", site.port(), "ORTHWEB").await;
    assert!(
        echo.status.success(),
        "echo while the DB is down: {}",
        dcmtk::text(&echo)
    );
    assert_eq!(site.http_status("/healthz").await, 200, "alive");
    wait_ready(&site, 503).await;
    // The blob written before the index failed was removed again; nothing is spooled.
    assert_eq!(site.blob_keys(), before, "no blob left by the failed store");
    site.assert_no_spool_files().await;

    tokio::task::block_in_place(|| pg.restart());
    wait_ready(&site, 200).await;
    site.assert_not_stored(&failed.sop_instance_uid).await;
    site.assert_serves().await;
    // The refused instance can be sent again.
    let out = dcmtk::storescu("127.0.0.1", site.port(), "ORTHWEB", &[&failed.path], &[]).await;
    assert!(out.status.success(), "{}", dcmtk::text(&out));
    let key = site
        .blob_key(&failed.sop_instance_uid)
        .await
        .expect("indexed now");
    assert_same_dataset(&site.blob_path(&key), &failed.path);
    site.assert_blobs_match_rows().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_outage_fails_stores_with_a700_and_recovers() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let Some(pg) = start_pg() else { return };
    let mut s3 = S3Server::start();
    let site = start_cloud_site(&pg, &s3, "bucketaway");
    site.assert_serves().await;

    s3.stop().await;
    let failed = site.one();
    store_refused_a700(&site, &failed).await;
    let log = site.log();
    assert!(
        log.contains("S3 request failed"),
        "the cause is logged: {log}"
    );
    let echo = dcmtk::echoscu("127.0.0.1", site.port(), "ORTHWEB").await;
    assert!(
        echo.status.success(),
        "echo while S3 is down: {}",
        dcmtk::text(&echo)
    );
    wait_ready(&site, 503).await;
    site.assert_not_stored(&failed.sop_instance_uid).await;

    s3.restart();
    wait_ready(&site, 200).await;
    site.assert_serves().await;
    site.assert_not_stored(&failed.sop_instance_uid).await;
    let out = dcmtk::storescu("127.0.0.1", site.port(), "ORTHWEB", &[&failed.path], &[]).await;
    assert!(out.status.success(), "{}", dcmtk::text(&out));
    let key = site
        .blob_key(&failed.sop_instance_uid)
        .await
        .expect("indexed now");
    assert_same_dataset(&site.blob_path(&key), &failed.path);
    site.assert_blobs_match_rows().await;
}

// ---------------------------------------------------------------------------------------------
// 11: kill -9 in the middle of a send

/// Files storescu -v reports as acknowledged with Success, in order.
fn acknowledged(storescu_log: &str) -> Vec<PathBuf> {
    let mut current: Option<PathBuf> = None;
    let mut acked = Vec::new();
    for line in storescu_log.lines() {
        if let Some(path) = line.strip_prefix("I: Sending file: ") {
            current = Some(PathBuf::from(path.trim()));
        } else if line.contains("Received Store Response (Success)") {
            acked.push(
                current
                    .take()
                    .expect("a response follows a Sending file line"),
            );
        }
    }
    acked
}

/// Sends `instances` with storescu, kills the server with SIGKILL once about half are indexed,
/// restarts it and checks that every acknowledged instance survived whole and that the index has
/// no dangling rows.
async fn kill9_during_send(site: &mut Site, instances: &[Instance], dir: &Path) {
    let total = instances.len() as i64;
    let by_uid: BTreeMap<&str, &Instance> = instances
        .iter()
        .map(|i| (i.sop_instance_uid.as_str(), i))
        .collect();
    let by_path: BTreeMap<&Path, &Instance> =
        instances.iter().map(|i| (i.path.as_path(), i)).collect();

    let mut child = std::process::Command::new("storescu")
        .args(["-v", "-aet", dcmtk::CALLING_AET, "-aec", "ORTHWEB"])
        .args(["-to", "10", "-ta", "30", "-td", "60"])
        .arg("127.0.0.1")
        .arg(site.port().to_string())
        .arg("+sd")
        .arg(dir)
        .env("TCP_NODELAY", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("storescu starts");
    // Kills storescu if the test fails before it ends.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Drain its log (stderr) as it comes so it never blocks on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let mut child = Reap(child);

    let pool = site.pool().await;
    let start = Instant::now();
    let at_kill = loop {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM instances")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        if n >= total / 2 {
            site.server.kill9();
            break n;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "storescu ended before half of the instances were indexed ({n})"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "sending is stuck at {n}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    pool.close().await;
    assert!(
        at_kill < total,
        "the kill came too late to interrupt the send"
    );

    let status = eventually("storescu to end once the server is gone", || {
        let status = child.0.try_wait().unwrap();
        async move { status }
    })
    .await;
    let log = reader.join().unwrap();
    assert!(!status.success(), "storescu cannot have succeeded: {log}");
    let acked = acknowledged(&log);
    eprintln!(
        "kill -9 with {at_kill} indexed; storescu saw {} acknowledged",
        acked.len()
    );
    assert!(
        acked.len() as i64 >= at_kill - 1,
        "acknowledgements are prompt"
    );

    tokio::task::block_in_place(|| site.server.restart());

    // Every acknowledged instance is indexed, its blob readable and equal to what was sent.
    let rows = site.rows().await;
    let acked_uids: BTreeSet<&str> = acked
        .iter()
        .map(|p| {
            by_path
                .get(p.as_path())
                .unwrap_or_else(|| panic!("storescu sent an unknown file {}", p.display()))
                .sop_instance_uid
                .as_str()
        })
        .collect();
    for uid in &acked_uids {
        assert!(
            rows.contains_key(*uid),
            "acknowledged {uid} lost by the crash"
        );
    }
    // Every row (acknowledged or not) points to a whole blob of the instance sent.
    for (uid, key) in &rows {
        let sent = by_uid
            .get(uid.as_str())
            .expect("only sent instances are indexed");
        assert_same_dataset(&site.blob_path(key), &sent.path);
    }
    // At most the one in flight was committed without its acknowledgement reaching storescu.
    let unacked_rows = rows
        .keys()
        .filter(|u| !acked_uids.contains(u.as_str()))
        .count();
    assert!(
        unacked_rows <= 1,
        "{unacked_rows} rows were never acknowledged"
    );
    // No dangling rows at any level.
    for (what, sql) in [
        (
            "series without instances",
            "SELECT COUNT(*) FROM series s WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.series = s.id)",
        ),
        (
            "studies without series",
            "SELECT COUNT(*) FROM studies st WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.study = st.id)",
        ),
        (
            "patients without studies",
            "SELECT COUNT(*) FROM patients p WHERE NOT EXISTS (SELECT 1 FROM studies st WHERE st.patient = p.id)",
        ),
        (
            "instances without series",
            "SELECT COUNT(*) FROM instances i WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.id = i.series)",
        ),
    ] {
        assert_eq!(site.count(sql).await, 0, "{what}");
    }
    // A crash may leave the blob and the spool file of the one instance in flight, no more.
    let referenced: BTreeSet<String> = rows.values().cloned().collect();
    let orphans = site.blob_keys().difference(&referenced).count();
    assert!(orphans <= 1, "{orphans} unreferenced blobs after the crash");
    let spooled = site.spool_files().len();
    assert!(spooled <= 1, "{spooled} spool files left by the crash");
    eprintln!(
        "after restart: {} rows, {orphans} orphan blobs, {spooled} spool files",
        rows.len()
    );

    // The restarted server takes the whole study again: the rest is stored, the rest
    // acknowledged as duplicates.
    let out = dcmtk::storescu("127.0.0.1", site.port(), "ORTHWEB", &[dir], &[]).await;
    assert!(out.status.success(), "{}", dcmtk::text(&out));
    let rows = site.rows().await;
    assert_eq!(rows.len() as i64, total);
    for (uid, key) in &rows {
        assert_same_dataset(&site.blob_path(key), &by_uid[uid.as_str()].path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_a_send_loses_no_acknowledged_instance_sqlite_folder() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let mut site = Site::local(ServerConfig::default());
    let instances = site.generate(300, 32);
    let dir = instances[0].path.parent().unwrap().to_path_buf();
    kill9_during_send(&mut site, &instances, &dir).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_a_send_loses_no_acknowledged_instance_postgres_s3() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let Some(pg) = start_pg() else { return };
    let s3 = S3Server::start();
    let mut site = start_cloud_site(&pg, &s3, "killed");
    let instances = site.generate(300, 32);
    let dir = instances[0].path.parent().unwrap().to_path_buf();
    kill9_during_send(&mut site, &instances, &dir).await;
}

// ---------------------------------------------------------------------------------------------
// More of the same kind: deflate, protocol violations, a local storage outage, hostile lengths

#[tokio::test(flavor = "multi_thread")]
async fn truncated_deflated_data_sets_are_refused_with_c000() {
    if !dcmtk::require_tool("storescu") || !dcmtk::require_tool("dcmconv") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let native = site.generate(1, 256).pop().unwrap();
    let deflated = site.work.path().join("deflated.dcm");
    dicomgen::transcode(&native.path, &deflated, dicomgen::Syntax::Deflated).unwrap();
    let full = dicomgen::dataset_bytes(&deflated).unwrap();
    // The last cuts leave every element inflatable but the deflate stream without its end.
    let cuts = [
        40,
        full.len() / 2,
        full.len() - 8,
        full.len() - 2,
        full.len() - 1,
    ];
    let (class, uid) = (
        native.sop_class_uid.clone(),
        native.sop_instance_uid.clone(),
    );
    let port = site.port();
    let responses = blocking(move || {
        let mut scu = Scu::connect(
            port,
            "TESTSCU",
            "ORTHWEB",
            &[(scu::CT_IMAGE_STORAGE, &[scu::DEFLATED_LE])],
        )
        .unwrap();
        let mut out = Vec::new();
        for cut in cuts {
            out.push((cut, scu.store(&class, &uid, &full[..cut]).unwrap()));
        }
        // The whole file goes in.
        out.push((full.len(), scu.store(&class, &uid, &full).unwrap()));
        scu.release().unwrap();
        out
    })
    .await;
    let (whole, cut) = responses.split_last().unwrap();
    assert_eq!(whole.1.status, SUCCESS, "{:?}", whole.1);
    site.assert_blobs_match_rows().await;
    site.assert_no_spool_files().await;
    let key = site.blob_key(&native.sop_instance_uid).await.unwrap();
    let statuses: Vec<(usize, u16)> = cut.iter().map(|(at, r)| (*at, r.status)).collect();
    assert_eq!(
        dicomgen::dataset_bytes(&site.blob_path(&key))
            .unwrap()
            .len(),
        whole.0,
        "the stored copy is the whole stream, not a cut one (statuses by cut: {statuses:x?})"
    );
    for (at, response) in cut {
        assert_eq!(
            response.status, CANNOT_UNDERSTAND,
            "deflated data set of {} bytes cut at {at}: {response:?}",
            whole.0
        );
    }
}

/// Protocol violations end the association (A-ABORT); a C-STORE-RQ the server cannot act on is
/// answered with C000. Nothing is left behind either way.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_commands_and_out_of_sequence_pdvs() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let port = site.port();
    let instance = site.generate(1, 256).pop().unwrap();
    let data = dataset(&instance);
    let (class, uid) = (
        instance.sop_class_uid.clone(),
        instance.sop_instance_uid.clone(),
    );

    let no_uid = blocking({
        let (class, data) = (class.clone(), data.clone());
        move || {
            let mut scu = Scu::connect_default(port);
            let context = scu.context_id(&class);
            // A C-STORE-RQ without Affected SOP Instance UID: answered, association kept.
            let id = scu.message_id();
            let command = scu::request(scu::C_STORE_RQ, id, Some(&class), None, scu::HAS_DATA_SET);
            scu.send_command(context, &scu::encode_command(&command))
                .unwrap();
            scu.send_data(context, &data, true).unwrap();
            let response = scu.receive_response().unwrap();
            assert_eq!(response.message_id_responded_to, id);
            assert_eq!(scu.echo().unwrap().status, SUCCESS);
            scu.release().unwrap();
            response
        }
    })
    .await;
    assert_eq!(no_uid.status, CANNOT_UNDERSTAND, "{no_uid:?}");

    // Each of these breaks the protocol: the server aborts.
    for violation in 0..5 {
        let (class, uid, data) = (class.clone(), uid.clone(), data.clone());
        blocking(move || {
            let mut scu = Scu::connect_default(port);
            let context = scu.context_id(&class);
            let id = scu.message_id();
            match violation {
                // A command set without a Command Field (a huge element length is
                // `oversized_element_lengths_cost_no_memory`).
                0 => {
                    let mut command = InMemDicomObject::new_empty();
                    command.put(DataElement::new(
                        tags::MESSAGE_ID,
                        VR::US,
                        PrimitiveValue::from(id),
                    ));
                    scu.send_command(context, &scu::encode_command(&command))
                        .unwrap();
                }
                // Data before any command.
                1 => scu.send_data(context, &data[..1000], true).unwrap(),
                // A new command in the middle of a data set.
                2 => {
                    scu.send_command(context, &scu::store_rq(id, &class, &uid))
                        .unwrap();
                    scu.send_data(context, &data[..data.len() / 2], false)
                        .unwrap();
                    scu.send_command(context, &scu::echo_rq(id + 1)).unwrap();
                }
                // A presentation context that was never negotiated.
                3 => scu
                    .send_command(99, &scu::store_rq(id, &class, &uid))
                    .unwrap(),
                // A command set of more than 64 KiB, in PDVs that never say "last".
                _ => {
                    for _ in 0..5 {
                        let pdv = [0u8; 16 * 1024];
                        if scu.send_pdvs(context, true, &pdv, false).is_err() {
                            break;
                        }
                    }
                }
            }
            scu.expect_abort();
        })
        .await;
    }
    for reason in [
        "command set too large",
        "command set has no Command Field",
        "fragment out of sequence",
        "presentation context 99 was not accepted",
    ] {
        site.expect_log(&["association ended with an error", reason])
            .await;
    }
    site.assert_not_stored(&instance.sop_instance_uid).await;
    site.assert_serves().await;
    let lines = site.log_lines(&["no Affected SOP Instance UID"]);
    assert!(
        !lines.is_empty(),
        "no log line explains the C000 answer to a C-STORE-RQ without Affected SOP Instance UID:\n{}",
        site.log()
    );
}

/// The local analogue of the bucket going away: the blob folder is replaced by a file.
#[tokio::test(flavor = "multi_thread")]
async fn blob_folder_outage_fails_stores_with_a700_and_recovers() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    site.assert_serves().await;
    let blobs = site.data.join("blobs");
    let away = site.data.join("blobs.away");
    std::fs::rename(&blobs, &away).unwrap();
    std::fs::write(&blobs, b"not a folder").unwrap();

    let failed = site.one();
    store_refused_a700(&site, &failed).await;
    let echo = dcmtk::echoscu("127.0.0.1", site.port(), "ORTHWEB").await;
    assert!(echo.status.success(), "{}", dcmtk::text(&echo));
    wait_ready(&site, 503).await;
    site.assert_no_spool_files().await;
    assert_eq!(site.blob_key(&failed.sop_instance_uid).await, None);

    std::fs::remove_file(&blobs).unwrap();
    std::fs::rename(&away, &blobs).unwrap();
    wait_ready(&site, 200).await;
    site.assert_not_stored(&failed.sop_instance_uid).await;
    site.assert_serves().await;
}

/// Element lengths are read from the wire: a 12-byte command set or a 14-byte data set that
/// claims a 1 GiB element must not make the server allocate (and zero) 1 GiB. Each case runs on
/// its own server, since peak memory only grows.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_element_lengths_cost_no_memory() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    // (0008,0001) with a 1 GiB length, Implicit VR LE: a command set.
    let command_site = Site::local(ServerConfig::default());
    let port = command_site.port();
    let command_before = command_site.server.peak_rss_kib();
    let command = b"\x08\x00\x01\x00\x00\x00\x00\x40".to_vec();
    blocking(move || {
        let mut scu = Scu::connect_default(port);
        let context = scu.context_id(scu::CT_IMAGE_STORAGE);
        scu.send_command(context, &command).unwrap();
        scu.expect_abort();
    })
    .await;
    command_site
        .expect_log(&["association ended with an error", "malformed command set"])
        .await;
    let command_after = command_site.server.peak_rss_kib();
    command_site.assert_serves().await;

    // (0009,0010) UN with a 1 GiB length, Explicit VR LE: a data set.
    let data_site = Site::local(ServerConfig::default());
    let port = data_site.port();
    let data_before = data_site.server.peak_rss_kib();
    let data = b"\x09\x00\x10\x00UN\x00\x00\x00\x00\x00\x40".to_vec();
    let response = blocking(move || {
        let mut scu = Scu::connect_default(port);
        let response = scu
            .store(scu::CT_IMAGE_STORAGE, "1.2.3.4.5.6.7", &data)
            .unwrap();
        scu.release().unwrap();
        response
    })
    .await;
    assert_eq!(response.status, CANNOT_UNDERSTAND, "{response:?}");
    data_site.assert_not_stored("1.2.3.4.5.6.7").await;
    let data_after = data_site.server.peak_rss_kib();
    data_site.assert_serves().await;

    let grew = |before: u64, after: u64| after.saturating_sub(before) / 1024;
    assert!(
        grew(command_before, command_after) < 128 && grew(data_before, data_after) < 128,
        "peak memory grew by {} MiB for a 12-byte command set and by {} MiB for a 14-byte data set",
        grew(command_before, command_after),
        grew(data_before, data_after)
    );
}
