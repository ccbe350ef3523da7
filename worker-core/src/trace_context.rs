//! W3C trace context across the queue (feature `otel`).
//!
//! `enqueue` writes the current span's context into the message's
//! `traceparent` / `tracestate` headers, and the worker makes the
//! delivery's span a child of the context it finds there, so one trace runs
//! from the producer through every attempt of the task, and on into the
//! tasks it enqueues. Copies the framework makes (a delayed retry, a parked
//! copy, quarantine) carry the headers as they are, so the trace goes on
//! through them; a replay starts a new trace linked to the original (see
//! [`replay_context`]).
//!
//! The headers follow the W3C Trace Context format whichever propagator is
//! installed globally, so that any client (pika, the Java client, ...)
//! that writes `traceparent` joins the trace. Spans reach an exporter
//! through `tracing-opentelemetry`: install its layer with your tracer, as
//! you would for any other `tracing` span.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::headers::Headers;

/// The W3C header that carries the trace and parent span id.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header that carries vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Writes the current span's trace context into `headers` (nothing when
/// there is no active trace).
pub fn inject_current(headers: &mut Headers) {
    let cx = tracing::Span::current().context();
    inject(&cx, headers);
}

fn inject(cx: &Context, headers: &mut Headers) {
    if !cx.span().span_context().is_valid() {
        return;
    }
    let mut fields = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut fields);
    for (name, value) in fields {
        headers.insert(&name, value);
    }
}

/// The trace context a message's headers carry (an empty context when
/// they carry none, or a malformed one).
pub fn extract(headers: &Headers) -> Context {
    let mut fields = HashMap::new();
    for name in [TRACEPARENT, TRACESTATE] {
        if let Some(value) = headers.get_str(name) {
            fields.insert(name.to_owned(), value);
        }
    }
    TraceContextPropagator::new().extract(&fields)
}

/// Makes `span` (a delivery's) a child of the trace the message carries.
pub fn continue_in(span: &tracing::Span, headers: &Headers) {
    let cx = extract(headers);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// For a replayed copy: a new `replay` span, linked to the trace the
/// parked message carries, whose context replaces the copy's headers. The
/// replay is a new run of the message, so it starts its own trace; the
/// link leads back to the original.
pub fn replay_context(headers: &mut Headers) {
    let original = extract(headers).span().span_context().clone();
    let span = tracing::info_span!("replay");
    if original.is_valid() {
        span.add_link(original);
    }
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    inject(&span.context(), headers);
}
