//! Self-tests of the shared integration-test kit in `tests/common/` (no Orthweb server involved).

mod common;

use std::path::Path;
use std::process::Command;

use common::dcmtk::{self, require_tool};
use common::dicomgen::{self, Depth, Spec, Syntax};
use common::pg::PgCluster;
use common::s3::S3Server;
use dicom_dictionary_std::tags;
use sqlx::{Connection, PgConnection};

#[tokio::test(flavor = "multi_thread")]
async fn pg_cluster_serves_sqlx_with_password_auth() {
    let Some(mut pg) = tokio::task::spawn_blocking(PgCluster::start).await.unwrap() else {
        return;
    };
    let url = pg.create_database("kit");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(db, "kit");
    assert_eq!(pg.psql("kit", "SELECT 40 + 2").trim(), "42");

    // Password auth is really enforced over TCP.
    let bad = url.replace(common::pg::PASSWORD, "wrong");
    // (PgConnection, not PgPool: a pool retries failed connects until its 30 s acquire timeout.)
    assert!(
        PgConnection::connect(&bad).await.is_err(),
        "wrong password accepted"
    );

    // stop/restart keeps the data (simulated outage).
    pool.close().await;
    pg.psql("kit", "CREATE TABLE t(x int); INSERT INTO t VALUES (7)");
    pg.stop();
    assert!(
        PgConnection::connect(&url).await.is_err(),
        "connected to a stopped cluster"
    );
    pg.restart();
    assert_eq!(pg.psql("kit", "SELECT x FROM t").trim(), "7");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_put_get_auth_and_outage() {
    use aws_sdk_s3::primitives::ByteStream;
    let mut s3 = S3Server::start();
    let client = s3.client();
    let body = b"hello orthweb".repeat(1000);
    client
        .put_object()
        .bucket(s3.bucket())
        .key("studies/a/b.dcm")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("PutObject");
    let got = client
        .get_object()
        .bucket(s3.bucket())
        .key("studies/a/b.dcm")
        .send()
        .await
        .expect("GetObject");
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        &body[..]
    );
    // s3s-fs keeps objects as plain files: tests can check stored bytes directly.
    assert_eq!(
        std::fs::read(s3.object_path(s3.bucket(), "studies/a/b.dcm")).unwrap(),
        body
    );

    // Wrong secret and unknown key are refused.
    for (ak, sk) in [
        (s3.access_key(), "not-the-secret"),
        ("someone-else", s3.secret_key()),
    ] {
        let err = s3
            .client_with(ak, sk)
            .get_object()
            .bucket(s3.bucket())
            .key("studies/a/b.dcm")
            .send()
            .await;
        let err = err.expect_err("request with wrong credentials succeeded");
        let status = err.raw_response().map(|r| r.status().as_u16());
        assert_eq!(status, Some(403), "{err:?}");
    }

    // Streaming upload from a file (the SDK uses aws-chunked + trailing CRC for these) and a
    // multipart upload: both paths a server storing 100 MB instances will take.
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..12_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big"), &big).unwrap();
    let stream = ByteStream::from_path(dir.path().join("big")).await.unwrap();
    let put = client
        .put_object()
        .bucket(s3.bucket())
        .key("big")
        .body(stream);
    put.send().await.expect("streaming PutObject");
    assert!(std::fs::read(s3.object_path(s3.bucket(), "big")).unwrap() == big);
    let up = client
        .create_multipart_upload()
        .bucket(s3.bucket())
        .key("multi")
        .send()
        .await
        .unwrap();
    let mut parts = Vec::new();
    for (n, chunk) in big.chunks(6 * 1024 * 1024).enumerate() {
        let part = client
            .upload_part()
            .bucket(s3.bucket())
            .key("multi")
            .upload_id(up.upload_id().unwrap())
            .part_number(n as i32 + 1)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .expect("UploadPart");
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n as i32 + 1)
                .set_e_tag(part.e_tag().map(str::to_string))
                .build(),
        );
    }
    let done = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(parts))
        .build();
    client
        .complete_multipart_upload()
        .bucket(s3.bucket())
        .key("multi")
        .upload_id(up.upload_id().unwrap())
        .multipart_upload(done)
        .send()
        .await
        .expect("CompleteMultipartUpload");
    assert!(std::fs::read(s3.object_path(s3.bucket(), "multi")).unwrap() == big);

    // Another bucket, and the env for a spawned server.
    s3.create_bucket("second");
    client
        .head_bucket()
        .bucket("second")
        .send()
        .await
        .expect("HeadBucket");
    let env = s3.env();
    assert!(env.contains(&("AWS_ENDPOINT_URL".into(), s3.endpoint())));

    // Outage: the port refuses connections, then service resumes with the data intact.
    s3.stop().await;
    // Polled: one connect can succeed for reasons of its own (a TCP self-connect when the
    // client's ephemeral port happens to be this one), a listener that is still there
    // accepts every time.
    let mut refused = false;
    for _ in 0..20 {
        if std::net::TcpStream::connect(s3.addr()).is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "port still open after stop");
    assert!(
        client
            .head_bucket()
            .bucket(s3.bucket())
            .send()
            .await
            .is_err()
    );
    s3.restart();
    let got = client
        .get_object()
        .bucket(s3.bucket())
        .key("studies/a/b.dcm")
        .send()
        .await
        .expect("after restart");
    assert_eq!(got.content_length(), Some(body.len() as i64));
}

