//! Spans for the layout and drawing tests: times in milliseconds from a fixed instant, named
//! by their id.

use super::Span;

/// A millisecond in nanoseconds.
pub(super) const MS: u64 = 1_000_000;
/// Some time in 2026, in nanoseconds since the epoch.
pub(super) const T0: u64 = 1_796_000_000_000_000_000;

/// Span `id` of `service`, child of `parent`, from `start_ms` to `end_ms` after [`T0`].
pub(super) fn span(
    id: &str,
    parent: Option<&str>,
    service: &str,
    start_ms: u64,
    end_ms: u64,
) -> Span {
    Span {
        span_id: id.to_owned(),
        parent_id: parent.map(str::to_owned),
        service: service.to_owned(),
        name: id.to_owned(),
        start_unix_nano: T0 + start_ms * MS,
        end_unix_nano: T0 + end_ms * MS,
        error: false,
        events: Vec::new(),
        links: Vec::new(),
    }
}
