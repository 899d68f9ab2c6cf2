//! The database, the bucket or the blob folder going away: stores are refused with A700
//! (Refused: Out of Resources) and leave nothing behind, C-ECHO is still answered, /readyz says
//! 503 until the backend is back, and then everything works again.

use crate::common::dcmtk;
use crate::common::dicomgen::Instance;
use crate::site::Site;
use crate::support::{cloud_site, local_site};

/// During an outage (`during` names it): storescu -v of a fresh instance is refused with A700
/// and the log says so (and names `cause`, when given); C-ECHO is still answered, the server is
/// alive (/healthz 200) but not ready (/readyz 503). Returns the refused instance.
async fn assert_stores_refused(site: &Site, during: &str, cause: Option<&str>) -> Instance {
    let failed = site.one();
    let out = site.storescu(&[&failed.path], &["-v"]).await;
    let text = dcmtk::text(&out);
    assert!(!out.status.success(), "storescu must fail: {text}");
    assert!(
        text.contains("Received Store Response (Refused: OutOfResources)"),
        "status A700 expected: {text}"
    );
    site.expect_log(&["C-STORE failed", &failed.sop_instance_uid, "0xa700"])
        .await;
    if let Some(cause) = cause {
        let log = site.log();
        assert!(log.contains(cause), "the cause is logged: {log}");
    }
    site.assert_echoes(during).await;
    assert_eq!(site.http_status("/healthz").await, 200, "alive");
    site.wait_ready(503).await;
    failed
}

/// The backend is back: ready again, nothing of `failed` kept, and serving.
async fn assert_recovered(site: &Site, failed: &Instance) {
    site.wait_ready(200).await;
    site.assert_not_stored(&failed.sop_instance_uid).await;
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_fails_stores_with_a700_and_recovers() {
    let Some((mut pg, _s3, site)) = cloud_site("dbaway") else {
        return;
    };
    site.assert_serves().await;
    assert_eq!(site.http_status("/readyz").await, 200);
    let before = site.blob_keys();
    assert_eq!(before.len(), 1);

    tokio::task::block_in_place(|| pg.stop());
    let failed =
        assert_stores_refused(&site, " while the DB is down", Some("database error")).await;
    // REST reads say the index is unavailable, in JSON, rather than failing obscurely.
    let reply = reqwest::get(site.server.url("/studies")).await.unwrap();
    assert_eq!(reply.status().as_u16(), 503);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["HttpStatus"], 503, "{body}");
    // The blob written before the index failed was removed again; nothing is spooled.
    assert_eq!(site.blob_keys(), before, "no blob left by the failed store");
    site.assert_no_spool_files().await;

    tokio::task::block_in_place(|| pg.restart());
    assert_recovered(&site, &failed).await;
    // The refused instance can be sent again.
    site.assert_stores(&failed).await;
    site.assert_blobs_match_rows().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_outage_fails_stores_with_a700_and_recovers() {
    let Some((_pg, mut s3, site)) = cloud_site("bucketaway") else {
        return;
    };
    site.assert_serves().await;

    s3.stop().await;
    let failed = assert_stores_refused(&site, " while S3 is down", Some("S3 request failed")).await;
    site.assert_not_stored(&failed.sop_instance_uid).await;

    s3.restart();
    assert_recovered(&site, &failed).await;
    site.assert_stores(&failed).await;
    site.assert_blobs_match_rows().await;
}

/// The local analogue of the bucket going away: the blob folder is replaced by a file.
#[tokio::test(flavor = "multi_thread")]
async fn blob_folder_outage_fails_stores_with_a700_and_recovers() {
    let Some(site) = local_site() else { return };
    site.assert_serves().await;
    let blobs = site.data.join("blobs");
    let away = site.data.join("blobs.away");
    std::fs::rename(&blobs, &away).unwrap();
    std::fs::write(&blobs, b"not a folder").unwrap();

    let failed = assert_stores_refused(&site, " while the blob folder is away", None).await;
    site.assert_no_spool_files().await;
    assert_eq!(site.blob_key(&failed.sop_instance_uid).await, None);

    std::fs::remove_file(&blobs).unwrap();
    std::fs::rename(&away, &blobs).unwrap();
    assert_recovered(&site, &failed).await;
}

/// A study deleted while the bucket is away: the index forgets it at once (nothing points at
/// a missing file), the blobs stay queued, and the janitor removes them once S3 is back.
#[tokio::test(flavor = "multi_thread")]
async fn blobs_deleted_while_the_bucket_is_away_are_removed_later() {
    use crate::common::server::ServerConfig;
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let Some(pg) = tokio::task::block_in_place(crate::common::pg::PgCluster::start) else {
        return;
    };
    let mut s3 = crate::common::s3::S3Server::start();
    let config = ServerConfig::default().env("ORTHWEB_BLOB_SWEEP_SECS", "1");
    let site = tokio::task::block_in_place(|| Site::cloud(&pg, &s3, "sweep", config));
    site.assert_serves().await;
    let keys = site.blob_keys();
    assert_eq!(keys.len(), 1);
    let studies = site.server.get_json("/studies").await;
    let study = studies[0].as_str().unwrap().to_string();

    s3.stop().await;
    let client = reqwest::Client::new();
    let reply = client
        .delete(site.server.url(&format!("/studies/{study}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status().as_u16(),
        200,
        "the index deletion does not wait for S3"
    );
    assert_eq!(site.http_status(&format!("/studies/{study}")).await, 404);
    assert_eq!(site.count("SELECT COUNT(*) FROM blob_deletions").await, 1);
    site.expect_log(&["could not remove a blob"]).await;

    s3.restart();
    crate::support::eventually("the queued blob to be removed", || async {
        (site.blob_keys().is_empty()
            && site.count("SELECT COUNT(*) FROM blob_deletions").await == 0)
            .then_some(())
    })
    .await;
    drop(site);
    drop(pg);
}
