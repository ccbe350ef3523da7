//! The dashboard's JSON API and its protections over plain HTTP, against
//! RabbitMQ: messages parked by a real worker are listed, filtered and
//! paged (the same rows as `parked list --json`), shown, replayed and
//! deleted by id and by filter; tokens, CSRF, cross-site requests and
//! read-only mode are enforced.

mod dashboard_support;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dashboard_support::{park_more, park_through_worker, request, verdict, Payment};
use serde_json::{json, Value};
use worker_core::connection::Secret;
use worker_core::topology::TaskSpec;
use worker_core::{RetryPolicy, Task, TaskContext, TaskError, TaskOptions};
use worker_operator::cli::{exit, App};
use worker_operator::dashboard::{Access, Dashboard};
use worker_operator::http::HttpServer;

const QUEUE: &str = "dash.api.payments";

/// A payment task with no retries (a failure parks at once), on its own
/// queue so that the tests do not share messages.
macro_rules! payment_task {
    ($task:ident, $name:literal, $queue:expr) => {
        #[derive(Clone)]
        struct $task;

        impl Task for $task {
            type Payload = Payment;
            const NAME: &'static str = $name;
            const QUEUE: &'static str = $queue;

            fn options(&self) -> TaskOptions {
                TaskOptions {
                    retry: RetryPolicy::none(),
                    ..TaskOptions::default()
                }
            }

            async fn run(&self, _: TaskContext, p: Payment) -> Result<(), TaskError> {
                verdict(&p)
            }
        }
    };
}

payment_task!(Pay, "dash_api.pay", QUEUE);
payment_task!(Pay2, "dash_api.pay_ro", "dash.api.payments_ro");
payment_task!(OddIds, "dash_api.odd_ids", "dash.api.odd_ids");
payment_task!(Bound, "dash_api.bound", "dash.api.bound");

/// Serves a dashboard of `task` on `addr`.
async fn serve_task<T: Task>(task: &T, addr: &str, access: Access, read_only: bool) -> HttpServer {
    let connector = worker_core::Connector::new(worker_core::ConnectionConfig::from_env());
    let spec = Arc::new(TaskSpec::new(T::NAME, T::QUEUE, task.options()));
    let routes = Dashboard::new(connector, vec![spec], access)
        .read_only(read_only)
        .router();
    worker_operator::http::serve_router(addr.parse().unwrap(), routes, "test dashboard")
        .await
        .unwrap()
}

/// Serves a dashboard of [`Pay`] on `addr`.
async fn serve(addr: &str, access: Access, read_only: bool) -> HttpServer {
    serve_task(&Pay, addr, access, read_only).await
}

fn failing(order: &str, transient: bool, msg: &str) -> Payment {
    Payment {
        order: order.into(),
        fail: Some((transient, msg.into())),
    }
}

