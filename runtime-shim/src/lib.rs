//! runtime-shim: the engine side of conmond, what CRI-O's pod runtime is inside CRI-O.
//!
//! - [`engine::Engine`] runs pods and containers as CRI-O does: one monitor per pod, state on
//!   disk so separate processes cooperate. The `runtime-shim` command line and its demo are
//!   thin layers over it.
//! - [`config`] reads CRI-O's configuration format (`crio.conf` and drop-ins) into types.
//! - [`monitor`] finds, spawns and stops one monitor per pod; [`cgroup`] puts it where
//!   `monitor_cgroup` says (cgroupfs directly, systemd through [`dbus`]).
//! - [`handle::MonitorHandle`] is a `Send + Clone` typed client of the monitor's RPCs that
//!   puts the current trace context into every request; [`client::MonitorClient`] is the
//!   single-threaded client underneath.
//! - [`runtime::OciRuntime`] drives the OCI runtime directly (start, kill, delete, state);
//!   [`conmon_oci`] runs a container under C conmon for `runtime_type = "oci"` handlers.
//! - [`attach::AttachSocket`] is the client side of an attach socket; [`cri_log`] reads CRI
//!   logs; [`bundle`] writes the busybox bundles `runtime-shim create` runs without a bundle.
//! - [`metrics`] records operation and RPC durations, exported with the spans.
//! - [`waterfall`] lays a trace out as a waterfall for a terminal (or JSON), from Jaeger's
//!   query API or any other source of spans.
//! - [`error::ShimError`] tells spawn, connect, remote, transport and timeout failures apart;
//!   [`engine::EngineError`] adds what an engine operation can get wrong.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod attach;
pub mod bundle;
pub mod cgroup;
pub mod client;
pub mod config;
pub mod conmon_oci;
pub mod cri_log;
pub mod dbus;
pub mod engine;
pub mod error;
pub mod fd_socket;
pub mod handle;
pub mod metrics;
pub mod monitor;
mod poll;
pub mod runtime;
mod sys;
pub mod waterfall;
