//! Trace context for monitor requests: the current span's W3C context (`traceparent`,
//! `tracestate`, `baggage`) as request metadata.

use std::collections::{BTreeMap, HashMap};

use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The current span's context as request metadata; empty when there is no valid span
/// context (tracing off). Unsampled contexts are sent too, so the monitor follows the decision.
pub fn current_metadata() -> BTreeMap<String, String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return BTreeMap::new();
    }
    let propagator = TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]);
    let mut carrier = HashMap::new();
    propagator.inject_context(&context, &mut carrier);
    carrier
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect()
}
