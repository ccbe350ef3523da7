//! Request/reply with another AMQP client (pika) on either side: a Python
//! caller calls the demo's `demo.echo`, and a Python server answers a call
//! made with `RpcClient`, over direct reply-to on the real broker.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use examples::tasks::echo::Echo;
use serde_json::json;
use worker_core::{
    task, CallError, ConnectionConfig, Connector, RpcClient, Task, TaskError, Worker,
};
use worker_testkit::Harness;

/// Runs a Python script with pika; `None` (after a note) when pika cannot
/// be used here, which fails the test under `CI=true`.
fn python(script: &str) -> Option<Output> {
    let out = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Some(o),
        Ok(o) if !String::from_utf8_lossy(&o.stderr).contains("No module named 'pika'") => {
            panic!(
                "the pika script failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        }
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            worker_testkit::skip::unless_ci(format!(
                "pika is not usable here (python3 -m pip install pika): {why}"
            ));
            None
        }
    }
}

#[tokio::test]
async fn echo_replies_with_its_payload_in_the_harness() {
    let payload = json!({"hello": "world", "n": [1, 2, 3]});
    let report = Harness::new(Echo).call(&payload).await;
    assert_eq!(
        report.reply::<serde_json::Value>().unwrap().unwrap(),
        payload
    );
}

#[tokio::test]
async fn a_pika_caller_calls_the_demo_echo_task() {
    let worker = Worker::from_env().register(Echo);
    let running = worker.start().await.expect("start");
    let mut readiness = running.readiness();
    tokio::time::timeout(Duration::from_secs(20), readiness.wait_for(|r| *r))
        .await
        .expect("consuming")
        .unwrap();
    let url = worker_core::connection::default_url();
    let script = format!(
        r#"
import json, time, uuid, pika
c = pika.BlockingConnection(pika.URLParameters({url:?}))
ch = c.channel()
got = {{}}
def on_reply(ch, method, props, body):
    got['props'] = props
    got['body'] = body
ch.basic_consume('amq.rabbitmq.reply-to', on_reply, auto_ack=True)
cid = str(uuid.uuid4())
ch.basic_publish('', {queue:?}, json.dumps({{"from": "pika", "n": [1, 2]}}).encode(),
    pika.BasicProperties(type={name:?}, reply_to='amq.rabbitmq.reply-to', correlation_id=cid,
                         content_type='application/json', delivery_mode=2))
deadline = time.time() + 20
while 'props' not in got and time.time() < deadline:
    c.process_data_events(time_limit=0.1)
props = got['props']
assert props.correlation_id == cid, (props.correlation_id, cid)
print(json.dumps({{"body": json.loads(got['body']), "status": (props.headers or {{}}).get('rw-reply-status'),
                  "content_type": props.content_type}}))
c.close()
"#,
        queue = Echo::QUEUE,
        name = Echo::NAME,
    );
    let out = tokio::task::spawn_blocking(move || python(&script))
        .await
        .unwrap();
    running.shutdown().await.unwrap();
    let Some(out) = out else { return };
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the script's JSON");
    assert_eq!(
        seen,
        json!({
            "body": {"from": "pika", "n": [1, 2]},
            "status": "ok",
            "content_type": "application/json",
        })
    );
}

/// A task served elsewhere (by the Python script below): this side only calls it.
#[task(name = "pika.add", queue = "it.rpc.pika-server")]
async fn pika_add(pair: (u32, u32)) -> Result<u32, TaskError> {
    Ok(pair.0 + pair.1)
}

#[tokio::test]
async fn a_pika_server_answers_a_framework_call() {
    let url = worker_core::connection::default_url();
    let queue = PikaAdd::QUEUE;
    // The server declares its queue, says so, answers one request and leaves.
    let script = format!(
        r#"
import json, sys, pika
c = pika.BlockingConnection(pika.URLParameters({url:?}))
ch = c.channel()
ch.queue_delete({queue:?})
ch.queue_declare({queue:?})
print('ready', flush=True)
for method, props, body in ch.consume({queue:?}, inactivity_timeout=20):
    if method is None:
        sys.exit('no request came')
    assert props.type == {name:?}, props.type
    a, b = json.loads(body)
    ch.basic_publish('', props.reply_to, json.dumps(a + b).encode(),
        pika.BasicProperties(correlation_id=props.correlation_id, content_type='application/json'))
    ch.basic_ack(method.delivery_tag)
    break
ch.queue_delete({queue:?})
c.close()
"#,
        name = PikaAdd::NAME,
    );
    let mut server = match tokio::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            worker_testkit::skip::unless_ci(format!("python3 cannot be started: {e}"));
            return;
        }
    };
    let mut stdout = tokio::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    let ready = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await
    .expect("the server starts");
    if ready.unwrap() == 0 {
        let out = server.wait_with_output().await.unwrap();
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            why.contains("No module named 'pika'"),
            "the pika server failed: {why}"
        );
        worker_testkit::skip::unless_ci(format!(
            "pika is not usable here (python3 -m pip install pika): {why}"
        ));
        return;
    }
    let client = RpcClient::new(Connector::new(ConnectionConfig::from_env()));
    let sum: Result<u32, CallError> = PikaAdd::call(&client, &(2, 40))
        .timeout(Duration::from_secs(20))
        .await;
    let out = server.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "the pika server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sum.expect("the pika server's reply"), 42);
}
