//! Headless Chromium driven through chromedriver (WebDriver over HTTP), for the page tests:
//! started on a free port in its own process group, and everything it started ends when dropped.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver on a free port, with one headless Chromium session; both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver quit Chromium; killing chromedriver alone leaves
        // Chromium running. (A plain HTTP request: Drop cannot await the async client.)
        if !self.session.is_empty() {
            let host = self.base.trim_start_matches("http://").to_owned();
            if let Ok(mut conn) = std::net::TcpStream::connect(&host) {
                use std::io::{Read, Write};
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let request = format!(
                    "DELETE /session/{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let _ = conn.write_all(request.as_bytes());
                let _ = conn.read_to_end(&mut Vec::new());
            }
        }
        // Whatever is left of its process group (chromedriver and the browsers it started) goes too.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.driver.id())]).status();
        let _ = self.driver.wait();
    }
}

impl Browser {
    pub async fn start() -> Result<Browser> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, so Drop can end everything it started.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting chromedriver (Debian packages chromium and chromium-driver; `make stack-up`)",
            )?;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser { driver, base, session: String::new(), http };
        for _ in 0..100 {
            let status = browser.http.get(format!("{}/status", browser.base)).send().await;
            if let Ok(response) = status {
                let body: Value = response.json().await?;
                if body["value"]["ready"] == true {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,820", "--hide-scrollbars"]
            }
        }}});
        let created = browser.command(Method::POST, "session", capabilities).await?;
        browser.session = created["sessionId"].as_str().context("no session id")?.to_owned();
        Ok(browser)
    }

    pub async fn command(&self, method: Method, path: &str, body: Value) -> Result<Value> {
        let url = if self.session.is_empty() {
            format!("{}/{path}", self.base)
        } else {
            format!("{}/session/{}/{path}", self.base, self.session)
        };
        let mut request = self.http.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let value: Value = response.json().await?;
        ensure!(status.is_success(), "webdriver {path}: {status} {value}");
        Ok(value["value"].clone())
    }

    pub async fn open(&self, url: &str) -> Result<()> {
        self.command(Method::POST, "url", json!({ "url": url })).await.map(drop)
    }

    pub async fn eval(&self, script: &str) -> Result<Value> {
        self.command(Method::POST, "execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// Whether `script` returns `want` within `tries` × 100 ms.
    pub async fn shows(&self, script: &str, want: &str, tries: u32) -> Result<bool> {
        for _ in 0..tries {
            if self.eval(script).await? == want {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(false)
    }

    /// Saves a PNG of the page to `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let encoded = self.command(Method::GET, "screenshot", Value::Null).await?;
        let png =
            base64::engine::general_purpose::STANDARD.decode(encoded.as_str().context("no screenshot")?)?;
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from)
            .join("screenshots");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

impl Browser {
    /// The first element matching `css`.
    pub async fn find(&self, css: &str) -> Result<String> {
        let found =
            self.command(Method::POST, "element", json!({"using": "css selector", "value": css})).await?;
        found[ELEMENT].as_str().map(str::to_owned).with_context(|| format!("no element {css}: {found}"))
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        let element = self.find(css).await?;
        self.command(Method::POST, &format!("element/{element}/click"), json!({})).await.map(drop)
    }

    /// Types `text` into the element (for a file input: a path on this machine).
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let element = self.find(css).await?;
        self.command(Method::POST, &format!("element/{element}/value"), json!({"text": text})).await.map(drop)
    }

    /// Presses keys on whatever has the focus.
    pub async fn keys(&self, text: &str) -> Result<()> {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.command(Method::POST, "actions", body).await.map(drop)
    }

    /// A Chrome DevTools command (chromedriver's vendor endpoint).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        self.command(Method::POST, "goog/cdp/execute", json!({"cmd": cmd, "params": params})).await
    }

    /// The page printed to PDF on A4 paper.
    pub async fn print_a4(&self) -> Result<Vec<u8>> {
        let body = json!({"page": {"width": 21.0, "height": 29.7}, "background": true});
        let encoded = self.command(Method::POST, "print", body).await?;
        Ok(base64::engine::general_purpose::STANDARD.decode(encoded.as_str().context("no PDF")?)?)
    }
}
