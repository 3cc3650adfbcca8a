//! OTLP over gRPC: spans and log records encoded as the collector's protobuf messages and
//! sent as unary calls on one HTTP/2 connection, made when first needed and again after any
//! failure.

use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope as ProtoScope;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord};
use opentelemetry_sdk::trace::SpanData;
use tokio::net::TcpStream;

use super::h2c::{Connection, H2Error, Response};
use super::hpack;

const TRACE_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Why an export failed; the entries are retried.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error(transparent)]
    Http(#[from] H2Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    HttpStatus(String),
    #[error("gRPC status {code}: {message}")]
    Grpc { code: String, message: String },
    #[error("response without a gRPC status")]
    NoGrpcStatus,
    #[error("malformed response: {0}")]
    Message(&'static str),
}

/// Why an endpoint cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EndpointError {
    #[error("https OTLP endpoints are not supported (no TLS)")]
    Tls,
    #[error("endpoint {0:?} is not http://HOST:PORT")]
    Malformed(String),
}

/// Where the collector listens: `http://HOST[:PORT][/]`, or `HOST:PORT` as CRI-O writes it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Host name or address, IPv6 without brackets.
    pub(super) host: String,
    pub(super) port: u16,
    /// `HOST:PORT` as given, for `:authority`.
    pub(super) authority: String,
}

impl Endpoint {
    pub(crate) fn parse(endpoint: &str) -> Result<Self, EndpointError> {
        let malformed = || EndpointError::Malformed(endpoint.to_owned());
        if endpoint.starts_with("https://") {
            return Err(EndpointError::Tls);
        }
        let authority = endpoint.strip_prefix("http://").unwrap_or(endpoint);
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse::<u16>().map_err(|_| malformed())?)
            }
            _ if endpoint.starts_with("http://") => (authority, 80),
            _ => return Err(malformed()),
        };
        let host = match host.strip_prefix('[') {
            Some(bracketed) => bracketed.strip_suffix(']').ok_or_else(malformed)?,
            None if host.contains(':') => return Err(malformed()),
            None => host,
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
        if host.is_empty() || !host.chars().all(valid) {
            return Err(malformed());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
        })
    }
}

/// An OTLP client for one endpoint.
pub(crate) struct Client {
    endpoint: Endpoint,
    resource: ResourceAttributesWithSchema,
    /// The same resource, as metrics carry it.
    metrics_resource: ProtoResource,
    /// The metrics' instrumentation scope: the service's name, as for its spans.
    scope: String,
    timeout: Duration,
    connection: Option<Connection<TcpStream>>,
}

impl Client {
    pub(crate) fn new(endpoint: Endpoint, resource: &Resource, timeout: Duration) -> Self {
        let scope = resource
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .map(|name| name.to_string())
            .unwrap_or_default();
        Self {
            endpoint,
            resource: resource.into(),
            metrics_resource: resource.into(),
            scope,
            timeout,
            connection: None,
        }
    }

