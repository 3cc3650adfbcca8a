//! `runtime-shim demo`: a pod with one busybox container, run under tracing, and the trace
//! drawn as a waterfall so both services' spans can be seen under one trace id, then a summary
//! of both services' metrics.

mod summary;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use conmon_proto::types::CgroupManager;
use conmon_telemetry::receiver::{self, MetricPoint, Receiver, Span};
use conmon_telemetry::{LogLevel, propagation};
use runtime_shim::cgroup::MonitorCgroup;
use runtime_shim::config::{Config, MonitorLogDriver, RuntimeHandler, RuntimeType, TracingConfig};
use runtime_shim::engine::{BundleSource, Engine, Stdio};
use runtime_shim::waterfall::{self, Waterfall};
use tracing::Instrument as _;

use crate::args::{Args, TraceFormat};
use crate::cli::{fail, init_telemetry, operation, operation_span, println_out};

const POD: &str = "demo-pod";
const CONTAINER: &str = "demo-ctr";

pub(crate) async fn run(args: Args) -> ExitCode {
    match demo(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// The first of `names` found in `$PATH` (or the system directories runc lives in).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
}

async fn demo(args: Args) -> Result<()> {
    // With no collector configured, bring one: an OTLP receiver on loopback.
    let receiver = match &args.tracing_endpoint {
        Some(_) => None,
        None => Some(
            Receiver::start(receiver::free_addr()?)
                .await
                .context("start the embedded OTLP receiver")?,
        ),
    };
    let endpoint = match (&receiver, &args.tracing_endpoint) {
        (Some(receiver), _) => receiver.endpoint(),
        (None, endpoint) => endpoint.clone().unwrap_or_default(),
    };
    let root = std::env::temp_dir().join(format!("runtime-shim-demo-{}", std::process::id()));
    let runtime = find_program("runc").context("runc not found: apt-get install runc")?;
    // conmond next to this binary (a cargo build), else from $PATH.
    let monitor = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("conmond")))
        .filter(|path| path.is_file())
        .or_else(|| find_program("conmond"))
        .context("conmond not found next to runtime-shim or in $PATH")?;

    let handler = RuntimeHandler {
        runtime_type: RuntimeType::Pod,
        runtime_path: runtime,
        runtime_root: root.join("runc"),
        monitor_path: monitor,
        monitor_env: Vec::new(),
        monitor_cgroup: MonitorCgroup::Default,
        monitor_log_driver: MonitorLogDriver::None,
    };
    let config = Config {
        default_runtime: "demo".into(),
        cgroup_manager: CgroupManager::Cgroupfs,
        runtimes: BTreeMap::from([("demo".to_owned(), handler)]),
        tracing: TracingConfig {
            enable_tracing: true,
            tracing_endpoint: endpoint,
            tracing_sampling_rate_per_million: 1_000_000,
        },
        ..Config::default()
    };

    // Log lines at info at least, so the tree shows them as `log` events.
    let level = match args.log_level {
        LogLevel::Trace | LogLevel::Debug => args.log_level,
        _ => LogLevel::Info,
    };
    let telemetry = init_telemetry(&config, level);
    let endpoint = config.tracing.endpoint_url();
    let engine = Engine::new(config, root.clone())?;
    let span = operation_span("runtime-shim demo");
    let trace_id = propagation::span_context(&span).trace_id().to_string();
    let outcome = lifecycle(&engine).instrument(span).await;
    // Whatever happened, take the pod down.
    if outcome.is_err()
        && let Err(err) = engine.pod_rm(POD).await
    {
        tracing::warn!(error = %err, "remove the demo pod");
    }
    telemetry.shutdown();
    if let Err(err) = std::fs::remove_dir_all(&root) {
        tracing::debug!(error = %err, "remove the demo root");
    }
    outcome?;

    match receiver {
        Some(receiver) => {
            print_waterfall(&receiver, &trace_id).await?;
            print_metrics(&receiver).await;
            Ok(())
        }
        None => {
            println_out(&format!("trace {trace_id} exported to {endpoint}"));
            println_out(&format!(
                "from Jaeger: runtime-shim trace {trace_id} (a UI, where Jaeger has one: http://localhost:16686/trace/{trace_id})"
            ));
            Ok(())
        }
    }
}

