//! What the rendering routes do besides pixels: resizing keeps the aspect ratio, JPEG on
//! request, ETags and `If-None-Match`, frame numbers out of range, unknown instances, and the
//! 415 for a syntax this build cannot decode.

use std::collections::HashMap;
use std::path::Path;

use crate::Failures;
use crate::expect::{Expected, Manifest};
use crate::http::{Client, Expect, Reply};
use crate::pixels;

/// Runs every check, recording failures; returns how many ran.
pub async fn run(
    client: &Client,
    manifest: &Manifest,
    ids: &HashMap<String, String>,
    images: &Path,
    failures: &mut Failures,
) -> usize {
    let primary = &ids[&manifest.primary];
    let default = manifest
        .checks
        .iter()
        .find(|c| c.instance == manifest.primary && c.request == "rendered")
        .expect("the manifest renders the primary instance by default")
        .load(images);
    let base = format!("/instances/{primary}");
    let mut ran = 0;
    let mut record = |what: &str, result| {
        ran += 1;
        failures.record(what, result);
    };

    record(
        "resize: width=32",
        resized(
            client,
            &format!("{base}/rendered?width=32"),
            (32, 24),
            &default,
        )
        .await,
    );
    record(
        "resize: height=12",
        resized(
            client,
            &format!("{base}/rendered?height=12"),
            (16, 12),
            &default,
        )
        .await,
    );
    record(
        "resize: width=32&height=32 fits the box",
        resized(
            client,
            &format!("{base}/rendered?width=32&height=32"),
            (32, 24),
            &default,
        )
        .await,
    );
    record(
        "resize: smooth=1",
        resized(
            client,
            &format!("{base}/rendered?width=32&smooth=1"),
            (32, 24),
            &default,
        )
        .await,
    );
    record(
        "PNG by default",
        png_by_default(client, &format!("{base}/rendered")).await,
    );
    record(
        "JPEG: format=jpeg",
        jpeg(
            client,
            &format!("{base}/rendered?format=jpeg"),
            &[],
            &default,
        )
        .await,
    );
    record(
        "JPEG: Accept: image/jpeg",
        jpeg(
            client,
            &format!("{base}/rendered"),
            &[("accept", "image/jpeg")],
            &default,
        )
        .await,
    );
    record(
        "JPEG: format=jpeg&quality=50",
        jpeg(
            client,
            &format!("{base}/rendered?format=jpeg&quality=50"),
            &[],
            &default,
        )
        .await,
    );
    record(
        "JPEG: a lower quality makes a smaller file",
        quality(client, &format!("{base}/rendered?format=jpeg")).await,
    );
    for (accept, want) in [
        ("image/jpeg, image/png;q=0.5", "image/jpeg"),
        ("image/png, image/jpeg;q=0.5", "image/png"),
        ("image/jpeg;q=0.2, image/png", "image/png"),
        ("*/*", "image/png"),
    ] {
        let reply = client
            .get(&format!("{base}/rendered"), &[("accept", accept)])
            .await;
        let result = reply
            .expect_status(200)
            .and_then(|()| content_type(&reply, want));
        record(&format!("Accept: {accept}"), result);
    }
    record("ETag and 304", etags(client, &base).await);

    let multi = manifest.instance(&manifest.multiframe);
    let multi_base = format!("/instances/{}", ids[&multi.name]);
    for kind in ["rendered", "preview"] {
        let n = multi.frames;
        let reply = client
            .get(&format!("{multi_base}/frames/{n}/{kind}"), &[])
            .await;
        record(
            &format!("multi-frame of {n}: frame {n} {kind}"),
            reply.expect_status(404),
        );
        let reply = client.get(&format!("{base}/frames/1/{kind}"), &[]).await;
        record(
            &format!("single frame: frame 1 {kind}"),
            reply.expect_status(404),
        );
        let reply = client
            .get(
                &format!("/instances/ffffffff-ffffffff-ffffffff-ffffffff-ffffffff/{kind}"),
                &[],
            )
            .await;
        record(
            &format!("unknown instance {kind}"),
            reply.expect_status(404),
        );
    }
    ran
}

