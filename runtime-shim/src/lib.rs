//! runtime-shim: the engine side of conmond.
//!
//! [`client::MonitorClient`] is a typed client of the monitor's Cap'n Proto RPCs: requests and
//! results are plain Rust types, and connection, transport and monitor-reported failures are
//! told apart by [`client::ClientError`].
#![warn(missing_docs)]

pub mod client;
pub mod config;
