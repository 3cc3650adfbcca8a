//! runtime-shim's metrics, exported with its spans (`conmon_telemetry::metrics`): how long the
//! operations an engine runs take, and the RPCs they make to the pod monitors. Attributes are
//! the operation or method and the outcome, nothing per pod or container.

use std::time::Instant;

use conmon_telemetry::metrics::Instrument;

const OPERATION_DURATION: Instrument = Instrument::seconds(
    "runtime_shim.operation.duration",
    "Duration of runtime-shim operations (one per CRI method), by operation and outcome",
);
const RPC_DURATION: Instrument = Instrument::seconds(
    "rpc.client.call.duration",
    "Duration of the RPCs sent to pod monitors, by method and outcome",
);

/// Runs `work`, one operation an engine was asked for (`name`: the CRI method, say), and
/// records its duration and outcome. Inside a sampled span the point's exemplar is that span.
///
/// # Errors
/// Whatever `work` returns.
pub async fn operation<T, E>(
    name: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    timed(OPERATION_DURATION, ("operation", name), work).await
}

/// Runs `call`, one RPC `method` to a monitor, and records its duration and outcome.
pub(crate) async fn rpc<T, E>(
    method: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    timed(RPC_DURATION, ("rpc.method", method), call).await
}

async fn timed<T, E>(
    instrument: Instrument,
    what: (&'static str, &'static str),
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = work.await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    instrument.record(
        started.elapsed().as_secs_f64(),
        &[what, ("outcome", outcome)],
    );
    result
}
