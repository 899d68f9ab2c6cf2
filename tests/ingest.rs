//! Receiving studies over DICOM with dcmtk, against both backend pairs: SQLite + folder and
//! PostgreSQL + S3. Checks what was stored (bytes, hierarchy, IDs) through the index and the blob
//! store directly, not through the server's own API.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::dicomgen::{self, Depth, Instance, Spec, Syntax};
use common::pg::PgCluster;
use common::s3::{self, S3Server};
use common::server::{Server, ServerConfig};
use common::{dcmtk, orthanc_id};
use sqlx::{AnyPool, Row};

/// Where a test finds what the server stored.
struct Backend {
    index_url: String,
    /// Maps a blob key to the file holding it.
    blob_path: Box<dyn Fn(&str) -> PathBuf + Send + Sync>,
}

impl Backend {
    fn folder(data_dir: &Path) -> Backend {
        let root = data_dir.join("blobs");
        Backend {
            index_url: format!("sqlite://{}", data_dir.join("index.sqlite").display()),
            blob_path: Box::new(move |key| root.join(&key[0..3]).join(key)),
        }
    }

    async fn pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.index_url)
            .await
            .expect("test connects to the index")
    }
}

/// The PostgreSQL + S3 pair: a private cluster, an in-process S3 server and the server flags.
struct Cloud {
    pg: PgCluster,
    s3: S3Server,
}

impl Cloud {
    fn start() -> Option<Cloud> {
        let pg = PgCluster::start()?;
        Some(Cloud {
            pg,
            s3: S3Server::start(),
        })
    }

    fn config(&self, db_url: &str, prefix: &str) -> ServerConfig {
        ServerConfig::default()
            .arg("--index")
            .arg(db_url)
            .arg("--storage")
            .arg(format!("s3://{}/{prefix}", s3::BUCKET))
            .env("ORTHWEB_S3_PATH_STYLE", "true")
            .envs(self.s3.env())
    }

    fn backend(&self, db_url: &str, prefix: &str) -> Backend {
        let root = self.s3.object_path(s3::BUCKET, prefix);
        Backend {
            index_url: db_url.to_string(),
            blob_path: Box::new(move |key| root.join(key)),
        }
    }
}

/// A set of studies: 3 patients, 4 studies, one series per transfer syntax the kit can produce,
/// each file transcoded by dcmtk. Returns the files grouped by syntax, with each instance's
/// patient ID.
fn generate(dir: &Path) -> Vec<(Syntax, Vec<(Instance, String)>)> {
    let mut studies: Vec<Spec> = (1..=4).map(|seed| Spec::new(100 + seed)).collect();
    // Two studies of one patient.
    studies[1].patient_id = studies[0].patient_id.clone();
    studies[1].patient_name = studies[0].patient_name.clone();
    let mut by_syntax = Vec::new();
    for (n, syntax) in Syntax::ALL.into_iter().enumerate() {
        // A series of its own (own seed, so own UIDs) in one of the four studies.
        let study = &studies[n % 4];
        let mut spec = Spec::new(1000 + n as u64);
        spec.patient_id = study.patient_id.clone();
        spec.patient_name = study.patient_name.clone();
        spec.study_uid = study.study_uid.clone();
        spec.series.clear();
        let depth = if syntax.supports(Depth::U12) {
            Depth::U12
        } else {
            Depth::U8
        };
        spec.add_series("CT", 2, 64, 64, 1, depth).number = 10 + n as i32;
        let source = dir.join(format!("native-{n}"));
        let instances = spec.write(&source).expect("generate");
        let out = dir.join(format!("{syntax:?}"));
        std::fs::create_dir_all(&out).unwrap();
        let mut sent = Vec::new();
        for instance in instances {
            let target = out.join(instance.path.file_name().unwrap());
            dicomgen::transcode(&instance.path, &target, syntax).expect("dcmtk transcodes");
            sent.push((
                Instance {
                    path: target,
                    ..instance
                },
                spec.patient_id.clone(),
            ));
        }
        by_syntax.push((syntax, sent));
    }
    by_syntax
}

async fn send(server: &Server, dir: &Path, syntax: Syntax, files: &[PathBuf]) {
    let profile;
    let args: Vec<&str> = match syntax.storescu_flag() {
        Some(flag) => vec![flag],
        None => {
            profile = dcmtk::storescu_config(dir, &[(dicomgen_class(), &[syntax.uid()])]).unwrap();
            profile.iter().map(String::as_str).collect()
        }
    };
    let out = dcmtk::storescu("127.0.0.1", server.dicom_port, "ORTHWEB", files, &args).await;
    assert!(
        out.status.success(),
        "storescu {syntax:?}: {}",
        dcmtk::text(&out)
    );
}

