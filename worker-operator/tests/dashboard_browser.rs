//! The dashboard in a real browser: headless Chromium driven through
//! WebDriver (Debian's `chromium` and `chromium-driver`).
//!
//! A worker started by the command line (`run --http`) parks messages on
//! the broker; the browser opens its dashboard, filters the parked list,
//! replays one message and deletes another through the pages, and the test
//! checks the broker's queues afterwards. The overview, the parked list and
//! a detail page are photographed on the way: into `docs/` with
//! `RABBIT_WORKER_UPDATE_SCREENSHOTS=1`, else under the target directory.
//!
//! Without `/usr/bin/chromedriver` the test is skipped with a note, except
//! under `CI=true`, where that is a failure (`.ci/run` installs it).

mod dashboard_support;
mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashboard_support::{free_port, request, verdict, Payment};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use worker_core::publisher::EnqueueOptions;
use worker_core::{RetryPolicy, Task, TaskContext, TaskError, TaskOptions, Worker};
use worker_operator::cli::{exit, App};

const QUEUE: &str = "dash.browser.payments";
const PARKING: &str = "dash.browser.payments.parking";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(15);

/// Orders whose cause was fixed: they succeed from now on.
#[derive(Clone, Default)]
struct Fixed(Arc<Mutex<HashSet<String>>>);

impl Fixed {
    fn contains(&self, order: &str) -> bool {
        self.0.lock().unwrap().contains(order)
    }
}

/// Orders handled successfully.
#[derive(Clone, Default)]
struct Paid(Arc<Mutex<Vec<String>>>);

impl Paid {
    fn push(&self, order: String) {
        self.0.lock().unwrap().push(order);
    }
}

#[derive(Clone)]
struct Pay;

impl Task for Pay {
    type Payload = Payment;
    const NAME: &'static str = "payments.capture";
    const QUEUE: &'static str = QUEUE;

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::none(),
            ..TaskOptions::default()
        }
    }

    async fn run(&self, ctx: TaskContext, p: Payment) -> Result<(), TaskError> {
        let fixed = ctx
            .state::<Fixed>()
            .ok_or_else(|| TaskError::permanent("no state"))?;
        let paid = ctx
            .state::<Paid>()
            .ok_or_else(|| TaskError::permanent("no state"))?;
        if !fixed.contains(&p.order) {
            verdict(&p)?;
        }
        paid.push(p.order);
        Ok(())
    }
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver, or `None` (skip) when it is not installed and
/// this is not CI.
async fn driver() -> Option<Driver> {
    if !std::path::Path::new(CHROMEDRIVER).exists() {
        worker_testkit::skip::unless_ci(format!(
            "{CHROMEDRIVER} is missing: install Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does)"
        ));
        return None;
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    support::eventually(WAIT, "chromedriver listens", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    Some(driver)
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860"],
        }),
    );
    ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// Where screenshots go: `docs/` when asked to update them, else the target dir.
fn screenshot_dir() -> PathBuf {
    if std::env::var("RABBIT_WORKER_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
    }
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("dashboard-{name}.png")), png).unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    match client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e.text().await.unwrap(),
        Err(e) => panic!(
            "{css}: {e}; the page: {}",
            client.source().await.unwrap_or_default()
        ),
    }
}

