//! DICOMweb against the real binary, with a real client: PyPI's `dicomweb-client` (pinned in
//! `requirements.txt`, in `target/dicomweb-venv`, which `.ci/run` makes) searches at every
//! level, retrieves the study, a series and an instance, and reads series and instance
//! metadata, each answer compared tag for tag with the files sent (pydicom's `to_json_dict` as
//! the reference for DICOM JSON, `client.py`); here, the retrieved parts byte for byte, the
//! accepted-syntax rules and the errors. On SQLite + folder and on PostgreSQL + S3.

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::dcmtk;
use common::dicomgen::{self, Depth, Instance, Spec, Syntax};
use common::pg::PgCluster;
use common::s3::{self, S3Server};
use common::server::{Server, ServerConfig};

/// A viewer hosted elsewhere, allowed to call the server from a browser (CORS).
const VIEWER_ORIGIN: &str = "https://viewer.example.org";

/// The virtual environment `.ci/run` makes with `requirements.txt`.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("ORTHWEB_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dicomweb-venv/bin/python")
        });
    if python.exists() {
        return Some(python);
    }
    common::missing(&format!(
        "no Python with dicomweb-client at {} (python3 -m venv target/dicomweb-venv && \
         target/dicomweb-venv/bin/pip install -r tests/dicomweb/requirements.txt)",
        python.display()
    ));
    None
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dicomweb")
        .join(name)
}

struct Site {
    server: Server,
    python: PathBuf,
    /// A study of two series (CT 3 × 1 frame, MR 2 × 64×64 12-bit) written by the test kit.
    study: Vec<Instance>,
    study_dir: PathBuf,
    /// One instance with every kind of value DICOM JSON has a rule for (`make_rich.py`).
    rich_dir: PathBuf,
    /// A 3-frame JPEG baseline instance and a JPEG lossless one, stored as such.
    jpeg_dir: PathBuf,
    work: tempfile::TempDir,
}

impl Site {
    fn base(&self) -> String {
        self.server.url("/dicom-web")
    }