/// The SOP class the generator uses for single-frame instances.
fn dicomgen_class() -> &'static str {
    "1.2.840.10008.5.1.4.1.1.2"
}

/// Stores the generated set and checks bytes, hierarchy and IDs.
async fn store_and_check(server: &Server, backend: &Backend, work: &Path) {
    assert!(
        dcmtk::echoscu("127.0.0.1", server.dicom_port, "ORTHWEB")
            .await
            .status
            .success()
    );
    let sets = generate(&work.join("gen"));
    for (syntax, files) in &sets {
        let paths: Vec<PathBuf> = files.iter().map(|(i, _)| i.path.clone()).collect();
        send(server, work, *syntax, &paths).await;
    }

    let pool = backend.pool().await;
    let total: usize = sets.iter().map(|(_, f)| f.len()).sum();
    let stats = server.get_json("/statistics").await;
    assert_eq!(stats["CountInstances"], total as i64);
    assert_eq!(stats["CountStudies"], 4);
    assert_eq!(stats["CountPatients"], 3);
    assert_eq!(stats["CountSeries"], Syntax::ALL.len() as i64);

    for (syntax, files) in &sets {
        for (instance, patient_id) in files {
            let row = sqlx::query(
                "SELECT i.id, i.blob_key, i.transfer_syntax_uid, i.file_size, s.id AS series_id,
                        s.series_uid, st.id AS study_id, st.study_uid, p.id AS patient_id, p.patient_id AS pid
                 FROM instances i JOIN series s ON s.id = i.series
                 JOIN studies st ON st.id = s.study JOIN patients p ON p.id = st.patient
                 WHERE i.sop_instance_uid = $1",
            )
            .bind(&instance.sop_instance_uid)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{syntax:?} instance {} not indexed: {e}", instance.sop_instance_uid));
            let get = |c: &str| row.try_get::<String, _>(c).unwrap();
            assert_eq!(get("pid"), *patient_id);
            assert_eq!(get("study_uid"), instance.study_uid);
            assert_eq!(get("series_uid"), instance.series_uid);
            assert_eq!(
                get("transfer_syntax_uid"),
                syntax.uid(),
                "kept in the syntax it came in"
            );
            let path = [
                patient_id.as_str(),
                &instance.study_uid,
                &instance.series_uid,
                &instance.sop_instance_uid,
            ];
            assert_eq!(get("patient_id"), orthanc_id(&path[..1]));
            assert_eq!(get("study_id"), orthanc_id(&path[..2]));
            assert_eq!(get("series_id"), orthanc_id(&path[..3]));
            assert_eq!(get("id"), orthanc_id(&path));

            let stored = (backend.blob_path)(&get("blob_key"));
            let stored_len = std::fs::metadata(&stored).expect("blob exists").len();
            assert_eq!(
                row.try_get::<i64, _>("file_size").unwrap() as u64,
                stored_len
            );
            assert_eq!(
                dicomgen::file_transfer_syntax(&stored).unwrap(),
                syntax.uid()
            );
            let sent = dicomgen::dataset_bytes(&instance.path).unwrap();
            let kept = dicomgen::dataset_bytes(&stored).unwrap();
            if *syntax == Syntax::Deflated {
                // storescu inflates and deflates again on the way; compare what it encodes.
                assert_eq!(inflate(&kept), inflate(&sent), "{syntax:?} content differs");
            } else {
                assert!(
                    kept == sent,
                    "{syntax:?}: stored data set differs from the sent one"
                );
            }
        }
    }
    // No orphans either way: one blob per instance row.
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM instances")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(rows as usize, total);
}

fn inflate(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("raw deflate");
    out
}

/// Sends a multi-frame instance of more than 100 MB and checks it is kept whole while the
/// server's memory stays far below its size.
async fn store_large(server: &Server, backend: &Backend, work: &Path) {
    let path = work.join("large.dcm");
    let instance = dicomgen::large_multiframe(&path, 100).expect("generate large instance");
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 100 * 1024 * 1024);
    let out = dcmtk::storescu(
        "127.0.0.1",
        server.dicom_port,
        "ORTHWEB",
        &[&path],
        &["-xe"],
    )
    .await;
    assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));

    let pool = backend.pool().await;
    let key: String = sqlx::query("SELECT blob_key FROM instances WHERE sop_instance_uid = $1")
        .bind(&instance.sop_instance_uid)
        .fetch_one(&pool)
        .await
        .expect("large instance indexed")
        .get("blob_key");
    let stored = (backend.blob_path)(&key);
    assert!(dicomgen::dataset_bytes(&stored).unwrap() == dicomgen::dataset_bytes(&path).unwrap());
    let peak_mib = server.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 64,
        "server peak memory {peak_mib} MiB for a {} MiB instance",
        size >> 20
    );
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_and_folder_keep_what_was_sent() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let server = Server::start(&data, ServerConfig::default());
    let backend = Backend::folder(&data);
    store_and_check(&server, &backend, work.path()).await;
    store_large(&server, &backend, work.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_s3_keep_what_was_sent() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let Some(cloud) = Cloud::start() else { return };
    let db = cloud.pg.create_database("ingest");
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&work.path().join("data"), cloud.config(&db, "archive"));
    let backend = cloud.backend(&db, "archive");
    store_and_check(&server, &backend, work.path()).await;
    store_large(&server, &backend, work.path()).await;
}

