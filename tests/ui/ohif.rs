//! The OHIF viewer (npm's `@ohif/app`, its built `dist/`, which `.ci/run` unpacks into
//! `target/ohif`) served at `/ohif/` on this server's DICOMweb: its study list shows the
//! studies, the study page links to it, and the viewer draws a CT slice (the viewport's pixels
//! in a screenshot are not blank).

use std::path::{Path, PathBuf};

use crate::browser::Browser;
use crate::common::dcmtk;
use crate::common::server::{Server, ServerConfig};
use crate::demo;

/// The viewer `.ci/run` unpacks (`npm pack @ohif/app`), or `ORTHWEB_TEST_OHIF_DIR`.
fn ohif_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ORTHWEB_TEST_OHIF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ohif/package/dist"));
    if dir.join("index.html").is_file() {
        return Some(dir);
    }
    crate::common::missing(&format!(
        "no OHIF viewer at {} (npm pack @ohif/app, then unpack it into target/ohif)",
        dir.display()
    ));
    None
}

pub async fn run(work: &Path) {
    let Some(dir) = ohif_dir() else {
        return;
    };
    let Some(browser) = Browser::start(work).await else {
        return;
    };
    let server = Server::start(
        &work.join("data"),
        ServerConfig::default().env("ORTHWEB_OHIF_DIR", dir.to_str().unwrap()),
    );
    let studies = work.join("studies");
    let main = demo::write_main(&studies);
    let out = dcmtk::storescu("127.0.0.1", server.dicom_port, "ORTHWEB", &[&studies], &[]).await;
    assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
    let study_uid = main[0].study_uid.clone();

    // The study list: OHIF's QIDO-RS search of this server.
    browser.goto(&server.url("/ohif/")).await;
    browser
        .until(
            "the study in OHIF's study list",
            "return document.body.innerText.includes('CT CHEST W CONTRAST')",
            vec![],
        )
        .await;
    browser.screenshot(work, "ohif-list.png").await;

    // The study page of the UI links to it.
    let study_id = crate::common::orthanc_id(&[demo::MAIN_PATIENT_ID, &study_uid]);
    browser
        .goto(&server.url(&format!("/ui/studies/{study_id}")))
        .await;
    let link = browser.find("#open-ohif").await;
    let href = link.attr("href").await.unwrap().unwrap();
    assert_eq!(
        href,
        format!("/ohif/viewer?StudyInstanceUIDs={study_uid}"),
        "the study page's OHIF link"
    );

    // The viewer: metadata, then frames over WADO-RS, drawn on its canvas. The viewport's
    // canvas is the largest one on screen: cornerstone also keeps an off-screen canvas as
    // large, which is not the one shown, and the layout may still move while OHIF settles,
    // so the rectangle is looked up again before each look at the screen.
    const VIEWPORT: &str = "const shown = [...document.querySelectorAll('canvas')]
            .map(c => c.getBoundingClientRect())
            .filter(r => r.width > 200 && r.height > 200 && r.left >= 0 && r.top >= 0
                && r.right <= window.innerWidth && r.bottom <= window.innerHeight)
            .sort((a, b) => b.width * b.height - a.width * a.height);
        return shown.length ? [shown[0].left, shown[0].top, shown[0].width, shown[0].height] : null;";
    browser.goto(&server.url(&href)).await;
    browser
        .until("a viewport shown in OHIF", VIEWPORT, vec![])
        .await;
    // Drawing takes the frames' round trips and a software WebGL: wait until the viewport
    // shows an image (its pixels vary), or fail.
    let started = std::time::Instant::now();
    let shade_count = loop {
        let rect: Option<Vec<f64>> =
            serde_json::from_value(browser.js(VIEWPORT, vec![]).await).unwrap();
        let png = browser.client.screenshot().await.unwrap();
        let shades = rect.map_or(0, |rect| distinct_shades(&png, &rect));
        if shades > 32 || started.elapsed() > std::time::Duration::from_secs(60) {
            std::fs::write(work.join("ohif-viewer.png"), &png).unwrap();
            break shades;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    browser.screenshot(work, "ohif-viewer.png").await;
    assert!(
        shade_count > 32,
        "OHIF's viewport is blank ({shade_count} shades; screenshot {})",
        work.join("ohif-viewer.png").display()
    );
}

/// Distinct gray levels in the middle half of the rectangle `rect` (CSS pixels: left, top,
/// width, height) of a PNG screenshot; a blank or uniform viewport has a handful.
fn distinct_shades(png: &[u8], rect: &[f64]) -> usize {
    let image = image::load_from_memory(png).unwrap().to_luma8();
    let (left, top, width, height) = (rect[0], rect[1], rect[2], rect[3]);
    let mut seen = [false; 256];
    let x0 = (left + width / 4.0) as u32;
    let y0 = (top + height / 4.0) as u32;
    for y in y0..(y0 + (height / 2.0) as u32).min(image.height()) {
        for x in x0..(x0 + (width / 2.0) as u32).min(image.width()) {
            seen[image.get_pixel(x, y).0[0] as usize] = true;
        }
    }
    seen.iter().filter(|s| **s).count()
}
