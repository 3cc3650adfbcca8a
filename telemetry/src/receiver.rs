//! An OTLP gRPC receiver (traces, logs and metrics) on loopback that keeps what it receives in memory:
//! the demo's embedded collector, and the tests' and benchmarks' real receiver.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::oneshot;

/// A span as received, with ids in lowercase hex and attributes as strings.
#[derive(Debug, Clone)]
pub struct Span {
    /// Trace id.
    pub trace_id: String,
    /// Span id.
    pub span_id: String,
    /// Parent span id, empty for roots.
    pub parent_span_id: String,
    /// Name.
    pub name: String,
    /// OTLP span kind (2 = server).
    pub kind: i32,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
    /// Events, in order.
    pub events: Vec<SpanEvent>,
    /// Span ids of linked spans.
    pub links: Vec<String>,
    /// Whether its status is error.
    pub error: bool,
    /// Attributes of the resource that sent it.
    pub resource: BTreeMap<String, String>,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
}

/// The `service.name` of an export's resource.
fn service_name(resource: &BTreeMap<String, String>) -> &str {
    resource.get("service.name").map_or("", String::as_str)
}

impl Span {
    /// The name of the service that sent it (empty if it did not say).
    pub fn service(&self) -> &str {
        service_name(&self.resource)
    }
}

impl MetricPoint {
    /// The name of the service that sent it (empty if it did not say).
    pub fn service(&self) -> &str {
        service_name(&self.resource)
    }
}

/// An event on a span.
#[derive(Debug, Clone)]
pub struct SpanEvent {
    /// Its name (`log` for log lines).
    pub name: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// When, nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
}

/// A log record as received.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Trace id (hex), empty when the record has none.
    pub trace_id: String,
    /// Span id (hex).
    pub span_id: String,
    /// Severity text.
    pub severity: String,
    /// Body as a string.
    pub body: String,
    /// Attributes of the resource that sent it.
    pub resource: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Store {
    spans: Mutex<Vec<Span>>,
    logs: Mutex<Vec<LogRecord>>,
    metrics: Mutex<Vec<MetricPoint>>,
}

#[derive(Debug, Clone, Default)]
struct Sink(Arc<Store>);

/// The receiver; stops when dropped or [`Receiver::stop`]ped.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn value_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), value_string(kv.value.as_ref())))
        .collect()
}

fn resource_attributes(resource: Option<&Resource>) -> BTreeMap<String, String> {
    attributes(resource.map_or(&[][..], |r| &r.attributes))
}

/// OTLP's `STATUS_CODE_ERROR`.
const STATUS_ERROR: i32 = 2;

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = lock(&self.0.spans);
        for resource_spans in &request.get_ref().resource_spans {
            let resource = resource_attributes(resource_spans.resource.as_ref());
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                spans.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| SpanEvent {
                            name: e.name.clone(),
                            attributes: attributes(&e.attributes),
                            time_unix_nano: e.time_unix_nano,
                        })
                        .collect(),
                    links: span.links.iter().map(|l| hex(&l.span_id)).collect(),
                    error: span
                        .status
                        .as_ref()
                        .is_some_and(|status| status.code == STATUS_ERROR),
                    resource: resource.clone(),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut logs = lock(&self.0.logs);
        for resource_logs in &request.get_ref().resource_logs {
            let resource = resource_attributes(resource_logs.resource.as_ref());
            for record in resource_logs.scope_logs.iter().flat_map(|s| &s.log_records) {
                logs.push(LogRecord {
                    trace_id: hex(&record.trace_id),
                    span_id: hex(&record.span_id),
                    severity: record.severity_text.clone(),
                    body: value_string(record.body.as_ref()),
                    resource: resource.clone(),
                });
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

/// A metric data point as received (the latest export of a cumulative point is its total).
#[derive(Debug, Clone)]
pub struct MetricPoint {
    /// Metric name.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// The point's attributes, as strings.
    pub attributes: BTreeMap<String, String>,
    /// The value.
    pub value: MetricValue,
    /// Resource attributes of the export.
    pub resource: BTreeMap<String, String>,
}

/// A data point's value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A sum (counter or up-down counter).
    Sum(f64),
    /// A gauge.
    Gauge(f64),
    /// A histogram.
    Histogram {
        /// Measurements.
        count: u64,
        /// Their sum.
        sum: f64,
        /// Per bucket; one more than `bounds`.
        bucket_counts: Vec<u64>,
        /// Upper bucket bounds.
        bounds: Vec<f64>,
        /// Exemplars: trace and span ID in hex.
        exemplars: Vec<(String, String)>,
    },
}

fn number(value: Option<&number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        #[allow(clippy::cast_precision_loss, reason = "test figures")]
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => f64::NAN,
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut points = lock(&self.0.metrics);
        for resource_metrics in &request.get_ref().resource_metrics {
            let resource = resource_attributes(resource_metrics.resource.as_ref());
            for metric in resource_metrics
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
            {
                let mut push = |attributes: &[KeyValue], value| {
                    points.push(MetricPoint {
                        name: metric.name.clone(),
                        unit: metric.unit.clone(),
                        attributes: self::attributes(attributes),
                        value,
                        resource: resource.clone(),
                    });
                };
                match &metric.data {
                    Some(metric::Data::Sum(sum)) => {
                        for point in &sum.data_points {
                            push(
                                &point.attributes,
                                MetricValue::Sum(number(point.value.as_ref())),
                            );
                        }
                    }
                    Some(metric::Data::Gauge(gauge)) => {
                        for point in &gauge.data_points {
                            push(
                                &point.attributes,
                                MetricValue::Gauge(number(point.value.as_ref())),
                            );
                        }
                    }
                    Some(metric::Data::Histogram(histogram)) => {
                        for point in &histogram.data_points {
                            let exemplars = point
                                .exemplars
                                .iter()
                                .map(|e| (hex(&e.trace_id), hex(&e.span_id)))
                                .collect();
                            push(
                                &point.attributes,
                                MetricValue::Histogram {
                                    count: point.count,
                                    sum: point.sum.unwrap_or_default(),
                                    bucket_counts: point.bucket_counts.clone(),
                                    bounds: point.explicit_bounds.clone(),
                                    exemplars,
                                },
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// A loopback address with a port that was free a moment ago.
///
/// # Errors
/// When no loopback port can be bound.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

impl Receiver {
    /// Starts receiving on `addr` (within a tokio runtime).
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sink = Sink::default();
        let store = sink.0.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(sink.clone()))
                .add_service(LogsServiceServer::new(sink.clone()))
                .add_service(MetricsServiceServer::new(sink))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "OTLP receiver stopped");
            }
        });
        Ok(Self {
            addr,
            store,
            stop: Some(stop),
            server,
        })
    }

    /// The endpoint URL to export to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        lock(&self.store.spans).clone()
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        lock(&self.store.logs).clone()
    }

    /// Every metric data point received so far, oldest export first.
    pub fn metrics(&self) -> Vec<MetricPoint> {
        lock(&self.store.metrics).clone()
    }

    /// The latest point of metric `name` whose attributes include `attributes`.
    pub fn latest_metric(&self, name: &str, attributes: &[(&str, &str)]) -> Option<MetricPoint> {
        lock(&self.store.metrics)
            .iter()
            .rev()
            .find(|point| {
                point.name == name
                    && attributes
                        .iter()
                        .all(|(key, value)| point.attributes.get(*key).is_some_and(|v| v == value))
            })
            .cloned()
    }

    /// Stops listening.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