/// Two servers share one database and one bucket and receive the same study at the same time.
#[tokio::test(flavor = "multi_thread")]
async fn two_servers_index_each_instance_once() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let Some(cloud) = Cloud::start() else { return };
    let db = cloud.pg.create_database("shared");
    let work = tempfile::tempdir().unwrap();
    let a = Server::start(&work.path().join("a"), cloud.config(&db, "shared"));
    let b = Server::start(&work.path().join("b"), cloud.config(&db, "shared"));

    let mut spec = Spec::new(7);
    spec.series.clear();
    spec.add_series("CT", 40, 32, 32, 1, Depth::U12);
    spec.add_series("CT", 40, 32, 32, 1, Depth::U12);
    let dir = work.path().join("study");
    let instances = spec.write(&dir).unwrap();
    let dirs = [&dir];
    let (sa, sb) = tokio::join!(
        dcmtk::storescu("127.0.0.1", a.dicom_port, "ORTHWEB", &dirs, &[]),
        dcmtk::storescu("127.0.0.1", b.dicom_port, "ORTHWEB", &dirs, &[]),
    );
    assert!(sa.status.success(), "{}", dcmtk::text(&sa));
    assert!(sb.status.success(), "{}", dcmtk::text(&sb));

    let pool = cloud.backend(&db, "shared").pool().await;
    let mut counts = BTreeMap::new();
    for (name, sql) in [
        ("patients", "SELECT COUNT(*) AS n FROM patients"),
        ("studies", "SELECT COUNT(*) AS n FROM studies"),
        ("series", "SELECT COUNT(*) AS n FROM series"),
        ("instances", "SELECT COUNT(*) AS n FROM instances"),
        (
            "distinct",
            "SELECT COUNT(DISTINCT sop_instance_uid) AS n FROM instances",
        ),
    ] {
        counts.insert(name, count(&pool, sql).await);
    }
    assert_eq!(counts["patients"], 1);
    assert_eq!(counts["studies"], 1);
    assert_eq!(counts["series"], 2);
    assert_eq!(counts["instances"], instances.len() as i64);
    assert_eq!(counts["distinct"], instances.len() as i64);
    // Both servers' /statistics (counters their concurrent transactions kept) say the same.
    let size = count(
        &pool,
        "SELECT CAST(SUM(file_size) AS BIGINT) AS n FROM instances",
    )
    .await;
    for server in [&a, &b] {
        let stats = server.get_json("/statistics").await;
        let got = [
            &stats["CountPatients"],
            &stats["CountStudies"],
            &stats["CountSeries"],
            &stats["CountInstances"],
        ];
        assert_eq!(
            got.map(|v| v.as_i64().unwrap()),
            [1, 1, 2, instances.len() as i64],
            "{stats}"
        );
        assert_eq!(stats["TotalDiskSize"], size.to_string(), "{stats}");
    }
    // Every second copy's blob was removed: one object per instance.
    let objects = std::fs::read_dir(cloud.s3.object_path(s3::BUCKET, "shared"))
        .unwrap()
        .count();
    assert_eq!(objects, instances.len());
}

/// On PostgreSQL the change log is numbered in commit order: a writer logs its changes last,
/// under an advisory lock kept until its commit. While another transaction holds that lock, a
/// C-STORE waits (unacknowledged); once it commits, the store goes through.
#[tokio::test(flavor = "multi_thread")]
async fn changes_wait_for_the_log_lock_on_postgres() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let Some(cloud) = Cloud::start() else { return };
    let db = cloud.pg.create_database("ordered");
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&work.path().join("s"), cloud.config(&db, "ordered"));
    let mut spec = Spec::new(11);
    spec.series.clear();
    spec.add_series("CT", 1, 16, 16, 1, Depth::U12);
    let dir = work.path().join("study");
    spec.write(&dir).unwrap();

    let pool = cloud.backend(&db, "ordered").pool().await;
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(orthweb::index::LOG_LOCK)
        .execute(&mut *holder)
        .await
        .unwrap();
    let port = server.dicom_port;
    let send =
        tokio::spawn(
            async move { dcmtk::storescu("127.0.0.1", port, "ORTHWEB", &[&dir], &[]).await },
        );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!send.is_finished(), "the store waits for the log lock");
    assert_eq!(count(&pool, "SELECT COUNT(*) AS n FROM instances").await, 0);

    holder.commit().await.unwrap();
    let sent = send.await.unwrap();
    assert!(sent.status.success(), "{}", dcmtk::text(&sent));
    assert_eq!(count(&pool, "SELECT COUNT(*) AS n FROM instances").await, 1);
    assert_eq!(count(&pool, "SELECT COUNT(*) AS n FROM changes").await, 4);
}

