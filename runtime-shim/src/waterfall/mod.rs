//! A trace as a waterfall, for a terminal or a script: spans as a tree (children under their
//! parent, siblings by start time), each placed by its offset from the start of the trace.
//!
//! Spans come from any source ([`jaeger`] reads Jaeger's query API; the demo converts what its
//! embedded receiver got). Services have clocks of their own: a span whose parent belongs to
//! another service is shifted, with everything under it, to start and end inside the parent
//! when it fits (Jaeger's UI does the same), and the shift is reported.

pub mod jaeger;
mod render;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

pub use render::{Style, render};

/// A span as a source gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Its id (hex).
    pub span_id: String,
    /// Its parent's id, if it has one.
    pub parent_id: Option<String>,
    /// The service that recorded it.
    pub service: String,
    /// Its name.
    pub name: String,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
    /// Whether it ended in error.
    pub error: bool,
    /// Its events (log lines), in order.
    pub events: Vec<Event>,
    /// The spans it links to.
    pub links: Vec<SpanRef>,
}

/// A span named by id, with its trace's id when the source gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRef {
    /// The span's id.
    pub span_id: String,
    /// Its trace's id, when known.
    pub trace_id: Option<String>,
}

/// An event on a span: a log line, say.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When, nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// What it says (a log event's severity and message).
    pub message: String,
}

/// A whole trace laid out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waterfall {
    /// The trace id.
    pub trace_id: String,
    /// When its first span started, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// From the first start to the last end, after clock-skew adjustment.
    pub duration_ns: u64,
    /// How many spans it has.
    pub span_count: usize,
    /// Spans without a parent in the trace, by start time.
    pub roots: Vec<Node>,
}

/// A span placed in the waterfall.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// Its id.
    pub span_id: String,
    /// Its name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Start, from the start of the trace.
    pub offset_ns: u64,
    /// How long it took.
    pub duration_ns: u64,
    /// How far its times were moved for clock skew: its own shift into a parent of another
    /// service plus its ancestors'.
    #[serde(skip_serializing_if = "is_zero")]
    pub clock_skew_ns: i64,
    /// Whether it ended in error.
    pub error: bool,
    /// Its events, placed.
    pub events: Vec<PlacedEvent>,
    /// The spans it links to.
    pub links: Vec<Link>,
    /// Its children, by start time.
    pub children: Vec<Node>,
}

/// An event placed in the waterfall.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedEvent {
    /// When, from the start of the trace (within its span).
    pub offset_ns: u64,
    /// What it says.
    pub message: String,
}

/// A link to another span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    /// The linked span's id.
    pub span_id: String,
    /// Its trace's id, when the source gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Its name, when it is in this trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its service, when it is in this trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Attributes an event's line leaves out: the log event's own, the operation's (repeated on
/// each of its events), source locations.
fn shown(key: &str) -> bool {
    !matches!(key, "event" | "id" | "name" | "level" | "target")
        && !key.starts_with("log.")
        && !key.starts_with("code.")
}

/// What an event says: a log event (`log.severity` and `log.message`, as conmond and
/// runtime-shim record them) as severity and message, any other as its name; then the other
/// attributes as `key=value`.
pub fn event_message(name: &str, attributes: &BTreeMap<String, String>) -> String {
    let mut parts: Vec<String> = match attributes.get("log.message") {
        Some(message) => attributes
            .get("log.severity")
            .into_iter()
            .chain([message])
            .cloned()
            .collect(),
        None => vec![name.to_owned()],
    };
    parts.extend(
        attributes
            .iter()
            .filter(|(key, _)| shown(key))
            .map(|(key, value)| format!("{key}={value}")),
    );
    parts.join(" ")
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde passes a reference"
)]
fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// A span's interval after adjustment, in signed nanoseconds since the epoch.
#[derive(Clone, Copy)]
struct Interval {
    start: i64,
    end: i64,
}