    pub(crate) async fn export_spans(&mut self, spans: Vec<SpanData>) -> Result<(), ExportError> {
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &self.resource),
        };
        let response: ExportTraceServiceResponse = self.call(TRACE_PATH, &request).await?;
        if let Some(partial) = response.partial_success {
            report_rejected("spans", partial.rejected_spans, &partial.error_message);
        }
        Ok(())
    }

    pub(crate) async fn export_logs(
        &mut self,
        logs: &[(SdkLogRecord, InstrumentationScope)],
    ) -> Result<(), ExportError> {
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            logs.iter().map(|(record, scope)| (record, scope)).collect();
        let request = ExportLogsServiceRequest {
            resource_logs: group_logs_by_resource_and_scope(&LogBatch::new(&refs), &self.resource),
        };
        let response: ExportLogsServiceResponse = self.call(LOGS_PATH, &request).await?;
        if let Some(partial) = response.partial_success {
            report_rejected(
                "log records",
                partial.rejected_log_records,
                &partial.error_message,
            );
        }
        Ok(())
    }

    pub(crate) async fn export_metrics(&mut self, metrics: Vec<Metric>) -> Result<(), ExportError> {
        if metrics.is_empty() {
            return Ok(());
        }
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.metrics_resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(ProtoScope {
                        name: self.scope.clone(),
                        ..ProtoScope::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: self.resource.schema_url.clone().unwrap_or_default(),
            }],
        };
        let response: ExportMetricsServiceResponse = self.call(METRICS_PATH, &request).await?;
        if let Some(partial) = response.partial_success {
            report_rejected(
                "data points",
                partial.rejected_data_points,
                &partial.error_message,
            );
        }
        Ok(())
    }

    /// A unary call of method `path` with `request`; decodes the response message.
    async fn call<R: prost::Message + Default>(
        &mut self,
        path: &'static str,
        request: &impl prost::Message,
    ) -> Result<R, ExportError> {
        let body = self.unary(path, &grpc_frame(request)).await?;
        R::decode(body.as_slice()).map_err(|_| ExportError::Message(path))
    }

    /// One gRPC call with a framed `message` within the timeout; returns the response message.
    /// The connection is dropped after any failure, since its state is then unknown.
    async fn unary(&mut self, path: &str, message: &[u8]) -> Result<Vec<u8>, ExportError> {
        let timeout = self.timeout;
        let call = async {
            let mut connection = match self.connection.take() {
                Some(connection) if connection.is_open() => connection,
                _ => self.connect().await?,
            };
            let response = connection
                .request(&request_headers(path, &self.endpoint.authority), message)
                .await?;
            Ok::<_, ExportError>((connection, response))
        };
        let (connection, response) = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| ExportError::Timeout(timeout))??;
        self.connection = Some(connection);
        grpc_message(response)
    }

    async fn connect(&self) -> Result<Connection<TcpStream>, ExportError> {
        let stream = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
            .await
            .map_err(H2Error::Io)?;
        // Requests are small frames written in turn: Nagle's algorithm would hold them back.
        stream.set_nodelay(true).map_err(H2Error::Io)?;
        Ok(Connection::handshake(stream).await?)
    }
}

/// Logs what a collector's partial success says it dropped (the entries are lost).
fn report_rejected(kind: &'static str, rejected: i64, reason: &str) {
    if rejected > 0 {
        tracing::warn!(rejected, kind, reason, "the collector rejected telemetry");
    }
}

/// The header block of a gRPC call: literals without indexing, static names where they exist.
fn request_headers(path: &str, authority: &str) -> Vec<u8> {
    let mut block = Vec::with_capacity(160);
    hpack::encode_indexed(&mut block, 3); // :method POST
    hpack::encode_indexed(&mut block, 6); // :scheme http
    hpack::encode_literal(&mut block, 4, "", path);
    hpack::encode_literal(&mut block, 1, "", authority);
    hpack::encode_literal(&mut block, 31, "", "application/grpc");
    hpack::encode_literal(&mut block, 0, "te", "trailers");
    hpack::encode_literal(
        &mut block,
        58,
        "",
        concat!("conmon-telemetry/", env!("CARGO_PKG_VERSION")),
    );
    block
}

/// `message` as a gRPC length-prefixed message, uncompressed, encoded in place after its prefix.
fn grpc_frame(message: &impl prost::Message) -> Vec<u8> {
    let length = message.encoded_len();
    let mut framed = Vec::with_capacity(5 + length);
    framed.push(0);
    framed.extend((length as u32).to_be_bytes());
    message.encode_raw(&mut framed);
    framed
}

/// The message of a successful gRPC response, or the error it carries.
fn grpc_message(response: Response) -> Result<Vec<u8>, ExportError> {
    let field = |headers: &[hpack::Header], name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name.as_bytes())
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    let status = field(&response.headers, ":status").unwrap_or_default();
    if status != "200" {
        return Err(ExportError::HttpStatus(status));
    }
    // Trailers, or the headers alone when the server sent only those ("Trailers-Only").
    let trailers = if response.trailers.is_empty() {
        &response.headers
    } else {
        &response.trailers
    };
    let code = field(trailers, "grpc-status").ok_or(ExportError::NoGrpcStatus)?;
    if code != "0" {
        let message = field(trailers, "grpc-message").unwrap_or_default();
        return Err(ExportError::Grpc { code, message });
    }
    match response.body.as_slice() {
        [] => Ok(Vec::new()),
        [0, a, b, c, d, message @ ..]
            if u32::from_be_bytes([*a, *b, *c, *d]) as usize == message.len() =>
        {
            Ok(message.to_vec())
        }
        [0, ..] => Err(ExportError::Message(
            "gRPC message length differs from the body",
        )),
        _ => Err(ExportError::Message("compressed or malformed gRPC message")),
    }
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;
