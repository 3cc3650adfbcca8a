//! Telemetry shared by conmond and runtime-shim, and by any engine that embeds runtime-shim.
//!
//! - [`init`] installs a process's global subscriber: formatted log lines at a [`LogLevel`] to
//!   a [`LogOutput`] and, with [`ExportSettings`], spans and correlated log records exported
//!   over OTLP gRPC for a [`Service`].
//! - [`propagation`] carries the W3C trace context across process boundaries: into and out of
//!   request metadata, and into a child process's environment.
//! - Export never blocks the caller: finished spans and records go into bounded buffers that
//!   a dedicated thread exports, retrying while the collector is down; [`Telemetry::shutdown`]
//!   flushes them.
//! - [`metrics`]: counters, histograms (with exemplars pointing at spans) and gauges, exported
//!   with the spans and logs at an interval ([`ExportSettings::metrics_interval`]).
//! - [`ids`] makes random identifiers (UUIDs) from the kernel's random source.
//! - [`journald`] speaks journald's native protocol, for log lines and container logs alike;
//!   [`log_file`] is the bounded file log lines go to where journald does not run.
//! - `receiver` (feature `receiver`): an in-memory OTLP receiver for demos and tests.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod export;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod ids;
pub mod journald;
pub mod log_file;
pub mod metrics;
pub mod propagation;
#[cfg(feature = "receiver")]
pub mod receiver;
mod subscriber;

pub use subscriber::{ExportSettings, FLUSH_TIMEOUT, Telemetry, init};

/// Who emits: names the exported data and selects which spans and events are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// `service.name` of the resource and the instrumentation scope.
    pub name: &'static str,
    /// Crate whose spans and events are exported (tracing targets `crate` and `crate::…`).
    pub crate_name: &'static str,
    /// `SYSLOG_IDENTIFIER` of log lines sent to the journal.
    pub identifier: &'static str,
}

/// Minimum level of a process's own log lines (and exported log records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Problems worked around.
    Warn,
    /// Failures.
    Error,
    /// Nothing.
    Off,
}

impl LogLevel {
    /// The level's name on command lines (`trace` … `off`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Off => "off",
        }
    }
}

/// Where formatted log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// Nowhere.
    None,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// The systemd journal. Where journald does not run: the bounded, rotated file
    /// `fallback` ([`log_file`]), or standard error without one (or if it cannot be opened).
    Journald {
        /// The file used instead of the journal.
        fallback: Option<std::path::PathBuf>,
    },
}