fn dcmdump(path: &Path, extra: &[&str]) -> String {
    let out = Command::new("dcmdump")
        .args(extra)
        .arg(path)
        .output()
        .expect("run dcmdump");
    assert!(
        out.status.success(),
        "dcmdump {}: {}",
        path.display(),
        dcmtk::text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn generator_writes_valid_deterministic_files() {
    if !require_tool("dcmdump") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = Spec::new(7);
    spec.patient_name = "Müller^Jürgen".into();
    spec.add_series("OT", 2, 17, 9, 5, Depth::U8); // odd sizes: padding path
    let files = spec.write(&dir.path().join("a")).unwrap();
    assert_eq!(files.len(), 5);
    // Same seed, same bytes; UIDs are 2.25 and unique.
    let again = spec.write(&dir.path().join("b")).unwrap();
    let mut uids = std::collections::HashSet::new();
    for (f, g) in files.iter().zip(&again) {
        assert_eq!(
            std::fs::read(&f.path).unwrap(),
            std::fs::read(&g.path).unwrap()
        );
        assert!(f.sop_instance_uid.starts_with("2.25.") && f.sop_instance_uid.len() <= 64);
        assert!(uids.insert(f.sop_instance_uid.clone()));
    }
    assert_ne!(Spec::new(8).study_uid, spec.study_uid);

    for f in &files {
        let dump = dcmdump(&f.path, &[]);
        assert!(dump.contains(&f.sop_instance_uid), "{dump}");
        assert!(dump.contains("Müller^Jürgen"), "{dump}");
        assert_eq!(
            dicomgen::file_transfer_syntax(&f.path).unwrap(),
            Syntax::ExplicitLE.uid()
        );

        // Pixel data decodes back to the documented pattern.
        let obj = dicom_object::open_file(&f.path).unwrap();
        let px = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        let (rows, cols) = if f.frames > 1 { (17, 9) } else { (64, 64) };
        let depth = if f.frames > 1 { Depth::U8 } else { Depth::U12 };
        let bpp = depth.allocated() as usize / 8;
        for frame in 0..f.frames {
            let (x, y) = (cols - 1, rows - 1);
            let at = ((frame * rows * cols + y * cols + x) as usize) * bpp;
            let v = if bpp == 1 {
                px[at] as u16
            } else {
                u16::from_le_bytes([px[at], px[at + 1]])
            };
            assert_eq!(
                v,
                dicomgen::pixel_value(depth, f.instance_number, frame, x, y)
            );
        }

        // The data set starts right after the meta group, with (0008,0005).
        let ds = dicomgen::dataset_bytes(&f.path).unwrap();
        assert_eq!(&ds[..4], &[0x08, 0x00, 0x05, 0x00]);
        let all = std::fs::read(&f.path).unwrap();
        assert!(all.ends_with(&ds));
    }
}

/// Every syntax transcodes, dcmdump reads it, the meta header carries the right UID, and lossless
/// syntaxes give back the exact pixels when decoded with dcmtk.
#[test]
fn transcode_to_every_syntax() {
    for tool in [
        "dcmconv", "dcmcjpeg", "dcmcrle", "dcmcjpls", "dcmdjpeg", "dcmdrle", "dcmdjpls", "dcmdump",
    ] {
        if !require_tool(tool) {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = Spec::new(11);
    spec.series.clear();
    spec.add_series("CT", 1, 32, 32, 1, Depth::U12);
    spec.add_series("CT", 1, 32, 32, 1, Depth::U16);
    spec.add_series("OT", 1, 32, 32, 3, Depth::U8);
    let files = spec.write(dir.path()).unwrap();
    for ts in Syntax::ALL {
        for (f, depth) in files.iter().zip([Depth::U12, Depth::U16, Depth::U8]) {
            if !ts.supports(depth) {
                continue;
            }
            let dst = dir.path().join(format!("{ts:?}-{depth:?}.dcm"));
            dicomgen::transcode(&f.path, &dst, ts).unwrap();
            assert_eq!(
                dicomgen::file_transfer_syntax(&dst).unwrap(),
                ts.uid(),
                "{ts:?}"
            );
            let dump = dcmdump(&dst, &[]);
            assert!(
                dump.contains(&f.sop_instance_uid),
                "{ts:?} lost the SOP Instance UID"
            );
            if ts.is_lossy() {
                continue;
            }
            let back = dir.path().join(format!("{ts:?}-{depth:?}-back.dcm"));
            let decoder = match ts {
                Syntax::Rle => "dcmdrle",
                Syntax::JpegLsLossless => "dcmdjpls",
                _ if ts.is_encapsulated() => "dcmdjpeg",
                _ => "dcmconv",
            };
            let out = Command::new(decoder)
                .arg("+te")
                .arg(&dst)
                .arg(&back)
                .output()
                .unwrap();
            assert!(out.status.success(), "{decoder}: {}", dcmtk::text(&out));
            let px = |p: &Path| {
                let o = dicom_object::open_file(p).unwrap();
                o.element(tags::PIXEL_DATA)
                    .unwrap()
                    .to_bytes()
                    .unwrap()
                    .into_owned()
            };
            assert!(
                px(&f.path) == px(&back),
                "{ts:?} {depth:?}: pixels changed in a lossless round trip"
            );
        }
    }
}

#[test]
fn large_multiframe_is_streamed_to_disk() {
    if !require_tool("dcmdump") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.dcm");
    let inst = dicomgen::large_multiframe(&path, 100).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size >= 100 * 1024 * 1024, "only {size} bytes");
    assert_eq!(inst.frames, 200);
    let dump = dcmdump(
        &path,
        &["-M", "+P", "NumberOfFrames", "+P", "SOPInstanceUID"],
    );
    assert!(
        dump.contains("[200]") && dump.contains(&inst.sop_instance_uid),
        "{dump}"
    );
    std::fs::remove_file(&path).unwrap();
}

/// Without a server: the wrappers run the real tools and report a refused connection as failure.
#[tokio::test(flavor = "multi_thread")]
async fn dcmtk_wrappers_run_the_tools() {
    if !require_tool("echoscu") || !require_tool("storescu") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dcmtk::echoscu("127.0.0.1", port, "ORTHWEB").await;
    assert!(!out.status.success(), "{}", dcmtk::text(&out));

    let dir = tempfile::tempdir().unwrap();
    let files = Spec::new(3).write(dir.path()).unwrap();
    let cfg = dcmtk::storescu_config(
        dir.path(),
        &[(&files[0].sop_class_uid, &[Syntax::JpegLossless.uid()])],
    )
    .unwrap();
    let cfg: Vec<&str> = cfg.iter().map(String::as_str).collect();
    let out = dcmtk::storescu("127.0.0.1", port, "ORTHWEB", &[dir.path()], &cfg).await;
    let text = dcmtk::text(&out);
    assert!(!out.status.success(), "{text}");
    // It got as far as connecting, i.e. files and the profile were accepted.
    assert!(
        text.contains("Association Request Failed") || text.contains("onnection refused"),
        "{text}"
    );
}

/// The log check every `Server` runs when dropped finds the kit's secrets in any position,
/// URL-encoded or not, and nothing in a clean log.
#[test]
fn server_logs_are_searched_for_the_secrets() {
    use common::server::{SECRETS, leaked_secrets};
    assert!(
        leaked_secrets("INFO storage ready index=postgres://orthweb:***@127.0.0.1/x").is_empty()
    );
    for secret in SECRETS {
        let log = format!("WARN connect failed url=postgres://u:{secret}@h/db\n");
        assert_eq!(leaked_secrets(&log), vec![secret]);
    }
}
