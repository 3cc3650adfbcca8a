//! A trace from Jaeger's query API (`GET /api/traces/{id}`, the JSON its UI reads), over plain
//! HTTP/1.0 (the response then ends with the connection; Jaeger's query port speaks it).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Event, Span, SpanRef, event_message};

/// Where Jaeger's query API listens by default.
pub const DEFAULT_URL: &str = "http://localhost:16686";
/// How long a fetch may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response read.
const MAX_RESPONSE: u64 = 64 << 20;

/// Why a trace could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The trace id is not 16 or 32 hex digits.
    #[error("trace id {0:?} is not 32 (or 16) hex digits")]
    TraceId(String),
    /// The URL is not `http://HOST[:PORT][/PATH]`.
    #[error("Jaeger URL {0:?} is not http://HOST[:PORT][/PATH]")]
    Url(String),
    /// Connecting, sending or receiving failed.
    #[error("query {url}: {source}")]
    Io {
        /// The URL asked.
        url: String,
        /// What failed.
        source: std::io::Error,
    },
    /// No answer within the timeout.
    #[error("query {0}: no answer in {TIMEOUT:?}")]
    Timeout(String),
    /// Jaeger answered with an error status.
    #[error("query {url}: HTTP {status}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The answer is not Jaeger's trace JSON.
    #[error("query {url}: not a Jaeger trace: {reason}")]
    Answer {
        /// The URL asked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// `GET /api/traces/{trace_id}` from the Jaeger query API at `base`; the trace's spans.
///
/// # Errors
/// [`FetchError`], naming the URL and what went wrong.
pub async fn fetch(base: &str, trace_id: &str) -> Result<Vec<Span>, FetchError> {
    let trace_id = trace_id.to_ascii_lowercase();
    if !matches!(trace_id.len(), 16 | 32) || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FetchError::TraceId(trace_id));
    }
    let (host, prefix) = split_url(base)?;
    let path = format!("{prefix}/api/traces/{trace_id}");
    let url = format!("http://{host}{path}");
    let io = |source| FetchError::Io {
        url: url.clone(),
        source,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(host).await.map_err(io)?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\nUser-Agent: runtime-shim\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut response = Vec::new();
        let mut limited = stream.take(MAX_RESPONSE);
        limited.read_to_end(&mut response).await.map_err(io)?;
        Ok::<_, FetchError>(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| FetchError::Timeout(url.clone()))??;
    let (status, body) = parse_response(&response).map_err(|reason| FetchError::Answer {
        url: url.clone(),
        reason,
    })?;
    if status != 200 {
        let body = String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned();
        return Err(FetchError::Status { url, status, body });
    }
    spans(&body).map_err(|reason| FetchError::Answer { url, reason })
}

/// `http://HOST[:PORT][/PATH]` as `HOST:PORT` and the path prefix (without a trailing `/`).
fn split_url(base: &str) -> Result<(&str, &str), FetchError> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| FetchError::Url(base.to_owned()))?;
    let (host, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err(FetchError::Url(base.to_owned()));
    }
    Ok((host, prefix.trim_end_matches('/')))
}

/// An HTTP/1.x response's status and body (chunked bodies decoded).
fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the HTTP head")?;
    let head = String::from_utf8_lossy(&response[..end]);
    let body = &response[end + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("no HTTP status line")?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk without its size line")?;
        let size = String::from_utf8_lossy(&body[..line_end]);
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| format!("chunk size {size:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("a chunk shorter than its size")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or("a chunk without its end")?;
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Vec<JaegerTrace>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JaegerTrace {
    spans: Vec<JaegerSpan>,
    #[serde(default)]
    processes: HashMap<String, Process>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    service_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JaegerSpan {
    #[serde(rename = "spanID")]
    span_id: String,
    operation_name: String,
    #[serde(default)]
    references: Vec<Reference>,
    /// Microseconds since the epoch.
    start_time: u64,
    /// Microseconds.
    duration: u64,
    #[serde(default)]
    tags: Vec<KeyValue>,
    #[serde(default)]
    logs: Vec<Log>,
    #[serde(rename = "processID", default)]
    process_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    ref_type: String,
    #[serde(rename = "traceID", default)]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    value: serde_json::Value,
}

#[derive(Deserialize)]
struct Log {
    /// Microseconds since the epoch.
    timestamp: u64,
    #[serde(default)]
    fields: Vec<KeyValue>,
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The spans of the first trace in a query answer. A `CHILD_OF` reference is the parent, the
/// others are links; a span is in error when tagged `error` or with status `ERROR`.
pub fn spans(body: &[u8]) -> Result<Vec<Span>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|err| err.to_string())?;
    let trace = answer
        .data
        .into_iter()
        .next()
        .ok_or("no trace in the answer")?;
    let spans = trace
        .spans
        .into_iter()
        .map(|span| {
            let tag = |key: &str| {
                span.tags
                    .iter()
                    .find(|t| t.key == key)
                    .map(|t| text(&t.value))
            };
            let error = tag("error").is_some_and(|v| v == "true")
                || tag("otel.status_code").is_some_and(|v| v == "ERROR");
            let parent = span.references.iter().find(|r| r.ref_type == "CHILD_OF");
            let start = span.start_time.saturating_mul(1000);
            Span {
                parent_id: parent.map(|r| r.span_id.clone()),
                links: span
                    .references
                    .iter()
                    .filter(|r| r.ref_type != "CHILD_OF")
                    .map(|r| SpanRef {
                        span_id: r.span_id.clone(),
                        trace_id: (!r.trace_id.is_empty()).then(|| r.trace_id.clone()),
                    })
                    .collect(),
                service: trace
                    .processes
                    .get(&span.process_id)
                    .map_or_else(|| span.process_id.clone(), |p| p.service_name.clone()),
                name: span.operation_name.clone(),
                start_unix_nano: start,
                end_unix_nano: start.saturating_add(span.duration.saturating_mul(1000)),
                error,
                events: span
                    .logs
                    .iter()
                    .map(|log| {
                        let fields: BTreeMap<String, String> = log
                            .fields
                            .iter()
                            .map(|f| (f.key.clone(), text(&f.value)))
                            .collect();
                        let name = fields.get("event").cloned().unwrap_or_default();
                        Event {
                            time_unix_nano: log.timestamp.saturating_mul(1000),
                            message: event_message(&name, &fields),
                        }
                    })
                    .collect(),
                span_id: span.span_id,
            }
        })
        .collect();
    Ok(spans)
}

#[cfg(test)]
#[path = "jaeger_tests.rs"]
mod tests;