async fn click(client: &Client, css: &str) {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The ids of the parked list's rows on the current page.
async fn listed(client: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for e in client.find_all(Locator::Css("a.msg code")).await.unwrap() {
        ids.push(e.text().await.unwrap());
    }
    ids
}

/// A message id a link must carry whole: a path step up, a query, an
/// ampersand, a fragment and an encoded slash.
const ODD_ID: &str = "../cap-6?x&y#z%2F";

async fn parked_now(conn: &lapin::Connection) -> u32 {
    support::depth(conn, PARKING).await
}

#[tokio::test]
async fn operators_filter_replay_and_delete_in_a_real_browser() {
    let Some(driver) = driver().await else {
        return;
    };
    let names = dashboard_support::queues(&Pay);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    support::delete_queues(&names).await;

    // Two payments go through, four are parked: three declined, one timed out.
    let payments = [
        ("cap-1", "O-1001", Some((false, "card declined by issuer"))),
        ("cap-2", "O-1002", None),
        (
            "cap-3",
            "O-1003",
            Some((false, "card declined: insufficient funds")),
        ),
        ("cap-4", "O-1004", Some((true, "gateway timeout after 30s"))),
        ("cap-5", "O-1005", None),
        (
            ODD_ID,
            "O-1006",
            Some((false, "card declined: expired card")),
        ),
    ];
    let setup = Worker::from_env().register(Pay);
    setup.declare_topology().await.unwrap();
    for (id, order, fail) in payments {
        let payment = Payment {
            order: order.into(),
            fail: fail.map(|(t, m)| (t, m.to_owned())),
        };
        setup
            .publisher()
            .enqueue_with::<Pay>(
                &payment,
                EnqueueOptions {
                    message_id: Some(id.into()),
                    ..EnqueueOptions::default()
                },
            )
            .await
            .unwrap();
    }

    // The worker binary's command line: consuming, with the dashboard at `/`.
    let fixed = Fixed::default();
    let paid = Paid::default();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let app = || {
        App::new("payments-worker")
            .ignore_env()
            .register(Pay)
            .state(fixed.clone())
            .state(paid.clone())
    };
    let url = worker_core::connection::default_url();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let app = app();
        let cli = app
            .try_parse_from([
                "payments-worker",
                "--url",
                &url,
                "run",
                "--http",
                &addr.to_string(),
            ])
            .unwrap();
        tokio::spawn(app.execute(cli, async move {
            let _ = stop_rx.await;
        }))
    };
    let conn = support::connect().await;
    support::eventually(
        Duration::from_secs(20),
        "four payments parked, two paid",
        || {
            let conn = &conn;
            let paid = paid.clone();
            async move { parked_now(conn).await == 4 && paid.0.lock().unwrap().len() == 2 }
        },
    )
    .await;
    assert_eq!(
        request(addr, "GET", "/healthz", &[], "").await.status,
        200,
        "probes next to the dashboard"
    );

    let client = browser(&driver).await;
    let base = format!("http://{addr}");

    // Overview: the task with its parked count; it refreshes by itself.
    client.goto(&format!("{base}/")).await.unwrap();
    let row = format!("tr[data-task=\"{}\"]", Pay::NAME);
    assert_eq!(
        text_of(&client, &format!("{row} [data-field=parked]")).await,
        "4"
    );
    assert!(text_of(&client, "#broker").await.starts_with("RabbitMQ"));
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//span[@id='refreshed'][starts-with(., 'Updated')]",
        ))
        .await
        .expect("the overview refreshes itself from /api/tasks");
    screenshot(&client, "overview").await;

    // The parked list, then filtered by text.
    click(&client, &format!("{row} a")).await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("parked"))
        .await
        .unwrap();
    assert_eq!(listed(&client).await, ["cap-1", "cap-3", "cap-4", ODD_ID]);
    client
        .find(Locator::Id("f-text"))
        .await
        .unwrap()
        .send_keys("DECLINED")
        .await
        .unwrap();
    click(&client, "#apply").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath("//span[@id='matching']/strong[.='3']"))
        .await
        .expect("3 matching");
    assert_eq!(listed(&client).await, ["cap-1", "cap-3", ODD_ID]);
    screenshot(&client, "parked").await;

    // The box in the header ticks every message on the page, and unticks them.
    for want in [true, false] {
        click(&client, "#select-page").await;
        for pick in client.find_all(Locator::Css("input.pick")).await.unwrap() {
            assert_eq!(pick.is_selected().await.unwrap(), want);
        }
    }

    // A narrow screen: nothing but the table scrolls sideways.
    client.set_window_size(375, 800).await.unwrap();
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page fits 375px: {overflow}"
    );
    client.set_window_size(1280, 860).await.unwrap();

    // The odd id's link opens its own page.
    let links = client.find_all(Locator::Css("a.msg")).await.unwrap();
    let mut odd = None;
    for link in links {
        if link.text().await.unwrap() == ODD_ID {
            odd = Some(link);
        }
    }
    odd.expect("a link for the odd id").click().await.unwrap();
    assert_eq!(
        text_of(&client, "h1").await,
        format!("Parked message {ODD_ID}")
    );
    assert!(
        text_of(&client, "#body").await.contains("O-1006"),
        "its own body"
    );
    client.back().await.unwrap();
    text_of(&client, "#parked").await;

    // Replay cap-3 (its cause is fixed): tick it, confirm, read the result.
    fixed.0.lock().unwrap().insert("O-1003".into());
    click(&client, "input.pick[value='cap-3']").await;
    click(&client, "#replay-selected").await;
    text_of(&client, "#confirm").await;
    let question = text_of(&client, "h1").await;
    assert_eq!(question, "Replay 1 message(s)?");
    click(&client, "#confirm").await;
    text_of(&client, "#result").await;
    assert_eq!(text_of(&client, "h1").await, "1 message(s) replayed");
    assert!(text_of(&client, "#result").await.contains("cap-3 replayed"));

    // Open cap-4's page: every header and the body; delete it from there.
    client
        .goto(&format!("{base}/tasks/{}/parked/messages/cap-4", Pay::NAME))
        .await
        .unwrap();
    let headers = text_of(&client, "#headers").await.to_lowercase();
    assert!(
        headers.contains("rw-park-reason") && headers.contains("\"exhausted\""),
        "{headers}"
    );
    assert!(
        text_of(&client, "#body")
            .await
            .contains("\"order\": \"O-1004\""),
        "pretty JSON"
    );
    screenshot(&client, "message").await;
    click(&client, "#delete").await;
    text_of(&client, "#confirm").await;
    assert_eq!(text_of(&client, "h1").await, "Delete 1 message(s)?");
    click(&client, "#confirm").await;
    text_of(&client, "#result").await;
    assert_eq!(text_of(&client, "h1").await, "1 message(s) deleted");
    client.close().await.unwrap();

    // The broker: cap-3 went back to work and was paid, cap-4 is gone,
    // cap-1 and cap-6 are still parked.
    support::eventually(
        Duration::from_secs(20),
        "the replayed payment is handled",
        || {
            let paid = paid.clone();
            async move { paid.0.lock().unwrap().contains(&"O-1003".to_owned()) }
        },
    )
    .await;
    assert_eq!(parked_now(&conn).await, 2);
    assert_eq!(support::depth(&conn, QUEUE).await, 0);
    let still = request(
        addr,
        "GET",
        &format!("/api/tasks/{}/parked", Pay::NAME),
        &[],
        "",
    )
    .await
    .json();
    let ids: Vec<&str> = still["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    let mut ids = ids;
    ids.sort_unstable();
    assert_eq!(ids, [ODD_ID, "cap-1"]);

    // Bound beyond loopback, an action without the token is refused and
    // takes nothing.
    let connector = worker_core::Connector::new(worker_core::ConnectionConfig::from_env());
    let spec = Arc::new(worker_core::topology::TaskSpec::new(
        Pay::NAME,
        QUEUE,
        Pay.options(),
    ));
    let access = worker_operator::dashboard::Access::for_address(
        "0.0.0.0:0".parse().unwrap(),
        Some(worker_core::connection::Secret::new("browser-test-token")),
    )
    .unwrap();
    let routes = worker_operator::dashboard::Dashboard::new(connector, vec![spec], access).router();
    let wide = worker_operator::http::serve_router("0.0.0.0:0".parse().unwrap(), routes, "wide")
        .await
        .unwrap();
    let wide_addr: SocketAddr = ([127, 0, 0, 1], wide.local_addr().port()).into();
    let refused = request(
        wide_addr,
        "POST",
        &format!("/tasks/{}/parked/act", Pay::NAME),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "action=delete&scope=matching",
    )
    .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(parked_now(&conn).await, 2, "nothing deleted");
    wide.shutdown().await;

    stop_tx.send(()).unwrap();
    let out = worker.await.unwrap();
    assert_eq!(out.code, exit::OK, "{out:?}");
}
