//! The W3C trace context (`traceparent`, `tracestate`, `baggage`) across process boundaries.
//!
//! A request carries its caller's context as a key/value map (capnp request metadata); a child
//! process gets it as `TRACEPARENT`/`TRACESTATE`/`BAGGAGE` environment variables (the
//! OpenTelemetry environment carrier). One propagator serves both directions.

use std::collections::{BTreeMap, HashMap};

use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Keys of the carrier, lower case as in request metadata.
const CARRIER_KEYS: [&str; 3] = ["traceparent", "tracestate", "baggage"];

fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

/// The caller's context in `carrier` (keys in any case); `None` when it holds no valid one.
pub fn extract(carrier: &BTreeMap<String, String>) -> Option<opentelemetry::Context> {
    if carrier.is_empty() {
        return None;
    }
    let carrier: HashMap<String, String> = carrier
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let context = propagator().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Makes `span` a child of the caller's context in `carrier`. Call before the span is first
/// entered.
pub fn set_remote_parent(span: &tracing::Span, carrier: &BTreeMap<String, String>) {
    if span.is_disabled() {
        return;
    }
    let Some(parent) = extract(carrier) else {
        return;
    };
    if let Err(err) = span.set_parent(parent) {
        tracing::debug!(error = %err, "cannot attach the caller's trace context");
    }
}

/// The current span's context as request metadata; empty when there is none (tracing off).
/// Unsampled contexts are carried too, so the callee follows the decision.
pub fn to_metadata() -> BTreeMap<String, String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return BTreeMap::new();
    }
    let mut carrier = HashMap::new();
    propagator().inject_context(&context, &mut carrier);
    carrier
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect()
}

/// The current span's context as environment variables for a child process, so a program
/// that traces itself (a runtime, a hook) continues the trace.
pub fn to_env() -> Vec<(String, String)> {
    to_metadata()
        .into_iter()
        .map(|(key, value)| (key.to_ascii_uppercase(), value))
        .collect()
}

/// This process's inherited context (`TRACEPARENT`, …, as [`to_env`] sets them) as a carrier
/// for [`set_remote_parent`].
pub fn from_env() -> BTreeMap<String, String> {
    CARRIER_KEYS
        .iter()
        .filter_map(|key| {
            let value = std::env::var(key.to_ascii_uppercase()).ok()?;
            Some(((*key).to_owned(), value))
        })
        .collect()
}

/// The OpenTelemetry identity of `span`, for linking to it or parenting on it after it ended.
pub fn span_context(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

/// Makes `span` a child of `parent`, a span that may have ended already: work that a request
/// set up but that runs after it returned (a streaming session) stays in the caller's trace.
pub fn set_parent_context(span: &tracing::Span, parent: &SpanContext) {
    if !parent.is_valid() || span.is_disabled() {
        return;
    }
    let context = opentelemetry::Context::new().with_remote_span_context(parent.clone());
    if let Err(err) = span.set_parent(context) {
        tracing::debug!(error = %err, "cannot attach the request's trace context");
    }
}

/// A new root span made by `make`, linked to `origin` and traced exactly when `origin` was; a
/// disabled span otherwise.
pub fn linked_root(origin: &SpanContext, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if !origin.is_sampled() {
        return tracing::Span::none();
    }
    let span = make();
    span.add_link(origin.clone());
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn extract_takes_keys_in_any_case_and_ignores_garbage() {
        let carrier = BTreeMap::from([("TraceParent".to_owned(), PARENT.to_owned())]);
        let context = extract(&carrier).expect("valid parent");
        let span = context.span().span_context().clone();
        assert_eq!(
            span.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(span.is_sampled());
        let garbage = BTreeMap::from([("traceparent".to_owned(), "00-zz".to_owned())]);
        assert!(extract(&garbage).is_none());
        assert!(extract(&BTreeMap::new()).is_none());
    }

    #[test]
    fn without_a_current_span_nothing_is_carried() {
        assert!(to_metadata().is_empty());
        assert!(to_env().is_empty());
    }
}
