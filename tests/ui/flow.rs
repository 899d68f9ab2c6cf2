//! One walk through the UI, as a clinician and then as a viewer.

use std::path::Path;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::cli::{basic, user_ok};
use crate::common::orthanc_id;
use crate::common::server::{Server, ServerConfig};
use crate::demo;

const ADMIN: (&str, &str) = ("dr.house", "admin-password-1");
const VIEWER: (&str, &str) = ("resident", "viewer-password-1");

/// Statistics of an image in the page, drawn on a canvas: `null` until it has loaded.
const IMAGE_STATS: &str = r#"
const img = document.querySelector(arguments[0]);
if (!img || !img.complete || img.naturalWidth === 0) return null;
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth;
canvas.height = img.naturalHeight;
const g = canvas.getContext('2d');
g.drawImage(img, 0, 0);
const data = g.getImageData(0, 0, canvas.width, canvas.height).data;
const seen = new Set();
let min = 255, max = 0;
for (let i = 0; i < data.length; i += 4) {
  seen.add(data[i]);
  min = Math.min(min, data[i]);
  max = Math.max(max, data[i]);
}
return { src: img.src, width: canvas.width, height: canvas.height, min, max, levels: seen.size };
"#;

pub async fn run(work: &Path) {
    let data = work.join("data");
    let server = Server::start(&data, ServerConfig::default());
    user_ok(
        &data,
        &[],
        &["add", ADMIN.0, "--role", "admin"],
        &format!("{}\n", ADMIN.1),
    );
    user_ok(
        &data,
        &[],
        &["add", VIEWER.0, "--role", "viewer"],
        &format!("{}\n", VIEWER.1),
    );
    let main = demo::write(&work.join("studies"));
    demo::send(&work.join("studies"), server.dicom_port).await;
    let main_study = orthanc_id(&["MRN-104233", &main[0].study_uid]);
    let Some(browser) = Browser::start(work).await else {
        return;
    };
    let ui = server.url("/ui/");

    // Nobody signed in: the sign-in page; a wrong password is said so.
    browser.goto(&ui).await;
    sign_in(&browser, ADMIN.0, "not-the-password").await;
    let refused = browser
        .until(
            "the refusal",
            "return document.querySelector('#login-error')?.textContent.trim() || null",
            vec![],
        )
        .await;
    assert!(!refused.as_str().unwrap().is_empty());
    sign_in(&browser, ADMIN.0, ADMIN.1).await;
    let rows = study_rows(&browser, 11).await;
    assert!(rows.contains(&main_study), "{rows:?}");
    browser
        .until(
            "the signed-in user",
            "return document.querySelector('#user')?.textContent.includes(arguments[0])",
            vec![json!(ADMIN.0)],
        )
        .await;
    browser.screenshot(work, "ui-list.png").await;

    // Search by patient name, case-insensitive, with a wildcard: one study, and the URL keeps it.
    let form = browser.find("form#search").await;
    let name = form
        .find(fantoccini::Locator::Css("input[name=patient]"))
        .await
        .unwrap();
    name.send_keys("doe*").await.unwrap();
    form.find(fantoccini::Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(study_rows(&browser, 1).await, vec![main_study.clone()]);
    let url = browser.client.current_url().await.unwrap();
    assert!(url.as_str().to_lowercase().contains("doe"), "{url}");
    // A deep link with the search in it gives the same page.
    browser.goto(url.as_str()).await;
    assert_eq!(study_rows(&browser, 1).await, vec![main_study.clone()]);

    // The study page: details and a card with a real, non-blank thumbnail per series.
    browser
        .find(&format!("table#studies tbody tr[data-id=\"{main_study}\"]"))
        .await
        .click()
        .await
        .unwrap();
    browser.find("#study-details").await;
    let details = browser
        .until(
            "the study details",
            "const t = document.querySelector('#study-details')?.textContent || ''; \
             return t.includes('A26-0415-031') ? t : null",
            vec![],
        )
        .await;
    assert!(details.as_str().unwrap().contains("CT CHEST W CONTRAST"));
    let series_ids: Vec<String> = browser
        .until(
            "three series cards",
            "const c = [...document.querySelectorAll('.series-card')].map(e => e.dataset.id); \
             return c.length === 3 ? c : null",
            vec![],
        )
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for id in &series_ids {
        let stats = browser
            .until(
                "a thumbnail",
                IMAGE_STATS,
                vec![json!(format!(".series-card[data-id=\"{id}\"] img.thumb"))],
            )
            .await;
        assert!(
            stats["levels"].as_u64().unwrap() > 16 && stats["max"].as_u64() > stats["min"].as_u64(),
            "the thumbnail of series {id} is blank: {stats}"
        );
    }
    browser.screenshot(work, "ui-study.png").await;

    // Download the study as a ZIP: every instance in it.
    browser
        .find("a#download-study")
        .await
        .click()
        .await
        .unwrap();
    let zip_path = browser.downloaded(".zip").await;
    let archive = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let files = archive
        .file_names()
        .filter(|n| n.as_ref().is_ok_and(|n| !n.ends_with('/')))
        .count();
    assert_eq!(files, main.len(), "{}", zip_path.display());

    // The viewer on the first series: scroll to another slice, change the window.
    let first = &series_ids[0];
    browser
        .find(&format!(".series-card[data-id=\"{first}\"]"))
        .await
        .click()
        .await
        .unwrap();
    let before = browser
        .until(
            "the first slice",
            IMAGE_STATS,
            vec![json!("#viewport img#slice")],
        )
        .await;
    let label = text(&browser, "#slice-label").await;
    assert!(
        label.contains(&format!("/ {}", demo::MAIN_SLICES)),
        "{label}"
    );
    let viewport = browser.find("#viewport").await;
    viewport.click().await.unwrap();
    for _ in 0..5 {
        browser
            .client
            .active_element()
            .await
            .unwrap()
            .send_keys("\u{E015}") // WebDriver's ArrowDown
            .await
            .unwrap();
    }
    let after = browser
        .until(
            "another slice",
            &format!("const s = (() => {{ {IMAGE_STATS} }})(); return s && s.src !== arguments[1] ? s : null"),
            vec![json!("#viewport img#slice"), before["src"].clone()],
        )
        .await;
    assert_ne!(text(&browser, "#slice-label").await, label);
    assert!(after["levels"].as_u64().unwrap() > 16, "{after}");
    browser
        .find("button[data-preset=lung]")
        .await
        .click()
        .await
        .unwrap();
    let windowed = browser
        .until(
            "the lung window",
            &format!(
                "const s = (() => {{ {IMAGE_STATS} }})(); \
                 return s && s.src.includes('window-width=1500') ? s : null"
            ),
            vec![json!("#viewport img#slice")],
        )
        .await;
    let wl = text(&browser, "#wl-label").await;
    assert!(wl.contains("1500") && wl.contains("-600"), "{wl}");
    assert_ne!(windowed["src"], after["src"]);
    browser.screenshot(work, "ui-viewer.png").await;

    // A multi-frame instance plays: the frame moves on by itself.
    let cine = main.last().unwrap();
    assert!(cine.frames > 1);
    let cine_series = orthanc_id(&["MRN-104233", &cine.study_uid, &cine.series_uid]);
    browser
        .goto(&server.url(&format!("/ui/series/{cine_series}")))
        .await;
    browser
        .until(
            "the first frame",
            IMAGE_STATS,
            vec![json!("#viewport img#slice")],
        )
        .await;
    let still = text(&browser, "#slice-label").await;
    assert!(still.contains(&format!("/ {}", cine.frames)), "{still}");
    browser.find("button#play").await.click().await.unwrap();
    browser
        .until(
            "the cine to move on",
            "return document.querySelector('#slice-label').textContent !== arguments[0]",
            vec![json!(still)],
        )
        .await;
    browser.find("button#play").await.click().await.unwrap();

    // Upload a file from the list page: it is stored and appears in the list.
    browser.goto(&ui).await;
    study_rows(&browser, 11).await;
    let upload = demo::upload_file(&work.join("upload"));
    browser
        .find("input#upload-input")
        .await
        .send_keys(upload.path.to_str().unwrap())
        .await
        .unwrap();
    browser
        .until(
            "the upload's result",
            "return document.querySelector('#upload-results li[data-status=Success]') !== null",
            vec![],
        )
        .await;
    let uploaded = orthanc_id(&["MRN-990001", &upload.study_uid]);
    browser
        .until(
            "the uploaded study in the list",
            "return document.querySelector(`table#studies tbody tr[data-id=\"${arguments[0]}\"]`) !== null",
            vec![json!(uploaded)],
        )
        .await;

    // Delete it, after saying yes.
    browser
        .goto(&server.url(&format!("/ui/studies/{uploaded}")))
        .await;
    browser
        .find("button#delete-study")
        .await
        .click()
        .await
        .unwrap();
    browser
        .find("dialog#confirm[open] button#confirm-yes")
        .await
        .click()
        .await
        .unwrap();
    let api = reqwest::Client::new();
    let admin = basic(ADMIN.0, ADMIN.1);
    crate::common::eventually("the deletion", || async {
        let status = api
            .get(server.url(&format!("/studies/{uploaded}")))
            .header("authorization", &admin)
            .send()
            .await
            .unwrap()
            .status();
        (status == 404).then_some(())
    })
    .await;

    // An unknown study is said so in words.
    browser
        .goto(&server.url("/ui/studies/00000000-00000000-00000000-00000000-00000000"))
        .await;
    let error = browser
        .until(
            "an error message",
            "return document.querySelector('#error')?.textContent.trim() || null",
            vec![],
        )
        .await;
    assert!(error.as_str().unwrap().len() > 10, "{error}");

    send_and_retrieve(&browser, &server, work, &main_study).await;

    // A viewer: no upload, no delete, and the server refuses them anyway.
    browser.goto(&ui).await;
    browser.find("button#signout").await.click().await.unwrap();
    browser.find("form#login").await;
    sign_in(&browser, VIEWER.0, VIEWER.1).await;
    // The eleven sent, and the one retrieved from the other PACS.
    study_rows(&browser, 12).await;
    assert!(
        !browser.has(".admin-only").await,
        "admin controls shown to a viewer"
    );
    browser
        .goto(&server.url(&format!("/ui/studies/{main_study}")))
        .await;
    browser.find(".series-card").await;
    assert!(!browser.has("button#delete-study").await);
    assert!(!browser.has(".admin-only").await);
    let refused = api
        .delete(server.url(&format!("/studies/{main_study}")))
        .header("authorization", basic(VIEWER.0, VIEWER.1))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let _ = browser.client.clone().close().await;
}

async fn sign_in(browser: &Browser, user: &str, password: &str) {
    let form = browser.find("form#login").await;
    for (name, value) in [("username", user), ("password", password)] {
        let input = form
            .find(fantoccini::Locator::Css(&format!("input[name={name}]")))
            .await
            .unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    form.find(fantoccini::Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The study IDs of the list once it shows `count` rows.
async fn study_rows(browser: &Browser, count: usize) -> Vec<String> {
    let rows: Value = browser
        .until(
            &format!("{count} rows in the study list"),
            "const r = [...document.querySelectorAll('table#studies tbody tr[data-id]')]\
               .map(e => e.dataset.id); return r.length === arguments[0] ? r : null",
            vec![json!(count)],
        )
        .await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

async fn text(browser: &Browser, css: &str) -> String {
    browser.find(css).await.text().await.unwrap()
}

/// "Send to…" a study to another PACS (a second Orthweb) with its progress, then the Query /
/// Retrieve page: search that PACS, pick a study, retrieve it here.
async fn send_and_retrieve(browser: &Browser, server: &Server, work: &Path, main_study: &str) {
    let old = Server::start(
        &work.join("oldpacs"),
        ServerConfig::default().env("ORTHWEB_AET", "OLDPACS").env(
            "ORTHWEB_MODALITIES",
            format!(
                "[{{aet=\"ORTHWEB\", host=\"127.0.0.1\", port={}, find=true, move=true}}]",
                server.dicom_port
            ),
        ),
    );
    let theirs = crate::common::dicomgen::Spec::new(9)
        .write(&work.join("theirs"))
        .unwrap();
    let out = crate::common::dcmtk::storescu(
        "127.0.0.1",
        old.dicom_port,
        "OLDPACS",
        &[work.join("theirs")],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", crate::common::dcmtk::text(&out));
    let api = reqwest::Client::new();
    let auth = basic(ADMIN.0, ADMIN.1);
    let put = api
        .put(server.url("/modalities/oldpacs"))
        .header("authorization", &auth)
        .json(&json!({"AET": "OLDPACS", "Host": "127.0.0.1", "Port": old.dicom_port}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    // Send the main study there.
    browser
        .goto(&server.url(&format!("/ui/studies/{main_study}")))
        .await;
    browser
        .find("button#send-study")
        .await
        .click()
        .await
        .unwrap();
    browser
        .until(
            "the peer in the list",
            "return document.querySelector('#send-peer option[value=oldpacs]') ? true : null",
            vec![],
        )
        .await;
    browser.find("button#send-go").await.click().await.unwrap();
    let said = browser
        .until(
            "the transfer's end",
            "const s = document.querySelector('.send-status.ok, .send-status.error'); return s ? s.textContent : null",
            vec![],
        )
        .await;
    assert!(said.as_str().unwrap().starts_with("Sent "), "{said}");
    browser.screenshot(work, "ui-send.png").await;
    let sent = api
        .get(server.url(&format!("/studies/{main_study}/instances")))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let there = old
        .get_json(&format!("/studies/{main_study}/instances"))
        .await;
    assert_eq!(
        there.as_array().unwrap().len(),
        sent.as_array().unwrap().len()
    );
    browser
        .find("button#send-close")
        .await
        .click()
        .await
        .unwrap();

    // Find their study and retrieve it.
    browser.goto(&server.url("/ui/remote")).await;
    browser
        .until(
            "the peer to query",
            "return document.querySelector('#remote-peer option[value=oldpacs]') ? true : null",
            vec![],
        )
        .await;
    browser
        .find("#remote-id")
        .await
        .send_keys("PID9")
        .await
        .unwrap();
    browser
        .find("button#remote-search")
        .await
        .click()
        .await
        .unwrap();
    let rows = browser
        .until(
            "the answers",
            "const r = document.querySelectorAll('.remote-table tbody tr'); return r.length ? r.length : null",
            vec![],
        )
        .await;
    assert_eq!(rows, 1, "PID9 has one study there");
    browser
        .find(".remote-table .pick")
        .await
        .click()
        .await
        .unwrap();
    browser
        .find("button#remote-retrieve")
        .await
        .click()
        .await
        .unwrap();
    let state = browser
        .until(
            "the retrieval's end",
            "const s = document.querySelector('.retrieve-state.ok, .retrieve-state.error'); return s ? s.textContent : null",
            vec![],
        )
        .await;
    assert!(state.as_str().unwrap().starts_with("Retrieved"), "{state}");
    browser.screenshot(work, "ui-retrieve.png").await;
    let retrieved = orthanc_id(&["PID9", &theirs[0].study_uid]);
    let here = api
        .get(server.url(&format!("/studies/{retrieved}/instances")))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(here.as_array().unwrap().len(), theirs.len());
}
