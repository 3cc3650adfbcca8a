//! The global subscriber: formatted log lines and, when enabled, OTLP export of spans and log
//! records. Spans are always exported (the sampler decides); events only at the log level.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Metadata;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::export::Exporter;
use crate::journald::{Journald, LineWriter};
use crate::log_file::{MAX_LOG_FILE_BYTES, RotatingFile};
use crate::{LogLevel, LogOutput, Service};

/// How long shutdown may spend flushing telemetry.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the OTLP export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// OTLP gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Share of root spans (without a parent) sampled, per million; children follow their
    /// parent's decision.
    pub sampling_rate_per_million: u32,
    /// Spans (and as many log records) buffered while the collector is unreachable.
    pub max_buffered: usize,
    /// How often metrics are exported; `None`: no metrics are recorded.
    pub metrics_interval: Option<std::time::Duration>,
}

/// The installed telemetry; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    export: Option<(Exporter, SdkTracerProvider, SdkLoggerProvider)>,
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

/// Whether `target` belongs to crate `krate` (`krate` itself or `krate::…`; a crate named
/// `krate_x` does not).
fn in_crate(target: &str, krate: &str) -> bool {
    target
        .strip_prefix(krate)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// Installs the global subscriber for `service`: log lines to `output` at `level`, and OTLP
/// export when `export` is given. Only `service`'s own spans and events are exported, never
/// those of the exporter's transport (which would feed on themselves) nor this crate's.
pub fn init(
    service: Service,
    level: LogLevel,
    output: LogOutput,
    export: Option<&ExportSettings>,
) -> Telemetry {
    let max_level = LevelFilter::from(level);
    let fmt = tracing_subscriber::fmt::layer().with_ansi(false);
    let mut journal_replaced = None;
    let fmt_layer = match output {
        LogOutput::None => None,
        LogOutput::Stdout => Some(fmt.with_writer(Lines::Stdout).boxed()),
        LogOutput::Stderr => Some(fmt.with_writer(Lines::Stderr).boxed()),
        LogOutput::Journald { fallback } => Some(match Journald::connect() {
            Ok(journald) => fmt
                .without_time()
                .with_writer(Lines::Journald(LineWriter::new(
                    journald,
                    service.identifier,
                )))
                .boxed(),
            Err(journal_error) => {
                let (lines, replacement) = without_journal(fallback.as_deref());
                journal_replaced = Some((journal_error, replacement));
                fmt.with_writer(lines).boxed()
            }
        }),
    }
    .map(|layer| layer.with_filter(max_level));

    let mut installed_export = None;
    let mut export_error = None;
    let exportable = move |meta: &Metadata<'_>| in_crate(meta.target(), service.crate_name);
    let otel_layers = export.and_then(|settings| {
        let resource = resource(service);
        if settings.metrics_interval.is_some() {
            crate::metrics::enable();
        }
        let (exporter, spans, logs) = match Exporter::start(
            settings.endpoint.clone(),
            resource.clone(),
            settings.max_buffered,
            settings.metrics_interval,
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
        let trace_layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(FilterFn::new(move |meta| {
                exportable(meta) && (meta.is_span() || max_level >= *meta.level())
            }));
        let log_layer = OpenTelemetryTracingBridge::new(&logger_provider).with_filter(
            FilterFn::new(move |meta| exportable(meta) && max_level >= *meta.level()),
        );
        installed_export = Some((exporter, tracer_provider, logger_provider));
        Some(trace_layer.and_then(log_layer))
    });
    if fmt_layer.is_none() && otel_layers.is_none() {
        // Nothing consumes events: without a subscriber, spans and events cost nothing (and
        // no registry memory is touched in a monitor that runs once per pod).
        return Telemetry {
            export: installed_export,
        };
    }
    let installed = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layers)
        .try_init();
    // Only fails if a subscriber exists already, which then keeps serving.
    drop(installed);
    if let Some((journal_error, replacement)) = journal_replaced {
        // One line, where the log now goes (stderr too: the file is not where one looks).
        let line =
            format!("journald is not reachable ({journal_error}): log lines go to {replacement}");
        eprintln!("{}: {line}", service.name);
        tracing::warn!("{line}");
    }
    if let Some(err) = export_error {
        tracing::error!(error = %err, "cannot start trace export");
    }
    Telemetry {
        export: installed_export,
    }
}

/// Where log lines go without a journal: the fallback file, else stderr; and how to say so.
fn without_journal(fallback: Option<&Path>) -> (Lines, String) {
    let Some(path) = fallback else {
        return (Lines::Stderr, "standard error".to_owned());
    };
    match RotatingFile::open(path, MAX_LOG_FILE_BYTES) {
        Ok(file) => {
            let said = format!(
                "{} (rotated at {} KiB to {}.1)",
                path.display(),
                MAX_LOG_FILE_BYTES / 1024,
                path.display()
            );
            (Lines::File(file), said)
        }
        Err(err) => (
            Lines::Stderr,
            format!(
                "standard error ({} cannot be opened: {err})",
                path.display()
            ),
        ),
    }
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

/// Where formatted log lines go.
enum Lines {
    Stdout,
    Stderr,
    Journald(LineWriter),
    File(RotatingFile),
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Box<dyn Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match self {
            Self::Stdout => Box::new(io::stdout()),
            Self::Stderr => Box::new(io::stderr()),
            Self::Journald(journald) => Box::new(journald.make_writer()),
            Self::File(file) => Box::new(file.make_writer()),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        match self {
            Self::Journald(journald) => Box::new(journald.make_writer_for(meta)),
            _ => self.make_writer(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_belong_to_their_crate_only() {
        assert!(in_crate("conmon", "conmon"));
        assert!(in_crate("conmon::monitor", "conmon"));
        assert!(!in_crate("conmon_telemetry::export", "conmon"));
        assert!(!in_crate("tonic::transport", "conmon"));
    }

    #[test]
    fn sampler_rates_map_to_on_off_and_ratio() {
        assert!(format!("{:?}", sampler(0)).contains("AlwaysOff"));
        assert!(format!("{:?}", sampler(1_000_000)).contains("AlwaysOn"));
        assert!(format!("{:?}", sampler(500_000)).contains("0.5"));
    }
}