    /// `client.py SCENARIO` against the server, for the files in `folder`.
    fn client(&self, scenario: &str, folder: &Path) {
        let out = Command::new(&self.python)
            .arg(script("client.py"))
            .args([scenario, &self.base()])
            .arg(folder)
            .output()
            .expect("python runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("client.py {scenario} {}:\n{said}", folder.display());
        assert!(out.status.success(), "client.py {scenario}: {said}");
    }
}

async fn start(backend: Option<(String, &S3Server)>) -> Option<Site> {
    let python = python()?;
    if !dcmtk::require_tool("storescu") {
        return None;
    }
    let work = tempfile::tempdir().unwrap();
    let mut spec = Spec::new(41);
    spec.add_series("MR", 2, 64, 64, 1, Depth::U12);
    let study_dir = work.path().join("study");
    let study = spec.write(&study_dir).unwrap();
    let rich_dir = work.path().join("rich");
    std::fs::create_dir_all(&rich_dir).unwrap();
    let root = "1.2.826.0.1.3680043.10.1146";
    let made = Command::new(&python)
        .arg(script("make_rich.py"))
        .arg(rich_dir.join("rich.dcm"))
        .args([
            format!("{root}.1"),
            format!("{root}.1.2"),
            format!("{root}.1.2.3"),
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "make_rich.py: {made:?}");

    // Compressed, a study of its own: a 3-frame 8-bit instance in JPEG baseline, a 12-bit CT
    // one in JPEG lossless.
    let jpeg_dir = work.path().join("jpeg");
    let mut compressed = Spec::new(42);
    compressed.series.truncate(1);
    compressed.series[0].instances = 1;
    compressed.add_series("US", 1, 32, 32, 3, Depth::U8);
    let plain = compressed.write(&work.path().join("plain")).unwrap();
    std::fs::create_dir_all(&jpeg_dir).unwrap();
    for (n, syntax) in [Syntax::JpegLosslessSV1, Syntax::JpegBaseline]
        .into_iter()
        .enumerate()
    {
        if !dcmtk::require_tool(syntax.tool()) {
            return None;
        }
        let target = jpeg_dir.join(format!("{n}.dcm"));
        dicomgen::transcode(&plain[n].path, &target, syntax).unwrap();
    }

    let mut config = ServerConfig::default();
    if let Some((url, s3)) = backend {
        config = config
            .arg("--index")
            .arg(url)
            .arg("--storage")
            .arg(format!("s3://{}/dicomweb", s3::BUCKET))
            .env("ORTHWEB_S3_PATH_STYLE", "true")
            .envs(s3.env());
    }
    let server = Server::start(
        &work.path().join("data"),
        config.env(
            "ORTHWEB_CORS_ALLOWED_ORIGINS",
            format!("[\"{VIEWER_ORIGIN}\"]"),
        ),
    );
    let out = dcmtk::storescu(
        "127.0.0.1",
        server.dicom_port,
        "ORTHWEB",
        &[&study_dir, &rich_dir],
        &[],
    )
    .await;
    assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
    for (n, syntax) in [Syntax::JpegLosslessSV1, Syntax::JpegBaseline]
        .into_iter()
        .enumerate()
    {
        let file = jpeg_dir.join(format!("{n}.dcm"));
        let flag = syntax.storescu_flag().expect("a storescu flag");
        let out =
            dcmtk::storescu("127.0.0.1", server.dicom_port, "ORTHWEB", &[&file], &[flag]).await;
        assert!(
            out.status.success(),
            "storescu {flag}: {}",
            dcmtk::text(&out)
        );
    }
    Some(Site {
        server,
        python,
        study,
        study_dir,
        rich_dir,
        jpeg_dir,
        work,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_and_a_folder_serve_dicomweb_clients() {
    if let Some(site) = start(None).await {
        exercise(&site).await;
        metadata_of_a_series_larger_than_a_page(&site).await;
        metadata_is_filled_in_for_instances_stored_before(&site).await;
    }
}

/// Instances stored before the metadata was kept (its rows removed here): read from the file
/// when asked for, and all of them filled in by `orthweb migrate`.
async fn metadata_is_filled_in_for_instances_stored_before(site: &Site) {
    let url = format!(
        "sqlite://{}",
        site.server.data_dir.join("index.sqlite").display()
    );
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM instance_metadata")
        .execute(&db)
        .await
        .unwrap();
    let root = "1.2.826.0.1.3680043.10.1146";
    let metadata = get(
        site,
        &format!("/dicom-web/studies/{root}.1/series/{root}.1.2/instances/{root}.1.2.3/metadata"),
        None,
    )
    .await;
    assert_eq!(metadata.status(), 200);
    let json: serde_json::Value = metadata.json().await.unwrap();
    assert_eq!(json[0]["00100010"]["Value"][0]["Ideographic"], "山田^太郎");
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instance_metadata")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        kept, 1,
        "the rich instance's metadata, read from its file, is kept"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_orthweb"))
        .args(["migrate", "--data-dir"])
        .arg(&site.server.data_dir)
        .env_remove("ORTHWEB_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "orthweb migrate: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM instances i WHERE NOT EXISTS \
         (SELECT 1 FROM instance_metadata m WHERE m.instance = i.id)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(missing, 0, "{said}");
    assert!(said.contains("DICOMweb metadata read from"), "{said}");
    site.client("read", &site.study_dir);
    site.client("read", &site.rich_dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_s3_serve_dicomweb_clients() {
    let Some(pg) = tokio::task::block_in_place(PgCluster::start) else {
        return;
    };
    let s3 = S3Server::start();
    let url = tokio::task::block_in_place(|| pg.create_database("dicomweb"));
    if let Some(site) = start(Some((url, &s3))).await {
        exercise(&site).await;
    }
}

async fn exercise(site: &Site) {
    site.client("read", &site.study_dir);
    site.client("read", &site.rich_dir);
    site.client("read", &site.jpeg_dir);
    site.client("frames", &site.study_dir);
    site.client("frames", &site.jpeg_dir);
    let stow_dir = site.work.path().join("stow");
    let mut spec = Spec::new(43);
    spec.add_series("MR", 2, 16, 16, 1, Depth::U16);
    spec.write(&stow_dir).unwrap();
    site.client("store", &stow_dir);
    retrieved_parts_are_the_files_sent(site).await;
    accepted_syntaxes_are_honoured(site).await;
    errors_are_answered(site).await;
    rendered_and_wado_uri(site).await;
    cors_lets_the_configured_origin_in(site).await;
    let _ = site.work.path();
}

/// The parts of a `multipart/related` body, each as (its headers, its bytes).
fn parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .expect("a boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut found = Vec::new();
    let mut at = find(text, delimiter.as_bytes(), 0).expect("a first delimiter");
    loop {
        let start = at + delimiter.len();
        if text[start..].starts_with(b"--") {
            break;
        }
        let head_end = find(text, b"\r\n\r\n", start).expect("part headers end");
        let headers = String::from_utf8_lossy(&text[start..head_end]).to_string();
        let next = find(text, format!("\r\n{delimiter}").as_bytes(), head_end + 4)
            .expect("the part ends with a delimiter");
        found.push((headers, text[head_end + 4..next].to_vec()));
        at = next + 2;
    }
    found
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

async fn get(site: &Site, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(site.server.url(path));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request.send().await.unwrap()
}

async fn retrieved_parts_are_the_files_sent(site: &Site) {
    let study = &site.study[0].study_uid;
    let response = get(
        site,
        &format!("/dicom-web/studies/{study}"),
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("multipart/related; type=\"application/dicom\""));
    let body = response.bytes().await.unwrap();
    let parts = parts(&content_type, &body);
    assert_eq!(parts.len(), site.study.len());
    for (headers, bytes) in &parts {
        assert!(
            headers.contains("Content-Type: application/dicom"),
            "{headers}"
        );
        let offset = dicomgen::dataset_offset(bytes).expect("a part-10 file");
        let sent = site
            .study
            .iter()
            .find(|i| {
                let uid = i.sop_instance_uid.as_bytes();
                bytes[..offset].windows(uid.len()).any(|w| w == uid)
            })
            .expect("the part is one of the instances sent");
        assert_eq!(
            &bytes[offset..],
            dicomgen::dataset_bytes(&sent.path).unwrap().as_slice(),
            "instance {} byte for byte",
            sent.sop_instance_uid
        );
    }
}

async fn accepted_syntaxes_are_honoured(site: &Site) {
    let instance = &site.study[0];
    let path = format!(
        "/dicom-web/studies/{}/series/{}/instances/{}",
        instance.study_uid, instance.series_uid, instance.sop_instance_uid
    );
    // Stored uncompressed: JPEG cannot be made of it here.
    let jpeg =
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50";
    assert_eq!(get(site, &path, Some(jpeg)).await.status(), 406);
    // Implicit VR Little Endian is: converted, and said so in the part's headers and meta group.
    let implicit =
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2";
    let response = get(site, &path, Some(implicit)).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let body = response.bytes().await.unwrap();
    let parts = parts(&content_type, &body);
    assert_eq!(parts.len(), 1);
    assert!(
        parts[0].0.contains("transfer-syntax=1.2.840.10008.1.2\r")
            || parts[0].0.ends_with("transfer-syntax=1.2.840.10008.1.2"),
        "{}",
        parts[0].0
    );
    let file = site.work.path().join("implicit.dcm");
    std::fs::write(&file, &parts[0].1).unwrap();
    assert_eq!(
        dicomgen::file_transfer_syntax(&file).unwrap(),
        "1.2.840.10008.1.2"
    );
    // No transfer syntax named: Explicit VR Little Endian, the default of PS3.18 8.7.3.
    let default = get(
        site,
        &path,
        Some("multipart/related; type=\"application/dicom\""),
    )
    .await;
    assert_eq!(default.status(), 200);
    // Something other than DICOM parts: not acceptable.
    assert_eq!(
        get(site, &path, Some("application/json")).await.status(),
        406
    );
}

async fn errors_are_answered(site: &Site) {
    let unknown = "/dicom-web/studies/1.2.3.4.5.6.7.8.9";
    assert_eq!(get(site, unknown, None).await.status(), 404);
    assert_eq!(
        get(site, &format!("{unknown}/metadata"), None)
            .await
            .status(),
        404
    );
    let bad = get(site, "/dicom-web/studies?NoSuchAttribute=1", None).await;
    assert_eq!(bad.status(), 400);
    // A key that is not matched at this level is ignored, with a Warning.
    let ignored = get(site, "/dicom-web/studies?SOPInstanceUID=1.2", None).await;
    assert_eq!(ignored.status(), 200);
    assert!(ignored.headers().contains_key("warning"));
}

async fn rendered_and_wado_uri(site: &Site) {
    let instance = &site.study[0];
    let series = format!(
        "/dicom-web/studies/{}/series/{}",
        instance.study_uid, instance.series_uid
    );
    let one = format!("{series}/instances/{}", instance.sop_instance_uid);
    for (path, accept, media) in [
        (format!("{one}/rendered"), None, "image/jpeg"),
        (format!("{one}/rendered"), Some("image/png"), "image/png"),
        (
            format!("{one}/frames/1/rendered?viewport=32,32"),
            None,
            "image/jpeg",
        ),
        (format!("{series}/thumbnail"), None, "image/jpeg"),
        (
            format!("/dicom-web/studies/{}/thumbnail", instance.study_uid),
            None,
            "image/jpeg",
        ),
    ] {
        let response = get(site, &path, accept).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], media, "{path}");
        let body = response.bytes().await.unwrap();
        let magic: &[u8] = if media == "image/png" {
            b"\x89PNG"
        } else {
            b"\xFF\xD8"
        };
        assert!(body.starts_with(magic), "{path}: not a {media}");
    }
    let small = get(
        site,
        &format!("{one}/rendered?viewport=16,16"),
        Some("image/png"),
    )
    .await;
    let png = small.bytes().await.unwrap();
    // PNG's IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(&png[16..24], &[0, 0, 0, 16, 0, 0, 0, 16], "viewport 16×16");
    assert_eq!(
        get(site, &format!("{one}/frames/9/rendered"), None)
            .await
            .status(),
        404
    );

    let wado = |content_type: &str| {
        format!(
            "/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}&contentType={content_type}",
            instance.study_uid, instance.series_uid, instance.sop_instance_uid
        )
    };
    let file = get(site, &wado("application/dicom"), None).await;
    assert_eq!(file.status(), 200);
    let bytes = file.bytes().await.unwrap();
    let offset = dicomgen::dataset_offset(&bytes).unwrap();
    assert_eq!(
        &bytes[offset..],
        dicomgen::dataset_bytes(&instance.path).unwrap().as_slice()
    );
    let jpeg = get(site, &wado("image/jpeg"), None).await;
    assert_eq!(jpeg.headers()["content-type"], "image/jpeg");
    let png = get(site, &wado("image/png"), None).await;
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(get(site, &wado("text/html"), None).await.status(), 406);
    assert_eq!(
        get(site, "/wado?requestType=WADO", None).await.status(),
        400
    );
}

async fn cors_lets_the_configured_origin_in(site: &Site) {
    let client = reqwest::Client::new();
    let url = site.server.url("/dicom-web/studies");
    // A preflight carries no credentials: answered before authentication.
    let preflight = client
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", VIEWER_ORIGIN)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization, accept")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], VIEWER_ORIGIN);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    let search = client
        .get(&url)
        .header("Origin", VIEWER_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        search.headers()["access-control-allow-origin"],
        VIEWER_ORIGIN
    );
    // Another origin gets no permission.
    let other = client
        .get(&url)
        .header("Origin", "https://elsewhere.example.com")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

/// The server reads metadata 500 instances at a time: a series of 501 is one JSON array.
async fn metadata_of_a_series_larger_than_a_page(site: &Site) {
    let dir = site.work.path().join("large");
    let mut spec = Spec::new(45);
    spec.series.clear();
    spec.add_series("CT", 501, 8, 8, 1, Depth::U8);
    let written = spec.write(&dir).unwrap();
    let out = dcmtk::storescu("127.0.0.1", site.server.dicom_port, "ORTHWEB", &[&dir], &[]).await;
    assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
    let path = format!(
        "/dicom-web/studies/{}/series/{}/metadata",
        written[0].study_uid, written[0].series_uid
    );
    let response = get(site, &path, None).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).expect("one JSON array");
    assert_eq!(json.as_array().unwrap().len(), 501);
    let retrieved = get(
        site,
        path.trim_end_matches("/metadata"),
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
    )
    .await;
    let content_type = retrieved.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let body = retrieved.bytes().await.unwrap();
    assert_eq!(
        parts(&content_type, &body).len(),
        501,
        "every instance, over pages"
    );
}
