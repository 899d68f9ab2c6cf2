//! The web UI in a real browser (headless Chromium over WebDriver) against the real binary:
//! sign in, find a study, look at its thumbnails, scroll and window in the viewer, download a
//! ZIP, upload a file, delete with a confirmation, and what a viewer may not see.
//!
//! - [`browser`] — chromedriver and Chromium, started and killed per test;
//! - [`demo`] — the studies the test sends with `storescu`;
//! - [`flow`] — the walk through the UI;
//! - [`ohif`] — the OHIF viewer on the server's DICOMweb.
//!
//! `UI_SCREENSHOTS=docs cargo test --test ui` refreshes the README's screenshots.

#[allow(dead_code)]
#[path = "../auth/cli.rs"]
mod cli;
#[path = "../common/mod.rs"]
mod common;

mod browser;
mod demo;
mod flow;
mod ohif;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_finds_views_downloads_and_uploads() {
    if !common::dcmtk::require_tool("storescu") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    flow::run(work.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ohif_shows_a_study_from_dicomweb() {
    if !common::dcmtk::require_tool("storescu") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    ohif::run(work.path()).await;
}
