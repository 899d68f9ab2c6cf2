//! Headless Chromium driven over WebDriver: Debian's `chromium-driver` on a free loopback port,
//! one private profile and download folder per browser, everything killed on drop.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::{find_in_path, missing};

const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    pub client: Client,
    driver: Child,
    pub downloads: PathBuf,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or returns `None` (after [`missing`]) when
    /// they are not installed.
    pub async fn start(work: &Path) -> Option<Browser> {
        let Some(driver_bin) = find_in_path("chromedriver") else {
            missing("chromedriver (apt-get install chromium-driver)");
            return None;
        };
        if !Path::new(CHROMIUM).exists() {
            missing("chromium (apt-get install chromium)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let log = std::fs::File::create(work.join("chromedriver.log")).unwrap();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            // Its own process group, so that drop can kill Chromium with it.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let downloads = work.join("downloads");
        let profile = work.join("chromium-profile");
        std::fs::create_dir_all(&downloads).unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-background-networking",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-extensions",
                    "--no-first-run",
                    "--window-size=1440,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.to_str().unwrap(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            match builder
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot start a Chromium session through chromedriver: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            downloads,
            profile,
        })
    }

    /// Waits for an element matching a CSS selector to be in the page.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element matches {css}: {e}"))
    }

    /// Whether an element matching a CSS selector is in the page now.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Runs a script in the page and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than null/false (30 s at most).
    pub async fn until(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let started = Instant::now();
        loop {
            let value = self.js(script, args.clone()).await;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let error = self
                    .js(
                        "return document.querySelector('#error')?.textContent ?? ''",
                        vec![],
                    )
                    .await;
                let url = self.client.current_url().await.map(|u| u.to_string());
                panic!("timed out waiting for {what} (page {url:?}, error shown: {error})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Saves a screenshot of the page when `UI_SCREENSHOTS` names a folder (not `ORTHWEB_…`: the server would take it for a setting; the README's
    /// pictures are made this way), and always into `work` for a failing run to show.
    pub async fn screenshot(&self, work: &Path, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(work.join(name), &png).unwrap();
        if let Ok(dir) = std::env::var("UI_SCREENSHOTS") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(Path::new(&dir).join(name), &png).unwrap();
        }
    }

    /// Waits for a finished download (not Chromium's `.crdownload`) ending in `suffix`.
    pub async fn downloaded(&self, suffix: &str) -> PathBuf {
        let started = Instant::now();
        loop {
            let found = std::fs::read_dir(&self.downloads)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.to_string_lossy().ends_with(suffix));
            if let Some(path) = found {
                return path;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no {suffix} download in {}",
                self.downloads.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started share its process group.
        let group = nix::unistd::Pid::from_raw(-(self.driver.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
        // chromedriver starts Chromium in a process group of its own: find it by its profile.
        let mark = format!("--user-data-dir={}", self.profile.display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if cmdline.split(|b| *b == 0).any(|arg| arg == mark.as_bytes()) {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}
