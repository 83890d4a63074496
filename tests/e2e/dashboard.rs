//! The dashboard in a real browser: Debian's headless chromium driven over WebDriver
//! (chromedriver). `weir demo` runs as the real binary; the page must show the demo's
//! rollout while its canary steps up, and a click on Abort must revert it (weight back
//! to 0, phase Degraded) both in the API and on the page. Skipped, saying why, where
//! chromium or chromedriver is not installed (`.ci/run` installs both).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use weir_control::api::RolloutView;
use weir_control::state::RolloutPhase;

use crate::kit::process::{Sockets, WEIR, require, spawn_on_a_port};

/// The W3C WebDriver key under which an element reference comes back.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    for name in names {
        for dir in path.split(':').chain(["/usr/bin", "/usr/lib/chromium"]) {
            let p = std::path::Path::new(dir).join(name);
            if p.is_file() {
                return Some(p.to_string_lossy().into_owned());
            }
        }
    }
    None
}

/// Kills the child when dropped, so a failing test leaves no browser or demo behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn call(c: &Http, method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let resp = c.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{status}: {e}: {}", String::from_utf8_lossy(&bytes)))?;
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!("{status}: {v}"))
    }
}

/// A WebDriver session on chromedriver.
struct Browser {
    http: Http,
    base: String,
}

impl Browser {
    async fn cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let body = (method == "POST").then_some(body);
        call(&self.http, method, &format!("{}{path}", self.base), body)
            .await
            .map(|v| v["value"].clone())
    }

    async fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }))
            .await
            .expect("navigate");
    }

    /// The visible text of the first element matching `css`, if there is one.
    async fn text(&self, css: &str) -> Option<String> {
        let el = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await
            .ok()?;
        let id = el[ELEMENT].as_str()?.to_owned();
        // The page re-renders every second: a stale element is retried by the caller.
        self.cmd("GET", &format!("/element/{id}/text"), Value::Null)
            .await
            .ok()?
            .as_str()
            .map(str::to_owned)
    }

    /// Clicks the first element matching `css`; false if it was not there or went stale.
    async fn click(&self, css: &str) -> bool {
        let Ok(el) = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await
        else {
            return false;
        };
        let Some(id) = el[ELEMENT].as_str() else {
            return false;
        };
        self.cmd("POST", &format!("/element/{id}/click"), json!({}))
            .await
            .is_ok()
    }
}

/// The demo rollout's state, read as the CLI reads it (`None` until weir answers).
async fn rollout(c: &Http, admin: SocketAddr) -> Option<RolloutView> {
    let v = call(
        c,
        "GET",
        &format!("http://{admin}/api/v1/rollouts/demo"),
        None,
    )
    .await
    .ok()?;
    serde_json::from_value(v).ok()
}

/// Polls `check` until it gives `Ok`; panics after `within` with `what` and the last
/// state it saw.
async fn wait<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let Err(seen) = check().await else { return };
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn holds(ok: bool, seen: impl std::fmt::Display) -> Result<(), String> {
    if ok { Ok(()) } else { Err(seen.to_string()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_demo_and_its_abort_button_reverts_it() {
    let Some(chromium) = require(
        "chromium",
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
        "apt-get install chromium chromium-driver",
    ) else {
        return;
    };
    let Some(driver) = require(
        "chromedriver",
        find_program(&["chromedriver"]),
        "apt-get install chromium-driver",
    ) else {
        return;
    };

    let sockets = Sockets::bind();
    let (port, admin) = (sockets.web_addr().port(), sockets.admin_addr());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(WEIR);
    cmd.args([
        "demo",
        "--port",
        &port.to_string(),
        "--admin-port",
        &admin.port().to_string(),
    ])
    .stdout(log.reopen().unwrap())
    .stderr(Stdio::inherit());
    let _demo = Reaped(sockets.pass_to(&mut cmd).spawn().expect("weir demo"));
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    wait("the demo's admin API", Duration::from_secs(30), || async {
        let r = rollout(&http, admin).await;
        holds(r.is_some_and(|r| r.name == "demo"), "no answer yet")
    })
    .await;

    let (driver, driver_port) = spawn_on_a_port("chromedriver", |port| {
        let mut c = Command::new(&driver);
        c.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    })
    .await;
    let _driver = Reaped(driver);
    let wd = format!("http://127.0.0.1:{driver_port}");
    wait(
        "chromedriver to be ready",
        Duration::from_secs(20),
        || async {
            let v = call(&http, "GET", &format!("{wd}/status"), None).await?;
            holds(v["value"]["ready"] == true, v)
        },
    )
    .await;
    let session = call(
        &http,
        "POST",
        &format!("{wd}/session"),
        Some(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--disable-extensions",
                         "--no-first-run", "--window-size=1280,1000"]
            }
        }}})),
    )
    .await
    .expect("a browser session");
    let id = session["value"]["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned();
    let browser = Browser {
        http: http.clone(),
        base: format!("{wd}/session/{id}"),
    };

    browser.go(&format!("http://{admin}/")).await;

    // Act 1 of the demo: demo:v2 is being stepped up (the browser was started first, so
    // that the page is there while the canary is still in progress).
    wait(
        "the demo's canary demo:v2 to be progressing",
        Duration::from_secs(30),
        || async {
            let r = rollout(&http, admin).await;
            holds(
                r.as_ref().is_some_and(|r| {
                    r.canary_revision.as_deref() == Some("demo:v2") && r.canary_weight > 0.0
                }),
                format!("{r:?}"),
            )
        },
    )
    .await;

    let section = "section[data-name=\"demo\"]";
    wait(
        "the page to show the demo rollout, its steps and both revisions",
        Duration::from_secs(20),
        || async {
            let seen = browser.text(section).await.unwrap_or_default();
            holds(
                seen.contains("demo:v2 canary")
                    && seen.contains("demo:v1")
                    && seen.to_lowercase().contains("steps")
                    && seen.contains("setWeight: 5%")
                    && seen.contains("Abort"),
                seen,
            )
        },
    )
    .await;
    let title = browser.text("header h1").await;
    assert_eq!(title.as_deref(), Some("weir"));

    // Click Abort (retried while a re-render makes the button stale).
    wait(
        "a click on Abort to land",
        Duration::from_secs(10),
        || async {
            let clicked = browser
                .click(&format!("{section} button[data-action=\"abort\"]"))
                .await;
            holds(clicked, "no Abort button to click")
        },
    )
    .await;
    wait(
        "the rollout to be aborted with the canary weight at 0",
        Duration::from_secs(10),
        || async {
            let r = rollout(&http, admin).await;
            holds(
                r.as_ref().is_some_and(|r| {
                    r.aborted
                        && r.phase == Some(RolloutPhase::Degraded)
                        && r.canary_weight == 0.0
                        && r.actual_weight == 0.0
                        && r.stable_revision.as_deref() == Some("demo:v1")
                }),
                format!("{r:?}"),
            )
        },
    )
    .await;
    wait(
        "the page to show the rollout Degraded",
        Duration::from_secs(10),
        || async {
            let text = browser.text(section).await.unwrap_or_default();
            holds(text.contains("Degraded") && text.contains("aborted"), text)
        },
    )
    .await;
    let _ = browser.cmd("DELETE", "", Value::Null).await;
}
