//! conmond: a per-pod container monitor.
//!
//! An engine starts one conmond per pod and talks to it over Cap'n Proto RPC on
//! `<runtime-dir>/conmon.sock`, with the wire protocol of conmon-rs v1.0. For each container the
//! monitor runs `runc create`, holds the container's stdio, writes its output to CRI or JSON logs,
//! and when it exits writes OOM and exit files and runs a cleanup command. Exec-sync runs
//! commands in running containers.
//!
//! Architecture: [`daemon`] does the single-threaded start-up (fork, subreaper) and then runs
//! everything on one thread: [`rpc`] decodes requests into plain types and calls [`monitor`] or
//! [`streaming`]. The monitor drives the [`runtime`], pumps output into [`logs`] and into each
//! process's I/O hub (whose subscribers are attach-socket clients and streaming sessions), and
//! learns of exits from the [`reaper`]; [`exec`] holds exec-sync's deadline state machine.
//! Telemetry (log lines, spans and correlated logs over OTLP) comes from `conmon-telemetry`.
//! All `unsafe` code is in `sys`, behind safe functions.
#![deny(unsafe_code)]

mod atomic_file;
mod attach;
mod caller_path;
pub mod config;
pub mod daemon;
pub mod error;
pub mod exec;
mod fd_socket;
#[cfg(fuzzing)]
pub mod fuzzing;
mod gate;
mod io_hub;
pub mod logs;
mod metrics;
pub mod monitor;
mod namespaces;
mod oom;
pub mod reaper;
pub mod rpc;
pub mod runtime;
mod stdio;
mod stream;
pub mod streaming;
mod sys;
mod tasks;
mod terminal;
mod validate;
pub mod version;

/// conmond's telemetry identity: the spans and events of this crate are exported.
pub const SERVICE: conmon_telemetry::Service = conmon_telemetry::Service {
    name: "conmond",
    crate_name: env!("CARGO_CRATE_NAME"),
    identifier: "conmond",
};