/// A resized answer: the expected size (aspect kept), and close on average to the expected
/// image shrunk by box averaging (the server's filter is its own; a flip is far off).
async fn resized(
    client: &Client,
    path: &str,
    (w, h): (u32, u32),
    full: &Expected,
) -> Result<(), String> {
    let reply = client.get(path, &[]).await;
    reply.expect_status(200)?;
    let decoded = pixels::decode(&reply.body)?;
    let image = decoded.image;
    if (image.width(), image.height()) != (w, h) {
        return Err(format!(
            "{}x{}, expected {w}x{h}",
            image.width(),
            image.height()
        ));
    }
    let mean = pixels::mean_diff_to_shrunk(&image, full);
    if mean > 12.0 {
        return Err(format!(
            "mean |diff| {mean:.1} to the expected image shrunk to {w}x{h}"
        ));
    }
    Ok(())
}

async fn png_by_default(client: &Client, path: &str) -> Result<(), String> {
    let reply = client.get(path, &[]).await;
    reply.expect_status(200)?;
    content_type(&reply, "image/png")?;
    let decoded = pixels::decode(&reply.body)?;
    if decoded.format != image::ImageFormat::Png {
        return Err(format!("a {:?} body", decoded.format));
    }
    Ok(())
}

/// A JPEG of the full-size rendering: close to the expected pixels on average.
async fn jpeg(
    client: &Client,
    path: &str,
    headers: &[(&str, &str)],
    want: &Expected,
) -> Result<(), String> {
    let reply = client.get(path, headers).await;
    reply.expect_status(200)?;
    content_type(&reply, "image/jpeg")?;
    if !reply.body.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err("the body does not start with a JPEG SOI marker".into());
    }
    let decoded = pixels::decode(&reply.body)?;
    // Sharp edges ring in a JPEG: bound the average, not the worst sample.
    pixels::compare(&decoded.image, want, 255, Some(4.0))
}

/// `quality` is honoured: 10 gives a smaller JPEG than 95.
async fn quality(client: &Client, path: &str) -> Result<(), String> {
    let mut sizes = Vec::new();
    for q in [10, 95] {
        let reply = client.get(&format!("{path}&quality={q}"), &[]).await;
        reply.expect_status(200)?;
        content_type(&reply, "image/jpeg")?;
        sizes.push(reply.body.len());
    }
    if sizes[0] >= sizes[1] {
        return Err(format!(
            "quality=10 gives {} bytes, quality=95 {} bytes",
            sizes[0], sizes[1]
        ));
    }
    Ok(())
}

fn content_type(reply: &Reply, want: &str) -> Result<(), String> {
    match reply.header("content-type") {
        Some(got) if got == want => Ok(()),
        got => Err(format!("Content-Type {got:?}, expected {want}")),
    }
}

/// A rendering has an ETag; sending it back answers 304 without a body; it does not match
/// another window or another format.
async fn etags(client: &Client, base: &str) -> Result<(), String> {
    for kind in ["rendered", "preview"] {
        let path = format!("{base}/{kind}");
        let first = client.get(&path, &[]).await;
        first.expect_status(200)?;
        let etag = first
            .header("etag")
            .ok_or_else(|| format!("GET {path}: no ETag"))?
            .to_string();
        let again = client.get(&path, &[("if-none-match", &etag)]).await;
        again.expect_status(304)?;
        if !again.body.is_empty() {
            return Err(format!("{}: a body with the 304", again.what));
        }
        let other = client.get(&path, &[("if-none-match", "\"other\"")]).await;
        other.expect_status(200)?;
        if other.header("etag") != Some(etag.as_str()) {
            return Err(format!(
                "GET {path} twice: ETag {etag} then {:?}",
                other.header("etag")
            ));
        }
        if kind == "rendered" {
            for variant in ["?window-center=1500&window-width=2000", "?format=jpeg"] {
                let reply = client
                    .get(&format!("{path}{variant}"), &[("if-none-match", &etag)])
                    .await;
                // The default rendering's ETag must not validate another representation.
                reply.expect_status(200)?;
            }
        }
    }
    Ok(())
}
