use std::collections::BTreeMap;

use super::test_span::{MS, T0, span};
use super::{Event, Link, Node, Span, SpanRef, Waterfall, event_message};

/// Name, offset and duration (ms) of each node, depth first, with its depth.
fn outline(nodes: &[Node], depth: usize, out: &mut Vec<(usize, String, u64, u64)>) {
    for node in nodes {
        out.push((
            depth,
            node.name.clone(),
            node.offset_ns / MS,
            node.duration_ns / MS,
        ));
        outline(&node.children, depth + 1, out);
    }
}

fn laid_out(spans: &[Span]) -> (Waterfall, Vec<(usize, String, u64, u64)>) {
    let waterfall = Waterfall::new("t", spans);
    let mut rows = Vec::new();
    outline(&waterfall.roots, 0, &mut rows);
    (waterfall, rows)
}

fn row(depth: usize, name: &str, offset: u64, duration: u64) -> (usize, String, u64, u64) {
    (depth, name.to_owned(), offset, duration)
}

#[test]
fn offsets_are_from_the_trace_start_and_siblings_go_by_start_time() {
    // Given out of order: the later sibling first, the child before its parent.
    let spans = [
        span("b", Some("root"), "shim", 40, 90),
        span("a1", Some("a"), "shim", 12, 20),
        span("root", None, "shim", 5, 105),
        span("a", Some("root"), "shim", 10, 30),
    ];
    let (waterfall, rows) = laid_out(&spans);
    assert_eq!(waterfall.start_unix_nano, T0 + 5 * MS);
    assert_eq!(waterfall.duration_ns, 100 * MS);
    assert_eq!(waterfall.span_count, 4);
    assert_eq!(
        rows,
        [
            row(0, "root", 0, 100),
            row(1, "a", 5, 20),
            row(2, "a1", 7, 8),
            row(1, "b", 35, 50),
        ]
    );
}

#[test]
fn siblings_starting_together_go_by_name_and_orphans_are_roots() {
    let spans = [
        span("y", Some("gone"), "shim", 0, 10),
        span("x", Some("missing"), "shim", 0, 5),
        span("late", None, "shim", 20, 30),
    ];
    let (_, rows) = laid_out(&spans);
    assert_eq!(
        rows,
        [
            row(0, "x", 0, 5),
            row(0, "y", 0, 10),
            row(0, "late", 20, 10)
        ]
    );
}

#[test]
fn another_services_child_is_shifted_into_its_parent_with_everything_under_it() {
    // conmond's clock runs 7 ms behind the shim's: its RPC span seems to start before the call.
    let mut rpc = span("rpc", Some("call"), "conmond", 13, 23);
    rpc.events.push(Event {
        time_unix_nano: T0 + 14 * MS,
        message: "INFO started".to_owned(),
    });
    let spans = [
        span("call", None, "shim", 20, 40),
        rpc,
        span("runtime", Some("rpc"), "conmond", 15, 20),
    ];
    let (waterfall, rows) = laid_out(&spans);
    assert_eq!(
        rows,
        [
            row(0, "call", 0, 20),
            row(1, "rpc", 0, 10),
            row(2, "runtime", 2, 5),
        ]
    );
    let rpc = &waterfall.roots[0].children[0];
    assert_eq!(rpc.clock_skew_ns, 7 * MS as i64);
    assert_eq!(rpc.children[0].clock_skew_ns, 7 * MS as i64);
    assert_eq!(rpc.events[0].offset_ns, MS);
    assert_eq!(waterfall.roots[0].clock_skew_ns, 0);
}

#[test]
fn a_child_ending_after_its_parent_moves_back_but_never_before_its_start() {
    let spans = [
        span("call", None, "shim", 0, 40),
        // Ends 5 ms late with 10 ms of room: moved back 5 ms.
        span("fits", Some("call"), "conmond", 10, 45),
        // Longer than its parent: moved back to the parent's start, still too long.
        span("long", Some("call"), "conmond", 20, 70),
        // Same service, same clock: left alone.
        span("same", Some("call"), "shim", 30, 50),
    ];
    let (waterfall, rows) = laid_out(&spans);
    assert_eq!(
        rows,
        [
            row(0, "call", 0, 40),
            row(1, "long", 0, 50),
            row(1, "fits", 5, 35),
            row(1, "same", 30, 20),
        ]
    );
    assert_eq!(waterfall.duration_ns, 50 * MS);
}

#[test]
fn links_name_their_span_when_it_is_in_the_trace() {
    let mut exit = span("exit", None, "conmond", 50, 60);
    exit.links = vec![
        SpanRef {
            span_id: "create".to_owned(),
            trace_id: None,
        },
        SpanRef {
            span_id: "elsewhere".to_owned(),
            trace_id: Some("other".to_owned()),
        },
    ];
    let spans = [span("create", None, "conmond", 0, 10), exit];
    let (waterfall, _) = laid_out(&spans);
    assert_eq!(
        waterfall.roots[1].links,
        [
            Link {
                span_id: "create".to_owned(),
                trace_id: None,
                name: Some("create".to_owned()),
                service: Some("conmond".to_owned()),
            },
            Link {
                span_id: "elsewhere".to_owned(),
                trace_id: Some("other".to_owned()),
                name: None,
                service: None,
            },
        ]
    );
}

#[test]
fn parent_cycles_in_bad_input_end() {
    let spans = [
        span("a", Some("b"), "shim", 0, 10),
        span("b", Some("a"), "shim", 0, 10),
        span("self", Some("self"), "shim", 20, 30),
    ];
    let (waterfall, rows) = laid_out(&spans);
    // Nothing in the cycle is a root: the first of it is shown as one, so no span is lost.
    assert_eq!(
        rows,
        [
            row(0, "a", 0, 10),
            row(1, "b", 0, 10),
            row(0, "self", 20, 10)
        ]
    );
    assert_eq!(waterfall.span_count, 3);
}

#[test]
fn events_read_as_severity_message_and_other_attributes() {
    let attributes = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let log = attributes(&[
        ("log.severity", "INFO"),
        ("log.message", "exec done"),
        ("exit_code", "0"),
        ("id", "0123"),
        ("name", "/runtime.v1.RuntimeService/ExecSync"),
        ("code.lineno", "12"),
    ]);
    assert_eq!(event_message("log", &log), "INFO exec done exit_code=0");
    let oom = attributes(&[("container.id", "c1")]);
    assert_eq!(event_message("oom", &oom), "oom container.id=c1");
}
