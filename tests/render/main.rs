//! Server-side rendering (`/instances/{id}/preview`, `/rendered` and their `/frames/{n}/`
//! forms) against pixels computed independently: `make_images.py` writes small synthetic
//! images in every transfer syntax we decode and, with pydicom and numpy, the 8-bit pixels each
//! request must answer. The real `orthweb` binary renders them; the `image` crate decodes its
//! PNGs and JPEGs here.
//!
//! - [`renders_match_pydicom`]: every image × syntax × request of the manifest (default and
//!   explicit windows, the preview stretch, colour, frames), then [`behaviour`]: resizing,
//!   JPEG output, ETags, frame numbers out of range, unknown instances. JPEG-LS without the
//!   `jpeg-ls` feature and 12-bit JPEG Extended must answer 415 with a message instead of
//!   pixels (see [`decodable`]). One server; every failure is collected and reported at the end.
//! - [`stored_on_s3::renders_middle_frames`]: the server's blobs on the test kit's S3 server,
//!   and a middle frame of instances chosen for the ways a frame is fetched from the store
//!   (a range of the object, a walk of the fragments, a streamed inflate), against the same
//!   expectations.
//! - [`large_multiframe_renders_its_last_frame`]: a multi-frame of tens of MB stored over
//!   DICOM renders its last frame without the server's memory growing with the file.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code, unused_imports)]
#[path = "../rest/support.rs"]
mod support;

mod behaviour;
mod expect;
mod http;
mod pixels;
mod stored_on_s3;

use std::collections::HashMap;
use std::path::Path;

use common::dcmtk;
use common::dicomgen;
use common::server::{Server, ServerConfig};
use expect::Check;
use http::{Client, Expect};

/// Failed checks, kept so that one run reports every wrong rendering.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn record(&mut self, what: &str, result: Result<(), String>) {
        if let Err(e) = result {
            self.0.push(format!("{what}: {e}"));
        }
    }

    fn finish(self, ran: usize) {
        assert!(
            self.0.is_empty(),
            "{} of {ran} rendering checks failed:\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

/// Whether the server renders this instance, or answers 415: its syntax may need a cargo
/// feature, or a decoder no build has yet.
fn decodable(spec: &expect::InstanceSpec) -> bool {
    match spec.needs.as_deref() {
        None => true,
        Some("jpeg-ls") => cfg!(feature = "jpeg-ls"),
        // JPEG Extended with 12-bit samples: dicom-pixeldata's JPEG decoder (jpeg-decoder 0.3)
        // reads 8-bit DCT samples only. The expected pixels are there for the day it can.
        Some("jpeg-12bit") => false,
        Some(other) => panic!("{}: unknown feature {other}", spec.name),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn renders_match_pydicom() {
    if !expect::prerequisites(&[]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let images = work.path().join("images");
    let manifest = tokio::task::block_in_place(|| expect::make_images(&images));
    let server = tokio::task::block_in_place(|| {
        Server::start(&work.path().join("data"), ServerConfig::default())
    });
    let client = Client::new(server.url(""));
    let ids = upload_all(&client, &manifest, &images).await;

    let mut failures = Failures::default();
    let mut ran = pixels_checks(&client, &manifest, &ids, &images, |_| true, &mut failures).await;
    ran += behaviour::run(&client, &manifest, &ids, &images, &mut failures).await;
    failures.finish(ran);
}

/// Uploads every instance of the manifest; their IDs by name.
async fn upload_all(
    client: &Client,
    manifest: &expect::Manifest,
    images: &Path,
) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    for instance in &manifest.instances {
        let id = client.upload(&images.join(&instance.file)).await;
        ids.insert(instance.name.clone(), id);
    }
    ids
}

/// Runs the manifest's checks that `wanted` keeps, recording failures; returns how many ran.
async fn pixels_checks(
    client: &Client,
    manifest: &expect::Manifest,
    ids: &HashMap<String, String>,
    images: &Path,
    wanted: impl Fn(&Check) -> bool,
    failures: &mut Failures,
) -> usize {
    let mut ran = 0;
    for check in manifest.checks.iter().filter(|c| wanted(c)) {
        ran += 1;
        let spec = manifest.instance(&check.instance);
        let what = format!("{} ({}) {}", check.instance, spec.syntax, check.request);
        let result = pixels_check(client, &ids[&check.instance], check, spec, images).await;
        failures.record(&what, result);
    }
    ran
}

/// One request of the manifest: the pixels it answers, or 415 for a syntax the build cannot
/// decode.
async fn pixels_check(
    client: &Client,
    id: &str,
    check: &Check,
    spec: &expect::InstanceSpec,
    images: &Path,
) -> Result<(), String> {
    let reply = client
        .get(&format!("/instances/{id}/{}", check.request), &[])
        .await;
    if !decodable(spec) {
        return reply.expect_error(415);
    }
    reply.expect_status(200)?;
    let decoded = pixels::decode(&reply.body)?;
    pixels::compare(
        &decoded.image,
        &check.load(images),
        check.max_diff,
        check.mean_diff,
    )
}

/// A multi-frame of this many MiB of pixel data (512×512×16 bits, 2 frames a MiB).
const LARGE_MIB: u32 = 40;

#[tokio::test(flavor = "multi_thread")]
async fn large_multiframe_renders_its_last_frame() {
    if !expect::prerequisites(&["storescu"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("large.dcm");
    let check = tokio::task::block_in_place(|| {
        dicomgen::large_multiframe(&file, LARGE_MIB).expect("write the multi-frame");
        expect::large(&file)
    });
    let server = tokio::task::block_in_place(|| {
        Server::start(&work.path().join("data"), ServerConfig::default())
    });
    let out = dcmtk::storescu("127.0.0.1", server.dicom_port, "ORTHWEB", &[&file], &[]).await;
    assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
    let client = Client::new(server.url(""));
    let listed = server.get_json("/instances").await;
    let id = listed[0].as_str().expect("one instance").to_string();

    let before = server.peak_rss_kib();
    let reply = client
        .get(&format!("/instances/{id}/{}", check.request), &[])
        .await;
    let after = server.peak_rss_kib();
    reply.expect_status(200).unwrap();
    let decoded = pixels::decode(&reply.body).unwrap();
    pixels::compare(
        &decoded.image,
        &check.load(work.path()),
        check.max_diff,
        check.mean_diff,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", check.request));

    // One frame is 512 KiB; the file is LARGE_MIB MiB. Rendering may cost a few frames'
    // worth of buffers, never a copy of the pixel data.
    let file_kib = std::fs::metadata(&file).unwrap().len() / 1024;
    let growth = after.saturating_sub(before);
    eprintln!("peak RSS before rendering {before} KiB, after {after} KiB ({file_kib} KiB file)");
    assert!(
        growth < file_kib / 4,
        "rendering one frame raised the server's peak RSS by {growth} KiB \
         (from {before} to {after} KiB) for a {file_kib} KiB file"
    );
}
