//! conmond's metrics (recorded through `conmon_telemetry::metrics`, exported with its spans):
//! what an operator watches on a pod's monitor. Attributes stay low-cardinality: methods,
//! outcomes and exit classes, never container IDs.

use std::time::Duration;

use conmon_proto::types::ExecSyncResult;
use conmon_telemetry::metrics::{Instrument, observe};

use crate::error::MonitorError;
use crate::reaper::ExitStatus;
use crate::stream::Stream;

const RPC_DURATION: Instrument = Instrument::seconds(
    "rpc.server.call.duration",
    "Duration of the RPCs served on conmon.sock, by method and outcome",
);
const CONTAINERS_CREATED: Instrument = Instrument::counter(
    "conmond.containers.created",
    "{container}",
    "Containers created",
);
const CONTAINERS_EXITED: Instrument = Instrument::counter(
    "conmond.containers.exited",
    "{container}",
    "Containers that exited, by exit class (zero, non_zero, signal, oom)",
);
const OOM_KILLS: Instrument = Instrument::counter(
    "conmond.oom_kills",
    "{kill}",
    "Containers killed by the OOM killer",
);
const EXEC_SYNC_DURATION: Instrument = Instrument::seconds(
    "conmond.exec_sync.duration",
    "Duration of exec-sync commands, by outcome (ok, non_zero, timeout, error)",
);
const EXEC_SYNC_TIMEOUTS: Instrument = Instrument::counter(
    "conmond.exec_sync.timeouts",
    "{exec}",
    "Exec-sync commands killed at their deadline",
);

const LOG_BYTES: Instrument = Instrument::counter(
    "conmond.log.bytes",
    "By",
    "Container output bytes logged, by stream",
);
const LOG_LINES: Instrument = Instrument::counter(
    "conmond.log.lines",
    "{line}",
    "Container output lines logged, by stream",
);
const LOG_DROPPED: Instrument = Instrument::counter(
    "conmond.log.dropped",
    "By",
    "Container output bytes dropped because a log could not be written (a full disk)",
);
const ATTACH_CLIENTS: Instrument = Instrument::counter(
    "conmond.attach.clients",
    "{client}",
    "Clients that attached to a container's attach socket",
);
const ATTACH_CLIENTS_ACTIVE: Instrument = Instrument::up_down(
    "conmond.attach.clients.active",
    "{client}",
    "Clients attached right now",
);
const STREAMING_SESSIONS: Instrument = Instrument::counter(
    "conmond.streaming.sessions",
    "{session}",
    "Streaming sessions served, by kind and transport",
);
const STREAMING_SESSIONS_ACTIVE: Instrument = Instrument::up_down(
    "conmond.streaming.sessions.active",
    "{session}",
    "Streaming sessions running right now, by kind and transport",
);

/// Counts one of something active until dropped.
pub(crate) struct Active {
    instrument: &'static Instrument,
    attributes: Vec<(&'static str, &'static str)>,
}

impl Active {
    fn start(
        total: &Instrument,
        instrument: &'static Instrument,
        attributes: &[(&'static str, &'static str)],
    ) -> Self {
        total.add(1, attributes);
        instrument.add(1, attributes);
        Self {
            instrument,
            attributes: attributes.to_vec(),
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.instrument.add(-1, &self.attributes);
    }
}

/// A chunk of container output was logged.
pub(crate) fn log_chunk(stream: Stream, chunk: &[u8]) {
    // The output's hot path: no line count unless it is recorded.
    if !conmon_telemetry::metrics::enabled() {
        return;
    }
    let attributes = [("stream", stream.name())];
    LOG_BYTES.add(chunk.len() as i64, &attributes);
    LOG_LINES.add(
        memchr::memchr_iter(b'\n', chunk).count() as i64,
        &attributes,
    );
}

/// `bytes` of container output could not be logged.
pub(crate) fn log_dropped(bytes: usize) {
    LOG_DROPPED.add(i64::try_from(bytes).unwrap_or(i64::MAX), &[]);
}

/// An attach client connected; it counts as active until the guard is dropped.
pub(crate) fn attach_client() -> Active {
    Active::start(&ATTACH_CLIENTS, &ATTACH_CLIENTS_ACTIVE, &[])
}

/// A streaming session of `kind` over `transport` started; active until the guard is dropped.
pub(crate) fn streaming_session(kind: &'static str, transport: &'static str) -> Active {
    let attributes = [("streaming.kind", kind), ("streaming.transport", transport)];
    Active::start(&STREAMING_SESSIONS, &STREAMING_SESSIONS_ACTIVE, &attributes)
}

/// An RPC of `method` ended with `outcome` (`ok` or `error`) after `elapsed`.
pub(crate) fn rpc_call(method: &'static str, outcome: &'static str, elapsed: Duration) {
    RPC_DURATION.record(
        elapsed.as_secs_f64(),
        &[("rpc.method", method), ("outcome", outcome)],
    );
}

/// A container was created.
pub(crate) fn container_created() {
    CONTAINERS_CREATED.add(1, &[]);
}

/// A container exited with `status`; `oom` if the OOM killer took it.
pub(crate) fn container_exited(status: ExitStatus, oom: bool) {
    let class = match (oom, status) {
        (true, _) => "oom",
        (false, ExitStatus::Exited(0)) => "zero",
        (false, ExitStatus::Exited(_)) => "non_zero",
        (false, ExitStatus::Signaled(_)) => "signal",
    };
    CONTAINERS_EXITED.add(1, &[("exit.class", class)]);
}

/// The OOM killer took a container.
pub(crate) fn oom_kill() {
    OOM_KILLS.add(1, &[]);
}

/// An exec-sync ended with `result` after `elapsed`.
pub(crate) fn exec_sync(result: &Result<ExecSyncResult, MonitorError>, elapsed: Duration) {
    let outcome = match result {
        Ok(output) if output.timed_out => "timeout",
        Ok(output) if output.exit_code == 0 => "ok",
        Ok(_) => "non_zero",
        Err(_) => "error",
    };
    if outcome == "timeout" {
        EXEC_SYNC_TIMEOUTS.add(1, &[]);
    }
    EXEC_SYNC_DURATION.record(elapsed.as_secs_f64(), &[("outcome", outcome)]);
}

/// Gauges of the monitor process itself, read at each export: resident memory, open
/// descriptors and its tasks.
pub(crate) fn observe_process() {
    observe(
        "process.memory.usage",
        "By",
        "Resident memory of conmond",
        resident_bytes,
    );
    observe(
        "process.open_file_descriptor.count",
        "{file_descriptor}",
        "Descriptors open in conmond",
        || Some(open_descriptors().ok()? as f64),
    );
    observe("conmond.tasks", "{task}", "Tasks alive in conmond", || {
        Some(crate::tasks::alive() as f64)
    });
}

/// How many descriptors the monitor has open.
pub(crate) fn open_descriptors() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}
