//! Rendering with the blobs on S3 (the test kit's in-process S3 server, the index in SQLite):
//! the frame is fetched from the object store, by a range of the object where the server can
//! compute or look one up, by reading the object up to the frame otherwise. A middle frame of
//! instances chosen for each way, against the folder test's expectations.

use std::path::Path;

use crate::common::s3::{self, S3Server};
use crate::common::server::{Server, ServerConfig};
use crate::expect::{self, Check, InstanceSpec};
use crate::http::Client;
use crate::{Failures, pixels_checks, upload_all};

/// The instances stored, and how the server finds a frame of each (`server/render/frame.rs`,
/// `fragments.rs`).
const INSTANCES: [&str; 8] = [
    // Native pixel data: a computed range of the object.
    "multiframe.explicit_le",
    // A deflated data set: the object inflated as it streams, up to the frame.
    "multiframe.deflate",
    // A Basic Offset Table with an entry a frame: the frame's range, from the table.
    "multiframe.rle",
    "multiframe.j2k_lossy",
    // An empty table: a walk of the fragment items. RLE: a fragment a frame.
    "multiframe.rle_nobot",
    // Frames over several fragments: a fragment that starts a JPEG (SOI) starts a frame...
    "multiframe.jpeg_lossless_70_split",
    // ... or one that starts a JPEG 2000 codestream (SOC).
    "multiframe.j2k_lossless_nobot",
    // One frame: every fragment; colour, JPEG 2000 with the irreversible colour transform.
    "rgb.j2k_lossy_ict",
];

/// Where the server keeps its objects in the bucket.
const PREFIX: &str = "render";

#[tokio::test(flavor = "multi_thread")]
async fn renders_middle_frames() {
    if !expect::prerequisites(&[]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let images = work.path().join("images");
    let manifest = tokio::task::block_in_place(|| expect::make_some(&images, &INSTANCES));
    // The S3 server runs on this runtime's tasks: the server starts without blocking them.
    let s3 = S3Server::start();
    let config = ServerConfig::default()
        .arg("--storage")
        .arg(format!("s3://{}/{PREFIX}", s3::BUCKET))
        .env("ORTHWEB_S3_PATH_STYLE", "true")
        .envs(s3.env());
    let data = work.path().join("data");
    let server = tokio::task::block_in_place(|| Server::start(&data, config));
    let client = Client::new(server.url(""));
    let ids = upload_all(&client, &manifest, &images).await;

    // The files went to the bucket, not to the data folder.
    let objects = files_under(&s3.object_path(s3::BUCKET, PREFIX));
    assert!(
        objects >= ids.len(),
        "{objects} objects under s3://{}/{PREFIX} for {} instances",
        s3::BUCKET,
        ids.len()
    );
    assert_eq!(
        files_under(&data.join("blobs")),
        0,
        "blobs in the data folder"
    );

    let mut failures = Failures::default();
    let middle = |check: &Check| middle_frame(check, manifest.instance(&check.instance));
    let ran = pixels_checks(&client, &manifest, &ids, &images, middle, &mut failures).await;
    assert!(
        ran >= INSTANCES.len(),
        "only {ran} checks of a middle frame"
    );
    failures.finish(ran);
}

/// Whether the check is of the instance's middle frame (its only frame, in any request form).
fn middle_frame(check: &Check, spec: &InstanceSpec) -> bool {
    spec.frames == 1
        || check
            .request
            .starts_with(&format!("frames/{}/", spec.frames / 2))
}

/// Files in a directory tree (0 when it does not exist).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}
