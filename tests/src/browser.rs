//! A real headless Chromium driven over WebDriver (fantoccini against
//! Debian's `chromedriver`), for the console's browser tests.
//!
//! `tests/run.sh` installs both (`scripts/browser.sh`); `CHROMIUM` and
//! `CHROMEDRIVER` name them, else they are looked up on `PATH`.
//! Screenshots go to `target/console-screenshots/`, kept as the run's
//! artifacts.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::workspace;

/// Where screenshots are saved.
pub fn screenshots() -> PathBuf {
    workspace().join("target/console-screenshots")
}

/// A program named by `variable`, else found on `PATH` as `name`.
fn program(variable: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run tests/run.sh, or scripts/browser.sh (Debian packages chromium and chromium-driver)")
        })
}

/// A headless Chromium with its driver, and a tokio runtime to drive it
/// from a plain test.
pub struct Browser {
    driver: Child,
    runtime: tokio::runtime::Runtime,
    /// The WebDriver session.
    pub client: Client,
}

impl Browser {
    /// Start chromedriver on a free port and open a session in a headless
    /// Chromium window of `width`×`height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut driver = Command::new(program("CHROMEDRIVER", "chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let chromium = program("CHROMIUM", "chromium");
        let session = runtime.block_on(async {
            let mut capabilities = serde_json::Map::new();
            capabilities.insert(
                "goog:chromeOptions".into(),
                json!({
                    "binary": chromium,
                    "args": [
                        "--headless=new",
                        // Root in a container has no user namespace to sandbox in.
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--hide-scrollbars",
                        format!("--window-size={width},{height}"),
                    ],
                }),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                let attempt = ClientBuilder::new(connector)
                    .capabilities(capabilities.clone())
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await;
                match attempt {
                    Ok(client) => break Ok(client),
                    Err(error) if Instant::now() > deadline => break Err(error),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let client = match session {
            Ok(client) => client,
            Err(error) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("no WebDriver session with headless Chromium: {error}");
            }
        };
        let browser = Browser {
            driver,
            runtime,
            client,
        };
        browser.resize(width, height);
        browser
    }

    /// Run one WebDriver call to its end.
    pub fn run<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(call)
    }

    /// Make the page's viewport `width`×`height` CSS pixels.
    pub fn resize(&self, width: u32, height: u32) {
        self.run(async {
            // The window's frame takes some of its size: grow the window
            // until the viewport is what was asked for.
            self.client
                .set_window_size(width, height)
                .await
                .expect("the window is resized");
            let inner = self
                .client
                .execute("return [window.innerWidth, window.innerHeight];", vec![])
                .await
                .expect("the viewport's size");
            let (inner_width, inner_height) = (
                inner[0].as_u64().unwrap_or(width.into()) as u32,
                inner[1].as_u64().unwrap_or(height.into()) as u32,
            );
            self.client
                .set_window_size(
                    width + width.saturating_sub(inner_width),
                    height + height.saturating_sub(inner_height),
                )
                .await
                .expect("the window is resized");
        });
    }

    /// Open `url`.
    pub fn open(&self, url: &str) {
        self.run(self.client.goto(url))
            .unwrap_or_else(|error| panic!("open {url}: {error}"));
    }

    /// Where the browser is.
    pub fn url(&self) -> String {
        self.run(self.client.current_url())
            .expect("the current url")
            .to_string()
    }

    /// The text of the first element matching `css`. Found and read in one
    /// script, so a live page swapping its parts in between cannot leave
    /// a stale element.
    pub fn text(&self, css: &str) -> String {
        self.texts(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no `{css}` on {}", self.url()))
    }

    /// The texts of every element matching `css` (as rendered), found and
    /// read in one script.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let found = self.run(self.client.execute(
            "return Array.from(document.querySelectorAll(arguments[0]), (element) => element.innerText.trim());",
            vec![Value::String(css.to_owned())],
        ));
        let found = found.unwrap_or_else(|error| panic!("search `{css}`: {error}"));
        found
            .as_array()
            .map(|texts| {
                texts
                    .iter()
                    .filter_map(|text| text.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether an element matches `css`.
    pub fn has(&self, css: &str) -> bool {
        self.run(self.client.find_all(Locator::Css(css)))
            .map(|found| !found.is_empty())
            .unwrap_or(false)
    }

    /// Click the first element matching `css`. A live page may swap the
    /// element out between finding and clicking it: then it is found again.
    pub fn click(&self, css: &str) {
        self.run(async {
            for _ in 0..3 {
                let element = self
                    .client
                    .find(Locator::Css(css))
                    .await
                    .unwrap_or_else(|error| panic!("no `{css}` on {}: {error}", self.url()));
                match element.click().await {
                    Err(error) if error.is_stale_element_reference() => continue,
                    clicked => {
                        clicked.unwrap_or_else(|error| panic!("click `{css}`: {error}"));
                        return;
                    }
                }
            }
            panic!("`{css}` kept being replaced before it could be clicked");
        });
    }

    /// Click the first element matching `css` and wait (up to 30 s) for
    /// the page it leads to to load.
    pub fn follow(&self, css: &str) {
        self.script("window.journeydPageBefore = true;");
        self.click(css);
        let loaded = self.wait_for(Duration::from_secs(30), |browser| {
            browser.script(
                "return window.journeydPageBefore === undefined && document.readyState === 'complete';",
            ) == Value::Bool(true)
        });
        assert!(loaded, "clicking `{css}` led to no new page");
    }

    /// Type `text` into the field matching `css`, after clearing it (found
    /// again if a live page swapped it out meanwhile).
    pub fn fill(&self, css: &str, text: &str) {
        self.run(async {
            for _ in 0..3 {
                let field = self
                    .client
                    .find(Locator::Css(css))
                    .await
                    .unwrap_or_else(|error| panic!("no `{css}` on {}: {error}", self.url()));
                let typed = match field.clear().await {
                    Ok(()) => field.send_keys(text).await,
                    Err(error) => Err(error),
                };
                match typed {
                    Err(error) if error.is_stale_element_reference() => continue,
                    typed => {
                        typed.unwrap_or_else(|error| panic!("type into `{css}`: {error}"));
                        return;
                    }
                }
            }
            panic!("`{css}` kept being replaced before it could be filled");
        });
    }

    /// Run `script` in the page and return what it returns.
    pub fn script(&self, script: &str) -> Value {
        self.run(self.client.execute(script, vec![]))
            .unwrap_or_else(|error| panic!("script {script}: {error}"))
    }

    /// Wait up to `timeout` for `check` to hold, asking every 100 ms.
    pub fn wait_for(&self, timeout: Duration, mut check: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        check(self)
    }

    /// Save a screenshot of the page as `target/console-screenshots/NAME.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .run(self.client.screenshot())
            .expect("a screenshot of the page");
        let dir = screenshots();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is saved");
        path
    }

    /// Whether the page fits its viewport's width (no sideways scrolling).
    pub fn fits_width(&self) -> bool {
        self.script("return document.documentElement.scrollWidth <= window.innerWidth;")
            .as_bool()
            .unwrap_or(false)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.runtime.block_on(client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
