//! conmond's metrics (recorded through `conmon_telemetry::metrics`, exported with its spans):
//! what an operator watches on a pod's monitor. Attributes stay low-cardinality: methods,
//! outcomes and exit classes, never container IDs.

use std::time::Duration;

use conmon_proto::types::ExecSyncResult;
use conmon_telemetry::metrics::{Instrument, observe};

use crate::error::MonitorError;
use crate::reaper::ExitStatus;

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
        || {
            let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
            Some(count as f64)
        },
    );
    observe("conmond.tasks", "{task}", "Tasks alive in conmond", || {
        Some(crate::tasks::alive() as f64)
    });
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}