async fn count(pool: &AnyPool, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(pool).await.unwrap().get("n")
}

/// With `overwrite = "always"`, a second copy replaces the first: one row, pointing at the new
/// file, and the old blob gone.
#[tokio::test(flavor = "multi_thread")]
async fn overwrite_always_replaces_the_stored_copy() {
    if !dcmtk::require_tool("storescu") || !dcmtk::require_tool("dcmodify") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let server = Server::start(
        &data,
        ServerConfig::default().env("ORTHWEB_OVERWRITE", "always"),
    );
    let mut spec = Spec::new(42);
    spec.series.clear();
    spec.add_series("CT", 1, 16, 16, 1, Depth::U12);
    let instance = spec.write(&work.path().join("one")).unwrap().remove(0);
    let files = [&instance.path];
    let send = || dcmtk::storescu("127.0.0.1", server.dicom_port, "ORTHWEB", &files, &[]);
    assert!(send().await.status.success());
    let edited = std::process::Command::new("dcmodify")
        .args(["-nb", "-i", "(0020,4000)=second copy"])
        .arg(&instance.path)
        .status()
        .unwrap();
    assert!(edited.success());
    assert!(send().await.status.success());

    let backend = Backend::folder(&data);
    let pool = backend.pool().await;
    let rows = sqlx::query("SELECT blob_key FROM instances")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let stored = (backend.blob_path)(&rows[0].get::<String, _>("blob_key"));
    assert!(
        dicomgen::dataset_bytes(&stored).unwrap()
            == dicomgen::dataset_bytes(&instance.path).unwrap()
    );
    let blobs = walk_files(&data.join("blobs"));
    assert_eq!(blobs, vec![stored], "the first copy's blob is deleted");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Every transfer syntax a modality may send is accepted as offered (one presentation context
/// per syntax), compressed ones included, so files are kept in the syntax they came in.
#[tokio::test(flavor = "multi_thread")]
async fn every_transfer_syntax_is_accepted_as_offered() {
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&work.path().join("data"), ServerConfig::default());
    let syntaxes: Vec<&'static str> = vec![
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.203",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.102",
    ];
    let port = server.dicom_port;
    let proposed = syntaxes.clone();
    let accepted = common::scu::blocking(move || {
        let contexts: Vec<(&str, &[&str])> = proposed
            .iter()
            .map(|ts| (dicomgen_class(), std::slice::from_ref(ts)))
            .collect();
        let scu =
            common::scu::Scu::connect(port, "TESTSCU", "ORTHWEB", &contexts).expect("associates");
        let accepted = scu.accepted_transfer_syntaxes();
        let _ = scu.release();
        accepted
    })
    .await;
    assert_eq!(accepted, syntaxes);
}

/// A COMMIT that PostgreSQL refuses (a deferred constraint trigger here, as a full disk would)
/// is answered A700, and leaves the index writer usable: once the cause is gone, the next
/// instances are stored without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_postgres_refused_leaves_the_writer_usable() {
    let Some(cloud) = Cloud::start() else { return };
    let db = cloud.pg.create_database("refused");
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&work.path().join("s"), cloud.config(&db, "refused"));
    let mut spec = Spec::new(12);
    spec.series.clear();
    spec.add_series("CT", 3, 16, 16, 1, Depth::U12);
    let instances = spec.write(&work.path().join("study")).unwrap();
    let port = server.dicom_port;
    let store = move |instance: Instance| {
        common::scu::blocking(move || {
            let mut scu = common::scu::Scu::connect_default(port);
            let data = dicomgen::dataset_bytes(&instance.path).unwrap();
            let response = scu
                .store(&instance.sop_class_uid, &instance.sop_instance_uid, &data)
                .unwrap();
            scu.release().unwrap();
            response.status
        })
    };

    cloud.pg.psql(
        "refused",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$;
         CREATE CONSTRAINT TRIGGER disk_full AFTER INSERT ON instances
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    assert_eq!(store(instances[0].clone()).await, 0xA700);

    cloud
        .pg
        .psql("refused", "DROP TRIGGER disk_full ON instances");
    for instance in &instances {
        assert_eq!(store(instance.clone()).await, 0x0000, "{instance:?}");
    }
    let pool = cloud.backend(&db, "refused").pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) AS n FROM instances").await, 3);
}