fn ids(listing: &Value) -> Vec<String> {
    listing["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn csrf(addr: SocketAddr) -> String {
    let a = request(addr, "GET", "/api/session", &[], "").await;
    assert_eq!(a.status, 200, "{a:?}");
    a.json()["csrf"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn api_lists_filters_pages_shows_replays_and_deletes() {
    let payments = vec![
        (
            "pay-1".to_owned(),
            failing("A-1", false, "card DECLINED by bank"),
        ),
        (
            "pay-2".to_owned(),
            failing("A-2", false, "card declined: stolen"),
        ),
        (
            "pay-3".to_owned(),
            failing("A-3", false, "card declined twice"),
        ),
        ("pay-4".to_owned(), failing("A-4", true, "gateway timeout")),
        ("pay-5".to_owned(), failing("B-5", false, "address invalid")),
    ];
    park_through_worker(Pay, &payments, 5).await;
    let server = serve("127.0.0.1:0", Access::Loopback, false).await;
    let addr = server.local_addr();

    // The overview.
    let o = request(addr, "GET", "/api/tasks", &[], "").await.json();
    assert!(o["version"].as_str().is_some(), "{o}");
    let row = &o["tasks"][0];
    assert_eq!(
        (
            row["task"].clone(),
            row["parked"].clone(),
            row["ready"].clone()
        ),
        (json!(Pay::NAME), json!(5), json!(0)),
        "{o}"
    );
    assert_eq!(
        row["rates"],
        Value::Null,
        "no rates without a recorder: {o}"
    );

    // Everything, oldest first; listing twice shows the same order.
    let base = format!("/api/tasks/{}/parked", Pay::NAME);
    let all = request(addr, "GET", &base, &[], "").await.json();
    assert_eq!(
        (all["total"].clone(), all["matching"].clone()),
        (json!(5), json!(5)),
        "{all}"
    );
    assert_eq!(ids(&all), ["pay-1", "pay-2", "pay-3", "pay-4", "pay-5"]);
    assert_eq!(all["messages"][3]["reason"], "exhausted", "{all}");
    assert_eq!(all["messages"][0]["reason"], "permanent", "{all}");
    let again = request(addr, "GET", &base, &[], "").await.json();
    assert_eq!(ids(&again), ids(&all), "reading never reorders");

    // Filters: reason, text in the error (any case) or body, time range; pages.
    let get = |q: String| {
        let path = format!("{base}?{q}");
        async move { request(addr, "GET", &path, &[], "").await.json() }
    };
    let by_reason = get("reason=exhausted".into()).await;
    assert_eq!(
        (ids(&by_reason), by_reason["matching"].clone()),
        (vec!["pay-4".to_owned()], json!(1))
    );
    let by_text = get("text=DECLINED".into()).await;
    assert_eq!(ids(&by_text), ["pay-1", "pay-2", "pay-3"]);
    assert_eq!(
        ids(&get("text=b-5".into()).await),
        ["pay-5"],
        "text in the body"
    );
    let page = get("text=declined&offset=1&limit=1".into()).await;
    assert_eq!(
        (ids(&page), page["matching"].clone()),
        (vec!["pay-2".to_owned()], json!(3))
    );
    assert!(ids(&get("since=2999-01-01T00:00:00Z".into()).await).is_empty());
    assert_eq!(
        ids(&get("until=2999-01-01T00:00:00Z&since=1h".into()).await).len(),
        5
    );
    let bad = request(addr, "GET", &format!("{base}?since=soon"), &[], "").await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.json()["error"].as_str().unwrap().contains("RFC 3339"));

    // `parked list --json` prints exactly the API's listing.
    let app = App::new("pay-worker").ignore_env().register(Pay);
    let url = worker_core::connection::default_url();
    let cli = app
        .try_parse_from([
            "pay-worker",
            "--url",
            &url,
            "parked",
            "list",
            Pay::NAME,
            "--json",
            "--grep",
            "declined",
            "--offset",
            "1",
            "--limit",
            "1",
        ])
        .unwrap();
    let out = app.execute(cli, std::future::pending()).await;
    assert_eq!(out.code, exit::OK, "{out:?}");
    let printed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(printed, page, "CLI and API rows agree");

    // One message, every header and the body.
    let one = request(addr, "GET", &format!("{base}/messages/pay-2"), &[], "")
        .await
        .json();
    assert_eq!(one["headers"]["rw-park-reason"], "permanent", "{one}");
    assert_eq!(one["body"]["order"], "A-2", "{one}");
    let missing = request(addr, "GET", &format!("{base}/messages/nope"), &[], "").await;
    assert_eq!(missing.status, 404, "{missing:?}");

    // Replay by ids: refused without the CSRF token, then done.
    let body = r#"{"ids":["pay-2","nope"]}"#;
    let refused = request(
        addr,
        "POST",
        &format!("{base}/replay"),
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let token = csrf(addr).await;
    let headers = [
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", token.as_str()),
    ];
    let replayed = request(addr, "POST", &format!("{base}/replay"), &headers, body)
        .await
        .json();
    assert_eq!(replayed["done"], json!(["pay-2"]), "{replayed}");
    assert_eq!(replayed["not_found"], json!(["nope"]), "{replayed}");
    assert_eq!(replayed["to"], json!(QUEUE), "{replayed}");
    let conn = support::connect().await;
    assert_eq!(
        support::depth(&conn, QUEUE).await,
        1,
        "the copy is in the work queue"
    );
    let after = request(addr, "GET", &base, &[], "").await.json();
    let mut still = ids(&after);
    still.sort();
    assert_eq!(still, ["pay-1", "pay-3", "pay-4", "pay-5"]);

    // The pages' forms: a confirmation that counts what the filter matches.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let page_base = format!("/tasks/{}/parked", Pay::NAME);
    let confirm = request(
        addr,
        "POST",
        &format!("{page_base}/confirm?csrf={token}"),
        &form,
        "action=delete&scope=matching&text=declined&reason=&since=&until=",
    )
    .await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    assert!(
        confirm.body.contains("Delete 2 message(s)?")
            && confirm
                .body
                .contains("the 2 message(s) matching the filter now"),
        "{}",
        confirm.body
    );
    assert!(
        confirm.body.contains("name=\"text\" value=\"declined\""),
        "the filter is carried to the last step"
    );
    let nothing = request(
        addr,
        "POST",
        &format!("{page_base}/act?csrf={token}"),
        &form,
        "action=replay&scope=selected",
    )
    .await;
    assert_eq!(nothing.status, 400, "no id ticked: {nothing:?}");

    // Delete by filter, then by ids.
    let deleted = request(
        addr,
        "POST",
        &format!("{base}/delete"),
        &headers,
        r#"{"filter":{"text":"declined"}}"#,
    )
    .await
    .json();
    let mut done: Vec<String> = serde_json::from_value(deleted["done"].clone()).unwrap();
    done.sort();
    assert_eq!(done, ["pay-1", "pay-3"], "{deleted}");
    let deleted = request(
        addr,
        "POST",
        &format!("{base}/delete"),
        &headers,
        r#"{"ids":["pay-5"]}"#,
    )
    .await
    .json();
    assert_eq!(deleted["done"], json!(["pay-5"]), "{deleted}");
    let result = request(
        addr,
        "POST",
        &format!("{page_base}/act?csrf={token}"),
        &form,
        "action=delete&scope=selected&ids=pay-5",
    )
    .await;
    assert!(
        result.body.contains("0 message(s) deleted") && result.body.contains("not parked"),
        "the result page says what became of each id: {}",
        result.body
    );
    let left = request(addr, "GET", &base, &[], "").await.json();
    assert_eq!(ids(&left), ["pay-4"]);
    assert_eq!(support::depth(&conn, &format!("{QUEUE}.parking")).await, 1);

    // Bodies that pick nothing or too much are refused.
    for body in [
        "{}",
        r#"{"filter":{}}"#,
        r#"{"all":true,"ids":["x"]}"#,
        "not json",
    ] {
        let a = request(addr, "POST", &format!("{base}/delete"), &headers, body).await;
        assert_eq!(a.status, 400, "{body}: {a:?}");
    }
    assert_eq!(
        request(addr, "GET", "/api/tasks/nope/parked", &[], "")
            .await
            .status,
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn beyond_loopback_the_token_is_required_and_actions_need_csrf() {
    let server = serve(
        "0.0.0.0:0",
        Access::for_address(
            "0.0.0.0:0".parse().unwrap(),
            Some(Secret::new("tok-123-of-16-bytes")),
        )
        .unwrap(),
        false,
    )
    .await;
    let addr: SocketAddr = ([127, 0, 0, 1], server.local_addr().port()).into();
    let replay = format!("/api/tasks/{}/parked/replay", Pay::NAME);

    let anonymous = request(addr, "GET", "/", &[], "").await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(
        anonymous.head.contains("www-authenticate: basic"),
        "{anonymous:?}"
    );
    let action = request(addr, "POST", &replay, &[], r#"{"ids":["x"]}"#).await;
    assert_eq!(
        action.status, 401,
        "an action without the token: {action:?}"
    );
    let wrong = request(
        addr,
        "POST",
        &replay,
        &[("Authorization", "Bearer tok-124")],
        r#"{"ids":["x"]}"#,
    )
    .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");

    // Basic auth with the token as password (what a browser sends).
    let session = request(
        addr,
        "GET",
        "/api/session",
        &[("Authorization", "Basic eDp0b2stMTIzLW9mLTE2LWJ5dGVz")],
        "",
    )
    .await;
    assert_eq!(session.status, 200, "{session:?}");
    let csrf = session.json()["csrf"].as_str().unwrap().to_owned();
    assert!(
        session.head.contains("cache-control: no-store"),
        "{session:?}"
    );
    assert!(
        session.head.contains("x-frame-options: deny"),
        "{session:?}"
    );
    // Basic auth is ambient: an action needs the CSRF token too.
    let basic = [("Authorization", "Basic eDp0b2stMTIzLW9mLTE2LWJ5dGVz")];
    let no_csrf = request(addr, "POST", &replay, &basic, r#"{"ids":["x"]}"#).await;
    assert_eq!(no_csrf.status, 403, "{no_csrf:?}");
    // Cross-site requests are refused whatever they carry.
    let host = addr.to_string();
    for cross in [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let a = request(
            addr,
            "POST",
            &replay,
            &[
                ("Authorization", "Bearer tok-123-of-16-bytes"),
                ("X-CSRF-Token", &csrf),
                ("Host", &host),
                cross,
            ],
            r#"{"ids":["x"]}"#,
        )
        .await;
        assert_eq!(a.status, 403, "{cross:?}: {a:?}");
    }
    // A page form without the CSRF token is refused before anything
    // happens (basic auth is what a browser sends by itself).
    let form = request(
        addr,
        "POST",
        &format!("/tasks/{}/parked/act", Pay::NAME),
        &[
            basic[0],
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "action=delete&ids=x",
    )
    .await;
    assert_eq!(form.status, 403, "{form:?}");
    server.shutdown().await;

    // Without a token, an address beyond loopback does not start.
    let app = App::new("pay-worker").ignore_env().register(Pay);
    let cli = app
        .try_parse_from(["pay-worker", "dashboard", "--http", "0.0.0.0:0"])
        .unwrap();
    let out = app.execute(cli, std::future::pending()).await;
    assert_eq!(out.code, exit::CONFIG, "{out:?}");
    assert!(
        out.stderr.contains("RABBIT_WORKER_DASHBOARD_TOKEN"),
        "{out:?}"
    );
}

#[tokio::test]
async fn without_a_token_only_loopback_host_names_are_answered() {
    let server = serve("127.0.0.1:0", Access::Loopback, false).await;
    let addr = server.local_addr();
    let rebound = request(
        addr,
        "GET",
        "/api/session",
        &[("Host", "attacker.example:80")],
        "",
    )
    .await;
    assert_eq!(rebound.status, 403, "{rebound:?}");
    let local = request(
        addr,
        "GET",
        "/api/session",
        &[("Host", &format!("localhost:{}", addr.port()))],
        "",
    )
    .await;
    assert_eq!(local.status, 200, "{local:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn read_only_refuses_every_action_and_hides_the_buttons() {
    park_through_worker(
        Pay2,
        &[("ro-1".to_owned(), failing("R-1", false, "nope"))],
        1,
    )
    .await;
    let server = serve_task(&Pay2, "127.0.0.1:0", Access::Loopback, true).await;
    let addr = server.local_addr();
    let session = request(addr, "GET", "/api/session", &[], "").await.json();
    assert_eq!(session["read_only"], true);
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    for path in ["replay", "delete"] {
        let a = request(
            addr,
            "POST",
            &format!("/api/tasks/{}/parked/{path}", Pay2::NAME),
            &[("X-CSRF-Token", &csrf)],
            r#"{"ids":["ro-1"]}"#,
        )
        .await;
        assert_eq!(a.status, 403, "{path}: {a:?}");
    }
    let page = request(
        addr,
        "GET",
        &format!("/tasks/{}/parked", Pay2::NAME),
        &[],
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("ro-1"), "the list is shown");
    assert!(
        !page.body.contains("name=\"action\"") && !page.body.contains("csrf"),
        "no action offered: {}",
        page.body
    );
    let conn = support::connect().await;
    assert_eq!(
        support::depth(&conn, &format!("{}.parking", Pay2::QUEUE)).await,
        1,
        "nothing taken"
    );
    server.shutdown().await;
}

/// The `dashboard` command serves until stopped and answers the API.
#[tokio::test]
async fn dashboard_command_serves_until_stopped() {
    let port = dashboard_support::free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let app = App::new("pay-worker").ignore_env().register(Pay2);
    let url = worker_core::connection::default_url();
    let cli = app
        .try_parse_from([
            "pay-worker",
            "--url",
            &url,
            "dashboard",
            "--http",
            &addr.to_string(),
        ])
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.execute(cli, async move {
        let _ = stop_rx.await;
    }));
    support::eventually(
        Duration::from_secs(10),
        "the dashboard answers",
        || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
    .await;
    let o = request(addr, "GET", "/api/tasks", &[], "").await;
    assert_eq!(o.status, 200, "{o:?}");
    assert_eq!(o.json()["tasks"][0]["task"], Pay2::NAME);
    let page = request(addr, "GET", "/", &[], "").await;
    assert!(
        page.body.contains(Pay2::NAME) && page.head.contains("text/html"),
        "{page:?}"
    );
    assert_eq!(
        request(addr, "GET", "/metrics", &[], "").await.status,
        404,
        "no probes without run"
    );
    stop_tx.send(()).unwrap();
    let out = running.await.unwrap();
    assert_eq!(out.code, exit::OK, "{out:?}");
}

#[derive(Clone)]
struct Pay3;

impl Task for Pay3 {
    type Payload = Payment;
    const NAME: &'static str = "dash_api.pay_probe";
    const QUEUE: &'static str = "dash.api.payments_probe";

    async fn run(&self, _: TaskContext, p: Payment) -> Result<(), TaskError> {
        verdict(&p)
    }
}

/// `run --http` beyond loopback without a token: the probes as before,
/// no dashboard; with a token, both.
#[tokio::test]
async fn run_beyond_loopback_needs_a_token_for_the_dashboard_not_for_the_probes() {
    let url = worker_core::connection::default_url();
    for token in [None, Some("run-token-of-16-bytes")] {
        let port = dashboard_support::free_port();
        let bind = format!("0.0.0.0:{port}");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir =
            std::env::temp_dir().join(format!("dash-api-token-{}-{port}", std::process::id()));
        let mut args = vec![
            "w".to_owned(),
            "--url".into(),
            url.clone(),
            "run".into(),
            "--http".into(),
            bind,
        ];
        if let Some(t) = token {
            std::fs::write(&dir, format!("{t}\n")).unwrap();
            args.extend(["--dashboard-token-file".into(), dir.display().to_string()]);
        }
        let app = App::new("w").ignore_env().register(Pay3);
        let cli = app.try_parse_from(&args).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.execute(cli, async move {
            let _ = stop_rx.await;
        }));
        support::eventually(
            Duration::from_secs(20),
            "the endpoint answers",
            || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
        )
        .await;
        assert_eq!(
            request(addr, "GET", "/healthz", &[], "").await.status,
            200,
            "{token:?}"
        );
        let root = request(addr, "GET", "/", &[], "").await;
        match token {
            None => assert_eq!(root.status, 404, "no dashboard without a token: {root:?}"),
            Some(t) => {
                assert_eq!(root.status, 401, "{root:?}");
                let bearer = format!("Bearer {t}");
                let o = request(addr, "GET", "/api/tasks", &[("Authorization", &bearer)], "").await;
                assert_eq!(
                    o.status, 200,
                    "the token from the file, newline dropped: {o:?}"
                );
            }
        }
        stop_tx.send(()).unwrap();
        let out = running.await.unwrap();
        assert_eq!(out.code, exit::OK, "{out:?}");
        let _ = std::fs::remove_file(&dir);
    }
}

/// The HTML text of `s`, as the templates escape it.
fn html(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Every message id is percent-encoded in its link: an id with `/`, `..`,
/// `?`, `&` or `#` opens its own detail page (ids used to go into a path
/// segment half-encoded: `a/b` linked to a 404, `../x` to another page).
#[tokio::test]
async fn each_message_link_opens_its_own_message_whatever_its_id() {
    let odd = ["a/b", "../x", "..", "q?x=1&y=2", "h#1", "50% off"];
    let payments: Vec<(String, Payment)> = odd
        .iter()
        .map(|id| ((*id).to_owned(), failing(id, false, "odd")))
        .collect();
    park_through_worker(OddIds, &payments, odd.len() as u32).await;
    let server = serve_task(&OddIds, "127.0.0.1:0", Access::Loopback, false).await;
    let addr = server.local_addr();

    let page = request(
        addr,
        "GET",
        &format!("/tasks/{}/parked", OddIds::NAME),
        &[],
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}");
    let links: Vec<String> = page
        .body
        .split("class=\"msg\" href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().replace("&amp;", "&"))
        .collect();
    assert_eq!(links.len(), odd.len(), "a link per message: {links:?}");
    for (link, id) in links.iter().zip(odd) {
        let detail = request(addr, "GET", link, &[], "").await;
        assert_eq!(detail.status, 200, "{id:?} via {link}: {detail:?}");
        assert!(
            detail.body.contains(&html(&format!("\"order\": \"{id}\""))),
            "{id:?}: the page shows this message's body: {}",
            detail.body
        );
    }
    server.shutdown().await;
    let names = dashboard_support::queues(&OddIds);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    support::delete_queues(&names).await;
}

/// Sends `head` (a request head announcing a body) and then nothing,
/// and reads the answer; `None` when none came within `limit`.
async fn answer_to_a_head_alone(addr: SocketAddr, head: String, limit: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(limit, stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The CSRF token comes with the head, so an action without it is refused
/// before its body is read (a body announced and never sent used to be
/// waited for, then parsed); with it, a body that does not arrive within
/// its deadline is refused with `408`.
#[tokio::test]
async fn an_action_is_judged_on_its_head_and_its_body_has_a_deadline() {
    let server = serve("127.0.0.1:0", Access::Loopback, false).await;
    let addr = server.local_addr();
    let path = format!("/api/tasks/{}/parked/delete", Pay::NAME);
    let head = |extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: 200000\r\n{extra}\r\n"
        )
    };
    let refused = answer_to_a_head_alone(addr, head(""), Duration::from_secs(3))
        .await
        .expect("an answer without waiting for the body");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.contains("CSRF"), "{refused}");

    let token = csrf(addr).await;
    let started = std::time::Instant::now();
    let late = answer_to_a_head_alone(
        addr,
        head(&format!("X-CSRF-Token: {token}\r\n")),
        Duration::from_secs(20),
    )
    .await
    .expect("an answer at the body's deadline");
    assert!(late.starts_with("HTTP/1.1 408"), "{late}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "not before the deadline"
    );
    server.shutdown().await;
}

/// A bulk action acts on what the operator confirmed: matches parked after
/// the confirmation page was drawn are left alone (and counted), and when
/// the last confirmed message went away meanwhile nothing is done.
#[tokio::test]
async fn a_confirmed_bulk_action_touches_exactly_what_was_confirmed() {
    let declined = |n: u32| {
        (
            format!("b-{n}"),
            failing(&format!("B-{n}"), false, "card declined"),
        )
    };
    park_through_worker(Bound, &[declined(1), declined(2)], 2).await;
    let server = serve_task(&Bound, "127.0.0.1:0", Access::Loopback, false).await;
    let addr = server.local_addr();
    let token = csrf(addr).await;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let page = format!("/tasks/{}/parked", Bound::NAME);
    let confirm = |action: &'static str| {
        let path = format!("{page}/confirm?csrf={token}");
        async move {
            let body = format!("action={action}&scope=matching&text=declined");
            request(addr, "POST", &path, &form, &body).await
        }
    };
    let asked = confirm("delete").await;
    assert_eq!(asked.status, 200, "{asked:?}");
    assert!(
        asked.body.contains("Delete 2 message(s)?"),
        "{}",
        asked.body
    );
    assert!(
        asked.body.contains("name=\"through\" value=\"b-2\""),
        "the form names the last message confirmed: {}",
        asked.body
    );

    // Three more matches are parked before the click.
    park_more(Bound, &[declined(3), declined(4), declined(5)], 5).await;
    let clicked = request(
        addr,
        "POST",
        &format!("{page}/act?csrf={token}"),
        &form,
        "action=delete&scope=matching&text=declined&through=b-2",
    )
    .await;
    assert!(
        clicked.body.contains("2 message(s) deleted")
            && clicked.body.contains("3 further matching message(s)"),
        "{}",
        clicked.body
    );
    let base = format!("/api/tasks/{}/parked", Bound::NAME);
    let left = request(addr, "GET", &base, &[], "").await.json();
    assert_eq!(ids(&left), ["b-3", "b-4", "b-5"]);

    // Confirmed, then a colleague deletes the last confirmed one: nothing happens.
    let asked = confirm("replay").await;
    assert!(asked.body.contains("value=\"b-5\""), "{}", asked.body);
    let headers = [
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", token.as_str()),
    ];
    request(
        addr,
        "POST",
        &format!("{base}/delete"),
        &headers,
        r#"{"ids":["b-5"]}"#,
    )
    .await;
    let stale = request(
        addr,
        "POST",
        &format!("{page}/act?csrf={token}"),
        &form,
        "action=replay&scope=matching&text=declined&through=b-5",
    )
    .await;
    assert!(
        stale.body.contains("0 message(s) replayed") && stale.body.contains("Nothing was done"),
        "{}",
        stale.body
    );
    let left = request(addr, "GET", &base, &[], "").await.json();
    assert_eq!(ids(&left), ["b-3", "b-4"]);

    // The JSON API binds the same way, with a listing's last_match.
    assert_eq!(left["last_match"], "b-4", "{left}");
    park_more(Bound, &[declined(6)], 3).await;
    let bound = request(
        addr,
        "POST",
        &format!("{base}/delete"),
        &headers,
        r#"{"all":true,"through":"b-4"}"#,
    )
    .await
    .json();
    assert_eq!(bound["done"], json!(["b-3", "b-4"]), "{bound}");
    assert_eq!(bound["left_alone"], json!(1), "{bound}");
}

payment_task!(BigBody, "dash_api.big_body", "dash.api.big_body");

/// A large body is shown in part (its first 64 KiB, with its full size)
/// and the whole of it is a download, never rendered.
#[tokio::test]
async fn a_large_body_is_shown_in_part_and_downloaded_whole() {
    let order = "x".repeat(4 << 20);
    park_through_worker(
        BigBody,
        &[("big".to_owned(), failing(&order, false, "too big"))],
        1,
    )
    .await;
    let server = serve_task(&BigBody, "127.0.0.1:0", Access::Loopback, false).await;
    let addr = server.local_addr();
    let page = format!("/tasks/{}/parked/message", BigBody::NAME);
    let shown = request(addr, "GET", &format!("{page}?id=big"), &[], "").await;
    assert_eq!(shown.status, 200, "{}", shown.head);
    let size = order.len() + r#"{"order":"","fail":[false,"too big"]}"#.len();
    assert!(
        shown
            .body
            .contains(&format!("The first 64 KiB of {size} bytes")),
        "{}",
        &shown.body[..2000.min(shown.body.len())]
    );
    assert!(
        shown.body.len() < 400 << 10,
        "a 4 MiB body makes a page of {} bytes",
        shown.body.len()
    );
    let whole = request(addr, "GET", &format!("{page}/body?id=big"), &[], "").await;
    assert_eq!(whole.status, 200, "{}", whole.head);
    assert!(
        whole
            .head
            .contains("content-type: application/octet-stream")
            && whole.head.contains("content-disposition: attachment"),
        "{}",
        whole.head
    );
    assert_eq!(whole.body.len(), size, "the whole body");
}
