//! conmond's own telemetry: its log lines (`--log-level`, `--log-driver`) and, with
//! `--enable-tracing`, its spans and correlated logs exported over OTLP.
//!
//! Every RPC runs in a server span whose parent is the caller's W3C trace context from the
//! request metadata; runtime invocations and other steps are child spans; log lines become
//! `log` events on the span they happened in and OTLP log records with its trace and span id.
//! Export never blocks the monitor (see [`export`]).

mod export;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::{Level, Metadata};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogDriver, LogLevel};
use crate::logs::Journald;

/// Who exports: the `service.name` and the tracing target prefix of the code whose spans and
/// events are exported.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// `service.name` and instrumentation scope.
    pub name: &'static str,
    /// Target prefix of the exported spans and events (the crate name).
    pub target_prefix: &'static str,
}

/// conmond itself.
pub const CONMOND: Service = Service {
    name: "conmond",
    target_prefix: "conmon",
};

/// Where formatted log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Nowhere.
    None,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// The systemd journal (standard error when there is none).
    Journald,
}

impl From<LogDriver> for LogOutput {
    fn from(driver: LogDriver) -> Self {
        match driver {
            LogDriver::None => Self::None,
            LogDriver::Stdout => Self::Stdout,
            LogDriver::Systemd => Self::Journald,
        }
    }
}

/// How long shutdown may spend flushing telemetry.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the OTLP export.
#[derive(Debug, Clone)]
pub struct TracingSettings {
    /// OTLP gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Share of root spans (requests without a parent) sampled, per million.
    pub sampling_rate_per_million: u32,
    /// Spans (and log records) buffered while the collector is unreachable.
    pub max_buffered: usize,
}

/// The installed telemetry; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    export: Option<(export::Exporter, SdkTracerProvider, SdkLoggerProvider)>,
}

impl Telemetry {
    /// Ends export, sending what is buffered within [`FLUSH_TIMEOUT`].
    pub fn shutdown(self) {
        if let Some((exporter, tracer_provider, logger_provider)) = self.export {
            // Providers only hand finished data to the buffers; the exporter sends it.
            let _ = tracer_provider.shutdown();
            let _ = logger_provider.shutdown();
            exporter.shutdown(FLUSH_TIMEOUT);
        }
    }
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Trace => Self::TRACE,
            LogLevel::Debug => Self::DEBUG,
            LogLevel::Info => Self::INFO,
            LogLevel::Warn => Self::WARN,
            LogLevel::Error => Self::ERROR,
            LogLevel::Off => Self::OFF,
        }
    }
}

/// Only the service's own spans and events are exported, never those of the exporter's
/// transport (which would feed on themselves) nor the exporter's own reports.
fn exportable(service: Service, meta: &Metadata<'_>) -> bool {
    meta.target().starts_with(service.target_prefix)
        && !meta.target().starts_with("conmon::telemetry")
}

/// Installs conmond's global subscriber: log lines to `driver` at `level`, and OTLP export
/// when `tracing` is given.
pub fn init(level: LogLevel, driver: LogDriver, tracing: Option<&TracingSettings>) -> Telemetry {
    init_service(CONMOND, level, driver.into(), tracing)
}

/// Installs the global subscriber for `service`: log lines to `output` at `level`, and OTLP
/// export when `tracing` is given.
pub fn init_service(
    service: Service,
    level: LogLevel,
    output: LogOutput,
    tracing: Option<&TracingSettings>,
) -> Telemetry {
    let max_level = LevelFilter::from(level);
    let fmt = tracing_subscriber::fmt::layer().with_ansi(false);
    let fmt_layer = match output {
        LogOutput::None => None,
        LogOutput::Stdout => Some(fmt.with_writer(BoxMakeWriter::Stdout).boxed()),
        LogOutput::Stderr => Some(fmt.with_writer(BoxMakeWriter::Stderr).boxed()),
        LogOutput::Journald => Some(match Journald::connect() {
            Ok(journald) => fmt
                .without_time()
                .with_writer(BoxMakeWriter::Journald(JournaldWriter(Mutex::new(
                    journald,
                ))))
                .boxed(),
            // No journal on this host: stderr is the only place left.
            Err(_) => fmt.with_writer(BoxMakeWriter::Stderr).boxed(),
        }),
    }
    .map(|layer| layer.with_filter(max_level));

    let mut export = None;
    let mut export_error = None;
    let otel_layers = tracing.and_then(|settings| {
        let resource = resource(service);
        let (exporter, spans, logs) = match export::Exporter::start(
            settings.endpoint.clone(),
            resource.clone(),
            settings.max_buffered,
        ) {
            Ok(started) => started,
            Err(err) => {
                export_error = Some(err);
                return None;
            }
        };
        let tracer_provider = SdkTracerProvider::builder()
            .with_sampler(sampler(settings.sampling_rate_per_million))
            .with_span_processor(spans)
            .with_resource(resource.clone())
            .build();
        let logger_provider = SdkLoggerProvider::builder()
            .with_log_processor(logs)
            .with_resource(resource)
            .build();
        let tracer = tracer_provider.tracer(service.name);
        // Spans always; events only at the configured level.
        let filter = FilterFn::new(move |meta| {
            exportable(service, meta) && (meta.is_span() || max_level >= *meta.level())
        });
        let trace_layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter.clone());
        let log_layer = OpenTelemetryTracingBridge::new(&logger_provider).with_filter(
            FilterFn::new(move |meta| exportable(service, meta) && max_level >= *meta.level()),
        );
        export = Some((exporter, tracer_provider, logger_provider));
        Some(trace_layer.and_then(log_layer))
    });
    if fmt_layer.is_none() && otel_layers.is_none() {
        // Nothing consumes events: without a subscriber, spans and events cost nothing (and
        // no registry memory is touched in a monitor that runs once per pod).
        return Telemetry { export };
    }
    let installed = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layers)
        .try_init();
    // Only fails if a subscriber exists already, which then keeps serving.
    drop(installed);
    if let Some(err) = export_error {
        tracing::error!(error = %err, "cannot start trace export");
    }
    Telemetry { export }
}

