//! Bounded, retrying OTLP export that never blocks the monitor.
//!
//! Finished spans and log records go into bounded in-memory buffers (the RPC thread only takes
//! a mutex and pushes). A dedicated thread, with its own single-threaded runtime, exports them
//! in batches over OTLP gRPC (`otlp`, on a small HTTP/2 client of our own, `h2c`). When the
//! collector is unreachable a failed batch goes back to the front of its buffer and the export
//! is retried with exponential backoff, so spans produced during an outage arrive once the
//! collector is back. When a buffer is full the oldest entries are dropped and counted; the
//! count is logged.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
use tokio::sync::Notify;

mod buffer;
mod h2c;
mod hpack;
mod huffman;
mod otlp;
use buffer::Buffer;

use crate::metrics;

/// Entries exported per request.
const BATCH: usize = 512;
/// How long a partial batch may wait before it is exported anyway.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Time limit of one export request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Backoff between failed exports.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

type LogEntry = (SdkLogRecord, InstrumentationScope);

/// State shared between the processors (any thread) and the export thread.
struct Shared {
    spans: Mutex<Buffer<SpanData>>,
    logs: Mutex<Buffer<LogEntry>>,
    wake: Notify,
    stopping: AtomicBool,
}

impl Shared {
    /// Buffers `entry`; wakes the exporter when it may be idle or a full batch is waiting.
    fn enqueue<T>(&self, buffer: &Mutex<Buffer<T>>, entry: T) {
        let len = lock(buffer).push(entry);
        // The first entry wakes an idle exporter; a full batch ends its wait for more.
        if len == 1 || len == BATCH {
            self.wake.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a consistent buffer; keep using it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The running export pipeline.
pub(crate) struct Exporter {
    shared: Arc<Shared>,
    done: std::sync::mpsc::Receiver<()>,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// Starts the export thread for `endpoint`; buffers hold up to `capacity` spans and as many
    /// log records.
    pub(crate) fn start(
        endpoint: String,
        resource: Resource,
        capacity: usize,
        metrics_interval: Option<Duration>,
    ) -> std::io::Result<(Self, BufferedSpans, BufferedLogs)> {
        let shared = Arc::new(Shared {
            spans: Mutex::new(Buffer::new(capacity)),
            logs: Mutex::new(Buffer::new(capacity)),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
        });
        let depth = shared.clone();
        metrics::observe(
            "otel.exporter.buffered",
            "{item}",
            "Spans and log records waiting to be exported",
            move || Some((lock(&depth.spans).len() + lock(&depth.logs).len()) as f64),
        );
        let (done_tx, done) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(export_loop(
                        thread_shared,
                        endpoint,
                        resource,
                        metrics_interval,
                    )),
                    Err(err) => {
                        tracing::error!(error = %err, "cannot start the trace export thread")
                    }
                }
                // The receiver may be gone when shutdown already gave up waiting.
                let _ = done_tx.send(());
            })?;
        Ok((
            Self {
                shared: shared.clone(),
                done,
            },
            BufferedSpans(shared.clone()),
            BufferedLogs(shared),
        ))
    }

    /// Exports what is buffered (one attempt per batch) and stops, waiting at most `timeout`.
    pub(crate) fn shutdown(self, timeout: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if self.done.recv_timeout(timeout).is_err() {
            tracing::warn!(
                ?timeout,
                "trace export did not finish in time; unsent spans are lost"
            );
        }
    }
}

