// Exchange bindings of each kind.
use std::borrow::Cow;
use worker_core::{task, ExchangeKind, Task, TaskError};

#[task(queue = "orders", exchange = "orders", exchange_type = "topic", routing_keys = ["order.created", "order.*.paid"])]
async fn on_order(id: u64) -> Result<(), TaskError> {
    let _ = id;
    Ok(())
}

#[task(queue = "audit", exchange = "events")]
async fn audit(line: String) -> Result<(), TaskError> {
    let _ = line;
    Ok(())
}

#[task(queue = "direct-keys", exchange = "jobs", exchange_type = "direct", routing_keys = ["a", "b"])]
async fn direct_keys() -> Result<(), TaskError> {
    Ok(())
}

#[task(
    queue = "cache-flush",
    exchange = "broadcast",
    exchange_type = "fanout"
)]
async fn flush_cache() -> Result<(), TaskError> {
    Ok(())
}

#[task(
    queue = "pdf",
    exchange = "documents",
    exchange_type = "headers",
    match_headers = { "format" = "pdf", "lang" = "en", },
    match_all = false
)]
async fn render_pdf() -> Result<(), TaskError> {
    Ok(())
}

#[task(queue = "pdf-all", exchange = "documents", exchange_type = "headers", match_headers = { "format" = "pdf" })]
async fn render_all() -> Result<(), TaskError> {
    Ok(())
}

fn main() {
    let b = OnOrder.options().binding.unwrap();
    assert_eq!(b.exchange, "orders");
    assert_eq!(b.kind, ExchangeKind::Topic);
    assert_eq!(b.routing_keys, ["order.created", "order.*.paid"]);

    // A direct exchange without keys binds with the queue's name.
    let b = Audit.options().binding.unwrap();
    assert_eq!(b.kind, ExchangeKind::Direct);
    assert_eq!(b.routing_keys, [Audit::QUEUE]);

    let b = DirectKeys.options().binding.unwrap();
    assert_eq!(b.routing_keys, ["a", "b"]);

    let b = FlushCache.options().binding.unwrap();
    assert_eq!(b.kind, ExchangeKind::Fanout);
    assert!(b.routing_keys.is_empty());

    let b = RenderPdf.options().binding.unwrap();
    assert_eq!(b.kind, ExchangeKind::Headers);
    assert!(b.routing_keys.is_empty());
    assert_eq!(
        b.match_headers,
        [
            (Cow::Borrowed("format"), Cow::Borrowed("pdf")),
            (Cow::Borrowed("lang"), Cow::Borrowed("en")),
        ]
    );
    assert!(!b.match_all);
    assert!(RenderAll.options().binding.unwrap().match_all);
}