/// A pod lifecycle, each step in its own operation span under the demo span.
async fn lifecycle(engine: &Engine) -> Result<()> {
    operation(
        "/runtime.v1.RuntimeService/RunPodSandbox",
        engine.pod_run(POD),
    )
    .await?;
    let command = [
        "sh".to_owned(),
        "-c".to_owned(),
        "echo hello from the demo container; trap 'exit 0' TERM; sleep 1000 & wait".to_owned(),
    ];
    let bundle = BundleSource::Busybox(command.into());
    operation(
        "/runtime.v1.RuntimeService/CreateContainer",
        engine.create(POD, CONTAINER, bundle, Stdio::default()),
    )
    .await?;
    operation(
        "/runtime.v1.RuntimeService/StartContainer",
        engine.start(CONTAINER),
    )
    .await?;
    let exec = ["echo".to_owned(), "hello from exec".to_owned()];
    let result = operation(
        "/runtime.v1.RuntimeService/ExecSync",
        engine.exec(CONTAINER, Some(Duration::from_secs(10)), exec.into()),
    )
    .await?;
    tracing::info!(exit_code = result.exit_code, "exec done");
    operation(
        "/runtime.v1.RuntimeService/StopContainer",
        engine.stop(CONTAINER, Duration::from_secs(2)),
    )
    .await?;
    operation(
        "/runtime.v1.RuntimeService/RemovePodSandbox",
        engine.pod_rm(POD),
    )
    .await?;
    Ok(())
}

/// Polls `done` until it holds or `timeout` has passed: exports arrive when their exporters
/// send them.
async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether both services are among `services`.
fn both_services<'a>(services: impl IntoIterator<Item = &'a str>) -> bool {
    let services: BTreeSet<&str> = services.into_iter().collect();
    services.contains("runtime-shim") && services.contains("conmond")
}

/// Waits for both services' spans of `trace_id`, then draws them as a waterfall.
async fn print_waterfall(receiver: &Receiver, trace_id: &str) -> Result<()> {
    let trace = || -> Vec<Span> {
        receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    };
    wait_until(Duration::from_secs(15), || {
        let spans = trace();
        both_services(spans.iter().map(Span::service))
            && spans.iter().any(|s| s.name == "runtime-shim demo")
    })
    .await;
    let spans: Vec<waterfall::Span> = trace().iter().map(waterfall_span).collect();
    crate::trace::print(&Waterfall::new(trace_id, &spans), TraceFormat::Text)
}

/// A received span as the waterfall takes it.
fn waterfall_span(span: &Span) -> waterfall::Span {
    waterfall::Span {
        span_id: span.span_id.clone(),
        parent_id: (!span.parent_span_id.is_empty()).then(|| span.parent_span_id.clone()),
        service: span.service().to_owned(),
        name: span.name.clone(),
        start_unix_nano: span.start_unix_nano,
        end_unix_nano: span.end_unix_nano,
        error: span.error,
        events: span
            .events
            .iter()
            .map(|event| waterfall::Event {
                time_unix_nano: event.time_unix_nano,
                message: waterfall::event_message(&event.name, &event.attributes),
            })
            .collect(),
        // The receiver keeps linked span ids only; a link within the trace is resolved anyway.
        links: span
            .links
            .iter()
            .map(|id| waterfall::SpanRef {
                span_id: id.clone(),
                trace_id: None,
            })
            .collect(),
    }
}

/// Waits for both services' final metrics export (conmond's when the pod went, runtime-shim's
/// at its telemetry shutdown), then prints the summary.
async fn print_metrics(receiver: &Receiver) {
    wait_until(Duration::from_secs(10), || {
        both_services(receiver.metrics().iter().map(MetricPoint::service))
    })
    .await;
    for line in summary::lines(&receiver.metrics()) {
        println_out(&line);
    }
}