async fn export_loop(
    shared: Arc<Shared>,
    endpoint: String,
    resource: Resource,
    metrics_interval: Option<Duration>,
) {
    let endpoint = match otlp::Endpoint::parse(&endpoint) {
        Ok(endpoint) => endpoint,
        Err(err) => {
            tracing::error!(error = %err, "invalid OTLP endpoint; telemetry is off");
            return;
        }
    };
    let mut client = otlp::Client::new(endpoint, &resource, EXPORT_TIMEOUT);
    let mut backoff = BACKOFF_MIN;
    let next_metrics = || metrics_interval.map(|interval| tokio::time::Instant::now() + interval);
    let mut metrics_due = next_metrics();
    loop {
        let stopping = shared.stopping.load(Ordering::SeqCst);
        if let Some(due) = metrics_due
            && (stopping || tokio::time::Instant::now() >= due)
        {
            // Cumulative points: a failed export loses nothing, the next one carries it.
            if let Err(err) = client.export_metrics(crate::metrics::collect()).await {
                tracing::debug!(error = %err, "metrics export failed; the next one carries them");
            }
            // The export at shutdown is the last.
            metrics_due = match stopping {
                true => None,
                false => next_metrics(),
            };
        }
        let spans = lock(&shared.spans).take_batch();
        let logs = lock(&shared.logs).take_batch();
        report_dropped(&shared);
        if spans.is_empty() && logs.is_empty() {
            if stopping && metrics_due.is_none() {
                return;
            }
            wait_for_entries(&shared, metrics_due).await;
            continue;
        }
        let mut failed = false;
        if !spans.is_empty()
            && let Err(err) = client.export_spans(spans.clone()).await
        {
            tracing::debug!(error = %err, count = spans.len(), "span export failed; will retry");
            lock(&shared.spans).requeue(spans);
            failed = true;
        }
        if !logs.is_empty()
            && let Err(err) = client.export_logs(&logs).await
        {
            tracing::debug!(error = %err, count = logs.len(), "log export failed; will retry");
            lock(&shared.logs).requeue(logs);
            failed = true;
        }
        if failed {
            if stopping {
                // One attempt at shutdown: an unreachable collector must not delay exit.
                return;
            }
            let _ = tokio::time::timeout(backoff, async {
                while !shared.stopping.load(Ordering::SeqCst) {
                    shared.wake.notified().await;
                }
            })
            .await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        } else {
            backoff = BACKOFF_MIN;
        }
    }
}

/// Waits while nothing is buffered, with no timer but the next metrics export (an idle monitor
/// otherwise stays asleep), until the first entry arrives or shutdown; then gives the batch up
/// to `FLUSH_INTERVAL` to fill (a full batch or shutdown ends that early). Shutdown while idle
/// does not wait for a batch.
async fn wait_for_entries(shared: &Shared, metrics_due: Option<tokio::time::Instant>) {
    let woken = async {
        shared.wake.notified().await;
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let _ = tokio::time::timeout(FLUSH_INTERVAL, shared.wake.notified()).await;
    };
    match metrics_due {
        Some(due) => {
            let _ = tokio::time::timeout_at(due, woken).await;
        }
        None => woken.await,
    }
}

/// Spans and log records the buffers dropped, by `signal`.
const DROPPED: metrics::Instrument = metrics::Instrument::counter(
    "otel.exporter.dropped",
    "{item}",
    "Spans and log records dropped because the export buffer was full",
);

fn report_dropped(shared: &Shared) {
    let spans = lock(&shared.spans).take_dropped();
    let logs = lock(&shared.logs).take_dropped();
    for (signal, count) in [("spans", spans), ("logs", logs)] {
        DROPPED.add(
            i64::try_from(count).unwrap_or(i64::MAX),
            &[("signal", signal)],
        );
    }
    if spans > 0 || logs > 0 {
        tracing::warn!(
            spans,
            logs,
            "telemetry buffer full; dropped the oldest entries"
        );
    }
}

/// Span processor feeding the buffer. It also turns log events on spans into CRI-O's form: an
/// event named `log` with `log.severity` and `log.message`, and an error status for errors.
#[derive(Clone)]
pub(crate) struct BufferedSpans(Arc<Shared>);

impl fmt::Debug for BufferedSpans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedSpans").finish_non_exhaustive()
    }
}

