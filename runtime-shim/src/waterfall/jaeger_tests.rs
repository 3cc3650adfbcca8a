use std::path::PathBuf;

use super::super::{SpanRef, Style, Waterfall, render};
use super::{FetchError, dechunk, parse_response, spans, split_url};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jaeger")
        .join(name)
}

/// A demo trace as Jaeger's query API served it (`runtime-shim demo` exporting to the Jaeger
/// the end-to-end check runs), drawn at 120 columns without colour, against the drawing kept
/// beside it. `UPDATE_GOLDEN=1` rewrites the drawing after a deliberate change.
#[test]
fn a_known_jaeger_trace_draws_as_its_golden_file() {
    let body = std::fs::read(fixture("demo-trace.json")).expect("fixture");
    let spans = spans(&body).expect("a Jaeger trace");
    let trace_id = "b1e4c0e7d61c9a63297a636f69ca7c31";
    let waterfall = Waterfall::new(trace_id, &spans);
    let text = render(
        &waterfall,
        Style {
            width: 120,
            color: false,
        },
    );
    let golden = fixture("demo-trace.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).expect("write golden");
    }
    let expected = std::fs::read_to_string(&golden).expect("golden file");
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn jaeger_spans_keep_parents_services_links_errors_and_events() {
    let body = br#"{"data":[{"traceID":"t","spans":[
        {"traceID":"t","spanID":"a","operationName":"root","references":[],
         "startTime":1000,"duration":50,"tags":[],"logs":[],"processID":"p1"},
        {"traceID":"t","spanID":"b","operationName":"child",
         "references":[{"refType":"CHILD_OF","traceID":"t","spanID":"a"},
                       {"refType":"FOLLOWS_FROM","traceID":"u","spanID":"z"}],
         "startTime":1010,"duration":20,
         "tags":[{"key":"otel.status_code","type":"string","value":"ERROR"}],
         "logs":[{"timestamp":1015,"fields":[
            {"key":"event","type":"string","value":"log"},
            {"key":"log.severity","type":"string","value":"ERROR"},
            {"key":"log.message","type":"string","value":"boom"},
            {"key":"exit_code","type":"int64","value":3}]}],
         "processID":"p2"}],
       "processes":{"p1":{"serviceName":"runtime-shim","tags":[]},
                    "p2":{"serviceName":"conmond","tags":[]}}}],
      "total":0,"limit":0,"offset":0,"errors":null}"#;
    let spans = spans(body).expect("parsed");
    assert_eq!(spans.len(), 2);
    let (root, child) = (&spans[0], &spans[1]);
    assert_eq!(root.service, "runtime-shim");
    assert_eq!(root.parent_id, None);
    assert_eq!(
        (root.start_unix_nano, root.end_unix_nano),
        (1_000_000, 1_050_000)
    );
    assert!(!root.error);
    assert_eq!(child.service, "conmond");
    assert_eq!(child.parent_id.as_deref(), Some("a"));
    assert_eq!(
        child.links,
        [SpanRef {
            span_id: "z".to_owned(),
            trace_id: Some("u".to_owned()),
        }]
    );
    assert!(child.error);
    assert_eq!(child.events[0].time_unix_nano, 1_015_000);
    assert_eq!(child.events[0].message, "ERROR boom exit_code=3");
}

#[test]
fn answers_that_are_not_traces_are_named() {
    assert_eq!(
        spans(br#"{"data":[],"errors":[{"code":404,"msg":"trace not found"}]}"#),
        Err("no trace in the answer".to_owned())
    );
    assert!(spans(b"<html>").is_err());
}

#[test]
fn urls_are_http_host_port_and_a_prefix() {
    assert_eq!(
        split_url("http://localhost:16686").ok(),
        Some(("localhost:16686", ""))
    );
    assert_eq!(
        split_url("http://127.0.0.1:16686/jaeger/").ok(),
        Some(("127.0.0.1:16686", "/jaeger"))
    );
    for bad in [
        "https://x:1",
        "localhost:16686",
        "http://",
        "http://user@host:1",
    ] {
        assert!(matches!(split_url(bad), Err(FetchError::Url(_))), "{bad}");
    }
}

#[test]
fn responses_give_status_and_body_chunked_or_not() {
    let plain = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"data\":[]}";
    assert_eq!(parse_response(plain), Ok((200, b"{\"data\":[]}".to_vec())));
    let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n5;x=y\r\nfound\r\n0\r\n\r\n";
    assert_eq!(parse_response(chunked), Ok((404, b"not found".to_vec())));
    assert!(parse_response(b"HTTP/1.0 200 OK\r\n").is_err());
    assert!(dechunk(b"zz\r\n").is_err());
    assert!(dechunk(b"9\r\nshort\r\n").is_err());
}

#[tokio::test]
async fn bad_trace_ids_and_silent_ports_get_clear_errors() {
    let err = super::fetch("http://127.0.0.1:1", "not-hex")
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TraceId(_)), "{err}");
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let err = super::fetch(&format!("http://127.0.0.1:{port}"), &"ab".repeat(16))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/api/traces/abab"), "{err}");
}

/// Answers one connection on a loopback port with `response` once the request's head is in;
/// gives the port's URL and the request head.
async fn one_answer(response: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            stream.read_exact(&mut byte).await.expect("request");
            head.push(byte[0]);
        }
        stream.write_all(&response).await.expect("answer");
        String::from_utf8_lossy(&head).into_owned()
    });
    (url, task)
}

#[tokio::test]
async fn fetch_asks_the_query_api_and_reads_the_answer_or_its_error() {
    let trace_id = "AB".repeat(16);
    let body = br#"{"data":[{"traceID":"ab","spans":[{"traceID":"ab","spanID":"01",
        "operationName":"Conmon/version","references":[],"startTime":1,"duration":2,
        "processID":"p1"}],"processes":{"p1":{"serviceName":"conmond"}}}]}"#;
    let answer = [
        &b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"[..],
        body,
    ]
    .concat();
    let (url, request) = one_answer(answer).await;
    let spans = super::fetch(&format!("{url}/jaeger/"), &trace_id)
        .await
        .expect("the trace");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].service, "conmond");
    let head = request.await.expect("served");
    let lowercase = trace_id.to_ascii_lowercase();
    assert!(
        head.starts_with(&format!("GET /jaeger/api/traces/{lowercase} HTTP/1.0\r\n")),
        "{head}"
    );

    let missing = b"HTTP/1.1 404 Not Found\r\n\r\n{\"errors\":[{\"msg\":\"trace not found\"}]}";
    let (url, _) = one_answer(missing.to_vec()).await;
    let err = super::fetch(&url, &trace_id).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("trace not found"), "{err}");
}