fn sampler(rate_per_million: u32) -> Sampler {
    let root = match rate_per_million {
        0 => Sampler::AlwaysOff,
        rate if rate >= 1_000_000 => Sampler::AlwaysOn,
        rate => Sampler::TraceIdRatioBased(f64::from(rate) / 1_000_000.0),
    };
    Sampler::ParentBased(Box::new(root))
}

fn resource(service: Service) -> Resource {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    Resource::builder()
        .with_service_name(service.name)
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("host.name", host.trim().to_owned()),
            KeyValue::new("process.pid", i64::from(std::process::id())),
        ])
        .build()
}

fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

/// Makes `span` a child of the caller's trace context carried in request `metadata`
/// (`traceparent`, `tracestate`, `baggage`). Call before the span is first entered.
pub fn set_remote_parent(span: &tracing::Span, metadata: &BTreeMap<String, String>) {
    if metadata.is_empty() || span.is_disabled() {
        return;
    }
    let carrier: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let parent = propagator().extract(&carrier);
    if !parent.span().span_context().is_valid() {
        return;
    }
    if let Err(err) = span.set_parent(parent) {
        tracing::debug!(error = %err, "cannot attach the caller's trace context");
    }
}

/// The current span's context as `TRACEPARENT`/`TRACESTATE` environment variables (the
/// OpenTelemetry environment carrier), so a runtime that traces itself continues the trace.
pub fn trace_env() -> Vec<(String, String)> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| (key.to_ascii_uppercase(), value))
        .collect()
}

/// The OpenTelemetry identity of `span`, for linking to it after it ended.
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

/// A new root span for `name` linked to `origin`, traced exactly when `origin` was; a disabled
/// span otherwise.
pub fn linked_root(origin: &SpanContext, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if !origin.is_sampled() {
        return tracing::Span::none();
    }
    let span = make();
    span.add_link(origin.clone());
    span
}

/// Where formatted log lines go.
enum BoxMakeWriter {
    Stdout,
    Stderr,
    Journald(JournaldWriter),
}

impl<'a> MakeWriter<'a> for BoxMakeWriter {
    type Writer = Box<dyn Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match self {
            Self::Stdout => Box::new(io::stdout()),
            Self::Stderr => Box::new(io::stderr()),
            Self::Journald(journald) => Box::new(journald.make_writer()),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        match self {
            Self::Journald(journald) => Box::new(journald.make_writer_for(meta)),
            _ => self.make_writer(),
        }
    }
}

/// Sends each formatted message to the journal as one entry, with a priority from its level.
struct JournaldWriter(Mutex<Journald>);

impl<'a> MakeWriter<'a> for JournaldWriter {
    type Writer = JournaldEntry<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        JournaldEntry {
            journald: &self.0,
            priority: b"6",
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let priority: &'static [u8] = match *meta.level() {
            Level::ERROR => b"3",
            Level::WARN => b"4",
            Level::INFO => b"6",
            Level::DEBUG | Level::TRACE => b"7",
        };
        JournaldEntry {
            journald: &self.0,
            priority,
            buf: Vec::new(),
        }
    }
}

struct JournaldEntry<'a> {
    journald: &'a Mutex<Journald>,
    priority: &'static [u8],
    buf: Vec<u8>,
}

impl Write for JournaldEntry<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for JournaldEntry<'_> {
    fn drop(&mut self) {
        let message = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        if let Ok(mut journald) = self.journald.lock() {
            // A log line that cannot be delivered has nowhere else to go.
            let _ = journald.send(&[
                ("MESSAGE", message),
                ("PRIORITY", self.priority),
                ("SYSLOG_IDENTIFIER", b"conmond"),
            ]);
        }
    }
}