impl SpanProcessor for BufferedSpans {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, mut span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        convert_log_events(&mut span);
        self.0.enqueue(&self.0.spans, span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.wake.notify_one();
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Rewrites the events tracing-opentelemetry made from log lines (they carry a `level`
/// attribute and the message as name) into CRI-O's `log` events. The operation's `id` and
/// `name`, when the span carries them, are repeated on each event as CRI-O does.
fn convert_log_events(span: &mut SpanData) {
    let operation: Vec<KeyValue> = span
        .attributes
        .iter()
        .filter(|kv| matches!(kv.key.as_str(), "id" | "name"))
        .cloned()
        .collect();
    let mut error = None;
    for event in &mut span.events.events {
        let Some(position) = event
            .attributes
            .iter()
            .position(|kv| kv.key.as_str() == "level")
        else {
            continue;
        };
        let level = event
            .attributes
            .remove(position)
            .value
            .as_str()
            .to_uppercase();
        event.attributes.retain(|kv| kv.key.as_str() != "target");
        let message = std::mem::replace(&mut event.name, "log".into());
        if level == "ERROR" {
            error = Some(message.clone());
        }
        event.attributes.push(KeyValue::new("log.severity", level));
        event.attributes.push(KeyValue::new("log.message", message));
        event.attributes.extend(operation.iter().cloned());
    }
    if let Some(message) = error {
        span.status = Status::error(message);
    }
}

/// Log processor feeding the buffer. Records of unsampled traces are dropped like their spans.
#[derive(Clone)]
pub(crate) struct BufferedLogs(Arc<Shared>);

impl fmt::Debug for BufferedLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedLogs").finish_non_exhaustive()
    }
}

impl LogProcessor for BufferedLogs {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        let unsampled = record
            .trace_context()
            .is_some_and(|cx| cx.trace_flags.is_some_and(|flags| !flags.is_sampled()));
        if unsampled {
            return;
        }
        self.0
            .enqueue(&self.0.logs, (record.clone(), scope.clone()));
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.wake.notify_one();
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_exporter_sleeps_until_the_first_entry_then_waits_for_a_batch() {
        let shared = Arc::new(Shared {
            spans: Mutex::new(Buffer::new(0)),
            logs: Mutex::new(Buffer::new(0)),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
        });
        let entries = Mutex::new(Buffer::new(BATCH * 2));
        let waiting = shared.clone();
        let wait = tokio::spawn(async move { wait_for_entries(&waiting, None).await });
        // Paused time advances by itself only to a pending timer: none runs while idle.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!wait.is_finished());
        let first = tokio::time::Instant::now();
        shared.enqueue(&entries, 1);
        shared.enqueue(&entries, 2);
        let bounded = Duration::from_secs(60);
        tokio::time::timeout(bounded, wait).await.unwrap().unwrap();
        assert_eq!(first.elapsed(), FLUSH_INTERVAL);

        // A full batch ends the wait for more at once.
        lock(&entries).take_batch();
        let waiting = shared.clone();
        let wait = tokio::spawn(async move { wait_for_entries(&waiting, None).await });
        tokio::task::yield_now().await;
        let start = tokio::time::Instant::now();
        for entry in 0..BATCH {
            shared.enqueue(&entries, entry);
        }
        tokio::time::timeout(bounded, wait).await.unwrap().unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);

        // With metrics on, an idle exporter wakes for the next metrics export, and only then.
        lock(&entries).take_batch();
        let waiting = shared.clone();
        let start = tokio::time::Instant::now();
        let due = start + Duration::from_secs(60);
        let wait = tokio::spawn(async move { wait_for_entries(&waiting, Some(due)).await });
        tokio::time::timeout(Duration::from_secs(120), wait)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }

    #[test]
    fn log_events_become_cri_o_style_log_events_and_errors_fail_the_span() {
        use opentelemetry::trace::{Event, SpanContext, SpanKind};
        use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
        let event = |name: &'static str, level: &'static str| {
            Event::new(
                name,
                std::time::SystemTime::UNIX_EPOCH,
                vec![
                    KeyValue::new("level", level),
                    KeyValue::new("target", "conmon::x"),
                    KeyValue::new("pid", 7),
                ],
                0,
            )
        };
        let mut events = SpanEvents::default();
        events.events = vec![event("container created", "INFO"), event("boom", "ERROR")];
        let mut span = SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "rpc".into(),
            start_time: std::time::SystemTime::UNIX_EPOCH,
            end_time: std::time::SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("conmond").build(),
        };
        convert_log_events(&mut span);
        let first = &span.events.events[0];
        assert_eq!(first.name, "log");
        let attrs: Vec<String> = first
            .attributes
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        assert_eq!(
            attrs,
            [
                "pid=7",
                "log.severity=INFO",
                "log.message=container created"
            ]
        );
        assert_eq!(span.status, Status::error("boom"));
    }
}
