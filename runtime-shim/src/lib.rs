//! runtime-shim: the engine side of conmond.
//!
//! - [`config`] reads CRI-O's configuration format (`crio.conf` and drop-ins).
//! - [`monitor`] finds, spawns and stops one monitor per pod.
//! - [`handle::MonitorHandle`] is a `Send + Clone` typed client of the monitor's RPCs that
//!   puts the current trace context into every request; [`client::MonitorClient`] is the
//!   single-threaded client underneath.
//! - [`attach::AttachSocket`] is the client side of an attach socket.
//! - [`error::ShimError`] tells spawn, connect, remote, transport and timeout failures apart.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod attach;
pub mod bundle;
pub mod client;
pub mod config;
pub mod conmon_oci;
pub mod error;
pub mod handle;
pub mod monitor;
pub mod runtime;
mod sys;