fn nanos(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The shift that puts `child` inside `parent`: forward when it starts before it, back (never
/// before the parent's start) when it ends after it; none when it already fits.
fn skew(child: Interval, parent: Interval) -> i64 {
    if child.start < parent.start {
        parent.start - child.start
    } else if child.end > parent.end {
        -(child.end - parent.end).min(child.start - parent.start)
    } else {
        0
    }
}

impl Waterfall {
    /// Lays out `spans` of trace `trace_id`.
    pub fn new(trace_id: &str, spans: &[Span]) -> Self {
        let by_id: HashMap<&str, usize> = spans
            .iter()
            .enumerate()
            .map(|(n, span)| (span.span_id.as_str(), n))
            .collect();
        let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut roots = Vec::new();
        for (n, span) in spans.iter().enumerate() {
            match span.parent_id.as_deref().and_then(|id| by_id.get(id)) {
                Some(&parent) if parent != n => children.entry(parent).or_default().push(n),
                _ => roots.push(n),
            }
        }
        let layout = Layout {
            spans,
            by_id,
            children,
        };
        let mut seen = vec![false; spans.len()];
        let mut roots: Vec<Node> = roots
            .iter()
            .map(|&n| layout.place(n, 0, None, &mut seen))
            .collect();
        // Spans in a parent cycle (bad input) are reached from no root: the first of each
        // cycle is shown as one.
        while let Some(n) = seen.iter().position(|seen| !seen) {
            roots.push(layout.place(n, 0, None, &mut seen));
        }
        by_start(&mut roots);
        let start = roots.iter().map(|root| root.offset_ns).min().unwrap_or(0);
        // A child may end after its parent (a longer span of another service).
        let end = roots.iter().map(Node::latest_end).max().unwrap_or(start);
        for root in &mut roots {
            root.rebase(start);
        }
        Self {
            trace_id: trace_id.to_owned(),
            start_unix_nano: start,
            duration_ns: end - start,
            span_count: spans.len(),
            roots,
        }
    }
}

struct Layout<'a> {
    spans: &'a [Span],
    by_id: HashMap<&'a str, usize>,
    children: BTreeMap<usize, Vec<usize>>,
}

impl Layout<'_> {
    /// Places span `n` (shifted by `shift` from its ancestors) under `parent`. Offsets are left
    /// absolute (nanoseconds since the epoch) until [`Node::rebase`]. `seen` guards against parent cycles in bad input.
    fn place(
        &self,
        n: usize,
        shift: i64,
        parent: Option<(Interval, &str)>,
        seen: &mut [bool],
    ) -> Node {
        seen[n] = true;
        let span = &self.spans[n];
        let raw = Interval {
            start: nanos(span.start_unix_nano).saturating_add(shift),
            end: nanos(span.end_unix_nano.max(span.start_unix_nano)).saturating_add(shift),
        };
        let own = match parent {
            Some((interval, service)) if service != span.service => skew(raw, interval),
            _ => 0,
        };
        let shift = shift + own;
        let interval = Interval {
            start: raw.start + own,
            end: raw.end + own,
        };
        let mut children = Vec::new();
        for &child in self.children.get(&n).into_iter().flatten() {
            if !seen[child] {
                children.push(self.place(child, shift, Some((interval, &span.service)), seen));
            }
        }
        by_start(&mut children);
        let events = span
            .events
            .iter()
            .map(|event| PlacedEvent {
                offset_ns: u64::try_from(
                    nanos(event.time_unix_nano)
                        .saturating_add(shift)
                        .clamp(interval.start, interval.end),
                )
                .unwrap_or(0),
                message: event.message.clone(),
            })
            .collect();
        let links = span
            .links
            .iter()
            .map(|link| {
                let linked = self
                    .by_id
                    .get(link.span_id.as_str())
                    .map(|&k| &self.spans[k]);
                Link {
                    span_id: link.span_id.clone(),
                    trace_id: link.trace_id.clone(),
                    name: linked.map(|s| s.name.clone()),
                    service: linked.map(|s| s.service.clone()),
                }
            })
            .collect();
        Node {
            span_id: span.span_id.clone(),
            name: span.name.clone(),
            service: span.service.clone(),
            offset_ns: u64::try_from(interval.start).unwrap_or(0),
            duration_ns: u64::try_from(interval.end - interval.start).unwrap_or(0),
            clock_skew_ns: shift,
            error: span.error,
            events,
            links,
            children,
        }
    }
}

/// Orders siblings by start, then by name.
fn by_start(nodes: &mut [Node]) {
    nodes.sort_by(|a, b| {
        a.offset_ns
            .cmp(&b.offset_ns)
            .then_with(|| a.name.cmp(&b.name))
    });
}

impl Node {
    /// The latest end in its subtree.
    fn latest_end(&self) -> u64 {
        self.children
            .iter()
            .map(Self::latest_end)
            .fold(self.offset_ns + self.duration_ns, u64::max)
    }

    /// Makes offsets relative to `start` (the trace's start).
    fn rebase(&mut self, start: u64) {
        let relative = |offset: u64| offset.saturating_sub(start);
        self.offset_ns = relative(self.offset_ns);
        for event in &mut self.events {
            event.offset_ns = relative(event.offset_ns);
        }
        for child in &mut self.children {
            child.rebase(start);
        }
    }
}

#[cfg(test)]
mod test_span;
#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
