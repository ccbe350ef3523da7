//! Trace context across the queue (worker-core's `otel` feature): spans
//! recorded by the SDK's in-memory exporter, headers read from the mock
//! channel, and a message published by another client (pika) handled in a
//! span of its trace on the real broker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use worker_core::{Publisher, Task, TaskContext, TaskError, TaskOptions, Worker};
use worker_operator::ops::parked::replay_copy;
use worker_testkit::{DeliveryBuilder, Harness};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

/// Spans go to an in-memory exporter for as long as the guard lives.
struct Recording {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Recording {
    fn start() -> Recording {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("trace-context-test");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        let guard = tracing::subscriber::set_default(subscriber);
        Recording {
            exporter,
            provider,
            _guard: guard,
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        let _ = self.provider.force_flush();
        self.exporter.get_finished_spans().expect("spans")
    }

    fn span(&self, name: &str) -> SpanData {
        let spans = self.spans();
        spans
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no span {name} in {:?}", names(&spans)))
    }
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

fn trace_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).expect("a W3C traceparent")
}

#[derive(Serialize, Deserialize)]
struct Order {
    id: u32,
}

/// Handles an order and enqueues a receipt for it.
struct PlaceOrder;

impl Task for PlaceOrder {
    type Payload = Order;
    const NAME: &'static str = "otel.place_order";
    const QUEUE: &'static str = "otel.orders";
    async fn run(&self, ctx: TaskContext, order: Order) -> Result<(), TaskError> {
        if order.id == 0 {
            return Err(TaskError::transient("no stock yet"));
        }
        ctx.enqueue::<SendReceipt>(&order).await?;
        Ok(())
    }
}

struct SendReceipt;

impl Task for SendReceipt {
    type Payload = Order;
    const NAME: &'static str = "otel.send_receipt";
    const QUEUE: &'static str = "otel.receipts";
    async fn run(&self, _: TaskContext, _: Order) -> Result<(), TaskError> {
        Ok(())
    }
}

#[tokio::test]
async fn enqueue_writes_the_current_trace_into_the_message() {
    let recording = Recording::start();
    let (transport, mock) = worker_testkit::mock::pair();
    let publisher = Publisher::from_transport(Arc::new(transport));
    let span = tracing::info_span!("producer");
    publisher
        .enqueue::<PlaceOrder>(&Order { id: 1 })
        .instrument(span)
        .await
        .unwrap();
    let sent = mock.assert_published_to(PlaceOrder::QUEUE);
    let header = sent.header_str("traceparent").expect("traceparent");
    let producer = recording.span("producer");
    assert_eq!(
        trace_of(&header),
        producer.span_context.trace_id().to_string()
    );

    // Outside any span nothing is written.
    publisher
        .enqueue::<PlaceOrder>(&Order { id: 2 })
        .await
        .unwrap();
    let sent = mock.assert_published_to(PlaceOrder::QUEUE);
    assert_eq!(sent.header_str("traceparent"), None);
}

#[tokio::test(start_paused = true)]
async fn the_worker_continues_the_trace_and_passes_it_on() {
    let recording = Recording::start();
    let harness = Harness::new(PlaceOrder);
    let report = harness
        .run(
            DeliveryBuilder::for_task::<PlaceOrder>(&Order { id: 7 })
                .header("traceparent", traceparent())
                .build(),
        )
        .await;
    assert!(report.succeeded(), "{report}");

    let delivery = recording.span("delivery");
    assert_eq!(
        delivery.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(delivery.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    // The receipt the handler enqueued carries the trace on.
    let receipt = harness.mock().assert_published_to(SendReceipt::QUEUE);
    assert_eq!(
        trace_of(&receipt.header_str("traceparent").expect("traceparent")),
        TRACE
    );
}

#[tokio::test(start_paused = true)]
async fn copies_keep_the_trace_and_a_replay_links_to_it() {
    let recording = Recording::start();
    let options = TaskOptions {
        retry: worker_core::RetryPolicy::default()
            .in_process(1)
            .tiers([Duration::from_secs(1)])
            .max_attempts(2),
        ..TaskOptions::default()
    };
    let harness = Harness::new(PlaceOrder).options(options);
    let original = || {
        DeliveryBuilder::for_task::<PlaceOrder>(&Order { id: 0 })
            .header("traceparent", traceparent())
    };
    // A delayed retry keeps the header as it was.
    let report = harness.run(original().build()).await;
    let wait = report.redelivered_copy().expect("a tier copy");
    assert_eq!(wait.header_str("traceparent"), Some(traceparent()));
    // So does the parked copy.
    let report = harness.run(original().attempts(1).tag(2).build()).await;
    let parked = report.parked().expect("parked");
    assert_eq!(
        parked.message.header_str("traceparent"),
        Some(traceparent())
    );

    // A replay starts a trace of its own, linked to the original.
    let delivery = DeliveryBuilder::from_published(&parked.message).build();
    let copy = replay_copy(&delivery, PlaceOrder::QUEUE);
    let header = copy
        .properties
        .headers()
        .get_str("traceparent")
        .expect("traceparent");
    assert_ne!(trace_of(&header), TRACE);
    let replay = recording.span("replay");
    assert_eq!(
        trace_of(&header),
        replay.span_context.trace_id().to_string()
    );
    let linked: Vec<TraceId> = replay
        .links
        .links
        .iter()
        .map(|l| l.span_context.trace_id())
        .collect();
    assert_eq!(linked, vec![TraceId::from_hex(TRACE).unwrap()]);
}

/// What the handler of the cross-client test saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<u32>>>);

struct FromPika;

impl Task for FromPika {
    type Payload = Order;
    const NAME: &'static str = "otel.from_pika";
    const QUEUE: &'static str = "otel.from_pika";
    async fn run(&self, ctx: TaskContext, order: Order) -> Result<(), TaskError> {
        let seen = ctx.state::<Seen>().expect("state");
        seen.0 .0.lock().unwrap().push(order.id);
        Ok(())
    }
}

/// Publishes `body` with a `traceparent` header through pika, as another
/// language's producer would; `false` when pika cannot be used here.
fn publish_with_pika(queue: &str, body: &str) -> bool {
    let url = worker_core::connection::default_url();
    let script = format!(
        "import pika\nc = pika.BlockingConnection(pika.URLParameters({url:?}))\nch = c.channel()\nch.confirm_delivery()\nch.basic_publish('', {queue:?}, {body:?}.encode(), pika.BasicProperties(content_type='application/json', type={name:?}, headers={{'traceparent': {tp:?}}}, delivery_mode=2))\nc.close()\n",
        name = FromPika::NAME,
        tp = traceparent(),
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output();
    match out {
        Ok(o) if o.status.success() => true,
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            worker_testkit::skip::unless_ci(format!(
                "pika is not usable here (python3 -m pip install pika): {why}"
            ));
            false
        }
    }
}

#[tokio::test]
async fn a_message_published_by_pika_is_handled_in_its_trace() {
    let recording = Recording::start();
    let seen = Seen::default();
    let worker = Worker::from_env().register(FromPika).state(seen.clone());
    worker.declare_topology().await.expect("topology");
    if !publish_with_pika(FromPika::QUEUE, r#"{"id": 42}"#) {
        return;
    }
    let running = worker.start().await.expect("start");
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.0.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pika message was handled");
    running.shutdown().await.unwrap();
    let delivery = recording
        .spans()
        .into_iter()
        .find(|s| {
            s.name == "delivery" && s.span_context.trace_id() == TraceId::from_hex(TRACE).unwrap()
        })
        .unwrap_or_else(|| {
            panic!(
                "no delivery span in the pika trace: {:?}",
                names(&recording.spans())
            )
        });
    assert_eq!(delivery.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert_eq!(*seen.0.lock().unwrap(), vec![42]);
}
