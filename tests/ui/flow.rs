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

    // A viewer: no upload, no delete, and the server refuses them anyway.
    browser.goto(&ui).await;
    browser.find("button#signout").await.click().await.unwrap();
    browser.find("form#login").await;
    sign_in(&browser, VIEWER.0, VIEWER.1).await;
    study_rows(&browser, 11).await;
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
