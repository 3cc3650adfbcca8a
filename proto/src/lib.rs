//! The wire contract between a container engine and `conmond`.
//!
//! `schema/conmon.capnp` is wire-compatible with conmon-rs v1.0: same file ID, interface ID,
//! method ordinals and struct layouts (checked with `capnp compile -ocapnp` against the upstream
//! schema). The generated bindings live in [`conmon_capnp`]; [`map`] converts the schema's
//! `TextTextMap` (used for request metadata and environment variables) to and from Rust maps, so
//! both the monitor and its clients share one implementation. [`layout`] reads requests written
//! in the pre-1.0 layout that conmon-rs's Go client v0.6.x (CRI-O ≤ 1.34) still sends.
#![warn(missing_docs)]

/// Bindings generated from `schema/conmon.capnp`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::unwrap_used,
    reason = "generated code"
)]
pub mod conmon_capnp {
    include!(concat!(env!("OUT_DIR"), "/conmon_capnp.rs"));
}

pub mod framing;
pub mod layout;
pub mod map;
pub mod socket_path;
pub mod transport;
pub mod types;

pub use conmon_capnp::conmon;
